//! The storage conformance suite: one set of checks on `retain::storage::Storage`, run on
//! local disk (a temporary folder), on an S3-compatible server (moto) and on a GCS
//! emulator (fake-gcs-server), both real servers on 127.0.0.1 (see `emulators`).
//!
//! Each check is a function of a [`Fixture`] in `checks`; the `suite!` lists at the bottom
//! say which backend runs which check, as `storage::<backend>::<check>`.
//!
//! What GCS does not run: every check that writes through `Storage` (`publish`,
//! overwrite, `write_bytes`), because the GCS emulator rejects object_store's uploads (see
//! the `emulators` module docs). On GCS the fixtures are written through the emulator's
//! own upload API, and every read path (listing, partition pruning, bytes, polars scans,
//! commit markers, incomplete partitions, error classes) runs as on the other backends.

use bytes::Bytes;
use chrono::NaiveDate;
use polars::prelude::*;
use retain::error::ExitCode;
use retain::storage::{Commit, CommittedFile, FileEntry, SUCCESS, Storage, StorageOptions, parquet_bytes};

use crate::emulators::{self, Kind, Root};

/// One backend under test, with a fresh, empty root.
pub(crate) struct Fixture {
    storage: Storage,
    place: Place,
}

enum Place {
    /// The folder lives as long as the fixture.
    Local {
        _dir: tempfile::TempDir,
    },
    Remote(Root),
}

impl Fixture {
    fn local(_test: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let storage = Storage::open(dir.path().to_str().unwrap(), &StorageOptions::default(), false)
            .expect("opening a temporary folder");
        Fixture { storage, place: Place::Local { _dir: dir } }
    }

    fn s3(test: &str) -> Fixture {
        Fixture::remote(emulators::s3().root(test))
    }

    fn gcs(test: &str) -> Fixture {
        Fixture::remote(emulators::gcs().root(test))
    }

    fn remote(root: Root) -> Fixture {
        Fixture { storage: root.open(), place: Place::Remote(root) }
    }

    fn kind(&self) -> Option<Kind> {
        match &self.place {
            Place::Local { .. } => None,
            Place::Remote(root) => Some(root.server().kind()),
        }
    }

    /// Write a fixture file: through `Storage` where the backend takes its writes, through
    /// the emulator's own API on GCS.
    fn put(&self, rel: &str, data: &[u8]) {
        match &self.place {
            Place::Remote(root) if root.server().kind() == Kind::Gcs => root.seed(rel, data),
            _ => self
                .storage
                .write_bytes(rel, Bytes::copy_from_slice(data))
                .unwrap_or_else(|e| panic!("writing {rel}: {e}")),
        }
    }

    fn put_parquet(&self, rel: &str, df: &DataFrame) -> u64 {
        let bytes = parquet_bytes(&mut df.clone()).expect("encoding Parquet");
        self.put(rel, &bytes);
        bytes.len() as u64
    }
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn frame(ids: &[i64], names: &[&str]) -> DataFrame {
    df!("id" => ids, "name" => names).unwrap()
}

fn rels(files: &[FileEntry]) -> Vec<&str> {
    files.iter().map(|f| f.rel.as_str()).collect()
}

/// The checks, each a function of a fresh fixture.
mod checks {
    use super::*;

    pub(super) fn list_files_is_recursive_sorted_and_relative(f: &Fixture) {
        f.put("t/b.txt", b"bbb");
        f.put("t/a/x.txt", b"x");
        f.put("t/a/y/z.txt", b"zz");
        f.put("tother/q.txt", b"q");
        let files = f.storage.list_files("t").unwrap();
        assert_eq!(
            files,
            vec![
                FileEntry { rel: "t/a/x.txt".into(), size: 1 },
                FileEntry { rel: "t/a/y/z.txt".into(), size: 2 },
                FileEntry { rel: "t/b.txt".into(), size: 3 },
            ],
            "a sibling with the same name prefix (tother/) is not inside t/"
        );
        assert_eq!(rels(&f.storage.list_files("").unwrap()), ["t/a/x.txt", "t/a/y/z.txt", "t/b.txt", "tother/q.txt"]);
        assert_eq!(f.storage.list_dirs("t").unwrap(), ["a"]);
        assert_eq!(f.storage.list_dirs("").unwrap(), ["t", "tother"]);
    }

