//! The two discrete-time hazard models of a dunning episode, fitted on episode-day rows.
//!
//! - Recovery: on day k after the failure (k ≥ 1, while in grace), the chance that the
//!   payment is recovered that day. logit h = intercept + reason + day k + reason × day k +
//!   day-of-month bucket of the calendar day (+ × reason: paydays) + payment reminder
//!   received by day k (+ × reason) + payment method + plan + log price + listening in the
//!   30 days before the failure (hours, active days) + log tenure + log attempts so far.
//! - Come-back: on day j after an expiry (1 ≤ j ≤ 60), the chance that the lapsed user is
//!   premium again that day: reason, ten-day bins of j, the same static features, and the
//!   grace length granted (log(1 + g)), so that the value of a length includes its effect
//!   on coming back, should there be one.
//!
//! Censoring: a fit "as of day T" only uses days on or before T. An episode still open at
//! T contributes the days it was observed in grace; an expired one contributes come-back
//! days up to T. The granted grace lengths were randomised, so days late in a long grace
//! are observed for a random subset of episodes and the hazard there is learnable.

use serde::{Deserialize, Serialize};

use super::episodes::{Episode, day_of_month};
use super::logit::{self, Design};
use crate::contract::{FAILURE_REASONS, PAYMENT_METHODS, PLANS};

const NR: usize = 5;
const NM: usize = 5;
const NP: usize = 5;
const NDOM: usize = 6;
/// Static features: log price, log(1 + hours played), active days / 30, log(1 + tenure).
const NSTAT: usize = 4;
/// Days after an expiry in which a come-back counts.
pub(crate) const COMEBACK_DAYS: i32 = 60;
const COMEBACK_BINS: usize = 6;

const _: () = assert!(FAILURE_REASONS.len() == NR && PAYMENT_METHODS.len() == NM && PLANS.len() == NP);

/// Day-of-month buckets of the calendar day: around the usual paydays (1st, 15th) and
/// the month's other stretches.
fn dom_bucket(dom: u32) -> usize {
    match dom {
        1..=2 => 0,
        3..=7 => 1,
        8..=14 => 2,
        15..=16 => 3,
        17..=24 => 4,
        _ => 5,
    }
}

fn statics_raw(e: &Episode) -> [f64; NSTAT] {
    [e.price.max(0.01).ln(), e.hours_30.max(0.0).ln_1p(), e.active_days_30 / 30.0, e.tenure_days.max(0.0).ln_1p()]
}

/// Standardisation of the static features, from the training episodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Scaler {
    mean: [f64; NSTAT],
    sd: [f64; NSTAT],
}

impl Scaler {
    fn fit<'a>(eps: impl Iterator<Item = &'a Episode>) -> Self {
        let rows: Vec<[f64; NSTAT]> = eps.map(statics_raw).collect();
        let n = rows.len().max(1) as f64;
        let mut mean = [0.0; NSTAT];
        let mut sd = [1.0; NSTAT];
        for c in 0..NSTAT {
            mean[c] = rows.iter().map(|r| r[c]).sum::<f64>() / n;
            let var = rows.iter().map(|r| (r[c] - mean[c]).powi(2)).sum::<f64>() / n;
            sd[c] = if var > 1e-12 { var.sqrt() } else { 1.0 };
        }
        Scaler { mean, sd }
    }

    fn apply(&self, e: &Episode) -> [f64; NSTAT] {
        let raw = statics_raw(e);
        std::array::from_fn(|c| (raw[c] - self.mean[c]) / self.sd[c])
    }
}

/// Column positions of the recovery model.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct RecLayout {
    days: usize,
}

impl RecLayout {
    fn reason(self, r: usize) -> usize {
        1 + r
    }
    fn day(self, k: usize) -> usize {
        1 + NR + (k - 1)
    }
    fn reason_day(self, r: usize, k: usize) -> usize {
        1 + NR + self.days + r * self.days + (k - 1)
    }
    fn dom_base(self) -> usize {
        1 + NR + self.days * (1 + NR)
    }
    fn rem_base(self) -> usize {
        self.dom_base() + NDOM * (1 + NR)
    }
    fn method_base(self) -> usize {
        self.rem_base() + 1 + NR
    }
    fn cont_base(self) -> usize {
        self.method_base() + NM + NP
    }
    fn p(self) -> usize {
        self.cont_base() + NSTAT + 1
    }

