//! The model artifact: native formats, schema checks, reuse, and flat-table training.

use std::path::Path;

use polars::prelude::*;

use crate::util::*;

fn manifest(dir: &Path, command: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("runs/snapshot={SAMPLE_AS_OF}/{command}.json"))).unwrap())
        .unwrap()
}

fn stage(stage: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = retain();
    cmd.arg(stage).arg("--config").arg(repo().join("pipelines/sample.toml")).args(["--as-of", SAMPLE_AS_OF, "--input"]);
    cmd.arg(sample_data()).arg("--output").arg(out).args(extra);
    cmd.output().unwrap()
}

#[test]
fn the_artifact_holds_every_model_in_its_native_format_with_a_champion_per_target() {
    let out = sample_run();
    let dir = out.join(format!("models/snapshot={SAMPLE_AS_OF}"));
    let model: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    for (target, t) in ["churn", "payment_failure"].iter().zip(model["targets"].as_array().unwrap()) {
        assert_eq!(t["target"], *target);
        let champion = t["champion"].as_str().unwrap();
        let losses: Vec<(String, f64)> = t["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["family"].as_str().unwrap().to_string(), c["validation"]["log_loss"].as_f64().unwrap()))
            .collect();
        let best = losses.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert_eq!(champion, best.0, "the champion has the lowest validation log loss: {losses:?}");
    }
    // Each model's file is named by its content, and the folder holds nothing else but
    // the attachments.
    let files: Vec<String> = model["targets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["candidates"].as_array().unwrap().iter().map(|c| c["file"].as_str().unwrap().to_string()))
        .collect();
    let file =
        |prefix: &str| files.iter().find(|f| f.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {files:?}"));
    let gbdt = std::fs::read(dir.join(file("churn.gbdt-"))).unwrap();
    assert_eq!(file("churn.gbdt-"), &format!("churn.gbdt-{:016x}.txt", xxhash_rust::xxh3::xxh3_64(&gbdt)));
    let gbdt = String::from_utf8(gbdt).unwrap();
    assert!(gbdt.starts_with("tree\nversion="), "LightGBM's own text format");
    assert!(gbdt.contains("end of trees"));
    assert!(file("churn.logistic-").ends_with(".json"));
    let mut present: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    present.sort();
    // What other stages learned that night is saved beside the models, named by content too.
    let mut expected = files.clone();
    expected.push("model.json".into());
    // `feature_reference`: the training snapshots' feature distributions, for the monitor.
    for stage in ["grace", "interventions", "feature_reference"] {
        let file = model["attachments"][stage].as_str().unwrap();
        let bytes = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(file, format!("{stage}-{:016x}.json", xxhash_rust::xxh3::xxh3_64(&bytes)));
        expected.push(file.to_string());
    }
    expected.sort();
    assert_eq!(present, expected);
    let report = std::fs::read_to_string(out.join(format!("reports/snapshot={SAMPLE_AS_OF}/models.html"))).unwrap();
    assert!(
        report.contains("Reliability: churn") && report.contains("Reliability: payment_failure"),
        "reliability curves"
    );
    assert_eq!(report.matches("<svg").count(), 2);
}

#[test]
fn training_again_on_unchanged_labels_reuses_the_model_unless_asked_to_refit() {
    let out = tempfile::tempdir().unwrap();
    for (extra, reused) in [(&[][..], false), (&[][..], true), (&["--retrain"][..], false)] {
        let o = stage("train", out.path(), extra);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(manifest(out.path(), "train")["details"]["model"]["reused"], reused, "train {extra:?}");
    }
}

#[test]
fn scoring_refuses_a_model_built_on_another_feature_schema() {
    let out = tempfile::tempdir().unwrap();
    for s in ["features", "train"] {
        assert!(stage(s, out.path(), &[]).status.success());
    }
    let path = out.path().join(format!("models/snapshot={SAMPLE_AS_OF}/model.json"));
    let mut model: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    model["feature_schema_hash"] = "0123456789abcdef".into();
    std::fs::write(&path, serde_json::to_vec(&model).unwrap()).unwrap();
    let o = stage("score", out.path(), &[]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("feature schema") && err.contains("retrain"), "{err}");
    assert!(!out.path().join(format!("scores/snapshot={SAMPLE_AS_OF}/_SUCCESS")).exists());
}

/// A flat table with a known signal: y = 1 mostly when `x` is large and `group` is "b".
/// `amount` is an integer for the first 1,500 rows and a decimal afterwards.
fn flat_table(n: usize, offset: usize) -> DataFrame {
    let x: Vec<f64> = (0..n).map(|i| (((i + offset) * 7919) % 1000) as f64 / 1000.0).collect();
    let group: Vec<&str> = (0..n).map(|i| ["a", "b", "c"][(i + offset) % 3]).collect();
    let amount: Vec<String> =
        (0..n).map(|i| if i < 1500 { format!("{}", i % 17) } else { format!("{}.5", i % 17) }).collect();
    let y: Vec<i32> = (0..n).map(|i| i32::from(x[i] > 0.6 && group[i] == "b" || (i * 31) % 97 == 0)).collect();
    df!("x" => x, "group" => group, "amount" => amount, "row_id" => (0..n as i64).collect::<Vec<_>>(), "converted" => y)
        .unwrap()
}

#[test]
fn table_train_predicts_each_row_of_b_in_order_from_a_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    write_csv(&mut flat_table(4000, 0), &a);
    let mut test = flat_table(1000, 4000);
    write_csv(&mut test, &b);
    let out = dir.path().join("p.parquet");
    run_ok(
        retain()
            .args(["table", "train", "--label", "converted", "--ignore", "row_id", "--train"])
            .arg(&a)
            .arg("--test")
            .arg(&b)
            .arg("--output")
            .arg(&out),
    );
    let p = ParquetReader::new(std::fs::File::open(&out).unwrap()).finish().unwrap();
    assert_eq!(p.height(), 1000, "one row per row of B");
    let prob = floats(&p, "probability");
    assert!(prob.iter().all(|v| (0.0..=1.0).contains(v)));
    let y: Vec<i32> = test.column("converted").unwrap().i32().unwrap().iter().map(|v| v.unwrap()).collect();
    let auc = retain::models::metrics::auc(&prob, &y);
    assert!(auc > 0.9, "the interaction of x and group is learned, in B's order: {auc}");
}

#[test]
fn table_train_explains_what_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    std::fs::write(&a, "x,label\n1,yes\n2,no\n").unwrap();
    let train_on = |label: &str| {
        retain()
            .args(["table", "train", "--label", label, "--train"])
            .arg(&a)
            .arg("--test")
            .arg(&a)
            .arg("--output")
            .arg(dir.path().join("p.parquet"))
            .output()
            .unwrap()
    };
    let o = train_on("label");
    assert_eq!(o.status.code(), Some(2), "a text label needs --positive");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--positive"));
    let o = train_on("nope");
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`nope`"));
}

/// On a synthetic world whose generator knows every user's true churn probability, the
/// champion ranks nearly as well as the truth does on the same users and labels (the truth
/// also knows traits no table shows), not better (that would be a leak), and its
/// calibrated probabilities match the observed rates.
#[test]
fn the_champion_comes_close_to_the_true_probabilities() {
    use chrono::Duration;
    use retain::inputs::{Inputs, Lookback};
    // Large enough that the comparison is not noise: ~3,700 premium users per snapshot.
    let world = tempfile::tempdir().unwrap();
    let cfg = retain::synth::SynthConfig {
        users: 8000,
        days: 240,
        seed: 11,
        start: "2026-03-26".parse().unwrap(),
        ..Default::default()
    };
    retain::synth::generate(&cfg, &open_for_write(world.path())).unwrap();
    // Validated on S − H = 2026-10-16, a week the generator wrote its truth for.
    let validated_on: chrono::NaiveDate = "2026-10-16".parse().unwrap();
    let as_of = validated_on + Duration::days(30);
    let out = tempfile::tempdir().unwrap();
    run_ok(
        retain()
            .args(["train", "--as-of", &as_of.to_string(), "--input"])
            .arg(world.path())
            .arg("--output")
            .arg(out.path()),
    );
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join(format!("models/snapshot={as_of}/model.json"))).unwrap())
            .unwrap();
    let churn = &model["targets"][0];
    let champion = churn["candidates"].as_array().unwrap().iter().find(|c| c["family"] == churn["champion"]).unwrap();
    let (model_auc, ece) =
        (champion["validation"]["auc"].as_f64().unwrap(), champion["validation"]["ece"].as_f64().unwrap());

    let inputs = Inputs::load(&open(world.path()), validated_on, as_of, Lookback::new(30)).unwrap();
    let labels = retain::labels::churn_labels(inputs.billing_until(as_of), validated_on, 30);
    let truth =
        ParquetReader::new(std::fs::File::open(world.path().join("_truth/churn.parquet")).unwrap()).finish().unwrap();
    let joined = labels
        .join(
            truth.lazy().filter(col("snapshot_date").cast(DataType::String).eq(lit(validated_on.to_string()))),
            [col("user_id")],
            [col("user_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .collect()
        .unwrap();
    assert!(joined.height() > 3000, "the truth covers the validation population");
    let y: Vec<i32> = joined.column("churned").unwrap().i32().unwrap().iter().map(|v| v.unwrap()).collect();
    let truth_auc = retain::models::metrics::auc(&floats(&joined, "p_churn"), &y);
    eprintln!(
        "churn AUC: champion {model_auc:.4} ({}), truth {truth_auc:.4}; champion ECE {ece:.4}",
        churn["champion"]
    );
    assert!(model_auc > truth_auc - 0.04, "champion {model_auc} vs truth {truth_auc}");
    assert!(model_auc < truth_auc + 0.02, "better than the truth would mean a leak: {model_auc} vs {truth_auc}");
    assert!(ece < 0.02, "calibration error {ece}");
}

#[test]
fn a_save_killed_before_its_manifest_leaves_the_earlier_model_whole_and_the_next_save_cleans_up() {
    let out = tempfile::tempdir().unwrap();
    copy_dir(sample_run(), out.path());
    let dir = out.path().join(format!("models/snapshot={SAMPLE_AS_OF}"));
    let before = std::fs::read(dir.join("model.json")).unwrap();
    // What a kill between the model files and `model.json` leaves: new files beside the
    // listed ones (content-named, so a listed file is never overwritten).
    std::fs::write(dir.join("churn.gbdt-00000000deadbeef.txt"), b"tree\nversion=v4\nhalf a model").unwrap();
    let scored = stage("score", out.path(), &[]);
    assert!(scored.status.success(), "{}", String::from_utf8_lossy(&scored.stderr));
    assert_eq!(read_table(out.path(), "scores"), read_table(sample_run(), "scores"), "the earlier model, whole");
    assert_eq!(std::fs::read(dir.join("model.json")).unwrap(), before);

    let trained = stage("train", out.path(), &["--retrain"]);
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    assert!(!dir.join("churn.gbdt-00000000deadbeef.txt").exists(), "what no manifest lists is removed");
}
