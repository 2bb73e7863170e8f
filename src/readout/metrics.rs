//! The metrics of a readout, each defined once: for every message decision read out, the
//! metric's value after the send and its own value in the pre-period before it, and the
//! segments the decision's user was in at the send.
//!
//! "At the send" is the end of the day before the decision's UTC date, the state the
//! decision saw (a campaign decides at the start of its day). Every window is cut at the
//! end of the snapshot S: a metric whose window has not closed yet is what it is so far.

use chrono::{Duration, NaiveDate};
use polars::prelude::*;

use crate::contract::STATUS_EVENTS;
use crate::error::{PolarsContext, Result};
use crate::inputs::{Inputs, date_lit, date_of_epoch_days, end_of_day_us, epoch_days, in_set, ts_lit_us};

/// A metric of the readout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Metric {
    /// Still premium at send + H, among users premium at the send.
    Retention,
    /// A `subscribe`, `renew` or `trial_start` within H after the send, among users who
    /// were not premium or had cancelled (auto-renew off) at the send.
    Conversion,
    /// A `payment_recovered` within H after the send and before the episode's `expire`,
    /// among users in an open dunning episode at the send.
    PaymentRecovery,
    /// Days with listening in the engagement window after the send (day of the send included).
    ActiveDays,
    /// Streams (plays of 30 s or more) in the engagement window after the send.
    Streams,
    /// Unsubscribed from any message sent in the reachability window from the send
    /// (the decision's own message included); lower is better.
    Unsubscribed,
}

impl Metric {
    pub(crate) const ALL: [Metric; 6] = [
        Metric::Retention,
        Metric::Conversion,
        Metric::PaymentRecovery,
        Metric::ActiveDays,
        Metric::Streams,
        Metric::Unsubscribed,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Metric::Retention => "retention",
            Metric::Conversion => "conversion",
            Metric::PaymentRecovery => "payment_recovery",
            Metric::ActiveDays => "active_days",
            Metric::Streams => "streams",
            Metric::Unsubscribed => "unsubscribed",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether a larger value is better.
    pub(crate) fn higher_is_better(self) -> bool {
        self != Metric::Unsubscribed
    }

    /// The column of its pre-period value.
    pub(crate) fn pre_column(self) -> String {
        format!("{}_pre", self.name())
    }
}

/// The windows of the metrics, in days.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windows {
    /// H: retention, conversion and payment recovery.
    pub horizon_days: u32,
    pub engagement_days: u32,
    pub reachability_days: u32,
    /// The pre-period of every metric (CUPED), ending at the send.
    pub pre_days: u32,
}

impl Windows {
    /// The last day of `metric`'s window for a send on day `d`.
    pub(crate) fn last_day(&self, metric: Metric, d: NaiveDate) -> NaiveDate {
        let days = match metric {
            Metric::Retention | Metric::Conversion | Metric::PaymentRecovery => self.horizon_days,
            Metric::ActiveDays | Metric::Streams => self.engagement_days,
            Metric::Unsubscribed => self.reachability_days,
        };
        d + Duration::days(days as i64 - 1)
    }
}

/// The segments a decision is cut by (`readout_segments`).
pub(crate) const SEGMENTS: [&str; 5] = ["risk_decile", "tenure_band", "plan", "country", "platform"];

const CONVERTING: &[&str] = &["subscribe", "renew", "trial_start"];
/// The events after which a premium user's auto-renew is known to be on or off.
const RENEWAL_STATE: &[&str] = &["cancel", "subscribe", "renew", "trial_start", "payment_recovered", "expire"];
/// The events after which a user is known to be in dunning or not.
const DUNNING_STATE: &[&str] = &["payment_failed", "payment_recovered", "expire", "subscribe", "renew", "trial_start"];

/// The columns of a decision, as [`decisions`] returns them and [`measure`] keeps them.
const DECISION_COLUMNS: [&str; 9] =
    ["message_id", "user_id", "ts", "send_date", "campaign_id", "message_type", "channel", "arm", "propensity"];

/// The decisions of `messages` whose campaign's first decision is on or after `from` and
/// at or before S: message_id, user_id, ts, send_date, campaign_id, message_type, channel,
/// arm, propensity.
pub(crate) fn decisions(messages: LazyFrame, from: NaiveDate, s: NaiveDate) -> LazyFrame {
    let m = messages
        .filter(col("ts").lt(ts_lit_us(end_of_day_us(s))))
        .with_column(col("ts").dt().date().alias("send_date"));
    let started = m
        .clone()
        .group_by([col("campaign_id")])
        .agg([col("send_date").min().alias("campaign_start")])
        .filter(col("campaign_start").gt_eq(date_lit(from)));
    m.join(started, [col("campaign_id")], [col("campaign_id")], JoinArgs::new(JoinType::Inner))
        .select(DECISION_COLUMNS.map(col))
}

