//! Small building blocks for the human-readable run reports: self-contained HTML pages
//! with inline SVG line charts, so a report opens in any browser with nothing installed.

use std::fmt::Write;

pub(crate) const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(crate) struct Line {
    pub label: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// A line chart as an inline SVG element.
pub(crate) fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line],
    markers: &[(f64, f64, &'static str)],
) -> String {
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
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<text x="{}" y="18" font-size="13" font-weight="bold">{}</text>"#, l, esc(title));
    let _ = write!(
        s,
        r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        w - l - r,
        h - t - b
    );
    for i in 0..=5 {
        let fx = x0 + (x1 - x0) * i as f64 / 5.0;
        let fy = y0 + (y1 - y0) * i as f64 / 5.0;
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#eee"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##,
            px(fx),
            t,
            h - b,
            h - b + 14.0,
            fmt_tick(fx, x1 - x0)
        );
        let _ = write!(
            s,
            r##"<line x1="{1}" y1="{0:.1}" x2="{2}" y2="{0:.1}" stroke="#eee"/><text x="{3}" y="{4:.1}" text-anchor="end">{5}</text>"##,
            py(fy),
            l,
            w - r,
            l - 4.0,
            py(fy) + 4.0,
            fmt_tick(fy, y1 - y0)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        l + (w - l - r) / 2.0,
        h - 8.0,
        esc(x_label)
    );
    let _ = write!(
        s,
        r#"<text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>"#,
        t + (h - t - b) / 2.0,
        t + (h - t - b) / 2.0,
        esc(y_label)
    );
    if y0 < 0.0 && y1 > 0.0 {
        let _ = write!(s, r##"<line x1="{l}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#666"/>"##, py(0.0), w - r);
    }
    let mut legend = 0;
    for line in lines {
        let pts: Vec<String> = line.points.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        let dash = if line.dashed { r#" stroke-dasharray="5,4""# } else { "" };
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            line.color,
            pts.join(" ")
        );
        if line.label.is_empty() {
            continue;
        }
        let ly = t + 14.0 * legend as f64 + 8.0;
        legend += 1;
        let _ = write!(
            s,
            r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="{3}" stroke-width="2"{dash}/><text x="{4}" y="{5}">{6}</text>"#,
            w - r + 8.0,
            ly,
            w - r + 30.0,
            line.color,
            w - r + 34.0,
            ly + 4.0,
            esc(&line.label)
        );
    }
    for (x, y, color) in markers {
        let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{color}"/>"#, px(*x), py(*y));
    }
    s.push_str("</svg>");
    s
}

fn fmt_tick(v: f64, range: f64) -> String {
    if range <= 2.0 {
        format!("{v:.2}")
    } else if range <= 20.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// The page frame shared by every report.
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#f4f4f4}}small{{color:#666}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    )
}
