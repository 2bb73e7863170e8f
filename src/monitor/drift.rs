//! Drift: tonight's features against the training snapshots' (the reference saved with the
//! model), and tonight's scores, plan and grace recommendations against the last nights'.
//!
//! Features computed from `messages` follow the campaign calendar (who was messaged when),
//! not the users: their distances are shown, not judged; the plan's own mix is judged
//! against the last nights instead.
//!
//! Numbers are compared on the reference's fixed quantile bins (PSI and Jensen–Shannon);
//! categories by the largest change of a value's share (L-infinity), or, below
//! `monitor.min_rows` rows, by a chi-squared test, where a share's change is mostly noise.

use std::collections::BTreeMap;

use polars::prelude::*;

use super::row::Check;
use crate::config::Monitor;
use crate::distribution::{Binned, Categories, Histogram, jensen_shannon, psi};
use crate::error::{PolarsContext, Result};
use crate::features::{FEATURES, follows_campaigns};

/// One feature's distribution tonight next to its reference, for the page's small multiples.
#[derive(Debug, Clone)]
pub(crate) struct Compared {
    pub feature: String,
    /// The bins' labels, then "missing".
    pub bins: Vec<String>,
    pub reference: Vec<f64>,
    pub tonight: Vec<f64>,
    /// PSI for numbers, L-infinity for categories: how far apart.
    pub distance: f64,
}

fn numbers(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let c = df.column(name).ctx(name)?.cast(&DataType::Float64).ctx(name)?;
    Ok(c.f64().ctx(name)?.iter().collect())
}

fn categories(df: &DataFrame, name: &str) -> Result<Categories> {
    let c = df.column(name).ctx(name)?.cast(&DataType::String).ctx(name)?;
    Ok(Categories::of(c.str().ctx(name)?.iter(), None))
}

/// The bins of a histogram as text: `≤ e0`, `(e0, e1]`, …, `> e_last`, `missing`.
fn bin_labels(h: &Histogram) -> Vec<String> {
    let mut labels = Vec::new();
    for i in 0..=h.edges.len() {
        labels.push(match i {
            0 if h.edges.is_empty() => "all".to_string(),
            0 => format!("≤ {}", short(h.edges[0])),
            i if i == h.edges.len() => format!("> {}", short(h.edges[i - 1])),
            i => format!("≤ {}", short(h.edges[i])),
        });
    }
    labels.push("missing".into());
    labels
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() { format!("{v:.0}") } else { format!("{v:.3}") }
}

/// A categorical distribution against its reference: L-infinity, or chi-squared when small.
fn category_check(
    check: &'static str,
    subject: String,
    tonight: &Categories,
    reference: &Categories,
    cfg: &Monitor,
    baseline: String,
) -> Check {
    if tonight.total() < cfg.min_rows as f64 {
        return Check::p_value(check, subject, tonight.chi_squared_p(reference), baseline);
    }
    let (d, which) = tonight.l_infinity(reference);
    let share = |c: &Categories, v: &str| c.0.get(v).copied().unwrap_or(0.0) / c.total().max(1.0);
    let text = match which {
        Some(v) => format!("{baseline} ({v}: {:.3} then {:.3})", share(reference, &v), share(tonight, &v)),
        None => format!("{baseline} (the same shares)"),
    };
    Check::new(check, subject, "l_infinity", d, text).judge(d, cfg.limits.category_share, None)
}

/// The features' checks, what the page draws of them, and tonight's counts on the
/// reference's bins.
pub(crate) struct FeatureDrift {
    pub checks: Vec<Check>,
    pub compared: Vec<Compared>,
    pub summary: BTreeMap<String, Binned>,
}

/// Every feature of tonight's table against the training snapshots' reference.
pub(crate) fn features(
    features: &DataFrame,
    reference: &BTreeMap<String, Binned>,
    trained_on: &str,
    cfg: &Monitor,
) -> Result<FeatureDrift> {
    let (mut checks, mut compared, mut summary) = (Vec::new(), Vec::new(), BTreeMap::new());
    let baseline = format!("the training snapshots ({trained_on})");
    for f in FEATURES {
        let (Some(r), Ok(_)) = (reference.get(f.name), features.column(f.name)) else { continue };
        match r {
            Binned::Numeric(r) => {
                let mut h = r.empty_like();
                h.count(&numbers(features, f.name)?, None);
                let (p, js) = (psi(&h, r), jensen_shannon(&h, r));
                for (statistic, value, limit) in
                    [("psi", p, cfg.limits.psi), ("jensen_shannon", js, cfg.limits.jensen_shannon)]
                {
                    checks.push(if follows_campaigns(f.name) {
                        Check::new(
                            "feature_drift",
                            f.name.to_string(),
                            statistic,
                            value,
                            format!("{baseline}; follows the campaign calendar"),
                        )
                    } else {
                        Check::new("feature_drift", f.name.to_string(), statistic, value, baseline.clone())
                            .judge(value, limit, None)
                    });
                }
                compared.push(Compared {
                    feature: f.name.to_string(),
                    bins: bin_labels(r),
                    reference: r.shares(),
                    tonight: h.shares(),
                    distance: p,
                });
                summary.insert(f.name.to_string(), Binned::Numeric(h));
            }
            Binned::Categorical(r) => {
                let c = categories(features, f.name)?;
                let check = category_check("feature_drift", f.name.to_string(), &c, r, cfg, baseline.clone());
                let keys: Vec<String> =
                    r.0.keys()
                        .chain(c.0.keys())
                        .cloned()
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                let shares = |x: &Categories| {
                    keys.iter().map(|k| x.0.get(k).copied().unwrap_or(0.0) / x.total().max(1.0)).collect()
                };
                compared.push(Compared {
                    feature: f.name.to_string(),
                    bins: keys.clone(),
                    reference: shares(r),
                    tonight: shares(&c),
                    distance: c.l_infinity(r).0,
                });
                checks.push(check);
                summary.insert(f.name.to_string(), Binned::Categorical(c));
            }
        }
    }
    Ok(FeatureDrift { checks, compared, summary })
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt())
}

