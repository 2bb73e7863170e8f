//! A night run as shards: models trained once, each shard's users scored by its own task,
//! one commit publishing the tables, and the same tables as one process writes.

use std::path::Path;

use polars::prelude::*;
use retain::shard::shard_of;

use crate::util::*;

/// `retain <command> --shard K/N` (or without a shard) with the sample config into `out`.
fn stage(command: &str, shard: Option<&str>, input: &Path, out: &Path) -> std::process::Command {
    let mut cmd = retain();
    cmd.arg(command)
        .arg("--config")
        .arg(repo().join("pipelines/sample.toml"))
        .args(["--as-of", SAMPLE_AS_OF, "--input"])
        .arg(input)
        .arg("--output")
        .arg(out);
    if let Some(shard) = shard {
        cmd.args(["--shard", shard]);
    }
    cmd
}

fn commit(out: &Path, shards: u32) -> std::process::Command {
    let mut cmd = retain();
    cmd.args(["commit", "--as-of", SAMPLE_AS_OF, "--shards", &shards.to_string(), "--output"]).arg(out);
    cmd
}

fn by_user(df: DataFrame) -> DataFrame {
    df.sort(["user_id"], SortMultipleOptions::default().with_maintain_order(true)).unwrap()
}

fn marker(out: &Path, table: &str, label: &str) -> serde_json::Value {
    let path = out.join(format!("{table}/snapshot={SAMPLE_AS_OF}/_SHARD-{label}"));
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn a_night_of_three_shards_publishes_the_tables_one_process_writes() {
    let out = tempfile::tempdir().unwrap();
    let out = out.path();
    run_ok(&mut stage("train", None, &sample_data(), out));
    for k in 0..3 {
        let shard = format!("{k}/3");
        run_ok(&mut stage("features", Some(&shard), &sample_data(), out));
        if k == 0 {
            // A shard's parts are not a table: readers see nothing until the commit.
            assert!(open(out).committed("features", sample_as_of()).unwrap().is_none());
            // Nor is a night with shards missing: the commit names them and publishes nothing.
            let failed = commit(out, 3).output().unwrap();
            assert_eq!(failed.status.code(), Some(65), "{}", String::from_utf8_lossy(&failed.stderr));
            let said = String::from_utf8_lossy(&failed.stderr);
            assert!(said.contains("features: shard 1/3") && said.contains("features: shard 2/3"), "{said}");
            assert!(open(out).committed("features", sample_as_of()).unwrap().is_none());
        }
        run_ok(&mut stage("score", Some(&shard), &sample_data(), out));
        run_ok(&mut stage("grace", Some(&shard), &sample_data(), out));
        let users = marker(out, "scores", &format!("{k}-of-3"))["rows"].as_u64().unwrap();
        assert!(users > 0, "shard {k} scored its users");
    }
    // A finished shard is not redone: its parts and marker stay as they are.
    let before = marker(out, "features", "1-of-3");
    run_ok(&mut stage("features", Some("1/3"), &sample_data(), out));
    assert_eq!(marker(out, "features", "1-of-3"), before, "a rerun of a finished shard redoes nothing");
    run_ok(stage("features", Some("1/3"), &sample_data(), out).arg("--force"));
    assert_ne!(marker(out, "features", "1-of-3")["meta"]["run_id"], before["meta"]["run_id"], "--force redoes it");

    run_ok(&mut commit(out, 3));
    let whole = sample_run();
    for table in ["features", "scores", "grace"] {
        let sharded = by_user(read_table(out, table));
        assert_eq!(sharded, by_user(read_table(whole, table)), "{table}: the shards' union is the one-process table");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("runs/snapshot={SAMPLE_AS_OF}/commit.json"))).unwrap())
            .unwrap();
    assert_eq!(manifest["shards"], 3);
    assert!(manifest["output"]["tables"]["scores"]["rows"].as_u64().unwrap() > 0);
    assert!(out.join(format!("runs/snapshot={SAMPLE_AS_OF}/score.shard-2-of-3.json")).exists());
}

/// Copy the sample world into `root/shard=K/` for K < `n`, each with only its users' rows;
/// with `wrong`, shard 0 gets everyone.
fn export_by_shard(root: &Path, n: u32, wrong: bool) {
    for k in 0..n {
        copy_filtered(&sample_data(), &root.join(format!("shard={k}")), &|id| {
            (wrong && k == 0) || shard_of(id, n) == k
        });
    }
}

fn copy_filtered(from: &Path, to: &Path, keep: &dyn Fn(&str) -> bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('_') {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_filtered(&entry.path(), &to.join(&name), keep);
        } else if name.ends_with(".parquet") {
            let df = ParquetReader::new(std::fs::File::open(entry.path()).unwrap()).finish().unwrap();
            let mask: BooleanChunked =
                df.column("user_id").unwrap().str().unwrap().iter().map(|id| keep(id.unwrap())).collect();
            let mut kept = df.filter(&mask).unwrap();
            ParquetWriter::new(std::fs::File::create(to.join(&name)).unwrap()).finish(&mut kept).unwrap();
        }
    }
}

