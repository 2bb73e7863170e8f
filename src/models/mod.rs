//! The model seam: a small trait of our own over the learning libraries, the design
//! matrix encoding shared by training and scoring, calibration, and metrics.
//!
//! Why our own trait: linfa, smartcore and LightGBM have different shapes (datasets,
//! parameter guards, native model files). The pipeline only needs "probabilities for
//! rows" and "which features pushed this row up", so that is the trait; each library
//! gets one adapter behind it.

pub mod calibration;
pub mod encoder;
pub mod logistic;
pub mod metrics;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

pub use calibration::Platt;
pub use encoder::Encoder;

/// A fitted binary classifier over an encoded design matrix.
pub trait Classifier: Send + Sync {
    /// Model family and version, e.g. `logistic-l2/1`.
    fn name(&self) -> String;
    /// Uncalibrated probability of the positive class for each row.
    fn predict(&self, x: &Array2<f64>) -> Vec<f64>;
    /// Each column's additive contribution to the row's log-odds (same shape as `x`).
    fn contributions(&self, x: &Array2<f64>) -> Array2<f64>;
}

/// Everything needed to score: the encoding, the fitted model and its calibration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelArtifact {
    pub format_version: u32,
    /// Hash of the feature schema the encoder was fitted on; scoring refuses a mismatch.
    pub feature_schema_hash: String,
    pub encoder: Encoder,
    pub model: StoredModel,
    pub calibration: Platt,
    pub metrics: serde_json::Value,
    pub trained_on: Vec<chrono::NaiveDate>,
    pub validated_on: chrono::NaiveDate,
}

/// The fitted models a run can store. New families add a variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum StoredModel {
    Logistic(logistic::LogisticModel),
}

impl StoredModel {
    pub fn classifier(&self) -> &dyn Classifier {
        match self {
            StoredModel::Logistic(m) => m,
        }
    }
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
