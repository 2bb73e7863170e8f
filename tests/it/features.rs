//! Point-in-time correctness of the features: a snapshot's features depend only on rows
//! up to the end of its day.

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
}
