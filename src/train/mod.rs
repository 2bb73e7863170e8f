//! Training the models of a run on earlier snapshots whose labels are complete by S.
//!
//! Validation is by time, never by random rows: the newest labelled snapshot (S − H)
//! validates, calibrates and chooses the champion; older ones (S − H − G − 7j, G the
//! purge gap of `labels::training_snapshots`) train.
//! Every (target × family) fits concurrently on a pool sized to the machine, LightGBM
//! running one thread per fit so the two never oversubscribe the cores.
//!
//! The artifact lives under `models/snapshot=S/`: one file per fitted model (LightGBM's
//! native text model, the logistic coefficients as JSON), then `model.json`, written
//! last, which makes it complete. When the labelled rows and settings hash to the same
//! fingerprint as the latest model's, that model is reused (unless `--retrain`).

use std::time::Instant;

use chrono::{Duration, NaiveDate};
use polars::prelude::*;
use rayon::prelude::*;
use tracing::info;

use crate::error::{Error, PolarsContext, Result};
use crate::features;
use crate::inputs::{Inputs, end_of_day_us, ts_lit_us};
use crate::labels;
use crate::models::encoder::feature_schema_hash;
use crate::models::gbdt::GbdtModel;
use crate::models::logistic::LogisticModel;
use crate::models::metrics::{evaluate, reliability};
use crate::models::{Calibration, Candidate, Encoder, Family, Fitted, ModelArtifact, Target, TargetModels};
use crate::run::{Context, code_version};
use crate::storage::parquet_bytes;

pub const MODEL_TABLE: &str = "models";
pub const MANIFEST: &str = "model.json";

/// Cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Features joined with every target's label for one snapshot, sorted by user id.
pub fn labelled_snapshot(inputs: &Inputs, s: NaiveDate, horizon_days: u32) -> Result<DataFrame> {
    labelled_snapshot_of(inputs, s, horizon_days, None)
}

/// The rows of [`labelled_snapshot`] for the users in `users` only (all premium users
/// when None). Features and labels are per user, so each row is the one the whole
/// snapshot has; the work and memory are those of the users asked for. The features are
/// built in passes ([`features::build`]), which bounds the memory of a whole snapshot.
pub fn labelled_snapshot_of(
    inputs: &Inputs,
    s: NaiveDate,
    horizon_days: u32,
    users: Option<&DataFrame>,
) -> Result<DataFrame> {
    let until = s + Duration::days(horizon_days as i64);
    let (feats, billing) = match users {
        None => (features::build(inputs, s)?, inputs.billing_until(until)),
        Some(users) => {
            // Other users' billing would only be dropped by the joins on the features.
            let ids = users.clone().lazy().select([col("user_id")]);
            let billing = inputs.billing_until(until).join(
                ids,
                [col("user_id")],
                [col("user_id")],
                JoinArgs::new(JoinType::Semi),
            );
            (features::build_of(inputs, s, users)?, billing)
        }
    };
    let feats = feats.lazy();
    let churn = labels::churn_labels(billing.clone(), s, horizon_days);
    let failures = billing
        .filter(col("ts").gt_eq(ts_lit_us(end_of_day_us(s))).and(col("event_type").eq(lit("payment_failed"))))
        .select([col("user_id")])
        .unique(None, UniqueKeepStrategy::Any)
        .with_column(lit(1i32).alias("payment_fails"));
    feats
        .join(churn, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Inner))
        .join(failures, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left))
        .with_column(col("payment_fails").fill_null(lit(0i32)))
        // Join output order is not guaranteed; fits must see rows in one order to be
        // reproducible to the last bit.
        .sort(["user_id"], SortMultipleOptions::default())
        .collect()
        .ctx(format!("building the labelled snapshot {s}"))
}

fn labels_of(df: &DataFrame, target: Target) -> Result<Vec<i32>> {
    let name = target.label();
    Ok(df.column(name).ctx(name)?.cast(&DataType::Int32).ctx(name)?.i32().ctx(name)?.into_no_null_iter().collect())
}

/// The labelled data of a run: validation (newest) and training snapshots.
pub struct TrainingData {
    pub validated_on: NaiveDate,
    pub valid: DataFrame,
    pub trained_on: Vec<NaiveDate>,
    pub train: DataFrame,
    pub fingerprint: String,
}

/// Build the labelled snapshots (`labels::training_snapshots`) and fingerprint them with the settings.
pub fn training_data(ctx: &Context, inputs: &Inputs) -> Result<TrainingData> {
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
             the input history is too short"
        )));
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(feature_schema_hash().as_bytes());
    hasher.update(code_version().as_bytes());
    hasher.update(serde_json::to_string(&ctx.settings.training).map_err(Error::internal)?.as_bytes());
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

