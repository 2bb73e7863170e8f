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

use chrono::{Duration, NaiveDate};
use polars::prelude::*;
use rayon::prelude::*;
use serde_json::json;

use super::ACTIVITY_WINDOW_DAYS;
use crate::contract;
use crate::error::{PolarsContext, Result};
use crate::inputs::{FeatureStore, Inputs, scan_table};
use crate::storage::PartitionFile;

/// The earliest and latest activity date of a file; None when it has no rows.
type Span = Option<(NaiveDate, NaiveDate)>;

/// The table the store keeps under the output root.
pub(super) const TABLE: &str = "feature_store";

/// The key of snapshot `s`'s activity aggregates: `definition` and the activity files
/// that can hold a row of its window (see the module docs).
pub(super) fn key(inputs: &Inputs, store: &FeatureStore, s: NaiveDate, definition: &str) -> Result<String> {
    let first = s - Duration::days(ACTIVITY_WINDOW_DAYS - 1);
    let in_window = |d: NaiveDate| d >= first && d <= s;
    let outside: Vec<&PartitionFile> = inputs.activity_files.iter().filter(|f| !in_window(f.date)).collect();
    let spans = file_dates(inputs, store, &outside)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(definition.as_bytes());
    for f in &inputs.activity_files {
        let reaches_in =
            || spans.iter().any(|(rel, span)| *rel == f.rel && span.is_some_and(|(a, b)| a <= s && b >= first));
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
) -> Result<Vec<(&'a str, Span)>> {
    let unknown: Vec<&str> = {
        let known = store.dates.lock().expect("the store's file dates");
        files.iter().map(|f| f.rel.as_str()).filter(|rel| !known.contains_key(*rel)).collect()
    };
    if !unknown.is_empty() {
        let source = inputs.source.as_ref().ok_or_else(|| {
            crate::error::Error::internal("the feature store needs the input root the activity was read from")
        })?;
        let found: Vec<(String, Span)> = unknown
            .par_iter()
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

/// The activity aggregates kept for snapshot `s` under `key`, if any.
pub(super) fn read(store: &FeatureStore, s: NaiveDate, key: &str) -> Result<Option<DataFrame>> {
    let Some(commit) = store.root.committed(TABLE, s)? else { return Ok(None) };
    if commit.meta.get("key").and_then(|k| k.as_str()) != Some(key) {
        return Ok(None);
    }
    Ok(Some(store.root.read_committed(TABLE, s)?))
}

/// Keep `rows`, the activity aggregates of snapshot `s`'s whole population, under `key`.
pub(super) fn keep(store: &FeatureStore, s: NaiveDate, key: &str, rows: &DataFrame) -> Result<()> {
    store
        .root
        .publish(TABLE, s, rows, json!({ "key": key, "code_version": crate::version::code_version() }))
        .map(|_| ())
}
