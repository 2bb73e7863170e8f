//! The night's page, `reports/snapshot=S/index.html`: links to every report of the night,
//! the alerts and warnings first, small multiples of the drifted features against their
//! reference, the backtest over time, then every check.
//!
//! A small script puts on `<body>` what the browser laid out (`data-drift-plots`,
//! `data-backtest-plots`, `data-alerts`) and whether a script failed (`data-script-errors`),
//! which the test that renders the page in headless Chromium reads.

use std::fmt::Write;

use chrono::NaiveDate;

use super::drift::Compared;
use super::performance::Backtested;
use super::row::{Check, Status};
use crate::report::{COLORS, Line, chart, esc, page as frame};

const SCRIPT: &str = "<script>window.addEventListener('error',()=>{const b=document.body.dataset;\
b.scriptErrors=String(Number(b.scriptErrors||0)+1)});addEventListener('load',()=>{const n=s=>[...document.\
querySelectorAll(s)].filter(e=>{const r=e.getBoundingClientRect();return r.width>0&&r.height>0}).length;\
const b=document.body.dataset;b.driftPlots=n('svg.drift');b.backtestPlots=n('div.backtest svg');\
b.alerts=document.querySelectorAll('tr.alert').length;b.scriptErrors=b.scriptErrors||'0';});</script>";

const STYLE: &str = "<style>tr.alert td{background:#fde0dc}tr.warn td{background:#fff4d6}\
.multiples{display:flex;flex-wrap:wrap;gap:8px}td.l{text-align:left}</style>";

/// One feature's reference and tonight's shares as grouped bars.
fn small_multiple(c: &Compared, status: Status) -> String {
    let (w, h, l, b, t) = (300.0, 170.0, 30.0, 40.0, 22.0);
    let n = c.bins.len().max(1) as f64;
    let top = c.reference.iter().chain(&c.tonight).fold(0.0f64, |a, &v| a.max(v)).max(1e-9);
    let step = (w - l - 8.0) / n;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="drift" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="9">"#
    );
    let color = if status == Status::Alert {
        "#d62728"
    } else if status == Status::Warn {
        "#ff7f0e"
    } else {
        COLORS[0]
    };
    let _ = write!(
        s,
        r#"<text x="{l}" y="13" font-size="11" font-weight="bold">{} · {:.3}</text>"#,
        esc(&c.feature),
        c.distance
    );
    for (i, label) in c.bins.iter().enumerate() {
        let x = l + i as f64 * step;
        for (k, (v, fill)) in [(c.reference[i], "#bbb"), (c.tonight[i], color)].into_iter().enumerate() {
            let bh = v / top * (h - t - b);
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>{}: {} {:.3}</title></rect>"#,
                x + k as f64 * step * 0.45,
                h - b - bh,
                step * 0.42,
                bh,
                esc(label),
                if k == 0 { "reference" } else { "tonight" },
                v
            );
        }
        if c.bins.len() <= 12 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" transform="rotate(45 {:.1} {:.1})">{}</text>"#,
                x,
                h - b + 10.0,
                x,
                h - b + 10.0,
                esc(&label.chars().take(12).collect::<String>())
            );
        }
    }
    let _ = write!(s, r##"<line x1="{l}" x2="{}" y1="{}" y2="{}" stroke="#999"/></svg>"##, w - 4.0, h - b, h - b);
    s
}

fn rows(checks: &[&Check]) -> String {
    let mut s = String::from(
        "<table><tr><th>status</th><th>check</th><th>subject</th><th>statistic</th><th>value</th><th>threshold</th>\
         <th>baseline</th></tr>",
    );
    for c in checks {
        let _ = write!(
            s,
            "<tr class=\"{st}\"><td>{st}</td><td class=l>{}</td><td class=l>{}</td><td class=l>{}</td><td>{:.4}</td>\
             <td>{}</td><td class=l><small>{}</small></td></tr>",
            c.check,
            esc(&c.subject),
            c.statistic,
            c.value,
            c.threshold.map_or(String::new(), |t| format!("{t}")),
            esc(&c.baseline),
            st = c.status.name(),
        );
    }
    s.push_str("</table>");
    s
}