    pub(super) fn listing_an_absent_folder_is_empty(f: &Fixture) {
        f.put("t/a.txt", b"a");
        assert!(f.storage.list_files("nothing/here").unwrap().is_empty());
        assert!(f.storage.list_dirs("nothing").unwrap().is_empty());
        assert!(f.storage.partition_files("nothing", date("2024-01-01"), date("2024-12-31")).unwrap().is_empty());
    }

    pub(super) fn partition_files_prune_by_date_and_skip_non_data(f: &Fixture) {
        let df = frame(&[1], &["a"]);
        for rel in [
            "events/dt=2024-01-01/part-0.parquet",
            "events/dt=2024-01-02/part-0.parquet",
            "events/dt=2024-01-02/part-1.parquet",
            "events/dt=2024-01-03/part-0.parquet",
            "events/dt=2024-01-05/part-0.parquet",
            // Not data: markers, hidden and temporary files, other formats.
            "events/dt=2024-01-02/_SUCCESS",
            "events/dt=2024-01-02/.part-2.parquet.crc",
            "events/dt=2024-01-02/.part-3.parquet",
            "events/dt=2024-01-02/_part-4.parquet",
            "events/dt=2024-01-03/notes.txt",
            // Not partitions: folders without dt=.
            "events/_temporary/0/part-9.parquet",
            "events/other/part-0.parquet",
        ] {
            f.put_parquet(rel, &df);
        }
        let size = f.storage.list_files("events/dt=2024-01-01").unwrap()[0].size;
        let got = f.storage.partition_files("events", date("2024-01-02"), date("2024-01-04")).unwrap();
        let want = [
            ("2024-01-02", "events/dt=2024-01-02/part-0.parquet"),
            ("2024-01-02", "events/dt=2024-01-02/part-1.parquet"),
            ("2024-01-03", "events/dt=2024-01-03/part-0.parquet"),
        ]
        .map(|(d, rel)| (date(d), rel.to_string(), size));
        assert_eq!(got.iter().map(|p| (p.date, p.rel.clone(), p.size)).collect::<Vec<_>>(), want);
        assert!(got.iter().all(|p| !p.version.is_empty()), "each file has a version: {got:?}");

        let one_day = f.storage.partition_files("events", date("2024-01-05"), date("2024-01-05")).unwrap();
        assert_eq!(one_day.iter().map(|p| p.rel.as_str()).collect::<Vec<_>>(), ["events/dt=2024-01-05/part-0.parquet"]);
        assert!(f.storage.partition_files("events", date("2024-01-06"), date("2024-02-01")).unwrap().is_empty());
        assert!(f.storage.partition_files("events", date("2024-01-03"), date("2024-01-02")).unwrap().is_empty());
    }

    pub(super) fn a_malformed_partition_folder_is_a_data_error(f: &Fixture) {
        f.put("events/dt=2024-01-01/part-0.parquet", b"x");
        f.put("events/dt=January/part-0.parquet", b"x");
        let err = f.storage.partition_files("events", date("2024-01-01"), date("2024-01-31")).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::DataErr, "{err}");
        assert!(err.to_string().contains("dt=January"), "{err}");
    }

    pub(super) fn bytes_round_trip(f: &Fixture) {
        let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        f.put("blobs/one.bin", &data);
        f.put("blobs/empty.bin", b"");
        assert_eq!(f.storage.read_bytes("blobs/one.bin").unwrap(), data);
        assert_eq!(f.storage.read_bytes("blobs/empty.bin").unwrap(), Bytes::new());
        assert!(f.storage.exists("blobs/one.bin").unwrap());
        assert!(!f.storage.exists("blobs/two.bin").unwrap());
        assert!(!f.storage.exists("blobs").unwrap(), "a folder is not an object");
    }

