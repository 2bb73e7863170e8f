//! Where tables live: a URI (local folder, `file://`, `s3://`, `gs://`) turned into an
//! `object_store` plus the matching polars cloud options, partition-pruned listing of
//! `dt=` partitions, and atomic publication of output tables.
//!
//! Why one module owns all of this: credentials, endpoints and retries must be resolved
//! once and identically for the two clients that touch storage (object_store for
//! listing and writing, polars for scanning Parquet), or a read and a write of the same
//! URI could end up talking to different places.
//!
//! # Commit protocol
//! An output table for one snapshot is a folder `<table>/snapshot=YYYY-MM-DD/` holding
//! Parquet parts and a `_SUCCESS` file. Parts are written first under content-derived
//! names (`part-00000-<hash>.parquet`, so a rerun on the same inputs writes the same
//! names and bytes); `_SUCCESS` is written last, in one PUT (atomic on every backend),
//! and lists exactly the parts that make up the table. Only then are files that
//! `_SUCCESS` does not list removed. Readers in `retain` read the listed parts only and
//! treat a folder without `_SUCCESS` as absent, so a run killed at any point never leaves
//! something that looks complete, and an earlier complete output stays readable until the
//! replacement is committed. A commit holds the folder's write lease (`lease`) from the
//! first part to the clean-up, so two runs writing the same folder at once take turns
//! instead of deleting each other's parts.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use polars::io::cloud::CloudOptions;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, PolarsContext, Result};
use crate::shard::Shard;

mod lease;
mod retry;

use lease::{LEASE, Lease};
use retry::again;

/// The marker that makes a table partition complete. Written last.
pub const SUCCESS: &str = "_SUCCESS";

/// How old an unfinished local upload must be to count as abandoned by a killed process.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Rows per Parquet part of an output table.
const ROWS_PER_PART: usize = 1_000_000;

/// How many listings or reads run at once against a remote store.
const IO_CONCURRENCY: usize = 16;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("retain-io")
            .enable_all()
            .build()
            .expect("the I/O runtime starts")
    })
}

fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    runtime().block_on(fut)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Local,
    S3,
    Gcs,
}

/// A storage root: every path handed to its methods is relative to it.
#[derive(Clone)]
pub struct Storage {
    uri: String,
    backend: Backend,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    /// Local root folder (absolute), for polars scans of local files.
    local_root: Option<std::path::PathBuf>,
    cloud: Option<CloudOptions>,
    /// How long another run's write lease is honoured (`lease_timeout`).
    lease_timeout: std::time::Duration,
    /// The `[storage]` retry budget, for the requests object_store does not retry.
    retry: object_store::RetryConfig,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("uri", &self.uri).field("backend", &self.backend).finish()
    }
}

/// One file found under a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the storage root, `/`-separated.
    pub rel: String,
    pub size: u64,
}

/// A data file of a `dt=` partitioned input table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFile {
    pub date: NaiveDate,
    pub rel: String,
    pub size: u64,
    /// The object's version as the store reports it: its ETag, else its modification
    /// time. With the path and size, what says a file is the one read before.
    pub version: String,
}

/// The content of `_SUCCESS`: what makes up one committed table partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Commit {
    pub table: String,
    pub snapshot: NaiveDate,
    pub rows: u64,
    pub files: Vec<CommittedFile>,
    pub columns: Vec<String>,
    /// Free-form provenance (run id, code version, config hash).
    #[serde(default)]
    pub meta: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommittedFile {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
}

/// Extra key/value settings for remote stores (object_store config keys such as
/// `aws_endpoint_url`, `aws_region`, `google_service_account_key`), applied on top of the
/// standard `AWS_*` / `GOOGLE_*` environment variables. Values are never logged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageOptions {
    pub entries: Vec<(String, String)>,
}

/// Settings of our own (not object_store keys), read out of [`StorageOptions`].
struct OwnSettings {
    retry: object_store::RetryConfig,
    lease_timeout: std::time::Duration,
    /// Everything else: object_store's keys.
    rest: Vec<(String, String)>,
}

