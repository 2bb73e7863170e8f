//! Fitting every (target × family) concurrently, calibrating each on the validation
//! snapshot, and choosing each target's champion.
//!
//! Every fit runs on a pool sized to the machine, LightGBM with one thread per fit, so the
//! two never oversubscribe the cores.

use std::time::Instant;

use rayon::prelude::*;
use tracing::info;

use super::data::{TrainingData, labels_of, weights_of};
use crate::config::Training;
use crate::error::{Error, Result};
use crate::features;
use crate::models::gbdt::{GbdtModel, Objective, Rows};
use crate::models::logistic::LogisticModel;
use crate::models::metrics::{evaluate, reliability};
use crate::models::{Calibration, Candidate, Encoder, Family, Fitted, Target, TargetModels, champion, cores};

/// Fit, calibrate and evaluate one (target, family).
fn fit_candidate(
    training: &Training,
    data: &TrainingData,
    target: Target,
    family: Family,
    threads: usize,
) -> Result<Candidate> {
    let started = Instant::now();
    let encoder = Encoder::fit(&data.train, family.encoding(), &features::specs())?;
    let x = encoder.transform(&data.train)?;
    let y = labels_of(&data.train, target)?;
    let weights = weights_of(&data.train)?;
    let xv = encoder.transform(&data.valid)?;
    let yv = labels_of(&data.valid, target)?;
    if y.iter().all(|&v| v == y[0]) {
        return Err(Error::data(format!("the {} label has a single class in the training snapshots", target.as_str())));
    }
    let (model, name) = match family {
        Family::Logistic => {
            let m = LogisticModel::fit_weighted(&x, &y, weights.as_deref(), training.l2, training.max_iterations)?;
            (Fitted::Logistic(m), "logistic-l2".to_string())
        }
        Family::Gbdt => {
            let as_f64 = |y: &[i32]| y.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
            let (y, yv) = (as_f64(&y), as_f64(&yv));
            let m = GbdtModel::fit_rows(
                Objective::Binary,
                &Rows { x: &x, y: &y, weights: weights.as_deref() },
                &Rows { x: &xv, y: &yv, weights: None },
                &encoder.categorical_columns(),
                &training.gbdt,
                threads,
            )?;
            let name = format!("gbdt-lightgbm/{}-rounds", m.best_iteration);
            // Its validation rows are predicted with the fit's threads, as the fits beside
            // it use (LightGBM's thread count is process-wide); all cores once they are done.
            (Fitted::Gbdt(m), name)
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

/// Fit every (target × family) concurrently; per target, its candidates and champion.
pub(super) fn fit_all(training: &Training, data: &TrainingData) -> Result<Vec<TargetModels>> {
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
        jobs.par_iter().map(|&(t, f)| fit_candidate(training, data, t, f, per_fit)).collect::<Result<Vec<_>>>()
    })?;
    for candidate in &mut fitted {
        if let Some(Fitted::Gbdt(m)) = &mut candidate.model {
            m.predict_threads = threads;
        }
    }
    let mut targets = Vec::new();
    for target in Target::ALL {
        let (candidates, rest): (Vec<Candidate>, Vec<Candidate>) =
            fitted.into_iter().partition(|c| c.file.starts_with(&format!("{}.", target.as_str())));
        fitted = rest;
        let losses: Vec<f64> = candidates.iter().map(|c| c.validation.log_loss).collect();
        let champion =
            champion(&losses).map(|i| candidates[i].family).ok_or_else(|| Error::internal("no candidates"))?;
        targets.push(TargetModels { target, champion, candidates });
    }
    Ok(targets)
}
