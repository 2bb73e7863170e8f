//! Reading the four input tables for a range of snapshot dates.
//!
//! Why a separate step: every stage reads the same tables, and the two rules that keep
//! the numbers honest belong in one place rather than in each stage:
//! - partition pruning: only the `dt=` partitions a stage's longest window needs are
//!   listed and read;
//! - the contract's physical variations (string encodings, wider integers, timestamp units)
//!   are normalised to one schema per table, file by file, and a file that lacks a column
//!   or carries an unusable type is rejected with the table, file and column named.
//!
//! The point-in-time cut ("nothing after the end of day S") is applied by
//! [`Inputs::as_of`], which every feature and label computation goes through.

use chrono::{Duration, NaiveDate};
use polars::prelude::*;

use crate::contract::{self, Table};
use crate::error::{Error, PolarsContext, Result};
use crate::storage::Storage;

/// How far back each table is read, in days before the earliest snapshot of a run.
#[derive(Debug, Clone, Copy)]
pub struct Lookback {
    pub activity_days: u32,
    pub messages_days: u32,
    pub billing_days: u32,
}

impl Lookback {
    /// The lookback for a horizon of `horizon_days`.
    pub fn new(horizon_days: u32) -> Self {
        // Engagement windows go back 90 days. Message effects are learned from decisions
        // up to H + 120 days old (`interventions::EFFECT_WINDOW_DAYS`). Billing features
        // look back a year, and premium status needs the latest status event, which for a
        // monthly subscriber is never more than a period plus a grace period old.
        let messages_days = (horizon_days as i64 + crate::interventions::EFFECT_WINDOW_DAYS).max(90) as u32;
        Lookback { activity_days: 90, messages_days, billing_days: 400 }
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
}

/// The end of day `d` (UTC) as microseconds since the epoch: rows at or after it are
/// in the future of snapshot `d`.
pub fn end_of_day_us(d: NaiveDate) -> i64 {
    (d + Duration::days(1)).and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_micros()
}

/// Days since the Unix epoch, polars' physical Date representation.
pub fn epoch_days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

pub fn date_lit(d: NaiveDate) -> Expr {
    lit(epoch_days(d)).cast(DataType::Date)
}

pub fn ts_lit_us(us: i64) -> Expr {
    lit(us).cast(DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)))
}

impl Inputs {
    /// List and open what snapshots in `[first, last]` need.
    pub fn load(storage: &Storage, first: NaiveDate, last: NaiveDate, lookback: Lookback) -> Result<Self> {
        let mut files = Vec::new();
        let users_files: Vec<String> =
            storage.list_files(contract::USERS.name)?.into_iter().map(|f| f.rel).filter(|r| is_data(r)).collect();
        if users_files.is_empty() {
            return Err(Error::data(format!("table `users`: no Parquet files under {}/users/", storage.uri())));
        }
        let users = scan_table(storage, &contract::USERS, &users_files)?;
        files.extend(users_files);

        let mut daily = |table: &Table, days: u32| -> Result<LazyFrame> {
            let from = first - Duration::days(days as i64);
            let parts = storage.partition_files(table.name, from, last)?;
            let rels: Vec<String> = parts.into_iter().map(|p| p.rel).collect();
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
            files.extend(rels);
            Ok(lf)
        };
        let activity = daily(&contract::ACTIVITY, lookback.activity_days)?;
        let billing = daily(&contract::BILLING, lookback.billing_days)?
            .sort(["event_id"], SortMultipleOptions::default().with_maintain_order(true))
            .unique_stable(Some(cols(["event_id"])), UniqueKeepStrategy::First);
        let messages = daily(&contract::MESSAGES, lookback.messages_days)?;
        // Users, billing and messages are small next to activity and every stage queries
        // them several times (status on many days, labels, episodes): read them once.
        let users = users.collect().ctx("reading table `users`")?.lazy();
        let billing = billing.collect().ctx("reading table `billing`")?.lazy();
        let messages = messages.collect().ctx("reading table `messages`")?.lazy();
        Ok(Inputs { users, activity, billing, messages, files, first, last })
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
        }
    }

    /// Billing including events after `s` (for labels, which look forward on purpose).
    pub fn billing_until(&self, day: NaiveDate) -> LazyFrame {
        self.billing.clone().filter(col("ts").lt(ts_lit_us(end_of_day_us(day))))
    }
}

fn is_data(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    !name.starts_with('_') && !name.starts_with('.') && name.ends_with(".parquet")
}

/// Scan files of one table, each checked and normalised to the contract's schema, then
/// concatenated (files may disagree on physical types the contract allows).
pub fn scan_table(storage: &Storage, table: &Table, rels: &[String]) -> Result<LazyFrame> {
    let mut frames = Vec::with_capacity(rels.len());
    for rel in rels {
        let mut lf = storage.scan_parquet(std::slice::from_ref(rel))?;
        let schema = lf.collect_schema().ctx(format!("reading the schema of {}/{rel}", storage.uri()))?;
        check_schema(table, rel, &schema)?;
        frames.push(table.normalize(lf));
    }
    if frames.is_empty() {
        return Ok(DataFrame::empty_with_schema(&table.schema()).lazy());
    }
    concat(frames, UnionArgs { parallel: true, rechunk: false, ..Default::default() })
        .ctx(format!("combining the files of table `{}`", table.name))
}

/// Every contract column present with a type the contract allows.
pub fn check_schema(table: &Table, rel: &str, schema: &Schema) -> Result<()> {
    for c in table.columns {
        match schema.get(c.name) {
            None => {
                return Err(Error::data(format!("table `{}`, file {rel}: column `{}` is missing", table.name, c.name)));
            }
            Some(found) if !c.kind.accepts(found) => {
                return Err(Error::data(format!(
                    "table `{}`, file {rel}: column `{}` has type {found}, expected {}",
                    table.name,
                    c.name,
                    c.kind.dtype()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `column IN (values…)` for a string column.
pub fn in_set(column: &str, values: &[&str]) -> Expr {
    col(column).is_in(lit(Series::new("values".into(), values)).implode(false), false)
}
