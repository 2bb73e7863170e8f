//! `retain monitor` checked on data with known faults: a synthetic world's nights run
//! clean, then copies of its inputs with one fault each (a day with half its listening
//! rows, a country's listening halved for the last week, skips doubled on one platform),
//! each rebuilt and monitored; the performance estimate against the labels that closed
//! later; `--fail-on`; and the night's page in headless Chromium.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use polars::prelude::*;
use retain::contract::MONITOR;

use crate::util::*;

/// The world's last day: the night every check here looks at.
pub(crate) const S: &str = "2026-11-20";
/// The night whose labels close at S (H = 30): the backtest's.
pub(crate) const CLOSED: &str = "2026-10-21";

const CONFIG: &str = "horizon_days = 30\nseed = 5\n[training]\nsnapshots = 6\n[interventions]\n\
holdout_fraction = 0.1\nbudget = { push = 800, email = 1500, in_app = 1000 }\n";

/// A world of 30,000 users over 200 days (the oldest training snapshot has 100 days of
/// history, so 90-day features are whole), with nights run at S − 30, S − 1 and S (the
/// readout's tests read out the plan of S − 30 from it).
pub(crate) struct World {
    pub world: tempfile::TempDir,
    pub out: tempfile::TempDir,
    pub config: std::path::PathBuf,
}

pub(crate) fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let world = tempfile::tempdir().unwrap();
        let cfg = retain::synth::SynthConfig {
            users: 30_000,
            days: 200,
            seed: 31,
            start: "2026-05-05".parse().unwrap(),
            ..Default::default()
        };
        retain::synth::generate(&cfg, &open_for_write(world.path())).unwrap();
        let config = world.path().join("monitor.toml");
        std::fs::write(&config, CONFIG).unwrap();
        let out = tempfile::tempdir().unwrap();
        for night in [CLOSED, "2026-11-19", S] {
            run_ok(
                retain()
                    .args(["run", "--as-of", night, "--config"])
                    .arg(&config)
                    .arg("--input")
                    .arg(world.path())
                    .arg("--output")
                    .arg(out.path()),
            );
        }
        World { world, out, config }
    })
}

fn monitor_table(out: &Path) -> DataFrame {
    open(out).read_committed(MONITOR.name, S.parse().unwrap()).unwrap()
}

/// (check, subject, statistic) of every check with this status.
fn with_status(df: &DataFrame, status: &str) -> BTreeSet<(String, String, String)> {
    let (c, sub, stat, st) =
        (strings(df, "check"), strings(df, "subject"), strings(df, "statistic"), strings(df, "status"));
    (0..df.height()).filter(|&i| st[i] == status).map(|i| (c[i].clone(), sub[i].clone(), stat[i].clone())).collect()
}

/// The synth raises the price in four countries at fixed points of its timeline (between
/// the training snapshots and S in this world): the monitor must see that, and nothing else.
fn is_price_rise(alert: &(String, String, String)) -> bool {
    alert.0 == "feature_drift" && (alert.1 == "price" || alert.1 == "price_change_90")
}

#[test]
fn a_clean_night_alerts_only_on_the_worlds_price_rises_and_checks_everything() {
    let w = world();
    let df = monitor_table(w.out.path());
    for c in MONITOR.columns {
        let found = df.column(c.name).unwrap_or_else(|_| panic!("monitor: column {} missing", c.name));
        assert_eq!(found.dtype(), &c.kind.dtype(), "monitor.{} has its type", c.name);
    }
    let alerts = with_status(&df, "alert");
    let unexplained: Vec<_> = alerts.iter().filter(|a| !is_price_rise(a)).collect();
    assert!(unexplained.is_empty(), "a clean night raises no alarm: {unexplained:?}");
    assert!(
        alerts.contains(&("feature_drift".into(), "price".into(), "psi".into())),
        "the price rises since the training snapshots are seen: {alerts:?}"
    );
    let checks: BTreeSet<String> = strings(&df, "check").into_iter().collect();
    for c in [
        "rows_per_day",
        "segment_rows",
        "segment_mean",
        "null_rate",
        "enum_shares",
        "late_rows",
        "duplicates",
        "feature_drift",
        "score_drift",
        "plan_drift",
        "grace_drift",
        "estimated_performance",
        "backtest",
    ] {
        assert!(checks.contains(c), "the night has {c} checks: {checks:?}");
    }
    // Every feature is compared with the training snapshots.
    let (check, subject) = (strings(&df, "check"), strings(&df, "subject"));
    let compared: BTreeSet<&String> =
        (0..df.height()).filter(|&i| check[i] == "feature_drift").map(|i| &subject[i]).collect();
    assert_eq!(compared.len(), retain::features::FEATURES.len(), "{compared:?}");
    // The manifest lists the alerts; nothing was skipped on a night with history.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.out.path().join(format!("runs/snapshot={S}/run.json"))).unwrap())
            .unwrap();
    let report = &manifest["details"]["monitor"];
    assert_eq!(report["alert"].as_u64().unwrap() as usize, alerts.len());
    assert_eq!(report["skipped"].as_array().unwrap().len(), 0, "{}", report["skipped"]);
}

