//! The labelled rows of a night's training: the validation snapshot (S − H) and the
//! training snapshots before it, and the fingerprint that says whether they changed.

use chrono::NaiveDate;
use polars::prelude::*;

use crate::config::TrainSettings;
use crate::error::{Error, PolarsContext, Result};
use crate::features::feature_schema_hash;
use crate::inputs::Inputs;
use crate::models::Target;
use crate::models::gbdt::DEFAULT_SEED;
use crate::storage::parquet_bytes;
use crate::version::code_version;
use crate::{labelled, labels, progress};

/// The labelled data of a run: validation (newest) and training snapshots.
pub struct TrainingData {
    pub validated_on: NaiveDate,
    pub valid: DataFrame,
    pub trained_on: Vec<NaiveDate>,
    pub train: DataFrame,
    /// Hash of the rows, the feature schema, the code version and the training settings:
    /// equal fingerprints mean a model fitted on them again would be the same model.
    pub fingerprint: String,
}

/// Build the labelled snapshots of `labels::training_snapshots` for snapshot `s` and
/// fingerprint them with the settings.
pub fn training_data(inputs: &Inputs, s: NaiveDate, settings: &TrainSettings) -> Result<TrainingData> {
    let h = settings.horizon_days;
    let snapshots = labels::training_snapshots(s, h, settings.training.snapshots);
    let built = progress::Counter::new("labelled snapshots", snapshots.len());
    let validation = snapshots[0];
    let training = &settings.training;
    let seed = training.gbdt.seed.unwrap_or(DEFAULT_SEED);
    // One snapshot at a time: each build is parallel inside (the streaming engine, the
    // passes' queries), and two at once only add their peaks (train's peak at 1M varied
    // from 4.4 to 5.7 GB with two).
    let frames: Vec<(NaiveDate, DataFrame)> = snapshots
        .iter()
        .map(|&snap| {
            // Validation measures, calibrates and chooses on every user; training may
            // sample (`training.negatives_per_snapshot`).
            let df = if snap == validation {
                labelled::snapshot(inputs, snap, h)?
            } else {
                labelled::training_snapshot(inputs, snap, h, training.negatives_per_snapshot, seed)?
            };
            built.tick();
            Ok((snap, df))
        })
        .collect::<Result<Vec<_>>>()?;
    let frames: Vec<(NaiveDate, DataFrame)> = frames.into_iter().filter(|(_, df)| df.height() > 0).collect();
    if frames.len() < 2 {
        return Err(Error::data(format!(
            "training for {s} needs at least two labelled snapshots with premium users among {snapshots:?}; \
             the input history is too short"
        )));
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(feature_schema_hash().as_bytes());
    hasher.update(code_version().as_bytes());
    hasher.update(serde_json::to_string(&settings.training).map_err(Error::internal)?.as_bytes());
    hasher.update(&h.to_le_bytes());
    for (d, df) in &frames {
        hasher.update(d.to_string().as_bytes());
        hasher.update(&parquet_bytes(&mut df.clone()).ctx("fingerprinting training rows")?);
    }
    let (validated_on, valid) = frames[0].clone();
    let mut train = frames[1].1.clone();
    for (_, df) in &frames[2..] {
        train.vstack_mut(df).ctx("stacking training snapshots")?;
    }
    Ok(TrainingData {
        validated_on,
        valid,
        trained_on: frames[1..].iter().map(|(d, _)| *d).collect(),
        train,
        fingerprint: format!("{:016x}", hasher.digest()),
    })
}

/// The training rows' weights (`labelled::training_snapshot`), or None when every row
/// weighs 1 (nothing was sampled), so an unsampled fit is the unweighted fit exactly.
pub(super) fn weights_of(df: &DataFrame) -> Result<Option<Vec<f64>>> {
    let w: Vec<f64> = df.column("weight").ctx("weight")?.f64().ctx("weight")?.into_no_null_iter().collect();
    Ok(if w.iter().all(|&v| v == 1.0) { None } else { Some(w) })
}

/// A target's 0/1 labels, in row order.
pub(super) fn labels_of(df: &DataFrame, target: Target) -> Result<Vec<i32>> {
    let name = target.label();
    Ok(df.column(name).ctx(name)?.cast(&DataType::Int32).ctx(name)?.i32().ctx(name)?.into_no_null_iter().collect())
}
