//! Where tables live: a URI (local folder, `file://`, `s3://`, `gs://`) turned into an
//! `object_store` plus the matching polars cloud options, partition-pruned listing of
//! `dt=` partitions, and atomic publication of output tables.
//!
//! Why one module owns all of this: credentials, endpoints and retries must be resolved
//! once and identically for the two clients that touch storage (object_store for
//! listing and writing, polars for scanning Parquet), or a read and a write of the same
//! URI could end up talking to different places.
//!
//! How a table is committed (parts, `_SUCCESS`, the write lease) is `commit`'s business.

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

mod commit;
mod lease;
mod retry;

use retry::again;

/// The marker that makes a table partition complete. Written last.
pub const SUCCESS: &str = "_SUCCESS";

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
        let long_ago = std::time::SystemTime::now() - 2 * commit::ABANDONED_AFTER;
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
