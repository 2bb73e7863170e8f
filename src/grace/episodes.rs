//! Dunning episodes as the hazard models see them: one record per episode with its
//! features at the failure and the days (UTC dates, as days since the epoch) on which
//! things happened to it, so that the same table can be cut at any earlier day T.
//!
//! Why day numbers: every model row is an episode-day, and the point-in-time rule
//! ("nothing after the end of day T") becomes "no event day after T". Cutting one table
//! built at S gives exactly what a run at T would have seen, which is what the rolling
//! back-test needs. Features at the failure only use rows before the failure's day.
//!
//! Activity and reminders come from the run's inputs, cut to the grace window itself:
//! `run` reads more history than `grace`, and cutting the same window from both keeps
//! `retain grace` and `retain run` identical. [`lookback`] says how far back the inputs
//! must reach for it; late rows count by their own time, as everywhere.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Duration, NaiveDate};
use polars::prelude::*;

use crate::config::Grace as GraceConfig;
use crate::contract::{FAILURE_REASONS, PAYMENT_METHODS, PLANS};
use crate::error::{PolarsContext, Result};
use crate::inputs::{Inputs, Lookback, date_lit, epoch_days, in_set, ts_lit_us};
use crate::labels;

pub(crate) const US_PER_DAY: i64 = 86_400_000_000;
/// Days before the failure whose listening describes the user's engagement.
pub(crate) const ENGAGEMENT_DAYS: i32 = 30;

/// One dunning episode, known as of the end of the snapshot it was built for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Episode {
    pub user_id: String,
    pub failure_us: i64,
    /// UTC date of the failure, days since the epoch.
    pub fail_day: i32,
    pub reason_name: String,
    /// Index into `FAILURE_REASONS` (None for a value outside the contract).
    pub reason: Option<usize>,
    pub method: Option<usize>,
    pub plan: Option<usize>,
    /// Monthly price attempted (the failure's amount, else the median over episodes).
    pub price: f64,
    /// Grace granted at the failure (days), when logged.
    pub granted: Option<i32>,
    /// Day of the `payment_recovered` or `expire` that ended the episode.
    pub end_day: Option<i32>,
    pub recovered: Option<bool>,
    /// After an expiry: the first day the user was premium again (subscribe, trial, …).
    pub back_day: Option<i32>,
    /// Days of the episode's `payment_failed` events (the first failure included).
    pub attempt_days: Vec<i32>,
    /// Day of the first payment reminder delivered during the episode.
    pub reminder_day: Option<i32>,
    /// Listening in the 30 days before the failure: hours played and active days.
    pub hours_30: f64,
    pub active_days_30: f64,
    /// Days from sign-up to the failure.
    pub tenure_days: f64,
}

impl Episode {
    /// Whether the episode had started by the end of day `t` and was still open then.
    pub(crate) fn open_at(&self, t: i32) -> bool {
        self.fail_day <= t && self.end_day.is_none_or(|d| d > t)
    }

    /// Recovery day (days since failure, at least 1) when recovered by the end of `t`.
    pub(crate) fn recovered_by(&self, t: i32) -> Option<i32> {
        match (self.recovered, self.end_day) {
            (Some(true), Some(d)) if d <= t => Some((d - self.fail_day).max(1)),
            _ => None,
        }
    }

    /// Expiry day (days since failure) when expired by the end of `t`.
    pub(crate) fn expired_by(&self, t: i32) -> Option<i32> {
        match (self.recovered, self.end_day) {
            (Some(false), Some(d)) if d <= t => Some((d - self.fail_day).max(0)),
            _ => None,
        }
    }

    /// Retries logged before day `k` of the episode (the first failure included).
    pub(crate) fn attempts_before(&self, k: i32) -> usize {
        self.attempt_days.iter().filter(|&&d| d < self.fail_day + k).count().max(1)
    }

    pub(crate) fn reminded_by(&self, k: i32) -> bool {
        self.reminder_day.is_some_and(|d| d <= self.fail_day + k)
    }
}

pub(crate) fn day_of(us: i64) -> i32 {
    us.div_euclid(US_PER_DAY) as i32
}

pub(crate) fn date_of(day: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + Duration::days(day as i64)
}

pub(crate) fn day_of_month(day: i32) -> u32 {
    date_of(day).day()
}

/// `base` extended so that inputs whose first snapshot is `first` reach back to what the
/// episodes of snapshot `s` read: reminders from the oldest failure in the history and
/// listening from [`ENGAGEMENT_DAYS`] before it.
pub fn lookback(base: Lookback, cfg: &GraceConfig, first: NaiveDate, s: NaiveDate) -> Lookback {
    let before_first = |days: i64| (days - (s - first).num_days()).max(0) as u32;
    Lookback {
        activity_days: base.activity_days.max(before_first(cfg.history_days as i64 + ENGAGEMENT_DAYS as i64)),
        messages_days: base.messages_days.max(before_first(cfg.history_days as i64)),
        ..base
    }
}

