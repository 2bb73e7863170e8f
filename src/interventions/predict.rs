//! Predicting an arm's effect for users: the message type's uplift model with the arm's
//! channel appended, and nothing outside the type's support (users unlike anyone the type
//! was ever tried on get no prediction, so no plan rests on extrapolation).

use ndarray::{Array2, Axis};
use rayon::prelude::*;

use super::history::ENGAGEMENT_DAYS;
use super::policy::{Arm, Candidates};
use crate::models::uplift::{SentRate, Support, UpliftModel};

/// The encoded features with the channel appended as a categorical code (the last
/// column): one model per message type learns from all its channels and still predicts
/// per channel. The held-out arm's churn does not depend on the channel it would have
/// used, so pooling gives each model three times the control data of a per-channel one.
pub(super) fn with_channel(x: &Array2<f64>, channel: impl Fn(usize) -> f64) -> Array2<f64> {
    let (n, k) = x.dim();
    Array2::from_shape_fn((n, k + 1), |(i, j)| if j < k { x[[i, j]] } else { channel(i) })
}

/// One arm's predictions: the message type's model with the arm's channel, and nothing
/// outside the type's support.
pub(super) struct ArmPredictor<'a> {
    pub model: &'a UpliftModel,
    pub support: &'a Support,
    channel: f64,
}

impl<'a> ArmPredictor<'a> {
    pub(super) fn new(arm: &Arm, model: &'a UpliftModel, support: &'a Support) -> Self {
        ArmPredictor { model, support, channel: arm.channel_index().unwrap_or(0) as f64 }
    }

    pub(super) fn x(&self, x: &Array2<f64>) -> Array2<f64> {
        with_channel(x, |_| self.channel)
    }

    /// Predicted churn reduction for the rows where `wanted` holds, zero elsewhere.
    fn benefit(&self, x: &Array2<f64>, wanted: impl Fn(usize) -> bool) -> Vec<f64> {
        on_rows(self.channel, x, wanted, |x| self.model.effect(x).into_iter().map(|e| -e).collect())
    }
}

/// `predict` on the rows of `x` where `wanted` holds, with the channel code appended;
/// zero elsewhere (each row's prediction depends on that row alone).
fn on_rows(
    channel: f64,
    x: &Array2<f64>,
    wanted: impl Fn(usize) -> bool,
    predict: impl Fn(&Array2<f64>) -> Vec<f64>,
) -> Vec<f64> {
    let rows: Vec<usize> = (0..x.nrows()).filter(|&u| wanted(u)).collect();
    let mut out = vec![0.0; x.nrows()];
    if !rows.is_empty() {
        for (u, v) in rows.iter().zip(predict(&with_channel(&x.select(Axis(0), &rows), |_| channel))) {
            out[*u] = v;
        }
    }
    out
}

/// Each arm's predicted churn reduction for each user of `c` (rows of `x`) who may get it
/// ([`Candidates::allows`]) and is inside the arm's support; zero for the others, whom
/// [`uplift_policy`](super::policy::uplift_policy) never gives the arm, and for arms
/// without a model. The arms of one message type share its support model, which is
/// evaluated once.
pub(super) fn benefits(
    predictors: &[Option<ArmPredictor>],
    arms: &[Arm],
    c: &Candidates,
    x: &Array2<f64>,
    inside: &[Option<Vec<bool>>],
) -> Vec<Vec<f64>> {
    predictors
        .par_iter()
        .zip(arms)
        .zip(inside)
        .map(|((p, arm), inside)| match (p, inside) {
            (Some(p), Some(inside)) => p.benefit(x, |u| inside[u] && c.allows(u, arm)),
            _ => vec![0.0; x.nrows()],
        })
        .collect()
}

/// An arm's predicted unsubscribe probability for the rows of `x` where `wanted` holds
/// (zero elsewhere, and everywhere without a model).
pub(super) fn sent_rates(model: Option<&SentRate>, arm: &Arm, x: &Array2<f64>, wanted: &[bool]) -> Vec<f32> {
    let Some(model) = model else { return vec![0.0; x.nrows()] };
    let channel = arm.channel_index().unwrap_or(0) as f64;
    on_rows(channel, x, |u| wanted[u], |x| model.predict(x)).into_iter().map(|p| p.clamp(0.0, 1.0) as f32).collect()
}

/// An arm's predicted active days gained in the [`ENGAGEMENT_DAYS`] after a send, for
/// the rows of `x` where `wanted` holds (zero elsewhere, and everywhere without a model).
pub(super) fn active_days(model: Option<&UpliftModel>, arm: &Arm, x: &Array2<f64>, wanted: &[bool]) -> Vec<f32> {
    let Some(model) = model else { return vec![0.0; x.nrows()] };
    let channel = arm.channel_index().unwrap_or(0) as f64;
    on_rows(channel, x, |u| wanted[u], |x| model.effect(x))
        .into_iter()
        .map(|e| (e * ENGAGEMENT_DAYS as f64) as f32)
        .collect()
}

/// Per arm, which rows of `x` lie inside its message type's support (None for arms
/// without a model). The arms of one type share its support model, evaluated once.
pub(super) fn support_of_arms(predictors: &[Option<ArmPredictor>], x: &Array2<f64>) -> Vec<Option<Vec<bool>>> {
    let mut supports: Vec<&Support> = Vec::new();
    for p in predictors.iter().flatten() {
        if !supports.iter().any(|s| std::ptr::eq(*s, p.support)) {
            supports.push(p.support);
        }
    }
    let inside: Vec<Vec<bool>> = supports.par_iter().map(|s| s.contains(x)).collect();
    predictors
        .iter()
        .map(|p| {
            p.as_ref().map(|p| {
                let k = supports.iter().position(|s| std::ptr::eq(*s, p.support)).expect("collected above");
                inside[k].clone()
            })
        })
        .collect()
}