/// `max_retries` (count) and `retry_timeout` (seconds, e.g. `30` or `30s`); defaults:
/// object_store's (10 retries within 3 minutes), which rides out a short outage before the
/// run fails with exit 75. `lease_timeout` (seconds, default 600): how long a commit waits
/// for another run's write lease on the same folder before taking its holder for dead.
fn own_settings(options: &StorageOptions) -> Result<OwnSettings> {
    let seconds = |k: &str, v: &str| {
        v.trim_end_matches('s')
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| Error::config(format!("storage.{k}: `{v}` is not a number of seconds")))
    };
    let mut own = OwnSettings {
        retry: object_store::RetryConfig::default(),
        lease_timeout: lease::DEFAULT_TIMEOUT,
        rest: Vec::new(),
    };
    for (k, v) in &options.entries {
        match k.as_str() {
            "max_retries" => {
                own.retry.max_retries =
                    v.parse().map_err(|_| Error::config(format!("storage.max_retries: `{v}` is not a count")))?
            }
            "retry_timeout" => own.retry.retry_timeout = seconds(k, v)?,
            "lease_timeout" => own.lease_timeout = seconds(k, v)?,
            _ => own.rest.push((k.clone(), v.clone())),
        }
    }
    Ok(own)
}

/// Polars' scans of a remote root retry as our own requests do: the same `max_retries`
/// and `retry_timeout` (Polars' own defaults are 2 retries within 10 s).
fn with_retries(mut cloud: CloudOptions, retry: &object_store::RetryConfig) -> CloudOptions {
    cloud.retry_config = polars::io::cloud::CloudRetryConfig {
        max_retries: Some(retry.max_retries),
        retry_timeout: Some(retry.retry_timeout),
        ..Default::default()
    };
    cloud
}

