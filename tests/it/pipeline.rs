//! `retain run` end to end on the shipped sample world: the output tables, their
//! contract columns and the invariants the business relies on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use polars::prelude::*;
use retain::contract::{GRACE, INTERVENTIONS, SCORES, Table};

use crate::util::*;

fn check_columns(df: &DataFrame, table: &Table) {
    for c in table.columns {
        let found = df.column(c.name).unwrap_or_else(|_| panic!("{}: column {} missing", table.name, c.name));
        assert_eq!(found.dtype(), &c.kind.dtype(), "{}.{} has the contract's type", table.name, c.name);
        if !c.nullable {
            assert_eq!(found.null_count(), 0, "{}.{} has no nulls", table.name, c.name);
        }
    }
}

/// Premium at the end of the sample's last day, by the contract's rule, computed here
/// independently of the library from the raw billing files.
fn premium_users_from_billing() -> BTreeSet<String> {
    let store = open(&sample_data());
    let files: Vec<String> =
        store.list_files("billing").unwrap().into_iter().map(|f| f.rel).filter(|r| r.ends_with(".parquet")).collect();
    let end = (sample_as_of() + chrono::Duration::days(1)).and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros();
    let mut latest: HashMap<String, (i64, String, String)> = HashMap::new();
    for f in files {
        let df = store.read_parquet(&f).unwrap();
        let ts =
            df.column("ts").unwrap().cast(&DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))).unwrap();
        let ts: Vec<i64> = ts.datetime().unwrap().physical().iter().map(|v| v.unwrap()).collect();
        let (users, kinds, ids) = (strings(&df, "user_id"), strings(&df, "event_type"), strings(&df, "event_id"));
        for i in 0..df.height() {
            let status =
                ["trial_start", "subscribe", "renew", "payment_recovered", "expire"].contains(&kinds[i].as_str());
            if !status || ts[i] >= end {
                continue;
            }
            let cand = (ts[i], ids[i].clone(), kinds[i].clone());
            let e = latest.entry(users[i].clone()).or_insert(cand.clone());
            if (cand.0, &cand.1) > (e.0, &e.1) {
                *e = cand;
            }
        }
    }
    latest.into_iter().filter(|(_, (_, _, k))| k != "expire").map(|(u, _)| u).collect()
}

#[test]
fn every_premium_user_is_scored_once_with_calibrated_probabilities() {
    let out = sample_run();
    let scores = read_table(out, "scores");
    check_columns(&scores, &SCORES);
    let ids = strings(&scores, "user_id");
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "one row per user");
    assert_eq!(unique, premium_users_from_billing(), "exactly the users premium at S");
    let p = floats(&scores, "churn_probability");
    assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
    let mean = p.iter().sum::<f64>() / p.len() as f64;
    assert!(mean > 0.005 && mean < 0.5, "a plausible churn rate: {mean}");
    // Deciles: 1 is the riskiest tenth.
    let d = floats(&scores, "risk_decile");
    let top: Vec<f64> = p.iter().zip(&d).filter(|(_, d)| **d == 1.0).map(|(p, _)| *p).collect();
    let bottom: Vec<f64> = p.iter().zip(&d).filter(|(_, d)| **d == 10.0).map(|(p, _)| *p).collect();
    assert!(top.iter().cloned().fold(f64::INFINITY, f64::min) >= bottom.iter().cloned().fold(0.0, f64::max));
    // Reasons are words, and the riskiest users have some.
    let reasons = scores.column("top_reasons").unwrap().as_materialized_series().clone();
    let with_reasons = (0..reasons.len())
        .filter(|&i| d[i] == 1.0 && matches!(reasons.get(i).unwrap(), AnyValue::List(r) if !r.is_empty()))
        .count();
    assert!(with_reasons * 10 >= top.len() * 9, "risky users get reasons");
}

