//! `retain table uplift`: the pipeline's uplift learners on an analyst's experiment.

use std::path::Path;

use polars::prelude::*;
use tracing::info;

use super::flat::{
    binary_labels, check_same_columns, feature_specs, is_validation_row, read_flat, write_column, write_frame,
};
use crate::error::{Error, PolarsContext, Result};
use crate::models::cores;
use crate::models::encoder::{Encoder, Mode};
use crate::models::uplift::{self as up, Experiment, Fitting, Learner};

/// `retain table` has no `--seed`: its random draws use fixed seeds, so the same tables give
/// the same output (LightGBM's default seed for `table train`, these for `table uplift`).
const UPLIFT_SEED: u64 = 17;
const BOOTSTRAP_SEED: u64 = 29;

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