    pub(super) fn a_missing_object_is_a_data_error(f: &Fixture) {
        f.put("t/present.parquet", b"x");
        for err in [
            f.storage.read_bytes("t/absent.parquet").unwrap_err(),
            f.storage.read_parquet("t/absent.parquet").unwrap_err(),
        ] {
            assert_eq!(err.exit_code(), ExitCode::DataErr, "{err}");
            assert!(err.to_string().contains("absent.parquet"), "the message names the file: {err}");
        }
        let err = f.storage.read_parquet("t/present.parquet").unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::DataErr, "a file that is not Parquet: {err}");
    }

    pub(super) fn polars_scans_parquet_files_stored_there(f: &Fixture) {
        let a = frame(&[1, 2, 3], &["a", "b", "c"]);
        let b = frame(&[4, 5], &["d", "e"]);
        f.put_parquet("t/dt=2024-01-01/part-0.parquet", &a);
        f.put_parquet("t/dt=2024-01-02/part-0.parquet", &b);
        let files = f.storage.partition_files("t", date("2024-01-01"), date("2024-01-02")).unwrap();
        let rels: Vec<String> = files.into_iter().map(|p| p.rel).collect();
        let got = f.storage.scan_parquet(&rels).unwrap().collect().unwrap();
        assert_eq!(got, a.vstack(&b).unwrap());

        // Projection and filter pushdown go through the same reader (range requests).
        let got = f
            .storage
            .scan_parquet(&rels)
            .unwrap()
            .filter(col("id").gt(lit(2)))
            .select([col("name")])
            .collect()
            .unwrap();
        assert_eq!(got, df!("name" => ["c", "d", "e"]).unwrap());
        assert_eq!(f.storage.read_parquet(&rels[1]).unwrap(), b);
    }

    /// A listed file that is gone when polars reads it is bad input (65) on every backend:
    /// `Error::from_polars` looks through polars' `io::Error` for object_store's `NotFound`.
    pub(super) fn scanning_a_missing_parquet_file_fails(f: &Fixture) {
        f.put_parquet("t/part-0.parquet", &frame(&[1], &["a"]));
        let rels = ["t/part-0.parquet".to_string(), "t/part-1.parquet".to_string()];
        let err = match f.storage.scan_parquet(&rels) {
            Ok(lf) => {
                lf.collect().map(|_| ()).map_err(|e| retain::error::Error::from_polars("collecting", e)).unwrap_err()
            }
            Err(e) => e,
        };
        assert_eq!(err.exit_code(), ExitCode::DataErr, "{err}");
        assert!(err.to_string().contains("part-1.parquet"), "the message names the file: {err}");
    }

    /// A commit written by another run (or another tool) is read back through its marker.
    pub(super) fn a_committed_partition_reads_back(f: &Fixture) {
        let p0 = frame(&[1, 2], &["a", "b"]);
        let p1 = frame(&[3], &["c"]);
        let dir = "scores/snapshot=2024-03-01";
        let s0 = f.put_parquet(&format!("{dir}/part-00000-x.parquet"), &p0);
        let s1 = f.put_parquet(&format!("{dir}/part-00001-y.parquet"), &p1);
        // A part the marker does not list (a crashed rerun) is not read.
        f.put_parquet(&format!("{dir}/part-00000-stale.parquet"), &frame(&[9], &["z"]));
        let commit = Commit {
            table: "scores".into(),
            snapshot: date("2024-03-01"),
            rows: 3,
            files: vec![
                CommittedFile { name: "part-00000-x.parquet".into(), rows: 2, bytes: s0 },
                CommittedFile { name: "part-00001-y.parquet".into(), rows: 1, bytes: s1 },
            ],
            columns: vec!["id".into(), "name".into()],
            meta: serde_json::json!({"run": "r1"}),
        };
        f.put(&format!("{dir}/{SUCCESS}"), &serde_json::to_vec(&commit).unwrap());
        assert_eq!(f.storage.committed("scores", date("2024-03-01")).unwrap(), Some(commit));
        assert_eq!(f.storage.read_committed("scores", date("2024-03-01")).unwrap(), p0.vstack(&p1).unwrap());
        assert_eq!(f.storage.committed("scores", date("2024-03-02")).unwrap(), None, "another snapshot");
    }

    pub(super) fn an_incomplete_partition_reads_as_absent(f: &Fixture) {
        let dir = "scores/snapshot=2024-03-01";
        f.put_parquet(&format!("{dir}/part-00000-x.parquet"), &frame(&[1], &["a"]));
        assert_eq!(f.storage.committed("scores", date("2024-03-01")).unwrap(), None);
        let err = f.storage.read_committed("scores", date("2024-03-01")).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::DataErr, "{err}");
        assert!(err.to_string().contains(SUCCESS), "{err}");
        let err = f.storage.read_committed("never-written", date("2024-03-01")).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::DataErr, "{err}");
    }

    pub(super) fn a_corrupt_commit_marker_is_a_data_error(f: &Fixture) {
        f.put(&format!("scores/snapshot=2024-03-01/{SUCCESS}"), b"{not json");
        let err = f.storage.committed("scores", date("2024-03-01")).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::DataErr, "{err}");
    }

    /// `publish` writes parts and then the marker; the partition reads back as written.
    pub(super) fn publish_round_trips(f: &Fixture) {
        let snap = date("2024-03-01");
        let df = frame(&[1, 2, 3], &["a", "b", "c"]);
        let commit = f.storage.publish("scores", snap, &df, serde_json::json!({"run": "r1"})).unwrap();
        assert_eq!((commit.rows, commit.columns.clone()), (3, vec!["id".to_string(), "name".to_string()]));
        assert_eq!(f.storage.committed("scores", snap).unwrap().as_ref(), Some(&commit));
        assert_eq!(f.storage.read_committed("scores", snap).unwrap(), df);

        let dir = "scores/snapshot=2024-03-01";
        let mut want: Vec<String> = commit.files.iter().map(|p| format!("{dir}/{}", p.name)).collect();
        want.push(format!("{dir}/{SUCCESS}"));
        want.sort();
        let files = f.storage.list_files(dir).unwrap();
        assert_eq!(rels(&files), want);
        for part in &commit.files {
            let entry = files.iter().find(|e| e.rel.ends_with(&part.name)).unwrap();
            assert_eq!(entry.size, part.bytes, "{}", part.name);
        }

        // The same frame publishes the same part names and bytes (reruns are idempotent).
        let again = f.storage.publish("scores", snap, &df, serde_json::json!({"run": "r1"})).unwrap();
        assert_eq!(again, commit);
        assert_eq!(rels(&f.storage.list_files(dir).unwrap()), want);
    }

    /// A second publish of the same snapshot replaces the first and removes parts that its
    /// marker does not list; other snapshots are untouched.
    pub(super) fn publish_overwrites_and_removes_stray_parts(f: &Fixture) {
        let snap = date("2024-03-01");
        let first = f.storage.publish("scores", snap, &frame(&[1, 2], &["a", "b"]), serde_json::Value::Null).unwrap();
        let other =
            f.storage.publish("scores", date("2024-03-02"), &frame(&[7], &["g"]), serde_json::Value::Null).unwrap();
        let dir = "scores/snapshot=2024-03-01";
        f.put(&format!("{dir}/part-00007-crashed.parquet"), b"half a part");
        f.put(&format!("{dir}/.part-00008.tmp"), b"tmp");

        let df2 = frame(&[3], &["c"]);
        let second = f.storage.publish("scores", snap, &df2, serde_json::Value::Null).unwrap();
        assert_ne!(first.files, second.files);
        assert_eq!(f.storage.read_committed("scores", snap).unwrap(), df2);
        let mut want: Vec<String> = second.files.iter().map(|p| format!("{dir}/{}", p.name)).collect();
        want.push(format!("{dir}/{SUCCESS}"));
        want.sort();
        assert_eq!(rels(&f.storage.list_files(dir).unwrap()), want, "old and stray parts are gone");
        assert_eq!(f.storage.committed("scores", date("2024-03-02")).unwrap(), Some(other));
    }

    /// An empty frame still publishes a complete, readable partition (one empty part).
    pub(super) fn publish_of_an_empty_frame_is_complete(f: &Fixture) {
        let snap = date("2024-03-01");
        let empty = frame(&[], &[]);
        let commit = f.storage.publish("scores", snap, &empty, serde_json::Value::Null).unwrap();
        assert_eq!((commit.rows, commit.files.len()), (0, 1));
        let back = f.storage.read_committed("scores", snap).unwrap();
        assert_eq!((back.height(), back.schema()), (0, empty.schema()));
    }

    /// Runs committing the same table partition at once take turns under its write lease:
    /// every commit succeeds, and the committed marker lists parts that exist and read back
    /// as one writer's whole frame (issue #17: two runs' clean-ups used to delete each
    /// other's parts).
    pub(super) fn concurrent_publishes_leave_a_consistent_table(f: &Fixture) {
        let snap = date("2024-03-01");
        let frames: Vec<DataFrame> =
            (0..4).map(|w| frame(&[w, w + 10, w + 20], &["a", "b", &format!("writer {w}")])).collect();
        std::thread::scope(|scope| {
            for df in &frames {
                scope.spawn(|| {
                    for round in 0..10 {
                        f.storage
                            .publish("scores", snap, df, serde_json::json!({ "round": round }))
                            .unwrap_or_else(|e| panic!("a concurrent publish failed: {e}"));
                    }
                });
            }
        });
        let commit = f.storage.committed("scores", snap).unwrap().expect("committed");
        let back = f.storage.read_committed("scores", snap).expect("every part the marker lists exists");
        assert!(frames.contains(&back), "the table is one writer's frame, not a mix: {back}");
        let dir = "scores/snapshot=2024-03-01";
        let mut want: Vec<String> = commit.files.iter().map(|p| format!("{dir}/{}", p.name)).collect();
        want.push(format!("{dir}/{SUCCESS}"));
        want.sort();
        assert_eq!(
            rels(&f.storage.list_files(dir).unwrap()),
            want,
            "only the last commit's parts, and no lease, remain"
        );
    }

    pub(super) fn write_bytes_replaces_an_object(f: &Fixture) {
        f.storage.write_bytes("t/a.txt", Bytes::from_static(b"first")).unwrap();
        f.storage.write_bytes("t/a.txt", Bytes::from_static(b"second")).unwrap();
        assert_eq!(f.storage.read_bytes("t/a.txt").unwrap(), Bytes::from_static(b"second"));
        f.storage.delete("t/a.txt").unwrap();
        f.storage.delete("t/a.txt").unwrap();
        assert!(!f.storage.exists("t/a.txt").unwrap());
    }

    /// The environment a child process gets names the same settings as the options, in
    /// the variable names object_store's `from_env` reads.
    pub(super) fn env_for_a_child_process_reaches_the_same_server(f: &Fixture) {
        let Place::Remote(root) = &f.place else { unreachable!("remote backends only") };
        f.put("t/a.txt", b"a");
        let from_env =
            StorageOptions { entries: root.env().into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect() };
        for (key, _) in &from_env.entries {
            let known = match f.kind() {
                Some(Kind::S3) => key.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok(),
                _ => key.parse::<object_store::gcp::GoogleConfigKey>().is_ok(),
            };
            assert!(known, "{} is not a variable object_store reads", key.to_ascii_uppercase());
        }
        let st = Storage::open(&root.uri(), &from_env, false).unwrap();
        assert_eq!(rels(&st.list_files("").unwrap()), ["t/a.txt"]);

        // A child sees exactly these cloud variables, none of this machine's own.
        let mut cmd = std::process::Command::new("env");
        root.apply_env(&mut cmd);
        let out = cmd.output().expect("running env");
        let mut seen: Vec<(String, String)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("AWS_") || l.starts_with("GOOGLE_") || l.starts_with("SERVICE_ACCOUNT="))
            .map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap())
            .collect();
        let mut want = root.env();
        seen.sort();
        want.sort();
        assert_eq!(seen, want);
    }

    /// A bucket that does not exist is a configuration error (78), not a temporary
    /// failure: retrying cannot help. (S3 only: fake-gcs-server answers a missing bucket
    /// with a 500 rather than GCS's 404 `NoSuchBucket`.)
    pub(super) fn a_missing_bucket_is_a_configuration_error(f: &Fixture) {
        let kind = f.kind().expect("remote backends only");
        let scheme = if kind == Kind::S3 { "s3" } else { "gs" };
        let Place::Remote(root) = &f.place else { unreachable!("remote backends only") };
        let options = emulators::options_for(kind, &root.server().url());
        let st = Storage::open(&format!("{scheme}://no-such-bucket/x"), &options, false).unwrap();
        for err in [st.list_files("t").unwrap_err(), st.read_bytes("t/a.txt").unwrap_err()] {
            assert_eq!(err.exit_code(), ExitCode::Config, "{err}");
            assert!(err.to_string().contains("no-such-bucket"), "names the bucket: {err}");
        }
    }

    /// A server that does not answer is a temporary failure (75), after object_store's
    /// retries: listing, reading and the commit marker alike.
    pub(super) fn an_unreachable_server_is_a_temporary_failure(f: &Fixture) {
        let kind = f.kind().expect("remote backends only");
        let closed = format!("http://127.0.0.1:{}", emulators::free_port());
        let mut options = emulators::options_for(kind, &closed);
        options.entries.push(("connect_timeout".into(), "1s".into()));
        options.entries.push(("timeout".into(), "5s".into()));
        let scheme = if kind == Kind::S3 { "s3" } else { "gs" };
        let st = Storage::open(&format!("{scheme}://{}/unreachable", emulators::BUCKET), &options, false).unwrap();
        let started = std::time::Instant::now();
        for err in [
            st.list_files("t").unwrap_err(),
            st.read_bytes("t/a.txt").unwrap_err(),
            st.committed("scores", date("2024-03-01")).unwrap_err(),
        ] {
            assert_eq!(err.exit_code(), ExitCode::TempFail, "{err}");
        }
        eprintln!("three calls to a closed port failed after {:?}", started.elapsed());
    }
}

