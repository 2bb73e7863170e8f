//! The feature builder: one row per user premium at the end of snapshot S, built the same
//! way for training snapshots and for scoring, so the two cannot drift.
//!
//! Windowed aggregates are SQL in `sql/` (executed by Polars' SQL engine over staged lazy
//! frames); "latest state" features (current plan, price, open dunning episode), which
//! need ordered last-value logic that SQL engines spell differently, are named Polars
//! expressions below. `sql/README.md` documents the split.
//!
//! Point-in-time correctness lives in the staging step: the SQL never sees a row after
//! the end of day S, because [`crate::inputs::Inputs::as_of`] removed it before staging.

use chrono::{Datelike, Duration, NaiveDate};
use polars::prelude::*;
use polars::sql::SQLContext;

use crate::error::{PolarsContext, Result};
use crate::inputs::{Inputs, date_lit, end_of_day_us, in_set, ts_lit_us};
use crate::labels;

/// The SQL feature models, in join order.
pub const SQL_MODELS: &[(&str, &str)] = &[
    ("feat_engagement", include_str!("../sql/feat_engagement.sql")),
    ("feat_payments", include_str!("../sql/feat_payments.sql")),
    ("feat_messaging", include_str!("../sql/feat_messaging.sql")),
];

/// Whether a feature is numeric or a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    Numeric,
    Categorical,
}

/// A feature's name, kind and the plain words used for it in `top_reasons`.
#[derive(Debug, Clone, Copy)]
pub struct FeatureDef {
    pub name: &'static str,
    pub kind: FeatureKind,
    pub words: &'static str,
}

const fn num(name: &'static str, words: &'static str) -> FeatureDef {
    FeatureDef { name, kind: FeatureKind::Numeric, words }
}
const fn cat(name: &'static str, words: &'static str) -> FeatureDef {
    FeatureDef { name, kind: FeatureKind::Categorical, words }
}

/// Every feature the models may use, with the words a marketer reads.
pub const FEATURES: &[FeatureDef] = &[
    num("active_days_7", "active days in the last week"),
    num("active_days_14", "active days in the last two weeks"),
    num("active_days_30", "active days in the last 30 days"),
    num("active_days_60", "active days in the last 60 days"),
    num("active_days_90", "active days in the last 90 days"),
    num("streams_7", "streams in the last week"),
    num("streams_30", "streams in the last 30 days"),
    num("streams_90", "streams in the last 90 days"),
    num("hours_played_30", "hours listened in the last 30 days"),
    num("skips_30", "skips in the last 30 days"),
    num("skip_rate_30", "share of tracks skipped in the last 30 days"),
    num("sessions_30", "listening sessions in the last 30 days"),
    num("searches_30", "searches in the last 30 days"),
    num("saves_30", "library saves in the last 30 days"),
    num("unique_tracks_30", "distinct tracks in the last 30 days"),
    num("listening_trend_14_60", "listening in the last two weeks compared with before"),
    num("days_since_active", "days since the user last listened"),
    num("weekend_share_30", "share of active days on weekends"),
    num("podcast_share_30", "share of listening time on podcasts"),
    num("failures_30", "failed payments in the last 30 days"),
    num("failures_90", "failed payments in the last 90 days"),
    num("failures_365", "failed payments in the last year"),
    num("failures_insufficient_funds_365", "payments failed for lack of funds in the last year"),
    num("failures_expired_card_365", "payments failed on an expired card in the last year"),
    num("recoveries_365", "payments recovered after a failure in the last year"),
    num("lapses_365", "times premium lapsed in the last year"),
    num("plan_changes_365", "plan changes in the last year"),
    num("refunds_365", "refunds in the last year"),
    num("days_since_failure", "days since the last failed payment"),
    num("messages_30", "messages received in the last 30 days"),
    num("messages_90", "messages received in the last 90 days"),
    num("opens_90", "messages opened in the last 90 days"),
    num("clicks_90", "messages clicked in the last 90 days"),
    num("unsubscribes_90", "unsubscribes in the last 90 days"),
    num("days_since_message", "days since the last message"),
    num("tenure_days", "days since signing up"),
    num("price", "current monthly price"),
    num("price_change_90", "price increase over the last 90 days"),
    num("is_trial", "being on a free trial"),
    num("cancel_pending", "having cancelled (premium ends at period end)"),
    num("days_to_period_end", "days until the paid period ends"),
    num("open_dunning", "an unresolved failed payment"),
    num("age", "age"),
    num("push_opt_in", "push notifications allowed"),
    num("email_opt_in", "email allowed"),
    cat("plan", "plan"),
    cat("country", "country"),
    cat("signup_platform", "signup platform"),
    cat("payment_method", "payment method"),
];