/// Every metric's value and pre-period value for each decision of `decisions` (as
/// [`decisions`] returns it, collected), with the segments of its user at the send;
/// `scores_of` gives the risk deciles of a snapshot's scores when they were written.
pub(crate) fn measure(
    inputs: &Inputs,
    decisions: &DataFrame,
    s: NaiveDate,
    w: Windows,
    scores_of: &dyn Fn(NaiveDate) -> Result<Option<DataFrame>>,
) -> Result<DataFrame> {
    let billing = inputs
        .billing
        .clone()
        .filter(col("ts").lt(ts_lit_us(end_of_day_us(s))))
        .select([col("user_id"), col("ts"), col("event_id"), col("event_type"), col("plan")])
        .sort(["user_id", "ts", "event_id"], SortMultipleOptions::default())
        .collect()
        .ctx("reading billing for the readout")?;
    let unsubscribes = inputs
        .messages
        .clone()
        .filter(col("unsubscribed").and(col("ts").lt(ts_lit_us(end_of_day_us(s)))))
        .select([col("user_id"), col("ts").alias("unsubscribed_ts")])
        .collect()
        .ctx("reading unsubscribes for the readout")?;
    let users = inputs
        .users
        .clone()
        .select([col("user_id"), col("signup_date"), col("country"), col("signup_platform").alias("platform")])
        .collect()
        .ctx("reading users for the readout")?;
    let dates = decisions.column("send_date").ctx("send_date")?.as_materialized_series().unique().ctx("send dates")?;
    let dates = dates.sort(SortOptions::default()).ctx("send dates")?;
    let mut parts = Vec::new();
    let days = dates.cast(&DataType::Int32).ctx("send dates")?;
    for d in days.i32().ctx("send dates")?.iter().flatten() {
        let d = date_of_epoch_days(d);
        let of_day = decisions.clone().lazy().filter(col("send_date").eq(date_lit(d)));
        let part = of_day_measures(inputs, of_day, &billing, &unsubscribes, &users, d, s, w, scores_of)?;
        parts.push(part.lazy());
    }
    if parts.is_empty() {
        return Ok(DataFrame::empty());
    }
    concat(parts, UnionArgs::default())
        .and_then(|lf| lf.sort(["send_date", "message_id"], SortMultipleOptions::default()).collect())
        .ctx("the readout's measures")
}

fn any_of(cond: Expr) -> Expr {
    cond.cast(DataType::UInt32).sum().gt(lit(0u32))
}

