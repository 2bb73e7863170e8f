//! `retain table …`: the models on flat tables an analyst brings (CSV or Parquet), with
//! no knowledge of the subscriber contract.
//!
//! Every column that is not the label, the treatment or ignored is a feature: numeric
//! when its values are numbers (types are inferred over the whole file, so a column whose
//! first thousand values are integers and later ones decimals still reads as numeric),
//! categorical otherwise. Blank cells are missing values.

use std::path::Path;

use polars::prelude::*;
use tracing::info;

use crate::error::{Error, PolarsContext, Result};
use crate::models::encoder::{Encoder, Mode};
use crate::models::gbdt::{GbdtModel, GbdtParams};
use crate::models::logistic::LogisticModel;
use crate::models::metrics::evaluate;
use crate::models::uplift::{self as up, Experiment, Fitting, Learner};
use crate::models::{Calibration, Classifier, FeatureKind, champion, cores};

/// Read a CSV or Parquet file, by extension.
pub(crate) fn read_flat(path: &Path) -> Result<DataFrame> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let shown = path.display();
    if !path.exists() {
        return Err(Error::data(format!("{shown} does not exist")));
    }
    match ext.as_str() {
        "parquet" | "pq" => {
            let file = std::fs::File::open(path).map_err(|e| Error::data(format!("{shown}: {e}")))?;
            ParquetReader::new(file).finish().map_err(|e| Error::data(format!("{shown} is not readable Parquet: {e}")))
        }
        "csv" | "txt" | "tsv" => {
            let separator = if ext == "tsv" { b'\t' } else { b',' };
            CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(None)
                .map_parse_options(|o| o.with_separator(separator).with_missing_is_null(true))
                .try_into_reader_with_file_path(Some(path.to_path_buf()))
                .and_then(|r| r.finish())
                .map_err(|e| Error::data(format!("{shown} is not readable CSV: {e}")))
        }
        _ => Err(Error::Usage(format!("{shown}: expected a .csv or .parquet file"))),
    }
}

/// The feature columns of a flat table and their kinds.
pub(crate) fn feature_specs(df: &DataFrame, exclude: &[&str]) -> Vec<(String, FeatureKind)> {
    df.columns()
        .iter()
        .filter(|c| !exclude.contains(&c.name().as_str()))
        .map(|c| {
            let kind = if c.dtype().is_primitive_numeric() || c.dtype().is_bool() {
                FeatureKind::Numeric
            } else {
                FeatureKind::Categorical
            };
            (c.name().to_string(), kind)
        })
        .collect()
}

/// 0/1 labels from a column: `positive` names the positive value; without it, booleans
/// are true, numbers are 1, and anything else needs `--positive`.
pub(crate) fn binary_labels(df: &DataFrame, column: &str, positive: Option<&str>, file: &str) -> Result<Vec<i32>> {
    let s = df
        .column(column)
        .map_err(|_| Error::data(format!("{file}: no column `{column}`")))?
        .as_materialized_series()
        .clone();
    if s.null_count() > 0 {
        let row = s.is_null().iter().position(|v| v == Some(true)).unwrap_or(0);
        return Err(Error::data(format!("{file}: column `{column}` is blank at row {row}")));
    }
    let values: Vec<i32> = match positive {
        Some(p) => {
            let text = s.cast(&DataType::String).ctx(column)?;
            text.str().ctx(column)?.iter().map(|v| i32::from(v == Some(p))).collect()
        }
        None if s.dtype().is_bool() => s.bool().ctx(column)?.iter().map(|v| i32::from(v == Some(true))).collect(),
        None if s.dtype().is_primitive_numeric() => {
            let f = s.cast(&DataType::Float64).ctx(column)?;
            let f = f.f64().ctx(column)?;
            if let Some((row, v)) = f.iter().enumerate().find(|(_, v)| !matches!(v, Some(x) if *x == 0.0 || *x == 1.0))
            {
                return Err(Error::data(format!(
                    "{file}: column `{column}` is not 0/1 (row {row}: {v:?}); name the positive value with --positive"
                )));
            }
            f.iter().map(|v| i32::from(v == Some(1.0))).collect()
        }
        None => {
            return Err(Error::Usage(format!(
                "{file}: column `{column}` holds {}; name its positive value with --positive",
                s.dtype()
            )));
        }
    };
    Ok(values)
}

