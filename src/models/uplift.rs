//! Per-user message effects learned from randomised campaigns (uplift models).
//!
//! Two learners, both on the project's GBDT, so that the run can choose by evidence:
//! - the **T-learner** fits the churn probability of treated rows and of held-out rows
//!   separately; the effect is the difference. Simple and strong when both arms are
//!   large, but the difference of two noisy fits is noisier than either.
//! - the **DR-learner** (doubly robust, Kennedy 2020) regresses a pseudo-outcome whose
//!   mean given x is the effect: the outcome models' difference corrected by the
//!   inverse-propensity-weighted residuals. Nuisance models (both outcome models and the
//!   treatment propensity within the campaign) are cross-fitted on two halves, so no row
//!   corrects its own fit.
//!
//! Rows are weighted by the inverse probability of the arm they got (sent or held out),
//! given their features: campaigns did not assign their arms uniformly (some held out
//! half, others a fifth), and unweighted fits would confuse who was sent with what
//! sending did.
//!
//! For flat tables of several arms (`retain table uplift`), [`PooledModel`] is one outcome
//! model over all arms, the arm a feature (an S-learner).
//!
//! The effect is `P(churn | sent) − P(churn | not sent)`: negative keeps the user.
//! [`qini`] scores a learner on rows it never saw.

use ndarray::{Array2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::classifier::Classifier;
use super::gbdt::{GbdtModel, GbdtParams, Objective, Rows};
use crate::error::{Error, Result};

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

/// Rows of one experiment: features, arm, outcome (0/1, or a share in [0, 1]), and the
/// probability of the arm each row got.
pub(crate) struct Experiment<'a> {
    pub x: &'a Array2<f64>,
    pub treated: &'a [bool],
    pub outcome: &'a [f64],
    pub propensity: &'a [f64],
}

impl Experiment<'_> {
    fn len(&self) -> usize {
        self.treated.len()
    }

    /// How the outcome models fit the outcome: a probability where it is 0 or 1, a mean
    /// share (cross-entropy) where it is a share in [0, 1] (active days of a window).
    fn outcome_objective(&self) -> Objective {
        if self.outcome.iter().all(|&y| y == 0.0 || y == 1.0) { Objective::Binary } else { Objective::CrossEntropy }
    }

    /// Inverse-propensity weights, normalised to mean 1 within each arm.
    pub(crate) fn weights(&self) -> Vec<f64> {
        let raw: Vec<f64> = self.propensity.iter().map(|p| 1.0 / p.clamp(0.01, 1.0)).collect();
        let mut sum = [0.0; 2];
        let mut n = [0usize; 2];
        for (w, t) in raw.iter().zip(self.treated) {
            sum[*t as usize] += w;
            n[*t as usize] += 1;
        }
        raw.iter().zip(self.treated).map(|(w, t)| w * n[*t as usize] as f64 / sum[*t as usize].max(1e-12)).collect()
    }
}

/// How the effect models are fitted: LightGBM's threads per fit and its seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fitting {
    pub(crate) threads: usize,
    /// LightGBM's seed (bagging and feature sampling): the run's, through
    /// [`crate::models::gbdt::lightgbm_seed`].
    pub(crate) seed: u64,
}

/// GBDT settings for the effect models: smaller trees than the churn model's, because an
/// arm has thousands of rows rather than millions.
fn params(seed: u64) -> GbdtParams {
    GbdtParams {
        num_rounds: 300,
        learning_rate: 0.05,
        num_leaves: 4,
        min_data_in_leaf: 200,
        feature_fraction: 0.8,
        bagging_fraction: 0.8,
        lambda_l2: 20.0,
        early_stopping_rounds: 30,
        seed: Some(seed),
        linear_leaves: None,
    }
}

/// The fewest rows per arm a learner is fitted on.
pub(crate) const MIN_ARM_ROWS: usize = 100;

/// Where an arm was tried: a classifier of "this user got a decision of the arm" against
/// the background population, the score above which 95% of the tried users lie, and the
/// share of the background at or above it. Effects are only predicted where the arm was
/// tried; elsewhere a model extrapolates and its noise would look like opportunity to
/// the allocation.
///
/// A population scored later than the history (the users at S) can sit lower on the
/// classifier's scale as a whole: features that grow with the calendar (tenure, counts
/// over 365 days) are beyond the range the classifier saw. So the cut is never stricter
/// than the one that keeps the historical share of a population inside; it is a ranking
/// within the population, not a fixed score.
#[derive(Serialize, Deserialize)]
pub(crate) struct Support {
    pub model: GbdtModel,
    pub threshold: f64,
    pub background_inside: f64,
}

