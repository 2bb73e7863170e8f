//! How good the recommendations are, measured on history: a rolling back-test and an
//! inverse-propensity estimate of the policy's value against every fixed grace length.
//!
//! Why this design: the grace lengths granted in the past were drawn at random from a
//! small set of arms, independently of the episode. For an episode whose outcome is fully
//! observed, the realised value under the granted arm is an unbiased sample of that arm's
//! value, so mean(1[π(e) = granted(e)] × value(e) / P(granted(e))) estimates the value of
//! any policy π that picks among the arms. The models that make π's choices are refitted
//! every fortnight on the episodes known at the fortnight's start (a time split), so no
//! evaluated outcome was seen by the model that judged it.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::episodes::{Episode, date_of};
use super::model::{self, COMEBACK_DAYS, Models};
use super::value::{self, Valuation};
use crate::config::Grace as GraceConfig;

/// Days between refits of the back-test.
pub(crate) const REFIT_DAYS: i32 = 14;

/// The decision the models of the time would have made at an episode's failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub user_id: String,
    pub failure_ts_us: i64,
    pub failure_reason: String,
    pub price: f64,
    pub granted: Option<i32>,
    /// The last day of data the deciding models saw.
    pub fitted_as_of: NaiveDate,
    /// Predicted value of each total grace length g = 0..=max_days.
    pub values: Vec<f64>,
    /// Predicted P(recovered during a grace of g), g = 0..=max_days.
    pub p_recover: Vec<f64>,
    pub recommended: usize,
}

/// The valuation of an episode open `elapsed` days after its failure.
pub(crate) fn decide(models: &Models, e: &Episode, elapsed: i32, cfg: &GraceConfig) -> Valuation {
    let max = cfg.max_days as usize;
    let hazard = models.recovery.hazard_path(e, elapsed, max);
    let come_back = models.come_back(e, max);
    value::valuate(&hazard, &come_back, elapsed.max(0) as usize, e.price, cfg)
}

/// Decisions at the failure for every episode failed in `[from, to]` (days since the
/// epoch), with models refitted as of the day before each fortnight. Also returns how
/// many episodes had no model yet (too little history).
pub(crate) fn backtest(eps: &[Episode], from: i32, to: i32, cfg: &GraceConfig, days: usize) -> (Vec<Decision>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    let mut start = from;
    while start <= to {
        let end = (start + REFIT_DAYS - 1).min(to);
        let block: Vec<&Episode> = eps.iter().filter(|e| e.fail_day >= start && e.fail_day <= end).collect();
        if !block.is_empty() {
            match model::fit(eps, start - 1, cfg.history_days as i32, days) {
                None => skipped += block.len(),
                Some(m) => {
                    for e in block {
                        let v = decide(&m, e, 0, cfg);
                        out.push(Decision {
                            user_id: e.user_id.clone(),
                            failure_ts_us: e.failure_us,
                            failure_reason: e.reason_name.clone(),
                            price: e.price,
                            granted: e.granted,
                            fitted_as_of: date_of(start - 1),
                            recommended: v.best,
                            values: v.values,
                            p_recover: v.p_recover,
                        });
                    }
                }
            }
        }
        start += REFIT_DAYS;
    }
    (out, skipped)
}

/// The realised value of an episode under its granted grace, in monthly prices, when
/// its outcome (the recovery, or the 60 days after the expiry) is fully observed by the
/// end of `s_day`.
pub(crate) fn realised(e: &Episode, s_day: i32, cfg: &GraceConfig) -> Option<f64> {
    let worth = cfg.value_months;
    let daily_cost = cfg.cost_fraction / 30.0;
    if let Some(k) = e.recovered_by(s_day) {
        return Some(worth - daily_cost * f64::from(k));
    }
    let ke = e.expired_by(s_day)?;
    let end = e.fail_day + ke;
    let back = e.back_day.is_some_and(|b| b <= end + COMEBACK_DAYS);
    if !back && end + COMEBACK_DAYS > s_day {
        return None;
    }
    Some(if back { worth } else { 0.0 } - daily_cost * f64::from(ke))
}

/// A mean with a 95% normal confidence interval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

fn estimate(terms: &[f64]) -> Estimate {
    let n = terms.len().max(1) as f64;
    let mean = terms.iter().sum::<f64>() / n;
    let var = terms.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let half = 1.96 * (var / n).sqrt();
    Estimate { value: mean, ci_low: mean - half, ci_high: mean + half }
}

/// One fixed grace length against the recommendations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArmComparison {
    pub grace_days: i32,
    /// Share of historical episodes granted this length (the propensity).
    pub propensity: f64,
    /// Evaluated episodes granted this length.
    pub episodes: usize,
    /// Value per episode of granting this length to everyone.
    pub fixed_value: Estimate,
    /// Recommended policy minus this fixed length, per episode (paired).
    pub recommended_minus_fixed: Estimate,
}

