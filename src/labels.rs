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
pub(crate) fn status_at(billing: LazyFrame, day: NaiveDate) -> LazyFrame {
    billing
        .filter(col("ts").lt(ts_lit_us(end_of_day_us(day))).and(status_events()))
        // Ties at the same microsecond are broken by event id, so the rule is deterministic.
        .sort(["user_id", "ts", "event_id"], SortMultipleOptions::default())
        .group_by([col("user_id")])
        .agg([col("event_type").last().alias("last_status")])
        .select([col("user_id"), col("last_status").neq(lit("expire")).alias("premium")])
}

/// The users who are premium at the end of `day`, sorted by id.
pub(crate) fn premium_at(billing: LazyFrame, day: NaiveDate) -> LazyFrame {
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
pub(crate) fn training_snapshots(s: NaiveDate, horizon_days: u32, n: u32) -> Vec<NaiveDate> {
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
pub(crate) fn dunning_episodes(billing: LazyFrame) -> LazyFrame {
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

/// The contract's payment-recovery labels, per episode and per day since its failure:
/// for every dunning episode opened before the end of `s` and every k = 1..=`max_days`
/// whose k-th day has ended by the end of `s` (so the label is known at S),
/// `recovered_within` = 1 when a `payment_recovered` closed the episode within k days.
/// Columns: user_id, failure_ts, k (int32), recovered_within (int32). The grace models
/// learn from the same episodes ([`dunning_episodes`]); this is their label, day by day.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the contract's label, kept with its test; the grace stage computes the same per episode-day itself"
    )
)]
pub(crate) fn recovery_labels(billing: LazyFrame, s: NaiveDate, max_days: u32) -> LazyFrame {
    let known = ts_lit_us(end_of_day_us(s));
    let days = df!("k" => (1..=max_days as i32).collect::<Vec<i32>>()).expect("a column of days").lazy();
    dunning_episodes(billing.filter(col("ts").lt(known.clone())))
        .select([col("user_id"), col("failure_ts"), col("recovered"), col("days_to_end")])
        .cross_join(days, None)
        .filter(
            (col("failure_ts").dt().timestamp(TimeUnit::Microseconds)
                + col("k").cast(DataType::Int64) * lit(86_400_000_000i64))
            .lt_eq(known.dt().timestamp(TimeUnit::Microseconds)),
        )
        .with_column(
            (col("recovered").fill_null(lit(false)).and(col("days_to_end").lt_eq(col("k").cast(DataType::Float64))))
                .cast(DataType::Int32)
                .alias("recovered_within"),
        )
        .select([col("user_id"), col("failure_ts"), col("k"), col("recovered_within")])
        .sort(["user_id", "failure_ts", "k"], SortMultipleOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-made billing events; each user's answer is worked out next to them.
    fn billing() -> LazyFrame {
        let rows: &[(&str, &str, &str, &str)] = &[
            // a: subscribed, then expired between S and S + H: premium at S, churned.
            ("a", "2026-01-01T09:00:00", "subscribe", ""),
            ("a", "2026-02-20T00:00:00", "expire", ""),
            // b: renews through the horizon: premium at S, stays.
            ("b", "2026-01-01T09:00:00", "subscribe", ""),
            ("b", "2026-01-31T09:00:00", "renew", ""),
            ("b", "2026-03-02T09:00:00", "renew", ""),
            // c: a trial that expired before S: not in the population.
            ("c", "2026-02-01T09:00:00", "trial_start", ""),
            ("c", "2026-02-05T09:00:00", "expire", ""),
            // d: a failure recovered exactly 3 days later: premium throughout.
            ("d", "2026-01-05T09:00:00", "subscribe", ""),
            ("d", "2026-02-04T00:00:00", "payment_failed", "expired_card"),
            ("d", "2026-02-07T00:00:00", "payment_recovered", ""),
            // e: a failure and a retry, then expiry after S: premium at S, churned; the
            // episode is still open at S.
            ("e", "2026-01-08T09:00:00", "subscribe", ""),
            ("e", "2026-02-07T00:00:00", "payment_failed", "insufficient_funds"),
            ("e", "2026-02-09T00:00:00", "payment_failed", "insufficient_funds"),
            ("e", "2026-02-14T00:00:00", "expire", ""),
            // f: a failure the day before S, nothing since.
            ("f", "2026-01-10T09:00:00", "subscribe", ""),
            ("f", "2026-02-09T00:00:00", "payment_failed", "card_declined"),
        ];
        let us = |t: &str| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").unwrap().and_utc().timestamp_micros()
        };
        let n = rows.len();
        df!(
            "event_id" => (0..n).map(|i| format!("e{i:02}")).collect::<Vec<_>>(),
            "user_id" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "ts" => rows.iter().map(|r| us(r.1)).collect::<Vec<_>>(),
            "event_type" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            "failure_reason" => rows.iter().map(|r| (!r.3.is_empty()).then_some(r.3)).collect::<Vec<_>>(),
            "plan" => vec!["premium_individual"; n],
            "amount" => vec![Some(9.99); n],
            "payment_method" => vec![Some("card"); n],
            "grace_days" => vec![Some(7i16); n],
        )
        .unwrap()
        .lazy()
        .with_column(col("ts").cast(DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))))
    }

    fn s() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 2, 10).unwrap()
    }

    #[test]
    fn churn_labels_follow_the_status_rule_on_hand_made_events() {
        let l = churn_labels(billing(), s(), 30).sort(["user_id"], Default::default()).collect().unwrap();
        let ids: Vec<&str> = l.column("user_id").unwrap().str().unwrap().iter().flatten().collect();
        let churned: Vec<i32> =
            l.column("churned").unwrap().cast(&DataType::Int32).unwrap().i32().unwrap().into_no_null_iter().collect();
        assert_eq!(ids, ["a", "b", "d", "e", "f"], "premium at the end of S (c's trial had expired)");
        assert_eq!(churned, [1, 0, 0, 1, 0]);
    }

    #[test]
    fn dunning_episodes_and_recovery_labels_on_hand_made_events() {
        let e = dunning_episodes(billing()).collect().unwrap();
        let ids: Vec<&str> = e.column("user_id").unwrap().str().unwrap().iter().flatten().collect();
        assert_eq!(ids, ["d", "e", "f"], "one episode each; e's retry is not a new episode");
        let attempts: Vec<u32> =
            e.column("attempts").unwrap().cast(&DataType::UInt32).unwrap().u32().unwrap().into_no_null_iter().collect();
        assert_eq!(attempts, [1, 2, 1]);
        let recovered: Vec<Option<bool>> = e.column("recovered").unwrap().bool().unwrap().iter().collect();
        assert_eq!(recovered, [Some(true), Some(false), None], "f is still open");

        // At S = 2026-02-10 (known until 2026-02-11T00:00), up to 5 days:
        // d failed 02-04: days 1..5 are known; recovered after exactly 3 days.
        // e failed 02-07: days 1..4 known; its expiry on 02-14 is after S, so not known, and
        //   it is simply not recovered within 1..4 days.
        // f failed 02-09: days 1..2 known.
        let r = recovery_labels(billing(), s(), 5).collect().unwrap();
        let got: Vec<(String, i32, i32)> = (0..r.height())
            .map(|i| {
                (
                    r.column("user_id").unwrap().str().unwrap().get(i).unwrap().to_string(),
                    r.column("k").unwrap().i32().unwrap().get(i).unwrap(),
                    r.column("recovered_within").unwrap().i32().unwrap().get(i).unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, i32, i32)> = [
            ("d", 1, 0),
            ("d", 2, 0),
            ("d", 3, 1),
            ("d", 4, 1),
            ("d", 5, 1),
            ("e", 1, 0),
            ("e", 2, 0),
            ("e", 3, 0),
            ("e", 4, 0),
            ("f", 1, 0),
            ("f", 2, 0),
        ]
        .iter()
        .map(|(u, k, y)| (u.to_string(), *k, *y))
        .collect();
        assert_eq!(got, want);
    }

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