    fn penalties(self) -> Vec<f64> {
        let mut pen = vec![1.0; self.p()];
        pen[0] = 0.0;
        for r in 0..NR {
            pen[self.reason(r)] = 0.05;
            for k in 1..=self.days {
                pen[self.reason_day(r, k)] = 4.0;
            }
            for b in 0..NDOM {
                pen[self.dom_base() + NDOM + r * NDOM + b] = 4.0;
            }
            pen[self.rem_base() + 1 + r] = 2.0;
        }
        for k in 1..=self.days {
            pen[self.day(k)] = 0.5;
        }
        pen
    }

    /// The non-zero entries of the row for day `k` of episode `e`.
    #[allow(clippy::too_many_arguments)]
    fn row(
        self,
        e: &Episode,
        stat: &[f64; NSTAT],
        k: i32,
        k_index: usize,
        reminded: bool,
        attempts: f64,
    ) -> Vec<(usize, f64)> {
        let mut x = Vec::with_capacity(20);
        x.push((0, 1.0));
        x.push((self.day(k_index), 1.0));
        let b = dom_bucket(day_of_month(e.fail_day + k));
        x.push((self.dom_base() + b, 1.0));
        if let Some(r) = e.reason {
            x.push((self.reason(r), 1.0));
            x.push((self.reason_day(r, k_index), 1.0));
            x.push((self.dom_base() + NDOM + r * NDOM + b, 1.0));
        }
        if reminded {
            x.push((self.rem_base(), 1.0));
            if let Some(r) = e.reason {
                x.push((self.rem_base() + 1 + r, 1.0));
            }
        }
        if let Some(m) = e.method {
            x.push((self.method_base() + m, 1.0));
        }
        if let Some(p) = e.plan {
            x.push((self.method_base() + NM + p, 1.0));
        }
        for (c, v) in stat.iter().enumerate() {
            x.push((self.cont_base() + c, *v));
        }
        x.push((self.cont_base() + NSTAT, attempts.max(1.0).ln()));
        x
    }
}

/// How a fit went, for the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitSummary {
    pub episodes: usize,
    pub rows: usize,
    pub events: usize,
    pub coefficients: usize,
    pub iterations: usize,
    pub log_likelihood: f64,
}

/// The fitted recovery hazard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Recovery {
    layout: RecLayout,
    beta: Vec<f64>,
    scaler: Scaler,
    /// Last day since failure seen in training; later days reuse its coefficients.
    last_day: usize,
    /// Share of training rows on day k with a reminder already received.
    reminder_share: Vec<f64>,
    /// Mean attempts logged before day k among training rows.
    mean_attempts: Vec<f64>,
    pub summary: FitSummary,
    /// Empirical recovery curve per reason (Kaplan–Meier on the same rows), days 0..=days.
    pub empirical: Vec<Vec<f64>>,
    pub empirical_episodes: Vec<usize>,
}

/// Both models, fitted as of one day.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Models {
    pub recovery: Recovery,
    pub comeback: Option<Comeback>,
}

/// Fit both models on the episodes failed in `[t − history_days, t]`, censored at `t`.
/// None when there is nothing to learn from (no recovery observed yet).
pub(crate) fn fit(eps: &[Episode], t: i32, history_days: i32, days: usize) -> Option<Models> {
    let train: Vec<&Episode> = eps.iter().filter(|e| e.fail_day <= t && e.fail_day >= t - history_days).collect();
    let scaler = Scaler::fit(train.iter().copied());
    let recovery = fit_recovery(&train, t, days, scaler.clone())?;
    let comeback = fit_comeback(&train, t, scaler);
    Some(Models { recovery, comeback })
}

