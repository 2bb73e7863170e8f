//! The S-learner of `retain table uplift`'s flat tables of several arms.

use ndarray::Array2;

use super::experiment::{Fitting, part, select};
use crate::error::Result;
use crate::models::classifier::Classifier;
use crate::models::gbdt::{GbdtModel, GbdtParams, Objective, Rows};

/// One outcome model over every arm of an experiment, the arm a categorical feature (the
/// S-learner): an arm's effect is the prediction with that arm minus the prediction with
/// the control. Where the pipeline's learners see one arm and the control at a time, this
/// one learns from every arm what predicts the outcome at all, so a small arm's rows go
/// to its difference from the others only; trees that never split on the arm give it no
/// effect rather than noise. Leaves are linear (effects that grow with a count, like past
/// turnout, are lines that a few leaves would cut into steps).
pub(crate) struct PooledModel {
    model: GbdtModel,
}

/// GBDT settings of [`PooledModel`]: small trees with linear leaves, many rows per leaf
/// (measured on the public GOTV experiment, BENCHMARKS.md).
fn pooled_params(seed: u64) -> GbdtParams {
    GbdtParams {
        num_rounds: 200,
        learning_rate: 0.05,
        num_leaves: 7,
        min_data_in_leaf: 500,
        feature_fraction: 1.0,
        bagging_fraction: 1.0,
        lambda_l2: 0.0,
        early_stopping_rounds: 30,
        seed: Some(seed),
        linear_leaves: Some(1.0),
    }
}

impl PooledModel {
    /// Fit on rows `x` whose arm is `arm` (0 is the control) and outcome `outcome` (0 or 1).
    pub(crate) fn fit(
        x: &Array2<f64>,
        arm: &[usize],
        outcome: &[f64],
        categorical: &[usize],
        fitting: Fitting,
    ) -> Result<PooledModel> {
        let with_arm = Self::with_arm(x, |i| arm[i]);
        let mut categorical = categorical.to_vec();
        categorical.push(x.ncols());
        let rows: Vec<usize> = (0..x.nrows()).collect();
        let (fit, stop): (Vec<usize>, Vec<usize>) = rows.iter().partition(|&&i| part(i, 1, 5) != 0);
        let pick = |idx: &[usize]| idx.iter().map(|&i| outcome[i]).collect::<Vec<f64>>();
        let model = GbdtModel::fit_rows(
            Objective::Binary,
            &Rows { x: &select(&with_arm, &fit), y: &pick(&fit), weights: None },
            &Rows { x: &select(&with_arm, &stop), y: &pick(&stop), weights: None },
            &categorical,
            &pooled_params(fitting.seed),
            fitting.threads,
        )?;
        Ok(PooledModel { model })
    }

    /// The effect of `arm` against the control on each row of `x`.
    pub(crate) fn effect(&self, x: &Array2<f64>, arm: usize) -> Vec<f64> {
        let with = self.model.predict(&Self::with_arm(x, |_| arm));
        let without = self.model.predict(&Self::with_arm(x, |_| 0));
        with.into_iter().zip(without).map(|(a, b)| a - b).collect()
    }

    fn with_arm(x: &Array2<f64>, arm: impl Fn(usize) -> usize) -> Array2<f64> {
        let mut out = Array2::<f64>::zeros((x.nrows(), x.ncols() + 1));
        out.slice_mut(ndarray::s![.., ..x.ncols()]).assign(x);
        for i in 0..x.nrows() {
            out[[i, x.ncols()]] = arm(i) as f64;
        }
        out
    }
}
