//! The commit protocol.
//!
//! An output table for one snapshot is a folder `<table>/snapshot=YYYY-MM-DD/` holding
//! Parquet parts and a `_SUCCESS` file. Parts are written first under content-derived
//! names (`part-00000-<hash>.parquet`, so a rerun on the same inputs writes the same
//! names and bytes); `_SUCCESS` is written last, in one PUT (atomic on every backend),
//! and lists exactly the parts that make up the table. Only then are files that
//! `_SUCCESS` does not list removed. Readers in `retain` read the listed parts only and
//! treat a folder without `_SUCCESS` as absent, so a run killed at any point never leaves
//! something that looks complete, and an earlier complete output stays readable until the
//! replacement is committed. A commit holds the folder's write lease (`super::lease`) from the
//! first part to the clean-up, so two runs writing the same folder at once take turns
//! instead of deleting each other's parts.

use bytes::Bytes;
use chrono::NaiveDate;
use object_store::ObjectStoreExt;
use polars::prelude::*;

use super::lease::{LEASE, Lease};
use super::retry::again;
use super::{Commit, CommittedFile, SUCCESS, Storage, block_on, parquet_bytes};
use crate::error::{Error, PolarsContext, Result};
use crate::shard::Shard;

/// How old an unfinished local upload must be to count as abandoned by a killed process.
pub(super) const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Rows per Parquet part of an output table.
const ROWS_PER_PART: usize = 1_000_000;

impl Storage {
    fn partition_dir(table: &str, snapshot: NaiveDate) -> String {
        format!("{table}/snapshot={snapshot}")
    }

    /// Write `df` as the complete content of `<table>/snapshot=S/` (see the module docs).
    pub fn publish(&self, table: &str, snapshot: NaiveDate, df: &DataFrame, meta: serde_json::Value) -> Result<Commit> {
        let dir = Self::partition_dir(table, snapshot);
        self.under_lease(&dir, |lease| {
            let files = self.write_parts(&dir, "", table, snapshot, df)?;
            let commit = Commit::of(table, snapshot, df, files, meta);
            self.write_marker(&dir, SUCCESS, &commit)?;
            // Garbage-collect parts of earlier or crashed runs.
            self.remove_unlisted(&dir, lease, |name| name == SUCCESS || commit.lists(name))?;
            Ok(commit)
        })
    }

    /// Write `df` as shard `shard`'s part of `<table>/snapshot=S/`: parts named
    /// `shard-K-of-N-part-…`, then the shard's marker `_SHARD-K-of-N` listing them. The
    /// table is not complete, and readers do not see these parts, until
    /// [`Storage::commit_shards`] lists every shard's parts in `_SUCCESS`. Removes only this
    /// shard's earlier parts, and never one the current `_SUCCESS` lists.
    pub fn publish_shard(
        &self,
        table: &str,
        snapshot: NaiveDate,
        shard: Shard,
        df: &DataFrame,
        meta: serde_json::Value,
    ) -> Result<Commit> {
        let dir = Self::partition_dir(table, snapshot);
        let prefix = format!("shard-{}-", shard.label());
        self.under_lease(&dir, |lease| {
            let files = self.write_parts(&dir, &prefix, table, snapshot, df)?;
            let commit = Commit::of(table, snapshot, df, files, meta);
            self.write_marker(&dir, &shard_marker(shard), &commit)?;
            let published = self.committed(table, snapshot)?;
            self.remove_unlisted(&dir, lease, |name| {
                !name.starts_with(&prefix) || commit.lists(name) || published.as_ref().is_some_and(|c| c.lists(name))
            })?;
            Ok(commit)
        })
    }

    /// The marker of shard `shard`'s part of a table partition, if that shard finished it.
    pub fn shard_committed(&self, table: &str, snapshot: NaiveDate, shard: Shard) -> Result<Option<Commit>> {
        self.read_marker(&format!("{}/{}", Self::partition_dir(table, snapshot), shard_marker(shard)))
    }

    /// Read shard `shard`'s part of a table partition; a missing one is an input error.
    pub fn read_shard(&self, table: &str, snapshot: NaiveDate, shard: Shard) -> Result<DataFrame> {
        let commit = self.shard_committed(table, snapshot, shard)?.ok_or_else(|| {
            Error::data(format!(
                "table `{table}` for snapshot {snapshot} has no part of shard {shard} under {} (no {})",
                self.uri,
                shard_marker(shard)
            ))
        })?;
        self.read_listed(table, snapshot, &commit)
    }

