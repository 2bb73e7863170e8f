//! Exact TreeSHAP contributions of a LightGBM model, read from its text model, and its
//! predictions from the same trees.
//!
//! Why predictions here too: the interventions stage predicts small models on millions
//! of rows a night, and a quarter of its CPU was LightGBM's prediction (which also parses
//! the model text anew on every call). The trees read once for TreeSHAP are walked here
//! instead, a numerical split decided without a branch, with LightGBM's decisions, its
//! order of summation and its objective's output transform: LightGBM's numbers to the bit
//! (tested against it), for about 7% less CPU in that stage (BENCHMARKS.md, "The night on
//! 2026-12-01").
//!
//! Why our own: LightGBM's TreeSHAP is the original algorithm, which walks every path of
//! every tree for every row and costs O(leaves × depth²) per tree and row. At a million
//! users it was the whole score stage (472 s of the reasons, and Python LightGBM's
//! `pred_contrib` took as long on the same model and rows).
//!
//! The values are the same path-dependent Shapley values; the work is arranged so that
//! most of it happens once per model instead of once per row. For one leaf with value v
//! and the distinct features F of its path (d of them), each feature j has a cover
//! fraction z_j (the product of the training-count ratios of the path's edges on j) and a
//! row either satisfies every condition on j (j ∈ A) or not. The leaf's part of feature
//! i's contribution is
//!
//! - −v · G(A) when i ∉ A, and
//! - v · (1 − z_i) / z_i · G(A ∖ {i}) when i ∈ A,
//!
//! where G(B) = Σ_{S ⊆ B} |S|! (d − |S| − 1)! / d! · Π_{j ∈ F∖S} z_j depends on the row only
//! through the mask B. G is tabulated for every mask of every leaf when the model is read
//! (the idea of Fast TreeSHAP v2, Yang 2021), so a row costs one decision per node, one
//! mask per leaf and one table look-up per path feature: O(leaves × depth). Leaves with
//! more than [`MAX_TABLE_BITS`] distinct path features (rare: 7 of 8,711 in the 1M-user
//! model) compute G from the fractions' elementary symmetric polynomials instead.
//!
//! Rows are explained in blocks, each block tree by tree, so one tree's tables stay in
//! cache while a block's rows read them; blocks run in parallel on the rayon pool. Each
//! row's sums are added in a fixed order, so the result does not depend on the threads.

mod tree;
mod weights;

use std::fmt;

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::error::{Error, Result};
use tree::{Scratch, Tree};

/// Rows a block explains tree by tree.
const BLOCK_ROWS: usize = 128;

/// A LightGBM model ready to explain rows.
pub(crate) struct TreeShap {
    trees: Vec<Tree>,
    features: usize,
    /// How the model's objective turns a raw score into its prediction (None: an
    /// objective read here does not know; LightGBM predicts those).
    output: Option<Output>,
}

/// LightGBM's `ConvertOutput` of the objectives the pipeline fits.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Output {
    /// `regression` (L2): the raw score.
    Raw,
    /// `binary` (with its `sigmoid:` parameter) and `cross_entropy`: 1 / (1 + e^(−σ·raw)).
    Sigmoid(f64),
}

impl Output {
    /// The objective line of a text model (`objective=binary sigmoid:1`).
    fn of(objective: &str) -> Option<Output> {
        let mut words = objective.split_whitespace();
        match words.next()? {
            "regression" => words.next().is_none().then_some(Output::Raw),
            "cross_entropy" => Some(Output::Sigmoid(1.0)),
            "binary" => {
                let sigmoid = words.find_map(|w| w.strip_prefix("sigmoid:")).map_or(Some(1.0), |v| v.parse().ok())?;
                Some(Output::Sigmoid(sigmoid))
            }
            _ => None,
        }
    }

    /// As LightGBM computes it (`1.0f / (1.0f + std::exp(-sigmoid_ * input))`).
    fn apply(self, raw: f64) -> f64 {
        match self {
            Output::Raw => raw,
            Output::Sigmoid(sigmoid) => 1.0 / (1.0 + (-sigmoid * raw).exp()),
        }
    }
}

impl fmt::Debug for TreeShap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreeShap").field("trees", &self.trees.len()).field("features", &self.features).finish()
    }
}

