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
    let feats = feats.lazy();
    let churn = labels::churn_labels(billing.clone(), s, horizon_days);
    let failures = billing
        .filter(col("ts").gt_eq(ts_lit_us(end_of_day_us(s))).and(col("event_type").eq(lit("payment_failed"))))
        .select([col("user_id")])
        .unique(None, UniqueKeepStrategy::Any)
        .with_column(lit(1i32).alias("payment_fails"));
    feats
        .join(churn, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Inner))
        .join(failures, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left))
        .with_column(col("payment_fails").fill_null(lit(0i32)))
        // Join output order is not guaranteed; fits must see rows in one order to be
        // reproducible to the last bit.
        .sort(["user_id"], SortMultipleOptions::default())
        .collect()
        .ctx(format!("building the labelled snapshot {s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_labelled_snapshot_of_some_users_is_their_rows_of_the_whole_snapshot() {
        let s = NaiveDate::from_ymd_opt(2026, 10, 21).unwrap();
        let h = 30;
        let inputs = crate::inputs::sample_inputs(s, s + Duration::days(h as i64), h);
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
}
