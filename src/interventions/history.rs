//! The randomised campaign history, labelled and with each user's features as of the
//! decision: the training data of the uplift models and of their evaluation.
//!
//! A message decided on day d was decided on what was known at the end of d − 1, so its
//! row carries the features of snapshot d − 1 and the contract's churn label of that
//! snapshot (premium at the end of d − 1, not premium H days later), built by the same
//! code as the churn model's training rows. Only decisions whose label has closed by S
//! are used. When campaigns run on many different days, decisions are grouped onto a
//! weekly grid of snapshots (the latest grid day before the decision) so that a run
//! builds at most [`MAX_DECISION_SNAPSHOTS`] feature snapshots.
//!
//! The newest [`EVALUATION_DAYS`] of decisions are the later slice: the learners are
//! chosen and the policy is evaluated on it without having seen it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, NaiveDate};
use polars::prelude::*;

use crate::error::{PolarsContext, Result};
use crate::inputs::{EFFECT_WINDOW_DAYS, Inputs, date_lit, epoch_days};
use crate::{labelled, labels, progress};

/// Days from a decision (its day included) whose listening measures its engagement
/// effect: active days in them (the readout's `engagement_days` default).
pub(crate) const ENGAGEMENT_DAYS: i64 = 14;
/// How many days of the newest decisions form the evaluation slice.
pub(super) const EVALUATION_DAYS: i64 = 28;
/// The most feature snapshots a run builds for the history.
pub(super) const MAX_DECISION_SNAPSHOTS: usize = 24;

/// Labelled decisions and the populations of the evaluation slice.
pub(super) struct History {
    /// One row per past decision: `snapshot`, `message_type`, `channel`, `treated` (bool),
    /// `propensity`, `unsubscribed` (bool: the send made the user leave the channel),
    /// `decision_day`, `active_days` (in the [`ENGAGEMENT_DAYS`] from the decision; null
    /// where not measured, or where they end after S), then the labelled snapshot's columns (user_id, features, `churned`).
    pub rows: DataFrame,
    /// Every premium user (features and label) of each evaluation-slice snapshot.
    pub populations: Vec<(NaiveDate, DataFrame)>,
    /// Snapshots on or after this day are the evaluation slice.
    pub evaluation_from: NaiveDate,
    /// Up to [`BACKGROUND_PER_SNAPSHOT`] premium users of each decision snapshot (chosen by
    /// a hash of the user id, not by anything they did): who *could* have been messaged,
    /// against whom each arm's support is learned.
    pub background: DataFrame,
}

/// The columns of [`History::rows`] read after the learners have encoded the features:
/// who got what, when, with which probability, and what happened.
const DECISION_COLUMNS: [&str; 9] = [
    "snapshot",
    "user_id",
    "message_type",
    "channel",
    "treated",
    "propensity",
    "churned",
    "unsubscribed",
    "active_days",
];

impl History {
    /// Keep only [`DECISION_COLUMNS`] of the decisions: the replay reads nothing else, and
    /// the features of every past decision are the stage's largest table (about 0.9 GB at a
    /// million users).
    pub(super) fn forget_decision_features(&mut self) -> Result<()> {
        if self.rows.width() > 0 {
            self.rows = self.rows.select(DECISION_COLUMNS).ctx("keeping the past decisions")?;
        }
        Ok(())
    }
}

/// The most users per snapshot kept in [`History::background`].
pub(super) const BACKGROUND_PER_SNAPSHOT: usize = 5000;

/// The snapshot each decision day is attributed to.
pub(super) fn decision_snapshots(days: &BTreeSet<NaiveDate>, last: NaiveDate) -> BTreeMap<NaiveDate, NaiveDate> {
    let weekly = days.len() > MAX_DECISION_SNAPSHOTS;
    days.iter()
        .map(|&d| {
            let before = d - Duration::days(1);
            let snap = if weekly { last - Duration::days(((last - before).num_days() + 6) / 7 * 7) } else { before };
            (d, snap)
        })
        .collect()
}

/// The history at `s`; with `engagement`, each decision's active days after it are
/// measured (the engagement objective's outcome).
pub(super) fn load(inputs: &Inputs, s: NaiveDate, horizon_days: u32, engagement: bool) -> Result<History> {
    load_with(inputs, s, horizon_days, BACKGROUND_PER_SNAPSHOT, engagement)
}

