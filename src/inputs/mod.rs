//! Reading the four input tables for a range of snapshot dates.
//!
//! Why a separate step: every stage reads the same tables, and the two rules that keep
//! the numbers honest belong in one place rather than in each stage:
//! - partition pruning: only the `dt=` partitions a stage's longest window needs are
//!   listed and read, plus the `late_days` partitions after the last snapshot, where rows
//!   that arrived late may sit (see below);
//! - the contract's physical variations (string encodings, wider integers, timestamp units)
//!   are normalised to one schema per table (each file's schema is checked; files that
//!   agree are read by one scan), and a file that lacks a column or carries an unusable
//!   type is rejected with the table, file and column named.
//!
//! The point-in-time cut ("nothing after the end of day S") is applied by
//! [`Inputs::as_of`], which every feature and label computation goes through.
//!
//! Late rows: `dt` is normally the date of a row's own time, but a row can land in a
//! later partition than its date (a late export). Rows are therefore kept by their own
//! time, never by their partition: the partitions of `[first − lookback, last + late_days]`
//! are read and the rows whose time is in `[first − lookback, end of last]` kept. A late
//! row is then used for every snapshot from its time on that is built once its partition
//! exists (a backfill, a rerun), and never for one before its time. A snapshot built
//! before the row landed cannot see it; `late_days` bounds how far after a snapshot its
//! rebuild still looks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{Duration, NaiveDate};
use polars::prelude::*;

use crate::config::{DEFAULT_LATE_DAYS, InputSettings};
use crate::contract::{self, Table};
use crate::error::{Error, PolarsContext, Result};
use crate::shard::Shard;
use crate::storage::{PartitionFile, Storage};

mod read;
mod time;

pub(crate) use read::{SetAside, check_schema, scan_table};
use read::{is_data, read_checked, scan_checked, time_within};
pub(crate) use time::{date_lit, date_of_epoch_days, end_of_day_us, epoch_days, ts_lit_us};

/// How many days of message decisions, ending H days before S, the interventions stage
/// learns message effects from: long enough for several weekly campaigns of every kind,
/// short enough to follow changes in what messages say. It sets how far back every
/// command reads `messages` (H + this), so that message features (`days_since_message`)
/// are the same whichever command builds them.
pub(crate) const EFFECT_WINDOW_DAYS: i64 = 120;

/// How far back each table is read, in days before the earliest snapshot of a run, how
/// many partitions after the last snapshot are read for late rows, and what share of a
/// table's rows may be set aside for breaking the contract (`inputs.quarantine_share`).
#[derive(Debug, Clone, Copy)]
pub struct Lookback {
    pub activity_days: u32,
    pub messages_days: u32,
    pub billing_days: u32,
    pub late_days: u32,
    pub quarantine_share: f64,
}

impl Lookback {
    /// The lookback for a horizon of `horizon_days`.
    pub fn new(horizon_days: u32) -> Self {
        // Engagement windows go back 90 days. Message effects are learned from decisions
        // up to H + 120 days old ([`EFFECT_WINDOW_DAYS`]). Billing features
        // look back a year, and premium status needs the latest status event, which for a
        // monthly subscriber is never more than a period plus a grace period old.
        let messages_days = (horizon_days as i64 + EFFECT_WINDOW_DAYS).max(90) as u32;
        Lookback {
            activity_days: 90,
            messages_days,
            billing_days: 400,
            late_days: DEFAULT_LATE_DAYS,
            quarantine_share: 0.0,
        }
    }

    /// The same lookback, read as `[inputs]` says: its late partitions and quarantine.
    pub fn reading(self, inputs: &InputSettings) -> Self {
        Lookback { late_days: inputs.late_days, quarantine_share: inputs.quarantine_share, ..self }
    }
}

/// The input tables as lazy scans over exactly the files that were listed.
#[derive(Clone)]
pub struct Inputs {
    pub users: LazyFrame,
    pub activity: LazyFrame,
    /// Deduplicated on `event_id`.
    pub billing: LazyFrame,
    pub messages: LazyFrame,
    /// Every file read, relative to the input root (for the run manifest).
    pub files: Vec<String>,
    /// The range of snapshot dates these inputs were loaded for.
    pub first: NaiveDate,
    pub last: NaiveDate,
    /// The `activity` files read, with their partition dates and versions: what says
    /// whether activity aggregates kept by an earlier run came from the same rows.
    pub(crate) activity_files: Vec<PartitionFile>,
    /// The root the files were read from (None for inputs made in memory).
    pub(crate) source: Option<Storage>,
    /// Where activity aggregates are kept between runs, when that is on
    /// (`features.store`); `features` reads and writes it.
    pub(crate) store: Option<Arc<FeatureStore>>,
    /// The rows set aside for breaking the contract, per table (`inputs.quarantine_share`
    /// above 0; None when it is 0).
    pub(crate) set_aside: Option<Arc<Vec<SetAside>>>,
}