#[test]
fn interventions_respect_opt_ins_budgets_and_the_holdout() {
    let out = sample_run();
    let iv = read_table(out, "interventions");
    check_columns(&iv, &INTERVENTIONS);
    assert!(iv.height() > 0, "the sample yields some interventions");
    let users = open(&sample_data()).read_parquet("users/users.parquet").unwrap();
    let ids = strings(&users, "user_id");
    let push: Vec<bool> = users.column("push_opt_in").unwrap().bool().unwrap().iter().map(|v| v.unwrap()).collect();
    let email: Vec<bool> = users.column("email_opt_in").unwrap().bool().unwrap().iter().map(|v| v.unwrap()).collect();
    let opt: HashMap<&str, (bool, bool)> = ids.iter().map(String::as_str).zip(push.into_iter().zip(email)).collect();
    let (uid, channel, group) = (strings(&iv, "user_id"), strings(&iv, "channel"), strings(&iv, "group"));
    let mut per_channel: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 0..iv.height() {
        let (p, e) = opt[uid[i].as_str()];
        match channel[i].as_str() {
            "push" => assert!(p, "push to {} without push opt-in", uid[i]),
            "email" => assert!(e, "email to {} without email opt-in", uid[i]),
            _ => {}
        }
        *per_channel.entry(channel[i].as_str()).or_default() += 1;
    }
    let unique: BTreeSet<&String> = uid.iter().collect();
    assert_eq!(unique.len(), uid.len(), "at most one action per user");
    for (ch, budget) in [("push", 100), ("email", 200), ("in_app", 150)] {
        assert!(per_channel.get(ch).copied().unwrap_or(0) <= budget, "{ch} within budget: {per_channel:?}");
    }
    let held = group.iter().filter(|g| *g == "holdout").count() as f64 / group.len() as f64;
    assert!((held - 0.1).abs() < 0.06, "holdout share {held} near 0.1 of {}", group.len());
    assert!(floats(&iv, "expected_uplift").iter().all(|u| *u > 0.0), "only positive expected effects");
    // Everyone chosen is a scored premium user.
    let scored: BTreeSet<String> = strings(&read_table(out, "scores"), "user_id").into_iter().collect();
    assert!(uid.iter().all(|u| scored.contains(u)));
}

/// The run report scores both learners on the later slice and values the plan and
/// risk-ranked targeting off-policy, saying how many sends rest on no logged evidence.
#[test]
fn the_interventions_report_has_qini_and_policy_values() {
    let out = sample_run();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("runs/snapshot={SAMPLE_AS_OF}/run.json"))).unwrap())
            .unwrap();
    let iv = &m["details"]["interventions"];
    for learner in ["t_learner", "dr_learner"] {
        assert!(iv["total_qini"][learner].is_f64(), "{learner} scored: {iv}");
    }
    let policies = iv["evaluation"]["policies"].as_array().unwrap();
    let names: Vec<&str> = policies.iter().map(|p| p["policy"].as_str().unwrap()).collect();
    assert_eq!(names, ["uplift", "risk_ranked"]);
    for p in policies {
        for method in ["ips", "dr"] {
            let e = &p[method];
            let (low, v, high) =
                (e["low"].as_f64().unwrap(), e["per_1000"].as_f64().unwrap(), e["high"].as_f64().unwrap());
            assert!(low <= v && v <= high, "{method} interval around its value: {e}");
        }
        assert!(p["sends_outside_support"].as_u64().unwrap() <= p["sends"].as_u64().unwrap());
    }
    assert_eq!(policies[0]["sends_outside_support"], 0, "the plan only sends where its effects were learned");
    assert_eq!(policies[0]["dr_outside_support"], 0.0, "so none of its value is extrapolated");
    assert!(policies[1]["dr_outside_support"].is_f64(), "risk-ranked's extrapolated part is reported: {iv}");
    let html =
        std::fs::read_to_string(out.join(format!("reports/snapshot={SAMPLE_AS_OF}/interventions.html"))).unwrap();
    assert!(html.contains("outside support") && html.contains("Qini"), "the human-readable summary says it too");
}

