//! The intervention list: at most one message per premium user, for the users whose
//! outcome the message changes, within channel budgets, opt-ins and a frequency cap, sent
//! at the user's good local hour, with a hashed holdout.
//!
//! The stage, in order (each step its own module):
//! 1. [`history`]: past randomised decisions, labelled, with features as of each decision;
//! 2. [`uplift`]: per (message_type, channel), a T-learner and a DR-learner on the GBDT,
//!    fitted on the older decisions and scored by Qini on the newest ones; the learner
//!    with the larger total Qini is refitted on all decisions and used;
//! 3. [`allocate`]: the plan of largest total expected churn reduction under the budgets
//!    (exact, by min-cost flow), only positive effects, opt-ins and the frequency cap;
//! 4. [`send_time`]: the local hour from listening and open history, shrunk to the
//!    population's, converted to UTC on the day after S;
//! 5. the holdout: a hash of (seed, S, user), independent of every score;
//! 6. [`evaluate`]: the chosen policy, replayed on the newest decisions' populations with
//!    models that never saw them, valued off-policy (IPS and doubly robust, 95% CIs)
//!    against sending nothing and against risk-ranked targeting with the same budgets.

pub mod allocate;
pub mod evaluate;
pub mod history;
pub mod send_time;
pub mod uplift;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Duration, NaiveDate, TimeZone as _};
use ndarray::{Array2, Axis};
use polars::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

use crate::config::Settings;
use crate::error::{PolarsContext, Result};
use crate::inputs::Inputs;
use crate::models::encoder::{Encoder, Mode};
use crate::models::{Classifier, ModelArtifact, Target};
use uplift::{Experiment, Learner, Support, UpliftModel};

/// How many days of message decisions (ending H days before S) the effects are learned
/// from: long enough for several weekly campaigns of every kind, short enough to follow
/// changes in what messages say. The inputs' lookback must cover it.
pub const EFFECT_WINDOW_DAYS: i64 = 120;

/// A Qini curve: (share targeted, churn prevented per user).
pub type Curve = Vec<(f64, f64)>;
/// Each learner's Qini curve for one arm.
pub type LearnerCurves = Vec<(&'static str, Curve)>;

/// The channels, in the order budgets and plans index them.
pub const CHANNELS: [&str; 3] = ["push", "email", "in_app"];

/// One kind of action: a message type on a channel.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Arm {
    pub message_type: String,
    pub channel: String,
}

impl Arm {
    pub fn channel_index(&self) -> Option<usize> {
        CHANNELS.iter().position(|c| *c == self.channel)
    }
}

/// What the uplift stage learned about one arm.
#[derive(Debug, Clone, Serialize)]
pub struct ArmReport {
    pub message_type: String,
    pub channel: String,
    /// Decisions in the training and evaluation slices.
    pub training_rows: usize,
    pub evaluation_rows: usize,
    pub sent: usize,
    pub held_out: usize,
    /// Inverse-propensity-weighted churn rate held out minus sent, on the training slice
    /// (positive: the message keeps users on average).
    pub average_churn_reduction: f64,
    /// Qini coefficient and AUUC of each learner on the evaluation slice (churn prevented
    /// per user; None when the arm is too small to fit or has no later decisions).
    pub qini: BTreeMap<&'static str, f64>,
    pub auuc: BTreeMap<&'static str, f64>,
    /// Whether a model of this arm plans tonight's list.
    pub used: bool,
}

/// The stage's account of itself (manifest `details.interventions` and the HTML report).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub decisions: usize,
    pub evaluation_from: NaiveDate,
    pub arms: Vec<ArmReport>,
    /// Summed Qini over the arms both learners were evaluated on.
    pub total_qini: BTreeMap<&'static str, f64>,
    /// Bootstrap standard error of the T-learner's summed Qini minus the DR-learner's.
    pub qini_difference_se: f64,
    pub chosen_learner: &'static str,
    pub evaluation: Option<evaluate::PolicyEvaluation>,
    pub planned: usize,
    pub planned_by_channel: BTreeMap<String, usize>,
    pub expected_churn_reduction: f64,
    #[serde(skip)]
    pub qini_curves: Vec<(Arm, LearnerCurves)>,
}

/// The stage's outputs: the contract's table, the report, and its HTML page.
pub struct Outcome {
    pub table: DataFrame,
    pub report: Report,
    pub html: String,
}

pub fn report_path(s: NaiveDate) -> String {
    format!("reports/snapshot={s}/interventions.html")
}