/// The share of tried users allowed to fall outside the support.
const SUPPORT_TAIL: f64 = 0.05;

impl Support {
    pub(crate) fn fit(
        tried: &Array2<f64>,
        background: &Array2<f64>,
        categorical: &[usize],
        fitting: Fitting,
    ) -> Result<Support> {
        let x = ndarray::concatenate(Axis(0), &[tried.view(), background.view()]).map_err(Error::internal)?;
        let y: Vec<f64> = (0..x.nrows()).map(|i| f64::from(u8::from(i < tried.nrows()))).collect();
        let all: Vec<usize> = (0..x.nrows()).collect();
        let model = fit_on(Objective::Binary, &x, &y, None, &all, categorical, fitting)?;
        let mut scores = model.predict(tried);
        scores.sort_by(f64::total_cmp);
        let threshold = scores.get((scores.len() as f64 * SUPPORT_TAIL) as usize).copied().unwrap_or(0.0);
        let inside = model.predict(background).iter().filter(|&&p| p >= threshold).count();
        let background_inside = inside as f64 / background.nrows().max(1) as f64;
        Ok(Support { model, threshold, background_inside })
    }

    /// Which rows of a population lie inside the support: those at or above the fitted
    /// threshold, or within the population's top `background_inside` share by score.
    pub(crate) fn contains(&self, population: &Array2<f64>) -> Vec<bool> {
        let scores = self.scores(population);
        let cut = self.cut(&scores);
        scores.into_iter().map(|p| p >= cut).collect()
    }

    /// The support classifier's score of each row.
    pub(crate) fn scores(&self, x: &Array2<f64>) -> Vec<f64> {
        self.model.predict(x)
    }

