//! The rows of one randomised experiment and how every model of this module is fitted on
//! them: the GBDT settings of the effect models, the deterministic row splits, and early
//! stopping on a fifth of the rows. The learners, the support and the pooled model share
//! it, so a change of settings reaches all of them.

use ndarray::{Array2, Axis};

use crate::error::Result;
use crate::models::gbdt::{GbdtModel, GbdtParams, Objective, Rows};

/// Rows of one experiment: features, arm, outcome (0/1, or a share in [0, 1]), and the
/// probability of the arm each row got.
pub(crate) struct Experiment<'a> {
    pub x: &'a Array2<f64>,
    pub treated: &'a [bool],
    pub outcome: &'a [f64],
    pub propensity: &'a [f64],
}

impl Experiment<'_> {
    pub(super) fn len(&self) -> usize {
        self.treated.len()
    }

    /// How the outcome models fit the outcome: a probability where it is 0 or 1, a mean
    /// share (cross-entropy) where it is a share in [0, 1] (active days of a window).
    pub(super) fn outcome_objective(&self) -> Objective {
        if self.outcome.iter().all(|&y| y == 0.0 || y == 1.0) { Objective::Binary } else { Objective::CrossEntropy }
    }

    /// Inverse-propensity weights, normalised to mean 1 within each arm.
    pub(crate) fn weights(&self) -> Vec<f64> {
        let raw: Vec<f64> = self.propensity.iter().map(|p| 1.0 / p.clamp(0.01, 1.0)).collect();
        let mut sum = [0.0; 2];
        let mut n = [0usize; 2];
        for (w, t) in raw.iter().zip(self.treated) {
            sum[*t as usize] += w;
            n[*t as usize] += 1;
        }
        raw.iter().zip(self.treated).map(|(w, t)| w * n[*t as usize] as f64 / sum[*t as usize].max(1e-12)).collect()
    }
}

/// How the effect models are fitted: LightGBM's threads per fit and its seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fitting {
    pub(crate) threads: usize,
    /// LightGBM's seed (bagging and feature sampling): the run's, through
    /// [`crate::models::gbdt::lightgbm_seed`].
    pub(crate) seed: u64,
}

/// GBDT settings for the effect models: smaller trees than the churn model's, because an
/// arm has thousands of rows rather than millions.
fn params(seed: u64) -> GbdtParams {
    GbdtParams {
        num_rounds: 300,
        learning_rate: 0.05,
        num_leaves: 4,
        min_data_in_leaf: 200,
        feature_fraction: 0.8,
        bagging_fraction: 0.8,
        lambda_l2: 20.0,
        early_stopping_rounds: 30,
        seed: Some(seed),
        linear_leaves: None,
    }
}

/// The fewest rows per arm a learner is fitted on.
pub(crate) const MIN_ARM_ROWS: usize = 100;

/// A deterministic split of row `i` into one of `parts`, unrelated to row order.
pub(super) fn part(i: usize, salt: u64, parts: u64) -> usize {
    (xxhash_rust::xxh3::xxh3_64_with_seed(&(i as u64).to_le_bytes(), salt) % parts) as usize
}

pub(super) fn select(x: &Array2<f64>, rows: &[usize]) -> Array2<f64> {
    x.select(Axis(0), rows)
}

/// Fit `objective` on `rows` of `x` with early stopping on a fifth of them.
pub(super) fn fit_on(
    objective: Objective,
    x: &Array2<f64>,
    y: &[f64],
    w: Option<&[f64]>,
    rows: &[usize],
    categorical: &[usize],
    fitting: Fitting,
) -> Result<GbdtModel> {
    let (fit, stop): (Vec<usize>, Vec<usize>) = rows.iter().partition(|&&i| part(i, 1, 5) != 0);
    let pick = |idx: &[usize], v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let (xf, xs) = (select(x, &fit), select(x, &stop));
    let (yf, ys) = (pick(&fit, y), pick(&stop, y));
    let (wf, ws) = (w.map(|w| pick(&fit, w)), w.map(|w| pick(&stop, w)));
    GbdtModel::fit_rows(
        objective,
        &Rows { x: &xf, y: &yf, weights: wf.as_deref() },
        &Rows { x: &xs, y: &ys, weights: ws.as_deref() },
        categorical,
        &params(fitting.seed),
        fitting.threads,
    )
}
