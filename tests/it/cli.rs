//! Exit codes and error messages: the contract orchestrators branch on.
//!
//! What a person sees is pinned with insta snapshots (`tests/it/snapshots/`): the command
//! line, the exit code and stderr from the first `error:` line on (the `error:` and `hint:`
//! lines and any continuation of a multi-line message; JSON log lines dropped), with
//! temporary folders, the repository path and ports replaced by placeholders. After an
//! intended change, review and accept with `cargo insta review` (or rerun with
//! `INSTA_UPDATE=always` and read the diff).

use std::path::Path;
use std::process::Command;

use crate::util::*;

fn code(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("retain starts");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Replace machine-specific paths by placeholders: each `(path, placeholder)`, then the
/// repository as `[REPO]`.
fn normalise(text: &str, paths: &[(&Path, &str)]) -> String {
    let mut text = text.to_string();
    let mut paths: Vec<(String, &str)> = paths.iter().map(|(p, name)| (p.display().to_string(), *name)).collect();
    paths.push((repo().display().to_string(), "[REPO]"));
    // Longest first, so a folder inside another is replaced as itself.
    paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    for (p, name) in paths {
        text = text.replace(&p, name);
    }
    text
}

/// object_store says how long a request took (`… in 105.001244ms, after 1 retries`):
/// every ` in <digits…>` up to the next `,` becomes ` in [ELAPSED]`.
fn mask_elapsed(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(" in ") {
        let after = &rest[at + 4..];
        out += &rest[..at + 4];
        let end = after.find(',').unwrap_or(after.len());
        if after.starts_with(|c: char| c.is_ascii_digit()) && !after[..end].contains(char::is_whitespace) {
            out += "[ELAPSED]";
            rest = &after[end..];
        } else {
            rest = after;
        }
    }
    out + rest
}

/// The command as a person would type it: the `RETAIN_*` variables it sets (the harness's
/// `RETAIN_LOG` aside), `retain` and its arguments.
fn command_line(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?, v?.to_str()?)))
        .filter(|(k, _)| k.starts_with("RETAIN_") && *k != "RETAIN_LOG")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.sort();
    parts.push("retain".into());
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Run a command expected to fail: `$ <command line>`, `exit code: N`, then what stderr
/// says from the first `error:` line on, without the JSON log lines; normalised.
fn failure(cmd: &mut Command, paths: &[(&Path, &str)]) -> (i32, String) {
    let line = command_line(cmd);
    let (c, _, err) = code(cmd);
    let said: Vec<&str> =
        err.lines().skip_while(|l| !l.starts_with("error:")).filter(|l| !l.trim_start().starts_with('{')).collect();
    assert!(!said.is_empty(), "no `error:` line on stderr (exit {c}):\n{err}");
    (c, normalise(&format!("$ {line}\nexit code: {c}\n{}\n", said.join("\n").trim_end()), paths))
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
    let (c, text) = failure(retain().args(["run", "--bogus"]), &[]);
    assert_eq!(c, 2, "{text}");
    insta::assert_snapshot!("exit_2_unknown_flag", text);
    let (c, text) = failure(retain().args(["run", "--input", "x", "--output", "y"]), &[]);
    assert_eq!(c, 2, "{text}");
    insta::assert_snapshot!("exit_2_missing_as_of", text);
}

#[test]
fn configuration_errors_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = [(dir.path(), "[TMP]")];
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[interventions]\nholdout_fractoin = 0.1\n").unwrap();
    let (c, text) = failure(retain().args(["run", "--as-of", SAMPLE_AS_OF, "--config"]).arg(&cfg), &tmp);
    assert_eq!(c, 78, "{text}");
    insta::assert_snapshot!("exit_78_unknown_config_key", text);

    std::fs::write(&cfg, "[interventions]\nholdout_fraction = 1.5\n").unwrap();
    let (c, text) = failure(retain().args(["run", "--as-of", SAMPLE_AS_OF, "--config"]).arg(&cfg), &tmp);
    assert_eq!(c, 78, "{text}");
    insta::assert_snapshot!("exit_78_bad_config_value", text);

    let (c, text) = failure(
        retain().args(["run", "--as-of", SAMPLE_AS_OF, "--input", "ftp://x/y", "--output"]).arg(dir.path().join("o")),
        &tmp,
    );
    assert_eq!(c, 78, "{text}");
    insta::assert_snapshot!("exit_78_unsupported_uri_scheme", text);
}