pub fn feature(name: &str) -> Option<&'static FeatureDef> {
    FEATURES.iter().find(|f| f.name == name)
}

/// Numeric features whose missing value means "unknown" or "never", not zero; the models
/// impute them. Every other numeric feature is a count and a missing one is zero.
const MISSING_IS_UNKNOWN: &[&str] = &[
    "skip_rate_30",
    "weekend_share_30",
    "podcast_share_30",
    "days_since_failure",
    "days_since_message",
    "tenure_days",
    "price",
    "age",
    "days_to_period_end",
    "listening_trend_14_60",
    "days_since_active",
];

fn days_ago(s: NaiveDate, date: Expr) -> Expr {
    (date_lit(s).cast(DataType::Int32) - date.cast(DataType::Int32)).alias("days_ago")
}

/// Build the features table for snapshot `s` from inputs loaded for a range containing it.
/// Columns: user_id, snapshot_date, then [`FEATURES`] in order; sorted by user_id.
pub fn build(inputs: &Inputs, s: NaiveDate) -> Result<DataFrame> {
    // The streaming engine aggregates the activity window chunk by chunk instead of
    // materialising ~90 days × users rows. Every aggregate is exact (integer sums, counts,
    // last values) and the result is sorted, so it equals the in-memory engine's bit for bit.
    build_lazy(inputs, s)?
        .collect_with_engine(Engine::Streaming)
        .map(|r| r.unwrap_single())
        .ctx(format!("computing features for snapshot {s}"))
}

pub fn build_lazy(inputs: &Inputs, s: NaiveDate) -> Result<LazyFrame> {
    let pit = inputs.as_of(s);
    let window_start = s - Duration::days(89);

    let stg_activity = pit.activity.clone().filter(col("date").gt_eq(date_lit(window_start))).select([
        col("user_id"),
        days_ago(s, col("date")),
        col("date").dt().weekday().gt_eq(lit(6)).alias("is_weekend"),
        col("ms_played"),
        col("streams"),
        col("skips"),
        col("unique_tracks"),
        col("sessions"),
        col("searches"),
        col("saves"),
        col("podcast_ms"),
    ]);
    let stg_billing = pit.billing.clone().with_columns([days_ago(s, col("ts").dt().date())]);
    let stg_messages =
        pit.messages.clone().filter(col("ts").gt_eq(ts_lit_us(end_of_day_us(s - Duration::days(90))))).select([
            col("user_id"),
            days_ago(s, col("ts").dt().date()),
            col("message_type"),
            col("channel"),
            col("arm"),
            // A message decided on S may be opened after S: only opens known by then count.
            col("opened_at").lt(ts_lit_us(end_of_day_us(s))).fill_null(lit(false)).alias("opened"),
            col("clicked"),
            col("unsubscribed"),
        ]);

    let mut ctx = SQLContext::new();
    ctx.register("stg_activity", stg_activity);
    ctx.register("stg_billing", stg_billing.clone());
    ctx.register("stg_messages", stg_messages);

    let population = labels::premium_at(pit.billing.clone(), s);
    let mut out = population.join(pit.users.clone(), [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left));
    for (name, sql) in SQL_MODELS {
        let model = ctx.execute(sql).ctx(format!("sql/{name}.sql"))?;
        out = out.join(model, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left));
    }
    out =
        out.join(subscription_state(stg_billing, s), [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left));

    // Counts are zero, not missing, for users without rows in a window.
    let mut derived = vec![
        (col("skips_30").cast(DataType::Float64) / (col("streams_30") + col("skips_30")).cast(DataType::Float64))
            .fill_nan(lit(NULL))
            .alias("skip_rate_30"),
        (col("weekend_days_30").cast(DataType::Float64) / col("active_days_30").cast(DataType::Float64))
            .fill_nan(lit(NULL))
            .alias("weekend_share_30"),
        (col("podcast_ms_30").cast(DataType::Float64) / col("ms_played_30").cast(DataType::Float64))
            .fill_nan(lit(NULL))
            .alias("podcast_share_30"),
        ((date_lit(s) - col("signup_date")).dt().total_days(false)).cast(DataType::Int32).alias("tenure_days"),
        (lit(s.year()) - col("birth_year").cast(DataType::Int32)).alias("age"),
        col("push_opt_in").cast(DataType::Int32),
        col("email_opt_in").cast(DataType::Int32),
        // Users who never listened in 90 days: the window's length, not missing.
        col("days_since_active").fill_null(lit(90)),
        col("listening_trend_14_60").fill_null(lit(1.0)),
    ];
    let derived_names: Vec<String> =
        derived.iter().filter_map(|e| e.clone().meta().output_name().ok().map(|n| n.to_string())).collect();
    let zero_filled: Vec<Expr> = FEATURES
        .iter()
        .filter(|f| f.kind == FeatureKind::Numeric && !MISSING_IS_UNKNOWN.contains(&f.name))
        .filter(|f| !derived_names.iter().any(|d| d == f.name))
        .map(|f| col(f.name).fill_null(lit(0)))
        .collect();
    derived.extend(zero_filled);
    let mut select = vec![col("user_id"), date_lit(s).alias("snapshot_date")];
    select.extend(FEATURES.iter().map(|f| col(f.name)));
    Ok(out.with_columns(derived).select(select).sort(["user_id"], SortMultipleOptions::default()))
}