/// A deterministic uniform number in [0, 1) for (seed, snapshot, user): the holdout draw.
/// It depends on nothing else, in particular not on the score.
pub fn holdout_draw(seed: u64, s: NaiveDate, user_id: &str) -> f64 {
    let key = format!("{seed}/{s}/{user_id}");
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

/// The facts about each user of a features table that decide what they may get.
pub struct Candidates {
    pub ids: Vec<String>,
    pub push_ok: Vec<bool>,
    pub email_ok: Vec<bool>,
    pub open_dunning: Vec<bool>,
    /// Got a message in the last `frequency_cap_days`.
    pub capped: Vec<bool>,
}

impl Candidates {
    pub fn from_features(features: &DataFrame, cap_days: u32) -> Result<Self> {
        let int = |name: &str| -> Result<Vec<Option<i32>>> {
            let c = features.column(name).ctx(name)?.cast(&DataType::Int32).ctx(name)?;
            Ok(c.i32().ctx(name)?.iter().collect())
        };
        let ids = features
            .column("user_id")
            .ctx("features")?
            .str()
            .ctx("features")?
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect();
        let flag = |name: &str| -> Result<Vec<bool>> { Ok(int(name)?.into_iter().map(|v| v == Some(1)).collect()) };
        Ok(Candidates {
            ids,
            push_ok: flag("push_opt_in")?,
            email_ok: flag("email_opt_in")?,
            open_dunning: flag("open_dunning")?,
            capped: int("days_since_message")?.into_iter().map(|d| d.is_some_and(|d| d < cap_days as i32)).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether user `u` may get `arm`: opt-in for the channel, not capped, and payment
    /// reminders only during an open dunning episode (the only users they were tried on).
    pub fn allows(&self, u: usize, arm: &Arm) -> bool {
        let channel_ok = match arm.channel.as_str() {
            "push" => self.push_ok[u],
            "email" => self.email_ok[u],
            _ => true,
        };
        channel_ok && !self.capped[u] && (arm.message_type != "payment_update_reminder" || self.open_dunning[u])
    }
}

/// The uplift policy: per user, the best allowed arm on each channel by predicted churn
/// reduction, then the optimal plan under the channel budgets. `benefit[a][u]` is arm
/// a's predicted churn reduction for user u. Returns (arm, benefit) per user.
pub fn uplift_policy(
    c: &Candidates,
    arms: &[Arm],
    benefit: &[Vec<f64>],
    budgets: &[u64; 3],
) -> Vec<Option<(usize, f64)>> {
    let mut best: Vec<[Option<(usize, f64)>; 3]> = vec![[None; 3]; c.len()];
    for (a, arm) in arms.iter().enumerate() {
        let Some(ch) = arm.channel_index() else { continue };
        for (u, slot) in best.iter_mut().enumerate() {
            let v = benefit[a][u];
            if v > 0.0 && c.allows(u, arm) && slot[ch].is_none_or(|(_, b)| v > b) {
                slot[ch] = Some((a, v));
            }
        }
    }
    let values: Vec<Vec<Option<f64>>> = best.iter().map(|s| s.iter().map(|o| o.map(|(_, v)| v)).collect()).collect();
    let plan = allocate::allocate(&values, budgets);
    plan.iter().enumerate().map(|(u, ch)| ch.and_then(|ch| best[u][ch])).collect()
}

/// Risk-ranked targeting, the conventional comparison: users in order of churn risk, each
/// given the allowed arm with the best average effect while its channel has budget.
pub fn risk_policy(
    c: &Candidates,
    arms: &[Arm],
    average_reduction: &[f64],
    risk: &[f64],
    budgets: &[u64; 3],
) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..c.len()).collect();
    order.sort_by(|&a, &b| risk[b].total_cmp(&risk[a]).then(a.cmp(&b)));
    let mut left = *budgets;
    let mut out = vec![None; c.len()];
    for u in order {
        if left.iter().all(|&l| l == 0) {
            break;
        }
        let pick = arms
            .iter()
            .enumerate()
            .filter(|(a, arm)| {
                average_reduction[*a] > 0.0 && c.allows(u, arm) && arm.channel_index().is_some_and(|ch| left[ch] > 0)
            })
            .max_by(|x, y| average_reduction[x.0].total_cmp(&average_reduction[y.0]).then(y.0.cmp(&x.0)));
        if let Some((a, arm)) = pick {
            left[arm.channel_index().expect("filtered")] -= 1;
            out[u] = Some(a);
        }
    }
    out
}

fn budgets(settings: &Settings) -> [u64; 3] {
    CHANNELS.map(|c| settings.interventions.budget.for_channel(c))
}

/// Column `name` of the history as f64 (booleans and integers included).
fn floats(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let c = df.column(name).ctx(name)?.cast(&DataType::Float64).ctx(name)?;
    Ok(c.f64().ctx(name)?.iter().map(|v| v.unwrap_or(0.0)).collect())
}

fn strings(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    Ok(df.column(name).ctx(name)?.str().ctx(name)?.iter().map(|v| v.unwrap_or_default().to_string()).collect())
}

/// One arm's decisions as an experiment over rows `idx` of the encoded history.
struct ArmRows {
    x: Array2<f64>,
    treated: Vec<bool>,
    outcome: Vec<f64>,
    propensity: Vec<f64>,
}

impl ArmRows {
    fn new(x: &Array2<f64>, idx: &[usize], treated: &[bool], outcome: &[f64], propensity: &[f64]) -> Self {
        ArmRows {
            x: x.select(Axis(0), idx),
            treated: idx.iter().map(|&i| treated[i]).collect(),
            outcome: idx.iter().map(|&i| outcome[i]).collect(),
            propensity: idx.iter().map(|&i| propensity[i]).collect(),
        }
    }

    fn experiment(&self) -> Experiment<'_> {
        Experiment { x: &self.x, treated: &self.treated, outcome: &self.outcome, propensity: &self.propensity }
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

    fn fittable(&self) -> bool {
        let (sent, held) = self.arm_sizes();
        sent >= uplift::MIN_ARM_ROWS && held >= uplift::MIN_ARM_ROWS
    }
}

/// The encoded features with the channel appended as a categorical code (the last
/// column): one model per message type learns from all its channels and still predicts
/// per channel. The held-out arm's churn does not depend on the channel it would have
/// used, so pooling gives each model three times the control data of a per-channel one.
fn with_channel(x: &Array2<f64>, channel: impl Fn(usize) -> f64) -> Array2<f64> {
    let (n, k) = x.dim();
    Array2::from_shape_fn((n, k + 1), |(i, j)| if j < k { x[[i, j]] } else { channel(i) })
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
fn fit_type(arms: &[(&Arm, &ArmRows, &ArmRows)], train: &ArmRows, categorical: &[usize]) -> Result<TypeFit> {
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
                qini: BTreeMap::new(),
                auuc: BTreeMap::new(),
                used: false,
            }
        })
        .collect();
    let mut curves = vec![Vec::new(); arms.len()];
    if !train.fittable() {
        return Ok(TypeFit { reports, evaluated: None, later: Vec::new(), curves });
    }
    let mut models = Vec::new();
    let mut later = vec![Vec::new(); arms.len()];
    for m in uplift::fit_each(&Learner::ALL, &train.experiment(), categorical, 1)? {
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

/// Each scored arm's later rows with the T- and DR-learners' predicted benefits on them,
/// for [`uplift::qini_difference_se`].
fn later_evaluations<'a>(
    scored: &[usize],
    arm_rows: &'a [(ArmRows, ArmRows)],
    later: &'a [Vec<Vec<f64>>],
) -> Vec<(Experiment<'a>, [&'a [f64]; 2])> {
    scored.iter().map(|&a| (arm_rows[a].1.experiment(), [later[a][0].as_slice(), later[a][1].as_slice()])).collect()
}