/// Local only: a missing input root is bad input; an output root is created.
#[test]
fn local_missing_input_root_is_a_data_error() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent");
    let err = Storage::open(absent.to_str().unwrap(), &StorageOptions::default(), false).unwrap_err();
    assert_eq!(err.exit_code(), ExitCode::DataErr, "{err}");
    let st = Storage::open(&format!("file://{}", absent.display()), &StorageOptions::default(), true).unwrap();
    assert!(absent.is_dir());
    assert!(st.list_files("").unwrap().is_empty());
}

#[test]
fn unknown_storage_options_are_configuration_errors() {
    let bad = StorageOptions { entries: vec![("aws_no_such_option".into(), "1".into())] };
    let err = Storage::open("s3://bucket/prefix", &bad, false).unwrap_err();
    assert_eq!(err.exit_code(), ExitCode::Config, "{err}");
    let bad = StorageOptions { entries: vec![("google_no_such_option".into(), "1".into())] };
    let err = Storage::open("gs://bucket/prefix", &bad, false).unwrap_err();
    assert_eq!(err.exit_code(), ExitCode::Config, "{err}");
}

/// `suite!(backend: check, ...)` makes `storage::backend::check` tests.
macro_rules! suite {
    ($backend:ident: $($check:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[test]
                fn $check() {
                    let fixture = super::Fixture::$backend(stringify!($check));
                    super::checks::$check(&fixture);
                }
            )+
        }
    };
}