/// `--seed` is the seed of everything random: besides the holdout, it reaches LightGBM's
/// sampling in the churn models and the uplift learners and their bootstrap comparison.
#[test]
fn the_seed_reaches_every_model_fit() {
    let shared = sample_run();
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        retain()
            .args(["run", "--config"])
            .arg(repo().join("pipelines/sample.toml"))
            .args(["--as-of", SAMPLE_AS_OF, "--seed", "7", "--input"])
            .arg(sample_data())
            .arg("--output")
            .arg(dir.path()),
    );
    let json = |out: &Path, rel: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(rel)).unwrap()).unwrap()
    };
    let model = format!("models/snapshot={SAMPLE_AS_OF}");
    let seeds =
        [shared, dir.path()].map(|out| json(out, &format!("{model}/model.json"))["training"]["gbdt"]["seed"].clone());
    assert_eq!(seeds, [serde_json::json!(20261120), serde_json::json!(7)], "LightGBM's seed is the run's");
    let trees = [shared, dir.path()].map(|out| {
        let file = json(out, &format!("{model}/model.json"))["targets"][0]["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["family"] == "gbdt")
            .unwrap()["file"]
            .as_str()
            .unwrap()
            .to_string();
        std::fs::read(out.join(format!("{model}/{file}"))).unwrap()
    });
    assert_ne!(trees[0], trees[1], "another seed samples other rows and features");
    let manifest = format!("runs/snapshot={SAMPLE_AS_OF}/run.json");
    let uplift = [shared, dir.path()].map(|out| json(out, &manifest)["details"]["interventions"].clone());
    assert_ne!(uplift[0]["qini_difference_se"], uplift[1]["qini_difference_se"], "the bootstrap is the run's");
    assert_ne!(uplift[0]["arms"], uplift[1]["arms"], "the learners' fits are the run's");
}

#[test]
fn grace_recommends_for_open_dunning_episodes() {
    let out = sample_run();
    let g = read_table(out, "grace");
    check_columns(&g, &GRACE);
    assert!(g.height() > 0, "the sample has open dunning episodes");
    let days = floats(&g, "recommended_grace_days");
    assert!(days.iter().all(|d| (0.0..=30.0).contains(d)));
    let p = floats(&g, "p_recover");
    assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
    let curves = g.column("curve").unwrap().as_materialized_series().clone();
    for i in 0..curves.len() {
        let AnyValue::List(c) = curves.get(i).unwrap() else { panic!("curve is a list") };
        let c: Vec<f64> = c.f64().unwrap().iter().map(|v| v.unwrap()).collect();
        assert_eq!(c.len(), 30);
        assert!(c.windows(2).all(|w| w[1] >= w[0] - 1e-12), "a cumulative curve never falls");
    }
}