/// The feature store's table under the output root.
pub(crate) const FEATURE_STORE_TABLE: &str = "feature_store";

/// The feature store: a root where the activity aggregates of each snapshot's premium users
/// are kept (`feature_store/snapshot=D/`, committed like any table), so that a later run
/// that needs snapshot D again, with the same activity files, reads them instead of
/// aggregating 90 days of activity again. What it holds and when it is trusted is
/// `features::store`'s business; this is the handle and what this run did with it.
pub(crate) struct FeatureStore {
    pub(crate) root: Storage,
    /// The store's table under the root: one per shard, since a shard keeps only its users.
    pub(crate) table: String,
    /// The earliest and latest activity date in each file, found once per file.
    pub(crate) dates: Mutex<HashMap<String, Option<(NaiveDate, NaiveDate)>>>,
    /// What the store gave each time a snapshot was built this run (for the manifest).
    pub(crate) log: Mutex<BTreeMap<NaiveDate, Vec<String>>>,
}

impl FeatureStore {
    /// Record what happened for snapshot `d`.
    pub(crate) fn note(&self, d: NaiveDate, what: String) {
        tracing::info!(snapshot = %d, what = what.as_str(), "feature store");
        self.log.lock().expect("the store's log").entry(d).or_default().push(what);
    }
}

/// Which users a command reads, when not every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSubset {
    /// One shard's users; `exported`: the root is that shard's own export (`{shard}`).
    Shard { shard: Shard, exported: bool },
    /// The `n` users of smallest xxh3_64(user_id): a deterministic sample, uniform over
    /// every shard (`training.sample_users`).
    Sample(u64),
}

impl UserSubset {
    /// Where the feature store keeps this subset's aggregates (each subset its own).
    pub(crate) fn store_table(&self) -> String {
        match self {
            UserSubset::Shard { shard, .. } => format!("{FEATURE_STORE_TABLE}/shard={}", shard.label()),
            UserSubset::Sample(n) => format!("{FEATURE_STORE_TABLE}/sample={n}"),
        }
    }

    /// Keep the subset's users in `users`; their ids.
    fn users_of(&self, storage: &Storage, users: &mut DataFrame) -> Result<Series> {
        let ids = users.column("user_id").ctx("users")?.str().ctx("users")?.clone();
        let mask: BooleanChunked = match *self {
            UserSubset::Shard { shard, exported } => {
                let mask: BooleanChunked = ids.iter().map(|id| id.is_some_and(|id| shard.holds(id))).collect();
                if exported && let Some(row) = mask.iter().position(|m| m != Some(true)) {
                    let id = ids.get(row).unwrap_or("null");
                    return Err(Error::data(format!(
                        "table `users` under {}: row {row} holds user `{id}`, of shard {} of {}, not of this shard \
                         {}: the export does not split users by xxh3_64(user_id) mod {} (README, \"Shards\")",
                        storage.uri(),
                        crate::shard::shard_of(id, shard.count),
                        shard.count,
                        shard.index,
                        shard.count,
                    )));
                }
                mask
            }
            UserSubset::Sample(n) => {
                let hashes: Vec<u64> =
                    ids.iter().map(|id| xxhash_rust::xxh3::xxh3_64(id.unwrap_or("").as_bytes())).collect();
                let n = (n as usize).min(hashes.len());
                if n == hashes.len() {
                    hashes.iter().map(|_| true).collect()
                } else {
                    let mut sorted = hashes.clone();
                    let (_, nth, _) = sorted.select_nth_unstable(n);
                    let cut = *nth;
                    hashes.iter().map(|&h| h < cut).collect()
                }
            }
        };
        *users = users.filter(&mask).ctx("keeping the users asked for")?;
        tracing::info!(users = users.height(), subset = ?self, "reading a subset of the users");
        Ok(users.column("user_id").ctx("users")?.as_materialized_series().clone())
    }
}

impl Inputs {
    /// List and open what snapshots in `[first, last]` need (see the module docs for which
    /// partitions and rows).
    pub fn load(storage: &Storage, first: NaiveDate, last: NaiveDate, lookback: Lookback) -> Result<Self> {
        Self::load_users(storage, first, last, lookback, None)
    }

