//! Learning each message type's effect from the campaign history, and choosing the
//! learner by evidence.
//!
//! Per message type, a T-learner and a DR-learner ([`crate::models::uplift`]) are fitted
//! on the older decisions and scored by Qini on the newest ones (the later slice), arm by
//! arm; the learner is chosen over all arms by the shared rule
//! ([`uplift::select_learner`]). One model per message type learns from all its channels,
//! with the channel as a feature. Each type also gets a support model: where in feature
//! space it was ever tried, so that no prediction is trusted far from the data.

use std::collections::{BTreeMap, BTreeSet};

use ndarray::{Array2, Axis, s};
use polars::prelude::DataType;
use rayon::prelude::*;

use super::frame::{floats, strings};
use super::history::{ENGAGEMENT_DAYS, History};
use super::policy::Arm;
use super::predict::{ArmPredictor, with_channel};
use super::report::{ArmReport, LearnerCurves};
use crate::contract::CHANNELS;
use crate::error::{PolarsContext, Result};
use crate::models::encoder::{Encoder, Mode};
use crate::models::gbdt::lightgbm_seed;
use crate::models::uplift::{self, Experiment, Fitting, Learner, LearnerChoice, SentRate, Support, UpliftModel};
use crate::{features, progress};

/// What the history taught: per arm its report and curves, per message type its support
/// and the learners fitted on the older decisions, and the learner chosen.
pub(super) struct Learned {
    /// The arms seen in the history, sorted (message type, then channel).
    pub arms: Vec<Arm>,
    /// The encoder of the history's features (native, for the GBDT learners).
    pub encoder: Encoder,
    pub reports: Vec<ArmReport>,
    pub curves: Vec<LearnerCurves>,
    pub choice: LearnerChoice,
    /// Per arm, the index of its message type.
    type_of: Vec<usize>,
    /// Per message type: all its decisions (for the production fit).
    type_rows: Vec<ArmRows>,
    /// Per message type: where it was tried (None when too few decisions to learn from).
    supports: Vec<Option<Support>>,
    /// Per message type: the learners fitted on the older decisions, in [`Learner::ALL`] order.
    evaluated: Vec<Option<Vec<UpliftModel>>>,
    /// Categorical columns of the encoded features with the channel appended.
    categorical: Vec<usize>,
    fitting: Fitting,
}