    /// The score at or above which a row of the population with these `scores` is inside
    /// (see [`Support::contains`]): a property of the whole population, so a part of it
    /// (a shard) is cut where the whole is.
    pub(crate) fn cut(&self, scores: &[f64]) -> f64 {
        let mut sorted = scores.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let keep = (self.background_inside * sorted.len() as f64).ceil() as usize;
        match keep {
            0 => self.threshold,
            k => sorted[k.min(sorted.len()) - 1].min(self.threshold),
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
}

impl UpliftModel {
    /// Effect of sending on the outcome's probability, per row.
    pub(crate) fn effect(&self, x: &Array2<f64>) -> Vec<f64> {
        match &self.effect {
            Some(m) => m.predict(x).into_iter().map(|v| v.clamp(-1.0, 1.0)).collect(),
            None => self.treated.predict(x).into_iter().zip(self.control.predict(x)).map(|(a, b)| a - b).collect(),
        }
    }
}

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

/// One outcome model over every arm of an experiment, the arm a categorical feature (the
/// S-learner): an arm's effect is the prediction with that arm minus the prediction with
/// the control. Where the pipeline's learners see one arm and the control at a time, this
/// one learns from every arm what predicts the outcome at all, so a small arm's rows go
/// to its difference from the others only; trees that never split on the arm give it no
/// effect rather than noise. Leaves are linear (effects that grow with a count, like past
/// turnout, are lines that a few leaves would cut into steps).
pub(crate) struct PooledModel {
    model: GbdtModel,
}

/// GBDT settings of [`PooledModel`]: small trees with linear leaves, many rows per leaf
/// (measured on the public GOTV experiment, BENCHMARKS.md).
fn pooled_params(seed: u64) -> GbdtParams {
    GbdtParams {
        num_rounds: 200,
        learning_rate: 0.05,
        num_leaves: 7,
        min_data_in_leaf: 500,
        feature_fraction: 1.0,
        bagging_fraction: 1.0,
        lambda_l2: 0.0,
        early_stopping_rounds: 30,
        seed: Some(seed),
        linear_leaves: Some(1.0),
    }
}

impl PooledModel {
    /// Fit on rows `x` whose arm is `arm` (0 is the control) and outcome `outcome` (0 or 1).
    pub(crate) fn fit(
        x: &Array2<f64>,
        arm: &[usize],
        outcome: &[f64],
        categorical: &[usize],
        fitting: Fitting,
    ) -> Result<PooledModel> {
        let with_arm = Self::with_arm(x, |i| arm[i]);
        let mut categorical = categorical.to_vec();
        categorical.push(x.ncols());
        let rows: Vec<usize> = (0..x.nrows()).collect();
        let (fit, stop): (Vec<usize>, Vec<usize>) = rows.iter().partition(|&&i| part(i, 1, 5) != 0);
        let pick = |idx: &[usize]| idx.iter().map(|&i| outcome[i]).collect::<Vec<f64>>();
        let model = GbdtModel::fit_rows(
            Objective::Binary,
            &Rows { x: &select(&with_arm, &fit), y: &pick(&fit), weights: None },
            &Rows { x: &select(&with_arm, &stop), y: &pick(&stop), weights: None },
            &categorical,
            &pooled_params(fitting.seed),
            fitting.threads,
        )?;
        Ok(PooledModel { model })
    }

    /// The effect of `arm` against the control on each row of `x`.
    pub(crate) fn effect(&self, x: &Array2<f64>, arm: usize) -> Vec<f64> {
        let with = self.model.predict(&Self::with_arm(x, |_| arm));
        let without = self.model.predict(&Self::with_arm(x, |_| 0));
        with.into_iter().zip(without).map(|(a, b)| a - b).collect()
    }

    fn with_arm(x: &Array2<f64>, arm: impl Fn(usize) -> usize) -> Array2<f64> {
        let mut out = Array2::<f64>::zeros((x.nrows(), x.ncols() + 1));
        out.slice_mut(ndarray::s![.., ..x.ncols()]).assign(x);
        for i in 0..x.nrows() {
            out[[i, x.ncols()]] = arm(i) as f64;
        }
        out
    }
}

/// A deterministic split of row `i` into one of `parts`, unrelated to row order.
fn part(i: usize, salt: u64, parts: u64) -> usize {
    (xxhash_rust::xxh3::xxh3_64_with_seed(&(i as u64).to_le_bytes(), salt) % parts) as usize
}

fn select(x: &Array2<f64>, rows: &[usize]) -> Array2<f64> {
    x.select(Axis(0), rows)
}

/// Fit `objective` on `rows` of `x` with early stopping on a fifth of them.
fn fit_on(
    objective: Objective,
    x: &Array2<f64>,
    y: &[f64],
    w: Option<&[f64]>,
    rows: &[usize],
    categorical: &[usize],
    fitting: Fitting,
) -> Result<GbdtModel> {
    let (fit, stop): (Vec<usize>, Vec<usize>) = rows.iter().partition(|&&i| part(i, 1, 5) != 0);
    let pick = |idx: &[usize], v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let (xf, xs) = (select(x, &fit), select(x, &stop));
    let (yf, ys) = (pick(&fit, y), pick(&stop, y));
    let (wf, ws) = (w.map(|w| pick(&fit, w)), w.map(|w| pick(&stop, w)));
    GbdtModel::fit_rows(
        objective,
        &Rows { x: &xf, y: &yf, weights: wf.as_deref() },
        &Rows { x: &xs, y: &ys, weights: ws.as_deref() },
        categorical,
        &params(fitting.seed),
        fitting.threads,
    )
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
    learners
        .iter()
        .map(|&learner| {
            let effect = match learner {
                Learner::T => None,
                Learner::Dr => dr.clone(),
            };
            Ok(UpliftModel { learner, control: control.clone(), treated: treated.clone(), effect })
        })
        .collect()
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

/// The DR-learner unless the T-learner's Qini beats it by two bootstrap standard errors.
/// DR is the default because its effects are unbiased where effects are small and the
/// arms differ in who they hold, which the difference of two separately regularised
/// T-learner fits is not; a Qini gap within the noise of the evaluation rows is no reason
/// to give that up.
pub(crate) fn choose_learner(qini_t: f64, qini_dr: f64, difference_se: f64) -> Learner {
    if qini_t - qini_dr > 2.0 * difference_se { Learner::T } else { Learner::Dr }
}

/// How the learners did on rows they never saw, and the one chosen.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LearnerChoice {
    /// Summed Qini of each learner, in [`Learner::ALL`] order.
    pub(crate) qini: [f64; 2],
    /// Bootstrap standard error of the T-learner's summed Qini minus the DR-learner's.
    pub(crate) difference_se: f64,
    pub(crate) chosen: Learner,
}

/// Choose the learner by evidence, as the pipeline and `retain table uplift` both do: each
/// learner's Qini summed over held-out experiments (an arm's later decisions, or the
/// held-out fifth of an analyst's table), given with each learner's predicted benefit on
/// their rows (in [`Learner::ALL`] order), then [`choose_learner`].
/// `seed` draws the bootstrap.
pub(crate) fn select_learner(evaluations: &[(Experiment, [&[f64]; 2])], seed: u64) -> LearnerChoice {
    let qini_of = |k: usize| -> f64 { evaluations.iter().map(|(e, b)| qini(b[k], e, 20).qini).sum() };
    let qini = [qini_of(0), qini_of(1)];
    let difference_se = qini_difference_se(evaluations, seed);
    LearnerChoice { qini, difference_se, chosen: choose_learner(qini[0], qini[1], difference_se) }
}

/// Bootstrap standard error (rows resampled within each experiment) of the summed Qini of
/// the T-learner minus the DR-learner's, over experiments given with each learner's
/// predicted benefit on their rows (in [`Learner::ALL`] order); `seed` draws the resamples.
fn qini_difference_se(evaluations: &[(Experiment, [&[f64]; 2])], seed: u64) -> f64 {
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let rounds = 100;
    let mut diffs = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut d = 0.0;
        for (e, [t, dr]) in evaluations {
            let n = e.len();
            let idx: Vec<usize> = (0..n).map(|_| r.random_range(0..n)).collect();
            let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
            let treated: Vec<bool> = idx.iter().map(|&i| e.treated[i]).collect();
            let (outcome, propensity) = (pick(e.outcome), pick(e.propensity));
            let resampled = Experiment { x: e.x, treated: &treated, outcome: &outcome, propensity: &propensity };
            d += qini(&pick(t), &resampled, 20).qini - qini(&pick(dr), &resampled, 20).qini;
        }
        diffs.push(d);
    }
    let mean = diffs.iter().sum::<f64>() / rounds as f64;
    (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (rounds - 1) as f64).sqrt()
}

/// A Qini curve: the estimated churn events prevented among the top share of users ranked
/// by predicted benefit, per user of the experiment's (weighted) population.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Qini {
    /// (share of users targeted, churn prevented per user of the population).
    pub curve: Vec<(f64, f64)>,
    /// Area between the curve and random targeting (the straight line to the full-send
    /// gain): positive when the ranking beats random.
    pub qini: f64,
    /// Area under the curve.
    pub auuc: f64,
}

