//! `retain table uplift`: each treated arm's effect on an analyst's experiment, row by row.
//!
//! Not the pipeline's learners. Those fit one arm against the control at a time with
//! small trees, and on the public GOTV experiment (four mailings, each a fifth the size of
//! the control, effects of a few points that grow with past turnout) a two-model logistic
//! regression ranked voters better on two arms of four (BENCHMARKS.md). Here the effect is
//! the mean of two learners that borrow strength in different ways:
//! - a **pooled tree model** over every arm, the arm a feature, with linear leaves
//!   ([`PooledModel`]): every arm's rows teach it what predicts the outcome, and an arm's
//!   own rows only its difference;
//! - a **logistic T-learner**: one L2 logistic regression per arm and one on the control
//!   (standardised features, one-hot categories), the effect the difference of their
//!   probabilities; few parameters, so it holds up on the smallest arm.
//!
//! Measured on held-out halves of GOTV and of the Starbucks promotion (fifteen seeds), the
//! mean ranks better than either alone on most arms, and better than the two-model
//! regression on every arm.

use std::path::Path;

use ndarray::Axis;
use polars::prelude::*;
use tracing::info;

use super::flat::{binary_labels, check_same_columns, feature_specs, read_flat, write_column, write_frame};
use crate::error::{Error, PolarsContext, Result};
use crate::models::encoder::{Encoder, Mode};
use crate::models::logistic::LogisticModel;
use crate::models::uplift::{Fitting, MIN_ARM_ROWS, PooledModel};
use crate::models::{Classifier, FeatureKind, cores};

/// `retain table` has no `--seed`: its random draws use fixed seeds, so the same tables give
/// the same output (LightGBM's default seed for `table train`, this one for `table uplift`).
const UPLIFT_SEED: u64 = 17;

/// The L2 penalty of the logistic T-learner (on the summed log-likelihood, as
/// scikit-learn's `C = 1`).
const LOGISTIC_L2: f64 = 1.0;

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

/// `retain table uplift`: each treated arm against the control, learned from A's rows of
/// the arms and the control (rows of A in none are left out), predicted for every row of
/// B: the change in the probability of the outcome's positive value.
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
    let values = a
        .column(req.treatment)
        .map_err(|_| Error::data(format!("{a_name}: no column `{}`", req.treatment)))?
        .cast(&DataType::String)
        .ctx(req.treatment)?;
    // Each row's arm: 0 the control, k the k-th treated arm; None for any other value.
    let arm_of: Vec<Option<usize>> = values
        .str()
        .ctx(req.treatment)?
        .iter()
        .map(|v| match v {
            Some(v) if v == req.control => Some(0),
            Some(v) => req.treated.iter().position(|t| t == v).map(|k| k + 1),
            None => None,
        })
        .collect();
    let mut rows = vec![0usize; req.treated.len() + 1];
    for k in arm_of.iter().flatten() {
        rows[*k] += 1;
    }
    for (k, arm) in req.treated.iter().enumerate() {
        let (sent, held) = (rows[k + 1], rows[0]);
        if sent < MIN_ARM_ROWS || held < MIN_ARM_ROWS {
            return Err(Error::data(format!(
                "{a_name}: `{}` has {sent} rows equal to `{arm}` and {held} equal to `{}`; each arm needs at least {}",
                req.treatment, req.control, MIN_ARM_ROWS
            )));
        }
    }
    let keep = BooleanChunked::from_iter_values("keep".into(), arm_of.iter().map(Option::is_some));
    let a = a.filter(&keep).ctx("selecting the arms")?;
    let arm: Vec<usize> = arm_of.into_iter().flatten().collect();
    let outcome = binary_labels(&a, req.outcome, req.positive, &a_name)?;
    let mut exclude: Vec<&str> = req.ignore.iter().map(String::as_str).collect();
    exclude.extend([req.treatment, req.outcome]);
    let specs = feature_specs(&a, &exclude);
    if specs.is_empty() {
        return Err(Error::data(format!("{a_name}: no feature columns besides the treatment and outcome")));
    }
    check_same_columns(&b, &specs, &req.test.display().to_string())?;
    let experiment = FlatExperiment { a: &a, arm: &arm, outcome: &outcome, specs: &specs, arms: req.treated.len() };
    let (pooled, linear) = rayon::join(|| experiment.pooled(&b), || experiment.linear(&b, req, &a_name));
    let effects: Vec<Vec<f64>> = pooled?
        .into_iter()
        .zip(linear?)
        .map(|(p, l)| p.into_iter().zip(l).map(|(p, l)| (p + l) / 2.0).collect())
        .collect();
    info!(arms = req.treated.len(), rows = b.height(), output = %req.output.display(), "uplift written");
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

/// A's rows of the arms and the control, each row's arm (0 the control) and outcome.
struct FlatExperiment<'a> {
    a: &'a DataFrame,
    arm: &'a [usize],
    outcome: &'a [i32],
    specs: &'a [(String, FeatureKind)],
    /// How many treated arms.
    arms: usize,
}

impl FlatExperiment<'_> {
    /// Per treated arm, its effect on each row of `b` by the pooled tree model.
    fn pooled(&self, b: &DataFrame) -> Result<Vec<Vec<f64>>> {
        let encoder = Encoder::fit(self.a, Mode::Native, self.specs)?;
        let y: Vec<f64> = self.outcome.iter().map(|&v| f64::from(v)).collect();
        let fitting = Fitting { threads: cores(), seed: UPLIFT_SEED };
        let model =
            PooledModel::fit(&encoder.transform(self.a)?, self.arm, &y, &encoder.categorical_columns(), fitting)?;
        let xb = encoder.transform(b)?;
        let effects = (1..=self.arms).map(|k| model.effect(&xb, k)).collect();
        info!("pooled tree model fitted");
        Ok(effects)
    }

    /// Per treated arm, its effect on each row of `b` by the logistic T-learner.
    fn linear(&self, b: &DataFrame, req: &UpliftRequest, a_name: &str) -> Result<Vec<Vec<f64>>> {
        let encoder = Encoder::fit(self.a, Mode::Standardized, self.specs)?;
        let (x, xb) = (encoder.transform(self.a)?, encoder.transform(b)?);
        let probabilities = (0..=self.arms)
            .map(|k| {
                let rows: Vec<usize> = (0..self.arm.len()).filter(|&i| self.arm[i] == k).collect();
                let y: Vec<i32> = rows.iter().map(|&i| self.outcome[i]).collect();
                let name = if k == 0 { req.control } else { req.treated[k - 1].as_str() };
                if y.iter().all(|&v| v == y[0]) {
                    return Err(Error::data(format!(
                        "{a_name}: `{}` is the same on every row of `{name}`: no effect to learn",
                        req.outcome
                    )));
                }
                Ok(LogisticModel::fit(&x.select(Axis(0), &rows), &y, LOGISTIC_L2, 100)?.predict(&xb))
            })
            .collect::<Result<Vec<_>>>()?;
        info!("logistic T-learner fitted");
        Ok(probabilities[1..].iter().map(|p| p.iter().zip(&probabilities[0]).map(|(t, c)| t - c).collect()).collect())
    }
}