fn fit_recovery(train: &[&Episode], t: i32, days: usize, scaler: Scaler) -> Option<Recovery> {
    let layout = RecLayout { days };
    let mut d = Design::new(layout.p());
    let mut at_risk = vec![vec![0.0; days + 1]; NR + 1];
    let mut events = vec![vec![0.0; days + 1]; NR + 1];
    let mut rem_rows = vec![(0.0, 0.0); days + 1];
    let mut att_rows = vec![(0.0, 0.0); days + 1];
    let mut used = 0;
    let mut last_day = 0;
    let mut n_by_reason = [0usize; NR + 1];
    for e in train {
        let observed = t - e.fail_day;
        let recovered = e.recovered_by(t);
        let expired = e.expired_by(t);
        let mut last = observed.min(days as i32);
        if let Some(g) = e.granted {
            last = last.min(g.max(0));
        }
        if let Some(k) = recovered.or(expired) {
            last = last.min(k);
        }
        if last < 1 {
            continue;
        }
        used += 1;
        let r = e.reason.unwrap_or(NR);
        n_by_reason[r] += 1;
        let stat = scaler.apply(e);
        for k in 1..=last {
            let ku = k as usize;
            let reminded = e.reminded_by(k);
            let attempts = e.attempts_before(k) as f64;
            let y = recovered == Some(k);
            d.push(&layout.row(e, &stat, k, ku, reminded, attempts), y);
            at_risk[r][ku] += 1.0;
            events[r][ku] += if y { 1.0 } else { 0.0 };
            rem_rows[ku].0 += if reminded { 1.0 } else { 0.0 };
            rem_rows[ku].1 += 1.0;
            att_rows[ku].0 += attempts;
            att_rows[ku].1 += 1.0;
            last_day = last_day.max(ku);
        }
    }
    if d.events() < 1.0 {
        return None;
    }
    let rate = d.events() / d.rows() as f64;
    let mut start = vec![0.0; layout.p()];
    start[0] = (rate / (1.0 - rate)).ln();
    let f = logit::fit(&d, &layout.penalties(), start, 50);
    let ratio = |(a, b): (f64, f64)| if b > 0.0 { a / b } else { f64::NAN };
    let reminder_share = carry_forward((0..=days).map(|k| if k == 0 { 0.0 } else { ratio(rem_rows[k]) }).collect());
    let mean_attempts = carry_forward((0..=days).map(|k| if k == 0 { 1.0 } else { ratio(att_rows[k]) }).collect());
    let empirical = (0..NR)
        .map(|r| {
            let mut surv = 1.0;
            (0..=days)
                .map(|k| {
                    if k > 0 && at_risk[r][k] > 0.0 {
                        surv *= 1.0 - events[r][k] / at_risk[r][k];
                    }
                    1.0 - surv
                })
                .collect()
        })
        .collect();
    Some(Recovery {
        layout,
        beta: f.beta,
        scaler,
        last_day: last_day.max(1),
        reminder_share,
        mean_attempts,
        summary: FitSummary {
            episodes: used,
            rows: d.rows(),
            events: d.events() as usize,
            coefficients: layout.p(),
            iterations: f.iterations,
            log_likelihood: f.log_likelihood,
        },
        empirical,
        empirical_episodes: n_by_reason[..NR].to_vec(),
    })
}

/// Replace NaN by the last finite value before it.
fn carry_forward(mut v: Vec<f64>) -> Vec<f64> {
    let mut last = v.first().copied().filter(|x| x.is_finite()).unwrap_or(0.0);
    for x in v.iter_mut() {
        if x.is_finite() {
            last = *x;
        } else {
            *x = last;
        }
    }
    v
}

impl Recovery {
    /// The daily recovery hazards `h[k]`, k = 1..=horizon (`h[0] = 0`), of an episode open
    /// `elapsed` days after its failure, from what was known then: a reminder already
    /// received stays in force; one not yet received arrives later with the chance seen
    /// in training (`reminder_share`), and retries go on at the usual pace.
    pub(crate) fn hazard_path(&self, e: &Episode, elapsed: i32, horizon: usize) -> Vec<f64> {
        let stat = self.scaler.apply(e);
        let reminded_now = e.reminded_by(elapsed);
        let attempts_now = e.attempt_days.iter().filter(|&&d| d <= e.fail_day + elapsed).count().max(1) as f64;
        let at = |v: &[f64], k: usize| v[k.min(v.len() - 1)];
        let e_idx = elapsed.max(0) as usize;
        let mut h = vec![0.0; horizon + 1];
        for (k, slot) in h.iter_mut().enumerate().skip(1) {
            if (k as i32) <= elapsed {
                continue;
            }
            let ki = k.min(self.last_day);
            let attempts = attempts_now + (at(&self.mean_attempts, k) - at(&self.mean_attempts, e_idx + 1)).max(0.0);
            let with = |rem: bool| {
                let x = self.layout.row(e, &stat, k as i32, ki, rem, attempts);
                logit::sigmoid(logit::linear(&self.beta, &x))
            };
            *slot = if reminded_now {
                with(true)
            } else {
                let q0 = at(&self.reminder_share, e_idx);
                let q = ((at(&self.reminder_share, k) - q0) / (1.0 - q0).max(1e-9)).clamp(0.0, 1.0);
                q * with(true) + (1.0 - q) * with(false)
            };
        }
        h
    }
}

