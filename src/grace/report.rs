//! The grace stage's run report: one self-contained HTML page with inline SVG charts
//! (recovery curves by failure reason, the value curves of a few open episodes) and the
//! evaluation tables, written next to the outputs so that a person can open it.

use std::fmt::Write;

use super::GraceReport;
use crate::config::Grace as GraceConfig;

/// An open episode whose value curve the report draws.
pub(crate) struct Example {
    pub user_id: String,
    pub reason: String,
    pub elapsed: usize,
    pub price: f64,
    pub values: Vec<f64>,
    pub best: usize,
}

const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Line {
    label: String,
    color: &'static str,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

/// A line chart as an inline SVG element.
fn chart(title: &str, x_label: &str, y_label: &str, lines: &[Line], markers: &[(f64, f64, &'static str)]) -> String {
    // The right margin holds the legend (labels up to about 40 characters).
    let (w, h, l, r, t, b) = (820.0, 340.0, 60.0, 280.0, 30.0, 45.0);
    let all = lines.iter().flat_map(|s| s.points.iter().copied()).chain(markers.iter().map(|(x, y, _)| (*x, *y)));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    y0 = y0.min(0.0);
    if (y1 - y0).abs() < 1e-12 {
        y1 = y0 + 1.0;
    }
    let pad = 0.05 * (y1 - y0);
    let (y0, y1) = (if y0 < 0.0 { y0 - pad } else { y0 }, y1 + pad);
    let px = |x: f64| l + (x - x0) / (x1 - x0).max(1e-12) * (w - l - r);
    let py = |y: f64| h - b - (y - y0) / (y1 - y0) * (h - t - b);
    let mut s = String::new();
    let _ = write!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#);
    let _ = write!(s, r#"<text x="{}" y="18" font-size="13" font-weight="bold">{}</text>"#, l, esc(title));
    let _ = write!(s, r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#999"/>"##, w - l - r, h - t - b);
    for i in 0..=5 {
        let fx = x0 + (x1 - x0) * i as f64 / 5.0;
        let fy = y0 + (y1 - y0) * i as f64 / 5.0;
        let _ = write!(s, r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#eee"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4:.0}</text>"##, px(fx), t, h - b, h - b + 14.0, fx);
        let _ = write!(s, r##"<line x1="{1}" y1="{0:.1}" x2="{2}" y2="{0:.1}" stroke="#eee"/><text x="{3}" y="{4:.1}" text-anchor="end">{5}</text>"##, py(fy), l, w - r, l - 4.0, py(fy) + 4.0, fmt_tick(fy, y1 - y0));
    }
    let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, l + (w - l - r) / 2.0, h - 8.0, esc(x_label));
    let _ = write!(s, r#"<text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>"#, t + (h - t - b) / 2.0, t + (h - t - b) / 2.0, esc(y_label));
    if y0 < 0.0 && y1 > 0.0 {
        let _ = write!(s, r##"<line x1="{l}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#666"/>"##, py(0.0), w - r);
    }
    let mut legend = 0;
    for line in lines {
        let pts: Vec<String> = line.points.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        let dash = if line.dashed { r#" stroke-dasharray="5,4""# } else { "" };
        let _ = write!(s, r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#, line.color, pts.join(" "));
        if line.label.is_empty() {
            continue;
        }
        let ly = t + 14.0 * legend as f64 + 8.0;
        legend += 1;
        let _ = write!(s, r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="{3}" stroke-width="2"{dash}/><text x="{4}" y="{5}">{6}</text>"#, w - r + 8.0, ly, w - r + 30.0, line.color, w - r + 34.0, ly + 4.0, esc(&line.label));
    }
    for (x, y, color) in markers {
        let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{color}"/>"#, px(*x), py(*y));
    }
    s.push_str("</svg>");
    s
}

fn fmt_tick(v: f64, range: f64) -> String {
    if range <= 2.0 { format!("{v:.2}") } else if range <= 20.0 { format!("{v:.1}") } else { format!("{v:.0}") }
}

fn est(e: &super::Estimate) -> String {
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
        rep.episodes_in_history, cfg.history_days, rep.open_episodes, rep.end_now, cfg.value_months, cfg.cost_fraction, cfg.max_days
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

    s.push_str("<h2>Recovery curves by failure reason</h2><p>P(payment recovered by day d after the failure) if grace \
                lasted the whole time: the model's average over the reason's episodes (solid) and the empirical \
                Kaplan–Meier curve of the training rows (dashed; censored where grace ended).</p>");
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
        s.push_str("<h2>Value of each grace length: example open episodes</h2><p>Expected net value (currency units) \
                    of a total grace of g days; the dot is the recommendation.</p>");
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
        s.push_str(&chart("Value by total grace length", "total grace (days from failure)", "expected net value", &lines, &markers));
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
                ev.episodes, ev.failures_from, ev.failures_to, ev.refit_every_days, ev.skipped_without_model, ev.matched, ev.predicted_value
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
            let _ = write!(s, " Come-back hazard: {} expired episodes, {} days, {} come-backs.", c.episodes, c.rows, c.events);
        }
        s.push_str("</p>");
    }
    s.push_str("</body></html>\n");
    s
}
