//! `make bench-models`: the churn models of `retain train` against Python LightGBM and
//! scikit-learn (benches/models_peer.py), on the same rows and the same split.
//!
//!     models WORLD AS_OF OUTDIR [--reuse-rows]
//!
//! Builds the labelled snapshots exactly as `retain train --as-of AS_OF` does (default
//! configuration: `train::training_data`), writes the training and validation rows to
//! OUTDIR/{train,valid}.parquet (plus OUTDIR/features.json, the feature names and kinds)
//! for the peer, then fits the churn target's two families alone, each timed on its own
//! with every core: LightGBM (native encoding, categorical splits, early stopping on the
//! validation rows) and the L2 logistic regression (standardised encoding). Prints one
//! JSON line per model on stdout; progress goes to stderr.
//!
//! `fit_seconds` is the model fit only (for LightGBM: building its binned datasets from
//! the encoded matrix, then boosting with early stopping); `encode_seconds` is fitting
//! the encoder and encoding both sets; reading and building the rows are not timed.
//! `fit_cpu_seconds` is the process's CPU time (all threads) during the fit, a figure
//! that other work on the machine disturbs less than the wall time.
//! `--reuse-rows` reads the rows an earlier run wrote to OUTDIR instead of rebuilding them
//! (building them takes minutes at 1M users), to repeat the fits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use polars::prelude::*;
use serde_json::json;

use retain::config::{Settings, StageOptions, StageSettings};
use retain::features::{FEATURES, specs};
use retain::models::encoder::{Encoder, Mode};
use retain::models::gbdt::GbdtModel;
use retain::models::logistic::LogisticModel;
use retain::models::metrics::auc;
use retain::models::{Classifier, FeatureKind, Target, cores};
use retain::run::Context;
use retain::train;

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn labels(df: &DataFrame, target: Target) -> Res<Vec<i32>> {
    let s = df.column(target.label())?.cast(&DataType::Int32)?;
    Ok(s.i32()?.into_no_null_iter().collect())
}

/// The rows as the models see them: ids, the features, and the churn label.
fn project(df: &DataFrame) -> Res<DataFrame> {
    let mut keep: Vec<&str> = vec!["user_id", "snapshot_date"];
    keep.extend(FEATURES.iter().map(|f| f.name));
    keep.push(Target::Churn.label());
    Ok(df.select(keep)?)
}

fn write_parquet(df: &DataFrame, path: &Path) -> Res<()> {
    let mut out = df.clone();
    let file = std::fs::File::create(path)?;
    ParquetWriter::new(file).with_compression(ParquetCompression::Zstd(None)).finish(&mut out)?;
    Ok(())
}

/// CPU time of this process so far (user + system, every thread), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime), counted from the state (field 3), in
    // clock ticks of 1/100 s on Linux.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Res<()> {
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        // As in `retain`'s main: LightGBM's OpenMP threads must wait passively.
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("OMP_WAIT_POLICY", "passive") };
    }
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let reuse = args.iter().any(|a| a == "--reuse-rows");
    args.retain(|a| a != "--reuse-rows");
    let [world, as_of, outdir] = args.as_slice() else {
        eprintln!("usage: models WORLD AS_OF OUTDIR [--reuse-rows]");
        std::process::exit(2);
    };
    let as_of: NaiveDate = as_of.parse()?;
    let outdir = PathBuf::from(outdir);
    std::fs::create_dir_all(&outdir)?;
    let threads = cores();

    // The labelled rows, exactly as `retain train` builds them.
    let settings = Settings::default();
    let (train_df, valid_df) = if reuse {
        let read = |name: &str| -> Res<DataFrame> {
            Ok(ParquetReader::new(std::fs::File::open(outdir.join(name))?).finish()?)
        };
        let (t, v) = (read("train.parquet")?, read("valid.parquet")?);
        eprintln!(
            "bench: reusing {} training and {} validation rows from {}",
            t.height(),
            v.height(),
            outdir.display()
        );
        (t, v)
    } else {
        let started = Instant::now();
        let mut roots = settings.clone();
        roots.input = Some(world.clone());
        roots.output = Some(outdir.join("out").to_string_lossy().into_owned());
        let mut ctx =
            Context::open(StageSettings::new(roots, as_of, StageOptions { retrain: true, ..Default::default() })?, 1)?;
        let inputs = ctx.load_inputs(retain::run::Reads { history: true, grace: false, sample: false })?;
        let data = train::training_data(&inputs, as_of, &ctx.stage.train)?;
        drop(inputs);
        eprintln!(
            "bench: {} training rows (snapshots {:?}), {} validation rows ({}), built in {:.1} s",
            data.train.height(),
            data.trained_on,
            data.valid.height(),
            data.validated_on,
            started.elapsed().as_secs_f64()
        );
        let (t, v) = (project(&data.train)?, project(&data.valid)?);
        write_parquet(&t, &outdir.join("train.parquet"))?;
        write_parquet(&v, &outdir.join("valid.parquet"))?;
        (t, v)
    };
    let kinds: Vec<_> = FEATURES
        .iter()
        .map(|f| {
            let kind = if f.kind == FeatureKind::Categorical { "categorical" } else { "numeric" };
            json!({"name": f.name, "kind": kind})
        })
        .collect();
    let t = &settings.training;
    let meta = json!({
        "features": kinds,
        "label": Target::Churn.label(),
        "gbdt": t.gbdt,
        "l2": t.l2,
        "max_iterations": t.max_iterations,
        "threads": threads,
    });
    std::fs::write(outdir.join("features.json"), serde_json::to_vec_pretty(&meta)?)?;

    let y = labels(&train_df, Target::Churn)?;
    let yv = labels(&valid_df, Target::Churn)?;
    let rows = train_df.height();

    // LightGBM: native encoding, categorical splits, early stopping on validation.
    let t0 = Instant::now();
    let enc = Encoder::fit(&train_df, Mode::Native, &specs())?;
    let (x, xv) = (enc.transform(&train_df)?, enc.transform(&valid_df)?);
    let encode = t0.elapsed().as_secs_f64();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let gbdt = GbdtModel::fit(&x, &y, &xv, &yv, &enc.categorical_columns(), &t.gbdt, threads)?;
    let (fit, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    let p = gbdt.clone().with_threads(threads).predict(&xv);
    println!(
        "{}",
        json!({
            "program": "retain", "model": "lightgbm", "fit_seconds": fit, "fit_cpu_seconds": cpu,
            "encode_seconds": encode,
            "auc": auc(&p, &yv), "rows": rows, "valid_rows": yv.len(), "features": x.ncols(),
            "best_iteration": gbdt.best_iteration, "threads": threads,
        })
    );
    drop((x, xv, p));

    // Logistic regression: standardised encoding, the default l2 and iteration cap.
    let t0 = Instant::now();
    let enc = Encoder::fit(&train_df, Mode::Standardized, &specs())?;
    let (x, xv) = (enc.transform(&train_df)?, enc.transform(&valid_df)?);
    let encode = t0.elapsed().as_secs_f64();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let lr = LogisticModel::fit(&x, &y, t.l2, t.max_iterations)?;
    let (fit, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    let p = lr.predict(&xv);
    println!(
        "{}",
        json!({
            "program": "retain", "model": "logistic", "fit_seconds": fit, "fit_cpu_seconds": cpu,
            "encode_seconds": encode,
            "auc": auc(&p, &yv), "rows": rows, "valid_rows": yv.len(), "features": x.ncols(),
            "best_iteration": null, "threads": rayon::current_num_threads(), "l2": t.l2, "max_iterations": t.max_iterations,
        })
    );
    Ok(())
}
