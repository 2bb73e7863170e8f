//! The seam every learner is used through: probabilities for rows, and each column's
//! contribution to a row's log-odds (for the reasons in words). The logistic model and
//! LightGBM each implement it; calibration, scoring and the uplift learners only see it.
//!
//! Why our own trait: linfa, smartcore and LightGBM have different shapes (datasets,
//! parameter guards, native model files). The pipeline only needs these two questions
//! answered, so that is the trait, with one adapter per library.

use ndarray::Array2;

/// A fitted binary classifier over an encoded design matrix.
pub trait Classifier: Send + Sync {
    /// Model family and version, e.g. `logistic-l2/1`.
    fn name(&self) -> String;
    /// Uncalibrated probability of the positive class for each row.
    fn predict(&self, x: &Array2<f64>) -> Vec<f64>;
    /// Each column's additive contribution to the row's log-odds (same shape as `x`).
    fn contributions(&self, x: &Array2<f64>) -> Array2<f64>;
}

pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

pub(crate) fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    (p / (1.0 - p)).ln()
}