    /// Publish `<table>/snapshot=S/` from the parts of all `count` shards: one `_SUCCESS`
    /// listing every shard's parts, written only when every shard's marker is there (else an
    /// input error naming the missing shards, and nothing changes). Then what it does not
    /// list is removed, but the markers, which say each shard is done.
    pub fn commit_shards(
        &self,
        table: &str,
        snapshot: NaiveDate,
        count: u32,
        meta: serde_json::Value,
    ) -> Result<Commit> {
        let dir = Self::partition_dir(table, snapshot);
        self.under_lease(&dir, |lease| {
            let mut parts = Vec::new();
            let mut missing = Vec::new();
            for index in 0..count {
                let shard = Shard { index, count };
                match self.shard_committed(table, snapshot, shard)? {
                    Some(c) => parts.push(c),
                    None => missing.push(index.to_string()),
                }
            }
            if !missing.is_empty() {
                return Err(Error::data(format!(
                    "table `{table}` for snapshot {snapshot} under {}: shard(s) {} of {count} have not finished (no \
                     _SHARD-K-of-{count} marker); rerun them, then commit again",
                    self.uri,
                    missing.join(", ")
                )));
            }
            let columns = parts[0].columns.clone();
            if let Some((k, c)) = parts.iter().enumerate().find(|(_, c)| c.columns != columns) {
                return Err(Error::data(format!(
                    "table `{table}` for snapshot {snapshot}: shard {k} of {count} wrote columns {:?}, shard 0 {:?} (written \
                     by different versions?); rerun the shards with one version",
                    c.columns, columns
                )));
            }
            let commit = Commit {
                table: table.to_string(),
                snapshot,
                rows: parts.iter().map(|c| c.rows).sum(),
                files: parts.into_iter().flat_map(|c| c.files).collect(),
                columns,
                meta,
            };
            self.write_marker(&dir, SUCCESS, &commit)?;
            let own_marker = |name: &str| marker_of_count(name, count);
            self.remove_unlisted(&dir, lease, |name| name == SUCCESS || own_marker(name) || commit.lists(name))?;
            Ok(commit)
        })
    }

    /// Publish `df`, made from the parts of all `count` shards (read with
    /// [`Storage::read_shard`] and transformed, e.g. ranked over the whole night), as
    /// `<table>/snapshot=S/`: like [`Storage::publish`], but the shards' parts and markers
    /// stay, so the night can be committed again without redoing a shard.
    pub fn publish_over_shards(
        &self,
        table: &str,
        snapshot: NaiveDate,
        count: u32,
        df: &DataFrame,
        meta: serde_json::Value,
    ) -> Result<Commit> {
        let dir = Self::partition_dir(table, snapshot);
        self.under_lease(&dir, |lease| {
            let mut shard_parts = Vec::new();
            for index in 0..count {
                if let Some(c) = self.shard_committed(table, snapshot, Shard { index, count })? {
                    shard_parts.extend(c.files.into_iter().map(|f| f.name));
                }
            }
            let files = self.write_parts(&dir, "", table, snapshot, df)?;
            let commit = Commit::of(table, snapshot, df, files, meta);
            self.write_marker(&dir, SUCCESS, &commit)?;
            let own_marker = |name: &str| marker_of_count(name, count);
            self.remove_unlisted(&dir, lease, |name| {
                name == SUCCESS || own_marker(name) || commit.lists(name) || shard_parts.iter().any(|p| p == name)
            })?;
            Ok(commit)
        })
    }

    /// Write `df` as Parquet parts `<prefix>part-NNNNN-<hash>.parquet` under `dir`.
    fn write_parts(
        &self,
        dir: &str,
        prefix: &str,
        table: &str,
        snapshot: NaiveDate,
        df: &DataFrame,
    ) -> Result<Vec<CommittedFile>> {
        let mut files = Vec::new();
        let height = df.height();
        let parts = height.div_ceil(ROWS_PER_PART).max(1);
        for i in 0..parts {
            let offset = i * ROWS_PER_PART;
            let mut part = df.slice(offset as i64, ROWS_PER_PART.min(height - offset.min(height)));
            let bytes = parquet_bytes(&mut part).ctx(format!("encoding {table} for snapshot {snapshot}"))?;
            let digest = xxhash_rust::xxh3::xxh3_64(&bytes);
            let name = format!("{prefix}part-{i:05}-{digest:016x}.parquet");
            let size = bytes.len() as u64;
            self.write_bytes(&format!("{dir}/{name}"), Bytes::from(bytes))?;
            files.push(CommittedFile { name, rows: part.height() as u64, bytes: size });
        }
        Ok(files)
    }

    /// Write a commit marker (`_SUCCESS` or a shard's), in one PUT.
    fn write_marker(&self, dir: &str, name: &str, commit: &Commit) -> Result<()> {
        let body = serde_json::to_vec_pretty(commit).map_err(Error::internal)?;
        self.write_bytes(&format!("{dir}/{name}"), Bytes::from(body))
    }