/// Plan the intervention list for snapshot `s` (contract: `interventions`).
pub fn plan(
    inputs: &Inputs,
    s: NaiveDate,
    scores: &DataFrame,
    features: &DataFrame,
    artifact: &ModelArtifact,
    settings: &Settings,
) -> Result<Outcome> {
    let cfg = &settings.interventions;
    let budget = budgets(settings);
    let hist = history::load(inputs, s, settings.horizon_days)?;
    let rows = &hist.rows;
    let mut report = Report {
        decisions: rows.height(),
        evaluation_from: hist.evaluation_from,
        arms: Vec::new(),
        total_qini: BTreeMap::new(),
        qini_difference_se: 0.0,
        chosen_learner: Learner::Dr.as_str(),
        evaluation: None,
        planned: 0,
        planned_by_channel: BTreeMap::new(),
        expected_churn_reduction: 0.0,
        qini_curves: Vec::new(),
    };

    // Fitted production models per arm (None: too few decisions to learn from).
    let mut arms: Vec<Arm> = Vec::new();
    let production: Vec<Option<UpliftModel>>;
    let supports: Vec<Option<Support>>;
    let mut predictors: Vec<Option<ArmPredictor>> = Vec::new();
    let mut encoder = None;
    if rows.height() > 0 {
        let enc = Encoder::fit(rows, Mode::Native)?;
        let cats = enc.categorical_columns();
        let x = enc.transform(rows)?;
        let types = strings(rows, "message_type")?;
        let channels = strings(rows, "channel")?;
        let treated: Vec<bool> = floats(rows, "treated")?.into_iter().map(|t| t == 1.0).collect();
        let churned = floats(rows, "churned")?;
        let eval_from = crate::inputs::epoch_days(hist.evaluation_from) as f64;
        let in_eval: Vec<bool> = floats(rows, "snapshot")?.into_iter().map(|d| d >= eval_from).collect();
        let distinct: BTreeSet<Arm> = types
            .iter()
            .zip(&channels)
            .map(|(t, c)| Arm { message_type: t.clone(), channel: c.clone() })
            .filter(|a| a.channel_index().is_some())
            .collect();
        arms = distinct.into_iter().collect();
        let channel_code: Vec<f64> =
            channels.iter().map(|c| CHANNELS.iter().position(|k| k == c).unwrap_or(0) as f64).collect();
        let xc = with_channel(&x, |i| channel_code[i]);
        let mut cats_c = cats.clone();
        cats_c.push(x.ncols());
        let rows_of =
            |keep: &dyn Fn(usize) -> bool| -> Vec<usize> { (0..rows.height()).filter(|&i| keep(i)).collect() };
        let message_types: Vec<String> =
            arms.iter().map(|a| a.message_type.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        // The probability of each decision's arm given its features, per message type.
        let mut assignment = vec![0.5; rows.height()];
        let per_type: Vec<(Vec<usize>, Vec<f64>)> = message_types
            .par_iter()
            .map(|t| {
                let idx = rows_of(&|i| types[i] == *t);
                let sent: Vec<bool> = idx.iter().map(|&i| treated[i]).collect();
                Ok((idx.clone(), uplift::assignment_propensity(&xc.select(Axis(0), &idx), &sent, &cats_c, 1)?))
            })
            .collect::<Result<Vec<_>>>()?;
        for (idx, p) in per_type {
            for (j, i) in idx.into_iter().enumerate() {
                assignment[i] = p[j];
            }
        }
        let propensity = assignment;
        // Per arm: its training and evaluation rows (for reports and Qini).
        let arm_rows: Vec<(ArmRows, ArmRows)> = arms
            .iter()
            .map(|arm| {
                let mine = |i: usize| types[i] == arm.message_type && channels[i] == arm.channel;
                (
                    ArmRows::new(&xc, &rows_of(&|i| mine(i) && !in_eval[i]), &treated, &churned, &propensity),
                    ArmRows::new(&xc, &rows_of(&|i| mine(i) && in_eval[i]), &treated, &churned, &propensity),
                )
            })
            .collect();
        // Per message type: training rows, all rows, and (without the channel) the rows
        // that define where the type was tried.
        let type_rows: Vec<(ArmRows, ArmRows, Array2<f64>)> = message_types
            .iter()
            .map(|t| {
                let all = rows_of(&|i| types[i] == *t);
                let train = rows_of(&|i| types[i] == *t && !in_eval[i]);
                (
                    ArmRows::new(&xc, &train, &treated, &churned, &propensity),
                    ArmRows::new(&xc, &all, &treated, &churned, &propensity),
                    x.select(Axis(0), &all),
                )
            })
            .collect();
        let type_of: Vec<usize> =
            arms.iter().map(|a| message_types.iter().position(|t| *t == a.message_type).expect("listed")).collect();
        let fits: Vec<TypeFit> = message_types
            .par_iter()
            .enumerate()
            .map(|(t, _)| {
                let mine: Vec<(&Arm, &ArmRows, &ArmRows)> = (0..arms.len())
                    .filter(|&a| type_of[a] == t)
                    .map(|a| (&arms[a], &arm_rows[a].0, &arm_rows[a].1))
                    .collect();
                fit_type(&mine, &type_rows[t].0, &cats_c)
            })
            .collect::<Result<Vec<_>>>()?;
        let x_background = enc.transform(&hist.background)?;
        supports = type_rows
            .par_iter()
            .map(
                |(_, all, tried)| {
                    if all.fittable() { Support::fit(tried, &x_background, &cats, 1).map(Some) } else { Ok(None) }
                },
            )
            .collect::<Result<Vec<_>>>()?;
        let mut arm_reports: Vec<Option<ArmReport>> = vec![None; arms.len()];
        let mut arm_curves: Vec<LearnerCurves> = vec![Vec::new(); arms.len()];
        let mut arm_later: Vec<Vec<Vec<f64>>> = vec![Vec::new(); arms.len()];
        for (t, f) in fits.iter().enumerate() {
            let mine: Vec<usize> = (0..arms.len()).filter(|&a| type_of[a] == t).collect();
            for (j, &a) in mine.iter().enumerate() {
                arm_reports[a] = Some(f.reports[j].clone());
                arm_curves[a] = f.curves[j].clone();
                arm_later[a] = f.later.get(j).cloned().unwrap_or_default();
            }
        }
        let mut arm_reports: Vec<ArmReport> =
            arm_reports.into_iter().map(|r| r.expect("every arm has a type")).collect();
        // The learner: summed Qini over the arms where both were scored.
        for learner in Learner::ALL {
            let total: f64 = arm_reports
                .iter()
                .filter(|r| r.qini.len() == Learner::ALL.len())
                .map(|r| r.qini[learner.as_str()])
                .sum();
            report.total_qini.insert(learner.as_str(), total);
        }
        let scored: Vec<usize> = (0..arms.len()).filter(|&a| arm_reports[a].qini.len() == Learner::ALL.len()).collect();
        let difference_se = uplift::qini_difference_se(&later_evaluations(&scored, &arm_rows, &arm_later));
        report.qini_difference_se = difference_se;
        let q = |l: Learner| report.total_qini.get(l.as_str()).copied().unwrap_or(0.0);
        let chosen = uplift::choose_learner(q(Learner::T), q(Learner::Dr), difference_se);
        report.chosen_learner = chosen.as_str();
        let chosen_index = Learner::ALL.iter().position(|l| *l == chosen).expect("a learner");

        // Replay the policy on the evaluation slice with models that never saw it.
        let averages: Vec<f64> = arm_reports.iter().map(|r| r.average_churn_reduction).collect();
        let evaluated: Vec<Option<ArmPredictor>> = (0..arms.len())
            .map(|a| {
                let t = type_of[a];
                match (fits[t].evaluated.as_ref(), supports[t].as_ref()) {
                    (Some(m), Some(support)) => Some(ArmPredictor::new(&arms[a], &m[chosen_index], support)),
                    _ => None,
                }
            })
            .collect();
        report.evaluation =
            evaluate_policies(&hist, &enc, &arms, &evaluated, &averages, artifact, settings, features.height())?;

        production =
            type_rows
                .par_iter()
                .map(|(_, all, _)| {
                    if all.fittable() { uplift::fit(chosen, &all.experiment(), &cats_c, 1).map(Some) } else { Ok(None) }
                })
                .collect::<Result<Vec<_>>>()?;
        for (a, r) in arm_reports.iter_mut().enumerate() {
            r.used = production[type_of[a]].is_some();
            report.qini_curves.push((arms[a].clone(), std::mem::take(&mut arm_curves[a])));
        }
        report.arms = arm_reports;
        predictors = (0..arms.len())
            .map(|a| {
                let t = type_of[a];
                match (production[t].as_ref(), supports[t].as_ref()) {
                    (Some(m), Some(support)) => Some(ArmPredictor::new(&arms[a], m, support)),
                    _ => None,
                }
            })
            .collect();
        encoder = Some(enc);
    }

    // Tonight's plan.
    let c = Candidates::from_features(features, cfg.frequency_cap_days)?;
    let benefit: Vec<Vec<f64>> = match &encoder {
        Some(enc) => {
            let x = enc.transform(features)?;
            benefits(&predictors, &arms, &c, &x, &support_of_arms(&predictors, &x))
        }
        None => Vec::new(),
    };
    let actions = uplift_policy(&c, &arms, &benefit, &budget);
    let table = assemble(inputs, s, scores, &c, &arms, &actions, settings, report.chosen_learner)?;
    report.planned = actions.iter().flatten().count();
    for (a, _) in actions.iter().flatten() {
        *report.planned_by_channel.entry(arms[*a].channel.clone()).or_default() += 1;
    }
    report.expected_churn_reduction = actions.iter().flatten().map(|(_, v)| v).sum();
    let html = report_html(&report, s);
    Ok(Outcome { table, report, html })
}

/// One arm's predictions: the message type's model with the arm's channel, and nothing
/// outside the type's support.
struct ArmPredictor<'a> {
    model: &'a UpliftModel,
    support: &'a Support,
    channel: f64,
}