impl Storage {
    /// Open a root URI. `create` makes a missing local folder (for outputs); inputs must exist.
    pub fn open(uri: &str, options: &StorageOptions, create: bool) -> Result<Self> {
        if ["s3://", "gs://"]
            .iter()
            .any(|scheme| uri.strip_prefix(scheme).is_some_and(|rest| rest.trim_matches('/').is_empty()))
        {
            return Err(Error::config(format!("storage URI `{uri}` names no bucket")));
        }
        let uri = uri.trim_end_matches('/').to_string();
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = split_bucket(rest, &uri)?;
            let OwnSettings { retry, lease_timeout, rest: entries } = own_settings(options)?;
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry.clone());
            let mut polars_opts = Vec::new();
            for (k, v) in &entries {
                let key: object_store::aws::AmazonS3ConfigKey =
                    k.parse().map_err(|_| Error::config(format!("unknown S3 storage option `{k}`")))?;
                builder = builder.with_config(key, v);
                polars_opts.push((key, v.clone()));
            }
            if !s3_credentials_given(&builder) && metadata_disabled() {
                return Err(Error::config(format!(
                    "no S3 credentials for {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or [storage] \
                     aws_access_key_id and aws_secret_access_key), a web identity or container credentials, or \
                     aws_skip_signature = true for a public bucket; the instance metadata, the last resort, is off \
                     (AWS_EC2_METADATA_DISABLED)"
                )));
            }
            let store = builder.build().map_err(|e| Error::config(format!("S3 store for {uri}: {e}")))?;
            let cloud = with_retries(CloudOptions::default().with_aws(polars_opts), &retry);
            Ok(Self::remote(uri.clone(), Backend::S3, Arc::new(store), prefix, cloud, lease_timeout, retry))
        } else if let Some(rest) = uri.strip_prefix("gs://") {
            let (bucket, prefix) = split_bucket(rest, &uri)?;
            let OwnSettings { retry, lease_timeout, rest: entries } = own_settings(options)?;
            let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket).with_retry(retry.clone());
            let mut polars_opts = Vec::new();
            for (k, v) in &entries {
                let key: object_store::gcp::GoogleConfigKey =
                    k.parse().map_err(|_| Error::config(format!("unknown GCS storage option `{k}`")))?;
                builder = builder.with_config(key, v);
                polars_opts.push((key, v.clone()));
            }
            let store = builder.build().map_err(|e| Error::config(format!("GCS store for {uri}: {e}")))?;
            let cloud = with_retries(CloudOptions::default().with_gcp(polars_opts), &retry);
            Ok(Self::remote(uri.clone(), Backend::Gcs, Arc::new(store), prefix, cloud, lease_timeout, retry))
        } else if uri.contains("://") && !uri.starts_with("file://") {
            Err(Error::config(format!("unsupported storage URI `{uri}`: use a folder, file://, s3:// or gs://")))
        } else {
            // A local root uses none of them, but a key no store knows is a typo all the same.
            let OwnSettings { lease_timeout, retry, rest: entries } = own_settings(options)?;
            for (k, _) in &entries {
                if k.parse::<object_store::aws::AmazonS3ConfigKey>().is_err()
                    && k.parse::<object_store::gcp::GoogleConfigKey>().is_err()
                {
                    return Err(Error::config(format!("unknown storage option `{k}`")));
                }
            }
            let path = uri.strip_prefix("file://").unwrap_or(&uri);
            let path = if path.is_empty() { "/" } else { path };
            let dir = std::path::Path::new(path);
            if !dir.exists() {
                if create {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| Error::config(format!("cannot create output folder {}: {e}", dir.display())))?;
                } else {
                    return Err(Error::data(format!("input root {} does not exist", dir.display())));
                }
            }
            if !dir.is_dir() {
                return Err(Error::config(format!("root {} is a file, not a folder", dir.display())));
            }
            let dir = std::fs::canonicalize(dir)
                .map_err(|e| Error::config(format!("cannot resolve folder {}: {e}", dir.display())))?;
            // Folders emptied by deletes are removed, as on object stores, where folders
            // are only prefixes (a pruned snapshot leaves no folder behind).
            let store = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| Error::from_store(format!("opening {}", dir.display()), e))?
                .with_automatic_cleanup(true);
            Ok(Storage {
                uri: dir.display().to_string(),
                backend: Backend::Local,
                store: Arc::new(store),
                prefix: StorePath::default(),
                local_root: Some(dir),
                cloud: None,
                lease_timeout,
                retry,
            })
        }
    }

    fn remote(
        uri: String,
        backend: Backend,
        store: Arc<dyn ObjectStore>,
        prefix: StorePath,
        cloud: CloudOptions,
        lease_timeout: std::time::Duration,
        retry: object_store::RetryConfig,
    ) -> Self {
        Storage { uri, backend, store, prefix, local_root: None, cloud: Some(cloud), lease_timeout, retry }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn path(&self, rel: &str) -> StorePath {
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            return self.prefix.clone();
        }
        let mut parts: Vec<&str> = self.prefix.as_ref().split('/').filter(|s| !s.is_empty()).collect();
        parts.extend(rel.split('/').filter(|s| !s.is_empty()));
        StorePath::from(parts.join("/"))
    }

    fn rel_of(&self, path: &StorePath) -> String {
        let full = path.as_ref();
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(prefix).unwrap_or(full).trim_start_matches('/').to_string()
        }
    }

    /// The URI of a relative path as polars expects it.
    pub(crate) fn polars_path(&self, rel: &str) -> String {
        match &self.local_root {
            Some(root) => root.join(rel).display().to_string(),
            None => format!("{}/{}", self.uri, rel.trim_start_matches('/')),
        }
    }

    /// Every file below `rel_dir`, recursively, sorted by path.
    pub fn list_files(&self, rel_dir: &str) -> Result<Vec<FileEntry>> {
        let prefix = self.path(rel_dir);
        let mut out: Vec<FileEntry> = block_on(again(&self.retry, "list", || async {
            self.store
                .list(Some(&prefix))
                .map_ok(|m| FileEntry { rel: self.rel_of(&m.location), size: m.size })
                .try_collect()
                .await
        }))
        .map_err(|e| Error::from_store(format!("listing {}/{}", self.uri, rel_dir), e))?;
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    /// Names of the immediate sub-folders of `rel_dir`.
    pub fn list_dirs(&self, rel_dir: &str) -> Result<Vec<String>> {
        let prefix = self.path(rel_dir);
        let res = block_on(again(&self.retry, "list", || self.store.list_with_delimiter(Some(&prefix))))
            .map_err(|e| Error::from_store(format!("listing {}/{}", self.uri, rel_dir), e))?;
        let mut dirs: Vec<String> =
            res.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect();
        dirs.sort();
        Ok(dirs)
    }

    /// The Parquet files of a `dt=` partitioned table with dates in `[from, to]`: lists the
    /// partition folders once, then only the partitions in range (concurrently).
    /// Files whose names start with `_` or `.` are not data and are skipped.
    pub fn partition_files(&self, table: &str, from: NaiveDate, to: NaiveDate) -> Result<Vec<PartitionFile>> {
        let mut dates = Vec::new();
        for dir in self.list_dirs(table)? {
            let Some(d) = dir.strip_prefix("dt=") else { continue };
            let date = NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| Error::data(format!("table `{table}`: partition folder `{dir}` is not dt=YYYY-MM-DD")))?;
            if date >= from && date <= to {
                dates.push(date);
            }
        }
        let listed: Vec<Vec<PartitionFile>> = block_on(async {
            futures::stream::iter(dates.into_iter().map(|date| {
                let prefix = self.path(&format!("{table}/dt={date}"));
                async move {
                    let metas: Vec<object_store::ObjectMeta> =
                        again(&self.retry, "list", || self.store.list(Some(&prefix)).try_collect()).await?;
                    Ok::<_, object_store::Error>(
                        metas
                            .into_iter()
                            .filter(|m| is_data_file(m.location.filename().unwrap_or("")))
                            .map(|m| PartitionFile {
                                date,
                                rel: self.rel_of(&m.location),
                                size: m.size,
                                version: m.e_tag.clone().unwrap_or_else(|| m.last_modified.to_rfc3339()),
                            })
                            .collect(),
                    )
                }
            }))
            .buffer_unordered(IO_CONCURRENCY)
            .try_collect()
            .await
        })
        .map_err(|e| Error::from_store(format!("listing partitions of {}/{table}", self.uri), e))?;
        let mut files: Vec<PartitionFile> = listed.into_iter().flatten().collect();
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(files)
    }

    pub fn exists(&self, rel: &str) -> Result<bool> {
        let path = self.path(rel);
        match block_on(again(&self.retry, "head", || self.store.head(&path))) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::from_store(format!("checking {}/{rel}", self.uri), e)),
        }
    }

    pub fn read_bytes(&self, rel: &str) -> Result<Bytes> {
        block_on(again(&self.retry, "get", || async { self.store.get(&self.path(rel)).await?.bytes().await }))
            .map_err(|e| Error::from_store(format!("reading {}/{rel}", self.uri), e))
    }

    /// Write one object. A single PUT is atomic on every backend (local files are written
    /// to a temporary name and renamed).
    pub fn write_bytes(&self, rel: &str, data: Bytes) -> Result<()> {
        block_on(self.store.put(&self.path(rel), PutPayload::from_bytes(data)))
            .map(|_| ())
            .map_err(|e| Error::from_store(format!("writing {}/{rel}", self.uri), e))
    }

    pub fn delete(&self, rel: &str) -> Result<()> {
        match block_on(self.store.delete(&self.path(rel))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::from_store(format!("deleting {}/{rel}", self.uri), e)),
        }
    }

    /// A lazy scan over Parquet files given relative to this root.
    pub fn scan_parquet(&self, rels: &[String]) -> Result<LazyFrame> {
        let paths: Vec<PlRefPath> = rels.iter().map(|r| PlRefPath::new(self.polars_path(r))).collect();
        // Partition values live in the rows themselves (`date`, `ts`), so hive columns are
        // not derived from the `dt=` / `snapshot=` folder names.
        let args = ScanArgsParquet {
            cloud_options: self.cloud.clone(),
            glob: false,
            hive_options: polars::io::HiveOptions { enabled: Some(false), ..Default::default() },
            ..Default::default()
        };
        LazyFrame::scan_parquet_files(paths.into_iter().collect(), args).ctx(format!(
            "scanning {} Parquet file(s) under {}",
            rels.len(),
            self.uri
        ))
    }

    /// Read one Parquet file eagerly (for small files and validation).
    pub fn read_parquet(&self, rel: &str) -> Result<DataFrame> {
        let bytes = self.read_bytes(rel)?;
        ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .map_err(|e| Error::data(format!("{}/{rel} is not a readable Parquet file: {e}", self.uri)))
    }

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