/// `retain table` has no `--seed`: its random draws use fixed seeds, so the same tables give
/// the same output (LightGBM's default seed for `table train`, these for `table uplift`).
const UPLIFT_SEED: u64 = 17;
const BOOTSTRAP_SEED: u64 = 29;

/// Rows kept for early stopping and calibration: a fixed fifth chosen by a hash of the
/// row number, so the split is the same on every run and unrelated to the row order.
fn is_validation_row(i: usize) -> bool {
    xxhash_rust::xxh3::xxh3_64(&(i as u64).to_le_bytes()).is_multiple_of(5)
}

/// A calibrated binary classifier fitted on a flat table: LightGBM and logistic
/// regression are both fitted, the one with the lower validation log loss is kept.
pub(crate) struct FlatModel {
    pub encoder: Encoder,
    pub model: Box<dyn Classifier>,
    pub calibration: Calibration,
    pub description: String,
}

impl FlatModel {
    pub(crate) fn fit(df: &DataFrame, y: &[i32], specs: &[(String, FeatureKind)], threads: usize) -> Result<FlatModel> {
        let valid_mask: Vec<bool> = (0..df.height()).map(is_validation_row).collect();
        let mask = BooleanChunked::from_slice("valid".into(), &valid_mask);
        let train_df = df.filter(&!&mask).ctx("splitting rows")?;
        let valid_df = df.filter(&mask).ctx("splitting rows")?;
        let split = |keep: bool| -> Vec<i32> {
            y.iter().zip(&valid_mask).filter(|(_, v)| **v == keep).map(|(y, _)| *y).collect()
        };
        let (yt, yv) = (split(false), split(true));
        if yt.iter().all(|&v| v == yt[0]) || yv.iter().all(|&v| v == yv[0]) {
            return Err(Error::data("the label has a single class: nothing to learn"));
        }
        let mut fitted: Vec<(f64, FlatModel)> = Vec::new();
        for mode in [Mode::Native, Mode::Standardized] {
            let encoder = Encoder::fit(&train_df, mode, specs)?;
            let xt = encoder.transform(&train_df)?;
            let xv = encoder.transform(&valid_df)?;
            let (model, name): (Box<dyn Classifier>, String) = match mode {
                Mode::Native => {
                    let m = GbdtModel::fit(
                        &xt,
                        &yt,
                        &xv,
                        &yv,
                        &encoder.categorical_columns(),
                        &GbdtParams::default(),
                        threads,
                    )?;
                    let name = format!("gbdt-lightgbm/{}-rounds", m.best_iteration);
                    (Box::new(m.with_threads(threads)), name)
                }
                Mode::Standardized => (Box::new(LogisticModel::fit(&xt, &yt, 1.0, 200)?), "logistic-l2".into()),
            };
            let raw = model.predict(&xv);
            let (calibration, cross) = Calibration::choose(&raw, &yv);
            let metrics = evaluate(&cross, &yv);
            info!(model = %name, auc = metrics.auc, log_loss = metrics.log_loss, "fitted on the flat table");
            let description = format!("{name}+{}", calibration.name());
            fitted.push((metrics.log_loss, FlatModel { encoder, model, calibration, description }));
        }
        let losses: Vec<f64> = fitted.iter().map(|(loss, _)| *loss).collect();
        let best = champion(&losses).expect("two candidates were fitted");
        Ok(fitted.swap_remove(best).1)
    }