impl TreeShap {
    /// Read a LightGBM text model (one tree per iteration, no linear trees).
    pub(crate) fn from_text(text: &str) -> Result<Self> {
        let bad = |what: String| Error::data(format!("the LightGBM model cannot be explained: {what}"));
        let header = |key: &str| text.lines().find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')));
        let features = header("max_feature_idx")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| bad("no max_feature_idx".into()))?
            + 1;
        if header("num_tree_per_iteration").map(str::trim) != Some("1") {
            return Err(bad("not one tree per iteration".into()));
        }
        let body = text.split("end of trees").next().unwrap_or("");
        let mut trees = Vec::new();
        for block in body.split("\nTree=").skip(1) {
            trees.push(Tree::parse(block, features).map_err(|e| bad(format!("tree {}: {e}", trees.len())))?);
        }
        // A random forest's text model says `average_output` on a line of its own.
        let averaged = text.lines().any(|l| l.trim() == "average_output");
        let output = header("objective").and_then(Output::of).filter(|_| !averaged);
        Ok(TreeShap { trees, features, output })
    }

    /// Each row's prediction, as LightGBM's `predict` gives it (probabilities for a
    /// binary model); None when the model's objective is not one [`Output`] knows.
    ///
    /// Rows are predicted in blocks on the rayon pool, each block tree by tree; a row's
    /// leaf values are added in tree order from zero, as LightGBM adds them.
    pub(crate) fn predict(&self, x: ArrayView2<f64>) -> Option<Vec<f64>> {
        let output = self.output?;
        assert_eq!(x.ncols(), self.features, "rows with the model's features");
        let k = self.features;
        let x = x.as_standard_layout();
        let rows = x.as_slice().expect("standard layout");
        let mut out = vec![0.0; x.nrows()];
        out.par_chunks_mut(BLOCK_ROWS).zip(rows.par_chunks(BLOCK_ROWS * k)).for_each(|(scores, rows)| {
            for tree in &self.trees {
                for (score, row) in scores.iter_mut().zip(rows.chunks_exact(k)) {
                    *score += tree.leaf_value(row);
                }
            }
            for score in scores {
                *score = output.apply(*score);
            }
        });
        Some(out)
    }

    /// Each feature's contribution to each row's raw score (log-odds for a binary model):
    /// the same numbers as LightGBM's `predict_contrib` without its last (bias) column.
    pub(crate) fn contributions(&self, x: ArrayView2<f64>) -> Array2<f64> {
        assert_eq!(x.ncols(), self.features, "rows with the model's features");
        let k = self.features;
        let x = x.as_standard_layout();
        let rows = x.as_slice().expect("standard layout");
        let mut out = Array2::<f64>::zeros((x.nrows(), k));
        let phi = out.as_slice_mut().expect("a new array is contiguous");
        phi.par_chunks_mut(BLOCK_ROWS * k).zip(rows.par_chunks(BLOCK_ROWS * k)).for_each(|(phi, rows)| {
            let mut scratch = Scratch::default();
            for tree in &self.trees {
                tree.explain_block(rows, phi, k, &mut scratch);
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::gbdt::{GbdtModel, GbdtParams, Objective, Rows};

    /// Rows with the shapes the pipeline's models see: a few informative numeric columns,
    /// missing values (NaN), exact zeros, and a categorical column of codes.
    fn rows(n: usize, offset: usize) -> (Array2<f64>, Vec<i32>) {
        let x = Array2::from_shape_fn((n, 6), |(i, j)| {
            let i = i + offset;
            let u = ((i * 7919 + j * 104_729) % 1009) as f64 / 1009.0;
            match j {
                0 => u,
                1 if i.is_multiple_of(7) => f64::NAN,
                1 => u * 10.0,
                2 if i.is_multiple_of(5) => 0.0,
                2 => u - 0.5,
                3 => (i % 9) as f64,
                4 if i.is_multiple_of(11) => f64::NAN,
                4 => ((i * 31) % 5) as f64,
                _ => u * u,
            }
        });
        let y = (0..n)
            .map(|i| {
                let r = x.row(i);
                let score = 2.0 * r[0]
                    + if r[1].is_nan() { 1.0 } else { -0.1 * r[1] }
                    + if r[3] == 2.0 || r[3] == 7.0 { 1.5 } else { 0.0 }
                    + r[2] * r[5]
                    + if r[4].is_nan() { 0.5 } else { 0.0 };
                let noise = ((i * 2_654_435_761) % 1000) as f64 / 1000.0;
                i32::from(score + noise > 2.0)
            })
            .collect();
        (x, y)
    }

    fn lightgbm_contributions(model: &GbdtModel, x: &Array2<f64>) -> Array2<f64> {
        let k = x.ncols();
        let booster = lightgbm3::Booster::from_string(&model.model).unwrap();
        let raw = booster.predict_contrib(x.as_slice().unwrap(), k as i32, true).unwrap();
        Array2::from_shape_fn((x.nrows(), k), |(i, j)| raw[i * (k + 1) + j])
    }

    #[test]
    fn the_contributions_are_lightgbms() {
        let (x, y) = rows(6000, 0);
        let (xv, yv) = rows(2000, 6000);
        for (leaves, categorical) in [(31, vec![3, 4]), (63, vec![]), (4, vec![3])] {
            let params = GbdtParams { num_leaves: leaves, num_rounds: 60, min_data_in_leaf: 5, ..Default::default() };
            let model = GbdtModel::fit(&x, &y, &xv, &yv, &categorical, &params, 2).unwrap();
            let decisions: Vec<u8> = model
                .model
                .lines()
                .filter_map(|l| l.strip_prefix("decision_type="))
                .flat_map(|l| l.split_whitespace().map(|v| v.parse::<u8>().unwrap()))
                .collect();
            assert!(decisions.iter().any(|d| d >> 2 & 3 != 0), "splits that route missing values");
            assert_eq!(decisions.iter().any(|d| d & 1 == 1), !categorical.is_empty(), "categorical splits");
            let shap = TreeShap::from_text(&model.model).unwrap();
            let ours = shap.contributions(xv.view());
            let theirs = lightgbm_contributions(&model, &xv);
            let worst = ours.iter().zip(theirs.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-9, "{leaves} leaves: largest difference {worst}");
            assert!(theirs.iter().any(|v| v.abs() > 0.1), "the model explains something");
        }
    }

    /// Our walk of the trees gives LightGBM's `predict` to the bit: binary models with
    /// missing-value routing and categorical splits, a regression, a cross-entropy model
    /// and one of single-leaf trees, on rows with values LightGBM reads as zero.
    #[test]
    fn the_predictions_are_lightgbms_to_the_bit() {
        let (x, y) = rows(6000, 0);
        let (mut xv, yv) = rows(2000, 6000);
        for i in (0..xv.nrows()).step_by(13) {
            xv[[i, 2]] = 1e-40;
            xv[[i, 0]] = -1e-36;
        }
        let share = |x: &Array2<f64>, y: &[i32]| -> Vec<f64> {
            (0..x.nrows()).map(|i| (0.6 * x[[i, 0]] + if y[i] == 1 { 0.3 } else { 0.0 }).clamp(0.0, 1.0)).collect()
        };
        let (s, sv) = (share(&x, &y), share(&xv, &yv));
        let params = |leaves| GbdtParams { num_leaves: leaves, num_rounds: 60, min_data_in_leaf: 5, ..Default::default() };
        let mut models = Vec::new();
        for (leaves, categorical) in [(31, vec![3, 4]), (63, vec![]), (4, vec![3])] {
            models.push(GbdtModel::fit(&x, &y, &xv, &yv, &categorical, &params(leaves), 2).unwrap());
        }
        for objective in [Objective::Regression, Objective::CrossEntropy] {
            let (train, valid) = (Rows { x: &x, y: &s, weights: None }, Rows { x: &xv, y: &sv, weights: None });
            models.push(GbdtModel::fit_rows(objective, &train, &valid, &[3], &params(4), 2).unwrap());
        }
        let constant = vec![0.25; x.nrows()];
        let (train, valid) = (Rows { x: &x, y: &constant, weights: None }, Rows { x: &xv, y: &constant[..2000], weights: None });
        models.push(GbdtModel::fit_rows(Objective::Regression, &train, &valid, &[], &params(4), 2).unwrap());
        assert!(models.last().unwrap().model.contains("num_leaves=1"), "a model of single-leaf trees");
        for model in &models {
            let objective = model.model.lines().find(|l| l.starts_with("objective=")).unwrap();
            let ours = TreeShap::from_text(&model.model).unwrap().predict(xv.view()).expect(objective);
            let booster = lightgbm3::Booster::from_string(&model.model).unwrap();
            let theirs = booster.predict_with_params(xv.as_slice().unwrap(), 6, true, "num_threads=1").unwrap();
            assert_eq!(ours.len(), theirs.len());
            let differ = ours.iter().zip(&theirs).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differ, 0, "{objective}: {differ} of {} rows differ", ours.len());
            assert!(ours.iter().any(|&p| (p - ours[0]).abs() > 1e-3) || model.model.contains("num_leaves=1"));
        }
    }
}
