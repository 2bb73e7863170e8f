//! The learners of a message's effect on one experiment: the T-learner's two outcome
//! models, the DR-learner's cross-fitted pseudo-outcome regression, the assignment
//! propensity both are weighted by, and the rate of an outcome only a send can cause.

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::experiment::{Experiment, Fitting, MIN_ARM_ROWS, fit_on, part, select};
use crate::error::{Error, Result};
use crate::models::classifier::Classifier;
use crate::models::gbdt::{GbdtModel, Objective};

/// Which learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Learner {
    T,
    Dr,
}

impl Learner {
    pub(crate) const ALL: [Learner; 2] = [Learner::T, Learner::Dr];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Learner::T => "t_learner",
            Learner::Dr => "dr_learner",
        }
    }
}

/// A fitted uplift model.
#[derive(Serialize, Deserialize)]
pub(crate) struct UpliftModel {
    pub learner: Learner,
    /// Churn probability when not sent, and when sent (the T-learner's two fits; also
    /// the outcome models of the doubly robust policy evaluation).
    pub control: GbdtModel,
    pub treated: GbdtModel,
    /// The DR-learner's effect regression.
    pub effect: Option<GbdtModel>,
    /// The DR-learner's share of the T-learner's effect ([`t_share`]; 0 for the T-learner
    /// and in models saved before it).
    #[serde(default)]
    pub t_share: f64,
    /// The T-learner's mean effect minus the DR-learner's over the rows the model was
    /// fitted on: taken off the T-learner's part, so that the share moves who ranks first
    /// within the message type and never the type's level.
    #[serde(default)]
    pub t_offset: f64,
}

impl UpliftModel {
    /// Effect of sending on the outcome's probability, per row.
    pub(crate) fn effect(&self, x: &Array2<f64>) -> Vec<f64> {
        let Some(dr) = self.regressed(x) else { return self.difference(x) };
        if self.t_share == 0.0 {
            return dr;
        }
        let w = self.t_share;
        dr.into_iter().zip(self.difference(x)).map(|(d, t)| (1.0 - w) * d + w * (t - self.t_offset)).collect()
    }

    /// The DR-learner's regression alone (None for the T-learner).
    fn regressed(&self, x: &Array2<f64>) -> Option<Vec<f64>> {
        self.effect.as_ref().map(|m| m.predict(x).into_iter().map(|v| v.clamp(-1.0, 1.0)).collect())
    }

    /// The T-learner's effect: the outcome models' difference.
    fn difference(&self, x: &Array2<f64>) -> Vec<f64> {
        self.treated.predict(x).into_iter().zip(self.control.predict(x)).map(|(a, b)| a - b).collect()
    }
}

/// The share of the T-learner's effect in the DR-learner's, for an experiment of `rows`
/// decisions: none up to [`T_SHARE_FROM`], [`T_SHARE_MAX`] from [`T_SHARE_FULL`], and
/// growing with the logarithm of the rows between.
///
/// Why: the T-learner's two outcome models carry what predicts the outcome in each arm,
/// which the DR-learner's regression on noisy pseudo-outcomes partly misses; but their
/// difference is noise where the arms are small. Measured (BENCHMARKS.md, "A share of the
/// T-learner on large histories"): a quarter of it raised the plan on all four 100k-user
/// worlds of both effect families (message types of 50,000–80,000 decisions), and lowered
/// it on the 30k-user worlds (15,000–24,000) and at every run seed on the 8k-user ones.
pub(crate) fn t_share(rows: usize) -> f64 {
    if rows <= T_SHARE_FROM {
        return 0.0;
    }
    let reached = (rows as f64 / T_SHARE_FROM as f64).ln() / (T_SHARE_FULL as f64 / T_SHARE_FROM as f64).ln();
    T_SHARE_MAX * reached.min(1.0)
}