/// Every episode whose failure is at most `cfg.history_days` before `s`, as known at the
/// end of `s`, sorted by (user, failure time).
pub(crate) fn load(inputs: &Inputs, s: NaiveDate, cfg: &GraceConfig) -> Result<Vec<Episode>> {
    let now = inputs.as_of(s);
    let s_day = epoch_days(s);
    let first_day = s_day - cfg.history_days as i32;
    let df = labels::dunning_episodes(now.billing.clone())
        .filter(col("failure_ts").gt_eq(ts_lit_us(first_day as i64 * US_PER_DAY)))
        .collect()
        .ctx("building dunning episodes")?;
    let c = |name: &str| df.column(name).ctx("dunning episodes");
    let ids = c("user_id")?.str().ctx("episodes")?.clone();
    let ts = c("failure_ts")?.datetime().ctx("episodes")?.physical().clone();
    let reason = c("failure_reason")?.str().ctx("episodes")?.clone();
    let method = c("payment_method")?.str().ctx("episodes")?.clone();
    let plan = c("plan")?.str().ctx("episodes")?.clone();
    let amount = c("amount")?.f64().ctx("episodes")?.clone();
    let grace = c("grace_days")?.cast(&DataType::Int64).ctx("episodes")?;
    let grace = grace.i64().ctx("episodes")?.clone();
    let end = c("end_ts")?.datetime().ctx("episodes")?.physical().clone();
    let rec = c("recovered")?.bool().ctx("episodes")?.clone();

    let mut prices: Vec<f64> = amount.iter().flatten().filter(|a| *a > 0.0).collect();
    prices.sort_by(f64::total_cmp);
    let typical = prices.get(prices.len() / 2).copied().unwrap_or(10.0);
    let pos = |set: &[&str], v: Option<&str>| v.and_then(|v| set.iter().position(|x| *x == v));

    let mut eps: Vec<Episode> = (0..df.height())
        .map(|i| {
            let failure_us = ts.get(i).unwrap_or(0);
            Episode {
                user_id: ids.get(i).unwrap_or_default().to_string(),
                failure_us,
                fail_day: day_of(failure_us),
                reason_name: reason.get(i).unwrap_or("unknown").to_string(),
                reason: pos(FAILURE_REASONS, reason.get(i)),
                method: pos(PAYMENT_METHODS, method.get(i)),
                plan: pos(PLANS, plan.get(i)),
                price: amount.get(i).filter(|a| *a > 0.0).unwrap_or(typical),
                granted: grace.get(i).map(|g| g.clamp(0, 10_000) as i32),
                end_day: end.get(i).map(day_of),
                recovered: rec.get(i),
                back_day: None,
                attempt_days: Vec::new(),
                reminder_day: None,
                hours_30: 0.0,
                active_days_30: 0.0,
                tenure_days: 0.0,
            }
        })
        .collect();
    if eps.is_empty() {
        return Ok(eps);
    }
    let users: Vec<String> = eps.iter().map(|e| e.user_id.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let min_fail = eps.iter().map(|e| e.fail_day).min().unwrap_or(s_day);
    let ends_us: Vec<Option<i64>> = (0..df.height()).map(|i| end.get(i)).collect();

    attach_billing(&mut eps, &ends_us, &now, &user_refs)?;
    attach_reminders(&mut eps, &ends_us, &now, min_fail, &user_refs)?;
    attach_activity(&mut eps, &now, min_fail, &user_refs)?;
    attach_tenure(&mut eps, &now, &user_refs)?;
    Ok(eps)
}

/// Group rows (user, value…) by user, keeping the order the frame was sorted in.
fn by_user<T>(ids: &StringChunked, mut value: impl FnMut(usize) -> Option<T>) -> BTreeMap<String, Vec<T>> {
    let mut map: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for i in 0..ids.len() {
        if let (Some(u), Some(v)) = (ids.get(i), value(i)) {
            map.entry(u.to_string()).or_default().push(v);
        }
    }
    map
}

/// Retry days and, after an expiry, the first day premium again.
fn attach_billing(eps: &mut [Episode], ends_us: &[Option<i64>], now: &Inputs, users: &[&str]) -> Result<()> {
    let df =
        now.billing
            .clone()
            .filter(in_set("user_id", users).and(in_set(
                "event_type",
                &["payment_failed", "trial_start", "subscribe", "renew", "payment_recovered"],
            )))
            .select([col("user_id"), col("ts"), col("event_type")])
            .sort(["user_id", "ts"], SortMultipleOptions::default())
            .collect()
            .ctx("reading billing events of dunning episodes")?;
    let ids = df.column("user_id").ctx("billing")?.str().ctx("billing")?.clone();
    let ts = df.column("ts").ctx("billing")?.datetime().ctx("billing")?.physical().clone();
    let kind = df.column("event_type").ctx("billing")?.str().ctx("billing")?.clone();
    let events = by_user(&ids, |i| Some((ts.get(i)?, kind.get(i)? == "payment_failed")));
    for (e, end) in eps.iter_mut().zip(ends_us) {
        let Some(evs) = events.get(&e.user_id) else { continue };
        e.attempt_days = evs
            .iter()
            .filter(|(t, failed)| *failed && *t >= e.failure_us && end.is_none_or(|x| *t < x))
            .map(|(t, _)| day_of(*t))
            .collect();
        if e.recovered == Some(false) {
            let x = end.unwrap_or(i64::MAX);
            e.back_day = evs.iter().find(|(t, failed)| !failed && *t > x).map(|(t, _)| day_of(*t));
        }
    }
    Ok(())
}

/// The first payment reminder delivered (treatment arm) after the failure and before the end.
fn attach_reminders(
    eps: &mut [Episode],
    ends_us: &[Option<i64>],
    now: &Inputs,
    min_fail: i32,
    users: &[&str],
) -> Result<()> {
    let df = now
        .messages
        .clone()
        .filter(
            col("ts")
                .gt_eq(ts_lit_us(min_fail as i64 * US_PER_DAY))
                .and(col("message_type").eq(lit("payment_update_reminder")))
                .and(col("arm").eq(lit("treatment")))
                .and(col("delivered"))
                .and(in_set("user_id", users)),
        )
        .select([col("user_id"), col("ts")])
        .sort(["user_id", "ts"], SortMultipleOptions::default())
        .collect()
        .ctx("reading payment reminders")?;
    let ids = df.column("user_id").ctx("messages")?.str().ctx("messages")?.clone();
    let ts = df.column("ts").ctx("messages")?.datetime().ctx("messages")?.physical().clone();
    let sent = by_user(&ids, |i| ts.get(i));
    for (e, end) in eps.iter_mut().zip(ends_us) {
        if let Some(times) = sent.get(&e.user_id) {
            e.reminder_day = times.iter().find(|&&t| t > e.failure_us && end.is_none_or(|x| t < x)).map(|&t| day_of(t));
        }
    }
    Ok(())
}

/// Hours played and active days in the 30 days before the failure's day.
fn attach_activity(eps: &mut [Episode], now: &Inputs, min_fail: i32, users: &[&str]) -> Result<()> {
    let from = date_of(min_fail - ENGAGEMENT_DAYS);
    let df = now
        .activity
        .clone()
        .filter(col("date").gt_eq(date_lit(from)).and(in_set("user_id", users)))
        .select([col("user_id"), col("date").cast(DataType::Int32).alias("day"), col("ms_played")])
        .sort(["user_id", "day"], SortMultipleOptions::default())
        .collect()
        .ctx("reading activity before dunning episodes")?;
    let ids = df.column("user_id").ctx("activity")?.str().ctx("activity")?.clone();
    let day = df.column("day").ctx("activity")?.i32().ctx("activity")?.clone();
    let ms = df.column("ms_played").ctx("activity")?.cast(&DataType::Float64).ctx("activity")?;
    let ms = ms.f64().ctx("activity")?.clone();
    let days = by_user(&ids, |i| Some((day.get(i)?, ms.get(i).unwrap_or(0.0))));
    for e in eps.iter_mut() {
        if let Some(rows) = days.get(&e.user_id) {
            let window = rows.iter().filter(|(d, _)| *d < e.fail_day && *d >= e.fail_day - ENGAGEMENT_DAYS);
            let (hours, active) = window.fold((0.0, 0.0), |(h, a), (_, ms)| (h + ms / 3.6e6, a + 1.0));
            e.hours_30 = hours;
            e.active_days_30 = active;
        }
    }
    Ok(())
}

fn attach_tenure(eps: &mut [Episode], now: &Inputs, users: &[&str]) -> Result<()> {
    let df = now
        .users
        .clone()
        .filter(in_set("user_id", users))
        .select([col("user_id"), col("signup_date").cast(DataType::Int32).alias("signup")])
        .sort(["user_id"], SortMultipleOptions::default())
        .collect()
        .ctx("reading sign-up dates of dunning users")?;
    let ids = df.column("user_id").ctx("users")?.str().ctx("users")?.clone();
    let signup = df.column("signup").ctx("users")?.i32().ctx("users")?.clone();
    let map = by_user(&ids, |i| signup.get(i));
    for e in eps.iter_mut() {
        if let Some(d) = map.get(&e.user_id).and_then(|v| v.first()) {
            e.tenure_days = f64::from((e.fail_day - d).max(0));
        }
    }
    Ok(())
}