/// The fitted come-back hazard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Comeback {
    beta: Vec<f64>,
    scaler: Scaler,
    pub summary: FitSummary,
}

const CB_BIN: usize = 1 + NR;
const CB_METHOD: usize = CB_BIN + COMEBACK_BINS;
const CB_PLAN: usize = CB_METHOD + NM;
const CB_CONT: usize = CB_PLAN + NP;
const CB_GRACE: usize = CB_CONT + NSTAT;
const CB_P: usize = CB_GRACE + 1;

fn grace_x(g: i32) -> f64 {
    f64::from(g.max(0)).ln_1p() / 31f64.ln()
}

fn comeback_static(e: &Episode, stat: &[f64; NSTAT]) -> Vec<(usize, f64)> {
    let mut x = vec![(0, 1.0)];
    if let Some(r) = e.reason {
        x.push((1 + r, 1.0));
    }
    if let Some(m) = e.method {
        x.push((CB_METHOD + m, 1.0));
    }
    if let Some(p) = e.plan {
        x.push((CB_PLAN + p, 1.0));
    }
    for (c, v) in stat.iter().enumerate() {
        x.push((CB_CONT + c, *v));
    }
    x
}

fn fit_comeback(train: &[&Episode], t: i32, scaler: Scaler) -> Option<Comeback> {
    let mut d = Design::new(CB_P);
    let mut used = 0;
    for e in train {
        let Some(ke) = e.expired_by(t) else { continue };
        let end = e.fail_day + ke;
        let back = e.back_day.filter(|b| *b <= t).map(|b| (b - end).max(1));
        let last = (t - end).min(COMEBACK_DAYS).min(back.unwrap_or(i32::MAX));
        if last < 1 {
            continue;
        }
        used += 1;
        let stat = scaler.apply(e);
        let mut x = comeback_static(e, &stat);
        x.push((CB_GRACE, grace_x(e.granted.unwrap_or(ke))));
        for j in 1..=last {
            let mut row = x.clone();
            row.push((CB_BIN + ((j - 1) as usize * COMEBACK_BINS / COMEBACK_DAYS as usize), 1.0));
            d.push(&row, back == Some(j));
        }
    }
    if d.events() < 1.0 {
        return None;
    }
    let rate = d.events() / d.rows() as f64;
    let mut start = vec![0.0; CB_P];
    start[0] = (rate / (1.0 - rate)).ln();
    let mut pen = vec![1.0; CB_P];
    pen[0] = 0.0;
    let f = logit::fit(&d, &pen, start, 50);
    Some(Comeback {
        summary: FitSummary {
            episodes: used,
            rows: d.rows(),
            events: d.events() as usize,
            coefficients: CB_P,
            iterations: f.iterations,
            log_likelihood: f.log_likelihood,
        },
        beta: f.beta,
        scaler,
    })
}

impl Comeback {
    /// P(premium again within 60 days of an expiry at the end of a grace of g days), g = 0..=max.
    pub(crate) fn by_grace(&self, e: &Episode, max: usize) -> Vec<f64> {
        let stat = self.scaler.apply(e);
        let base = logit::linear(&self.beta, &comeback_static(e, &stat));
        (0..=max)
            .map(|g| {
                let zg = base + self.beta[CB_GRACE] * grace_x(g as i32);
                let mut stay = 1.0;
                for j in 1..=COMEBACK_DAYS {
                    let bin = (j - 1) as usize * COMEBACK_BINS / COMEBACK_DAYS as usize;
                    stay *= 1.0 - logit::sigmoid(zg + self.beta[CB_BIN + bin]);
                }
                1.0 - stay
            })
            .collect()
    }
}