/// Current subscription state from ordered billing events (last-value logic).
fn subscription_state(billing: LazyFrame, s: NaiveDate) -> LazyFrame {
    let status = in_set("event_type", crate::contract::STATUS_EVENTS);
    let ts_of = |cond: Expr| col("ts").filter(cond).last();
    billing
        .sort(["user_id", "ts", "event_id"], SortMultipleOptions::default())
        .group_by([col("user_id")])
        .agg([
            col("plan").filter(col("event_type").neq(lit("cancel"))).last().alias("plan"),
            col("amount").filter(col("amount").is_not_null()).last().alias("price"),
            col("amount")
                .filter(col("amount").is_not_null().and(col("days_ago").gt_eq(lit(90))))
                .last()
                .alias("price_90_ago"),
            col("event_type").filter(status.clone()).last().eq(lit("trial_start")).alias("trial"),
            ts_of(status.clone()).alias("status_ts"),
            ts_of(col("event_type").eq(lit("cancel"))).alias("cancel_ts"),
            ts_of(col("event_type").eq(lit("payment_failed"))).alias("fail_ts"),
            ts_of(in_set("event_type", &["payment_recovered", "expire", "renew", "subscribe"])).alias("resolve_ts"),
            col("period_end").filter(col("period_end").is_not_null()).last().alias("period_end"),
            col("payment_method").filter(col("payment_method").is_not_null()).last().alias("payment_method"),
        ])
        .select([
            col("user_id"),
            col("plan"),
            col("price"),
            (col("price") - col("price_90_ago")).fill_null(lit(0.0)).alias("price_change_90"),
            col("trial").cast(DataType::Int32).fill_null(lit(0)).alias("is_trial"),
            col("cancel_ts").gt(col("status_ts")).fill_null(lit(false)).cast(DataType::Int32).alias("cancel_pending"),
            (col("period_end") - date_lit(s)).dt().total_days(false).cast(DataType::Int32).alias("days_to_period_end"),
            col("fail_ts")
                .gt(col("resolve_ts").fill_null(ts_lit_us(0)))
                .fill_null(lit(false))
                .cast(DataType::Int32)
                .alias("open_dunning"),
            col("payment_method"),
        ])
}