/// Whether an S3 builder has credentials of its own: keys, a web identity, container
/// credentials, or no signing at all. Without any, object_store asks the instance metadata
/// endpoint (169.254.169.254), which `AWS_EC2_METADATA_DISABLED=true` forbids but object_store
/// does not read: the store is refused before it contacts anything.
fn s3_credentials_given(builder: &AmazonS3Builder) -> bool {
    use object_store::aws::AmazonS3ConfigKey as K;
    let has = |k: K| builder.get_config_value(&k).is_some_and(|v| !v.is_empty());
    has(K::AccessKeyId)
        || has(K::SecretAccessKey)
        || (has(K::WebIdentityTokenFile) && has(K::RoleArn))
        || has(K::ContainerCredentialsRelativeUri)
        || (has(K::ContainerCredentialsFullUri) && has(K::ContainerAuthorizationTokenFile))
        || builder.get_config_value(&K::SkipSignature).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// `AWS_EC2_METADATA_DISABLED=true`: the AWS SDKs' switch that keeps credentials from
/// being fetched from the instance metadata.
fn metadata_disabled() -> bool {
    std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
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

/// Encode a frame as Parquet (zstd, statistics on) into memory. Deterministic for equal frames.
pub fn parquet_bytes(df: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf)
        .with_compression(ParquetCompression::Zstd(None))
        .with_statistics(StatisticsOptions::full())
        .finish(df)?;
    Ok(buf)
}

fn is_data_file(name: &str) -> bool {
    !name.starts_with('_') && !name.starts_with('.') && name.ends_with(".parquet")
}

fn split_bucket<'a>(rest: &'a str, uri: &str) -> Result<(&'a str, StorePath)> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::config(format!("storage URI `{uri}` names no bucket")));
    }
    Ok((bucket, StorePath::from(prefix.trim_matches('/'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polars_scans_retry_as_the_storage_settings_say() {
        let entries = [
            ("max_retries", "3"),
            ("retry_timeout", "7"),
            ("aws_region", "eu-north-1"),
            ("aws_endpoint_url", "http://127.0.0.1:9"),
            ("aws_allow_http", "true"),
        ];
        let options = StorageOptions { entries: entries.map(|(k, v)| (k.to_string(), v.to_string())).to_vec() };
        for uri in ["s3://bucket/prefix", "gs://bucket/prefix"] {
            let options = StorageOptions {
                entries: options
                    .entries
                    .iter()
                    .filter(|(k, _)| uri.starts_with("s3") || !k.starts_with("aws_"))
                    .cloned()
                    .collect(),
            };
            let store = Storage::open(uri, &options, false).unwrap();
            let retry = store.cloud.as_ref().unwrap().retry_config;
            assert_eq!(
                (retry.max_retries, retry.retry_timeout),
                (Some(3), Some(std::time::Duration::from_secs(7))),
                "{uri}"
            );
        }
    }

    #[test]
    fn local_roots_resolve_and_publish_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(dir.path().to_str().unwrap(), &StorageOptions::default(), false).unwrap();
        let snap = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        assert!(st.committed("scores", snap).unwrap().is_none());
        let df = df!("a" => [1i64, 2, 3]).unwrap();
        let c1 = st.publish("scores", snap, &df, serde_json::json!({})).unwrap();
        assert_eq!(c1.rows, 3);
        // A stray part left by a crashed run is removed by the next commit.
        st.write_bytes("scores/snapshot=2026-01-02/part-00000-dead.parquet", Bytes::from_static(b"x")).unwrap();
        let df2 = df!("a" => [4i64]).unwrap();
        let c2 = st.publish("scores", snap, &df2, serde_json::json!({})).unwrap();
        let files = st.list_files("scores/snapshot=2026-01-02").unwrap();
        assert_eq!(files.len(), 2, "one part and _SUCCESS: {files:?}");
        assert_eq!(st.read_committed("scores", snap).unwrap(), df2);
        assert_ne!(c1.files, c2.files);

        // An upload a killed process left (`<name>#<n>`, not listed) goes with the next
        // commit once it is old; a young one may be another run's, and stays.
        let folder = dir.path().join("scores/snapshot=2026-01-02");
        let abandoned = folder.join("part-00000-0123.parquet#3");
        let young = folder.join("part-00000-4567.parquet#4");
        for f in [&abandoned, &young] {
            std::fs::write(f, b"half a part").unwrap();
        }
        let long_ago = std::time::SystemTime::now() - 2 * ABANDONED_AFTER;
        std::fs::File::options().write(true).open(&abandoned).unwrap().set_modified(long_ago).unwrap();
        st.publish("scores", snap, &df, serde_json::json!({})).unwrap();
        assert!(!abandoned.exists() && young.exists());
    }

    #[test]
    fn unsupported_schemes_bucketless_uris_and_file_roots_are_configuration_errors() {
        let err = Storage::open("ftp://x/y", &StorageOptions::default(), false).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::ExitCode::Config);
        for uri in ["s3://", "gs://", "s3:///"] {
            let err = Storage::open(uri, &StorageOptions::default(), false).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::ExitCode::Config, "{uri}: {err}");
            assert!(err.to_string().contains("names no bucket"), "{uri}: {err}");
        }
        // A storage key no store knows, with a local root: a typo, not silence.
        let typo = StorageOptions { entries: vec![("aws_regoin".into(), "eu-north-1".into())] };
        let err = Storage::open(".", &typo, false).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::ExitCode::Config, "{err}");
        assert!(err.to_string().contains("aws_regoin"), "{err}");
        let known = StorageOptions { entries: vec![("aws_region".into(), "eu-north-1".into())] };
        assert!(Storage::open(".", &known, false).is_ok());
        // A root that is a file, as input or as output.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-folder");
        std::fs::write(&file, b"x").unwrap();
        for create in [false, true] {
            let err = Storage::open(file.to_str().unwrap(), &StorageOptions::default(), create).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::ExitCode::Config, "{err}");
            assert!(err.to_string().contains("is a file, not a folder"), "{err}");
        }
    }
}