/// Two runs into one output root at once (another seed, so their tables differ) take turns
/// folder by folder: both succeed, every committed `_SUCCESS` lists parts that exist, no
/// lease is left behind, and a later command reads the root (issue #17: one run's clean-up
/// used to delete the parts the other's `_SUCCESS` listed, and a later `score` failed).
#[test]
fn two_runs_into_one_root_at_once_both_commit_whole_tables() {
    let out = tempfile::tempdir().unwrap();
    let start = |seed: &str| {
        retain()
            .args(["run", "--config"])
            .arg(repo().join("pipelines/sample.toml"))
            .args(["--as-of", SAMPLE_AS_OF, "--seed", seed, "--input"])
            .arg(sample_data())
            .arg("--output")
            .arg(out.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let runs = [start("20261120"), start("7")];
    for run in runs {
        let done = run.wait_with_output().unwrap();
        assert!(done.status.success(), "a concurrent run failed: {}", String::from_utf8_lossy(&done.stderr));
    }
    let root = open(out.path());
    let mut tables = 0;
    for file in root.list_files("").unwrap() {
        assert!(!file.rel.ends_with("/_LEASE"), "a lease was left behind: {}", file.rel);
        let Some(dir) = file.rel.strip_suffix(&format!("/{}", retain::storage::SUCCESS)) else { continue };
        let commit: retain::storage::Commit = serde_json::from_slice(&root.read_bytes(&file.rel).unwrap()).unwrap();
        for part in &commit.files {
            assert!(
                root.exists(&format!("{dir}/{}", part.name)).unwrap(),
                "{dir}/_SUCCESS lists a missing {}",
                part.name
            );
        }
        root.read_committed(&commit.table, commit.snapshot).unwrap_or_else(|e| panic!("{dir}: {e}"));
        tables += 1;
    }
    assert!(tables >= 5, "the night's tables were committed ({tables})");
    run_ok(
        retain().args(["score", "--as-of", SAMPLE_AS_OF, "--input"]).arg(sample_data()).arg("--output").arg(out.path()),
    );
}

#[test]
fn a_rerun_writes_identical_tables_and_a_manifest() {
    let first = sample_run();
    let again = tempfile::tempdir().unwrap();
    run_sample_into(again.path());
    for table in ["features", "scores", "interventions", "grace"] {
        assert_eq!(read_table(first, table), read_table(again.path(), table), "{table} is reproducible");
        let a = open(first).committed(table, sample_as_of()).unwrap().unwrap();
        let b = open(again.path()).committed(table, sample_as_of()).unwrap().unwrap();
        assert_eq!(a.files, b.files, "{table}: same part names and sizes");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join(format!("runs/snapshot={SAMPLE_AS_OF}/run.json"))).unwrap())
            .unwrap();
    assert_eq!(manifest["command"], "run");
    assert!(manifest["input"]["files"].as_u64().unwrap() > 100, "the inputs read are listed");
    assert_eq!(
        manifest["output"]["tables"]["scores"]["rows"].as_u64().unwrap() as usize,
        read_table(first, "scores").height()
    );
    // What each stage cost, for an operator and the benchmarks.
    let stages = manifest["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(names, ["read inputs", "features", "train", "score", "interventions", "grace", "monitor"]);
    let peak = manifest["peak_rss_bytes"].as_u64().unwrap();
    assert!(peak > 50 << 20 && peak < 8 << 30, "a plausible peak for the sample: {peak}");
    for s in stages {
        assert!(s["seconds"].as_f64().unwrap() > 0.0 && s["cpu_seconds"].as_f64().unwrap() >= 0.0, "{s}");
        let stage_peak = s["peak_rss_bytes"].as_u64().unwrap();
        assert!(stage_peak > 10 << 20 && stage_peak <= peak, "a stage's peak is within the run's: {s}");
    }
    assert!(manifest["cpu_seconds"].as_f64().unwrap() > 0.0);
    let churn = &manifest["details"]["model"]["targets"][0];
    assert_eq!(churn["target"], "churn");
    for candidate in churn["candidates"].as_array().unwrap() {
        assert!(candidate["validation"]["auc"].as_f64().unwrap() > 0.7, "every candidate ranks: {candidate}");
        assert_eq!(candidate["reliability"].as_array().unwrap().len(), 10, "a reliability curve");
    }
}

#[test]
fn a_later_night_reads_the_kept_activity_aggregates_and_writes_the_same_tables() {
    let manifest = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(format!("runs/snapshot={SAMPLE_AS_OF}/run.json"))).unwrap())
            .unwrap()
    };
    let uses = |dir: &Path| -> BTreeMap<String, Vec<String>> {
        serde_json::from_value(manifest(dir)["feature_store"].clone()).unwrap()
    };
    // The first night on an empty root keeps the whole populations it aggregates: tonight,
    // the training and validation snapshots, the evaluation slice of the campaign history.
    let first = sample_run();
    let cold = uses(first);
    assert!(cold[SAMPLE_AS_OF].iter().any(|u| u.ends_with("and kept them")), "{cold:?}");
    let validation = (sample_as_of() - chrono::Duration::days(30)).to_string();
    assert_eq!(cold[&validation], ["aggregated 872 users and kept them"]);
    assert!(open(first).committed("feature_store", sample_as_of()).unwrap().is_some());

    // A later run on the same root (models refitted) reads them back, and removes the
    // entries older than any snapshot it reads (here one planted before the sample began).
    let later = tempfile::tempdir().unwrap();
    copy_dir(first, later.path());
    let stale = later.path().join("feature_store/snapshot=2026-01-05");
    std::fs::create_dir_all(&stale).unwrap();
    copy_dir(&later.path().join(format!("feature_store/snapshot={validation}")), &stale);
    run_ok(
        retain()
            .args(["run", "--retrain", "--config"])
            .arg(repo().join("pipelines/sample.toml"))
            .args(["--as-of", SAMPLE_AS_OF, "--input"])
            .arg(sample_data())
            .arg("--output")
            .arg(later.path()),
    );
    let warm = uses(later.path());
    assert!(!stale.exists(), "the stale entry is gone");
    assert_eq!(warm["2026-01-05"].len(), 1);
    assert!(warm["2026-01-05"][0].starts_with("removed"), "{:?}", warm["2026-01-05"]);
    let kept: BTreeSet<&String> =
        cold.iter().filter(|(_, u)| u.iter().any(|u| u.ends_with("and kept them"))).map(|(d, _)| d).collect();
    for d in &kept {
        assert!(warm[*d].iter().all(|u| u.starts_with("reused")), "{d}: {:?}", warm[*d]);
    }

    // Without the store, the same tables.
    let off = tempfile::tempdir().unwrap();
    let config = off.path().join("sample.toml");
    let text = std::fs::read_to_string(repo().join("pipelines/sample.toml")).unwrap();
    assert!(text.contains("store = true"), "the sample's config sets the store");
    std::fs::write(&config, text.replace("store = true", "store = false")).unwrap();
    let out = off.path().join("out");
    run_ok(
        retain()
            .args(["run", "--config"])
            .arg(&config)
            .args(["--as-of", SAMPLE_AS_OF, "--input"])
            .arg(sample_data())
            .arg("--output")
            .arg(&out),
    );
    assert!(manifest(&out)["feature_store"].is_null() && !out.join("feature_store").exists());
    for table in ["features", "scores", "interventions", "grace"] {
        let table_of = |dir: &Path| read_table(dir, table);
        assert_eq!(table_of(later.path()), table_of(first), "{table}, store read back");
        assert_eq!(table_of(&out), table_of(first), "{table}, no store");
    }
}