/// A config file, the environment and flags at once: flags > environment > file > defaults,
/// and storage secrets are shown redacted.
#[test]
fn show_config_prints_the_resolved_settings_with_flags_over_env_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "input = \"from-file/in\"\noutput = \"from-file/out\"\nhorizon_days = 21\nseed = 5\n\
         [training]\nsnapshots = 6\n\
         [storage]\naws_region = \"eu-north-1\"\naws_secret_access_key = \"hunter2\"\n",
    )
    .unwrap();
    let tmp = [(dir.path(), "[TMP]")];

    // run: the file by flag; RETAIN_SEED beats the file's seed, RETAIN_INPUT its input,
    // --horizon-days beats both RETAIN_HORIZON_DAYS and the file.
    let mut cmd = retain();
    cmd.args(["run", "--show-config", "--as-of", SAMPLE_AS_OF, "--config"])
        .arg(&cfg)
        .args(["--horizon-days", "14"])
        .env("RETAIN_SEED", "6")
        .env("RETAIN_INPUT", "from-env/in")
        .env("RETAIN_HORIZON_DAYS", "28");
    let line = command_line(&cmd);
    let (c, out, err) = code(&mut cmd);
    assert_eq!(c, 0, "{err}");
    assert!(!out.contains("hunter2"), "secrets are not printed");
    let shown: toml::Value = toml::from_str(&out).expect("the output is TOML");
    assert_eq!(shown["horizon_days"].as_integer(), Some(14), "flag beats environment and file");
    assert_eq!(shown["seed"].as_integer(), Some(6), "environment beats file");
    assert_eq!(shown["input"].as_str(), Some("from-env/in"), "environment beats file");
    assert_eq!(shown["output"].as_str(), Some("from-file/out"), "file beats defaults");
    let shown = normalise(&format!("$ {line}\n{out}"), &tmp);
    insta::assert_snapshot!("show_config_run", shown);

    // train: the file by RETAIN_CONFIG; RETAIN_HORIZON_DAYS beats the file, --seed beats it.
    let mut cmd = retain();
    cmd.args(["train", "--show-config", "--seed", "9"]).env("RETAIN_CONFIG", &cfg).env("RETAIN_HORIZON_DAYS", "28");
    let line = command_line(&cmd);
    let (c, out, err) = code(&mut cmd);
    assert_eq!(c, 0, "{err}");
    assert!(!out.contains("hunter2"), "secrets are not printed");
    let shown = normalise(&format!("$ {line}\n{out}"), &tmp);
    insta::assert_snapshot!("show_config_train", shown);
}

/// `backfill` takes a date range, not a snapshot: `--show-config` prints its settings and
/// builds nothing; the single-date flags are refused rather than silently ignored.
#[test]
fn backfill_shows_its_config_and_refuses_single_date_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let range = ["backfill", "--from", "2026-11-19", "--to", "2026-11-20", "--input"];
    let (c, shown, err) = code(retain().args(range).arg(sample_data()).arg("--output").arg(&out).arg("--show-config"));
    assert_eq!(c, 0, "{err}");
    let shown: toml::Value = toml::from_str(&shown).expect("the output is TOML");
    assert_eq!(shown["output"].as_str(), Some(out.to_str().unwrap()));
    assert!(!out.exists(), "--show-config builds nothing");
    for flag in [&["--as-of", SAMPLE_AS_OF][..], &["--retrain"]] {
        let (c, _, err) = code(retain().args(range).arg(sample_data()).arg("--output").arg(&out).args(flag));
        assert_eq!(c, 2, "{flag:?} is not a backfill flag: {err}");
        assert!(err.contains(flag[0]), "names the flag: {err}");
        assert!(!out.exists(), "nothing built");
    }
}