impl<'a> ArmPredictor<'a> {
    fn new(arm: &Arm, model: &'a UpliftModel, support: &'a Support) -> Self {
        ArmPredictor { model, support, channel: arm.channel_index().unwrap_or(0) as f64 }
    }

    fn x(&self, x: &Array2<f64>) -> Array2<f64> {
        with_channel(x, |_| self.channel)
    }

    /// Predicted churn reduction for the rows where `wanted` holds, zero elsewhere (each
    /// row's prediction depends on that row alone).
    fn benefit(&self, x: &Array2<f64>, wanted: impl Fn(usize) -> bool) -> Vec<f64> {
        let rows: Vec<usize> = (0..x.nrows()).filter(|&u| wanted(u)).collect();
        let mut out = vec![0.0; x.nrows()];
        if !rows.is_empty() {
            for (u, e) in rows.iter().zip(self.model.effect(&self.x(&x.select(Axis(0), &rows)))) {
                out[*u] = -e;
            }
        }
        out
    }
}

/// Each arm's predicted churn reduction for each user of `c` (rows of `x`) who may get it
/// ([`Candidates::allows`]) and is inside the arm's support; zero for the others, whom
/// [`uplift_policy`] never gives the arm, and for arms without a model. The arms of one
/// message type share its support model, which is evaluated once.
fn benefits(
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

/// Per arm, which rows of `x` lie inside its message type's support (None for arms
/// without a model). The arms of one type share its support model, evaluated once.
fn support_of_arms(predictors: &[Option<ArmPredictor>], x: &Array2<f64>) -> Vec<Option<Vec<bool>>> {
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

/// Off-policy values of the uplift policy and of risk-ranked targeting on the evaluation
/// slice's populations, with budgets scaled to each population's size.
#[allow(clippy::too_many_arguments)]
fn evaluate_policies(
    hist: &history::History,
    encoder: &Encoder,
    arms: &[Arm],
    predictors: &[Option<ArmPredictor>],
    averages: &[f64],
    artifact: &ModelArtifact,
    settings: &Settings,
    population_now: usize,
) -> Result<Option<evaluate::PolicyEvaluation>> {
    if hist.populations.is_empty() || predictors.iter().all(Option::is_none) {
        return Ok(None);
    }
    let churn = artifact.target(Target::Churn)?.champion()?;
    let rows = &hist.rows;
    let row_snapshot = floats(rows, "snapshot")?;
    let row_users = strings(rows, "user_id")?;
    let row_types = strings(rows, "message_type")?;
    let row_channels = strings(rows, "channel")?;
    let row_treated = floats(rows, "treated")?;
    let row_churned = floats(rows, "churned")?;
    let row_propensity = floats(rows, "propensity")?;
    let mut days = Vec::new();
    for (sn, pop) in &hist.populations {
        let c = Candidates::from_features(pop, settings.interventions.frequency_cap_days)?;
        let x = encoder.transform(pop)?;
        let scale = pop.height() as f64 / population_now.max(1) as f64;
        let budget = budgets(settings).map(|b| (b as f64 * scale).round() as u64);
        let inside = support_of_arms(predictors, &x);
        let benefit = benefits(predictors, arms, &c, &x, &inside);
        let ours = uplift_policy(&c, arms, &benefit, &budget);
        let (_, risk) = churn.predict(pop)?;
        let conventional = risk_policy(&c, arms, averages, &risk, &budget);
        let index: HashMap<&str, usize> = c.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let day = crate::inputs::epoch_days(*sn) as f64;
        // The day's logged decisions: (history row, user, arm).
        let mut decided = Vec::new();
        for i in 0..rows.height() {
            if row_snapshot[i] != day {
                continue;
            }
            let Some(&u) = index.get(row_users[i].as_str()) else { continue };
            let Some(a) = arms.iter().position(|a| a.message_type == row_types[i] && a.channel == row_channels[i])
            else {
                continue;
            };
            decided.push((i, u, a));
        }
        // Per arm: predicted churn without and with it, for the users a policy gives it or
        // who were logged with it (each row's prediction depends on that row alone).
        let mut users_of: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); arms.len()];
        for (u, a) in ours.iter().enumerate().filter_map(|(u, a)| a.map(|(a, _)| (u, a))) {
            users_of[a].insert(u);
        }
        for (u, a) in conventional.iter().enumerate().filter_map(|(u, a)| a.map(|a| (u, a))) {
            users_of[a].insert(u);
        }
        for &(_, u, a) in &decided {
            users_of[a].insert(u);
        }
        let outcome: Vec<HashMap<usize, (f64, f64)>> = predictors
            .par_iter()
            .zip(&users_of)
            .map(|(p, users)| match p {
                Some(p) if !users.is_empty() => {
                    let users: Vec<usize> = users.iter().copied().collect();
                    let xc = p.x(&x.select(Axis(0), &users));
                    let (c0, c1) = (p.model.control.predict(&xc), p.model.treated.predict(&xc));
                    users.into_iter().zip(c0.into_iter().zip(c1)).collect()
                }
                _ => HashMap::new(),
            })
            .collect();
        let outcome_of = |u: usize, a: usize| outcome[a].get(&u).copied().unwrap_or((0.0, 0.0));
        let predicted = |u: usize, a: usize| {
            let (control, sent) = outcome_of(u, a);
            control - sent
        };
        let action = |u: usize, a: usize| evaluate::Action {
            arm: a,
            predicted: predicted(u, a),
            supported: inside[a].as_ref().is_some_and(|i| i[u]),
        };
        let ours: Vec<Option<evaluate::Action>> =
            ours.into_iter().enumerate().map(|(u, a)| a.map(|(a, _)| action(u, a))).collect();
        let conventional: Vec<Option<evaluate::Action>> =
            conventional.into_iter().enumerate().map(|(u, a)| a.map(|a| action(u, a))).collect();
        let logged = decided
            .into_iter()
            .map(|(i, u, a)| {
                let (control, sent) = outcome_of(u, a);
                evaluate::Logged {
                    user: u,
                    arm: a,
                    treated: row_treated[i] == 1.0,
                    churned: row_churned[i],
                    propensity: row_propensity[i],
                    control,
                    sent,
                }
            })
            .collect();
        days.push(evaluate::Day { population: pop.height(), logged, actions: vec![ours, conventional] });
    }
    let snapshots = hist.populations.iter().map(|(d, _)| *d).collect();
    Ok(Some(evaluate::evaluate(&["uplift", "risk_ranked"], snapshots, &days)))
}

