//! The feature store: each snapshot's activity aggregates, kept between runs.
//!
//! Why: a night builds features for about two dozen past snapshots (training, validation,
//! the campaign history), and aggregating 90 days of activity per snapshot is most of that
//! work. Those snapshots were, on earlier nights, tonight's snapshot or a past one, and
//! their activity has not changed since: a run keeps the activity models' rows of every
//! whole population it aggregates under `feature_store/snapshot=D/` in the output root
//! (committed like any table), and a later run that needs snapshot D reads them back.
//!
//! Only the activity part is kept. The billing, messaging and user features are
//! recomputed every time from the inputs in memory (they are cheap, and a user's opt-ins
//! or plan may have changed since): the store never makes a feature differ from a rebuild.
//!
//! When kept rows are trusted: their key must equal tonight's key for D, a hash of
//! - what computes them (the activity SQL, the window, the feature schema, the code version);
//! - every activity file that can hold a row of D's window, by path, size and version:
//!   the files of the window's partitions, and any other file read whose rows reach into
//!   the window (rows that arrived late, in a partition after D, or early).
//!
//! A file rewritten, added or removed, or a late row landed since, changes the key, and D
//! is aggregated again (and kept again, when it is a whole population). The earliest and
//! latest date of each file are read once per run (one column), only for files outside
//! the window's partitions.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use polars::prelude::*;
use serde_json::json;

use crate::contract;
use crate::error::{PolarsContext, Result};
use crate::inputs::{FeatureStore, Inputs, scan_table};
use crate::storage::PartitionFile;

/// The earliest and latest activity date of a file; None when it has no rows.
type Span = Option<(NaiveDate, NaiveDate)>;

/// The table the store keeps under the output root (a shard's: `feature_store/shard=K-of-N`).
#[cfg(test)]
pub(super) const TABLE: &str = crate::inputs::FEATURE_STORE_TABLE;

/// The key of snapshot `s`'s activity aggregates: `definition` and the activity files
/// that can hold a row of its window, the `window_days` ending on `s` (see the module docs).
pub(super) fn key(
    inputs: &Inputs,
    store: &FeatureStore,
    s: NaiveDate,
    window_days: i64,
    definition: &str,
) -> Result<String> {
    let first = s - Duration::days(window_days - 1);
    let in_window = |d: NaiveDate| d >= first && d <= s;
    let outside: Vec<&PartitionFile> = inputs.activity_files.iter().filter(|f| !in_window(f.date)).collect();
    let spans = file_dates(inputs, store, &outside)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(definition.as_bytes());
    for f in &inputs.activity_files {
        let reaches_in = || spans.get(f.rel.as_str()).copied().flatten().is_some_and(|(a, b)| a <= s && b >= first);
        if in_window(f.date) || reaches_in() {
            hasher.update(format!("{}\t{}\t{}\n", f.rel, f.size, f.version).as_bytes());
        }
    }
    Ok(format!("{:016x}", hasher.digest()))
}

/// The earliest and latest activity date of each file in `files` (None for a file without
/// rows), read once per file per run.
fn file_dates<'a>(
    inputs: &Inputs,
    store: &FeatureStore,
    files: &[&'a PartitionFile],
) -> Result<HashMap<&'a str, Span>> {
    let unknown: Vec<&str> = {
        let known = store.dates.lock().expect("the store's file dates");
        files.iter().map(|f| f.rel.as_str()).filter(|rel| !known.contains_key(*rel)).collect()
    };
    if !unknown.is_empty() {
        let source = inputs.source.as_ref().ok_or_else(|| {
            crate::error::Error::internal("the feature store needs the input root the activity was read from")
        })?;
        // One file after another: each query is parallel inside, and Polars queries
        // planned on rayon's small worker stacks can overflow them.
        let found: Vec<(String, Span)> = unknown
            .iter()
            .map(|rel| {
                let span = scan_table(source, &contract::ACTIVITY, &[rel.to_string()])?
                    .select([col("date").min().alias("first"), col("date").max().alias("last")])
                    .collect()
                    .ctx(format!("reading the dates of {rel}"))?;
                let date = |name: &str| -> Result<Option<NaiveDate>> {
                    let c = span.column(name).ctx(name)?.date().ctx(name)?;
                    Ok(c.as_date_iter().next().flatten())
                };
                Ok((rel.to_string(), date("first")?.zip(date("last")?)))
            })
            .collect::<Result<_>>()?;
        store.dates.lock().expect("the store's file dates").extend(found);
    }
    let known = store.dates.lock().expect("the store's file dates");
    Ok(files.iter().map(|f| (f.rel.as_str(), known.get(&f.rel).copied().flatten())).collect())
}

/// The activity aggregates kept for snapshot `s` under `key`, if any. The store is a
/// cache: an entry that cannot be read (removed by a concurrent prune, a broken part) is
/// a miss, said in the log, and the snapshot is aggregated again.
pub(super) fn read(store: &FeatureStore, s: NaiveDate, key: &str) -> Option<DataFrame> {
    let kept = || -> Result<Option<DataFrame>> {
        let Some(commit) = store.root.committed(&store.table, s)? else { return Ok(None) };
        if commit.meta.get("key").and_then(|k| k.as_str()) != Some(key) {
            return Ok(None);
        }
        Ok(Some(store.root.read_committed(&store.table, s)?))
    };
    kept().unwrap_or_else(|e| {
        store.note(s, format!("could not read the kept aggregates ({e})"));
        None
    })
}

/// Keep `rows`, the activity aggregates of snapshot `s`'s whole population, under `key`.
/// A failure is said in the log and costs only a later rebuild.
pub(super) fn keep(store: &FeatureStore, s: NaiveDate, key: &str, rows: &DataFrame) {
    let meta = json!({ "key": key, "code_version": crate::version::code_version() });
    match store.root.publish(&store.table, s, rows, meta) {
        Ok(_) => store.note(s, format!("aggregated {} users and kept them", rows.height())),
        Err(e) => store.note(s, format!("aggregated {} users; could not keep them ({e})", rows.height())),
    }
}

/// Remove the entries of snapshots before `before`: no later night reads them (a night
/// reads no snapshot older than its own oldest, and later nights' are later). The commit
/// marker goes first, so a reader sees no entry rather than part of one. A failure is
/// said in the log: what was not removed is removed by a later night.
pub(super) fn prune(store: &FeatureStore, before: NaiveDate) {
    if let Err(e) = prune_entries(store, before) {
        store.note(before, format!("could not remove the entries before it ({e})"));
    }
}

fn prune_entries(store: &FeatureStore, before: NaiveDate) -> Result<()> {
    for dir in store.root.list_dirs(&store.table)? {
        let Some(d) = dir.strip_prefix("snapshot=").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) else {
            continue;
        };
        if d >= before {
            continue;
        }
        let folder = format!("{}/{dir}", store.table);
        let mut files = store.root.list_files(&folder)?;
        if files.is_empty() {
            continue;
        }
        files.sort_by_key(|f| !f.rel.ends_with(crate::storage::SUCCESS));
        for f in files {
            store.root.delete(&f.rel)?;
        }
        store.note(d, format!("removed: older than {before}, the oldest snapshot tonight reads"));
    }
    Ok(())
}