/// Fit, calibrate and evaluate one (target, family).
fn fit_candidate(
    ctx: &Context,
    data: &TrainingData,
    target: Target,
    family: Family,
    threads: usize,
) -> Result<Candidate> {
    let started = Instant::now();
    let encoder = Encoder::fit(&data.train, family.encoding())?;
    let x = encoder.transform(&data.train)?;
    let y = labels_of(&data.train, target)?;
    let xv = encoder.transform(&data.valid)?;
    let yv = labels_of(&data.valid, target)?;
    if y.iter().all(|&v| v == y[0]) {
        return Err(Error::data(format!("the {} label has a single class in the training snapshots", target.as_str())));
    }
    let t = &ctx.settings.training;
    let (model, name) = match family {
        Family::Logistic => {
            let m = LogisticModel::fit(&x, &y, t.l2, t.max_iterations)?;
            (Fitted::Logistic(m), "logistic-l2".to_string())
        }
        Family::Gbdt => {
            let m = GbdtModel::fit(&x, &y, &xv, &yv, &encoder.categorical_columns(), &t.gbdt, threads)?;
            let name = format!("gbdt-lightgbm/{}-rounds", m.best_iteration);
            (Fitted::Gbdt(m.with_threads(cores())), name)
        }
    };
    let raw = model.classifier().predict(&xv);
    let (calibration, cross_fitted) = Calibration::choose(&raw, &yv);
    let candidate = Candidate {
        family,
        name,
        encoder,
        calibration,
        validation: evaluate(&cross_fitted, &yv),
        validation_raw: evaluate(&raw, &yv),
        reliability: reliability(&cross_fitted, &yv),
        file: family.file_name(target),
        fit_seconds: started.elapsed().as_secs_f64(),
        model: Some(model),
    };
    info!(
        target = target.as_str(),
        family = family.as_str(),
        auc = candidate.validation.auc,
        log_loss = candidate.validation.log_loss,
        seconds = candidate.fit_seconds,
        "model fitted"
    );
    Ok(candidate)
}

/// Train every (target × family) concurrently and pick each target's champion.
pub fn train(ctx: &Context, data: &TrainingData) -> Result<ModelArtifact> {
    info!(train_rows = data.train.height(), valid_rows = data.valid.height(), valid_snapshot = %data.validated_on, "training");
    let jobs: Vec<(Target, Family)> =
        Target::ALL.iter().flat_map(|&t| Family::ALL.iter().map(move |&f| (t, f))).collect();
    let threads = cores();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.min(jobs.len()))
        .thread_name(|i| format!("retain-fit-{i}"))
        .build()
        .map_err(Error::internal)?;
    // With as many fits in flight as cores, each LightGBM fit gets one thread.
    let per_fit = (threads / jobs.len().min(threads)).max(1);
    let mut fitted: Vec<Candidate> = pool.install(|| {
        jobs.par_iter().map(|&(t, f)| fit_candidate(ctx, data, t, f, per_fit)).collect::<Result<Vec<_>>>()
    })?;
    let mut targets = Vec::new();
    for target in Target::ALL {
        let candidates: Vec<Candidate> = {
            let (mine, rest): (Vec<Candidate>, Vec<Candidate>) =
                fitted.into_iter().partition(|c| c.file.starts_with(&format!("{}.", target.as_str())));
            fitted = rest;
            mine
        };
        let champion = candidates
            .iter()
            .min_by(|a, b| a.validation.log_loss.total_cmp(&b.validation.log_loss))
            .map(|c| c.family)
            .ok_or_else(|| Error::internal("no candidates"))?;
        targets.push(TargetModels { target, champion, candidates });
    }
    Ok(ModelArtifact {
        format_version: 2,
        feature_schema_hash: feature_schema_hash(),
        fingerprint: data.fingerprint.clone(),
        code_version: code_version(),
        trained_on: data.trained_on.clone(),
        validated_on: data.validated_on,
        dir: model_dir(ctx.as_of),
        reused_from: None,
        reused: false,
        targets,
        training: serde_json::to_value(&ctx.settings.training).map_err(Error::internal)?,
    })
}

pub fn model_dir(s: NaiveDate) -> String {
    format!("{MODEL_TABLE}/snapshot={s}")
}

/// Store the model files, then the manifest (which makes the artifact complete).
pub fn save(ctx: &Context, artifact: &ModelArtifact) -> Result<()> {
    if artifact.reused_from.is_none() {
        for t in &artifact.targets {
            for c in &t.candidates {
                ctx.output.write_bytes(&format!("{}/{}", artifact.dir, c.file), c.fitted()?.to_file()?.into())?;
            }
        }
    }
    let body = serde_json::to_vec_pretty(artifact).map_err(Error::internal)?;
    ctx.output.write_bytes(&format!("{}/{MANIFEST}", model_dir(ctx.as_of)), body.into())?;
    let report = crate::report::models(artifact, ctx.as_of);
    ctx.output.write_bytes(&format!("reports/snapshot={}/models.html", ctx.as_of), report.into_bytes().into())
}