/// The contract's columns of the intervention list, row by row.
#[derive(Default)]
struct PlanColumns {
    user_id: Vec<String>,
    action: Vec<String>,
    channel: Vec<String>,
    send_at: Vec<i64>,
    expected_uplift: Vec<f64>,
    churn_probability: Vec<f64>,
    priority: Vec<i32>,
    group: Vec<&'static str>,
    reason: Vec<String>,
}

/// The contract's table for the chosen actions, by priority.
#[allow(clippy::too_many_arguments)]
fn assemble(
    inputs: &Inputs,
    s: NaiveDate,
    scores: &DataFrame,
    c: &Candidates,
    arms: &[Arm],
    actions: &[Option<(usize, f64)>],
    settings: &Settings,
    learner: &str,
) -> Result<DataFrame> {
    let pit = inputs.as_of(s);
    let (evidence, population) = send_time::hour_evidence(&pit, s)?;
    let users = pit.users.clone().select([col("user_id"), col("timezone")]).collect().ctx("reading time zones")?;
    let tz: HashMap<String, Option<String>> = strings(&users, "user_id")?
        .into_iter()
        .zip(users.column("timezone").ctx("users")?.str().ctx("users")?.iter().map(|t| t.map(str::to_string)))
        .collect();
    let risk: HashMap<String, f64> =
        strings(scores, "user_id")?.into_iter().zip(floats(scores, "churn_probability")?).collect();
    let mut chosen: Vec<(usize, usize, f64)> =
        actions.iter().enumerate().filter_map(|(u, a)| a.map(|(a, v)| (u, a, v))).collect();
    chosen.sort_by(|x, y| y.2.total_cmp(&x.2).then(c.ids[x.0].cmp(&c.ids[y.0])));
    let n = chosen.len();
    let mut out = PlanColumns::default();
    for (rank, (u, a, v)) in chosen.into_iter().enumerate() {
        let id = &c.ids[u];
        let arm = &arms[a];
        let p = risk.get(id).copied().unwrap_or(f64::NAN);
        let hour = send_time::best_hour(evidence.get(id).unwrap_or(&[0.0; 24]), &population);
        let zone = tz.get(id).cloned().flatten();
        out.user_id.push(id.clone());
        out.action.push(arm.message_type.clone());
        out.channel.push(arm.channel.clone());
        out.send_at.push(send_time_utc(s, zone.as_deref(), hour));
        out.expected_uplift.push(v);
        out.churn_probability.push(p);
        out.priority.push(rank as i32 + 1);
        let held = holdout_draw(settings.seed, s, id) < settings.interventions.holdout_fraction;
        out.group.push(if held { "holdout" } else { "treatment" });
        out.reason.push(format!(
            "{} by {}: expected to cut this user's {}-day churn probability by {:.1} points ({}); churn risk {:.2}",
            arm.message_type,
            arm.channel,
            settings.horizon_days,
            v * 100.0,
            learner.replace('_', "-"),
            p
        ));
    }
    let send_at = Series::new("send_at".into(), out.send_at)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC)))
        .ctx("send times")?;
    DataFrame::new(
        n,
        vec![
            Column::new("user_id".into(), out.user_id),
            Column::new("snapshot_date".into(), vec![s; n]),
            Column::new("action".into(), out.action),
            Column::new("channel".into(), out.channel),
            send_at.into(),
            Column::new("expected_uplift".into(), out.expected_uplift),
            Column::new("churn_probability".into(), out.churn_probability),
            Column::new("priority".into(), out.priority),
            Column::new("group".into(), out.group),
            Column::new("reason".into(), out.reason),
        ],
    )
    .ctx("assembling interventions")
}

