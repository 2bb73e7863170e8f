//! The interventions stage: at most one message per premium user, for the users whose
//! outcome the message changes, within channel budgets, opt-ins and a frequency cap, sent
//! at the user's good local hour, with a hashed holdout.
//!
//! The stage, in order (each step its own module):
//! 1. [`history`]: past randomised decisions, labelled, with features as of each decision;
//! 2. [`learn`]: per message type, a T-learner and a DR-learner on the GBDT
//!    ([`crate::models::uplift`]), fitted on the older decisions and scored by Qini on the
//!    newest ones; the learner is chosen by the rule `retain table uplift` shares, and
//!    refitted on all decisions for tonight; [`predict`] keeps predictions inside the
//!    support of what was tried;
//! 3. [`replay`]: the chosen policy replayed on the newest decisions' populations with
//!    models that never saw them, valued off-policy ([`evaluate`]: IPS and doubly robust,
//!    95% CIs) against sending nothing and against risk-ranked targeting;
//! 4. [`policy`] and [`allocate`]: tonight's plan of largest total expected churn
//!    reduction under the budgets (exact, by min-cost flow), only positive effects,
//!    opt-ins and the frequency cap;
//! 5. [`assemble`]: the contract's table, with [`send_time`] (the local hour from
//!    listening and open history, shrunk to the population's, in UTC on the day after S)
//!    and the holdout (a hash of seed, S and user, independent of every score);
//! 6. [`report`]: the stage's account in the manifest and as an HTML page.

pub mod allocate;
mod assemble;
mod evaluate;
mod frame;
mod history;
mod learn;
mod policy;
mod predict;
mod replay;
mod report;
mod send_time;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::config::InterventionSettings;
use crate::error::Result;
use crate::inputs::Inputs;
use crate::models::ModelArtifact;
use crate::models::uplift::Learner;

pub use policy::{Arm, Candidates, risk_policy, uplift_policy};
pub(crate) use report::{Report, path as report_path};

/// The stage's outputs: the contract's table, the report, and its HTML page.
pub(crate) struct Outcome {
    pub table: DataFrame,
    pub report: Report,
    pub html: String,
}

/// Plan the intervention list for snapshot `s` (contract: `interventions`).
pub(crate) fn plan(
    inputs: &Inputs,
    s: NaiveDate,
    scores: &DataFrame,
    features: &DataFrame,
    artifact: &ModelArtifact,
    settings: &InterventionSettings,
) -> Result<Outcome> {
    let mut hist = history::load(inputs, s, settings.horizon_days)?;
    let mut report = Report {
        decisions: hist.rows.height(),
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
    let c = Candidates::from_features(features, settings.frequency_cap_days)?;
    let learned = learn::learn(&mut hist, settings.seed)?;
    let production = match &learned {
        Some(l) => l.fit_production()?,
        None => Vec::new(),
    };
    let (arms, benefit) = match &learned {
        None => (Vec::new(), Vec::new()),
        Some(l) => {
            for (k, learner) in Learner::ALL.into_iter().enumerate() {
                report.total_qini.insert(learner.as_str(), l.choice.qini[k]);
            }
            report.qini_difference_se = l.choice.difference_se;
            report.chosen_learner = l.choice.chosen.as_str();
            // Replay the policy on the evaluation slice with models that never saw it.
            report.evaluation = replay::evaluate_policies(
                &hist,
                &l.encoder,
                &l.arms,
                &l.evaluated_predictors(),
                &l.average_reductions(),
                artifact,
                settings,
                features.height(),
            )?;
            for (a, arm) in l.arms.iter().enumerate() {
                let mut r = l.reports[a].clone();
                r.used = production[l.type_index(a)].is_some();
                report.arms.push(r);
                report.qini_curves.push((arm.clone(), l.curves[a].clone()));
            }
            // Tonight's predicted churn reduction per arm and user.
            let predictors = l.production_predictors(&production);
            let x = l.encoder.transform(features)?;
            let inside = predict::support_of_arms(&predictors, &x);
            (l.arms.clone(), predict::benefits(&predictors, &l.arms, &c, &x, &inside))
        }
    };
    let actions = uplift_policy(&c, &arms, &benefit, &settings.budgets);
    let table = assemble::assemble(inputs, s, scores, &c, &arms, &actions, settings, report.chosen_learner)?;
    report.planned = actions.iter().flatten().count();
    for (a, _) in actions.iter().flatten() {
        *report.planned_by_channel.entry(arms[*a].channel.clone()).or_default() += 1;
    }
    report.expected_churn_reduction = actions.iter().flatten().map(|(_, v)| v).sum();
    let html = report::html(&report, s);
    Ok(Outcome { table, report, html })
}