/// A mean tonight against the last nights': relative change, with its z.
fn mean_check(
    check: &'static str,
    subject: &str,
    tonight: &[f64],
    before: &[f64],
    cfg: &Monitor,
    baseline: &str,
) -> Option<Check> {
    let ((mt, st), (mb, sb)) = (mean_sd(tonight), mean_sd(before));
    if tonight.is_empty() || before.is_empty() || mb.abs() < 1e-12 {
        return None;
    }
    let se = (st * st / tonight.len() as f64 + sb * sb / before.len() as f64).sqrt();
    let change = mt / mb - 1.0;
    Some(Check::new(check, subject.to_string(), "relative_change", change, format!("{baseline} (mean {mb:.5})")).judge(
        change.abs(),
        cfg.limits.mean_change,
        Some((if se > 0.0 { (mt - mb) / se } else { 0.0 }, cfg.min_z)),
    ))
}

fn floats(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    Ok(numbers(df, name)?.into_iter().flatten().collect())
}

/// Tonight's scores against the last nights': the distribution on the earlier scores'
/// deciles (PSI), the mean, and the risk deciles' shares.
pub(crate) fn scores(tonight: &DataFrame, before: &DataFrame, baseline: &str, cfg: &Monitor) -> Result<Vec<Check>> {
    let (t, b) = (numbers(tonight, "churn_probability")?, numbers(before, "churn_probability")?);
    let reference = Histogram::of_quantiles(&b, None, 10);
    let mut h = reference.empty_like();
    h.count(&t, None);
    let p = psi(&h, &reference);
    let mut out =
        vec![Check::new("score_drift", "scores.churn_probability".into(), "psi", p, baseline.to_string()).judge(
            p,
            cfg.limits.psi,
            None,
        )];
    let (tf, bf): (Vec<f64>, Vec<f64>) = (t.iter().flatten().copied().collect(), b.iter().flatten().copied().collect());
    out.extend(mean_check("score_drift", "scores.churn_probability", &tf, &bf, cfg, baseline));
    out.push(category_check(
        "score_drift",
        "scores.risk_decile".into(),
        &categories(tonight, "risk_decile")?,
        &categories(before, "risk_decile")?,
        cfg,
        baseline.to_string(),
    ));
    Ok(out)
}

/// Tonight's plan against the last nights': the mix of actions, channels and groups, and
/// the mean expected uplift.
pub(crate) fn plan(tonight: &DataFrame, before: &DataFrame, baseline: &str, cfg: &Monitor) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    for c in ["action", "channel", "group"] {
        out.push(category_check(
            "plan_drift",
            format!("interventions.{c}"),
            &categories(tonight, c)?,
            &categories(before, c)?,
            cfg,
            baseline.to_string(),
        ));
    }
    out.extend(mean_check(
        "plan_drift",
        "interventions.expected_uplift",
        &floats(tonight, "expected_uplift")?,
        &floats(before, "expected_uplift")?,
        cfg,
        baseline,
    ));
    Ok(out)
}

/// Tonight's grace recommendations against the last nights': the lengths' mix and the
/// mean probability of recovery.
pub(crate) fn grace(tonight: &DataFrame, before: &DataFrame, baseline: &str, cfg: &Monitor) -> Result<Vec<Check>> {
    let mut out = vec![category_check(
        "grace_drift",
        "grace.recommended_grace_days".into(),
        &categories(tonight, "recommended_grace_days")?,
        &categories(before, "recommended_grace_days")?,
        cfg,
        baseline.to_string(),
    )];
    let (t, b) = (floats(tonight, "p_recover")?, floats(before, "p_recover")?);
    if !t.is_empty() && !b.is_empty() {
        let ((mt, st), (mb, sb)) = (mean_sd(&t), mean_sd(&b));
        let se = (st * st / t.len() as f64 + sb * sb / b.len() as f64).sqrt();
        out.push(
            Check::new(
                "grace_drift",
                "grace.p_recover".into(),
                "absolute_change",
                mt - mb,
                format!("{baseline} (mean {mb:.4})"),
            )
            .judge(
                (mt - mb).abs(),
                cfg.limits.p_recover_change,
                Some((if se > 0.0 { (mt - mb) / se } else { 0.0 }, cfg.min_z)),
            ),
        );
    }
    Ok(out)
}