fn read_manifest(ctx: &Context, s: NaiveDate) -> Result<Option<ModelArtifact>> {
    let rel = format!("{}/{MANIFEST}", model_dir(s));
    if !ctx.output.exists(&rel)? {
        return Ok(None);
    }
    let bytes = ctx.output.read_bytes(&rel)?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::data(format!("{}/{rel} is not a model artifact this version can read: {e}", ctx.output.uri()))
    })
}

/// The newest model trained for a snapshot at or before `s`, if any.
fn latest_model(ctx: &Context, s: NaiveDate) -> Result<Option<ModelArtifact>> {
    let mut dates: Vec<NaiveDate> = ctx
        .output
        .list_dirs(MODEL_TABLE)?
        .iter()
        .filter_map(|d| d.strip_prefix("snapshot=").and_then(|d| d.parse().ok()))
        .filter(|d| *d <= s)
        .collect();
    dates.sort();
    match dates.last() {
        Some(&d) => read_manifest(ctx, d).or(Ok(None)),
        None => Ok(None),
    }
}

/// Train for `ctx.as_of`, or reuse the latest model when the labelled data is unchanged.
pub fn train_or_reuse(ctx: &Context, inputs: &Inputs, retrain: bool) -> Result<ModelArtifact> {
    let data = training_data(ctx, inputs)?;
    if !retrain
        && let Some(latest) = latest_model(ctx, ctx.as_of)?
        && latest.fingerprint == data.fingerprint
        && latest.feature_schema_hash == feature_schema_hash()
    {
        let from = latest
            .reused_from
            .unwrap_or_else(|| latest.dir.rsplit("snapshot=").next().and_then(|d| d.parse().ok()).unwrap_or(ctx.as_of));
        info!(from = %from, "labelled data unchanged since the latest model: reusing it (--retrain to refit)");
        let mut artifact = latest;
        artifact.reused = true;
        if artifact.dir != model_dir(ctx.as_of) {
            artifact.reused_from = Some(from);
        }
        return load_models(ctx, artifact);
    }
    train(ctx, &data)
}

fn load_models(ctx: &Context, mut artifact: ModelArtifact) -> Result<ModelArtifact> {
    let threads = cores();
    for t in &mut artifact.targets {
        for c in &mut t.candidates {
            let rel = format!("{}/{}", artifact.dir, c.file);
            let bytes = ctx.output.read_bytes(&rel)?;
            c.model = Some(Fitted::from_file(c.family, &bytes, threads)?);
        }
    }
    Ok(artifact)
}

/// Load the artifact trained for snapshot `s`, refusing one built on another feature schema.
pub fn load(ctx: &Context, s: NaiveDate) -> Result<ModelArtifact> {
    let rel = format!("{}/{MANIFEST}", model_dir(s));
    let artifact = read_manifest(ctx, s)?.ok_or_else(|| {
        Error::data(format!(
            "no model for snapshot {s} at {}/{rel}: run `retain train --as-of {s}` first",
            ctx.output.uri()
        ))
    })?;
    if artifact.feature_schema_hash != feature_schema_hash() {
        return Err(Error::data(format!(
            "the model at {}/{rel} was trained on feature schema {} but this build computes schema {}: retrain it",
            ctx.output.uri(),
            artifact.feature_schema_hash,
            feature_schema_hash()
        )));
    }
    load_models(ctx, artifact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_labelled_snapshot_of_some_users_is_their_rows_of_the_whole_snapshot() {
        let s = NaiveDate::from_ymd_opt(2026, 10, 21).unwrap();
        let h = 30;
        let inputs = crate::inputs::sample_inputs(s, s + Duration::days(h as i64), h);
        let whole = labelled_snapshot(&inputs, s, h).unwrap();
        let churned = whole.column("churned").unwrap().cast(&DataType::Int32).unwrap();
        assert!(churned.i32().unwrap().into_no_null_iter().any(|c| c == 1), "some users churned");
        let ids: Vec<&str> = whole.column("user_id").unwrap().str().unwrap().iter().flatten().collect();
        let some: Vec<&str> = ids.iter().copied().skip(1).step_by(4).chain(["nobody"]).collect();
        let users = df!("user_id" => &some).unwrap();
        let table = labelled_snapshot_of(&inputs, s, h, Some(&users)).unwrap();
        let keep: BooleanChunked = ids.iter().map(|id| some.contains(id)).collect();
        assert_eq!(table, whole.filter(&keep).unwrap());
        assert!(table.height() > 10 && table.height() < whole.height());
    }
}
