//! The grace stage's run report: one self-contained HTML page with inline SVG charts
//! (recovery curves by failure reason, the value curves of a few open episodes) and the
//! evaluation tables, written next to the outputs so that a person can open it.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::evaluate::Evaluation;
use super::model::FitSummary;
use crate::config::Grace as GraceConfig;
use crate::report::{COLORS, Line, chart};

/// P(recovered by day d) after a failure, d = 0..=days, for one failure reason: the
/// model's average over the reason's episodes (no grace limit), and the empirical
/// (Kaplan–Meier) curve of the same training rows, which stops where grace ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReasonCurve {
    pub episodes: usize,
    pub model: Vec<f64>,
    pub empirical: Vec<f64>,
}

/// What the grace stage learned and how well it does, for the run manifest and report.
#[derive(Debug, Clone, Serialize)]
pub struct GraceReport {
    pub snapshot: NaiveDate,
    pub episodes_in_history: usize,
    pub open_episodes: usize,
    pub recovery_model: Option<FitSummary>,
    pub comeback_model: Option<FitSummary>,
    /// Open episodes by recommended total grace length.
    pub recommended_days: BTreeMap<usize, usize>,
    /// Open episodes told to end the grace now.
    pub end_now: usize,
    pub recovery_curves: BTreeMap<String, ReasonCurve>,
    /// Inverse-propensity evaluation on closed historical episodes (None when the
    /// history has no closed episode with a fitted model before it).
    pub evaluation: Option<Evaluation>,
}

/// An open episode whose value curve the report draws.
pub(crate) struct Example {
    pub user_id: String,
    pub reason: String,
    pub elapsed: usize,
    pub price: f64,
    pub values: Vec<f64>,
    pub best: usize,
}

fn est(e: &super::evaluate::Estimate) -> String {
    format!("{:.2} <small>[{:.2}, {:.2}]</small>", e.value, e.ci_low, e.ci_high)
}

/// The report page.
pub(crate) fn render(rep: &GraceReport, examples: &[Example], cfg: &GraceConfig) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Grace periods, snapshot {0}</title>\
         <style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#f4f4f4}}small{{color:#666}}</style></head><body>\
         <h1>Grace periods — snapshot {0}</h1>",
        rep.snapshot
    );
    let _ = write!(
        s,
        "<p>{} dunning episodes in the last {} days; {} open at the end of the snapshot, of which {} are told to end \
         the grace now. Economics: a recovered or returning subscriber is worth {} × the monthly price; an unpaid \
         grace day costs {} × the daily price; lengths 0–{} days are considered.</p>",
        rep.episodes_in_history,
        cfg.history_days,
        rep.open_episodes,
        rep.end_now,
        cfg.value_months,
        cfg.cost_fraction,
        cfg.max_days
    );
    s.push_str("<h2>Recommended total grace (open episodes)</h2><table><tr><th>days</th>");
    for g in rep.recommended_days.keys() {
        let _ = write!(s, "<th>{g}</th>");
    }
    s.push_str("</tr><tr><th>episodes</th>");
    for n in rep.recommended_days.values() {
        let _ = write!(s, "<td>{n}</td>");
    }
    s.push_str("</tr></table>");

    s.push_str(
        "<h2>Recovery curves by failure reason</h2><p>P(payment recovered by day d after the failure) if grace \
                lasted the whole time: the model's average over the reason's episodes (solid) and the empirical \
                Kaplan–Meier curve of the training rows (dashed; censored where grace ended).</p>",
    );
    let mut lines = Vec::new();
    for (i, (reason, c)) in rep.recovery_curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        lines.push(Line {
            label: format!("{reason} ({})", c.episodes),
            color,
            points: c.model.iter().enumerate().map(|(d, p)| (d as f64, *p)).collect(),
            dashed: false,
        });
        lines.push(Line {
            label: String::new(),
            color,
            points: c.empirical.iter().enumerate().map(|(d, p)| (d as f64, *p)).collect(),
            dashed: true,
        });
    }
    s.push_str(&chart("Recovery by day since failure", "days since failure", "P(recovered)", &lines, &[]));

    if !examples.is_empty() {
        s.push_str(
            "<h2>Value of each grace length: example open episodes</h2><p>Expected net value (currency units) \
                    of a total grace of g days; the dot is the recommendation.</p>",
        );
        let mut lines = Vec::new();
        let mut markers = Vec::new();
        for (i, ex) in examples.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            lines.push(Line {
                label: format!("{} ({}, day {}, {:.2})", ex.user_id, ex.reason, ex.elapsed, ex.price),
                color,
                points: ex.values.iter().enumerate().map(|(g, v)| (g as f64, *v)).collect(),
                dashed: false,
            });
            markers.push((ex.best as f64, ex.values[ex.best], color));
        }
        s.push_str(&chart(
            "Value by total grace length",
            "total grace (days from failure)",
            "expected net value",
            &lines,
            &markers,
        ));
    }

    s.push_str("<h2>Evaluation on past episodes</h2>");
    match &rep.evaluation {
        None => s.push_str("<p>Not enough closed history to evaluate yet.</p>"),
        Some(ev) => {
            let _ = write!(
                s,
                "<p>{} episodes that failed {} to {} (closed: recovered, or 60 days past the expiry by the snapshot), \
                 decided at the failure by models refitted every {} days on the data known before ({} left out \
                 without a model). Values are per episode in monthly prices (each episode's value over its own price), inverse-propensity weighted over the \
                 randomised grace arms, with 95% normal intervals. The policy is restricted to the arms. It matched \
                 the granted arm in {} episodes; the models predicted {:.2} per episode for it.</p>",
                ev.episodes,
                ev.failures_from,
                ev.failures_to,
                ev.refit_every_days,
                ev.skipped_without_model,
                ev.matched,
                ev.predicted_value
            );
            let _ = write!(
                s,
                "<p><b>Recommended policy: {}</b> (self-normalised {:.2})</p>",
                est(&ev.recommended),
                ev.recommended_self_normalised
            );
            s.push_str("<table><tr><th>fixed grace (days)</th><th>propensity</th><th>episodes granted</th><th>value of the fixed length</th><th>recommended − fixed</th><th>policy picks</th></tr>");
            for a in &ev.arms {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}%</td></tr>",
                    a.grace_days,
                    a.propensity,
                    a.episodes,
                    est(&a.fixed_value),
                    est(&a.recommended_minus_fixed),
                    100.0 * ev.policy_arm_shares.get(&a.grace_days).copied().unwrap_or(0.0)
                );
            }
            s.push_str("</table>");
        }
    }
    if let Some(m) = &rep.recovery_model {
        let _ = write!(
            s,
            "<h2>Models</h2><p>Recovery hazard: {} episodes, {} episode-days, {} recoveries, {} coefficients, {} Newton \
             iterations.",
            m.episodes, m.rows, m.events, m.coefficients, m.iterations
        );
        if let Some(c) = &rep.comeback_model {
            let _ = write!(
                s,
                " Come-back hazard: {} expired episodes, {} days, {} come-backs.",
                c.episodes, c.rows, c.events
            );
        }
        s.push_str("</p>");
    }
    s.push_str("</body></html>\n");
    s
}