/// The largest share of the T-learner ([`t_share`]).
const T_SHARE_MAX: f64 = 0.25;
/// The most decisions at which the DR-learner is its regression alone ([`t_share`]).
const T_SHARE_FROM: usize = 25_000;
/// The fewest decisions that get [`T_SHARE_MAX`] ([`t_share`]).
const T_SHARE_FULL: usize = 50_000;

/// The probability of an outcome that only a send can cause, given the features: an
/// unsubscribe (a held-out user got nothing to unsubscribe from, so the effect of sending
/// is the rate among the sent). Fitted on the sent rows; a constant (their rate) where
/// they are too few, or the outcome too rare, for a model.
#[derive(Serialize, Deserialize)]
pub(crate) enum SentRate {
    Constant(f64),
    Model(GbdtModel),
}

/// The fewest positive outcomes a [`SentRate`] model is fitted on.
const MIN_SENT_EVENTS: usize = 20;

impl SentRate {
    pub(crate) fn fit(e: &Experiment, categorical: &[usize], fitting: Fitting) -> Result<SentRate> {
        let sent: Vec<usize> = (0..e.len()).filter(|&i| e.treated[i]).collect();
        let events = sent.iter().filter(|&&i| e.outcome[i] > 0.5).count();
        let rate = events as f64 / sent.len().max(1) as f64;
        if sent.len() < MIN_ARM_ROWS || events < MIN_SENT_EVENTS || sent.len() - events < MIN_SENT_EVENTS {
            return Ok(SentRate::Constant(rate));
        }
        fit_on(Objective::Binary, e.x, e.outcome, None, &sent, categorical, fitting).map(SentRate::Model)
    }

    pub(crate) fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        match self {
            SentRate::Constant(r) => vec![*r; x.nrows()],
            SentRate::Model(m) => m.predict(x),
        }
    }
}

/// Fit `learner` on an experiment.
pub(crate) fn fit(learner: Learner, e: &Experiment, categorical: &[usize], fitting: Fitting) -> Result<UpliftModel> {
    Ok(fit_each(&[learner], e, categorical, fitting)?.pop().expect("one learner"))
}

/// Fit each of `learners` on an experiment, in that order. The learners' outcome models
/// are the same fits (same rows, weights and settings), so they are fitted once and shared.
pub(crate) fn fit_each(
    learners: &[Learner],
    e: &Experiment,
    categorical: &[usize],
    fitting: Fitting,
) -> Result<Vec<UpliftModel>> {
    let n = e.len();
    let treated_rows: Vec<usize> = (0..n).filter(|&i| e.treated[i]).collect();
    let control_rows: Vec<usize> = (0..n).filter(|&i| !e.treated[i]).collect();
    if treated_rows.len() < MIN_ARM_ROWS || control_rows.len() < MIN_ARM_ROWS {
        return Err(Error::data(format!(
            "an experiment needs {MIN_ARM_ROWS} rows in each arm (has {} sent, {} held out)",
            treated_rows.len(),
            control_rows.len()
        )));
    }
    let w = e.weights();
    // The fits are independent: on the pool together, so that the message types' fits
    // fill both cores until the last one ends. Each is deterministic on its one thread.
    let want_dr = learners.contains(&Learner::Dr);
    let ((control, treated), dr) = rayon::join(
        || {
            rayon::join(
                || fit_on(e.outcome_objective(), e.x, e.outcome, Some(&w), &control_rows, categorical, fitting),
                || fit_on(e.outcome_objective(), e.x, e.outcome, Some(&w), &treated_rows, categorical, fitting),
            )
        },
        || want_dr.then(|| fit_dr(e, &w, categorical, fitting)).transpose(),
    );
    let (control, treated, dr) = (control?, treated?, dr?);
    let share = t_share(n);
    let mut models: Vec<UpliftModel> = learners
        .iter()
        .map(|&learner| {
            let (effect, t_share) = match learner {
                Learner::T => (None, 0.0),
                Learner::Dr => (dr.clone(), share),
            };
            UpliftModel { learner, control: control.clone(), treated: treated.clone(), effect, t_share, t_offset: 0.0 }
        })
        .collect();
    if let Some(m) = models.iter_mut().find(|m| m.t_share > 0.0) {
        let dr = m.regressed(e.x).unwrap_or_default();
        let gap: f64 = m.difference(e.x).into_iter().zip(dr).map(|(t, d)| t - d).sum();
        m.t_offset = gap / n as f64;
    }
    Ok(models)
}

