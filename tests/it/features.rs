//! Point-in-time correctness of the features: a snapshot's features depend only on rows
//! up to the end of its day, and a row that arrives late (in a later `dt=` partition than
//! its own date) still counts from its own time on.

use std::path::Path;

use chrono::{Duration, NaiveDate};
use polars::prelude::*;
use proptest::prelude::*;
use retain::features;
use retain::inputs::{Inputs, Lookback};

use crate::util::*;

/// Copy of the sample world as it existed at the end of day `cut`: partitions after it
/// dropped, users who signed up after it removed.
fn world_as_of(cut: NaiveDate, to: &Path) {
    let src = sample_data();
    for table in ["activity", "billing", "messages"] {
        for entry in std::fs::read_dir(src.join(table)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let day: NaiveDate = name.trim_start_matches("dt=").parse().unwrap();
            if day <= cut {
                let dest = to.join(table).join(&name);
                std::fs::create_dir_all(&dest).unwrap();
                for f in std::fs::read_dir(entry.path()).unwrap() {
                    let f = f.unwrap();
                    std::fs::copy(f.path(), dest.join(f.file_name())).unwrap();
                }
            }
        }
    }
    // A message decided on the cut day may have been opened after it: that open was not
    // known at the end of the day.
    let end_of_cut = (cut + Duration::days(1)).and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros();
    let store = open(to);
    for f in store.list_files(&format!("messages/dt={cut}")).unwrap() {
        let df = store.read_parquet(&f.rel).unwrap();
        let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
        let mut known = df
            .lazy()
            .with_column(
                when(col("opened_at").cast(DataType::Int64).lt(lit(end_of_cut)))
                    .then(col("opened_at"))
                    .otherwise(lit(NULL).cast(utc))
                    .alias("opened_at"),
            )
            .collect()
            .unwrap();
        store.write_bytes(&f.rel, retain::storage::parquet_bytes(&mut known).unwrap().into()).unwrap();
    }
    let users = open(&src).read_parquet("users/users.parquet").unwrap();
    let cut_days = (cut - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32;
    let mut kept =
        users.lazy().filter(col("signup_date").cast(DataType::Int32).lt_eq(lit(cut_days))).collect().unwrap();
    std::fs::create_dir_all(to.join("users")).unwrap();
    std::fs::write(to.join("users/users.parquet"), retain::storage::parquet_bytes(&mut kept).unwrap()).unwrap();
}

/// Features at `s` from inputs loaded up to `last` (training loads inputs up to the run's
/// snapshot and builds features for earlier ones, so `last` may be after `s`).
fn features_at(root: &Path, s: NaiveDate, last: NaiveDate) -> DataFrame {
    let inputs = Inputs::load(&open(root), s, last, Lookback::new(30)).unwrap();
    features::build(&inputs, s).unwrap()
}

/// Features at `s` from inputs loaded for `[first, last]`, reading `late_days` partitions
/// after `last` for late rows.
fn features_late(root: &Path, first: NaiveDate, last: NaiveDate, late_days: u32, s: NaiveDate) -> DataFrame {
    let inputs = Inputs::load(&open(root), first, last, Lookback { late_days, ..Lookback::new(30) }).unwrap();
    features::build(&inputs, s).unwrap()
}

/// A copy of the sample world's input tables.
fn copy_sample(to: &Path) {
    let src = sample_data();
    for table in ["users", "activity", "billing", "messages"] {
        for entry in walk(&src.join(table)) {
            let dest = to.join(entry.strip_prefix(&src).unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&entry, dest).unwrap();
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// Take the first row of `table`'s partition `day` that `pick` selects out of its file:
/// rewrite the file without it and return it (as a one-row frame with the file's schema).
fn take_row(root: &Path, table: &str, day: NaiveDate, pick: Expr) -> DataFrame {
    let store = open(root);
    let files = store.list_files(&format!("{table}/dt={day}")).unwrap();
    assert_eq!(files.len(), 1, "{table}/dt={day} has one file in the sample");
    let rel = &files[0].rel;
    let df = store.read_parquet(rel).unwrap().with_row_index("row".into(), None).unwrap();
    let row = df.clone().lazy().filter(pick).first().collect().unwrap();
    assert_eq!(row.height(), 1, "{table}/dt={day} has a row to move");
    let index = row.column("row").unwrap().idx().unwrap().get(0).unwrap();
    let mut rest = df.lazy().filter(col("row").neq(lit(index))).drop(cols(["row"])).collect().unwrap();
    store.write_bytes(rel, retain::storage::parquet_bytes(&mut rest).unwrap().into()).unwrap();
    row.drop("row").unwrap()
}

/// The row of `user` in a features table.
fn user_row(features: &DataFrame, user: &str) -> DataFrame {
    features.clone().lazy().filter(col("user_id").eq(lit(user))).collect().unwrap()
}

#[test]
fn a_late_row_counts_for_snapshots_from_its_own_time_once_its_partition_is_read() {
    // A payment failure and a day of listening on D = S − 1 that were exported a day late,
    // into the partition of S + 1, within the default three late days.
    let s: NaiveDate = "2026-11-10".parse().unwrap();
    let (day, late) = (s - Duration::days(1), s + Duration::days(1));
    let original = features_late(&sample_data(), s, s, 3, s);
    let premium: Vec<String> = strings(&original, "user_id");
    let in_population = || col("user_id").is_in(lit(Series::new("p".into(), &premium)).implode(false), false);

    let moved = tempfile::tempdir().unwrap();
    let deleted = tempfile::tempdir().unwrap();
    copy_sample(moved.path());
    copy_sample(deleted.path());
    let mut users = Vec::new();
    for (table, pick) in
        [("billing", col("event_type").eq(lit("payment_failed")).and(in_population())), ("activity", in_population())]
    {
        let mut row = take_row(moved.path(), table, day, pick.clone());
        take_row(deleted.path(), table, day, pick);
        users.push(strings(&row, "user_id")[0].clone());
        let dir = moved.path().join(format!("{table}/dt={late}"));
        assert!(dir.is_dir(), "the later partition exists in the sample");
        std::fs::write(dir.join("late-0000.parquet"), retain::storage::parquet_bytes(&mut row).unwrap()).unwrap();
    }
    let without = features_late(deleted.path(), s, s, 3, s);
    for user in &users {
        assert_ne!(user_row(&original, user), user_row(&without, user), "the moved row of {user} matters at {s}");
    }

    // Used for S when its partition is read, as if it had arrived on time.
    assert_eq!(features_late(moved.path(), s, s, 3, s), original, "late row used for {s}");
    let inputs = Inputs::load(&open(moved.path()), s, s, Lookback::new(30)).unwrap();
    assert!(inputs.files.contains(&format!("billing/dt={late}/late-0000.parquet")), "the late file is read");
    // Not when its partition is beyond late_days.
    assert_eq!(features_late(moved.path(), s, s, 0, s), without, "partition after S + late_days not read");
    // Never before its own time, though its partition is read (within late days of S − 2,
    // and when training loads [S − 2, S]).
    let before = s - Duration::days(2);
    let expected = features_late(deleted.path(), before, before, 3, before);
    assert_eq!(features_late(moved.path(), before, before, 3, before), expected, "not used at {before}");
    assert_eq!(features_late(moved.path(), before, s, 3, before), expected, "not used at {before} in a range");
    assert_eq!(features_late(moved.path(), before, s, 3, s), original, "used at {s} in a range");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn features_ignore_every_row_after_the_snapshot(days_back in 1i64..60) {
        let s = sample_as_of() - Duration::days(days_back);
        let truncated = tempfile::tempdir().unwrap();
        world_as_of(s, truncated.path());
        let full = features_at(&sample_data(), s, sample_as_of());
        let cut = features_at(truncated.path(), s, s);
        prop_assert!(full.height() > 100, "a real population at {}", s);
        prop_assert_eq!(full, cut);
    }
}

#[test]
fn backfill_builds_each_date_skips_complete_ones_and_rebuilds_identically_on_force() {
    let out = tempfile::tempdir().unwrap();
    let backfill = |extra: &[&str]| {
        run_ok(
            retain()
                .args(["backfill", "--from", "2026-11-18", "--to", "2026-11-20", "--input"])
                .arg(sample_data())
                .arg("--output")
                .arg(out.path())
                .args(extra),
        );
    };
    backfill(&[]);
    let dates: Vec<NaiveDate> = (18..=20).map(|d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap()).collect();
    let store = open(out.path());
    let commits: Vec<_> = dates.iter().map(|&d| store.committed("features", d).unwrap().expect("built")).collect();
    for (d, c) in dates.iter().zip(&commits) {
        // Each date equals the single-date command's output.
        assert_eq!(store.read_committed("features", *d).unwrap(), features_at(&sample_data(), *d, *d), "{d}");
        assert!(c.rows > 100);
    }
    let manifest = |d: &NaiveDate| std::fs::read(out.path().join(format!("runs/snapshot={d}/features.json"))).unwrap();
    let before: Vec<Vec<u8>> = dates.iter().map(manifest).collect();
    backfill(&[]);
    assert_eq!(before, dates.iter().map(manifest).collect::<Vec<_>>(), "complete dates are skipped");
    backfill(&["--force", "--jobs", "1"]);
    assert_ne!(before, dates.iter().map(manifest).collect::<Vec<_>>(), "--force rebuilds");
    for (d, c) in dates.iter().zip(&commits) {
        assert_eq!(&store.committed("features", *d).unwrap().unwrap().files, &c.files, "{d}: identical parts");
    }
    // A date whose table folder was deleted since is not complete, whatever its manifest says.
    let after: Vec<Vec<u8>> = dates.iter().map(manifest).collect();
    std::fs::remove_dir_all(out.path().join(format!("features/snapshot={}", dates[1]))).unwrap();
    backfill(&[]);
    assert_eq!(store.committed("features", dates[1]).unwrap().unwrap().files, commits[1].files, "rebuilt");
    let now: Vec<Vec<u8>> = dates.iter().map(manifest).collect();
    assert_eq!((now[0] == after[0], now[1] == after[1], now[2] == after[2]), (true, false, true), "only it");
}
