//! The models report, `reports/snapshot=S/models.html`: every candidate's validation
//! metrics and reliability curve, the champion of each target starred.

use std::fmt::Write;

use chrono::NaiveDate;

use crate::models::ModelArtifact;
use crate::report::{COLORS, Line, chart, esc, page};

/// The models report: validation metrics of every candidate and their reliability curves.
pub(super) fn models_html(artifact: &ModelArtifact, snapshot: NaiveDate) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Validated on the snapshot {} (labels complete), trained on {}. {}Probabilities are calibrated on the \
         validation snapshot; the metrics below use cross-fitted calibration (each row calibrated by a fit that did not \
         see it). The champion of each target has the lowest validation log loss.</p>",
        artifact.validated_on,
        artifact.trained_on.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
        match artifact.reused_from {
            Some(d) => format!("Reused from the model trained for {d} (no new labels). "),
            None => String::new(),
        }
    );
    for t in &artifact.targets {
        let _ = write!(
            body,
            "<h2>{}</h2><table><tr><th>model</th><th>calibration</th><th>AUC</th><th>PR-AUC</th><th>log loss</th>\
             <th>Brier</th><th>ECE</th><th>top-decile lift</th><th>fit (s)</th></tr>",
            esc(t.target.as_str())
        );
        for c in &t.candidates {
            let v = &c.validation;
            let star = if c.family == t.champion { " ★" } else { "" };
            let _ = write!(
                body,
                "<tr><td>{}{star}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td>\
                 <td>{:.2}</td><td>{:.1}</td></tr>",
                esc(&c.name),
                c.calibration.name(),
                v.auc,
                v.pr_auc,
                v.log_loss,
                v.brier,
                v.ece,
                v.top_decile_lift,
                c.fit_seconds
            );
        }
        body.push_str(
            "</table><p>Reliability: observed rate against mean predicted probability in deciles of the \
                       score (the diagonal is perfect calibration).</p>",
        );
        let mut lines: Vec<Line> = t
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| Line {
                label: c.family.as_str().to_string(),
                color: COLORS[i % COLORS.len()],
                points: c.reliability.iter().map(|b| (b.mean_predicted, b.observed_rate)).collect(),
                dashed: false,
            })
            .collect();
        let top = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0.max(p.1))).fold(0.0f64, f64::max).max(0.05);
        lines.push(Line {
            label: "perfect".into(),
            color: "#999999",
            points: vec![(0.0, 0.0), (top, top)],
            dashed: true,
        });
        body.push_str(&chart(
            &format!("Reliability: {}", t.target.as_str()),
            "mean predicted probability",
            "observed rate",
            &lines,
            &[],
        ));
    }
    page(&format!("Models — snapshot {snapshot}"), &body)
}