#[test]
fn stages_run_one_at_a_time_give_the_same_tables_as_run() {
    let whole = sample_run();
    let dir = tempfile::tempdir().unwrap();
    for stage in ["features", "train", "score", "interventions", "grace", "monitor"] {
        run_ok(
            retain()
                .arg(stage)
                .arg("--config")
                .arg(repo().join("pipelines/sample.toml"))
                .args(["--as-of", SAMPLE_AS_OF, "--input"])
                .arg(sample_data())
                .arg("--output")
                .arg(dir.path()),
        );
        assert!(
            dir.path().join(format!("runs/snapshot={SAMPLE_AS_OF}/{stage}.json")).exists(),
            "{stage} wrote its manifest"
        );
    }
    for table in ["features", "scores", "interventions", "grace", "monitor"] {
        assert_eq!(read_table(whole, table), read_table(dir.path(), table), "{table}");
    }
    // The grace stage's manifest lists the listening it read: from 30 days before the
    // oldest failure of its 180-day history, beyond the 90 days the features read (here,
    // the sample's first day, 179 days before S).
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(format!("runs/snapshot={SAMPLE_AS_OF}/grace.json"))).unwrap(),
    )
    .unwrap();
    let oldest = manifest["input"]["file_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str()?.strip_prefix("activity/dt=")?.get(..10)?.parse::<chrono::NaiveDate>().ok())
        .min()
        .unwrap();
    assert_eq!(oldest, sample_as_of() - chrono::Duration::days(179), "grace read all the sample's activity");
}
