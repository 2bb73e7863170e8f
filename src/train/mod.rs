//! The train stage: the churn and payment-failure models of a night, fitted on earlier
//! snapshots whose labels are complete by S.
//!
//! Validation is by time, never by random rows: the newest labelled snapshot (S − H)
//! validates, calibrates and chooses the champion; older ones (S − H − G − 7j, G the
//! purge gap of `labels::training_snapshots`) train. The stage, in order:
//! 1. [`data`]: the labelled snapshots and their fingerprint;
//! 2. reuse: when the fingerprint equals the latest stored model's, that model is reused
//!    (unless `--retrain`): nothing new to learn from;
//! 3. [`fit`]: every (target × family) fitted concurrently, calibrated, and each target's
//!    champion chosen;
//! 4. [`artifact`]: the model files, then `model.json` (written last, which makes the
//!    artifact complete), then the models report ([`report`]).

mod artifact;
mod data;
mod fit;
mod reference;
mod report;

use chrono::NaiveDate;
use tracing::info;

use crate::config::TrainSettings;
use crate::error::{Error, Result};
use crate::features::feature_schema_hash;
use crate::inputs::Inputs;
use crate::models::ModelArtifact;
use crate::storage::Storage;
use crate::version::code_version;

pub(crate) use artifact::{attachment, load, save};
pub use data::{TrainingData, training_data};
pub(crate) use reference::FEATURE_REFERENCE;

/// Train for snapshot `s`, or reuse the latest model in `output` when the labelled data is
/// unchanged (unless `retrain`); either way with the labelled snapshots' feature
/// distributions attached ([`FEATURE_REFERENCE`]), for `monitor`.
pub(crate) fn train_or_reuse(
    inputs: &Inputs,
    s: NaiveDate,
    settings: &TrainSettings,
    output: &Storage,
    retrain: bool,
) -> Result<ModelArtifact> {
    let data = training_data(inputs, s, settings)?;
    let mut artifact = fit_or_reuse(&data, s, settings, output, retrain)?;
    artifact.attach(FEATURE_REFERENCE, reference::of(&data)?);
    Ok(artifact)
}

fn fit_or_reuse(
    data: &TrainingData,
    s: NaiveDate,
    settings: &TrainSettings,
    output: &Storage,
    retrain: bool,
) -> Result<ModelArtifact> {
    if !retrain
        && let Some(latest) = artifact::latest_model(output, s)?
        && latest.fingerprint == data.fingerprint
        && latest.feature_schema_hash == feature_schema_hash()
    {
        let from = latest
            .reused_from
            .unwrap_or_else(|| latest.dir.rsplit("snapshot=").next().and_then(|d| d.parse().ok()).unwrap_or(s));
        info!(from = %from, "labelled data unchanged since the latest model: reusing it (--retrain to refit)");
        let mut reused = latest;
        reused.reused = true;
        // The boundaries and attachments are the earlier night's: tonight's are learned tonight.
        reused.risk_deciles = None;
        reused.attachments.clear();
        if reused.dir != artifact::model_dir(s) {
            reused.reused_from = Some(from);
        }
        return artifact::load_models(output, reused);
    }
    train(s, settings, data)
}

/// Fit every model on `data` and describe them as the artifact of snapshot `s`.
fn train(s: NaiveDate, settings: &TrainSettings, data: &TrainingData) -> Result<ModelArtifact> {
    let targets = fit::fit_all(&settings.training, data)?;
    Ok(ModelArtifact {
        format_version: 2,
        feature_schema_hash: feature_schema_hash(),
        fingerprint: data.fingerprint.clone(),
        code_version: code_version(),
        trained_on: data.trained_on.clone(),
        validated_on: data.validated_on,
        dir: artifact::model_dir(s),
        reused_from: None,
        reused: false,
        targets,
        training: serde_json::to_value(&settings.training).map_err(Error::internal)?,
        risk_deciles: None,
        attachments: Default::default(),
        pending: Vec::new(),
    })
}
