//! Grace-period recommendations for every dunning episode open at S.
//!
//! Historical episodes give a discrete-time recovery hazard by failure reason (day d since
//! the failure: recoveries on day d over episodes still in grace and observed on day d;
//! episodes still open are censored at S), shrunk toward the pooled hazard where a reason
//! has few episodes. Grace lengths were randomised historically, which is what makes the
//! hazard beyond the usual length learnable. Each open episode's value of a total grace
//! length g is the recovered subscriber's worth times P(recovered by g | not yet) minus
//! the cost of the unpaid days from S until recovery or the end of grace.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::*;
use serde::Serialize;

use crate::config::Grace as GraceConfig;
use crate::error::{PolarsContext, Result};
use crate::inputs::{Inputs, end_of_day_us};
use crate::labels;

/// Days of the recovery curve in the output.
pub const CURVE_DAYS: usize = 30;
/// Pseudo-episodes of the pooled hazard mixed into each reason's estimate.
const SHRINK: f64 = 20.0;
const US_PER_DAY: f64 = 86_400_000_000.0;

/// P(recovered by day d) for d = 0..=max, per failure reason and pooled.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryCurves {
    pub horizon: usize,
    pub pooled: Vec<f64>,
    pub by_reason: BTreeMap<String, Vec<f64>>,
    pub episodes_by_reason: BTreeMap<String, usize>,
}

struct Episode {
    user_id: String,
    failure_us: i64,
    reason: String,
    grace_days: Option<i64>,
    amount: Option<f64>,
    recovered: Option<bool>,
    days_to_end: Option<f64>,
}

fn episodes(inputs: &Inputs, s: NaiveDate) -> Result<Vec<Episode>> {
    let df = labels::dunning_episodes(inputs.as_of(s).billing)
        .collect()
        .ctx("building dunning episodes")?;
    let ids = df.column("user_id").ctx("episodes")?.str().ctx("episodes")?.clone();
    let ts = df.column("failure_ts").ctx("episodes")?.datetime().ctx("episodes")?.physical().clone();
    let reason = df.column("failure_reason").ctx("episodes")?.str().ctx("episodes")?.clone();
    let grace = df.column("grace_days").ctx("episodes")?.cast(&DataType::Int64).ctx("episodes")?;
    let grace = grace.i64().ctx("episodes")?;
    let amount = df.column("amount").ctx("episodes")?.f64().ctx("episodes")?.clone();
    let rec = df.column("recovered").ctx("episodes")?.bool().ctx("episodes")?.clone();
    let dte = df.column("days_to_end").ctx("episodes")?.f64().ctx("episodes")?.clone();
    Ok((0..df.height())
        .map(|i| Episode {
            user_id: ids.get(i).unwrap_or_default().to_string(),
            failure_us: ts.get(i).unwrap_or(0),
            reason: reason.get(i).unwrap_or("unknown").to_string(),
            grace_days: grace.get(i),
            amount: amount.get(i),
            recovered: rec.get(i),
            days_to_end: dte.get(i),
        })
        .collect())
}

/// Estimate recovery curves from the episodes known at the end of `s`.
fn fit_curves(eps: &[Episode], s_end_us: i64, horizon: usize) -> RecoveryCurves {
    // at_risk[d], events[d] for d = 1..=horizon, per reason.
    let mut counts: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut pooled = (vec![0.0; horizon + 1], vec![0.0; horizon + 1]);
    let mut n_by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for e in eps {
        let observed_days = ((s_end_us - e.failure_us) as f64 / US_PER_DAY).floor() as i64;
        let grace = e.grace_days.unwrap_or(horizon as i64);
        let recovery_day = match (e.recovered, e.days_to_end) {
            (Some(true), Some(d)) => Some((d.ceil() as i64).max(1)),
            _ => None,
        };
        let end_day = match (e.recovered, e.days_to_end) {
            (Some(_), Some(d)) => (d.ceil() as i64).max(1),
            _ => i64::MAX,
        };
        *n_by_reason.entry(e.reason.clone()).or_default() += 1;
        let entry = counts
            .entry(e.reason.clone())
            .or_insert_with(|| (vec![0.0; horizon + 1], vec![0.0; horizon + 1]));
        for d in 1..=horizon as i64 {
            // In grace on day d, not ended before it, and day d already observed.
            if d > grace || d > end_day || d > observed_days {
                break;
            }
            entry.0[d as usize] += 1.0;
            pooled.0[d as usize] += 1.0;
            if recovery_day == Some(d) {
                entry.1[d as usize] += 1.0;
                pooled.1[d as usize] += 1.0;
            }
        }
    }
    let pooled_h: Vec<f64> =
        (0..=horizon).map(|d| if pooled.0[d] > 0.0 { pooled.1[d] / pooled.0[d] } else { 0.0 }).collect();
    let to_cdf = |h: &[f64]| -> Vec<f64> {
        let mut surv = 1.0;
        let mut cdf = vec![0.0; horizon + 1];
        for d in 1..=horizon {
            surv *= 1.0 - h[d].clamp(0.0, 1.0);
            cdf[d] = 1.0 - surv;
        }
        cdf
    };
    let by_reason = counts
        .into_iter()
        .map(|(r, (risk, ev))| {
            let h: Vec<f64> = (0..=horizon).map(|d| (ev[d] + SHRINK * pooled_h[d]) / (risk[d] + SHRINK)).collect();
            (r, to_cdf(&h))
        })
        .collect();
    RecoveryCurves { horizon, pooled: to_cdf(&pooled_h), by_reason, episodes_by_reason: n_by_reason }
}

