//! Replaying the chosen policy on the later slice: on each evaluation day's premium
//! population, the uplift policy and risk-ranked targeting plan with models that never saw
//! that slice, under budgets scaled to the population, and are valued off-policy against
//! the day's logged randomised decisions ([`super::evaluate`]).

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use ndarray::Axis;
use polars::prelude::DataFrame;
use rayon::prelude::*;

use super::evaluate;
use super::frame::{floats, strings};
use super::history::History;
use super::policy::{Arm, Candidates, risk_policy, uplift_policy};
use super::predict::{ArmPredictor, benefits, support_of_arms};
use crate::config::InterventionSettings;
use crate::error::Result;
use crate::models::encoder::Encoder;
use crate::models::{Classifier, ModelArtifact, Target};
use crate::progress;

/// Off-policy values of the uplift policy and of risk-ranked targeting on the evaluation
/// slice's populations, with budgets scaled to each population's size.
#[allow(clippy::too_many_arguments)]
pub(super) fn evaluate_policies(
    hist: &History,
    encoder: &Encoder,
    arms: &[Arm],
    predictors: &[Option<ArmPredictor>],
    averages: &[f64],
    artifact: &ModelArtifact,
    settings: &InterventionSettings,
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
    // The days are independent: replayed side by side, collected in date order.
    let replayed = progress::Counter::new("evaluation days replayed", hist.populations.len());
    let replay_day = |(sn, pop): &(NaiveDate, DataFrame)| -> Result<evaluate::Day> {
        let c = Candidates::from_features(pop, settings.frequency_cap_days)?;
        let x = encoder.transform(pop)?;
        let scale = pop.height() as f64 / population_now.max(1) as f64;
        let budget = settings.budgets.map(|b| (b as f64 * scale).round() as u64);
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
        replayed.tick();
        Ok(evaluate::Day { population: pop.height(), logged, actions: vec![ours, conventional] })
    };
    let days = hist.populations.par_iter().map(replay_day).collect::<Result<Vec<_>>>()?;
    let snapshots = hist.populations.iter().map(|(d, _)| *d).collect();
    Ok(Some(evaluate::evaluate(&["uplift", "risk_ranked"], snapshots, &days)))
}
