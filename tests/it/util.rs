//! Shared harness: run the binary, find the sample data, read committed outputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use chrono::NaiveDate;
use polars::prelude::*;
use retain::storage::{Storage, StorageOptions};

/// The snapshot the sample world ends on.
pub(crate) const SAMPLE_AS_OF: &str = "2026-11-20";

pub(crate) fn sample_as_of() -> NaiveDate {
    SAMPLE_AS_OF.parse().unwrap()
}

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn sample_data() -> PathBuf {
    repo().join("data-samples")
}

/// A `retain` command with a clean environment: no RETAIN_* or cloud variables leak in
/// from the machine, and logs are JSON (stderr is not a terminal here anyway).
pub(crate) fn retain() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_retain"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RETAIN_") || k.starts_with("AWS_") || k.starts_with("GOOGLE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RETAIN_LOG", "warn");
    cmd
}

/// "exit code N", or the signal that killed the process (an exit code alone says `None`).
pub(crate) fn how_it_ended(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => {
            format!("killed by signal {signal}{}", if status.core_dumped() { ", core dumped" } else { "" })
        }
        (None, None) => "no exit code".to_string(),
    }
}

pub(crate) fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("retain starts");
    assert!(
        out.status.success(),
        "retain failed ({}):\nstdout: {}\nstderr: {}",
        how_it_ended(&out.status),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) fn open(dir: &Path) -> Storage {
    Storage::open(dir.to_str().unwrap(), &StorageOptions::default(), false).unwrap()
}

/// A local root for writing (created when missing).
pub(crate) fn open_for_write(dir: &Path) -> Storage {
    Storage::open(dir.to_str().unwrap(), &StorageOptions::default(), true).unwrap()
}

/// The JSON file `rel` under the output root `dir` (a manifest, a model's description).
pub(crate) fn read_json(dir: &Path, rel: &str) -> serde_json::Value {
    let path = dir.join(rel);
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

pub(crate) fn read_table(dir: &Path, table: &str) -> DataFrame {
    open(dir).read_committed(table, sample_as_of()).unwrap()
}

/// `retain run` with the sample config on the sample world into `out`.
pub(crate) fn run_sample_into(out: &Path) {
    run_ok(
        retain()
            .args(["run", "--config"])
            .arg(repo().join("pipelines/sample.toml"))
            .args(["--as-of", SAMPLE_AS_OF, "--input"])
            .arg(sample_data())
            .arg("--output")
            .arg(out),
    );
}

/// Copy the folder `from` into `to`, recursively.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `retain run` on the sample world, once per test binary; tests share its outputs.
pub(crate) fn sample_run() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        run_sample_into(dir.path());
        dir
    })
    .path()
}

pub(crate) fn strings(df: &DataFrame, column: &str) -> Vec<String> {
    df.column(column).unwrap().str().unwrap().iter().map(|v| v.unwrap().to_string()).collect()
}

pub(crate) fn floats(df: &DataFrame, column: &str) -> Vec<f64> {
    df.column(column).unwrap().cast(&DataType::Float64).unwrap().f64().unwrap().iter().map(|v| v.unwrap()).collect()
}

/// Write a table as CSV (the analysts' flat-table format).
pub(crate) fn write_csv(df: &mut DataFrame, path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    CsvWriter::new(&mut f).finish(df).unwrap();
}

/// Headless Chromium (Debian's package; `make test` installs it) on a local page, with the
/// settings that keep it off the network; `args` add the output wanted (`--dump-dom`,
/// `--screenshot=…`).
pub(crate) fn chromium(page: &Path, args: &[String]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (make test installs it: scripts/install-chromium.sh)")
}

/// The value of attribute `name` in a DOM dump (the first one).
pub(crate) fn dom_attribute(dom: &str, name: &str) -> String {
    let key = format!("{name}=\"");
    let at = dom
        .find(&key)
        .unwrap_or_else(|| panic!("the DOM has {name} once the page has loaded:\n{}", &dom[..dom.len().min(400)]));
    dom[at + key.len()..].split('"').next().unwrap().to_string()
}