pub(crate) fn page(
    s: NaiveDate,
    checks: &[Check],
    compared: &[Compared],
    backtest: &[Backtested],
    links: &[(String, String)],
    skipped: &[String],
) -> String {
    let mut body = String::from(STYLE);
    let count = |st: Status| checks.iter().filter(|c| c.status == st).count();
    let _ = write!(
        body,
        "<p>Snapshot {s}: <b>{} alert(s)</b>, {} warning(s), {} check(s) ok.</p>",
        count(Status::Alert),
        count(Status::Warn),
        count(Status::Ok)
    );
    body.push_str("<h2>Reports of the night</h2><ul>");
    for (name, file) in links {
        let _ = write!(body, "<li><a href=\"{}\">{}</a></li>", esc(file), esc(name));
    }
    body.push_str("</ul>");
    let mut flagged: Vec<&Check> = checks.iter().filter(|c| c.status != Status::Ok).collect();
    // The worst first, and within a status the furthest past its limit: a root cause (a platform's
    // skips doubled) above its echoes (every country's skips up by its share of that platform).
    flagged.sort_by(|a, b| b.status.cmp(&a.status).then(b.severity().total_cmp(&a.severity())));
    body.push_str("<h2>Alerts and warnings</h2>");
    if flagged.is_empty() {
        body.push_str("<p>None: every check is within its limits.</p>");
    } else {
        body.push_str(&rows(&flagged));
    }
    if !skipped.is_empty() {
        body.push_str("<p><small>Not checked tonight: ");
        body.push_str(&skipped.iter().map(|x| esc(x)).collect::<Vec<_>>().join("; "));
        body.push_str("</small></p>");
    }
    // The features that drifted; with none, the six nearest to it.
    let worst = |f: &str| {
        checks
            .iter()
            .filter(|c| c.check == "feature_drift" && c.subject == f)
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok)
    };
    let mut shown: Vec<&Compared> = compared.iter().filter(|c| worst(&c.feature) != Status::Ok).collect();
    let title = if shown.is_empty() {
        shown = compared.iter().collect();
        shown.sort_by(|a, b| b.distance.total_cmp(&a.distance));
        shown.truncate(6);
        "No feature drifted: the six nearest to it"
    } else {
        shown.sort_by(|a, b| b.distance.total_cmp(&a.distance));
        "Drifted features"
    };
    if !shown.is_empty() {
        let _ = write!(
            body,
            "<h2>{title}</h2><p><small>Shares per bin of the training snapshots' quantiles (grey) and tonight's \
             (colour); the title gives the PSI (numbers) or the largest change of a share (categories).</small></p>\
             <div class=multiples>"
        );
        for c in &shown {
            body.push_str(&small_multiple(c, worst(&c.feature)));
        }
        body.push_str("</div>");
    }
    body.push_str("<h2>Backtest</h2>");
    if backtest.is_empty() {
        body.push_str("<p>No night's labels have closed yet: the backtest starts H days after the first scores.</p>");
    } else {
        let first = backtest[0].night;
        let x = |d: NaiveDate| (d - first).num_days() as f64;
        let lines = [
            Line {
                label: "expected AUC (CBPE, that night)".into(),
                color: COLORS[0],
                points: backtest.iter().map(|b| (x(b.night), b.expected.auc)).collect(),
                dashed: true,
            },
            Line {
                label: "realised AUC".into(),
                color: COLORS[1],
                points: backtest.iter().map(|b| (x(b.night), b.realised_auc)).collect(),
                dashed: false,
            },
        ];
        let _ = write!(
            body,
            "<div class=backtest>{}</div>",
            chart(
                &format!("AUC of the scores of each night since {first}"),
                "days since the first night",
                "AUC",
                &lines,
                &[]
            )
        );
        body.push_str(
            "<table><tr><th>night</th><th>model</th><th>users</th><th>churned</th><th>expected AUC</th>\
             <th>realised AUC</th><th>realised ECE</th><th>ECE by chance</th><th>realised Brier</th></tr>",
        );
        for b in backtest {
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=l>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td>\
                 <td>{:.4}</td><td>{:.4}</td></tr>",
                b.night,
                esc(&b.model),
                b.users,
                b.churned,
                b.expected.auc,
                b.realised_auc,
                b.realised_ece,
                b.expected.ece_by_chance,
                b.realised_brier
            );
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>Every check</h2>");
    body.push_str(&rows(&checks.iter().collect::<Vec<_>>()));
    body.push_str(SCRIPT);
    frame(&format!("retain: the night of {s}"), &body)
}
