//! The statistics of a readout, on plain numbers: propensity-weighted means with CUPED,
//! their delta-method variances, fixed-horizon and always-valid intervals, the
//! sample-ratio-mismatch test, pooling and heterogeneity across groups, the minimum
//! detectable effect and the holdout a planned effect needs.
//!
//! Why by hand on slices rather than in a dataframe: every number here is a few sums over
//! one arm's rows, and the same functions serve the nightly readout, its segments, the
//! pooled arms, the planner and `retain table readout`; the distributions come from
//! `statrs`.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

fn std_normal() -> Normal {
    Normal::new(0.0, 1.0).expect("the standard normal")
}

/// The standard normal quantile.
pub(crate) fn z_quantile(p: f64) -> f64 {
    std_normal().inverse_cdf(p)
}

/// Two-sided p-value of a z statistic.
pub(crate) fn two_sided_p(z: f64) -> f64 {
    if z.is_nan() { f64::NAN } else { (2.0 * std_normal().sf(z.abs())).min(1.0) }
}

/// One unit of an experiment for one metric: its arm, its weight (1 / the logged
/// probability of its assignment), its outcome and its own pre-period value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Unit {
    pub treated: bool,
    pub weight: f64,
    pub y: f64,
    pub pre: f64,
}

/// Treatment against holdout on one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Estimate {
    pub n_treatment: u64,
    pub n_holdout: u64,
    /// The arms' weighted (Hájek) means, CUPED-adjusted: `effect` is their difference.
    pub mean_treatment: f64,
    pub mean_holdout: f64,
    pub effect: f64,
    /// Standard error of `effect` (delta method, CUPED-adjusted).
    pub se: f64,
    /// The same without the pre-period adjustment.
    pub se_unadjusted: f64,
    /// The metric's per-unit standard deviation (both arms, unadjusted): the scale of the
    /// always-valid test's mixture.
    pub sd: f64,
    /// Per-unit variance after the adjustment, at the arms' effective sizes: what the
    /// planner scales to other sizes.
    pub unit_variance: f64,
}

impl Estimate {
    /// The share of the effect's variance the pre-period adjustment removed.
    pub(crate) fn variance_reduction(&self) -> f64 {
        if self.se_unadjusted > 0.0 { 1.0 - (self.se / self.se_unadjusted).powi(2) } else { 0.0 }
    }
}

/// One arm's weighted means of y and pre, and the delta-method (co)variances of those
/// means: each mean is the ratio Σ w v / Σ w, linearised as Σ w² (v − m)(u − m_u) / (Σ w)².
struct Arm {
    n: u64,
    w: f64,
    w2: f64,
    mean_y: f64,
    mean_x: f64,
    var_y: f64,
    var_x: f64,
    cov: f64,
}

fn arm(units: &[Unit], treated: bool) -> Arm {
    let rows = || units.iter().filter(move |u| u.treated == treated);
    let (mut n, mut w, mut w2, mut sy, mut sx) = (0u64, 0.0, 0.0, 0.0, 0.0);
    for u in rows() {
        n += 1;
        w += u.weight;
        w2 += u.weight * u.weight;
        sy += u.weight * u.y;
        sx += u.weight * u.pre;
    }
    let (mean_y, mean_x) = (sy / w, sx / w);
    let (mut var_y, mut var_x, mut cov) = (0.0, 0.0, 0.0);
    for u in rows() {
        let (dy, dx, w2u) = (u.y - mean_y, u.pre - mean_x, u.weight * u.weight);
        var_y += w2u * dy * dy;
        var_x += w2u * dx * dx;
        cov += w2u * dy * dx;
    }
    let ww = w * w;
    Arm { n, w, w2, mean_y, mean_x, var_y: var_y / ww, var_x: var_x / ww, cov: cov / ww }
}

