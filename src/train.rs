//! Training the churn model on earlier snapshots whose labels are complete by S.
//!
//! Validation is by time, never by random rows: the newest labelled snapshot (S − H)
//! validates and calibrates, the older ones (S − H − 7k) train. The model artifact is
//! written under `models/snapshot=S/` with its encoder, calibration and metrics.

use chrono::{Duration, NaiveDate};
use polars::prelude::*;
use rayon::prelude::*;
use tracing::info;

use crate::error::{Error, PolarsContext, Result};
use crate::features;
use crate::inputs::Inputs;
use crate::labels;
use crate::models::encoder::feature_schema_hash;
use crate::models::logistic::LogisticModel;
use crate::models::metrics::evaluate;
use crate::models::{Classifier, Encoder, ModelArtifact, Platt, StoredModel};
use crate::run::Context;

pub const MODEL_TABLE: &str = "models";
pub const MODEL_FILE: &str = "churn_model.json";

/// Features joined with the churn label for one snapshot.
pub fn labelled_snapshot(inputs: &Inputs, s: NaiveDate, horizon_days: u32) -> Result<DataFrame> {
    let feats = features::build_lazy(inputs, s)?;
    let labels = labels::churn_labels(inputs.billing_until(s + Duration::days(horizon_days as i64)), s, horizon_days);
    feats
        .join(labels, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Inner))
        // Join output order is not guaranteed; the fit must see rows in one order to be
        // reproducible to the last bit.
        .sort(["user_id"], SortMultipleOptions::default())
        .collect()
        .ctx(format!("building the labelled snapshot {s}"))
}

fn labels_of(df: &DataFrame) -> Result<Vec<i32>> {
    Ok(df.column("churned").ctx("churn label")?.i32().ctx("churn label")?.into_no_null_iter().collect())
}

/// Train and validate the churn model for a run at `ctx.as_of`; returns the artifact.
pub fn train(ctx: &Context, inputs: &Inputs) -> Result<ModelArtifact> {
    let s = ctx.as_of;
    let h = ctx.settings.horizon_days;
    let snapshots = labels::training_snapshots(s, h, ctx.settings.training.snapshots);
    let frames: Vec<(NaiveDate, DataFrame)> = snapshots
        .par_iter()
        .map(|&snap| labelled_snapshot(inputs, snap, h).map(|df| (snap, df)))
        .collect::<Result<Vec<_>>>()?;
    let frames: Vec<(NaiveDate, DataFrame)> = frames.into_iter().filter(|(_, df)| df.height() > 0).collect();
    if frames.len() < 2 {
        return Err(Error::data(format!(
            "training for {s} needs at least two labelled snapshots with premium users among {snapshots:?}; \
             the input history is too short (it must reach back {} days before {s} plus the feature windows)",
            h as i64 + 7
        )));
    }
    let (valid_date, valid) = &frames[0];
    let mut train_df = frames[1].1.clone();
    for (_, df) in &frames[2..] {
        train_df.vstack_mut(df).ctx("stacking training snapshots")?;
    }
    let trained_on: Vec<NaiveDate> = frames[1..].iter().map(|(d, _)| *d).collect();
    info!(train_rows = train_df.height(), valid_rows = valid.height(), valid_snapshot = %valid_date, "training churn model");

    let encoder = Encoder::fit(&train_df)?;
    let x_train = encoder.transform(&train_df)?;
    let y_train = labels_of(&train_df)?;
    let model = LogisticModel::fit(&x_train, &y_train, ctx.settings.training.l2, ctx.settings.training.max_iterations)?;

    let x_valid = encoder.transform(valid)?;
    let y_valid = labels_of(valid)?;
    let raw = model.predict(&x_valid);
    let calibration = Platt::fit(&raw, &y_valid);
    let calibrated: Vec<f64> = raw.iter().map(|&p| calibration.apply(p)).collect();
    let metrics = serde_json::json!({
        "model": model.name(),
        "validation_snapshot": valid_date,
        "train_rows": train_df.height(),
        "train_positive_rate": y_train.iter().filter(|&&v| v == 1).count() as f64 / y_train.len() as f64,
        "validation_raw": evaluate(&raw, &y_valid),
        "validation_calibrated": evaluate(&calibrated, &y_valid),
    });
    info!(metrics = %metrics, "validated churn model");
    Ok(ModelArtifact {
        format_version: 1,
        feature_schema_hash: feature_schema_hash(),
        encoder,
        model: StoredModel::Logistic(model),
        calibration,
        metrics,
        trained_on,
        validated_on: *valid_date,
    })
}

fn model_rel(s: NaiveDate) -> String {
    format!("{MODEL_TABLE}/snapshot={s}/{MODEL_FILE}")
}

/// Store the artifact (one atomic PUT).
pub fn save(ctx: &Context, artifact: &ModelArtifact) -> Result<()> {
    let body = serde_json::to_vec_pretty(artifact).map_err(Error::internal)?;
    ctx.output.write_bytes(&model_rel(ctx.as_of), body.into())
}

/// Load the artifact trained for snapshot `s`.
pub fn load(ctx: &Context, s: NaiveDate) -> Result<ModelArtifact> {
    let rel = model_rel(s);
    if !ctx.output.exists(&rel)? {
        return Err(Error::data(format!(
            "no churn model for snapshot {s} at {}/{rel}: run `retain train --as-of {s}` first",
            ctx.output.uri()
        )));
    }
    let bytes = ctx.output.read_bytes(&rel)?;
    let artifact: ModelArtifact = serde_json::from_slice(&bytes)
        .map_err(|e| Error::data(format!("{}/{rel} is not a model artifact this version can read: {e}", ctx.output.uri())))?;
    if artifact.feature_schema_hash != feature_schema_hash() {
        return Err(Error::data(format!(
            "the model at {}/{rel} was trained on feature schema {} but this build computes schema {}: retrain it",
            ctx.output.uri(),
            artifact.feature_schema_hash,
            feature_schema_hash()
        )));
    }
    Ok(artifact)
}