/// Learn from the history; None when it holds no decisions. `seed` (the run's) seeds the
/// learners' fits and the bootstrap that compares them. Once encoded, the decisions'
/// features are dropped from the history ([`History::forget_decision_features`]).
pub(super) fn learn(hist: &mut History, seed: u64) -> Result<Option<Learned>> {
    let rows = &hist.rows;
    if rows.height() == 0 {
        return Ok(None);
    }
    // One LightGBM thread per fit: the message types are fitted in parallel.
    let fitting = Fitting { threads: 1, seed: lightgbm_seed(seed) };
    let enc = Encoder::fit(rows, Mode::Native, &features::specs())?;
    let cats = enc.categorical_columns();
    let x = enc.transform(rows)?;
    let types = strings(rows, "message_type")?;
    let channels = strings(rows, "channel")?;
    let treated: Vec<bool> = floats(rows, "treated")?.into_iter().map(|t| t == 1.0).collect();
    let churned = floats(rows, "churned")?;
    let unsubscribed = floats(rows, "unsubscribed")?;
    // Active days after the decision as a share of the window (NaN where not measured).
    let active_share: Vec<f64> = rows
        .column("active_days")
        .ctx("active_days")?
        .cast(&DataType::Float64)
        .ctx("active_days")?
        .f64()
        .ctx("active_days")?
        .iter()
        .map(|d| d.map_or(f64::NAN, |d| d / ENGAGEMENT_DAYS as f64))
        .collect();
    let outcomes =
        Outcomes { treated: &treated, churned: &churned, unsubscribed: &unsubscribed, active_share: &active_share };
    let eval_from = crate::inputs::epoch_days(hist.evaluation_from) as f64;
    let in_eval: Vec<bool> = floats(rows, "snapshot")?.into_iter().map(|d| d >= eval_from).collect();
    let n = rows.height();
    hist.forget_decision_features()?;
    let distinct: BTreeSet<Arm> = types
        .iter()
        .zip(&channels)
        .map(|(t, c)| Arm { message_type: t.clone(), channel: c.clone() })
        .filter(|a| a.channel_index().is_some())
        .collect();
    let arms: Vec<Arm> = distinct.into_iter().collect();
    let channel_code: Vec<f64> =
        channels.iter().map(|c| CHANNELS.iter().position(|k| k == c).unwrap_or(0) as f64).collect();
    // The rows of `idx` with the channel appended as a feature.
    let with_channel_of = |idx: &[usize]| with_channel(&x.select(Axis(0), idx), |j| channel_code[idx[j]]);
    let mut cats_c = cats.clone();
    cats_c.push(x.ncols());
    let rows_of = |keep: &dyn Fn(usize) -> bool| -> Vec<usize> { (0..n).filter(|&i| keep(i)).collect() };
    let message_types: Vec<String> =
        arms.iter().map(|a| a.message_type.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    // Per message type: its rows, with the channel.
    let type_idx: Vec<Vec<usize>> = message_types.iter().map(|t| rows_of(&|i| types[i] == *t)).collect();
    let type_x: Vec<Array2<f64>> = type_idx.iter().map(|idx| with_channel_of(idx)).collect();
    // The probability of each decision's arm given its features, per message type.
    let mut propensity = vec![0.5; n];
    let per_type: Vec<Vec<f64>> = type_idx
        .par_iter()
        .zip(&type_x)
        .map(|(idx, x)| {
            let sent: Vec<bool> = idx.iter().map(|&i| treated[i]).collect();
            uplift::assignment_propensity(x, &sent, &cats_c, fitting)
        })
        .collect::<Result<Vec<_>>>()?;
    for (idx, p) in type_idx.iter().zip(per_type) {
        for (&i, p) in idx.iter().zip(p) {
            propensity[i] = p;
        }
    }
    // Per arm: its training rows (counted for the report) and its evaluation rows (for
    // the Qini of the type's learners).
    let arm_rows: Vec<(ArmRows, ArmRows)> = arms
        .iter()
        .map(|arm| {
            let mine = |i: usize| types[i] == arm.message_type && channels[i] == arm.channel;
            let (train, later) = (rows_of(&|i| mine(i) && !in_eval[i]), rows_of(&|i| mine(i) && in_eval[i]));
            let later_x = with_channel_of(&later);
            (
                ArmRows::new(Array2::zeros((train.len(), 0)), &train, &outcomes, &propensity),
                ArmRows::new(later_x, &later, &outcomes, &propensity),
            )
        })
        .collect();
    // Per message type: all its rows (without the channel, they also define where the
    // type was tried), and which of them train the learners that are evaluated.
    let features_only = x.ncols();
    drop(x);
    let type_rows: Vec<(Vec<usize>, ArmRows)> = type_idx
        .iter()
        .zip(type_x)
        .map(|(idx, x)| {
            let train = (0..idx.len()).filter(|&j| !in_eval[idx[j]]).collect();
            (train, ArmRows::new(x, idx, &outcomes, &propensity))
        })
        .collect();
    let type_of: Vec<usize> =
        arms.iter().map(|a| message_types.iter().position(|t| *t == a.message_type).expect("listed")).collect();
    let fitted = progress::Counter::new("message types learned on the older decisions", message_types.len());
    let x_background = enc.transform(&hist.background)?;
    // The learners and the supports are independent: fitted side by side.
    let (fits, supports) = rayon::join(
        || {
            message_types
                .par_iter()
                .enumerate()
                .map(|(t, _)| {
                    let mine: Vec<(&Arm, &ArmRows, &ArmRows)> = (0..arms.len())
                        .filter(|&a| type_of[a] == t)
                        .map(|a| (&arms[a], &arm_rows[a].0, &arm_rows[a].1))
                        .collect();
                    // The training slice is copied only while its learners are fitted.
                    let (train, all) = &type_rows[t];
                    let fit = fit_type(&mine, &all.subset(train), &cats_c, fitting);
                    fitted.tick();
                    fit
                })
                .collect::<Result<Vec<TypeFit>>>()
        },
        || {
            type_rows
                .par_iter()
                .map(|(_, all)| {
                    if !all.fittable() {
                        return Ok(None);
                    }
                    let tried = all.x.slice(s![.., ..features_only]).to_owned();
                    Support::fit(&tried, &x_background, &cats, fitting).map(Some)
                })
                .collect::<Result<Vec<_>>>()
        },
    );
    let (fits, supports) = (fits?, supports?);
    let mut reports: Vec<Option<ArmReport>> = vec![None; arms.len()];
    let mut curves: Vec<LearnerCurves> = vec![Vec::new(); arms.len()];
    let mut later: Vec<Vec<Vec<f64>>> = vec![Vec::new(); arms.len()];
    let mut evaluated = Vec::with_capacity(fits.len());
    for (t, f) in fits.into_iter().enumerate() {
        let mine: Vec<usize> = (0..arms.len()).filter(|&a| type_of[a] == t).collect();
        for (j, &a) in mine.iter().enumerate() {
            reports[a] = Some(f.reports[j].clone());
            curves[a] = f.curves[j].clone();
            later[a] = f.later.get(j).cloned().unwrap_or_default();
        }
        evaluated.push(f.evaluated);
    }
    let reports: Vec<ArmReport> = reports.into_iter().map(|r| r.expect("every arm has a type")).collect();
    // The learner: by Qini over the arms where both learners were scored.
    let scored: Vec<usize> = (0..arms.len()).filter(|&a| reports[a].qini.len() == Learner::ALL.len()).collect();
    let evaluations: Vec<(Experiment, [&[f64]; 2])> = scored
        .iter()
        .map(|&a| (arm_rows[a].1.experiment(), [later[a][0].as_slice(), later[a][1].as_slice()]))
        .collect();
    let choice = uplift::select_learner(&evaluations, seed);
    Ok(Some(Learned {
        arms,
        encoder: enc,
        reports,
        curves,
        choice,
        type_of,
        type_rows: type_rows.into_iter().map(|(_, all)| all).collect(),
        supports,
        evaluated,
        categorical: cats_c,
        fitting,
    }))
}

impl Learned {
    /// Per arm, its churn reduction averaged over the training slice (inverse-propensity
    /// weighted): what risk-ranked targeting knows of each arm.
    pub(super) fn average_reductions(&self) -> Vec<f64> {
        self.reports.iter().map(|r| r.average_churn_reduction).collect()
    }

    /// Per arm, the chosen learner fitted on the older decisions only (for the replay on
    /// the later slice); None for arms without a model.
    pub(super) fn evaluated_predictors(&self) -> Vec<Option<ArmPredictor<'_>>> {
        let chosen = Learner::ALL.iter().position(|l| *l == self.choice.chosen).expect("a learner");
        self.predictors(|t| self.evaluated[t].as_ref().map(|m| &m[chosen]))
    }

    /// Per message type, the chosen learner fitted on all its decisions: tonight's models.
    pub(super) fn fit_production(&self) -> Result<Vec<Option<UpliftModel>>> {
        let chosen = self.choice.chosen;
        let fitted = progress::Counter::new("message types learned on every decision", self.type_rows.len());
        self.type_rows
            .par_iter()
            .map(|all| {
                let model = if all.fittable() {
                    uplift::fit(chosen, &all.experiment(), &self.categorical, self.fitting).map(Some)
                } else {
                    Ok(None)
                };
                fitted.tick();
                model
            })
            .collect()
    }

    /// Per arm, the probability that its send makes the user unsubscribe from its channel,
    /// learned from all the arm's sent decisions (None: never sent). Per arm, not per
    /// message type: leaving a channel is the channel's, and an arm whose sends never
    /// lost anyone (in-app messages, typically) is then exactly 0, where a model pooled
    /// over the channels would smear the others' rate onto it.
    pub(super) fn fit_unsubscribe(&self) -> Result<Vec<Option<SentRate>>> {
        let last = self.categorical.last().copied();
        (0..self.arms.len())
            .into_par_iter()
            .map(|a| {
                let all = &self.type_rows[self.type_of[a]];
                let code = self.arms[a].channel_index().unwrap_or(0) as f64;
                let mine: Vec<usize> = match last {
                    Some(col) => (0..all.treated.len()).filter(|&i| all.x[[i, col]] == code).collect(),
                    None => Vec::new(),
                };
                let rows = all.subset(&mine);
                if rows.arm_sizes().0 == 0 {
                    return Ok(None);
                }
                SentRate::fit(&rows.experiment_of(&rows.unsubscribed), &self.categorical, self.fitting).map(Some)
            })
            .collect()
    }

    /// Per message type, its effect on active days in the [`ENGAGEMENT_DAYS`] after a send
    /// (as a share of them), by the chosen learner on every decision whose days were
    /// measured; empty when none were (engagement is not weighed).
    pub(super) fn fit_engagement(&self) -> Result<Vec<Option<UpliftModel>>> {
        if self.type_rows.iter().all(|t| t.active_share.iter().all(|a| a.is_nan())) {
            return Ok(Vec::new());
        }
        let chosen = self.choice.chosen;
        self.type_rows
            .par_iter()
            .map(|all| {
                let measured: Vec<usize> =
                    (0..all.treated.len()).filter(|&i| all.active_share[i].is_finite()).collect();
                let rows = all.subset(&measured);
                if !rows.fittable() {
                    return Ok(None);
                }
                uplift::fit(chosen, &rows.experiment_of(&rows.active_share), &self.categorical, self.fitting).map(Some)
            })
            .collect()
    }

    /// The message type of arm `a` (an index into the production models).
    pub(super) fn type_index(&self, a: usize) -> usize {
        self.type_of[a]
    }

    /// Per arm, its message type.
    pub(super) fn types_of_arms(&self) -> Vec<usize> {
        self.type_of.clone()
    }

    /// Tonight's model of each message type: its production fit with its support (None
    /// when either is missing). The supports are moved out: call it last.
    pub(super) fn take_types(&mut self, production: Vec<Option<UpliftModel>>) -> Vec<Option<(UpliftModel, Support)>> {
        production.into_iter().zip(std::mem::take(&mut self.supports)).map(|(m, s)| m.zip(s)).collect()
    }

    fn predictors<'a>(&'a self, model_of: impl Fn(usize) -> Option<&'a UpliftModel>) -> Vec<Option<ArmPredictor<'a>>> {
        (0..self.arms.len())
            .map(|a| {
                let t = self.type_of[a];
                match (model_of(t), self.supports[t].as_ref()) {
                    (Some(m), Some(support)) => Some(ArmPredictor::new(&self.arms[a], m, support)),
                    _ => None,
                }
            })
            .collect()
    }
}