/// Treatment against holdout, with the pre-period adjustment (CUPED) when `cuped`: the
/// effect on y minus θ times the (chance) difference of the arms' pre-period means, θ
/// the one that minimises the effect's delta-method variance, Cov(Δy, Δpre) / Var(Δpre).
/// The adjustment then never widens the interval, and the adjusted means (each arm's
/// mean of y − θ (pre − the arms' pooled mean of pre)) keep the unadjusted ones'
/// expectations. None when an arm has fewer than two units, or a weight is not positive.
pub(crate) fn estimate(units: &[Unit], cuped: bool) -> Option<Estimate> {
    let (t, h) = (arm(units, true), arm(units, false));
    if t.n < 2 || h.n < 2 || units.iter().any(|u| !(u.weight.is_finite() && u.weight > 0.0)) {
        return None;
    }
    let (var_dy, var_dx, cov) = (t.var_y + h.var_y, t.var_x + h.var_x, t.cov + h.cov);
    let theta = if cuped && var_dx > 0.0 { cov / var_dx } else { 0.0 };
    let mean_x = (t.w * t.mean_x + h.w * h.mean_x) / (t.w + h.w);
    let mean_treatment = t.mean_y - theta * (t.mean_x - mean_x);
    let mean_holdout = h.mean_y - theta * (h.mean_x - mean_x);
    let var = (var_dy - 2.0 * theta * cov + theta * theta * var_dx).max(0.0);
    // Per-unit variance: the effect's variance at equal weights, (Σw)²/Σw² units per arm.
    let (e_t, e_h) = (t.w * t.w / t.w2, h.w * h.w / h.w2);
    let all: f64 = t.w + h.w;
    let my = (t.w * t.mean_y + h.w * h.mean_y) / all;
    let sd = (units.iter().map(|u| u.weight * (u.y - my).powi(2)).sum::<f64>() / all).sqrt();
    Some(Estimate {
        n_treatment: t.n,
        n_holdout: h.n,
        mean_treatment,
        mean_holdout,
        effect: mean_treatment - mean_holdout,
        se: var.sqrt(),
        se_unadjusted: var_dy.sqrt(),
        sd,
        unit_variance: var / (1.0 / e_t + 1.0 / e_h),
    })
}

/// How an interval is read: at a fixed horizon, or always valid (a normal-mixture
/// sequential test, so that looking every night does not inflate the error rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Look {
    Fixed,
    /// Always valid, with a mixture of standard deviation `tau` on the effect's scale.
    Sequential {
        tau: f64,
    },
}

/// The two-sided interval of level 1 − `alpha` around `effect`.
pub(crate) fn interval(effect: f64, se: f64, alpha: f64, look: Look) -> (f64, f64) {
    let half = match look {
        Look::Fixed => z_quantile(1.0 - alpha / 2.0) * se,
        Look::Sequential { tau } => {
            // Reject θ₀ when the mixture likelihood ratio reaches 1/α (Robbins; Johari et
            // al. 2017, "Peeking at A/B tests"): |θ̂ − θ₀|² ≥ V(V+τ²)/τ² (ln((V+τ²)/V) − 2 ln α).
            let (v, t2) = (se * se, tau * tau);
            if v <= 0.0 || t2 <= 0.0 {
                return (f64::NAN, f64::NAN);
            }
            (v * (v + t2) / t2 * (((v + t2) / v).ln() - 2.0 * alpha.ln())).sqrt()
        }
    };
    (effect - half, effect + half)
}

/// The p-value of "no effect": two-sided at a fixed horizon; always valid (1 / the
/// mixture likelihood ratio, capped at 1) for a sequential look.
pub(crate) fn p_value(effect: f64, se: f64, look: Look) -> f64 {
    match look {
        Look::Fixed => two_sided_p(effect / se),
        Look::Sequential { tau } => {
            let (v, t2) = (se * se, tau * tau);
            if v <= 0.0 || t2 <= 0.0 {
                return f64::NAN;
            }
            let log_lr = 0.5 * (v / (v + t2)).ln() + t2 * effect * effect / (2.0 * v * (v + t2));
            (-log_lr).exp().min(1.0)
        }
    }
}

/// The smallest effect a fixed-horizon test at `alpha` (two-sided) detects with
/// probability `power` at this standard error.
pub(crate) fn minimum_detectable_effect(se: f64, alpha: f64, power: f64) -> f64 {
    (z_quantile(1.0 - alpha / 2.0) + z_quantile(power)) * se
}

