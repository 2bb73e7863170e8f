//! Scoring every premium user at S: calibrated churn probability, risk decile and the
//! features that push each user's risk up most, in words.

use ndarray::Array2;
use polars::prelude::*;

use crate::error::{PolarsContext, Result};
use crate::features::{FeatureKind, feature};
use crate::models::ModelArtifact;
use crate::models::encoder::Encoding;

/// The scores table for a features table (contract: `scores`).
pub fn score(features: &DataFrame, artifact: &ModelArtifact, top_k: usize) -> Result<DataFrame> {
    let x = artifact.encoder.transform(features)?;
    let clf = artifact.model.classifier();
    let p: Vec<f64> = clf.predict(&x).into_iter().map(|v| artifact.calibration.apply(v)).collect();
    let deciles = risk_deciles(&p);
    let reasons = top_reasons(artifact, &x, &clf.contributions(&x), top_k);
    let n = features.height();
    let model_name = format!("{}+platt", clf.name());
    let reasons_series: Series = {
        let mut builder = ListStringChunkedBuilder::new("top_reasons".into(), n, n * top_k);
        for r in &reasons {
            builder.append_values_iter(r.iter().map(String::as_str));
        }
        builder.finish().into_series()
    };
    let df = DataFrame::new_infer_height(vec![
        features.column("user_id").ctx("features")?.clone(),
        features.column("snapshot_date").ctx("features")?.clone(),
        Column::new("churn_probability".into(), p),
        Column::new("model".into(), vec![model_name; n]),
        Column::new("risk_decile".into(), deciles),
        reasons_series.into(),
    ])
    .ctx("assembling scores")?;
    Ok(df)
}

/// Decile 1 holds the highest-risk tenth. Ties keep row order (rows are sorted by user id),
/// so the assignment is deterministic.
pub fn risk_deciles(p: &[f64]) -> Vec<i8> {
    let n = p.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    let mut out = vec![10i8; n];
    for (rank, &i) in order.iter().enumerate() {
        out[i] = (rank * 10 / n.max(1)) as i8 + 1;
    }
    out
}

/// Per row, the features whose contributions to the log-odds are largest and positive.
fn top_reasons(artifact: &ModelArtifact, x: &Array2<f64>, contrib: &Array2<f64>, k: usize) -> Vec<Vec<String>> {
    let cols = &artifact.encoder.columns;
    // Group encoded columns by their feature, keeping first-appearance order.
    let mut features: Vec<&str> = Vec::new();
    for c in cols {
        if !features.contains(&c.feature.as_str()) {
            features.push(&c.feature);
        }
    }
    (0..x.nrows())
        .map(|i| {
            let mut per_feature: Vec<(f64, String)> = features
                .iter()
                .map(|&f| {
                    let mut total = 0.0;
                    let mut words = String::new();
                    for (j, c) in cols.iter().enumerate().filter(|(_, c)| c.feature == f) {
                        total += contrib[[i, j]];
                        let def = feature(f);
                        let plain = def.map(|d| d.words).unwrap_or(f);
                        match &c.kind {
                            Encoding::Numeric { .. } if words.is_empty() => {
                                let is_flag = def.is_some_and(|d| d.kind == FeatureKind::Numeric && plain.starts_with(char::is_alphabetic))
                                    && matches!(f, "is_trial" | "cancel_pending" | "open_dunning" | "push_opt_in" | "email_opt_in");
                                words = if is_flag {
                                    if x[[i, j]] > 0.0 { plain.to_string() } else { format!("not {plain}") }
                                } else if x[[i, j]] >= 0.0 {
                                    format!("high {plain}")
                                } else {
                                    format!("low {plain}")
                                };
                            }
                            Encoding::Missing if x[[i, j]] > 0.0 => words = format!("unknown {plain}"),
                            Encoding::OneHot { value } if x[[i, j]] > 0.0 => words = format!("{plain}: {value}"),
                            _ => {}
                        }
                    }
                    if words.is_empty() {
                        words = format!("{} (usual)", feature(f).map(|d| d.words).unwrap_or(f));
                    }
                    (total, words)
                })
                .filter(|(t, _)| *t > 0.0)
                .collect();
            per_feature.sort_by(|a, b| b.0.total_cmp(&a.0));
            per_feature.into_iter().take(k).map(|(_, w)| w).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deciles_put_the_riskiest_tenth_first() {
        let p: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        let d = risk_deciles(&p);
        assert_eq!(d[99], 1);
        assert_eq!(d[0], 10);
        for k in 1..=10 {
            assert_eq!(d.iter().filter(|&&v| v == k).count(), 10);
        }
    }
}
