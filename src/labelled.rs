//! Labelled snapshots: the features of the users premium at S joined with what happened to
//! them in (S, S + H] — the rows the churn and payment models train on, and the rows the
//! interventions stage labels past campaign decisions with.
//!
//! Why its own module: training and the interventions history need the same rows built
//! the same way (the same features builder, the same label rules), and neither stage
//! should reach into the other for them.

use chrono::{Duration, NaiveDate};
use polars::prelude::*;

use crate::error::{PolarsContext, Result};
use crate::features;
use crate::inputs::{Inputs, end_of_day_us, ts_lit_us};
use crate::labels;

/// Features joined with every target's label for one snapshot, sorted by user id:
/// `churned` (the contract's churn label) and `payment_fails` (a renewal payment fails in
/// (S, S + H]).
pub(crate) fn snapshot(inputs: &Inputs, s: NaiveDate, horizon_days: u32) -> Result<DataFrame> {
    snapshot_of(inputs, s, horizon_days, None)
}

/// The rows of [`snapshot`] for the users in `users` only (all premium users when None).
/// Features and labels are per user, so each row is the one the whole snapshot has; the
/// work and memory are those of the users asked for. The features are built in passes
/// ([`features::build`]), which bounds the memory of a whole snapshot.
pub(crate) fn snapshot_of(
    inputs: &Inputs,
    s: NaiveDate,
    horizon_days: u32,
    users: Option<&DataFrame>,
) -> Result<DataFrame> {
    let until = s + Duration::days(horizon_days as i64);
    let (feats, billing) = match users {
        None => (features::build(inputs, s)?, inputs.billing_until(until)),
        Some(users) => {
            // Other users' billing would only be dropped by the joins on the features.
            let ids = users.clone().lazy().select([col("user_id")]);
            let billing = inputs.billing_until(until).join(
                ids,
                [col("user_id")],
                [col("user_id")],
                JoinArgs::new(JoinType::Semi),
            );
            (features::build_of(inputs, s, users)?, billing)
        }
    };
    with_labels(feats, labels_at(billing, s, horizon_days), s)
}

/// The features' rows of the users with labels in `labels`, joined with them and sorted
/// by user id.
fn with_labels(feats: DataFrame, labels: LazyFrame, s: NaiveDate) -> Result<DataFrame> {
    feats
        .lazy()
        .join(labels, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Inner))
        // Join output order is not guaranteed; fits must see rows in one order to be
        // reproducible to the last bit.
        .sort(["user_id"], SortMultipleOptions::default())
        .collect()
        .ctx(format!("building the labelled snapshot {s}"))
}

/// Every target's label for the users premium at the end of `s`, from billing until
/// `s + horizon_days`: `user_id`, `churned`, `payment_fails`.
fn labels_at(billing: LazyFrame, s: NaiveDate, horizon_days: u32) -> LazyFrame {
    let failures = billing
        .clone()
        .filter(col("ts").gt_eq(ts_lit_us(end_of_day_us(s))).and(col("event_type").eq(lit("payment_failed"))))
        .select([col("user_id")])
        .unique(None, UniqueKeepStrategy::Any)
        .with_column(lit(1i32).alias("payment_fails"));
    labels::churn_labels(billing, s, horizon_days)
        .join(failures, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left))
        .with_column(col("payment_fails").fill_null(lit(0i32)))
}

/// The rows of [`snapshot`] a training fit uses, with a `weight` column. A snapshot with at
/// most `negatives` users with neither label (0: any number) keeps every row, each of
/// weight 1. Otherwise it keeps every user with a label (weight 1) and the `negatives`
/// others with the smallest hash of (`seed`, `s`, user id), each weighted by how many
/// others it stands for, so that weighted sums estimate the whole snapshot's. The labels
/// are computed once, for everyone (from billing alone, cheap); the features, the costly
/// part, only for the users kept.
pub(crate) fn training_snapshot(
    inputs: &Inputs,
    s: NaiveDate,
    horizon_days: u32,
    negatives: u64,
    seed: u64,
) -> Result<DataFrame> {
    let weighted = |df: DataFrame, weight: f64| -> Result<DataFrame> {
        let positive = col("churned").eq(lit(1)).or(col("payment_fails").eq(lit(1)));
        df.lazy()
            .with_column(when(positive).then(lit(1.0)).otherwise(lit(weight)).alias("weight"))
            .collect()
            .ctx(format!("weighting the labelled snapshot {s}"))
    };
    if negatives == 0 {
        return weighted(snapshot(inputs, s, horizon_days)?, 1.0);
    }
    let until = s + Duration::days(horizon_days as i64);
    let labelled = labels_at(inputs.billing_until(until), s, horizon_days)
        .collect()
        .ctx(format!("labelling the users premium at {s}"))?;
    let mask =
        |name: &str| -> Result<BooleanChunked> { Ok(labelled.column(name).ctx(name)?.i32().ctx(name)?.equal(0)) };
    let is_negative = mask("churned")? & mask("payment_fails")?;
    let ids = labelled.column("user_id").ctx("user_id")?.str().ctx("user_id")?;
    // Each user's draw; None for the users with a label, who are all kept.
    let draws: Vec<Option<u64>> = ids
        .iter()
        .zip(is_negative.iter())
        .map(|(id, negative)| negative.unwrap_or(false).then(|| sample_hash(seed, s, id.unwrap_or_default())))
        .collect();
    let mut sorted: Vec<u64> = draws.iter().flatten().copied().collect();
    let total = sorted.len();
    if total as u64 <= negatives {
        return weighted(with_labels(features::build(inputs, s)?, labelled.lazy(), s)?, 1.0);
    }
    let (_, &mut cut, _) = sorted.select_nth_unstable(negatives as usize - 1);
    let keep: BooleanChunked = draws.iter().map(|d| d.is_none_or(|h| h <= cut)).collect();
    let kept = labelled.filter(&keep).ctx("sampling users")?;
    let feats = features::build_of(inputs, s, &kept)?;
    weighted(with_labels(feats, kept.lazy(), s)?, total as f64 / negatives as f64)
}

