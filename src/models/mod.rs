//! The learning layer, below every stage and blind to the subscriber contract: the model
//! seam ([`Classifier`], one adapter per library: `logistic`, `gbdt`), the design-matrix
//! `encoder` shared by training and scoring, `calibration`, `metrics`, the Newton solvers'
//! `linalg`, the `uplift` learners, and, here, the stored artifact and the rules that
//! choose among fitted models (the champion; the uplift learner in `uplift`), shared by
//! the pipeline and `retain table`.

pub mod calibration;
mod classifier;
pub(crate) mod deciles;
pub mod encoder;
pub mod gbdt;
pub(crate) mod linalg;
pub mod logistic;
pub mod metrics;
mod treeshap;
pub(crate) mod uplift;

use chrono::NaiveDate;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

pub(crate) use calibration::Calibration;
pub use classifier::Classifier;
pub(crate) use classifier::sigmoid;
pub use encoder::{Encoder, FeatureKind};

use crate::error::{Error, Result};
use metrics::{Metrics, ReliabilityBin};

/// The model families a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Family {
    Logistic,
    Gbdt,
}

impl Family {
    pub(crate) const ALL: [Family; 2] = [Family::Logistic, Family::Gbdt];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Family::Logistic => "logistic",
            Family::Gbdt => "gbdt",
        }
    }

    pub(crate) fn encoding(self) -> encoder::Mode {
        match self {
            Family::Logistic => encoder::Mode::Standardized,
            Family::Gbdt => encoder::Mode::Native,
        }
    }

    /// The file name of a fitted model of this family for `target`.
    pub(crate) fn file_name(self, target: Target) -> String {
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
    pub(crate) const ALL: [Target; 2] = [Target::Churn, Target::PaymentFailure];

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
pub(crate) enum Fitted {
    Logistic(logistic::LogisticModel),
    Gbdt(gbdt::GbdtModel),
}

impl Fitted {
    pub(crate) fn classifier(&self) -> &dyn Classifier {
        match self {
            Fitted::Logistic(m) => m,
            Fitted::Gbdt(m) => m,
        }
    }

    /// The model file's content (JSON coefficients, or LightGBM's native text model).
    pub(crate) fn to_file(&self) -> Result<Vec<u8>> {
        match self {
            Fitted::Logistic(m) => serde_json::to_vec_pretty(m).map_err(Error::internal),
            // LightGBM's own text model: it opens as is in Python LightGBM.
            Fitted::Gbdt(m) => Ok(m.model.clone().into_bytes()),
        }
    }

    pub(crate) fn from_file(family: Family, bytes: &[u8], threads: usize) -> Result<Self> {
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
pub(crate) struct Candidate {
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
    pub(crate) fn fitted(&self) -> Result<&Fitted> {
        self.model.as_ref().ok_or_else(|| Error::internal(format!("model {} is not loaded", self.file)))
    }

    /// Calibrated probabilities for a features table.
    pub(crate) fn predict(&self, features: &polars::prelude::DataFrame) -> Result<(Array2<f64>, Vec<f64>)> {
        let x = self.encoder.transform(features)?;
        let p = self.fitted()?.classifier().predict(&x).into_iter().map(|v| self.calibration.apply(v)).collect();
        Ok((x, p))
    }
}

/// The candidates of one target and the one chosen to score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TargetModels {
    pub target: Target,
    /// Chosen by the lowest validation log loss.
    pub champion: Family,
    pub candidates: Vec<Candidate>,
}

impl TargetModels {
    pub(crate) fn champion(&self) -> Result<&Candidate> {
        self.candidates.iter().find(|c| c.family == self.champion).ok_or_else(|| {
            Error::internal(format!("no {} candidate for {}", self.champion.as_str(), self.target.as_str()))
        })
    }
}

/// Everything needed to score, stored as `models/snapshot=S/model.json` plus one file per
/// fitted model in `dir`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ModelArtifact {
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
    /// The risk-decile boundaries of this manifest's snapshot (the night's premium users,
    /// scored by the churn champion), which shards score against.
    #[serde(default)]
    pub risk_deciles: Option<deciles::Boundaries>,
    /// What other stages learned for this manifest's snapshot and saved with the models
    /// (e.g. `grace`), by name: the file in the snapshot's model folder.
    #[serde(default)]
    pub attachments: std::collections::BTreeMap<String, String>,
    /// Attachments to write at the next save.
    #[serde(skip)]
    pub pending: Vec<(String, Vec<u8>)>,
}

impl ModelArtifact {
    /// Save `bytes` with the models as `name` (see `attachments`).
    pub(crate) fn attach(&mut self, name: &str, bytes: Vec<u8>) {
        self.pending.push((name.to_string(), bytes));
    }

    pub(crate) fn target(&self, target: Target) -> Result<&TargetModels> {
        self.targets
            .iter()
            .find(|t| t.target == target)
            .ok_or_else(|| Error::data(format!("the model artifact has no {} model", target.as_str())))
    }

    /// A summary for manifests: champions and their validation metrics.
    pub(crate) fn summary(&self) -> serde_json::Value {
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

/// The champion among candidates fitted for one target: the lowest validation log loss
/// (calibrated, cross-fitted), the first on a tie. Log loss rather than AUC because the
/// scores are used as probabilities (expected churn prevented, budgets), not only as a
/// ranking. The pipeline's models and `retain table train` choose by this one rule.
pub(crate) fn champion(log_losses: &[f64]) -> Option<usize> {
    log_losses.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i)
}

/// Cores available to this process: the size of the fitting pools.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
