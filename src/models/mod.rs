//! The model seam: a small trait of our own over the learning libraries, the design
//! matrix encoding shared by training and scoring, calibration, metrics, and the stored
//! artifact.
//!
//! Why our own trait: linfa, smartcore and LightGBM have different shapes (datasets,
//! parameter guards, native model files). The pipeline only needs "probabilities for
//! rows" and "which features pushed this row up", so that is the trait; each library
//! gets one adapter behind it.

pub mod calibration;
pub mod encoder;
pub mod gbdt;
pub mod logistic;
pub mod metrics;

use chrono::NaiveDate;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

pub use calibration::{Calibration, Platt};
pub use encoder::Encoder;

use crate::error::{Error, Result};
use metrics::{Metrics, ReliabilityBin};

/// A fitted binary classifier over an encoded design matrix.
pub trait Classifier: Send + Sync {
    /// Model family and version, e.g. `logistic-l2/1`.
    fn name(&self) -> String;
    /// Uncalibrated probability of the positive class for each row.
    fn predict(&self, x: &Array2<f64>) -> Vec<f64>;
    /// Each column's additive contribution to the row's log-odds (same shape as `x`).
    fn contributions(&self, x: &Array2<f64>) -> Array2<f64>;
}

/// The model families a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Logistic,
    Gbdt,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Logistic, Family::Gbdt];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Logistic => "logistic",
            Family::Gbdt => "gbdt",
        }
    }

    pub fn encoding(self) -> encoder::Mode {
        match self {
            Family::Logistic => encoder::Mode::Standardized,
            Family::Gbdt => encoder::Mode::Native,
        }
    }

    /// The file name of a fitted model of this family for `target`.
    pub fn file_name(self, target: Target) -> String {
        match self {
            Family::Logistic => format!("{}.logistic.json", target.as_str()),
            Family::Gbdt => format!("{}.gbdt.txt", target.as_str()),
        }
    }
}

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Not premium at the end of S + H (the contract's churn label).
    Churn,
    /// A renewal payment fails within (S, S + H].
    PaymentFailure,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Churn, Target::PaymentFailure];

    pub fn as_str(self) -> &'static str {
        match self {
            Target::Churn => "churn",
            Target::PaymentFailure => "payment_failure",
        }
    }

    /// The label column in a labelled snapshot.
    pub fn label(self) -> &'static str {
        match self {
            Target::Churn => "churned",
            Target::PaymentFailure => "payment_fails",
        }
    }
}

/// A fitted model of either family.
#[derive(Debug, Clone)]
pub enum Fitted {
    Logistic(logistic::LogisticModel),
    Gbdt(gbdt::GbdtModel),
}

impl Fitted {
    pub fn classifier(&self) -> &dyn Classifier {
        match self {
            Fitted::Logistic(m) => m,
            Fitted::Gbdt(m) => m,
        }
    }

    /// The model file's content (JSON coefficients, or LightGBM's native text model).
    pub fn to_file(&self) -> Result<Vec<u8>> {
        match self {
            Fitted::Logistic(m) => serde_json::to_vec_pretty(m).map_err(Error::internal),
            // LightGBM's own text model: it opens as is in Python LightGBM.
            Fitted::Gbdt(m) => Ok(m.model.clone().into_bytes()),
        }
    }

    pub fn from_file(family: Family, bytes: &[u8], threads: usize) -> Result<Self> {
        let bad =
            |e: &dyn std::fmt::Display| Error::data(format!("a stored {} model does not read: {e}", family.as_str()));
        match family {
            Family::Logistic => serde_json::from_slice(bytes).map(Fitted::Logistic).map_err(|e| bad(&e)),
            Family::Gbdt => {
                let text = std::str::from_utf8(bytes).map_err(|e| bad(&e))?;
                Ok(Fitted::Gbdt(gbdt::GbdtModel::from_text(text, threads).map_err(|e| bad(&e))?))
            }
        }
    }
}

/// One trained candidate for a target, as stored in the artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub family: Family,
    pub name: String,
    pub encoder: Encoder,
    pub calibration: Calibration,
    /// Validation metrics of the calibrated model (cross-fitted calibration).
    pub validation: Metrics,
    /// Validation metrics before calibration.
    pub validation_raw: Metrics,
    pub reliability: Vec<ReliabilityBin>,
    pub file: String,
    pub fit_seconds: f64,
    #[serde(skip)]
    pub model: Option<Fitted>,
}

impl Candidate {
    pub fn fitted(&self) -> Result<&Fitted> {
        self.model.as_ref().ok_or_else(|| Error::internal(format!("model {} is not loaded", self.file)))
    }

    /// Calibrated probabilities for a features table.
    pub fn predict(&self, features: &polars::prelude::DataFrame) -> Result<(Array2<f64>, Vec<f64>)> {
        let x = self.encoder.transform(features)?;
        let p = self.fitted()?.classifier().predict(&x).into_iter().map(|v| self.calibration.apply(v)).collect();
        Ok((x, p))
    }
}

/// The candidates of one target and the one chosen to score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetModels {
    pub target: Target,
    /// Chosen by the lowest validation log loss.
    pub champion: Family,
    pub candidates: Vec<Candidate>,
}

impl TargetModels {
    pub fn champion(&self) -> Result<&Candidate> {
        self.candidates.iter().find(|c| c.family == self.champion).ok_or_else(|| {
            Error::internal(format!("no {} candidate for {}", self.champion.as_str(), self.target.as_str()))
        })
    }
}

/// Everything needed to score, stored as `models/snapshot=S/model.json` plus one file per
/// fitted model in `dir`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelArtifact {
    pub format_version: u32,
    /// Hash of the feature schema the encoders were fitted on; scoring refuses a mismatch.
    pub feature_schema_hash: String,
    /// Hash of the labelled training and validation rows and the training settings: equal
    /// fingerprints mean no new labels, so the model can be reused.
    pub fingerprint: String,
    pub code_version: String,
    pub trained_on: Vec<NaiveDate>,
    pub validated_on: NaiveDate,
    /// Folder (relative to the output root) holding the model files.
    pub dir: String,
    /// Set when this snapshot reuses the model trained for an earlier one.
    pub reused_from: Option<NaiveDate>,
    /// True when this run found the labelled data unchanged and did not refit.
    #[serde(default)]
    pub reused: bool,
    pub targets: Vec<TargetModels>,
    pub training: serde_json::Value,
}

impl ModelArtifact {
    pub fn target(&self, target: Target) -> Result<&TargetModels> {
        self.targets
            .iter()
            .find(|t| t.target == target)
            .ok_or_else(|| Error::data(format!("the model artifact has no {} model", target.as_str())))
    }

    /// A summary for manifests: champions and their validation metrics.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "validated_on": self.validated_on,
            "trained_on": self.trained_on,
            "fingerprint": self.fingerprint,
            "reused_from": self.reused_from,
            "reused": self.reused,
            "targets": self.targets.iter().map(|t| serde_json::json!({
                "target": t.target,
                "champion": t.champion,
                "candidates": t.candidates.iter().map(|c| serde_json::json!({
                    "family": c.family,
                    "name": c.name,
                    "calibration": c.calibration.name(),
                    "validation": c.validation,
                    "validation_raw": c.validation_raw,
                    "reliability": c.reliability,
                    "fit_seconds": c.fit_seconds,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
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