#[test]
fn missing_input_tables_exit_65_and_write_nothing() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (c, text) = failure(
        retain()
            .args(["run", "--as-of", SAMPLE_AS_OF, "--input"])
            .arg(input.path())
            .arg("--output")
            .arg(out.path().join("o")),
        &[(input.path(), "[IN]"), (out.path(), "[OUT]")],
    );
    assert_eq!(c, 65, "{text}");
    insta::assert_snapshot!("exit_65_missing_input_table", text);
    assert!(no_committed_outputs(&out.path().join("o")));
}

/// A copy of the sample world with one partition of `table` rewritten by `change`; returns
/// the partition's path relative to the root.
fn sample_with_one_partition_changed(
    input: &Path,
    table: &str,
    change: impl FnOnce(polars::prelude::DataFrame) -> polars::prelude::DataFrame,
) -> String {
    copy_dir(&sample_data(), input);
    let store = open(input);
    let victim =
        store.list_files(table).unwrap().into_iter().map(|f| f.rel).find(|r| r.contains("dt=2026-11-1")).unwrap();
    let mut df = change(store.read_parquet(&victim).unwrap());
    store.write_bytes(&victim, retain::storage::parquet_bytes(&mut df).unwrap().into()).unwrap();
    victim
}

fn run_on(input: &Path, out: &Path) -> (i32, String) {
    failure(
        retain()
            .args(["run", "--config"])
            .arg(repo().join("pipelines/sample.toml"))
            .args(["--as-of", SAMPLE_AS_OF, "--input"])
            .arg(input)
            .arg("--output")
            .arg(out),
        &[(input, "[IN]"), (out, "[OUT]")],
    )
}

#[test]
fn a_file_missing_a_column_is_named_and_stops_the_run_before_any_output() {
    let input = tempfile::tempdir().unwrap();
    // One billing partition without its `plan` column.
    let victim = sample_with_one_partition_changed(input.path(), "billing", |df| df.drop("plan").unwrap());
    let out = tempfile::tempdir().unwrap();
    let (c, text) = run_on(input.path(), out.path());
    assert_eq!(c, 65, "{text}");
    insta::assert_snapshot!("exit_65_missing_column", text);
    assert!(no_committed_outputs(out.path()));

    let (c, report, _) = code(retain().arg("validate").arg("--input").arg(input.path()));
    assert_eq!(c, 65);
    assert!(report.contains("table `billing`") && report.contains(&victim) && report.contains("`plan`"), "{report}");
}

#[test]
fn a_column_of_the_wrong_type_is_named_and_stops_the_run_before_any_output() {
    let input = tempfile::tempdir().unwrap();
    // One billing partition whose `amount` was exported as text.
    sample_with_one_partition_changed(input.path(), "billing", |mut df| {
        let amount = df.column("amount").unwrap().cast(&polars::prelude::DataType::String).unwrap();
        df.replace("amount", amount).unwrap();
        df
    });
    let out = tempfile::tempdir().unwrap();
    let (c, text) = run_on(input.path(), out.path());
    assert_eq!(c, 65, "{text}");
    insta::assert_snapshot!("exit_65_wrong_column_type", text);
    assert!(no_committed_outputs(out.path()));
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
    let (c, text) = failure(
        retain().args(["score", "--as-of", SAMPLE_AS_OF, "--input"]).arg(sample_data()).arg("--output").arg(out.path()),
        &[(out.path(), "[OUT]")],
    );
    assert_eq!(c, 65, "{text}");
    insta::assert_snapshot!("exit_65_score_without_a_model", text);
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
    let (c, text) = failure(
        retain()
            .args(["run", "--as-of", SAMPLE_AS_OF, "--input", "s3://bucket/in", "--config"])
            .arg(&cfg)
            .arg("--output")
            .arg(out.path().join("o")),
        &[(out.path(), "[TMP]")],
    );
    assert_eq!(c, 75, "{text}");
    let text = mask_elapsed(&text.replace(&format!(":{port}"), ":[PORT]"));
    insta::assert_snapshot!("exit_75_unreachable_storage", text);
}