/// The policy's value on closed historical episodes, per episode, in monthly prices
/// (each episode's value divided by its own price, so that currencies do not mix).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub failures_from: NaiveDate,
    pub failures_to: NaiveDate,
    pub episodes: usize,
    /// Episodes left out because no model could be fitted before them.
    pub skipped_without_model: usize,
    pub refit_every_days: i32,
    /// The policy restricted to the historical arms (needed for inverse propensity):
    /// for each episode, the arm with the highest predicted value.
    pub recommended: Estimate,
    /// Self-normalised variant (weights rescaled to sum to the number of episodes).
    pub recommended_self_normalised: f64,
    /// Episodes whose granted arm equals the policy's choice.
    pub matched: usize,
    /// What the models predicted the policy's choices to be worth, on average.
    pub predicted_value: f64,
    /// How often the policy picks each arm.
    pub policy_arm_shares: BTreeMap<i32, f64>,
    pub arms: Vec<ArmComparison>,
}

/// Inverse-propensity evaluation of the back-test decisions of episodes failed in
/// `[from, to]`; `eps` are all episodes known at `s_day` (for the propensities).
pub(crate) fn evaluate(
    eps: &[Episode],
    decisions: &[Decision],
    skipped: usize,
    from: i32,
    to: i32,
    s_day: i32,
    cfg: &GraceConfig,
) -> Option<Evaluation> {
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    for e in eps {
        if let Some(g) = e.granted {
            *counts.entry(g).or_default() += 1;
        }
    }
    let total: usize = counts.values().sum();
    let propensity: BTreeMap<i32, f64> = counts.iter().map(|(g, n)| (*g, *n as f64 / total.max(1) as f64)).collect();
    let arms: Vec<i32> = propensity.keys().copied().filter(|g| *g <= cfg.max_days as i32).collect();
    if arms.is_empty() {
        return None;
    }
    let by_key: BTreeMap<(&str, i64), &Episode> = eps.iter().map(|e| ((e.user_id.as_str(), e.failure_us), e)).collect();
    // (granted, realised value, the policy's arm, predicted value of that arm)
    let mut rows: Vec<(i32, f64, i32, f64)> = Vec::new();
    for d in decisions {
        let Some(e) = by_key.get(&(d.user_id.as_str(), d.failure_ts_us)) else { continue };
        let (Some(g), Some(v)) = (e.granted, realised(e, s_day, cfg)) else { continue };
        if !propensity.contains_key(&g) {
            continue;
        }
        let mut pick = arms[0];
        for &a in &arms {
            if d.values[a as usize] > d.values[pick as usize] + 1e-9 {
                pick = a;
            }
        }
        rows.push((g, v, pick, d.values[pick as usize] / d.price.max(1e-9)));
    }
    if rows.is_empty() {
        return None;
    }
    let n = rows.len() as f64;
    let w = |g: i32| 1.0 / propensity[&g];
    let policy_terms: Vec<f64> = rows.iter().map(|&(g, v, pick, _)| if pick == g { v * w(g) } else { 0.0 }).collect();
    let weight_sum: f64 = rows.iter().map(|&(g, _, pick, _)| if pick == g { w(g) } else { 0.0 }).sum();
    let matched = rows.iter().filter(|r| r.0 == r.2).count();
    let mut shares: BTreeMap<i32, f64> = BTreeMap::new();
    for r in &rows {
        *shares.entry(r.2).or_default() += 1.0 / n;
    }
    let comparisons = arms
        .iter()
        .map(|&a| {
            let fixed: Vec<f64> = rows.iter().map(|&(g, v, _, _)| if g == a { v * w(g) } else { 0.0 }).collect();
            let diff: Vec<f64> = policy_terms.iter().zip(&fixed).map(|(p, f)| p - f).collect();
            ArmComparison {
                grace_days: a,
                propensity: propensity[&a],
                episodes: rows.iter().filter(|r| r.0 == a).count(),
                fixed_value: estimate(&fixed),
                recommended_minus_fixed: estimate(&diff),
            }
        })
        .collect();
    Some(Evaluation {
        failures_from: date_of(from),
        failures_to: date_of(to),
        episodes: rows.len(),
        skipped_without_model: skipped,
        refit_every_days: REFIT_DAYS,
        recommended: estimate(&policy_terms),
        recommended_self_normalised: if weight_sum > 0.0 { policy_terms.iter().sum::<f64>() / weight_sum } else { 0.0 },
        matched,
        predicted_value: rows.iter().map(|r| r.3).sum::<f64>() / n,
        policy_arm_shares: shares,
        arms: comparisons,
    })
}
