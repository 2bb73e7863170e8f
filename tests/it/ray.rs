//! The Ray driver on a real local Ray cluster (started here on 127.0.0.1 from the pinned
//! install in `.ray/`, `make ray`), and the orchestrator files rendered from the same list
//! of commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;

use crate::util::*;

fn ray_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("RETAIN_RAY_VENV").map(PathBuf::from).unwrap_or_else(|| repo().join(".ray/venv"));
    let bin = venv.join("bin").join(name);
    assert!(bin.exists(), "{} is missing: run `make ray` (make test does)", bin.display());
    bin
}

/// Ray's processes bound to loopback, no usage report, no dashboard.
fn ray_command(name: &str) -> Command {
    let mut cmd = Command::new(ray_bin(name));
    cmd.env("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0") // the node's address is 127.0.0.1
        .env("RAY_USAGE_STATS_ENABLED", "0");
    cmd
}

/// A one-node Ray cluster on 127.0.0.1, stopped when dropped.
struct Cluster {
    address: String,
    _temp: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Ray's socket paths must stay short: a folder directly under /tmp.
        let temp = tempfile::Builder::new().prefix("ray").tempdir_in("/tmp").unwrap();
        let out = ray_command("ray")
            .args(["start", "--head", "--node-ip-address=127.0.0.1", "--port", &port.to_string()])
            .args(["--num-cpus", "2", "--memory", &(6u64 << 30).to_string(), "--object-store-memory"])
            .arg((256u64 << 20).to_string())
            .args(["--include-dashboard=false", "--disable-usage-stats", "--temp-dir"])
            .arg(temp.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "ray start: {}", String::from_utf8_lossy(&out.stderr));
        Cluster { address: format!("127.0.0.1:{port}"), _temp: temp }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = ray_command("ray").args(["stop", "--force"]).output();
    }
}

/// The driver for a night of 3 shards on the sample, calling `retain` (or a wrapper).
fn driver(cluster: &Cluster, retain: &Path, out: &Path) -> Output {
    ray_command("python")
        .arg(repo().join("pipelines/ray/nightly.py"))
        .arg("--config")
        .arg(repo().join("pipelines/sample.toml"))
        .args(["--as-of", SAMPLE_AS_OF, "--shards", "3", "--address", &cluster.address, "--retain"])
        .arg(retain)
        .arg("--input")
        .arg(sample_data())
        .arg("--output")
        .arg(out)
        .args(["--night-cpus", "1", "--night-memory-gb", "2", "--shard-memory-gb", "1", "--retries", "2"])
        .env_remove("RETAIN_CONFIG")
        .output()
        .unwrap()
}

/// A `retain` that first runs `prelude` (bash, with the command's arguments in "$*").
fn wrapper(dir: &Path, name: &str, prelude: &str) -> PathBuf {
    let path = dir.join(name);
    let script = format!("#!/usr/bin/env bash\n{prelude}\nexec {} \"$@\"\n", env!("CARGO_BIN_EXE_retain"));
    std::fs::write(&path, script).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

fn by_user(df: DataFrame) -> DataFrame {
    df.sort(["user_id"], SortMultipleOptions::default().with_maintain_order(true)).unwrap()
}

#[test]
fn the_ray_driver_runs_a_night_of_shards_to_the_tables_of_one_process_retrying_only_temporary_failures() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");

    // A shard that fails for good: the driver stops, exit 1, naming the step and its shard.
    let broken =
        wrapper(dir.path(), "broken", r#"[[ "$*" == features*"--shard 2/3"* ]] && { echo injected >&2; exit 65; }"#);
    let failed = driver(&cluster, &broken, &out);
    assert_eq!(failed.status.code(), Some(1), "{}", String::from_utf8_lossy(&failed.stderr));
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(said.contains("failed at features-2 (shard 2 of 3)") && said.contains("exit 65"), "{said}");
    assert!(open(&out).committed("features", sample_as_of()).unwrap().is_none(), "nothing published");

    // The rerun, where one shard's scoring fails once with a temporary failure (75): it
    // is retried, and the night completes.
    let state = dir.path().join("failed-once");
    let flaky = wrapper(
        dir.path(),
        "flaky",
        &format!(r#"[[ "$*" == score*"--shard 1/3"* && ! -e {0} ]] && {{ touch {0}; exit 75; }}"#, state.display()),
    );
    let done = driver(&cluster, &flaky, &out);
    assert!(
        done.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(state.exists(), "the temporary failure happened, and was retried");

    let whole = sample_run();
    for table in ["features", "scores", "grace"] {
        assert_eq!(by_user(read_table(&out, table)), by_user(read_table(whole, table)), "{table}, row for row");
    }
    // Interventions: within the service's budgets, as good as one process's plan.
    let planned = read_table(&out, "interventions");
    let exact = read_table(whole, "interventions");
    for (channel, budget) in [("push", 100), ("email", 200), ("in_app", 150)] {
        let sends = strings(&planned, "channel").iter().filter(|c| *c == channel).count();
        assert!(sends <= budget, "{channel}: {sends} > {budget}");
    }
    let value = |df: &DataFrame| floats(df, "expected_uplift").iter().sum::<f64>();
    assert!(value(&planned) >= 0.99 * value(&exact), "{} < 99% of {}", value(&planned), value(&exact));
    // The night has one id, the driver's: the published plan carries it, for the readout.
    let commit = read_json(&out, &format!("runs/snapshot={SAMPLE_AS_OF}/commit.json"));
    let night = commit["run_id"].as_str().unwrap();
    assert!(night.starts_with(&format!("night-{SAMPLE_AS_OF}-")), "{night}");
    let plan = open(&out).committed("interventions", sample_as_of()).unwrap().unwrap();
    assert_eq!(plan.meta["run_id"], night, "the plan is known by the night's id");
    // The night ends with its checks, over the committed tables.
    assert!(open(&out).committed("monitor", sample_as_of()).unwrap().is_some(), "the night is monitored");
    assert!(out.join(format!("reports/snapshot={SAMPLE_AS_OF}/index.html")).exists());
}

#[test]
fn the_argo_and_airflow_files_run_the_commands_of_the_ray_driver() {
    // Both are rendered from pipelines/night.py, the list the driver runs: a stale render fails.
    let check = Command::new("python3").arg(repo().join("pipelines/render.py")).arg("--check").output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let argo = std::fs::read_to_string(repo().join("pipelines/argo/nightly.yaml")).unwrap();
    let airflow = std::fs::read_to_string(repo().join("pipelines/airflow/retain_nightly.py")).unwrap();
    for k in 0..4 {
        for command in ["features", "score", "grace", "candidates", "interventions"] {
            assert!(argo.contains(&format!("{command} --as-of {{{{workflow.parameters.as_of}}}}")), "{command}");
            assert!(airflow.contains(&format!("--shard {k}/4'")), "shard {k}");
        }
    }
    for night_step in ["retain train", "retain prices", "retain commit", "retain monitor"] {
        assert!(airflow.contains(night_step), "{night_step}");
    }
    // Every command carries the orchestrator's id of the night.
    assert_eq!(airflow.matches("--run-id {{ run_id }}").count(), airflow.matches("bash_command=").count());
    assert_eq!(argo.matches("--run-id {{workflow.name}}").count(), argo.matches("{name: args,").count());
}