/// A copy of the sample world with the first file of `table` under a folder containing
/// `within` rewritten by `change`; returns the file's path relative to the root.
fn sample_with_file_changed(
    input: &Path,
    table: &str,
    within: &str,
    change: impl FnOnce(polars::prelude::DataFrame) -> polars::prelude::DataFrame,
) -> String {
    copy_dir(&sample_data(), input);
    let store = open(input);
    let victim = store.list_files(table).unwrap().into_iter().map(|f| f.rel).find(|r| r.contains(within)).unwrap();
    let mut df = change(store.read_parquet(&victim).unwrap());
    store.write_bytes(&victim, retain::storage::parquet_bytes(&mut df).unwrap().into()).unwrap();
    victim
}

/// A copy of the sample world with one partition file of `table` replaced by `bytes`;
/// returns the file's path relative to the root.
fn sample_with_file_overwritten(input: &Path, table: &str, bytes: &[u8]) -> String {
    let victim = sample_with_file_changed(input, table, "dt=2026-11-1", |df| df);
    std::fs::write(input.join(&victim), bytes).unwrap();
    victim
}

/// Set row `row` of column `name` to `value` (a one-row frame's column of the same name).
fn with_value(
    mut df: polars::prelude::DataFrame,
    name: &str,
    row: usize,
    value: polars::prelude::Column,
) -> polars::prelude::DataFrame {
    let old = df.column(name).unwrap().clone();
    let head = old.slice(0, row);
    let tail = old.slice(row as i64 + 1, old.len());
    let mut new = head;
    new.append(&value.cast(old.dtype()).unwrap_or(value)).unwrap();
    new.append(&tail).unwrap();
    df.replace(name, new).unwrap();
    df
}