/// A copy of the world with `inject` applied to its activity, rebuilt (features and
/// scores) and monitored at S over a copy of the clean night's outputs.
fn faulted(inject: impl Fn(&Path)) -> DataFrame {
    let w = world();
    let input = tempfile::tempdir().unwrap();
    for table in ["users", "activity", "billing", "messages"] {
        std::fs::create_dir_all(input.path().join(table)).unwrap();
        copy_dir(&w.world.path().join(table), &input.path().join(table));
    }
    inject(input.path());
    let out = tempfile::tempdir().unwrap();
    copy_dir(w.out.path(), out.path());
    for command in ["features", "score", "monitor"] {
        run_ok(
            retain()
                .args([command, "--as-of", S, "--config"])
                .arg(&w.config)
                .arg("--input")
                .arg(input.path())
                .arg("--output")
                .arg(out.path()),
        );
    }
    monitor_table(out.path())
}

/// Rewrite the activity partition of `day` with `change` applied.
fn rewrite_activity(root: &Path, day: &str, change: impl Fn(LazyFrame) -> LazyFrame) {
    let dir = root.join(format!("activity/dt={day}"));
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    let mut frames = Vec::new();
    for f in &files {
        frames.push(ParquetReader::new(std::fs::File::open(f).unwrap()).finish().unwrap().lazy());
    }
    let mut df = change(concat(frames, UnionArgs::default()).unwrap()).collect().unwrap();
    for f in &files {
        std::fs::remove_file(f).unwrap();
    }
    ParquetWriter::new(std::fs::File::create(dir.join("part-0000.parquet")).unwrap()).finish(&mut df).unwrap();
}

/// The last week's days, S − 6 to S.
fn last_week() -> Vec<String> {
    let s: chrono::NaiveDate = S.parse().unwrap();
    (0..7).map(|k| (s - chrono::Duration::days(k)).to_string()).collect()
}

/// The alerts a fault adds to the clean night's, which must include `required` and all
/// satisfy `affected`.
fn assert_fault_alerts(df: &DataFrame, required: (&str, &str), affected: impl Fn(&(String, String, String)) -> bool) {
    let clean = with_status(&monitor_table(world().out.path()), "alert");
    let alerts = with_status(df, "alert");
    let new: Vec<_> = alerts.difference(&clean).collect();
    assert!(
        new.iter().any(|a| a.0 == required.0 && a.1 == required.1),
        "the fault raises {required:?}: new alerts {new:?}"
    );
    let stray: Vec<_> = new.iter().filter(|a| !affected(a)).collect();
    assert!(stray.is_empty(), "only the affected checks alert: {stray:?} (all new: {new:?})");
}

#[test]
fn a_day_with_half_its_listening_rows_alerts_that_day_only() {
    let day = last_week()[2].clone();
    let df = faulted(|root| {
        rewrite_activity(root, &day, |lf| {
            lf.with_row_index("i", None).filter((col("i") % lit(2u32)).eq(lit(0u32))).drop(cols(["i"]))
        })
    });
    let subject = format!("activity dt={day}");
    assert_fault_alerts(&df, ("rows_per_day", &subject), |a| a.0 == "rows_per_day" && a.1 == subject);
}

#[test]
fn a_country_whose_listening_halved_for_a_week_alerts_its_listening() {
    let users = open(world().world.path()).read_parquet("users/users.parquet").unwrap();
    let gb: Vec<String> = strings(&users.lazy().filter(col("country").eq(lit("GB"))).collect().unwrap(), "user_id");
    let df = faulted(|root| {
        for day in last_week() {
            let ids = Series::new("ids".into(), gb.clone());
            rewrite_activity(root, &day, |lf| {
                let of_gb = col("user_id").is_in(lit(ids.clone()).implode(false), false);
                lf.with_columns([
                    when(of_gb.clone()).then(col("ms_played") / lit(2)).otherwise(col("ms_played")).alias("ms_played"),
                    when(of_gb).then(col("streams") / lit(2)).otherwise(col("streams")).alias("streams"),
                ])
            });
        }
    });
    // The country's listening, and the listening features its users carry tonight.
    let listening = ["streams_7", "streams_30", "hours_played_30", "listening_trend_14_60"];
    assert_fault_alerts(&df, ("segment_mean", "activity.ms_played country=GB"), |a| {
        (a.0 == "segment_mean" && a.1.ends_with("country=GB"))
            || (a.0 == "feature_drift" && listening.contains(&a.1.as_str()))
    });
}

