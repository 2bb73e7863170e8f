//! The readout's page, `reports/snapshot=S/readout.html`: the decisions, a forest plot per
//! campaign (every arm's metrics as effects relative to the holdout, with intervals and the
//! guardrails' margins), each arm's cumulative effect over its campaigns, the campaigns the
//! sample-ratio check flagged, the pooled arms and where segments differ.
//!
//! A small script puts the number of plots the browser laid out on `<body>` (`data-forest-plots`,
//! `data-cumulative-plots`, `data-srm-flags`), which the test that renders the page in
//! headless Chromium reads.

use std::fmt::Write;

use chrono::NaiveDate;

use super::analyse::{ArmRead, Cell, CellRead, Role, SegmentRead};
use super::stats::{self, Look};
use crate::config;
use crate::report::{COLORS, Line, chart, esc, page as frame};

const COUNT_PLOTS: &str = "<script>addEventListener('load',()=>{const n=s=>[...document.querySelectorAll(s)]\
.filter(e=>{const r=e.getBoundingClientRect();return r.width>0&&r.height>0}).length;\
const b=document.body.dataset;b.forestPlots=n('svg.forest');b.cumulativePlots=n('div.cumulative svg');\
b.srmFlags=document.querySelectorAll('tr.srm-flag').length;});</script>";

/// A forecast of one of `retain`'s plans next to the readout of its arm (manifest
/// `details.readout.plans`; the page's "What the plans promised").
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Promise {
    pub campaign_id: String,
    /// The night whose plan it was.
    pub plan_snapshot: Option<NaiveDate>,
    pub message_type: String,
    pub channel: String,
    pub metric: &'static str,
    /// The plan's forecast of the effect (treatment minus holdout).
    pub expected_effect: f64,
    pub effect: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub window_closed: bool,
    /// Whether the forecast lies inside the readout's interval.
    pub within_interval: Option<bool>,
}

/// The page's table of what `retain`'s plans promised against what was measured.
fn promises(promised: &[Promise]) -> String {
    let mut body = String::from("<h2>What the plans promised</h2>");
    if promised.is_empty() {
        body.push_str(
            "<p>No campaign of these weeks is a plan of <code>retain</code> (its <code>campaign_id</code> is the \
             run id of the command that wrote the plan).</p>",
        );
        return body;
    }
    body.push_str(
        "<p>Each plan's forecast of its arm's effect (the mean of <code>expected_uplift</code> for retention and of \
         <code>expected_unsubscribe</code> for unsubscribes over the arm's users, both groups) against the \
         readout's estimate and interval. A forecast outside the interval once the window has closed says the \
         learners that priced the plan are off.</p><table class=\"promises\"><tr><th>campaign</th><th>plan of</th>\
         <th>message type</th><th>channel</th><th>metric</th><th>forecast</th><th>measured</th><th>interval</th>\
         <th>window</th><th>forecast in interval</th></tr>",
    );
    for p in promised {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>[{}, {}]</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&p.campaign_id),
            p.plan_snapshot.map_or("–".to_string(), |d| d.to_string()),
            esc(&p.message_type),
            esc(&p.channel),
            p.metric,
            fmt(Some(p.expected_effect)),
            fmt(p.effect),
            fmt(p.ci_low),
            fmt(p.ci_high),
            if p.window_closed { "closed" } else { "open" },
            match p.within_interval {
                Some(true) => "yes",
                Some(false) => "<b>no</b>",
                None => "–",
            }
        );
    }
    body.push_str("</table>");
    body
}

/// An effect relative to the holdout's mean, in percent (None where that mean is 0).
fn relative(v: f64, base: f64) -> Option<f64> {
    (base.abs() > 1e-12 && v.is_finite()).then(|| 100.0 * v / base.abs())
}