/// Every decision's arm and outcomes, in the history's row order.
struct Outcomes<'a> {
    treated: &'a [bool],
    churned: &'a [f64],
    unsubscribed: &'a [f64],
    /// Active days in the [`ENGAGEMENT_DAYS`] from the decision, as a share (NaN: not measured).
    active_share: &'a [f64],
}

/// One arm's decisions as an experiment over rows `idx` of the encoded history: its
/// outcome is churn; `unsubscribed` is the other outcome a send has.
struct ArmRows {
    x: Array2<f64>,
    treated: Vec<bool>,
    outcome: Vec<f64>,
    unsubscribed: Vec<f64>,
    active_share: Vec<f64>,
    propensity: Vec<f64>,
}

impl ArmRows {
    /// The decisions `idx` of the history with their features `x` (one row per decision
    /// of `idx`). An arm's training rows keep no feature columns: they are counted and
    /// averaged, never fitted on or predicted (its message type's rows are).
    fn new(x: Array2<f64>, idx: &[usize], outcomes: &Outcomes, propensity: &[f64]) -> Self {
        debug_assert_eq!(x.nrows(), idx.len());
        ArmRows {
            x,
            treated: idx.iter().map(|&i| outcomes.treated[i]).collect(),
            outcome: idx.iter().map(|&i| outcomes.churned[i]).collect(),
            unsubscribed: idx.iter().map(|&i| outcomes.unsubscribed[i]).collect(),
            active_share: idx.iter().map(|&i| outcomes.active_share[i]).collect(),
            propensity: idx.iter().map(|&i| propensity[i]).collect(),
        }
    }