    pub(crate) fn predict(&self, df: &DataFrame) -> Result<Vec<f64>> {
        let x = self.encoder.transform(df)?;
        Ok(self.model.predict(&x).into_iter().map(|p| self.calibration.apply(p)).collect())
    }
}

/// Write one output column as a Parquet file, atomically (temporary name, then rename).
pub(crate) fn write_column(path: &Path, name: &str, values: Vec<f64>) -> Result<()> {
    let df = DataFrame::new_infer_height(vec![Column::new(name.into(), values)]).ctx("assembling the output")?;
    write_frame(path, df)
}

/// Write `df` to `path` as Parquet, through a temporary file renamed into place.
fn write_frame(path: &Path, mut df: DataFrame) -> Result<()> {
    let bytes = crate::storage::parquet_bytes(&mut df).ctx("encoding the output")?;
    let tmp = path.with_extension("parquet.tmp");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::config(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(&tmp, bytes).map_err(|e| Error::config(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::config(format!("cannot write {}: {e}", path.display())))
}

/// Check that the test table has every feature column of the training table.
pub(crate) fn check_same_columns(test: &DataFrame, specs: &[(String, FeatureKind)], test_file: &str) -> Result<()> {
    for (name, _) in specs {
        if test.column(name).is_err() {
            return Err(Error::data(format!("{test_file}: column `{name}` of the training table is missing")));
        }
    }
    Ok(())
}

/// `retain table train`.
pub(crate) fn train(
    train_path: &Path,
    test_path: &Path,
    label: &str,
    positive: Option<&str>,
    ignore: &[String],
    output: &Path,
) -> Result<()> {
    let a = read_flat(train_path)?;
    let b = read_flat(test_path)?;
    let a_name = train_path.display().to_string();
    let y = binary_labels(&a, label, positive, &a_name)?;
    let mut exclude: Vec<&str> = ignore.iter().map(String::as_str).collect();
    exclude.push(label);
    let specs = feature_specs(&a, &exclude);
    check_same_columns(&b, &specs, &test_path.display().to_string())?;
    let model = FlatModel::fit(&a, &y, &specs, cores())?;
    let p = model.predict(&b)?;
    info!(model = %model.description, rows = p.len(), output = %output.display(), "probabilities written");
    write_column(output, "probability", p)
}

/// What `retain table uplift` was asked.
pub(crate) struct UpliftRequest<'a> {
    pub train: &'a Path,
    pub test: &'a Path,
    pub treatment: &'a str,
    /// The treated arms: one (the `uplift` column) or several (a column per arm and the
    /// best arm per row).
    pub treated: &'a [String],
    pub control: &'a str,
    pub outcome: &'a str,
    /// The outcome's positive value (default: true, or 1).
    pub positive: Option<&'a str>,
    pub ignore: &'a [String],
    pub output: &'a Path,
}

/// `retain table uplift`: the T- and DR-learners of the pipeline on an analyst's
/// experiment, each treated arm against the control. Rows of A in none of the arms are
/// left out. The probability of treatment is learned from the features (experiments are
/// not always 50/50, nor uniform). The learner is chosen per arm as in the pipeline (DR
/// unless T's Qini on a held-out fifth of A beats it by two bootstrap standard errors)
/// and refitted on all of A's rows of that arm and the control.
///
/// One arm writes `uplift`; several write `uplift_<arm>` for each, in the order given,
/// and `best_arm`: the arm of largest uplift, or the control where none is above zero.
pub(crate) fn uplift(req: &UpliftRequest) -> Result<()> {
    let a = read_flat(req.train)?;
    let b = read_flat(req.test)?;
    let a_name = req.train.display().to_string();
    if req.treated.is_empty() {
        return Err(Error::Usage("--treated names no arm".into()));
    }
    if let Some(arm) = req.treated.iter().find(|t| *t == req.control) {
        return Err(Error::Usage(format!("`{arm}` is both a treated arm and the control")));
    }
    for (i, arm) in req.treated.iter().enumerate() {
        if req.treated[..i].contains(arm) {
            return Err(Error::Usage(format!("--treated names `{arm}` twice")));
        }
    }
    let arms = a
        .column(req.treatment)
        .map_err(|_| Error::data(format!("{a_name}: no column `{}`", req.treatment)))?
        .cast(&DataType::String)
        .ctx(req.treatment)?;
    let arms: Vec<Option<String>> = arms.str().ctx(req.treatment)?.iter().map(|v| v.map(str::to_string)).collect();
    let mut effects = Vec::new();
    for arm in req.treated {
        let u = arm_uplift(req, &a, &b, &arms, arm, &a_name)?;
        info!(arm = arm.as_str(), rows = u.len(), "uplift of an arm");
        effects.push(u);
    }
    info!(arms = req.treated.len(), output = %req.output.display(), "uplift written");
    if let [only] = effects.as_slice() {
        return write_column(req.output, "uplift", only.clone());
    }
    let best: Vec<&str> = (0..b.height())
        .map(|i| {
            let (k, top) = effects
                .iter()
                .enumerate()
                .map(|(k, u)| (k, u[i]))
                .fold((0, f64::NEG_INFINITY), |best, (k, v)| if v > best.1 { (k, v) } else { best });
            if top > 0.0 { req.treated[k].as_str() } else { req.control }
        })
        .collect();
    let mut columns: Vec<Column> =
        req.treated.iter().zip(effects).map(|(arm, u)| Column::new(format!("uplift_{arm}").into(), u)).collect();
    columns.push(Column::new("best_arm".into(), best));
    let df = DataFrame::new_infer_height(columns).ctx("assembling the output")?;
    write_frame(req.output, df)
}

/// The uplift on each row of `b` of arm `arm` against the control, learned from A's rows
/// in either (`arms`: each row's value of the treatment column).
fn arm_uplift(
    req: &UpliftRequest,
    a: &DataFrame,
    b: &DataFrame,
    arms: &[Option<String>],
    arm: &str,
    a_name: &str,
) -> Result<Vec<f64>> {
    let side: Vec<Option<bool>> = arms
        .iter()
        .map(|v| match v.as_deref() {
            Some(v) if v == arm => Some(true),
            Some(v) if v == req.control => Some(false),
            _ => None,
        })
        .collect();
    let keep = BooleanChunked::from_iter_values("keep".into(), side.iter().map(Option::is_some));
    let a = a.filter(&keep).ctx("selecting the two arms")?;
    let treated: Vec<bool> = side.into_iter().flatten().collect();
    let (sent, held) = (treated.iter().filter(|t| **t).count(), treated.iter().filter(|t| !**t).count());
    if sent < up::MIN_ARM_ROWS || held < up::MIN_ARM_ROWS {
        return Err(Error::data(format!(
            "{a_name}: `{}` has {sent} rows equal to `{arm}` and {held} equal to `{}`; each arm needs at least {}",
            req.treatment,
            req.control,
            up::MIN_ARM_ROWS
        )));
    }
    let outcome: Vec<f64> = binary_labels(&a, req.outcome, req.positive, a_name)?.into_iter().map(f64::from).collect();
    let mut exclude: Vec<&str> = req.ignore.iter().map(String::as_str).collect();
    exclude.extend([req.treatment, req.outcome]);
    let specs = feature_specs(&a, &exclude);
    if specs.is_empty() {
        return Err(Error::data(format!("{a_name}: no feature columns besides the treatment and outcome")));
    }
    check_same_columns(b, &specs, &req.test.display().to_string())?;
    let encoder = Encoder::fit(&a, Mode::Native, &specs)?;
    let cats = encoder.categorical_columns();
    let x = encoder.transform(&a)?;
    let fitting = Fitting { threads: cores(), seed: UPLIFT_SEED };
    let propensity = up::assignment_propensity(&x, &treated, &cats, fitting)?;

    let held_out: Vec<bool> = (0..a.height()).map(is_validation_row).collect();
    let pick = |keep: bool| -> Vec<usize> { (0..a.height()).filter(|&i| held_out[i] == keep).collect() };
    let (fit_rows, check_rows) = (pick(false), pick(true));
    let subset = |idx: &[usize]| {
        (
            x.select(ndarray::Axis(0), idx),
            idx.iter().map(|&i| treated[i]).collect::<Vec<bool>>(),
            idx.iter().map(|&i| outcome[i]).collect::<Vec<f64>>(),
            idx.iter().map(|&i| propensity[i]).collect::<Vec<f64>>(),
        )
    };
    let (xf, tf, yf, pf) = subset(&fit_rows);
    let (xc, tc, yc, pc) = subset(&check_rows);
    let fit_part = Experiment { x: &xf, treated: &tf, outcome: &yf, propensity: &pf };
    // Qini counts a fall in the outcome as gain (the pipeline's outcome is churn); here a
    // rise is, so the held-out fifth is scored on 1 − outcome.
    let flipped: Vec<f64> = yc.iter().map(|y| 1.0 - y).collect();
    let check_part = Experiment { x: &xc, treated: &tc, outcome: &flipped, propensity: &pc };
    let mut benefits: Vec<Vec<f64>> = Vec::new();
    for learner in Learner::ALL {
        let m = up::fit(learner, &fit_part, &cats, fitting)?;
        let benefit = m.effect(&xc);
        let q = up::qini(&benefit, &check_part, 20);
        info!(
            arm,
            learner = learner.as_str(),
            qini = q.qini,
            auuc = q.auuc,
            "uplift learner on the held-out fifth of A"
        );
        benefits.push(benefit);
    }
    let choice = up::select_learner(&[(check_part, [benefits[0].as_slice(), benefits[1].as_slice()])], BOOTSTRAP_SEED);
    let (chosen, se) = (choice.chosen, choice.difference_se);
    let all = Experiment { x: &x, treated: &treated, outcome: &outcome, propensity: &propensity };
    let model = up::fit(chosen, &all, &cats, fitting)?;
    info!(arm, learner = chosen.as_str(), qini_difference_se = se, "uplift learner chosen");
    Ok(model.effect(&encoder.transform(b)?))
}

/// The numbers of `column`: numbers as they are, booleans as 0/1, anything else 0/1 by
/// `positive`. A blank cell is an error that names its row.
fn numbers(df: &DataFrame, column: &str, positive: Option<&str>, file: &str) -> Result<Vec<f64>> {
    let s = df
        .column(column)
        .map_err(|_| Error::data(format!("{file}: no column `{column}`")))?
        .as_materialized_series()
        .clone();
    if let Some(row) = s.is_null().iter().position(|v| v == Some(true)) {
        return Err(Error::data(format!("{file}: column `{column}` is blank at row {row}")));
    }
    match positive {
        Some(p) => {
            let text = s.cast(&DataType::String).ctx(column)?;
            Ok(text.str().ctx(column)?.iter().map(|v| f64::from(u8::from(v == Some(p)))).collect())
        }
        None if s.dtype().is_bool() || s.dtype().is_primitive_numeric() => {
            let f = s.cast(&DataType::Float64).ctx(column)?;
            Ok(f.f64().ctx(column)?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
        }
        None => Err(Error::Usage(format!(
            "{file}: column `{column}` holds {}; name its positive value (--positive / --pre-positive)",
            s.dtype()
        ))),
    }
}

/// `retain table readout`: what the arguments name.
pub(crate) struct ReadoutRequest<'a> {
    pub data: &'a Path,
    pub treatment: &'a str,
    pub control: &'a str,
    pub outcome: &'a str,
    pub positive: Option<&'a str>,
    pub pre: Option<&'a str>,
    pub pre_positive: Option<&'a str>,
    pub output: &'a Path,
}

/// The readout's fixed error rate and power (the nightly readout's defaults).
const READOUT_ALPHA: f64 = 0.05;
const READOUT_POWER: f64 = 0.8;

/// `retain table readout`: each treatment value against the control on the outcome's
/// mean (a completed experiment: fixed-horizon intervals), CUPED on `pre` when given, in
/// the treatment values' sorted order.
pub(crate) fn readout(req: &ReadoutRequest) -> Result<()> {
    let df = read_flat(req.data)?;
    let file = req.data.display().to_string();
    let arm = df
        .column(req.treatment)
        .map_err(|_| Error::data(format!("{file}: no column `{}`", req.treatment)))?
        .cast(&DataType::String)
        .ctx(req.treatment)?;
    let arm: Vec<Option<String>> = arm.str().ctx(req.treatment)?.iter().map(|v| v.map(str::to_string)).collect();
    if let Some(row) = arm.iter().position(Option::is_none) {
        return Err(Error::data(format!("{file}: column `{}` is blank at row {row}", req.treatment)));
    }
    let y = numbers(&df, req.outcome, req.positive, &file)?;
    let pre = match req.pre {
        Some(c) => numbers(&df, c, req.pre_positive, &file)?,
        None => vec![0.0; df.height()],
    };
    let mut values: Vec<&str> = arm.iter().flatten().map(String::as_str).filter(|v| *v != req.control).collect();
    values.sort_unstable();
    values.dedup();
    if !arm.iter().flatten().any(|v| v == req.control) {
        return Err(Error::data(format!("{file}: no row has `{}` = `{}` (the control)", req.treatment, req.control)));
    }
    let mut out: (Vec<&str>, Vec<i64>, Vec<i64>) = Default::default();
    let mut f: [Vec<f64>; 10] = Default::default();
    for value in &values {
        let units: Vec<crate::readout::Unit> = (0..df.height())
            .filter_map(|i| {
                let a = arm[i].as_deref()?;
                (a == *value || a == req.control).then(|| crate::readout::Unit {
                    treated: a == *value,
                    weight: 1.0,
                    y: y[i],
                    pre: pre[i],
                })
            })
            .collect();
        let Some(e) = crate::readout::estimate(&units, req.pre.is_some()) else {
            return Err(Error::data(format!("{file}: `{value}` or the control has fewer than two rows")));
        };
        let raw = crate::readout::estimate(&units, false).expect("the same rows estimate without CUPED");
        let (lo, hi) = crate::readout::interval(e.effect, e.se, READOUT_ALPHA, crate::readout::Look::Fixed);
        out.0.push(value);
        out.1.push(e.n_treatment as i64);
        out.2.push(e.n_holdout as i64);
        let row = [
            e.mean_treatment,
            e.mean_holdout,
            e.effect,
            lo,
            hi,
            crate::readout::p_value(e.effect, e.se, crate::readout::Look::Fixed),
            e.variance_reduction(),
            crate::readout::minimum_detectable_effect(e.se, READOUT_ALPHA, READOUT_POWER),
            raw.effect,
            e.se,
        ];
        for (c, v) in f.iter_mut().zip(row) {
            c.push(v);
        }
        info!(
            arm = value,
            effect = e.effect,
            ci_low = lo,
            ci_high = hi,
            variance_reduction = e.variance_reduction(),
            "read out"
        );
    }
    let table = df!(
        "arm" => out.0,
        "n_treatment" => out.1,
        "n_holdout" => out.2,
        "mean_treatment" => &f[0],
        "mean_holdout" => &f[1],
        "effect" => &f[2],
        "ci_low" => &f[3],
        "ci_high" => &f[4],
        "p_value" => &f[5],
        "variance_reduction" => &f[6],
        "mde" => &f[7],
        "effect_unadjusted" => &f[8],
        "se" => &f[9],
    )
    .ctx("the readout")?;
    write_frame(req.output, table)
}