/// The smallest holdout fraction f with which `n` units (treatment and holdout together)
/// of per-unit variance `unit_variance` detect `effect` at `alpha` with `power`: the
/// standard error σ √(1/(f n) + 1/((1 − f) n)) must reach |effect| / (z₁₋α/₂ + z_power).
/// None when even an even split cannot.
pub(crate) fn holdout_needed(effect: f64, unit_variance: f64, n: f64, alpha: f64, power: f64) -> Option<f64> {
    let z = z_quantile(1.0 - alpha / 2.0) + z_quantile(power);
    let r = n * effect * effect / (unit_variance * z * z);
    // 1/f + 1/(1 − f) = 1 / (f (1 − f)) ≤ r.
    if r.is_nan() || r < 4.0 {
        return None;
    }
    Some((1.0 - (1.0 - 4.0 / r).sqrt()) / 2.0)
}

/// The sample-ratio-mismatch statistics of one cell against its logged propensities, as
/// (z, rows) parts for [`srm_p_value`].
///
/// A row logs the probability of its own arm only, so the arms' propensities are first
/// paired into assignment classes: a value logged in both arms is a class split evenly;
/// the values left are paired in order of size (the k-th largest treatment propensity with
/// the k-th largest holdout one, as in a design whose treatment share is the same across
/// its segments). Within a class of n rows the treatment count is binomial with
/// P(T) = π_T / (π_T + π_H); the classes are pooled into one z. Rows whose values cannot be
/// paired (unequal numbers of values left) are tested by [`srm_ht_z`].
pub(crate) fn srm_z(units: &[(bool, f64)]) -> Vec<(f64, u64)> {
    use std::collections::BTreeMap;
    let key = |p: f64| (p * 1e9).round() as i64;
    let (mut t, mut h): (BTreeMap<i64, u64>, BTreeMap<i64, u64>) = Default::default();
    for &(treated, p) in units {
        *(if treated { &mut t } else { &mut h }).entry(key(p)).or_default() += 1;
    }
    let mut pairs: Vec<(i64, i64)> = t.keys().filter(|k| h.contains_key(k)).map(|&k| (k, k)).collect();
    let left_t: Vec<i64> = t.keys().filter(|k| !h.contains_key(k)).rev().copied().collect();
    let left_h: Vec<i64> = h.keys().filter(|k| !t.contains_key(k)).rev().copied().collect();
    let paired_left = left_t.len() == left_h.len();
    if paired_left {
        pairs.extend(left_t.iter().copied().zip(left_h.iter().copied()));
    }
    let (mut observed, mut expected, mut var, mut n) = (0.0, 0.0, 0.0, 0u64);
    for (a, b) in pairs {
        let (nt, nh) = (t[&a], h[&b]);
        let p = a as f64 / (a + b) as f64;
        let m = (nt + nh) as f64;
        observed += nt as f64;
        expected += m * p;
        var += m * p * (1.0 - p);
        n += nt + nh;
    }
    let mut out = Vec::new();
    if var > 0.0 {
        out.push(((observed - expected) / var.sqrt(), n));
    }
    if !paired_left {
        let rest = units.iter().copied().filter(|&(_, p)| !(t.contains_key(&key(p)) && h.contains_key(&key(p))));
        out.extend(srm_ht_z(rest));
    }
    out
}

/// The sample-ratio-mismatch statistic without pairing: the Horvitz–Thompson estimates of
/// the eligible population from each arm, Σ 1/π, must agree. A user lands in at most one
/// arm, so each adds 1{T}/π_T − 1{H}/π_H, of mean 0 and variance 1/π_T + 1/π_H, estimated
/// without bias by Σ 1/π² over the rows. None without a unit in each arm.
pub(crate) fn srm_ht_z(units: impl IntoIterator<Item = (bool, f64)>) -> Option<(f64, u64)> {
    let (mut diff, mut var, mut n) = (0.0, 0.0, 0u64);
    let (mut any_t, mut any_h) = (false, false);
    for (treated, p) in units {
        n += 1;
        diff += if treated { 1.0 / p } else { -1.0 / p };
        var += 1.0 / (p * p);
        any_t |= treated;
        any_h |= !treated;
    }
    if !(any_t && any_h && var > 0.0 && var.is_finite()) {
        return None;
    }
    Some((diff / var.sqrt(), n))
}

/// A campaign's SRM p-value from its cells' statistics: Stouffer's combination weighted
/// by √(cell size), so that rows missing from one arm in every cell add up.
pub(crate) fn srm_p_value(cells: &[(f64, u64)]) -> Option<f64> {
    let total: f64 = cells.iter().map(|&(_, n)| n as f64).sum();
    if cells.is_empty() || total <= 0.0 {
        return None;
    }
    let z = cells.iter().map(|&(z, n)| (n as f64).sqrt() * z).sum::<f64>() / total.sqrt();
    Some(two_sided_p(z))
}