#[test]
fn inputs_exported_one_root_per_shard_give_the_same_features_and_a_wrong_split_is_refused() {
    let exports = tempfile::tempdir().unwrap();
    export_by_shard(exports.path(), 2, false);
    let per_shard = exports.path().join("shard={shard}");
    let out = tempfile::tempdir().unwrap();
    for k in 0..2 {
        run_ok(&mut stage("features", Some(&format!("{k}/2")), &per_shard, out.path()));
    }
    run_ok(&mut commit(out.path(), 2));
    assert_eq!(by_user(read_table(out.path(), "features")), by_user(read_table(sample_run(), "features")));
    // Without a shard, a per-shard root cannot be read.
    let no_shard = stage("features", None, &per_shard, out.path()).output().unwrap();
    assert_eq!(no_shard.status.code(), Some(2), "{}", String::from_utf8_lossy(&no_shard.stderr));

    // An export that put another shard's users in shard 0's root: refused, nothing written.
    let wrong = tempfile::tempdir().unwrap();
    export_by_shard(wrong.path(), 2, true);
    let out = tempfile::tempdir().unwrap();
    let refused = stage("features", Some("0/2"), &wrong.path().join("shard={shard}"), out.path()).output().unwrap();
    assert_eq!(refused.status.code(), Some(65), "{}", String::from_utf8_lossy(&refused.stderr));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("table `users`") && said.contains("of shard 1 of 2"), "{said}");
    assert!(!out.path().join("features").exists(), "nothing written");
}

#[test]
fn the_commands_that_fit_models_refuse_a_shard_and_a_shard_plans_only_with_prices() {
    let out = tempfile::tempdir().unwrap();
    for (command, shard) in [("run", Some("0/2")), ("train", Some("0/2")), ("candidates", None)] {
        let refused = stage(command, shard, &sample_data(), out.path()).output().unwrap();
        assert_eq!(refused.status.code(), Some(2), "{command}: {}", String::from_utf8_lossy(&refused.stderr));
    }
    // A shard's plan needs the night's prices: without them, bad input, nothing written.
    let unpriced = stage("interventions", Some("0/2"), &sample_data(), out.path()).output().unwrap();
    assert_eq!(unpriced.status.code(), Some(65), "{}", String::from_utf8_lossy(&unpriced.stderr));
    assert!(String::from_utf8_lossy(&unpriced.stderr).contains("retain prices --shards 2"));
    let bad = stage("features", Some("2/2"), &sample_data(), out.path()).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    // A run id an orchestrator could not have meant (white space) is a usage error too.
    let spaced = stage("features", Some("0/2"), &sample_data(), out.path()).args(["--run-id", "night 7"]).output();
    let spaced = spaced.unwrap();
    assert_eq!(spaced.status.code(), Some(2), "{}", String::from_utf8_lossy(&spaced.stderr));
    assert!(String::from_utf8_lossy(&spaced.stderr).contains("--run-id"));
    assert!(std::fs::read_dir(out.path()).unwrap().next().is_none(), "nothing written");
}

/// The sample's configuration with budgets that bind on every channel.
fn tight_budgets(dir: &Path) -> std::path::PathBuf {
    let sample = std::fs::read_to_string(repo().join("pipelines/sample.toml")).unwrap();
    let line = "budget = { push = 100, email = 200, in_app = 150 }";
    assert!(sample.contains(line), "the sample config's budgets changed: update this test");
    let path = dir.join("tight.toml");
    std::fs::write(&path, sample.replace(line, "budget = { push = 40, email = 25, in_app = 4 }")).unwrap();
    path
}

/// The run id the orchestrator of [`plan_by_shards`] gives every command of its nights.
const NIGHT: &str = "scheduled__2026-11-21T02:30:00+00:00";

/// A night of `n` shards planned into `out` (which holds the model of S), as an
/// orchestrator runs it: per shard features, score, candidates; prices; per shard the
/// plan; commit; every command with the night's id ([`NIGHT`], in `RETAIN_RUN_ID`).
fn plan_by_shards(config: &Path, out: &Path, n: u32) {
    let run = |args: &[&str]| {
        run_ok(
            retain()
                .args(args)
                .arg("--config")
                .arg(config)
                .args(["--as-of", SAMPLE_AS_OF])
                .arg("--output")
                .arg(out)
                .env("RETAIN_RUN_ID", NIGHT),
        )
    };
    let input = sample_data();
    let input = input.to_str().unwrap();
    for k in 0..n {
        let shard = format!("{k}/{n}");
        for command in ["features", "score", "candidates"] {
            run(&[command, "--input", input, "--shard", &shard]);
        }
    }
    run(&["prices", "--shards", &n.to_string()]);
    for k in 0..n {
        run(&["interventions", "--input", input, "--shard", &format!("{k}/{n}")]);
    }
    run(&["commit", "--shards", &n.to_string()]);
}