#[test]
fn inputs_that_break_the_contract_stop_validate_and_every_command_with_65_and_write_nothing() {
    use polars::prelude::*;
    type Setup = Box<dyn Fn(&Path) -> String>;
    let cases: Vec<(&str, Setup, Vec<&str>)> = vec![
        (
            "an event type spelled another way",
            Box::new(|p| {
                sample_with_file_changed(p, "billing", "dt=2026-11-1", |df| {
                    df.lazy()
                        .with_column(
                            when(col("event_type").eq(lit("renew")))
                                .then(lit("Renew"))
                                .otherwise(col("event_type"))
                                .alias("event_type"),
                        )
                        .collect()
                        .unwrap()
                })
            }),
            vec!["`event_type`", "outside", "Renew"],
        ),
        (
            "a null user id in billing",
            Box::new(|p| {
                sample_with_file_changed(p, "billing", "dt=2026-11-1", |df| {
                    with_value(df, "user_id", 2, Column::new("user_id".into(), [None::<&str>]))
                })
            }),
            vec!["`user_id`", "null value(s) in a required column", "row 2"],
        ),
        (
            "an hour of 25",
            Box::new(|p| {
                sample_with_file_changed(p, "activity", "dt=2026-11-1", |df| {
                    with_value(df, "peak_hour", 4, Column::new("peak_hour".into(), [25i8]))
                })
            }),
            vec!["`peak_hour`", "0..=23", "row 4: 25"],
        ),
        (
            "a timezone that is not an IANA name",
            Box::new(|p| {
                sample_with_file_changed(p, "users", "users", |df| {
                    with_value(df, "timezone", 7, Column::new("timezone".into(), ["Mars/Olympus_Mons"]))
                })
            }),
            vec!["`timezone`", "IANA", "Mars/Olympus_Mons"],
        ),
        (
            "a propensity above 1",
            Box::new(|p| {
                sample_with_file_changed(p, "messages", "dt=", |df| {
                    with_value(df, "propensity", 0, Column::new("propensity".into(), [1.5f64]))
                })
            }),
            vec!["`propensity`", "(0, 1]", "1.5"],
        ),
        (
            "a stale copy of the users table",
            Box::new(|p| {
                copy_dir(&sample_data(), p);
                std::fs::create_dir_all(p.join("users/old")).unwrap();
                std::fs::copy(p.join("users/users.parquet"), p.join("users/old/users.parquet")).unwrap();
                "users/old/users.parquet".into()
            }),
            vec!["`user_id`", "must be unique"],
        ),
        (
            "a users table without rows",
            Box::new(|p| sample_with_file_changed(p, "users", "users", |df| df.head(Some(0)))),
            vec!["table `users`", "no rows"],
        ),
        ("an empty file", Box::new(|p| sample_with_file_overwritten(p, "activity", b"")), vec!["table `activity`"]),
        (
            "a Parquet file cut in half",
            Box::new(|p| {
                let victim = sample_with_file_changed(p, "activity", "dt=2026-11-1", |df| df);
                let bytes = std::fs::read(p.join(&victim)).unwrap();
                std::fs::write(p.join(&victim), &bytes[..bytes.len() / 2]).unwrap();
                victim
            }),
            vec!["table `activity`"],
        ),
        (
            "a Parquet file corrupted in the middle (its footer intact)",
            Box::new(|p| {
                let victim = sample_with_file_changed(p, "billing", "dt=2026-11-1", |df| df);
                let mut bytes = std::fs::read(p.join(&victim)).unwrap();
                let middle = bytes.len() / 3;
                bytes[middle..middle + 64].fill(0xA5);
                std::fs::write(p.join(&victim), &bytes).unwrap();
                victim
            }),
            vec!["table `billing`"],
        ),
        (
            "an hour of 300 in an int64 column",
            Box::new(|p| {
                sample_with_file_changed(p, "activity", "dt=2026-11-1", |df| {
                    let df = df.lazy().with_column(col("peak_hour").cast(DataType::Int64)).collect().unwrap();
                    with_value(df, "peak_hour", 3, Column::new("peak_hour".into(), [300i64]))
                })
            }),
            vec!["table `activity`", "peak_hour"],
        ),
        (
            "a file that is not Parquet",
            Box::new(|p| sample_with_file_overwritten(p, "billing", b"user_id,ts\nu1,2026-11-10\n")),
            vec!["table `billing`"],
        ),
        (
            "a partition folder that is not a date",
            Box::new(|p| {
                let victim = sample_with_file_changed(p, "messages", "dt=", |df| df);
                let name = victim.rsplit('/').next().unwrap().to_string();
                let folder = p.join("messages/dt=2026-11-31");
                std::fs::create_dir_all(&folder).unwrap();
                std::fs::copy(p.join(&victim), folder.join(&name)).unwrap();
                "dt=2026-11-31".into()
            }),
            vec!["messages"],
        ),
        (
            "a billing event redelivered with another content",
            Box::new(|p| {
                sample_with_file_changed(p, "billing", "dt=2026-11-1", |df| {
                    let again = df.head(Some(1)).lazy().with_column(lit(123.45f64).alias("amount")).collect().unwrap();
                    df.vstack(&again).unwrap()
                })
            }),
            vec!["`event_id`", "different content"],
        ),
    ];
    for (name, setup, fragments) in cases {
        let input = tempfile::tempdir().unwrap();
        let victim = setup(input.path());
        let out = tempfile::tempdir().unwrap();
        let (c, text) = run_on(input.path(), out.path());
        assert_eq!(c, 65, "{name}: run\n{text}");
        for f in fragments.iter().chain([&victim.as_str()]) {
            assert!(text.contains(f), "{name}: run names {f}:\n{text}");
        }
        assert!(no_committed_outputs(out.path()), "{name}: nothing written");
        let (c, report, _) = code(retain().arg("validate").arg("--input").arg(input.path()));
        assert_eq!(c, 65, "{name}: validate\n{report}");
        for f in fragments.iter().chain([&victim.as_str()]) {
            assert!(report.contains(f), "{name}: validate names {f}:\n{report}");
        }
    }
}

#[test]
fn a_snapshot_after_the_inputs_end_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let (c, text) = failure(
        retain()
            .args(["run", "--config"])
            .arg(repo().join("pipelines/sample.toml"))
            .args(["--as-of", "2026-12-31", "--input"])
            .arg(sample_data())
            .arg("--output")
            .arg(out.path()),
        &[(out.path(), "[OUT]")],
    );
    assert_eq!(c, 65, "{text}");
    assert!(text.contains("after the inputs end") && text.contains("dt=2026-11-20"), "{text}");
    assert!(no_committed_outputs(out.path()));
}

