//! Grace-period recommendations checked against a synthetic world's known recovery
//! process, and the run report they come with.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use polars::prelude::*;
use retain::config::Grace;
use retain::inputs::{Inputs, Lookback};
use retain::storage::{Storage, StorageOptions};
use retain::synth::{SynthConfig, generate};

use crate::util::*;

/// The true value of each total grace length g = 0..=30 for one episode decided at its
/// failure, in monthly prices: the synthetic world's daily recovery hazards, and its
/// come-back rate after an expiry for the episode's failure reason.
fn true_values(hazard: &[f64], come_back: f64, cfg: &Grace) -> Vec<f64> {
    let mut out = Vec::with_capacity(31);
    let (mut surv, mut unpaid) = (1.0, 0.0);
    for g in 0..=30usize {
        if g > 0 {
            unpaid += surv;
            surv *= 1.0 - hazard[g - 1];
        }
        let r = 1.0 - surv;
        out.push(cfg.value_months * (r + (1.0 - r) * come_back) - cfg.cost_fraction / 30.0 * unpaid);
    }
    out
}

/// The synthetic world's truth for every dunning episode: (reason, daily hazards for
/// days 1..=30) by (user, failure time), and the come-back rate after an expiry by reason
/// (expired episodes whose 60 days ended inside the world).
struct Truth {
    episodes: BTreeMap<(String, i64), (String, Vec<f64>)>,
    come_back: BTreeMap<String, f64>,
}

fn read_truth(store: &Storage, s: NaiveDate) -> Truth {
    let truth = store.read_parquet("_truth/recovery.parquet").unwrap();
    let users = strings(&truth, "user_id");
    let reasons = strings(&truth, "failure_reason");
    let ts: Vec<i64> =
        truth.column("failure_ts").unwrap().datetime().unwrap().physical().iter().map(|v| v.unwrap()).collect();
    let grace: Vec<i64> = truth
        .column("grace_days")
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    let recovered = truth.column("recovered_day").unwrap().as_materialized_series().clone();
    let came_back: Vec<bool> =
        truth.column("came_back_within_60").unwrap().bool().unwrap().iter().map(|v| v.unwrap()).collect();
    let hazards = truth.column("hazard").unwrap().as_materialized_series().clone();
    let last_us = (s + Duration::days(1)).and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros();
    let day_us = 86_400_000_000i64;
    let mut cb: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut episodes = BTreeMap::new();
    for i in 0..truth.height() {
        if recovered.get(i).unwrap().is_null() && ts[i] + (grace[i] + 61) * day_us <= last_us {
            let e = cb.entry(reasons[i].clone()).or_default();
            e.0 += f64::from(came_back[i]);
            e.1 += 1.0;
        }
        let AnyValue::List(h) = hazards.get(i).unwrap() else { panic!("hazard is a list") };
        let h: Vec<f64> = h.f64().unwrap().iter().map(|v| v.unwrap()).collect();
        episodes.insert((users[i].clone(), ts[i]), (reasons[i].clone(), h));
    }
    Truth { episodes, come_back: cb.into_iter().map(|(r, (b, n))| (r, b / n)).collect() }
}

/// The recommendations' true value next to the fixed lengths and the per-episode oracle.
struct Scorecard {
    episodes: usize,
    /// Per episode, in monthly prices.
    recommended: f64,
    oracle: f64,
    fixed: BTreeMap<usize, f64>,
}

impl Scorecard {
    /// Share of the oracle's gain over a fixed length that the recommendations capture.
    fn captured_over(&self, g: usize) -> f64 {
        (self.recommended - self.fixed[&g]) / (self.oracle - self.fixed[&g])
    }
}

fn score(decisions: &[retain::grace::Decision], truth: &Truth, cfg: &Grace, label: &str) -> Scorecard {
    let arms = [0usize, 3, 7, 14, 21, 30];
    let (mut model, mut oracle) = (0.0, 0.0);
    let mut fixed: BTreeMap<usize, f64> = arms.iter().map(|a| (*a, 0.0)).collect();
    let mut by_reason: BTreeMap<String, (f64, f64, f64, usize)> = BTreeMap::new();
    for d in decisions {
        let (reason, h) = &truth.episodes[&(d.user_id.clone(), d.failure_ts_us)];
        let tv = true_values(h, truth.come_back.get(reason).copied().unwrap_or(0.0), cfg);
        let best = tv.iter().cloned().fold(f64::MIN, f64::max);
        model += tv[d.recommended];
        oracle += best;
        for (a, f) in fixed.iter_mut() {
            *f += tv[*a];
        }
        let r = by_reason.entry(reason.clone()).or_default();
        r.0 += tv[d.recommended] - tv[7];
        r.1 += best - tv[7];
        r.2 += d.recommended as f64;
        r.3 += 1;
    }
    let n = decisions.len() as f64;
    let card = Scorecard {
        episodes: decisions.len(),
        recommended: model / n,
        oracle: oracle / n,
        fixed: fixed.into_iter().map(|(a, f)| (a, f / n)).collect(),
    };
    let (best_arm, best_fixed) = card.fixed.iter().max_by(|a, b| a.1.total_cmp(b.1)).map(|(a, f)| (*a, *f)).unwrap();
    eprintln!(
        "grace truth check [{label}]: {} episodes; true value per episode in monthly prices: recommended {:.3}, oracle {:.3}, \
         fixed {:?}; captured share of the oracle's gain over 7 days {:.3}, over the best fixed length ({best_arm} days, {best_fixed:.3}) {:.3}",
        card.episodes,
        card.recommended,
        card.oracle,
        card.fixed.iter().map(|(a, f)| format!("{a}: {f:.3}")).collect::<Vec<_>>(),
        card.captured_over(7),
        card.captured_over(best_arm),
    );
    for (r, (gain, best_gain, days, k)) in &by_reason {
        eprintln!(
            "  {r}: {k} episodes, captured over 7 days {:.2}, mean recommended {:.1} days",
            gain / best_gain,
            days / *k as f64
        );
    }
    card
}