/// A user's draw for the training sample of snapshot `s`: uniform over u64, different
/// on each snapshot, the same on every rerun.
fn sample_hash(seed: u64, s: NaiveDate, user_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(format!("{seed}/{s}/{user_id}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample's inputs for a snapshot whose labels have closed, and its horizon.
    fn closed_snapshot() -> (Inputs, NaiveDate, u32) {
        let s = NaiveDate::from_ymd_opt(2026, 10, 21).unwrap();
        let h = 30;
        (crate::inputs::sample_inputs(s, s + Duration::days(h as i64), h), s, h)
    }

    #[test]
    fn a_labelled_snapshot_of_some_users_is_their_rows_of_the_whole_snapshot() {
        let (inputs, s, h) = closed_snapshot();
        let whole = snapshot(&inputs, s, h).unwrap();
        let churned = whole.column("churned").unwrap().cast(&DataType::Int32).unwrap();
        assert!(churned.i32().unwrap().into_no_null_iter().any(|c| c == 1), "some users churned");
        let ids: Vec<&str> = whole.column("user_id").unwrap().str().unwrap().iter().flatten().collect();
        let some: Vec<&str> = ids.iter().copied().skip(1).step_by(4).chain(["nobody"]).collect();
        let users = df!("user_id" => &some).unwrap();
        let table = snapshot_of(&inputs, s, h, Some(&users)).unwrap();
        let keep: BooleanChunked = ids.iter().map(|id| some.contains(id)).collect();
        assert_eq!(table, whole.filter(&keep).unwrap());
        assert!(table.height() > 10 && table.height() < whole.height());
    }

    #[test]
    fn a_sampled_training_snapshot_keeps_every_label_and_weighs_the_others_up_to_their_number() {
        let (inputs, s, h) = closed_snapshot();
        let whole = snapshot(&inputs, s, h).unwrap();
        let label = |df: &DataFrame, name: &str| -> Vec<i32> {
            df.column(name).unwrap().i32().unwrap().into_no_null_iter().collect()
        };
        let positive = |df: &DataFrame| -> Vec<bool> {
            label(df, "churned").iter().zip(label(df, "payment_fails")).map(|(&c, f)| c == 1 || f == 1).collect()
        };
        let positives = positive(&whole).iter().filter(|&&p| p).count();
        let negatives = whole.height() - positives;
        assert!(positives > 5 && negatives > 100, "a real snapshot: {positives} with a label, {negatives} without");

        // Enough room: every row, weight 1, the whole snapshot's rows.
        for cap in [0, negatives as u64] {
            let all = training_snapshot(&inputs, s, h, cap, 7).unwrap();
            assert_eq!(all.drop("weight").unwrap(), whole);
            assert!(all.column("weight").unwrap().f64().unwrap().into_no_null_iter().all(|w| w == 1.0));
        }

        let cap = 40;
        let sample = training_snapshot(&inputs, s, h, cap, 7).unwrap();
        let kept = positive(&sample);
        assert_eq!(kept.iter().filter(|&&p| p).count(), positives, "every user with a label");
        assert_eq!(kept.iter().filter(|&&p| !p).count(), cap as usize, "and `cap` others");
        let weights: Vec<f64> = sample.column("weight").unwrap().f64().unwrap().into_no_null_iter().collect();
        let weighed: f64 = weights.iter().zip(&kept).filter(|(_, p)| !**p).map(|(w, _)| w).sum();
        assert!((weighed - negatives as f64).abs() < 1e-9, "the others weigh as many as there are");
        assert!(weights.iter().zip(&kept).all(|(&w, &p)| !p || w == 1.0));
        // Each kept row is the whole snapshot's row for that user.
        let ids: Vec<&str> = sample.column("user_id").unwrap().str().unwrap().iter().flatten().collect();
        let in_sample: BooleanChunked =
            whole.column("user_id").unwrap().str().unwrap().iter().map(|id| ids.contains(&id.unwrap())).collect();
        assert_eq!(sample.drop("weight").unwrap(), whole.filter(&in_sample).unwrap());
        // The draw is the same on a rerun, another with another seed.
        assert_eq!(training_snapshot(&inputs, s, h, cap, 7).unwrap(), sample);
        assert_ne!(training_snapshot(&inputs, s, h, cap, 8).unwrap(), sample);
    }
}