    fn read_marker(&self, rel: &str) -> Result<Option<Commit>> {
        match block_on(again(&self.retry, "get", || async { self.store.get(&self.path(rel)).await?.bytes().await })) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::data(format!("{}/{rel} is not a valid commit marker: {e}", self.uri))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::from_store(format!("reading {}/{rel}", self.uri), e)),
        }
    }

    /// Run `commit` (which writes `dir`'s files and marker) holding `dir`'s write lease,
    /// then release the lease, whether `commit` succeeded or not (see [`lease`]).
    pub(crate) fn under_lease<T>(&self, dir: &str, commit: impl FnOnce(&Lease) -> Result<T>) -> Result<T> {
        let what = format!("{}/{dir}", self.uri);
        let lease = block_on(Lease::acquire(
            self.store.clone(),
            self.path(&format!("{dir}/{LEASE}")),
            self.lease_timeout,
            &self.retry,
            &what,
        ))?;
        let out = commit(&lease);
        block_on(lease.release(&what));
        out
    }

    /// Delete the files of `dir` that `keep` does not keep, then abandoned local uploads;
    /// only while `lease` is still held, for a writer that lost it may be deleting the
    /// parts of the one that took it over.
    pub(crate) fn remove_unlisted(&self, dir: &str, lease: &Lease, keep: impl Fn(&str) -> bool) -> Result<()> {
        let what = format!("{}/{dir}", self.uri);
        if !block_on(lease.held(&what))? {
            tracing::warn!(folder = what, "the write lease was taken over: files of earlier commits are left in place");
            return Ok(());
        }
        for entry in self.list_files(dir)? {
            let name = entry.rel.rsplit('/').next().unwrap_or("");
            if name != LEASE && !keep(name) {
                self.delete(&entry.rel)?;
            }
        }
        self.remove_abandoned_uploads(dir);
        Ok(())
    }

    /// On a local root, object_store writes a file as `<name>#<n>` and renames it when
    /// complete; a process killed in between leaves the `#` file, which listings do not
    /// show. Those older than [`ABANDONED_AFTER`] in a folder just committed are removed
    /// (a younger one may be another run's upload in progress). Best effort: a file that
    /// cannot be removed is left for the next commit.
    fn remove_abandoned_uploads(&self, dir: &str) {
        let Some(root) = &self.local_root else { return };
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let upload =
                name.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > ABANDONED_AFTER);
            if upload && old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The commit of a table partition, if it is complete.
    pub fn committed(&self, table: &str, snapshot: NaiveDate) -> Result<Option<Commit>> {
        self.read_marker(&format!("{}/{SUCCESS}", Self::partition_dir(table, snapshot)))
    }

    /// Read a committed table partition; a missing or incomplete one is an input error.
    pub fn read_committed(&self, table: &str, snapshot: NaiveDate) -> Result<DataFrame> {
        let commit = self.committed(table, snapshot)?.ok_or_else(|| {
            Error::data(format!(
                "table `{table}` for snapshot {snapshot} is not complete under {} (no {SUCCESS})",
                self.uri
            ))
        })?;
        self.read_listed(table, snapshot, &commit)
    }

    /// A lazy scan of a committed table partition, or None when it is not complete: for
    /// reading a few columns of an earlier night's table.
    pub fn scan_committed(&self, table: &str, snapshot: NaiveDate) -> Result<Option<LazyFrame>> {
        let Some(commit) = self.committed(table, snapshot)? else { return Ok(None) };
        let dir = Self::partition_dir(table, snapshot);
        let rels: Vec<String> = commit.files.iter().map(|f| format!("{dir}/{}", f.name)).collect();
        Ok(Some(self.scan_parquet(&rels)?))
    }

    fn read_listed(&self, table: &str, snapshot: NaiveDate, commit: &Commit) -> Result<DataFrame> {
        let dir = Self::partition_dir(table, snapshot);
        let rels: Vec<String> = commit.files.iter().map(|f| format!("{dir}/{}", f.name)).collect();
        self.scan_parquet(&rels)?.collect().ctx(format!("reading table `{table}` for snapshot {snapshot}"))
    }
}

/// The marker of one shard's part of a table partition.
fn shard_marker(shard: Shard) -> String {
    format!("_SHARD-{}", shard.label())
}

/// Whether file `name` is the marker of a shard of a night of `count` shards.
fn marker_of_count(name: &str, count: u32) -> bool {
    name.strip_prefix("_SHARD-").and_then(|l| l.rsplit_once("-of-")).is_some_and(|(_, n)| n.parse::<u32>() == Ok(count))
}

impl Commit {
    fn of(
        table: &str,
        snapshot: NaiveDate,
        df: &DataFrame,
        files: Vec<CommittedFile>,
        meta: serde_json::Value,
    ) -> Self {
        Commit {
            table: table.to_string(),
            snapshot,
            rows: df.height() as u64,
            files,
            columns: df.get_column_names().iter().map(|c| c.to_string()).collect(),
            meta,
        }
    }

    fn lists(&self, name: &str) -> bool {
        self.files.iter().any(|f| f.name == name)
    }
}