#[test]
fn shards_plan_under_one_global_budget_and_unsubscribe_caps_nearly_as_well_as_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = tight_budgets(dir.path());
    let one = dir.path().join("one");
    run_ok(
        retain()
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(["--as-of", SAMPLE_AS_OF, "--input"])
            .arg(sample_data())
            .arg("--output")
            .arg(&one),
    );
    let exact = read_table(&one, "interventions");
    let value = |df: &DataFrame| floats(df, "expected_uplift").iter().sum::<f64>();
    let sends = |df: &DataFrame, channel: &str| strings(df, "channel").iter().filter(|c| *c == channel).count();
    assert_eq!(
        [sends(&exact, "push"), sends(&exact, "email"), sends(&exact, "in_app")],
        [40, 25, 4],
        "every budget binds"
    );
    for n in [1, 3, 7] {
        // The models of the night, trained once (here by `run`), used by every shard.
        let out = dir.path().join(format!("shards-{n}"));
        std::fs::create_dir_all(out.join("models")).unwrap();
        copy_dir(&one.join("models"), &out.join("models"));
        plan_by_shards(&config, &out, n);
        let planned = read_table(&out, "interventions");
        // The published plan is known by the night's id: the campaign a readout finds it under.
        let published = open(&out).committed("interventions", sample_as_of()).unwrap().unwrap();
        assert_eq!(published.meta["run_id"], NIGHT, "{n} shards");
        for manifest in ["prices".to_string(), "commit".to_string(), format!("interventions.shard-0-of-{n}")] {
            let m = read_json(&out, &format!("runs/snapshot={SAMPLE_AS_OF}/{manifest}.json"));
            assert_eq!(m["run_id"], NIGHT, "{manifest}");
        }
        for (channel, budget) in [("push", 40), ("email", 25), ("in_app", 4)] {
            assert!(sends(&planned, channel) <= budget, "{n} shards: {channel} over the service's budget");
        }
        assert!(
            value(&planned) >= 0.99 * value(&exact),
            "{n} shards: {} < 99% of one process's {}",
            value(&planned),
            value(&exact)
        );
        let priorities: Vec<f64> = floats(&planned, "priority");
        assert_eq!(
            priorities,
            (1..=planned.height()).map(|p| p as f64).collect::<Vec<_>>(),
            "one order over the night"
        );
        let prices: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("runs/snapshot={SAMPLE_AS_OF}/prices.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(prices["quotas"].as_array().unwrap().len(), n as usize);
        if n == 1 {
            assert_eq!(planned, exact, "one shard plans exactly as one process");
        }
    }

    // The service's unsubscribe caps, at half of what the plan without them costs on push
    // and e-mail: one process keeps them through their prices, and so does a night of
    // shards, whose merge prices them and splits them into quotas.
    let unsubscribes = |df: &DataFrame, channel: &str| -> f64 {
        let (channels, risk) = (strings(df, "channel"), floats(df, "expected_unsubscribe"));
        channels.iter().zip(risk).filter(|(c, _)| *c == channel).map(|(_, r)| r).sum()
    };
    let caps = [unsubscribes(&exact, "push") / 2.0, unsubscribes(&exact, "email") / 2.0];
    assert!(caps.iter().all(|&c| c > 0.0), "sends that risk unsubscribes: {caps:?}");
    let capped_config = dir.path().join("capped.toml");
    std::fs::write(
        &capped_config,
        format!(
            "{}\n[interventions.unsubscribe_cap]\npush = {}\nemail = {}\n",
            std::fs::read_to_string(&config).unwrap(),
            caps[0],
            caps[1]
        ),
    )
    .unwrap();
    // A merge under caps needs candidates made under them: those of the uncapped night
    // are refused, and nothing is priced.
    let o = retain()
        .args(["prices", "--shards", "3", "--config"])
        .arg(&capped_config)
        .args(["--as-of", SAMPLE_AS_OF, "--output"])
        .arg(dir.path().join("shards-3"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("made without caps"), "{}", String::from_utf8_lossy(&o.stderr));
    let one_capped = dir.path().join("one-capped");
    copy_dir(&one, &one_capped);
    run_ok(
        retain()
            .args(["interventions", "--config"])
            .arg(&capped_config)
            .args(["--as-of", SAMPLE_AS_OF, "--input"])
            .arg(sample_data())
            .arg("--output")
            .arg(&one_capped),
    );
    let exact = read_table(&one_capped, "interventions");
    for n in [1, 3] {
        let out = dir.path().join(format!("capped-shards-{n}"));
        std::fs::create_dir_all(out.join("models")).unwrap();
        copy_dir(&one.join("models"), &out.join("models"));
        plan_by_shards(&capped_config, &out, n);
        let planned = read_table(&out, "interventions");
        for (channel, cap) in [("push", caps[0]), ("email", caps[1])] {
            let kept = unsubscribes(&planned, channel);
            assert!(kept <= cap + 1e-9, "{n} shards: {kept} expected {channel} unsubscribes over the cap {cap}");
        }
        for (channel, budget) in [("push", 40), ("email", 25), ("in_app", 4)] {
            assert!(sends(&planned, channel) <= budget, "{n} shards: {channel} over the service's budget");
        }
        let prices: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("runs/snapshot={SAMPLE_AS_OF}/prices.json"))).unwrap(),
        )
        .unwrap();
        let quotas = prices["unsubscribe_quotas"].as_array().unwrap();
        assert_eq!(quotas.len(), n as usize);
        let push_quotas: f64 = quotas.iter().map(|q| q[0].as_f64().unwrap()).sum();
        assert!((push_quotas - caps[0]).abs() < 1e-9, "the quotas share out the cap: {quotas:?}");
        assert!(quotas.iter().all(|q| q[2].is_null()), "in-app is not capped: {quotas:?}");
        if n == 1 {
            assert_eq!(planned, exact, "one shard keeps the caps exactly as one process");
        }
        // The sample's hundred-odd sends fall in a few dozen cells of tied values, and each
        // shard keeps its quota of a cap with whole sends: about a send per shard and capped
        // channel is lost (5% here; at a shard's size a few hundredths of a percent, as the
        // tests of `interventions/budget/` measure).
        assert!(
            value(&planned) >= 0.9 * value(&exact),
            "{n} shards under caps: {} < 90% of one process's {}",
            value(&planned),
            value(&exact)
        );
    }
}