#[test]
fn s3_without_credentials_is_a_configuration_error_that_contacts_nothing() {
    // No keys, and the instance metadata off: nothing can sign a request, so nothing is sent
    // (the endpoint is a closed port; object_store alone would ask 169.254.169.254).
    let (c, text) = failure(
        retain()
            .args(["validate", "--input", "s3://bucket/events"])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", crate::emulators::free_port()))
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true"),
        &[],
    );
    assert_eq!(c, 78, "{text}");
    assert!(text.contains("no S3 credentials for s3://bucket/events") && !text.contains("169.254"), "{text}");
}

#[test]
fn a_snapshot_before_the_inputs_begin_is_refused() {
    for command in ["features", "run"] {
        let out = tempfile::tempdir().unwrap();
        let (c, text) = failure(
            retain()
                .args([command, "--config"])
                .arg(repo().join("pipelines/sample.toml"))
                .args(["--as-of", "2026-01-05", "--input"])
                .arg(sample_data())
                .arg("--output")
                .arg(out.path()),
            &[(out.path(), "[OUT]")],
        );
        assert_eq!(c, 65, "{command}: {text}");
        assert!(text.contains("before the inputs begin") && text.contains("dt=2026-05-25"), "{command}: {text}");
        assert!(no_committed_outputs(out.path()), "{command}");
    }
}

#[test]
fn settings_out_of_range_are_configuration_errors_before_any_work() {
    for (setting, names) in [
        ("[training.gbdt]\nlearning_rate = -1.0", "training.gbdt.learning_rate"),
        ("[training.gbdt]\nnum_leaves = 1", "training.gbdt.num_leaves"),
        ("[training.gbdt]\nbagging_fraction = 0.0", "training.gbdt.bagging_fraction"),
        ("[training]\nsnapshots = 4000000000", "training.snapshots"),
        ("[training]\ntop_reasons = 1000000", "training.top_reasons"),
        ("[interventions]\nfrequency_cap_days = 100000", "interventions.frequency_cap_days"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, setting).unwrap();
        let out = dir.path().join("out");
        let (c, text) = failure(
            retain()
                .args(["run", "--as-of", SAMPLE_AS_OF, "--config"])
                .arg(&config)
                .arg("--input")
                .arg(sample_data())
                .arg("--output")
                .arg(&out),
            &[(dir.path(), "[DIR]")],
        );
        assert_eq!(c, 78, "{setting}: {text}");
        assert!(text.contains(names), "{setting}: {text}");
        assert!(!out.exists(), "{setting}: nothing was started");
    }
}