suite!(local:
    list_files_is_recursive_sorted_and_relative,
    listing_an_absent_folder_is_empty,
    partition_files_prune_by_date_and_skip_non_data,
    a_malformed_partition_folder_is_a_data_error,
    bytes_round_trip,
    a_missing_object_is_a_data_error,
    polars_scans_parquet_files_stored_there,
    scanning_a_missing_parquet_file_fails,
    a_committed_partition_reads_back,
    an_incomplete_partition_reads_as_absent,
    a_corrupt_commit_marker_is_a_data_error,
    publish_round_trips,
    publish_overwrites_and_removes_stray_parts,
    publish_of_an_empty_frame_is_complete,
    concurrent_publishes_leave_a_consistent_table,
    write_bytes_replaces_an_object,
);

suite!(s3:
    a_missing_bucket_is_a_configuration_error,
    list_files_is_recursive_sorted_and_relative,
    listing_an_absent_folder_is_empty,
    partition_files_prune_by_date_and_skip_non_data,
    a_malformed_partition_folder_is_a_data_error,
    bytes_round_trip,
    a_missing_object_is_a_data_error,
    polars_scans_parquet_files_stored_there,
    scanning_a_missing_parquet_file_fails,
    a_committed_partition_reads_back,
    an_incomplete_partition_reads_as_absent,
    a_corrupt_commit_marker_is_a_data_error,
    publish_round_trips,
    publish_overwrites_and_removes_stray_parts,
    publish_of_an_empty_frame_is_complete,
    concurrent_publishes_leave_a_consistent_table,
    write_bytes_replaces_an_object,
    env_for_a_child_process_reaches_the_same_server,
    an_unreachable_server_is_a_temporary_failure,
);

// GCS: every read path; no check that writes through `Storage` (see the module docs).
suite!(gcs:
    list_files_is_recursive_sorted_and_relative,
    listing_an_absent_folder_is_empty,
    partition_files_prune_by_date_and_skip_non_data,
    a_malformed_partition_folder_is_a_data_error,
    bytes_round_trip,
    a_missing_object_is_a_data_error,
    polars_scans_parquet_files_stored_there,
    scanning_a_missing_parquet_file_fails,
    a_committed_partition_reads_back,
    an_incomplete_partition_reads_as_absent,
    a_corrupt_commit_marker_is_a_data_error,
    env_for_a_child_process_reaches_the_same_server,
    an_unreachable_server_is_a_temporary_failure,
);