    /// The rows at `positions` (indices into these rows).
    fn subset(&self, positions: &[usize]) -> ArmRows {
        let pick = |v: &[f64]| positions.iter().map(|&j| v[j]).collect();
        ArmRows {
            x: self.x.select(Axis(0), positions),
            treated: positions.iter().map(|&j| self.treated[j]).collect(),
            outcome: pick(&self.outcome),
            unsubscribed: pick(&self.unsubscribed),
            active_share: pick(&self.active_share),
            propensity: pick(&self.propensity),
        }
    }

    /// The rows as an experiment on churn.
    fn experiment(&self) -> Experiment<'_> {
        self.experiment_of(&self.outcome)
    }

    /// The rows as an experiment on `outcome` (one of theirs).
    fn experiment_of<'a>(&'a self, outcome: &'a [f64]) -> Experiment<'a> {
        Experiment { x: &self.x, treated: &self.treated, outcome, propensity: &self.propensity }
    }

    fn arm_sizes(&self) -> (usize, usize) {
        let sent = self.treated.iter().filter(|t| **t).count();
        (sent, self.treated.len() - sent)
    }

    /// Inverse-propensity-weighted churn held out minus sent.
    fn average_reduction(&self) -> f64 {
        let e = self.experiment();
        let w = e.weights();
        let (mut ws, mut wy) = ([0.0; 2], [0.0; 2]);
        for i in 0..self.treated.len() {
            ws[self.treated[i] as usize] += w[i];
            wy[self.treated[i] as usize] += w[i] * self.outcome[i];
        }
        if ws[0] > 0.0 && ws[1] > 0.0 { wy[0] / ws[0] - wy[1] / ws[1] } else { 0.0 }
    }

    /// Inverse-propensity-weighted active days sent minus held out, over the decisions
    /// whose days were measured (None: none were).
    fn active_days_gained(&self) -> Option<f64> {
        let w = self.experiment().weights();
        let (mut ws, mut wy) = ([0.0; 2], [0.0; 2]);
        for i in (0..self.treated.len()).filter(|&i| self.active_share[i].is_finite()) {
            ws[self.treated[i] as usize] += w[i];
            wy[self.treated[i] as usize] += w[i] * self.active_share[i] * ENGAGEMENT_DAYS as f64;
        }
        (ws[0] > 0.0 && ws[1] > 0.0).then(|| wy[1] / ws[1] - wy[0] / ws[0])
    }

    /// Unsubscribes per send.
    fn unsubscribes_sent(&self) -> (f64, usize) {
        let (sent, _) = self.arm_sizes();
        (self.treated.iter().zip(&self.unsubscribed).filter(|(t, _)| **t).map(|(_, u)| u).sum(), sent)
    }

    fn fittable(&self) -> bool {
        let (sent, held) = self.arm_sizes();
        sent >= uplift::MIN_ARM_ROWS && held >= uplift::MIN_ARM_ROWS
    }
}