    /// [`Inputs::load`] for a subset of the users only (`None`: every user): one shard's, or
    /// a sample. Rows of other users are dropped as they are read, before the contract's
    /// checks, so that N shard tasks over one root check each row once between them. From
    /// a root that is a shard's own export, `users` must hold none of another shard's
    /// users: an export split another way would otherwise lose them without a word.
    pub fn load_users(
        storage: &Storage,
        first: NaiveDate,
        last: NaiveDate,
        lookback: Lookback,
        subset: Option<UserSubset>,
    ) -> Result<Self> {
        let mut files = Vec::new();
        let users_files: Vec<String> =
            storage.list_files(contract::USERS.name)?.into_iter().map(|f| f.rel).filter(|r| is_data(r)).collect();
        if users_files.is_empty() {
            return Err(Error::data(format!("table `users`: no Parquet files under {}/users/", storage.uri())));
        }
        let users = scan_table(storage, &contract::USERS, &users_files)?;
        files.extend(users_files.iter().cloned());

        // A daily table's scan over the partitions `days` before `first` to `late_days`
        // after `last`, the files it reads, and their partitions.
        let mut daily = |table: &Table, days: u32| -> Result<(LazyFrame, Vec<String>, Vec<PartitionFile>)> {
            let from = first - Duration::days(days as i64);
            let to = last + Duration::days(lookback.late_days as i64);
            let parts = storage.partition_files(table.name, from, to)?;
            let rels: Vec<String> = parts.iter().map(|p| p.rel.clone()).collect();
            let lf = if rels.is_empty() {
                if storage.list_dirs(table.name)?.is_empty() {
                    return Err(Error::data(format!(
                        "table `{}`: no dt= partitions under {}/{}/",
                        table.name,
                        storage.uri(),
                        table.name
                    )));
                }
                DataFrame::empty_with_schema(&table.schema()).lazy()
            } else {
                scan_table(storage, table, &rels)?
            };
            files.extend(rels.iter().cloned());
            Ok((lf.filter(time_within(table, from, last)), rels, parts))
        };
        let (activity, activity_rels, activity_files) = daily(&contract::ACTIVITY, lookback.activity_days)?;
        let (billing, billing_rels, _) = daily(&contract::BILLING, lookback.billing_days)?;
        let (messages, messages_rels, _) = daily(&contract::MESSAGES, lookback.messages_days)?;
        if !activity_files.iter().any(|f| f.date <= last) {
            // None read is on or before S: refuse S if the table begins after it. (Earlier
            // snapshots of a range, the oldest training snapshots, may precede the data:
            // nobody is premium there yet, and they are left out.)
            let oldest = storage
                .list_dirs(contract::ACTIVITY.name)?
                .iter()
                .filter_map(|d| NaiveDate::parse_from_str(d.strip_prefix("dt=")?, "%Y-%m-%d").ok())
                .min();
            if let Some(oldest) = oldest.filter(|oldest| *oldest > last) {
                return Err(Error::data(format!(
                    "snapshot {last} is before the inputs begin: the oldest `activity` partition under {}/activity/ is \
                     dt={oldest}; a snapshot needs its own day of listening",
                    storage.uri(),
                )));
            }
        }
        if activity_files.iter().all(|f| f.date < last) {
            // None read is on or after S: refuse S if the table ends before it.
            let newest = storage
                .list_dirs(contract::ACTIVITY.name)?
                .iter()
                .filter_map(|d| NaiveDate::parse_from_str(d.strip_prefix("dt=")?, "%Y-%m-%d").ok())
                .max();
            if newest.is_none_or(|newest| newest < last) {
                return Err(Error::data(format!(
                    "snapshot {last} is after the inputs end: the newest `activity` partition under {}/activity/ is \
                     {}; a snapshot needs its own day of listening",
                    storage.uri(),
                    newest.map(|d| format!("dt={d}")).unwrap_or_else(|| "none".into())
                )));
            }
        }
        // Users, billing and messages are small next to activity and every stage queries
        // them several times (status on many days, labels, episodes): read them once. Each
        // table read is checked against the contract first (`checks`); rows that break it
        // stop the command, or are set aside under `inputs.quarantine_share`.
        let share = lookback.quarantine_share;
        let mut aside = Vec::new();
        let mut users = read_checked(storage, &contract::USERS, &users_files, users, share, &mut aside)?;
        let (activity, billing, messages) = match subset {
            Some(subset) => {
                let ids = subset.users_of(storage, &mut users)?;
                // A semi-join, in the rows' order: one parallel hash probe per row (an
                // `is_in` of a quarter million literal ids took 43 s per shard at 1M users).
                let ids = DataFrame::new(ids.len(), vec![ids.into()]).ctx("the subset's users")?.lazy();
                let mut semi = JoinArgs::new(JoinType::Semi);
                semi.maintain_order = MaintainOrderJoin::Left;
                let of = |lf: LazyFrame| lf.join(ids.clone(), [col("user_id")], [col("user_id")], semi.clone());
                (of(activity), of(billing), of(messages))
            }
            None => (activity, billing, messages),
        };
        // A user set aside is not half read: none of their rows in the other tables is.
        let (activity, billing, messages) = match aside.iter().find(|a| a.table == contract::USERS.name) {
            Some(users_aside) => {
                let gone = users_aside
                    .rows
                    .clone()
                    .lazy()
                    .select([col("user_id")])
                    .drop_nulls(None)
                    .unique(None, UniqueKeepStrategy::Any);
                let mut anti = JoinArgs::new(JoinType::Anti);
                anti.maintain_order = MaintainOrderJoin::Left;
                let without = |lf: LazyFrame| lf.join(gone.clone(), [col("user_id")], [col("user_id")], anti.clone());
                (without(activity), without(billing), without(messages))
            }
            None => (activity, billing, messages),
        };
        let billing = read_checked(storage, &contract::BILLING, &billing_rels, billing, share, &mut aside)?
            .lazy()
            .sort(["event_id"], SortMultipleOptions::default().with_maintain_order(true))
            .unique_stable(Some(cols(["event_id"])), UniqueKeepStrategy::First)
            .collect()
            .ctx("reading table `billing`")?
            .lazy();
        let messages = read_checked(storage, &contract::MESSAGES, &messages_rels, messages, share, &mut aside)?.lazy();
        let activity = scan_checked(storage, &contract::ACTIVITY, &activity_rels, activity, share, &mut aside)?;
        let users = users.lazy();
        Ok(Inputs {
            users,
            activity,
            billing,
            messages,
            files,
            first,
            last,
            activity_files,
            source: Some(storage.clone()),
            store: None,
            set_aside: (share > 0.0).then(|| Arc::new(aside)),
        })
    }