/// The probability of the arm each row got, given its features, within its campaign:
/// a classifier of "sent" against "held out". The logged propensity also contains the
/// chance of being picked for the campaign at all, which is about who was eligible, not
/// about how the arms were assigned; weighting outcome models by it would let a handful
/// of rarely-eligible users dominate the fits.
pub(crate) fn assignment_propensity(
    x: &Array2<f64>,
    treated: &[bool],
    categorical: &[usize],
    fitting: Fitting,
) -> Result<Vec<f64>> {
    let sent = treated.iter().filter(|t| **t).count();
    let share = sent as f64 / treated.len().max(1) as f64;
    let p: Vec<f64> = if sent < 20 || treated.len() - sent < 20 {
        vec![share; treated.len()]
    } else {
        let y: Vec<f64> = treated.iter().map(|&t| f64::from(u8::from(t))).collect();
        let all: Vec<usize> = (0..treated.len()).collect();
        fit_on(Objective::Binary, x, &y, None, &all, categorical, fitting)?.predict(x)
    };
    Ok(p.into_iter().zip(treated).map(|(p, &t)| if t { p } else { 1.0 - p }.clamp(0.05, 0.95)).collect())
}

/// The DR-learner's second stage on cross-fitted pseudo-outcomes.
fn fit_dr(e: &Experiment, w: &[f64], categorical: &[usize], fitting: Fitting) -> Result<GbdtModel> {
    let n = e.len();
    let t: Vec<f64> = e.treated.iter().map(|&t| f64::from(u8::from(t))).collect();
    // Each fold's pseudo-outcomes, the folds and their three fits side by side.
    let folds: Vec<(Vec<usize>, Vec<f64>)> = (0..2)
        .into_par_iter()
        .map(|fold| {
            let (train, here): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| part(i, 2, 2) != fold);
            let arm = |sent: bool| train.iter().copied().filter(|&i| e.treated[i] == sent).collect::<Vec<usize>>();
            let ((mu0, mu1), ps) = rayon::join(
                || {
                    rayon::join(
                        || fit_on(e.outcome_objective(), e.x, e.outcome, Some(w), &arm(false), categorical, fitting),
                        || fit_on(e.outcome_objective(), e.x, e.outcome, Some(w), &arm(true), categorical, fitting),
                    )
                },
                || fit_on(Objective::Binary, e.x, &t, None, &train, categorical, fitting),
            );
            let (mu0, mu1, ps) = (mu0?, mu1?, ps?);
            let xh = select(e.x, &here);
            let (m0, m1, p) = (mu0.predict(&xh), mu1.predict(&xh), ps.predict(&xh));
            let pseudo = here
                .iter()
                .enumerate()
                .map(|(j, &i)| {
                    let p = p[j].clamp(0.05, 0.95);
                    let y = e.outcome[i];
                    m1[j] - m0[j] + if e.treated[i] { (y - m1[j]) / p } else { -(y - m0[j]) / (1.0 - p) }
                })
                .collect();
            Ok((here, pseudo))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut pseudo = vec![0.0; n];
    for (here, values) in folds {
        for (i, v) in here.into_iter().zip(values) {
            pseudo[i] = v;
        }
    }
    let all: Vec<usize> = (0..n).collect();
    fit_on(Objective::Regression, e.x, &pseudo, None, &all, categorical, fitting)
}