/// The UTC instant of local `hour` on the day after `s` in `timezone` (UTC when unknown).
/// A local time skipped by a daylight-saving change moves to the next hour.
pub fn send_time_utc(s: NaiveDate, timezone: Option<&str>, hour: u32) -> i64 {
    let day = s + Duration::days(1);
    let tz: chrono_tz::Tz = timezone.and_then(|t| t.parse().ok()).unwrap_or(chrono_tz::UTC);
    for h in hour..hour + 3 {
        let naive = day.and_hms_opt(h % 24, 0, 0).expect("valid hour");
        if let Some(t) = tz.from_local_datetime(&naive).earliest() {
            return t.timestamp_micros();
        }
    }
    day.and_hms_opt(hour % 24, 0, 0).expect("valid hour").and_utc().timestamp_micros()
}

/// The human-readable summary: learners, their Qini on the later slice, the policy's
/// off-policy value, and tonight's plan.
fn report_html(r: &Report, s: NaiveDate) -> String {
    use crate::report::{COLORS, Line, chart, esc, page};
    use std::fmt::Write;
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>{} past decisions with closed labels; learners fitted on decisions before {} and scored on the later ones. \
         Chosen learner: <b>{}</b> (summed Qini: T {:.4}, DR {:.4}).</p>",
        r.decisions,
        r.evaluation_from,
        esc(r.chosen_learner),
        r.total_qini.get("t_learner").copied().unwrap_or(0.0),
        r.total_qini.get("dr_learner").copied().unwrap_or(0.0),
    );
    body.push_str(
        "<h2>Arms</h2><table><tr><th>message</th><th>channel</th><th>training rows</th><th>later rows</th>\
         <th>average churn cut</th><th>Qini T</th><th>Qini DR</th><th>AUUC T</th><th>AUUC DR</th><th>used</th></tr>",
    );
    let num = |v: Option<&f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
    for a in &r.arms {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.message_type),
            esc(&a.channel),
            a.training_rows,
            a.evaluation_rows,
            a.average_churn_reduction,
            num(a.qini.get("t_learner")),
            num(a.qini.get("dr_learner")),
            num(a.auuc.get("t_learner")),
            num(a.auuc.get("dr_learner")),
            if a.used { "yes" } else { "no" }
        );
    }
    body.push_str("</table>");
    if let Some(e) = &r.evaluation {
        let _ = write!(
            body,
            "<h2>Policy value on the later slice</h2><p>Replayed on {} premium users of {} snapshots ({} logged \
             decisions) with models that never saw them; churn events prevented per 1,000 premium users against \
             sending nothing, 95% intervals. Sends outside support go to users their message type was never tried \
             on: the estimates there rest on extrapolated outcome models (DR) or on nothing (IPS). For those sends \
             the DR value holds the outcome models' guess, which no logged decision checks and its interval does \
             not account for; the last column leaves it out.</p>\
             <table><tr><th>policy</th><th>sends</th><th>outside support</th><th>IPS</th><th>DR</th>\
             <th>DR from outside support</th><th>DR within support</th></tr>",
            e.premium_users,
            e.snapshots.len(),
            e.logged_decisions
        );
        for p in e.policies.iter().chain(std::iter::once(&e.difference)) {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2} [{:.2}, {:.2}]</td><td>{:.2} [{:.2}, {:.2}]</td>\
                 <td>{:.2}</td><td>{:.2} [{:.2}, {:.2}]</td></tr>",
                esc(&p.policy),
                p.sends,
                p.sends_outside_support,
                p.ips.per_1000,
                p.ips.low,
                p.ips.high,
                p.dr.per_1000,
                p.dr.low,
                p.dr.high,
                p.dr_outside_support,
                p.dr.per_1000 - p.dr_outside_support,
                p.dr.low - p.dr_outside_support,
                p.dr.high - p.dr_outside_support
            );
        }
        body.push_str("</table>");
    }
    let _ = write!(
        body,
        "<h2>Tonight</h2><p>{} users chosen ({}), expected to prevent {:.1} churn events in total.</p>",
        r.planned,
        { r.planned_by_channel.iter().map(|(c, n)| format!("{c} {n}")).collect::<Vec<_>>().join(", ") },
        r.expected_churn_reduction
    );
    body.push_str("<h2>Qini curves on the later slice</h2>");
    for (arm, curves) in &r.qini_curves {
        if curves.is_empty() {
            continue;
        }
        let mut lines: Vec<Line> = curves
            .iter()
            .enumerate()
            .map(|(i, (name, pts))| Line {
                label: name.to_string(),
                color: COLORS[i],
                points: pts.clone(),
                dashed: false,
            })
            .collect();
        if let Some((_, pts)) = curves.first() {
            let end = pts.last().map_or(0.0, |p| p.1);
            lines.push(Line {
                label: "random".into(),
                color: "#999999",
                points: vec![(0.0, 0.0), (1.0, end)],
                dashed: true,
            });
        }
        body.push_str(&chart(
            &format!("{} by {}", arm.message_type, arm.channel),
            "share of users targeted (best first)",
            "churn prevented per user",
            &lines,
            &[],
        ));
    }
    page(&format!("Interventions — snapshot {s}"), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_time_is_the_local_hour_in_utc() {
        let s = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        // Stockholm is UTC+1 in November: 19:00 local is 18:00 UTC on the 21st.
        let t = send_time_utc(s, Some("Europe/Stockholm"), 19);
        let expected = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap().and_hms_opt(18, 0, 0).unwrap().and_utc();
        assert_eq!(t, expected.timestamp_micros());
        // Unknown zones fall back to UTC.
        assert_eq!(send_time_utc(s, Some("Mars/Olympus"), 19), expected.timestamp_micros() + 3_600_000_000);
    }

    #[test]
    fn holdout_draws_are_uniform_and_stable() {
        let s = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let draws: Vec<f64> = (0..20_000).map(|i| holdout_draw(1, s, &format!("u{i}"))).collect();
        let share = draws.iter().filter(|&&d| d < 0.1).count() as f64 / draws.len() as f64;
        assert!((share - 0.1).abs() < 0.01, "{share}");
        assert_eq!(holdout_draw(1, s, "u7"), holdout_draw(1, s, "u7"));
        assert_ne!(holdout_draw(1, s, "u7"), holdout_draw(2, s, "u7"));
    }
}