/// The best total grace length for an episode `elapsed` days old, with its value.
/// Returns (g, p_recover, net value, curve over days 1..=CURVE_DAYS).
pub fn recommend(cdf: &[f64], elapsed: usize, monthly_price: f64, cfg: &GraceConfig) -> (usize, f64, f64, Vec<f64>) {
    let max = (cfg.max_days as usize).min(cdf.len() - 1);
    let at = |d: usize| cdf[d.min(cdf.len() - 1)];
    let base = 1.0 - at(elapsed);
    let cond = |d: usize| if d <= elapsed || base <= 1e-12 { 0.0 } else { (at(d) - at(elapsed)) / base };
    let daily = monthly_price / 30.0;
    let value = |g: usize| -> f64 {
        if g <= elapsed {
            return 0.0;
        }
        let unpaid: f64 = (elapsed + 1..=g).map(|d| 1.0 - cond(d - 1)).sum();
        cfg.value_months * monthly_price * cond(g) - cfg.cost_fraction * daily * unpaid
    };
    let (mut best_g, mut best_v) = (0usize, 0.0f64);
    for g in elapsed + 1..=max {
        let v = value(g);
        if v > best_v + 1e-12 {
            best_g = g;
            best_v = v;
        }
    }
    let p = cond(best_g);
    let curve = (1..=CURVE_DAYS).map(|d| cond(d.min(best_g))).collect();
    (best_g, p, best_v, curve)
}

/// The grace table (contract: `grace`) and the curves it used.
pub fn recommend_all(inputs: &Inputs, s: NaiveDate, cfg: &GraceConfig) -> Result<(DataFrame, RecoveryCurves)> {
    let s_end = end_of_day_us(s);
    let eps = episodes(inputs, s)?;
    let horizon = (cfg.max_days as usize).max(CURVE_DAYS);
    let curves = fit_curves(&eps, s_end, horizon);
    let mut prices: Vec<f64> = eps.iter().filter_map(|e| e.amount).collect();
    prices.sort_by(f64::total_cmp);
    let typical_price = prices.get(prices.len() / 2).copied().unwrap_or(0.0);

    let open: Vec<&Episode> = eps.iter().filter(|e| e.recovered.is_none()).collect();
    let n = open.len();
    let (mut uid, mut fts, mut reason, mut rec, mut prec, mut value, mut curve) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for e in open {
        let elapsed = (((s_end - e.failure_us) as f64 / US_PER_DAY).floor().max(0.0)) as usize;
        let cdf = curves.by_reason.get(&e.reason).unwrap_or(&curves.pooled);
        let (g, p, v, c) = recommend(cdf, elapsed, e.amount.unwrap_or(typical_price), cfg);
        uid.push(e.user_id.clone());
        fts.push(e.failure_us);
        reason.push(e.reason.clone());
        rec.push(g as i16);
        prec.push(p);
        value.push(v);
        curve.push(Series::new("".into(), c));
    }
    let utc = DataType::Datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC));
    let df = DataFrame::new(
        n,
        vec![
            Column::new("user_id".into(), uid),
            Column::new("snapshot_date".into(), vec![s; n]),
            Series::new("failure_ts".into(), fts).cast(&utc).ctx("failure_ts")?.into(),
            Column::new("failure_reason".into(), reason),
            Column::new("recommended_grace_days".into(), rec),
            Column::new("p_recover".into(), prec),
            Column::new("expected_net_value".into(), value),
            Series::new("curve".into(), curve).cast(&DataType::List(Box::new(DataType::Float64))).ctx("curve")?.into(),
        ],
    )
    .ctx("assembling grace recommendations")?
    .sort(["user_id", "failure_ts"], SortMultipleOptions::default())
    .ctx("sorting grace recommendations")?;
    Ok((df, curves))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GraceConfig {
        GraceConfig { value_months: 6.0, cost_fraction: 0.7, max_days: 30 }
    }

    #[test]
    fn recovers_early_means_a_short_grace_and_never_recovering_means_none() {
        // Everyone who recovers does so in the first three days.
        let mut cdf = vec![0.0; 31];
        for d in 1..=30 {
            cdf[d] = if d >= 3 { 0.6 } else { 0.2 * d as f64 };
        }
        let (g, p, v, curve) = recommend(&cdf, 0, 10.0, &cfg());
        assert_eq!(g, 3);
        assert!((p - 0.6).abs() < 1e-9 && v > 0.0);
        assert_eq!(curve.len(), 30);
        assert!((curve[29] - 0.6).abs() < 1e-9, "flat after the grace ends");
        // Nobody recovers: end the grace now (0 is not above the elapsed days).
        let (g, p, _, _) = recommend(&vec![0.0; 31], 2, 10.0, &cfg());
        assert_eq!((g, p), (0, 0.0));
    }
}