/// [`load`] with `background_size` users per snapshot in [`History::background`].
///
/// Before the evaluation slice only the decided users and the background are labelled:
/// features and labels are per user, so their rows are those of the whole snapshot, and
/// at 1M users the decided are about a quarter of it.
fn load_with(
    inputs: &Inputs,
    s: NaiveDate,
    horizon_days: u32,
    background_size: usize,
    engagement: bool,
) -> Result<History> {
    let last = s - Duration::days(horizon_days as i64);
    let first = last - Duration::days(EFFECT_WINDOW_DAYS - 1);
    let evaluation_from = last - Duration::days(EVALUATION_DAYS - 1);
    // A decision on day d belongs to snapshot d − 1, inside [first, last].
    let msgs = inputs
        .messages
        .clone()
        .with_column(col("ts").dt().date().alias("day"))
        .filter(
            col("day")
                .gt(date_lit(first))
                .and(col("day").lt_eq(date_lit(last + Duration::days(1))))
                .and(col("propensity").gt(lit(0.0))),
        )
        .select([
            col("user_id"),
            col("day"),
            col("message_type"),
            col("channel"),
            col("arm").eq(lit("treatment")).alias("treated"),
            col("propensity"),
            col("unsubscribed").fill_null(lit(false)),
        ])
        .sort(["day", "user_id", "message_type", "channel"], SortMultipleOptions::default())
        .collect()
        .ctx("reading past campaign decisions")?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    let days: BTreeSet<NaiveDate> = msgs
        .column("day")
        .ctx("messages")?
        .date()
        .ctx("messages")?
        .physical()
        .into_no_null_iter()
        .map(|d| epoch + Duration::days(d as i64))
        .collect();
    let mapping = decision_snapshots(&days, last);
    let day_col = msgs.column("day").ctx("messages")?.date().ctx("messages")?.physical().clone();
    let snap: Vec<i32> =
        day_col.iter().map(|d| epoch_days(mapping[&(epoch + Duration::days(d.unwrap_or_default() as i64))])).collect();
    let msgs = msgs
        .lazy()
        .with_column(lit(Series::new("snapshot".into(), snap)).cast(DataType::Date).alias("snapshot"))
        .rename(["day"], ["decision_day"], true)
        .collect()
        .ctx("attributing decisions to snapshots")?;
    // The decided users' active days from the first decision to 14 days after the last
    // (each kept as its epoch day), read once; each snapshot counts its decisions' own.
    let activity = if engagement && msgs.height() > 0 {
        let decided = msgs.clone().lazy().select([col("user_id")]).unique(None, UniqueKeepStrategy::Any);
        let day = col("date").cast(DataType::Int32);
        Some(
            inputs
                .activity
                .clone()
                .filter(
                    day.clone()
                        .gt(lit(epoch_days(first)))
                        .and(day.clone().lt_eq(lit(epoch_days(last + Duration::days(ENGAGEMENT_DAYS))))),
                )
                .select([col("user_id"), day.alias("active_day")])
                .join(decided, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Semi))
                .collect()
                .ctx("reading the listening after past decisions")?,
        )
    } else {
        None
    };

    let snapshots: BTreeSet<NaiveDate> = mapping.values().copied().collect();
    let mut rows = Vec::new();
    let mut populations = Vec::new();
    let mut background = Vec::new();
    for (k, sn) in snapshots.iter().copied().enumerate() {
        progress::step("decision snapshots", k, snapshots.len());
        let decisions = msgs.clone().lazy().filter(col("snapshot").eq(date_lit(sn)));
        // The background is drawn from everyone premium at sn; its rows, and the decided
        // users', are all the features needed, except on the evaluation slice, where the
        // policy is replayed on the whole population.
        let (population, cut) = if sn >= evaluation_from {
            let population = labelled::snapshot_of(inputs, sn, horizon_days, None)?;
            let cut = background_cut(&population, background_size)?;
            (population, cut)
        } else {
            let premium = labels::premium_at(inputs.as_of(sn).billing, sn)
                .collect()
                .ctx(format!("finding the premium users at {sn}"))?;
            let cut = background_cut(&premium, background_size)?;
            let sampled = premium.filter(&in_background(&premium, cut)?).ctx("sampling the background population")?;
            let needed = concat(
                [decisions.clone().select([col("user_id")]), sampled.lazy()],
                UnionArgs { rechunk: false, ..Default::default() },
            )
            .and_then(|l| l.unique(None, UniqueKeepStrategy::Any).collect())
            .ctx(format!("listing the users of the decisions of {sn}"))?;
            (labelled::snapshot_of(inputs, sn, horizon_days, Some(&needed))?, cut)
        };
        let decided = decisions
            .join(population.clone().lazy(), [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Inner))
            .sort(["user_id", "message_type", "channel"], SortMultipleOptions::default().with_maintain_order(true));
        let decided = with_active_days(decided, activity.as_ref(), sn, s)
            .collect()
            .ctx(format!("labelling the decisions of {sn}"))?;
        rows.push(decided.lazy());
        let keep = in_background(&population, cut)?;
        background.push(population.filter(&keep).ctx("sampling the background population")?.lazy());
        if sn >= evaluation_from {
            populations.push((sn, population));
        }
    }
    progress::step("decision snapshots", snapshots.len(), snapshots.len());
    let rows = if rows.is_empty() {
        DataFrame::empty()
    } else {
        concat(rows, UnionArgs::default()).and_then(|l| l.collect()).ctx("combining past decisions")?
    };
    let background = if background.is_empty() {
        DataFrame::empty()
    } else {
        concat(background, UnionArgs::default()).and_then(|l| l.collect()).ctx("combining the background")?
    };
    Ok(History { rows, populations, evaluation_from, background })
}