/// The inverse-variance (fixed-effect) pool of independent estimates (effect, se).
pub(crate) fn pool(estimates: &[(f64, f64)]) -> Option<(f64, f64)> {
    let usable: Vec<_> = estimates.iter().filter(|(e, s)| e.is_finite() && *s > 0.0).collect();
    if usable.is_empty() {
        return None;
    }
    let w: f64 = usable.iter().map(|(_, s)| 1.0 / (s * s)).sum();
    let e = usable.iter().map(|(e, s)| e / (s * s)).sum::<f64>() / w;
    Some((e, (1.0 / w).sqrt()))
}

/// Cochran's Q test that independent estimates (effect, se) share one effect: Q and its
/// p-value on k − 1 degrees of freedom. None with fewer than two usable estimates.
pub(crate) fn heterogeneity(estimates: &[(f64, f64)]) -> Option<(f64, f64)> {
    let usable: Vec<_> = estimates.iter().copied().filter(|(e, s)| e.is_finite() && *s > 0.0).collect();
    if usable.len() < 2 {
        return None;
    }
    let (mean, _) = pool(&usable)?;
    let q: f64 = usable.iter().map(|(e, s)| ((e - mean) / s).powi(2)).sum();
    let chi = ChiSquared::new((usable.len() - 1) as f64).ok()?;
    Some((q, chi.sf(q)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(treated: bool, y: f64, pre: f64) -> Unit {
        Unit { treated, weight: 1.0, y, pre }
    }

    #[test]
    fn equal_weights_give_the_difference_in_means_and_welch_standard_error() {
        let units: Vec<Unit> = [1.0, 2.0, 3.0, 4.0]
            .iter()
            .map(|&y| unit(true, y, 0.0))
            .chain([1.0, 1.0, 2.0].map(|y| unit(false, y, 0.0)))
            .collect();
        let e = estimate(&units, false).unwrap();
        assert!((e.mean_treatment - 2.5).abs() < 1e-12 && (e.mean_holdout - 4.0 / 3.0).abs() < 1e-12);
        assert!((e.effect - (2.5 - 4.0 / 3.0)).abs() < 1e-12);
        // Σ (y − m)² / n² per arm: the plug-in variance of a mean.
        let (vt, vh): (f64, f64) = (5.0 / 16.0, (1.0 / 9.0 + 1.0 / 9.0 + 4.0 / 9.0) / 9.0);
        assert!((e.se - (vt + vh).sqrt()).abs() < 1e-12);
        assert_eq!((e.n_treatment, e.n_holdout), (4, 3));
    }

    #[test]
    fn weights_reweight_each_arm_to_the_population() {
        // The treated unit with y = 1 stands for three users, the one with y = 0 for one.
        let units = [
            Unit { treated: true, weight: 3.0, y: 1.0, pre: 0.0 },
            Unit { treated: true, weight: 1.0, y: 0.0, pre: 0.0 },
            Unit { treated: false, weight: 1.0, y: 0.0, pre: 0.0 },
            Unit { treated: false, weight: 1.0, y: 1.0, pre: 0.0 },
        ];
        let e = estimate(&units, false).unwrap();
        assert!((e.mean_treatment - 0.75).abs() < 1e-12 && (e.mean_holdout - 0.5).abs() < 1e-12);
    }

    #[test]
    fn cuped_removes_the_variance_the_pre_period_explains_and_keeps_the_effect_unbiased() {
        // y = pre + treatment effect 1 + small noise: the adjustment removes pre's spread.
        let mut units = Vec::new();
        for i in 0..200 {
            let pre = (i % 17) as f64;
            let noise = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
            units.push(unit(i % 2 == 0, pre + if i % 2 == 0 { 1.0 } else { 0.0 } + noise, pre));
        }
        let raw = estimate(&units, false).unwrap();
        let adj = estimate(&units, true).unwrap();
        assert!(adj.variance_reduction() > 0.9, "{}", adj.variance_reduction());
        assert!((adj.effect - 1.0).abs() < 0.1 && (raw.effect - 1.0).abs() < 1.0);
        assert!((raw.variance_reduction()).abs() < 1e-12);
    }

    #[test]
    fn an_arm_of_fewer_than_two_units_has_no_estimate() {
        assert!(estimate(&[unit(true, 1.0, 0.0), unit(false, 0.0, 0.0), unit(false, 1.0, 0.0)], true).is_none());
    }

    #[test]
    fn always_valid_intervals_are_wider_than_fixed_ones_and_agree_with_their_p_values() {
        let (effect, se, tau) = (0.03, 0.01, 0.02);
        let (flo, fhi) = interval(effect, se, 0.05, Look::Fixed);
        let (slo, shi) = interval(effect, se, 0.05, Look::Sequential { tau });
        assert!(slo < flo && shi > fhi);
        assert!((fhi - effect - 1.959964 * se).abs() < 1e-6);
        // The interval excludes 0 exactly when the p-value is below α.
        for e in [0.0, 0.01, 0.02, 0.03, 0.04, 0.06] {
            let (lo, _) = interval(e, se, 0.05, Look::Sequential { tau });
            assert_eq!(lo > 0.0, p_value(e, se, Look::Sequential { tau }) < 0.05, "effect {e}");
            let (lo, _) = interval(e, se, 0.05, Look::Fixed);
            assert_eq!(lo > 0.0, p_value(e, se, Look::Fixed) < 0.05, "effect {e}");
        }
    }

    #[test]
    fn the_planned_holdout_reaches_the_power_asked_for() {
        let (effect, var, alpha, power) = (0.01, 0.2, 0.05, 0.8);
        let n = 100_000.0;
        let f = holdout_needed(effect, var, n, alpha, power).unwrap();
        let se = (var * (1.0 / (f * n) + 1.0 / ((1.0 - f) * n))).sqrt();
        assert!((minimum_detectable_effect(se, alpha, power) - effect).abs() < 1e-9);
        assert!(holdout_needed(effect, var, 1_000.0, alpha, power).is_none(), "too few users for any split");
    }

    #[test]
    fn the_srm_test_flags_a_missing_share_of_one_arm_and_not_a_fair_split() {
        // 2,000 users at P(treated) = 0.5: 1,000 / 1,000 is fair; 15% of the holdout gone is not.
        let fair: Vec<_> = (0..2000).map(|i| (i < 1000, 0.5)).collect();
        assert!(srm_p_value(&srm_z(&fair)).unwrap() > 0.5);
        let short: Vec<_> = (0..1850).map(|i| (i < 1000, 0.5)).collect();
        assert!(srm_p_value(&srm_z(&short)).unwrap() < 0.001);
        // 90% treated by design: 900 / 100 is what was logged.
        let planned: Vec<_> = (0..1000).map(|i| (i < 900, if i < 900 { 0.9 } else { 0.1 })).collect();
        assert!(srm_p_value(&srm_z(&planned)).unwrap() > 0.5);
        // Two segments, 30% and 50% treated, with rare 30% users weighing 100 times more: a
        // fair split passes, and 15% of every holdout gone is found.
        let mut mixed: Vec<(bool, f64)> = (0..4000).map(|i| (i < 2000, 0.5)).collect();
        mixed.extend((0..400).map(|i| if i < 120 { (true, 0.003) } else { (false, 0.007) }));
        assert!(srm_p_value(&srm_z(&mixed)).unwrap() > 0.5);
        let damaged: Vec<_> =
            mixed.iter().enumerate().filter(|(i, (t, _))| *t || i % 20 >= 3).map(|(_, u)| *u).collect();
        assert!(srm_p_value(&srm_z(&damaged)).unwrap() < 0.001, "{:?}", srm_p_value(&srm_z(&damaged)));
        assert!(srm_p_value(&[srm_ht_z(fair.iter().copied()).unwrap()]).unwrap() > 0.5);
    }

    #[test]
    fn pooling_weighs_by_precision_and_q_detects_different_effects() {
        let (e, se) = pool(&[(1.0, 1.0), (3.0, 1.0)]).unwrap();
        assert!((e - 2.0).abs() < 1e-12 && (se - 0.5f64.sqrt()).abs() < 1e-12);
        assert!(heterogeneity(&[(0.0, 0.1), (1.0, 0.1)]).unwrap().1 < 1e-6);
        assert!(heterogeneity(&[(0.0, 1.0), (0.1, 1.0)]).unwrap().1 > 0.9);
    }
}