    /// These inputs with the feature store at `root` (see [`FeatureStore`]).
    pub fn with_feature_store(self, root: Storage, subset: Option<UserSubset>) -> Inputs {
        let table = match subset {
            Some(subset) => subset.store_table(),
            None => FEATURE_STORE_TABLE.to_string(),
        };
        let store = FeatureStore { root, table, dates: Mutex::default(), log: Mutex::default() };
        Inputs { store: Some(Arc::new(store)), ..self }
    }

    /// What the feature store gave for each snapshot built so far, by date (for the
    /// manifest); null without a store.
    pub fn feature_store_log(&self) -> serde_json::Value {
        match &self.store {
            Some(store) => serde_json::json!(*store.log.lock().expect("the store's log")),
            None => serde_json::Value::Null,
        }
    }

    /// The inputs as they were known at the end of day `s`: every row with a time after
    /// it is removed, and users who had not signed up yet are dropped.
    pub fn as_of(&self, s: NaiveDate) -> Inputs {
        let end = ts_lit_us(end_of_day_us(s));
        Inputs {
            users: self.users.clone().filter(col("signup_date").lt_eq(date_lit(s))),
            activity: self.activity.clone().filter(col("date").lt_eq(date_lit(s))),
            billing: self.billing.clone().filter(col("ts").lt(end.clone())),
            messages: self.messages.clone().filter(col("ts").lt(end)),
            files: self.files.clone(),
            first: self.first,
            last: s,
            activity_files: self.activity_files.clone(),
            source: self.source.clone(),
            store: self.store.clone(),
            set_aside: self.set_aside.clone(),
        }
    }

    /// Billing including events after `s` (for labels, which look forward on purpose).
    pub fn billing_until(&self, day: NaiveDate) -> LazyFrame {
        self.billing.clone().filter(col("ts").lt(ts_lit_us(end_of_day_us(day))))
    }
}

/// `column IN (values…)` for a string column.
pub(crate) use crate::contract::in_set;

/// The shipped sample's inputs for snapshots `first..=last` (unit tests).
#[cfg(test)]
pub(crate) fn sample_inputs(first: NaiveDate, last: NaiveDate, horizon_days: u32) -> Inputs {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/data-samples");
    let storage = Storage::open(root, &crate::storage::StorageOptions::default(), false).expect("the sample");
    Inputs::load(&storage, first, last, Lookback::new(horizon_days)).expect("the sample's inputs")
}