/// The Qini curve of `benefit` (predicted churn prevented: higher = target first) on an
/// experiment the model did not see. Gains are inverse-propensity weighted differences of
/// churn rates between the arms within each top share.
pub(crate) fn qini(benefit: &[f64], e: &Experiment, points: usize) -> Qini {
    let n = benefit.len();
    let w = e.weights();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| benefit[b].total_cmp(&benefit[a]).then(a.cmp(&b)));
    let total_w: f64 = w.iter().sum::<f64>().max(1e-12);
    // Running weighted sums: [control, treated] of weight and weighted churn.
    let (mut ws, mut wy) = ([0.0f64; 2], [0.0f64; 2]);
    let mut curve = vec![(0.0, 0.0)];
    let mut next = 1;
    let mut seen_w = 0.0;
    for &i in &order {
        let arm = e.treated[i] as usize;
        ws[arm] += w[i];
        wy[arm] += w[i] * e.outcome[i];
        seen_w += w[i];
        while next <= points && seen_w >= total_w * next as f64 / points as f64 - 1e-9 {
            let gain =
                if ws[0] > 0.0 && ws[1] > 0.0 { (wy[0] / ws[0] - wy[1] / ws[1]) * seen_w / total_w } else { 0.0 };
            curve.push((seen_w / total_w, gain));
            next += 1;
        }
    }
    let full = curve.last().map_or(0.0, |c| c.1);
    let (mut auuc, mut random) = (0.0, 0.0);
    for pair in curve.windows(2) {
        let dx = pair[1].0 - pair[0].0;
        auuc += dx * (pair[0].1 + pair[1].1) / 2.0;
        random += dx * full * (pair[0].0 + pair[1].0) / 2.0;
    }
    Qini { curve, qini: auuc - random, auuc }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const FITTING: Fitting = Fitting { threads: 1, seed: 17 };

    /// A randomised experiment where sending cuts churn by 0.2 for x0 > 0.5 and raises
    /// it by 0.1 otherwise; x1 is noise; the treated share depends on x1 (known).
    /// Features, sent, churned, propensity of the arm got, true effect.
    type Rows = (Array2<f64>, Vec<bool>, Vec<f64>, Vec<f64>, Vec<f64>);

    fn experiment(n: usize, seed: u64) -> Rows {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((n, 2), |_| r.random::<f64>());
        let mut treated = Vec::new();
        let mut y = Vec::new();
        let mut prop = Vec::new();
        let mut tau = Vec::new();
        for i in 0..n {
            let e = if x[[i, 1]] > 0.5 { 0.7 } else { 0.4 };
            let t = r.random::<f64>() < e;
            let effect = if x[[i, 0]] > 0.5 { -0.2 } else { 0.1 };
            let p = 0.35 + if t { effect } else { 0.0 };
            treated.push(t);
            y.push(f64::from(u8::from(r.random::<f64>() < p)));
            prop.push(if t { e } else { 1.0 - e });
            tau.push(effect);
        }
        (x, treated, y, prop, tau)
    }

    #[test]
    fn both_learners_find_who_the_message_helps_and_the_qini_says_so() {
        let (x, t, y, p, _) = experiment(8000, 1);
        let train = Experiment { x: &x, treated: &t, outcome: &y, propensity: &p };
        let (xv, tv, yv, pv, tau) = experiment(8000, 2);
        let valid = Experiment { x: &xv, treated: &tv, outcome: &yv, propensity: &pv };
        for learner in Learner::ALL {
            let m = fit(learner, &train, &[], FITTING).unwrap();
            let effect = m.effect(&xv);
            let right = effect.iter().zip(&tau).filter(|(e, t)| (**e < 0.0) == (**t < 0.0)).count();
            assert!(right as f64 > 0.85 * tau.len() as f64, "{learner:?}: {right} of {} signs right", tau.len());
            let benefit: Vec<f64> = effect.iter().map(|e| -e).collect();
            let q = qini(&benefit, &valid, 20);
            // Targeting the helped half prevents about 0.2 × 0.5 = 0.1 churn per user.
            let peak = q.curve.iter().map(|c| c.1).fold(f64::MIN, f64::max);
            assert!((peak - 0.1).abs() < 0.03, "{learner:?}: peak {peak}");
            assert!(q.qini > 0.02, "{learner:?}: qini {}", q.qini);
            let random: Vec<f64> = (0..xv.nrows()).map(|i| part(i, 9, 1000) as f64).collect();
            assert!(qini(&random, &valid, 20).qini.abs() < 0.02, "a random ranking has no Qini");
        }
    }

    /// Users with x0 > 0.7 were tried, on snapshots where a calendar feature (x1, say
    /// tenure) ran from 0 to 1. Tonight's population has the same users, later: x1 from
    /// 1 to 2, beyond anything the classifier saw.
    #[test]
    fn the_support_keeps_the_users_like_the_tried_ones_in_a_later_population() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let background = Array2::from_shape_fn((20_000, 2), |_| r.random::<f64>());
        let tried_rows: Vec<usize> = (0..background.nrows()).filter(|&i| background[[i, 0]] > 0.7).collect();
        let tried = background.select(Axis(0), &tried_rows);
        let support = Support::fit(&tried, &background, &[], FITTING).unwrap();
        assert!((support.background_inside - 0.3).abs() < 0.06, "about the tried share: {}", support.background_inside);

        let later = Array2::from_shape_fn((5_000, 2), |(_, j)| r.random::<f64>() + j as f64);
        let inside = support.contains(&later);
        let like_tried = (0..later.nrows()).filter(|&i| later[[i, 0]] > 0.7);
        let kept = like_tried.clone().filter(|&i| inside[i]).count() as f64 / like_tried.count() as f64;
        let others = (0..later.nrows()).filter(|&i| later[[i, 0]] < 0.6 && inside[i]).count();
        assert!(kept > 0.9, "users like the tried ones are inside: {kept}");
        assert!(others < 50, "users unlike them are not: {others}");

        // However low the population sits on the classifier's scale, its top share is inside.
        let strict = Support { threshold: 2.0, ..support };
        let inside = strict.contains(&later).iter().filter(|&&i| i).count() as f64 / later.nrows() as f64;
        assert!((inside - strict.background_inside).abs() < 0.01, "{inside}");
    }

    #[test]
    fn the_seed_reaches_the_fits_and_the_bootstrap() {
        let (x, t, y, p, _) = experiment(4000, 3);
        let e = Experiment { x: &x, treated: &t, outcome: &y, propensity: &p };
        let effect = |seed: u64| fit(Learner::Dr, &e, &[], Fitting { threads: 1, seed }).unwrap().effect(&x);
        assert_eq!(effect(1), effect(1), "a seed gives one fit");
        assert_ne!(effect(1), effect(2), "another seed samples other rows");
        let benefit = effect(1);
        let evaluations = [(e, [benefit.as_slice(), y.as_slice()])];
        let se = |seed: u64| select_learner(&evaluations, seed).difference_se;
        assert_eq!(se(5), se(5));
        assert_ne!(se(5), se(6), "the bootstrap draws from the seed");
    }
}