/// `inputs.quarantine_share`: rows that break the contract are set aside instead of
/// stopping the run while they are at most that share of their table's rows: written to
/// `quarantine/snapshot=S/` with the rule and the whole row, counted in the manifest, and
/// a user set aside is read nowhere (not scored, not planned). Above the share, 65 and
/// nothing written.
#[test]
fn rows_that_break_the_contract_are_set_aside_up_to_the_quarantine_share() {
    use polars::prelude::*;
    let input = tempfile::tempdir().unwrap();
    let users = open(&sample_data()).read_parquet("users/users.parquet").unwrap();
    let id = |row: usize| users.column("user_id").unwrap().str().unwrap().get(row).unwrap().to_string();
    let (twice, on_mars) = (id(0), id(7));
    sample_with_file_changed(input.path(), "users", "users", |df| {
        let df = with_value(df, "timezone", 7, Column::new("timezone".into(), ["Mars/Olympus_Mons"]));
        let again = df.head(Some(1));
        df.vstack(&again).unwrap()
    });
    // Each change on a row of a user who is not set aside already (whose rows are not read).
    let change = |table: &str, column: &str, value: Column| {
        let store = open(input.path());
        let victim =
            store.list_files(table).unwrap().into_iter().map(|f| f.rel).find(|r| r.contains("dt=2026-11-1")).unwrap();
        let df = store.read_parquet(&victim).unwrap();
        let ids = df.column("user_id").unwrap().str().unwrap().clone();
        let row = (0..df.height()).find(|&i| ids.get(i).is_some_and(|u| u != twice && u != on_mars)).unwrap();
        let mut df = with_value(df, column, row, value);
        store.write_bytes(&victim, retain::storage::parquet_bytes(&mut df).unwrap().into()).unwrap();
    };
    change("billing", "user_id", Column::new("user_id".into(), [None::<&str>]));
    change("activity", "peak_hour", Column::new("peak_hour".into(), [25i8]));
    change("messages", "propensity", Column::new("propensity".into(), [1.5f64]));

    let config = input.path().join("quarantine.toml");
    let sample = std::fs::read_to_string(repo().join("pipelines/sample.toml")).unwrap();
    let with_share =
        |share: &str| sample.replace("late_days = 3", &format!("late_days = 3\nquarantine_share = {share}"));
    std::fs::write(&config, with_share("0.01")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = |out: &Path| {
        code(
            retain()
                .args(["run", "--as-of", SAMPLE_AS_OF, "--config"])
                .arg(&config)
                .arg("--input")
                .arg(input.path())
                .arg("--output")
                .arg(out),
        )
    };
    let (c, _, err) = run(out.path());
    assert_eq!(c, 0, "{err}");
    assert!(err.contains("set aside"), "a warning is logged: {err}");

    let quarantined = open(out.path()).read_committed("quarantine", sample_as_of()).unwrap();
    let rows: Vec<(String, String, String)> = (0..quarantined.height())
        .map(|i| {
            let text = |c: &str| quarantined.column(c).unwrap().str().unwrap().get(i).unwrap_or("").to_string();
            (text("table"), text("column"), text("value"))
        })
        .collect();
    for (table, column, value) in [
        ("users", "timezone", "Mars/Olympus_Mons"),
        ("users", "user_id", twice.as_str()),
        ("billing", "user_id", ""),
        ("activity", "peak_hour", "25"),
        ("messages", "propensity", "1.5"),
    ] {
        assert!(
            rows.iter().any(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str()) == (table, column, value)),
            "{table}.{column} = {value:?} is set aside: {rows:?}"
        );
    }
    assert_eq!(rows.iter().filter(|r| r.1 == "user_id" && r.2 == twice).count(), 2, "both rows of a repeated user");
    let whole = quarantined.column("row").unwrap().str().unwrap().get(0).unwrap().to_string();
    assert!(whole.starts_with("user_id=") && whole.contains("timezone="), "the whole row is kept: {whole}");

    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join(format!("runs/snapshot={SAMPLE_AS_OF}/run.json"))).unwrap(),
    )
    .unwrap();
    let tables = &manifest["quarantine"]["tables"];
    assert_eq!(tables["users"]["rows_set_aside"], 3, "{tables}");
    for table in ["users", "billing", "activity", "messages"] {
        let share = tables[table]["share"].as_f64().unwrap_or(1.0);
        assert!(share > 0.0 && share <= 0.01, "{table}: {tables}");
    }
    let scores = read_table(out.path(), "scores");
    let scored: Vec<String> =
        scores.column("user_id").unwrap().str().unwrap().iter().flatten().map(String::from).collect();
    assert!(!scored.contains(&twice) && !scored.contains(&on_mars), "users set aside are not scored");
    let planned = read_table(out.path(), "interventions");
    let planned: Vec<&str> = planned.column("user_id").unwrap().str().unwrap().iter().flatten().collect();
    assert!(!planned.contains(&twice.as_str()) && !planned.contains(&on_mars.as_str()), "nor planned");

    // `retain monitor` reads the night others made: it counts what it set aside, and leaves
    // the night's quarantine table as it was.
    let before = open(out.path()).committed("quarantine", sample_as_of()).unwrap();
    let (c, _, err) = code(
        retain()
            .args(["monitor", "--as-of", SAMPLE_AS_OF, "--config"])
            .arg(&config)
            .arg("--input")
            .arg(input.path())
            .arg("--output")
            .arg(out.path()),
    );
    assert_eq!(c, 0, "{err}");
    assert_eq!(open(out.path()).committed("quarantine", sample_as_of()).unwrap(), before);
    let monitor: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join(format!("runs/snapshot={SAMPLE_AS_OF}/monitor.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(monitor["quarantine"]["tables"]["users"]["rows_set_aside"], 3, "{}", monitor["quarantine"]);

    // Three of 1,801 users break the contract: more than a share of 0.001.
    std::fs::write(&config, with_share("0.001")).unwrap();
    let refused = tempfile::tempdir().unwrap();
    let (c, _, err) = run(refused.path());
    assert_eq!(c, 65, "{err}");
    assert!(err.contains("quarantine_share") && err.contains("Mars/Olympus_Mons"), "{err}");
    assert!(no_committed_outputs(refused.path()), "nothing written");
}

/// Files in physical types the contract allows but the sample does not use (an int64 hour
/// and uint32 counts next to the int8 and int32 ones, nanosecond timestamps) are read as the
/// contract's types: the features equal the sample's (Polars' streaming `len()` over such
/// a mixed scan used to panic, exit 101).
#[test]
fn files_in_other_allowed_physical_types_give_the_same_features() {
    use polars::prelude::*;
    let input = tempfile::tempdir().unwrap();
    sample_with_file_changed(input.path(), "activity", "dt=2026-11-1", |df| {
        df.lazy()
            .with_columns([col("peak_hour").cast(DataType::Int64), col("streams").cast(DataType::UInt32)])
            .collect()
            .unwrap()
    });
    let store = open(input.path());
    let billing = store.list_files("billing").unwrap().into_iter().map(|f| f.rel).find(|r| r.contains("dt=2026-11-1"));
    let billing = billing.unwrap();
    let mut df = store
        .read_parquet(&billing)
        .unwrap()
        .lazy()
        .with_column(col("ts").cast(DataType::Datetime(TimeUnit::Nanoseconds, Some(TimeZone::UTC))))
        .collect()
        .unwrap();
    store.write_bytes(&billing, retain::storage::parquet_bytes(&mut df).unwrap().into()).unwrap();
    let features = |input: &Path| {
        let out = tempfile::tempdir().unwrap();
        run_ok(
            retain().args(["features", "--as-of", SAMPLE_AS_OF, "--input"]).arg(input).arg("--output").arg(out.path()),
        );
        read_table(out.path(), "features")
    };
    assert_eq!(features(input.path()), features(&sample_data()));
}

/// Every contract column of every input table, missing from one file: `run` and `validate`
/// both stop with 65 naming the table, the file and the column, and `run` writes nothing.
/// (The columns are the sample's, which holds exactly the contract's.)
#[test]
fn every_input_column_missing_from_a_file_stops_validate_and_run_with_65() {
    let input = tempfile::tempdir().unwrap();
    copy_dir(&sample_data(), input.path());
    let store = open(input.path());
    let mut cases = 0;
    for (table, within) in
        [("users", "users"), ("activity", "dt=2026-11-1"), ("billing", "dt=2026-11-1"), ("messages", "dt=2026-11-1")]
    {
        let victim = store.list_files(table).unwrap().into_iter().map(|f| f.rel).find(|r| r.contains(within)).unwrap();
        let original = std::fs::read(input.path().join(&victim)).unwrap();
        let df = store.read_parquet(&victim).unwrap();
        for column in df.get_column_names_owned() {
            let mut without = df.drop(&column).unwrap();
            store.write_bytes(&victim, retain::storage::parquet_bytes(&mut without).unwrap().into()).unwrap();
            let out = tempfile::tempdir().unwrap();
            let (c, text) = run_on(input.path(), out.path());
            let named = |text: &str| {
                text.contains(&format!("`{table}`")) && text.contains(&format!("`{column}`")) && text.contains(&victim)
            };
            assert_eq!(c, 65, "{table}.{column} missing: run\n{text}");
            assert!(named(&text), "{table}.{column} missing: run names table, file and column:\n{text}");
            assert!(no_committed_outputs(out.path()), "{table}.{column} missing: nothing written");
            let (c, report, _) = code(retain().arg("validate").arg("--input").arg(input.path()));
            assert_eq!(c, 65, "{table}.{column} missing: validate\n{report}");
            assert!(named(&report), "{table}.{column} missing: validate names table, file and column:\n{report}");
            cases += 1;
        }
        std::fs::write(input.path().join(&victim), &original).unwrap();
    }
    assert!(cases >= 40, "every column of the four input tables: {cases}");
}