impl Models {
    /// P(back within 60 days after the grace ends), per total grace length (0 without a
    /// come-back model).
    pub(crate) fn come_back(&self, e: &Episode, max: usize) -> Vec<f64> {
        match &self.comeback {
            Some(c) => c.by_grace(e, max),
            None => vec![0.0; max + 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// The true hazard of the simulated world: reason 0 flat 8%, reason 3 fast then slow.
    fn true_hazard(reason: usize, k: i32) -> f64 {
        match reason {
            0 => 0.08,
            _ => {
                if k <= 3 {
                    0.35
                } else {
                    0.04
                }
            }
        }
    }

    /// Episodes failing uniformly over the 150 days up to `t`, with a random grace from
    /// the arms, simulated day by day and cut at the end of `t` (recent ones still open).
    fn simulate(n: usize, t: i32, seed: u64) -> Vec<Episode> {
        let mut rng = Lcg(seed);
        let arms = [0, 3, 7, 14, 21, 30];
        (0..n)
            .map(|i| {
                let reason = if rng.next() < 0.5 { 0 } else { 3 };
                let fail_day = t - (rng.next() * 150.0) as i32;
                let granted = arms[(rng.next() * arms.len() as f64) as usize];
                let mut end = None;
                for k in 1..=granted {
                    if rng.next() < true_hazard(reason, k) {
                        end = Some((k, true));
                        break;
                    }
                }
                let end = end.or(Some((granted, false))).filter(|(k, _)| fail_day + k <= t);
                Episode {
                    user_id: format!("u{i:05}"),
                    failure_us: i64::from(fail_day) * super::super::episodes::US_PER_DAY + 3_600_000_000,
                    fail_day,
                    reason_name: FAILURE_REASONS[reason].to_string(),
                    reason: Some(reason),
                    method: Some(0),
                    plan: Some(1),
                    price: 10.0,
                    granted: Some(granted),
                    end_day: end.map(|(k, _)| fail_day + k),
                    recovered: end.map(|(_, r)| r),
                    back_day: None,
                    attempt_days: vec![fail_day],
                    reminder_day: None,
                    hours_30: 10.0,
                    active_days_30: 10.0,
                    tenure_days: 200.0,
                }
            })
            .collect()
    }

    fn survival(h: &[f64], days: usize) -> f64 {
        h[1..=days].iter().map(|x| 1.0 - x).product()
    }

    #[test]
    fn recovers_a_known_hazard_from_censored_randomised_episodes() {
        let t = 20_000;
        let eps = simulate(6000, t, 7);
        let open = eps.iter().filter(|e| e.open_at(t)).count();
        assert!(open > 150, "enough episodes are censored at t: {open}");
        let m = fit(&eps, t, 180, 30).expect("a model");
        for reason in [0, 3] {
            let e = eps.iter().find(|e| e.reason == Some(reason)).unwrap();
            let h = m.recovery.hazard_path(e, 0, 30);
            let truth: Vec<f64> = (0..=30).map(|k| if k == 0 { 0.0 } else { true_hazard(reason, k) }).collect();
            for days in [3, 7, 14, 30] {
                let (fit_s, true_s) = (survival(&h, days), survival(&truth, days));
                assert!(
                    (fit_s - true_s).abs() < 0.04,
                    "reason {reason}, day {days}: S = {fit_s:.3}, truth {true_s:.3}"
                );
            }
        }
    }

    #[test]
    fn open_episodes_count_only_the_days_observed() {
        // Many episodes are still open at t: their observed days alone must give the
        // true hazard (counting them as unrecovered to the end of grace would not).
        let t = 20_000;
        let eps = simulate(4000, t, 11);
        let censored = fit(&eps, t, 180, 30).unwrap();
        let e = eps.iter().find(|e| e.reason == Some(0)).unwrap();
        let h = censored.recovery.hazard_path(e, 0, 30);
        let s30 = survival(&h, 30);
        let true_s30 = 0.92f64.powi(30);
        assert!((s30 - true_s30).abs() < 0.04, "S(30) = {s30:.3} vs {true_s30:.3}");
        // The rows of a fit as of an earlier day never use what happened later.
        let early = fit(&eps, t - 60, 180, 30).unwrap();
        let cut: Vec<Episode> = eps
            .iter()
            .filter(|e| e.fail_day <= t - 60)
            .map(|e| {
                let mut e = e.clone();
                if e.end_day.is_some_and(|d| d > t - 60) {
                    e.end_day = None;
                    e.recovered = None;
                }
                e
            })
            .collect();
        let early_cut = fit(&cut, t - 60, 180, 30).unwrap();
        assert_eq!(early.recovery.beta, early_cut.recovery.beta, "a fit as of T sees only days up to T");
    }
}