#[allow(clippy::too_many_arguments)]
fn of_day_measures(
    inputs: &Inputs,
    of_day: LazyFrame,
    billing: &DataFrame,
    unsubscribes: &DataFrame,
    users: &DataFrame,
    d: NaiveDate,
    s: NaiveDate,
    w: Windows,
    scores_of: &dyn Fn(NaiveDate) -> Result<Option<DataFrame>>,
) -> Result<DataFrame> {
    let at_send = d - Duration::days(1);
    let t0 = ts_lit_us(end_of_day_us(at_send));
    let t1 = ts_lit_us(end_of_day_us(w.last_day(Metric::Retention, d).min(s)));
    let tp = ts_lit_us(end_of_day_us(at_send - Duration::days(w.pre_days as i64)));
    let who = of_day.clone().select([col("user_id")]).unique(None, UniqueKeepStrategy::Any);
    let semi = |lf: LazyFrame| lf.join(who.clone(), [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Semi));
    let (before, after, pre) = (
        col("ts").lt(t0.clone()),
        col("ts").gt_eq(t0.clone()).and(col("ts").lt(t1.clone())),
        col("ts").gt_eq(tp.clone()).and(col("ts").lt(t0.clone())),
    );
    let status = || in_set("event_type", STATUS_EVENTS);
    let billed = semi(billing.clone().lazy()).filter(col("ts").lt(t1.clone())).group_by([col("user_id")]).agg([
        col("event_type").filter(status().and(before.clone())).last().alias("status0"),
        col("event_type").filter(status()).last().alias("status1"),
        col("event_type").filter(status().and(col("ts").lt(tp.clone()))).last().alias("status_pre"),
        col("event_type").filter(in_set("event_type", RENEWAL_STATE).and(before.clone())).last().alias("renewal0"),
        col("event_type").filter(in_set("event_type", DUNNING_STATE).and(before.clone())).last().alias("dunning0"),
        col("plan").filter(status().and(before.clone())).last().alias("plan"),
        any_of(in_set("event_type", CONVERTING).and(after.clone())).alias("converted"),
        any_of(in_set("event_type", CONVERTING).and(pre.clone())).alias("converted_pre"),
        col("event_type")
            .filter(in_set("event_type", &["payment_recovered", "expire"]).and(after.clone()))
            .first()
            .alias("episode_end"),
        any_of(col("event_type").eq(lit("payment_recovered")).and(pre.clone())).alias("recovered_pre"),
    ]);
    let first = epoch_days(d);
    let last = epoch_days(w.last_day(Metric::ActiveDays, d).min(s));
    let first_pre = epoch_days(at_send - Duration::days(w.pre_days as i64 - 1));
    let day = col("date").cast(DataType::Int32);
    let listened = semi(inputs.activity.clone())
        .filter(day.clone().gt_eq(lit(first_pre)).and(day.clone().lt_eq(lit(last))))
        .group_by([col("user_id")])
        .agg([
            day.clone().gt_eq(lit(first)).cast(DataType::Float64).sum().alias("active_days"),
            col("streams").cast(DataType::Float64).filter(day.clone().gt_eq(lit(first))).sum().alias("streams"),
            day.clone().lt(lit(first)).cast(DataType::Float64).sum().alias("active_days_pre"),
            col("streams").cast(DataType::Float64).filter(day.lt(lit(first))).sum().alias("streams_pre"),
        ]);
    // Unsubscribes in the reachability window from the decision's own time, and in the
    // pre-period before it.
    let reach_end = ts_lit_us(end_of_day_us(s));
    let reach = (w.reachability_days as i64) * 86_400_000_000;
    let pre_us = (w.pre_days as i64) * 86_400_000_000;
    let ts_us = col("ts").cast(DataType::Int64);
    let uts_us = col("unsubscribed_ts").cast(DataType::Int64);
    let unsub = of_day
        .clone()
        .select([col("message_id"), col("user_id"), col("ts")])
        .join(unsubscribes.clone().lazy(), [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Inner))
        .group_by([col("message_id")])
        .agg([
            any_of(
                uts_us
                    .clone()
                    .gt_eq(ts_us.clone())
                    .and(uts_us.clone().lt(ts_us.clone() + lit(reach)))
                    .and(col("unsubscribed_ts").lt(reach_end)),
            )
            .alias("unsubscribed"),
            any_of(uts_us.clone().gt_eq(ts_us.clone() - lit(pre_us)).and(uts_us.lt(ts_us))).alias("unsubscribed_pre"),
        ]);
    let left = || JoinArgs::new(JoinType::Left);
    let mut joined = of_day
        .join(billed, [col("user_id")], [col("user_id")], left())
        .join(listened, [col("user_id")], [col("user_id")], left())
        .join(unsub, [col("message_id")], [col("message_id")], left())
        .join(users.clone().lazy(), [col("user_id")], [col("user_id")], left());
    joined = match scores_of(at_send)? {
        Some(scores) => joined.join(
            scores.lazy().select([col("user_id"), col("risk_decile").cast(DataType::String)]),
            [col("user_id")],
            [col("user_id")],
            left(),
        ),
        None => joined.with_column(lit(NULL).cast(DataType::String).alias("risk_decile")),
    };
    let premium = |c: &str| col(c).is_not_null().and(col(c).neq(lit("expire")));
    let flag = |e: Expr| e.fill_null(lit(false)).cast(DataType::Float64);
    let only = |pop: Expr, v: Expr| when(pop).then(v).otherwise(lit(NULL).cast(DataType::Float64));
    let premium0 = premium("status0");
    let cancelled0 = premium0.clone().and(col("renewal0").eq(lit("cancel")).fill_null(lit(false)));
    let dunning0 = premium0.clone().and(col("dunning0").eq(lit("payment_failed")).fill_null(lit(false)));
    let converting = premium0.clone().not().or(cancelled0);
    let tenure = (col("send_date").cast(DataType::Int32) - col("signup_date").cast(DataType::Int32)).alias("tenure");
    joined
        .with_column(tenure)
        .select(
            DECISION_COLUMNS
                .map(col)
                .into_iter()
                .chain([
                    only(premium0.clone(), flag(premium("status1"))).alias("retention"),
                    only(premium0.clone(), flag(premium("status_pre"))).alias("retention_pre"),
                    only(converting.clone(), flag(col("converted"))).alias("conversion"),
                    only(converting, flag(col("converted_pre"))).alias("conversion_pre"),
                    only(dunning0.clone(), flag(col("episode_end").eq(lit("payment_recovered"))))
                        .alias("payment_recovery"),
                    only(dunning0, flag(col("recovered_pre"))).alias("payment_recovery_pre"),
                    col("active_days").fill_null(lit(0.0)),
                    col("active_days_pre").fill_null(lit(0.0)),
                    col("streams").fill_null(lit(0.0)),
                    col("streams_pre").fill_null(lit(0.0)),
                    flag(col("unsubscribed")).alias("unsubscribed"),
                    flag(col("unsubscribed_pre")).alias("unsubscribed_pre"),
                    col("risk_decile"),
                    when(col("tenure").lt(lit(30)))
                        .then(lit("0-29d"))
                        .when(col("tenure").lt(lit(180)))
                        .then(lit("30-179d"))
                        .when(col("tenure").lt(lit(365)))
                        .then(lit("180-364d"))
                        .when(col("tenure").is_not_null())
                        .then(lit("365d+"))
                        .otherwise(lit(NULL).cast(DataType::String))
                        .alias("tenure_band"),
                    col("plan").fill_null(lit("none")),
                    col("country"),
                    col("platform"),
                ])
                .collect::<Vec<_>>(),
        )
        .collect()
        .ctx(format!("measuring the decisions sent on {d}"))
}