#[test]
fn skips_doubled_on_one_platform_alert_its_skips() {
    let df = faulted(|root| {
        for day in last_week() {
            rewrite_activity(root, &day, |lf| {
                lf.with_column(
                    when(col("platform").eq(lit("android")))
                        .then(col("skips") * lit(2))
                        .otherwise(col("skips"))
                        .alias("skips"),
                )
            });
        }
    });
    assert_fault_alerts(&df, ("segment_mean", "activity.skips platform=android"), |a| a.1.contains("skip"));
}

#[test]
fn the_expected_auc_of_a_night_is_within_two_points_of_the_auc_its_labels_show() {
    let w = world();
    let bt = open(w.out.path()).read_committed("monitor_backtest", S.parse().unwrap()).unwrap();
    let nights: Vec<String> = bt
        .column("night")
        .unwrap()
        .cast(&DataType::String)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect();
    assert_eq!(nights, [CLOSED], "the night whose labels closed tonight is backtested");
    let (expected, realised) = (floats(&bt, "expected_auc")[0], floats(&bt, "realised_auc")[0]);
    assert!(realised > 0.7, "the scores of {CLOSED} rank churners: AUC {realised:.3}");
    assert!((expected - realised).abs() <= 0.02, "CBPE expected AUC {expected:.4}, realised {realised:.4}");
    // The monitor of S says so too.
    let df = monitor_table(w.out.path());
    let gap = with_status(&df, "ok");
    assert!(gap.contains(&(
        "backtest".into(),
        format!("scores of {CLOSED} ({})", strings(&bt, "model")[0]),
        "auc_gap".into()
    )));
}

#[test]
fn fail_on_alert_exits_3_with_every_table_written() {
    let w = world();
    let out = tempfile::tempdir().unwrap();
    copy_dir(w.out.path(), out.path());
    // The world's price rises alert on a clean night: --fail-on alert stops the schedule,
    // --fail-on never (the default) does not.
    let monitor = |fail_on: &str| {
        retain()
            .args(["monitor", "--as-of", S, "--fail-on", fail_on, "--config"])
            .arg(&w.config)
            .arg("--input")
            .arg(w.world.path())
            .arg("--output")
            .arg(out.path())
            .output()
            .unwrap()
    };
    let failed = monitor("alert");
    assert_eq!(failed.status.code(), Some(3), "{}", String::from_utf8_lossy(&failed.stderr));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("feature_drift price"));
    assert!(out.path().join(format!("monitor/snapshot={S}/_SUCCESS")).exists());
    assert!(out.path().join(format!("runs/snapshot={S}/monitor.json")).exists());
    assert!(out.path().join(format!("reports/snapshot={S}/index.html")).exists());
    assert_eq!(monitor("never").status.code(), Some(0));
    let bad = monitor("sometimes");
    assert_eq!(bad.status.code(), Some(2), "an unknown level is a usage error");
}

#[test]
fn the_night_page_renders_alerts_drift_and_backtest_in_headless_chromium() {
    let w = world();
    let page = w.out.path().join(format!("reports/snapshot={S}/index.html"));
    let out = chromium(&page, &["--dump-dom".to_string()]);
    let dom = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Uncaught"), "no script error in the console:\n{stderr}");
    assert_eq!(dom_attribute(&dom, "data-script-errors"), "0");
    let count = |name: &str| -> usize { dom_attribute(&dom, name).parse().unwrap() };
    let alerts = with_status(&monitor_table(w.out.path()), "alert").len();
    // Each alert shows twice: first among the alerts, then in the table of every check.
    assert_eq!(count("data-alerts"), 2 * alerts, "the alerts are listed");
    assert!(count("data-drift-plots") >= 1, "the drifted features' small multiples are laid out");
    assert_eq!(count("data-backtest-plots"), 1, "the backtest is drawn");
    for report in ["models.html", "interventions.html", "grace.html"] {
        assert!(dom.contains(&format!("href=\"{report}\"")), "the page links {report}");
    }
    let alerts_at = dom.find("Alerts and warnings").unwrap();
    assert!(alerts_at < dom.find("Backtest").unwrap() && alerts_at < dom.find("Every check").unwrap());
    // And a screenshot: the page paints.
    let shot = tempfile::tempdir().unwrap();
    let png = shot.path().join("index.png");
    chromium(&page, &[format!("--screenshot={}", png.display()), "--window-size=1200,2400".to_string()]);
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000, "a painted page: {} bytes", bytes.len());
}