/// One campaign's forest plot: a row per (arm, metric), the point and its interval relative
/// to the holdout's mean, the zero line, and each guardrail's margin as a dashed tick.
fn forest(campaign: &str, rows: &[(&Cell, &CellRead)]) -> String {
    struct Row {
        label: String,
        point: f64,
        lo: f64,
        hi: f64,
        margin: Option<f64>,
        color: &'static str,
    }
    let mut list = Vec::new();
    for (cell, read) in rows {
        for r in &read.reads {
            let Some(e) = r.estimate else { continue };
            let (Some(point), Some(lo), Some(hi)) = (
                relative(e.effect, e.mean_holdout),
                relative(r.ci.0, e.mean_holdout),
                relative(r.ci.1, e.mean_holdout),
            ) else {
                continue;
            };
            let margin = r
                .margin
                .and_then(|m| relative(m, e.mean_holdout))
                .map(|m| if r.metric.higher_is_better() { -m } else { m });
            list.push(Row {
                label: format!(
                    "{} · {} · {}{}",
                    cell.message_type,
                    cell.channel,
                    r.metric.name(),
                    if r.role == Role::Guardrail { " (guardrail)" } else { "" }
                ),
                point,
                lo,
                hi,
                margin,
                color: if r.role == Role::Success { COLORS[0] } else { COLORS[4] },
            });
        }
    }
    let (w, row_h, left, right, top) = (900.0, 22.0, 330.0, 30.0, 34.0);
    let h = top + row_h * list.len().max(1) as f64 + 30.0;
    let mut x0 = list.iter().flat_map(|r| [r.lo, r.point, r.margin.unwrap_or(0.0)]).fold(0.0f64, f64::min);
    let mut x1 = list.iter().flat_map(|r| [r.hi, r.point, r.margin.unwrap_or(0.0)]).fold(0.0f64, f64::max);
    let pad = 0.05 * (x1 - x0).max(1e-9);
    (x0, x1) = (x0 - pad, x1 + pad);
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="forest" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11"><text x="4" y="16" font-size="13" font-weight="bold">campaign {}: effect relative to the holdout (%), 95% intervals</text>"#,
        esc(campaign)
    );
    let _ = write!(s, r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1}" stroke="#666"/>"##, px(0.0), h - 30.0);
    for i in 0..=4 {
        let v = x0 + (x1 - x0) * i as f64 / 4.0;
        let _ = write!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.1}%</text>"#, px(v), h - 12.0, v);
    }
    for (i, r) in list.iter().enumerate() {
        let y = top + row_h * i as f64 + row_h / 2.0;
        let _ = write!(s, r#"<text x="4" y="{:.1}">{}</text>"#, y + 4.0, esc(&r.label));
        let _ = write!(
            s,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2"/><circle cx="{:.1}" cy="{y:.1}" r="4" fill="{}"/>"#,
            px(r.lo),
            px(r.hi),
            r.color,
            px(r.point),
            r.color
        );
        if let Some(m) = r.margin {
            let _ = write!(
                s,
                r##"<line class="margin" x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#d62728" stroke-dasharray="3,2"/>"##,
                px(m),
                y - 8.0,
                y + 8.0
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn fmt(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() && v.abs() >= 0.01 => format!("{v:.4}"),
        Some(v) if v.is_finite() => format!("{v:.2e}"),
        _ => "–".into(),
    }
}

pub(crate) fn page(
    s: NaiveDate,
    cells: &[Cell],
    reads: &[CellRead],
    arms: &[ArmRead],
    segments: &[SegmentRead],
    promised: &[Promise],
    settings: &config::Readout,
) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Snapshot {s}: {} arms of the campaigns whose first decision is in the last {} weeks. Effects are \
         treatment minus holdout, weighted by the logged propensities and adjusted by each metric's own {}-day \
         pre-period; campaigns whose window is still open are read with always-valid intervals. Decision: ship \
         when a success metric improves significantly (α = {} with Bonferroni) and every guardrail is \
         significantly within its margin; invalid when the split's sample-ratio p-value is below {}.</p>",
        reads.len(),
        settings.weeks,
        settings.pre_days,
        settings.alpha,
        settings.srm_alpha
    );
    // Decisions.
    body.push_str("<h2>Decisions</h2><table><tr><th>campaign</th><th>first send</th><th>message type</th><th>channel</th><th>decision</th><th>SRM p</th></tr>");
    for r in reads {
        let c = &cells[r.cell];
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.campaign),
            c.first_send,
            esc(&c.message_type),
            esc(&c.channel),
            r.decision,
            fmt(r.srm_p_value)
        );
    }
    body.push_str("</table>");
    body.push_str(&promises(promised));
    // SRM flags.
    body.push_str("<h2>Sample-ratio mismatch</h2>");
    let mut flagged: Vec<(&str, f64)> = reads
        .iter()
        .filter(|r| r.decision == "invalid")
        .filter_map(|r| Some((cells[r.cell].campaign.as_str(), r.srm_p_value?)))
        .collect();
    flagged.dedup_by(|a, b| a.0 == b.0);
    if flagged.is_empty() {
        body.push_str("<p>No campaign's split differs from its logged propensities.</p>");
    } else {
        body.push_str("<table><tr><th>campaign</th><th>SRM p-value</th></tr>");
        for (c, p) in flagged {
            let _ = write!(body, r#"<tr class="srm-flag"><td>{}</td><td>{}</td></tr>"#, esc(c), fmt(Some(p)));
        }
        body.push_str(
            "</table><p>These campaigns are <b>invalid</b>: rows were lost or assigned off their propensities.</p>",
        );
    }
    // Forest plots, one per campaign.
    body.push_str("<h2>Campaigns</h2>");
    let mut i = 0;
    while i < reads.len() {
        let campaign = &cells[reads[i].cell].campaign;
        let mut rows = Vec::new();
        while i < reads.len() && &cells[reads[i].cell].campaign == campaign {
            rows.push((&cells[reads[i].cell], &reads[i]));
            i += 1;
        }
        body.push_str(&forest(campaign, &rows));
    }
    // Cumulative effects per arm.
    body.push_str("<h2>Cumulative effects per arm</h2><p>The success metric's effect pooled over the arm's campaigns whose window has closed, after each campaign, with its 95% interval.</p>");
    for a in arms.iter().filter(|a| a.role == Role::Success && !a.cumulative.is_empty()) {
        let day = |d: NaiveDate| (d - s).num_days() as f64;
        let z = stats::z_quantile(1.0 - settings.alpha / 2.0);
        let line = |label: &str, color, k: f64, dashed| Line {
            label: label.to_string(),
            color,
            points: a.cumulative.iter().map(|(d, e, se)| (day(*d), e + k * z * se)).collect(),
            dashed,
        };
        let title = format!("{} · {} · {}", a.message_type, a.channel, a.metric.name());
        let _ = write!(
            body,
            r#"<div class="cumulative">{}</div>"#,
            chart(
                &title,
                "last send of the campaign (days before the snapshot)",
                "effect (treatment − holdout)",
                &[
                    line("pooled effect", COLORS[0], 0.0, false),
                    line("95% interval", COLORS[1], -1.0, true),
                    line("", COLORS[1], 1.0, true)
                ],
                &[],
            )
        );
    }
    // Pooled arms.
    body.push_str("<h2>Arms, pooled over campaigns</h2><table><tr><th>message type</th><th>channel</th><th>metric</th><th>campaigns</th><th>treatment</th><th>holdout</th><th>effect</th><th>95% interval</th><th>MDE</th><th>differ across campaigns (p)</th></tr>");
    for a in arms {
        let (lo, hi) = stats::interval(a.effect, a.se, settings.alpha, Look::Fixed);
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>[{}, {}]</td><td>{}</td><td>{}</td></tr>",
            esc(&a.message_type),
            esc(&a.channel),
            a.metric.name(),
            a.campaigns,
            a.n_treatment,
            a.n_holdout,
            fmt(Some(a.effect)),
            fmt(Some(lo)),
            fmt(Some(hi)),
            fmt(Some(stats::minimum_detectable_effect(a.se, settings.alpha, settings.power))),
            fmt(a.heterogeneity_p)
        );
    }
    body.push_str("</table>");
    // Segments that differ.
    body.push_str("<h2>Where a message helps and where it hurts</h2><p>Segments whose effects differ (Cochran's Q, p below α), pooled over the closed campaigns; the full table is <code>readout_segments</code>.</p><table><tr><th>message type</th><th>channel</th><th>metric</th><th>segment</th><th>treatment</th><th>holdout</th><th>effect</th><th>95% interval</th><th>Q p-value</th></tr>");
    for r in segments.iter().filter(|r| r.heterogeneity_p.is_some_and(|p| p < settings.alpha)) {
        let (lo, hi) = stats::interval(r.effect, r.se, settings.alpha, Look::Fixed);
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} = {}</td><td>{}</td><td>{}</td><td>{}</td><td>[{}, {}]</td><td>{}</td></tr>",
            esc(&r.message_type),
            esc(&r.channel),
            r.metric.name(),
            r.dimension,
            esc(&r.segment),
            r.n_treatment,
            r.n_holdout,
            fmt(Some(r.effect)),
            fmt(Some(lo)),
            fmt(Some(hi)),
            fmt(r.heterogeneity_p)
        );
    }
    body.push_str("</table>");
    body.push_str(COUNT_PLOTS);
    frame(&format!("Experiment readout, {s}"), &body)
}