/// `decided` (the decisions of snapshot `sn`, made in the week after it) with
/// `active_days`: each decision's active days in the [`ENGAGEMENT_DAYS`] from its day
/// (null without `activity`, and where those days end after `s`).
fn with_active_days(decided: LazyFrame, activity: Option<&DataFrame>, sn: NaiveDate, s: NaiveDate) -> LazyFrame {
    let Some(activity) = activity else {
        return decided.with_column(lit(NULL).cast(DataType::Float64).alias("active_days"));
    };
    let day = || col("decision_day").cast(DataType::Int32);
    let window = ENGAGEMENT_DAYS as i32;
    let days = decided.clone().select([col("user_id"), col("decision_day")]).unique(None, UniqueKeepStrategy::Any);
    // Only the weeks after `sn` (the frame spans months): a decision of sn is made by sn + 7.
    let near = activity.clone().lazy().filter(
        col("active_day").gt(lit(epoch_days(sn))).and(col("active_day").lt_eq(lit(epoch_days(sn) + 7 + window))),
    );
    let counted = days
        .join(near, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Inner))
        .filter(col("active_day").gt_eq(day()).and(col("active_day").lt(day() + lit(window))))
        .group_by([col("user_id"), col("decision_day")])
        .agg([len().cast(DataType::Float64).alias("active_days")]);
    let closed = day().lt_eq(lit(epoch_days(s) - window + 1));
    decided
        .join(
            counted,
            [col("user_id"), col("decision_day")],
            [col("user_id"), col("decision_day")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(
            when(closed)
                .then(col("active_days").fill_null(lit(0.0)))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("active_days"),
        )
}

fn user_hashes(users: &DataFrame) -> Result<Vec<u64>> {
    Ok(users
        .column("user_id")
        .ctx("user ids")?
        .str()
        .ctx("user ids")?
        .iter()
        .map(|u| xxhash_rust::xxh3::xxh3_64(u.unwrap_or_default().as_bytes()))
        .collect())
}

/// The largest user hash of a snapshot's background: the `size`-th smallest hash among
/// the users premium at it (`premium`, one row per user).
fn background_cut(premium: &DataFrame, size: usize) -> Result<u64> {
    let mut h = user_hashes(premium)?;
    h.sort_unstable();
    Ok(h.get(size.saturating_sub(1)).copied().unwrap_or(u64::MAX))
}

/// Which rows of `users` belong to the background whose largest hash is `cut`.
fn in_background(users: &DataFrame, cut: u64) -> Result<BooleanChunked> {
    Ok(BooleanChunked::from_iter_values("keep".into(), user_hashes(users)?.into_iter().map(|h| h <= cut)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The history built from the users it needs is the one built from every premium
    /// user: each snapshot's decisions joined with its whole labelled snapshot, and the
    /// background drawn from the whole population.
    #[test]
    fn the_history_labels_only_the_users_it_needs_and_is_the_same_as_from_every_user() {
        let s = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let h = 30;
        let first = s - Duration::days(h as i64 + EFFECT_WINDOW_DAYS);
        let inputs = crate::inputs::sample_inputs(first, s, h);
        // A background smaller than the sample's population, so that users are left out.
        let size = 40;
        let hist = load_with(&inputs, s, h, size, true).unwrap();
        let snapshots: BTreeSet<i32> =
            hist.rows.column("snapshot").unwrap().date().unwrap().physical().into_no_null_iter().collect();
        assert!(snapshots.len() > 4, "decisions of several snapshots: {snapshots:?}");
        let before = snapshots.iter().filter(|&&d| d < epoch_days(hist.evaluation_from)).count();
        assert!(before > 0, "snapshots before the evaluation slice, built from some users only");
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut background = Vec::new();
        for &d in &snapshots {
            let sn = epoch + Duration::days(d as i64);
            let whole = labelled::snapshot(&inputs, sn, h).unwrap();
            let mine = hist.rows.clone().lazy().filter(col("snapshot").eq(date_lit(sn)));
            let expected = mine
                .clone()
                .select([col("user_id"), col("message_type"), col("channel"), col("treated"), col("propensity")])
                .join(whole.clone().lazy(), [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Inner))
                .with_column(date_lit(sn).alias("snapshot"))
                .sort(["user_id", "message_type", "channel"], SortMultipleOptions::default().with_maintain_order(true))
                .collect()
                .unwrap();
            let got = mine.collect().unwrap();
            assert_eq!(
                got.select(expected.get_column_names().into_iter().cloned()).unwrap(),
                expected,
                "the decisions of {sn}"
            );
            if let Some((_, population)) = hist.populations.iter().find(|(p, _)| *p == sn) {
                assert_eq!(population, &whole, "the evaluation slice's population of {sn}");
            }
            let cut = background_cut(&whole, size).unwrap();
            background.push(whole.filter(&in_background(&whole, cut).unwrap()).unwrap().lazy());
        }
        let background = concat(background, UnionArgs::default()).unwrap().collect().unwrap();
        assert_eq!(hist.background, background);
        assert!(hist.background.height() <= size * snapshots.len());
        assert!(!hist.populations.is_empty(), "an evaluation slice");
        // Active days in the 14 days from each decision: counted from the activity table.
        let active = hist.rows.column("active_days").unwrap().f64().unwrap().clone();
        assert!(active.null_count() < active.len(), "measured where the 14 days have passed");
        assert!(active.iter().flatten().all(|d| (0.0..=ENGAGEMENT_DAYS as f64).contains(&d)));
        let users = hist.rows.column("user_id").unwrap().str().unwrap().clone();
        let days = hist.rows.column("decision_day").unwrap().date().unwrap().physical().clone();
        let activity =
            inputs.activity.clone().select([col("user_id"), col("date").cast(DataType::Int32)]).collect().unwrap();
        let mut active_on: std::collections::HashMap<&str, Vec<i32>> = Default::default();
        let (au, ad) =
            (activity.column("user_id").unwrap().str().unwrap(), activity.column("date").unwrap().i32().unwrap());
        for (u, d) in au.iter().zip(ad.iter()) {
            active_on.entry(u.unwrap()).or_default().push(d.unwrap());
        }
        for i in (0..hist.rows.height()).step_by(7) {
            let Some(measured) = hist.rows.column("active_days").unwrap().f64().unwrap().get(i) else { continue };
            let (u, d) = (users.get(i).unwrap(), days.get(i).unwrap());
            let by_hand = active_on
                .get(u)
                .map_or(0, |days| days.iter().filter(|&&a| a >= d && a < d + ENGAGEMENT_DAYS as i32).count());
            assert_eq!(measured, by_hand as f64, "decision {i}: {u} on day {d}");
        }
    }

    #[test]
    fn decisions_belong_to_the_day_before_or_to_a_weekly_grid_when_there_are_many() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let last = d("2026-10-21");
        let weekly: BTreeSet<NaiveDate> = [d("2026-10-01"), d("2026-10-08")].into();
        let m = decision_snapshots(&weekly, last);
        assert_eq!(m[&d("2026-10-08")], d("2026-10-07"));
        let daily: BTreeSet<NaiveDate> = (0..40).map(|i| d("2026-09-10") + Duration::days(i)).collect();
        let m = decision_snapshots(&daily, last);
        // 2026-10-15's decision was made on the 14th: the grid day at or before it is the 14th.
        assert_eq!(m[&d("2026-10-15")], d("2026-10-14"));
        // The 16th's (made on the 15th) also belongs to the 14th; never to a later day.
        assert_eq!(m[&d("2026-10-16")], d("2026-10-14"));
        assert!(m.iter().all(|(day, snap)| snap < day && (last - *snap).num_days() % 7 == 0));
    }
}