#[test]
fn train_learns_from_the_sample_of_users_of_smallest_hash_and_shards_score_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string(repo().join("pipelines/sample.toml")).unwrap();
    let config = dir.path().join("sampled.toml");
    std::fs::write(&config, sample.replace("[training]\n", "[training]\nsample_users = 900\n")).unwrap();
    let out = dir.path().join("out");
    let stage = |command: &str, shard: Option<&str>| {
        let mut cmd = retain();
        cmd.arg(command).arg("--config").arg(&config).args(["--as-of", SAMPLE_AS_OF, "--input"]).arg(sample_data());
        cmd.arg("--output").arg(&out);
        if let Some(shard) = shard {
            cmd.args(["--shard", shard]);
        }
        cmd
    };
    run_ok(&mut stage("train", None));
    // The sample: the 900 users of smallest xxh3_64(user_id); the decile boundaries were
    // found on its premium users.
    let users = ParquetReader::new(
        std::fs::File::open(std::fs::read_dir(sample_data().join("users")).unwrap().next().unwrap().unwrap().path())
            .unwrap(),
    )
    .finish()
    .unwrap();
    let mut hashes: Vec<(u64, String)> =
        strings(&users, "user_id").into_iter().map(|id| (xxhash_rust::xxh3::xxh3_64(id.as_bytes()), id)).collect();
    hashes.sort();
    let sampled: std::collections::BTreeSet<String> = hashes.into_iter().take(900).map(|(_, id)| id).collect();
    let premium = strings(&read_table(sample_run(), "features"), "user_id");
    let premium_sampled = premium.iter().filter(|id| sampled.contains(*id)).count();
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("models/snapshot={SAMPLE_AS_OF}/model.json"))).unwrap())
            .unwrap();
    assert_eq!(model["risk_deciles"]["population"].as_u64().unwrap() as usize, premium_sampled);
    assert!(premium_sampled < premium.len() && premium_sampled > premium.len() / 3, "{premium_sampled}");
    // Every shard scores all its users with the sample's model, in deciles of about a tenth.
    for k in 0..2 {
        run_ok(&mut stage("features", Some(&format!("{k}/2"))));
        run_ok(&mut stage("score", Some(&format!("{k}/2"))));
    }
    run_ok(retain().args(["commit", "--as-of", SAMPLE_AS_OF, "--shards", "2", "--output"]).arg(&out));
    let scores = read_table(&out, "scores");
    assert_eq!(scores.height(), premium.len(), "every premium user scored");
    let deciles = floats(&scores, "risk_decile");
    for d in 1..=10 {
        let share = deciles.iter().filter(|&&x| x == d as f64).count() as f64 / deciles.len() as f64;
        assert!((0.05..=0.15).contains(&share), "decile {d}: {share}");
    }
}