#[test]
fn recommendations_capture_most_of_the_oracle_gain_over_a_fixed_week() {
    let dir = tempfile::tempdir().unwrap();
    let store = Storage::open(dir.path().to_str().unwrap(), &StorageOptions::default(), true).unwrap();
    let start = NaiveDate::from_ymd_opt(2026, 5, 25).unwrap();
    let days = 180;
    generate(&SynthConfig { users: 8000, days, seed: 2027, start, ..Default::default() }, &store).unwrap();
    let s = start + Duration::days(days as i64 - 1);
    let lookback = retain::grace::lookback(Lookback::new(30), &Grace::default(), s, s);
    let inputs = Inputs::load(&store, s, s, lookback).unwrap();
    let truth = read_truth(&store, s);
    // Decisions at the failure for the last 100 days, each by models fitted on the data
    // known before its fortnight.
    let from = s - Duration::days(99);

    // The configured economics: a recovery is worth six months, so nearly every reason
    // but fraud is worth a long grace and the oracle is close to "30 days for all".
    let cfg = Grace::default();
    let decisions = retain::grace::backtest(&inputs, s, &cfg, from, s).unwrap();
    let card = score(&decisions, &truth, &cfg, "value 6 months, cost 0.7");
    assert!(card.episodes >= 500, "enough episodes to judge: {}", card.episodes);
    assert!(card.captured_over(7) > 0.9, "most of the oracle's gain over 7 days: {:.3}", card.captured_over(7));
    assert!(card.recommended >= card.fixed[&30] - 1e-3, "no worse than the best fixed length");

    // Tighter economics, where the break-even hazard (1/45 a day) falls inside the range
    // of the true hazards: the length has to follow the episode.
    let tight = Grace { value_months: 1.5, cost_fraction: 1.0, ..Grace::default() };
    let decisions = retain::grace::backtest(&inputs, s, &tight, from, s).unwrap();
    let card = score(&decisions, &truth, &tight, "value 1.5 months, cost 1.0");
    assert!(card.captured_over(7) > 0.6, "most of the oracle's gain over 7 days: {:.3}", card.captured_over(7));
    let best_fixed = card.fixed.values().cloned().fold(f64::MIN, f64::max);
    assert!(
        card.recommended > best_fixed,
        "better than every fixed length: {:.3} vs {best_fixed:.3}",
        card.recommended
    );
}

#[test]
fn the_run_report_has_plots_and_an_evaluation_against_every_fixed_length() {
    let out = sample_run();
    let html = std::fs::read_to_string(out.join(format!("reports/snapshot={SAMPLE_AS_OF}/grace.html"))).unwrap();
    assert!(html.contains("<svg") && html.matches("<polyline").count() >= 10, "curves are drawn");
    for reason in ["insufficient_funds", "expired_card", "card_declined", "processing_error", "fraud_suspected"] {
        assert!(html.contains(reason), "{reason} has a recovery curve");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("runs/snapshot={SAMPLE_AS_OF}/run.json"))).unwrap())
            .unwrap();
    let g = &manifest["details"]["grace"];
    assert_eq!(g["open_episodes"].as_u64().unwrap() as usize, read_table(out, "grace").height());
    let ev = &g["evaluation"];
    assert!(ev["episodes"].as_u64().unwrap() > 50, "closed episodes are evaluated: {ev}");
    let arms: Vec<i64> = ev["arms"].as_array().unwrap().iter().map(|a| a["grace_days"].as_i64().unwrap()).collect();
    assert_eq!(arms, vec![0, 3, 7, 14, 21, 30], "every randomised arm is compared");
    for a in ev["arms"].as_array().unwrap() {
        let d = &a["recommended_minus_fixed"];
        assert!(
            d["ci_low"].as_f64().unwrap() <= d["value"].as_f64().unwrap()
                && d["value"].as_f64().unwrap() <= d["ci_high"].as_f64().unwrap()
        );
    }
}
