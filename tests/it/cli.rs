//! Exit codes and error messages: the contract orchestrators branch on.

use std::path::Path;

use crate::util::*;

fn code(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("retain starts");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
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

fn no_committed_outputs(dir: &Path) -> bool {
    !dir.exists() || walk(dir).iter().all(|p| !p.ends_with("_SUCCESS") && !p.contains("runs/"))
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p.display().to_string()) }
    }
    out
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(code(retain().arg("run").arg("--bogus")).0, 2);
    let (c, _, err) = code(retain().args(["run", "--input", "x", "--output", "y"]));
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("--as-of"), "{err}");
}

#[test]
fn configuration_errors_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[interventions]\nholdout_fractoin = 0.1\n").unwrap();
    let (c, _, err) = code(retain().args(["run", "--as-of", SAMPLE_AS_OF, "--config"]).arg(&cfg));
    assert_eq!(c, 78, "{err}");
    assert!(err.contains("holdout_fractoin"), "names the bad key: {err}");
    let (c, _, _) =
        code(retain().args(["run", "--as-of", SAMPLE_AS_OF, "--input", "ftp://x/y", "--output"]).arg(dir.path()));
    assert_eq!(c, 78);
}

#[test]
fn show_config_prints_the_resolved_settings_with_flags_over_env_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "horizon_days = 21\nseed = 5\n[storage]\naws_secret_access_key = \"hunter2\"\n").unwrap();
    let (c, out, _) = code(
        retain()
            .args(["run", "--show-config", "--config"])
            .arg(&cfg)
            .env("RETAIN_SEED", "6")
            .args(["--horizon-days", "14"]),
    );
    assert_eq!(c, 0);
    let shown: toml::Value = toml::from_str(&out).unwrap();
    assert_eq!(shown["horizon_days"].as_integer(), Some(14), "flag beats file");
    assert_eq!(shown["seed"].as_integer(), Some(6), "environment beats file");
    assert!(!out.contains("hunter2"), "secrets are not printed");
}

#[test]
fn missing_input_tables_exit_65_and_write_nothing() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (c, _, err) = code(
        retain()
            .args(["run", "--as-of", SAMPLE_AS_OF, "--input"])
            .arg(input.path())
            .arg("--output")
            .arg(out.path().join("o")),
    );
    assert_eq!(c, 65, "{err}");
    assert!(err.contains("users"), "names the table: {err}");
    assert!(no_committed_outputs(&out.path().join("o")));
}

#[test]
fn a_file_missing_a_column_is_named_and_stops_the_run_before_any_output() {
    let input = tempfile::tempdir().unwrap();
    copy_dir(&sample_data(), input.path());
    // Rewrite one billing partition without its `plan` column.
    let store = open(input.path());
    let victim =
        store.list_files("billing").unwrap().into_iter().map(|f| f.rel).find(|r| r.contains("dt=2026-11-1")).unwrap();
    let mut df = store.read_parquet(&victim).unwrap().drop("plan").unwrap();
    store.write_bytes(&victim, retain::storage::parquet_bytes(&mut df).unwrap().into()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (c, _, err) = code(
        retain()
            .args(["run", "--config"])
            .arg(repo().join("pipelines/sample.toml"))
            .args(["--as-of", SAMPLE_AS_OF, "--input"])
            .arg(input.path())
            .arg("--output")
            .arg(out.path()),
    );
    assert_eq!(c, 65, "{err}");
    assert!(
        err.contains("billing") && err.contains(&victim) && err.contains("`plan`"),
        "table, file and column named: {err}"
    );
    assert!(no_committed_outputs(out.path()));

    let (c, report, _) = code(retain().arg("validate").arg("--input").arg(input.path()));
    assert_eq!(c, 65);
    assert!(report.contains("table `billing`") && report.contains(&victim) && report.contains("`plan`"), "{report}");
}

#[test]
fn validate_accepts_the_sample_and_reports_bad_values_with_an_example_row() {
    let (c, report, err) = code(retain().arg("validate").arg("--input").arg(sample_data()));
    assert_eq!(c, 0, "{report}{err}");
    assert!(report.contains("ok"), "{report}");

    let input = tempfile::tempdir().unwrap();
    copy_dir(&sample_data(), input.path());
    let store = open(input.path());
    let victim =
        store.list_files("activity").unwrap().into_iter().map(|f| f.rel).find(|r| r.ends_with(".parquet")).unwrap();
    let df = store.read_parquet(&victim).unwrap();
    let mut platform: Vec<String> = strings(&df, "platform");
    platform[3] = "smart_fridge".into();
    let mut df = df.clone();
    df.replace("platform", polars::prelude::Column::new("platform".into(), platform)).unwrap();
    store.write_bytes(&victim, retain::storage::parquet_bytes(&mut df).unwrap().into()).unwrap();
    let (c, report, _) = code(retain().arg("validate").arg("--input").arg(input.path()));
    assert_eq!(c, 65);
    assert!(
        report.contains("`platform`")
            && report.contains("row 3")
            && report.contains("smart_fridge")
            && report.contains(&victim),
        "{report}"
    );
}

#[test]
fn score_without_a_model_is_bad_input_not_a_crash() {
    let out = tempfile::tempdir().unwrap();
    run_ok(
        retain()
            .args(["features", "--as-of", SAMPLE_AS_OF, "--input"])
            .arg(sample_data())
            .arg("--output")
            .arg(out.path()),
    );
    let (c, _, err) = code(
        retain().args(["score", "--as-of", SAMPLE_AS_OF, "--input"]).arg(sample_data()).arg("--output").arg(out.path()),
    );
    assert_eq!(c, 65, "{err}");
    assert!(err.contains("retain train"), "says what to run: {err}");
}

#[test]
fn unreachable_object_storage_is_a_temporary_failure() {
    // A closed port on loopback: connection refused, retried briefly, then exit 75.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = tempfile::tempdir().unwrap();
    let cfg = out.path().join("c.toml");
    std::fs::write(&cfg, format!(
        "[storage]\naws_endpoint_url = \"http://127.0.0.1:{port}\"\naws_allow_http = \"true\"\naws_region = \"us-east-1\"\n\
         aws_access_key_id = \"k\"\naws_secret_access_key = \"s\"\nconnect_timeout = \"1s\"\nmax_retries = \"1\"\nretry_timeout = \"2\"\n"
    )).unwrap();
    let (c, _, err) = code(
        retain()
            .args(["run", "--as-of", SAMPLE_AS_OF, "--input", "s3://bucket/in", "--config"])
            .arg(&cfg)
            .arg("--output")
            .arg(out.path().join("o")),
    );
    assert_eq!(c, 75, "{err}");
}
