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
use crate::models::{Calibration, Classifier, FeatureKind, champion, cores};

mod effects;
mod flat;

pub(crate) use effects::{UpliftRequest, uplift};
use flat::{
    binary_labels, check_same_columns, feature_specs, is_validation_row, numbers, read_flat, write_column, write_frame,
};

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
