//! Premium status, churn labels and dunning episodes, derived from billing events by the
//! contract's rules.
//!
//! Why one module: the population of every output (who is premium at S), the churn label
//! (premium at S, not premium at S + H) and the uplift labels of past messages all rest
//! on the same status rule; computing it in one function keeps them consistent.

use chrono::{Duration, NaiveDate};
use polars::prelude::*;

use crate::contract::STATUS_EVENTS;
use crate::inputs::{end_of_day_us, in_set, ts_lit_us};

fn status_events() -> Expr {
    in_set("event_type", STATUS_EVENTS)
}

/// `user_id, premium` for every user with a status event before the end of `day`:
/// premium when the latest of {trial_start, subscribe, renew, payment_recovered, expire}
/// exists and is not `expire`. `billing` must be deduplicated.
pub fn status_at(billing: LazyFrame, day: NaiveDate) -> LazyFrame {
    billing
        .filter(col("ts").lt(ts_lit_us(end_of_day_us(day))).and(status_events()))
        // Ties at the same microsecond are broken by event id, so the rule is deterministic.
        .sort(["user_id", "ts", "event_id"], SortMultipleOptions::default())
        .group_by([col("user_id")])
        .agg([col("event_type").last().alias("last_status")])
        .select([col("user_id"), col("last_status").neq(lit("expire")).alias("premium")])
}

/// The users who are premium at the end of `day`, sorted by id.
pub fn premium_at(billing: LazyFrame, day: NaiveDate) -> LazyFrame {
    status_at(billing, day)
        .filter(col("premium"))
        .select([col("user_id")])
        .sort(["user_id"], SortMultipleOptions::default())
}

/// The contract's churn label for snapshot `s` and horizon `h`: one row per user premium
/// at the end of `s`, `churned` = 1 when not premium at the end of `s + h`.
pub fn churn_labels(billing: LazyFrame, s: NaiveDate, horizon_days: u32) -> LazyFrame {
    let later = status_at(billing.clone(), s + Duration::days(horizon_days as i64));
    premium_at(billing, s)
        .join(later, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left))
        .select([col("user_id"), col("premium").fill_null(lit(false)).not().cast(DataType::Int32).alias("churned")])
}

/// The labelled snapshots of a run at `s`, newest first: the validation snapshot S − H,
/// then the training snapshots S − H − G − 7j (j = 0..n−1), all with labels complete by S.
///
/// G, the purge gap, is H rounded up to whole weeks: a training snapshot's label window
/// then ends before the validation window starts. Without it one churn event labels a
/// user in both (weekly windows of 30 days overlap), and a model that can tell users
/// apart (tenure and age nearly do) is rewarded on validation for remembering them.
pub fn training_snapshots(s: NaiveDate, horizon_days: u32, n: u32) -> Vec<NaiveDate> {
    let validation = s - Duration::days(horizon_days as i64);
    let gap = horizon_days.div_ceil(7) as i64 * 7;
    std::iter::once(validation)
        .chain((0..n.saturating_sub(1) as i64).map(|j| validation - Duration::days(gap + 7 * j)))
        .collect()
}

/// Dunning episodes: one row per first `payment_failed` of an episode (a failure while no
/// episode is open), with how it ended. Columns: user_id, failure_ts, failure_reason,
/// payment_method, plan, amount, grace_days, attempts, end_ts (nullable), recovered (bool,
/// null while open), days_to_end (nullable).
///
/// An episode is open from its first failure until the next `payment_recovered` or
/// `expire` of the same user; later failures before that are retries of the same episode.
pub fn dunning_episodes(billing: LazyFrame) -> LazyFrame {
    let relevant = billing
        .filter(in_set("event_type", &["payment_failed", "payment_recovered", "expire"]))
        .sort(["user_id", "ts", "event_id"], SortMultipleOptions::default());
    // An "end" closes the episode; number the episodes per user by how many ends came before.
    let is_end = col("event_type").neq(lit("payment_failed"));
    let with_episode = relevant.with_columns([(is_end.clone().cast(DataType::UInt32).cum_sum(false)
        - is_end.cast(DataType::UInt32))
    .over([col("user_id")])
    .expect("a window over user_id is valid")
    .alias("episode")]);
    with_episode
        .group_by([col("user_id"), col("episode")])
        .agg([
            col("ts").filter(col("event_type").eq(lit("payment_failed"))).first().alias("failure_ts"),
            col("failure_reason").filter(col("event_type").eq(lit("payment_failed"))).first().alias("failure_reason"),
            col("payment_method").filter(col("event_type").eq(lit("payment_failed"))).first().alias("payment_method"),
            col("plan").filter(col("event_type").eq(lit("payment_failed"))).first().alias("plan"),
            col("amount").filter(col("event_type").eq(lit("payment_failed"))).first().alias("amount"),
            col("grace_days").filter(col("event_type").eq(lit("payment_failed"))).first().alias("grace_days"),
            col("event_type").eq(lit("payment_failed")).sum().alias("attempts"),
            col("ts").filter(col("event_type").neq(lit("payment_failed"))).first().alias("end_ts"),
            col("event_type").filter(col("event_type").neq(lit("payment_failed"))).first().alias("end_type"),
        ])
        // Ends without a preceding failure (a plain expiry after a cancel) are not episodes.
        .filter(col("failure_ts").is_not_null())
        .with_columns([
            when(col("end_type").is_null())
                .then(lit(NULL).cast(DataType::Boolean))
                .otherwise(col("end_type").eq(lit("payment_recovered")))
                .alias("recovered"),
            ((col("end_ts") - col("failure_ts")).dt().total_seconds(false) / lit(86_400.0)).alias("days_to_end"),
        ])
        .drop(cols(["episode", "end_type"]))
        .sort(["user_id", "failure_ts"], SortMultipleOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_label_windows_end_before_the_validation_window_starts() {
        let s = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let snaps = training_snapshots(s, 30, 4);
        assert_eq!(snaps[0], s - Duration::days(30), "validation is S − H");
        assert_eq!(snaps.len(), 4);
        for t in &snaps[1..] {
            assert!(*t + Duration::days(30) <= snaps[0], "{t}: its label window ends by the validation snapshot");
        }
        assert_eq!(snaps[1] - snaps[2], Duration::days(7), "weekly");
    }
}