/// Per arm of one message type: its training and evaluation rows.
struct TypeFit {
    reports: Vec<ArmReport>,
    /// Learners fitted on the training slice (for the evaluation), by [`Learner::ALL`] order.
    evaluated: Option<Vec<UpliftModel>>,
    /// Per arm, per learner (by [`Learner::ALL`] order): predicted benefit on the arm's
    /// evaluation rows, for the bootstrap of the learners' Qini difference.
    later: Vec<Vec<Vec<f64>>>,
    curves: Vec<LearnerCurves>,
}

/// Fit both learners on a message type's training slice and score them, arm by arm, on
/// its evaluation slice. `arms` are the type's arms with their rows.
fn fit_type(
    arms: &[(&Arm, &ArmRows, &ArmRows)],
    train: &ArmRows,
    categorical: &[usize],
    fitting: Fitting,
) -> Result<TypeFit> {
    let mut reports: Vec<ArmReport> = arms
        .iter()
        .map(|(arm, tr, ev)| {
            let (sent, held_out) = tr.arm_sizes();
            let (eval_sent, eval_held) = ev.arm_sizes();
            ArmReport {
                message_type: arm.message_type.clone(),
                channel: arm.channel.clone(),
                training_rows: tr.treated.len(),
                evaluation_rows: ev.treated.len(),
                sent: sent + eval_sent,
                held_out: held_out + eval_held,
                average_churn_reduction: tr.average_reduction(),
                active_days_gained: tr.active_days_gained(),
                unsubscribe_rate: {
                    let ((a, n), (b, m)) = (tr.unsubscribes_sent(), ev.unsubscribes_sent());
                    (a + b) / (n + m).max(1) as f64
                },
                qini: BTreeMap::new(),
                auuc: BTreeMap::new(),
                used: false,
                t_share: 0.0,
            }
        })
        .collect();
    let mut curves = vec![Vec::new(); arms.len()];
    if !train.fittable() {
        return Ok(TypeFit { reports, evaluated: None, later: Vec::new(), curves });
    }
    let mut models = Vec::new();
    let mut later = vec![Vec::new(); arms.len()];
    for m in uplift::fit_each(&Learner::ALL, &train.experiment(), categorical, fitting)? {
        let learner = m.learner;
        for (a, (_, _, ev)) in arms.iter().enumerate() {
            let benefit: Vec<f64> = m.effect(&ev.x).into_iter().map(|e| -e).collect();
            let (eval_sent, eval_held) = ev.arm_sizes();
            if eval_sent >= 10 && eval_held >= 10 {
                let q = uplift::qini(&benefit, &ev.experiment(), 20);
                reports[a].qini.insert(learner.as_str(), q.qini);
                reports[a].auuc.insert(learner.as_str(), q.auuc);
                curves[a].push((learner.as_str(), q.curve));
            }
            later[a].push(benefit);
        }
        models.push(m);
    }
    Ok(TypeFit { reports, evaluated: Some(models), later, curves })
}
