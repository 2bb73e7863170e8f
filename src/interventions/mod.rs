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
//! 4. [`value`], [`prices`], [`policy`] and [`allocate`]: tonight's plan of largest total
//!    value (churn prevented, weighed by price, send costs and the reach unsubscribes
//!    lose when `[interventions.value]` says so) under the budgets (exact, by min-cost
//!    flow) and the unsubscribe caps (by their dual prices), only positive values,
//!    opt-ins and the frequency cap; and the frontier of value against unsubscribes;
//! 5. [`assemble`]: the contract's table, with [`send_time`] (the local hour from
//!    listening and open history, shrunk to the population's, in UTC on the day after S)
//!    and the holdout (a hash of seed, S and user, independent of every score);
//! 6. [`report`]: the stage's account in the manifest and as an HTML page.
//!
//! Steps 1–3 are [`learn_targeting`]: what they give the plan is a [`Targeting`] ([`targeting`]),
//! whose population-wide parts (support cuts, the send hours' prior) are the whole
//! night's. One process learns and plans at once ([`plan`]). A night of shards learns
//! once (`retain train` saves the targeting with the models), then each shard gives its
//! users' best arms ([`candidates`]) and a summary, one merge prices the channels (and the
//! unsubscribe caps) and sets each shard's quotas ([`budget`]), and each shard plans under
//! its quotas ([`plan_shard`]); the night's priorities are ranked at the commit ([`rank_night`]).

pub mod allocate;
mod assemble;
mod budget;
mod evaluate;
mod frame;
mod history;
mod learn;
mod policy;
mod predict;
mod prices;
mod replay;
mod report;
mod send_time;
mod targeting;
mod value;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use ndarray::Array2;
use polars::prelude::*;

use crate::config::InterventionSettings;
use crate::error::{PolarsContext, Result};
use crate::inputs::Inputs;
use crate::models::ModelArtifact;
use crate::models::uplift::Learner;

pub(crate) use budget::{Summary, merge as merge_prices};
use policy::Choice;
pub use policy::{Arm, Candidates, risk_policy, uplift_policy};
pub(crate) use report::{Report, path as report_path};
pub(crate) use targeting::Targeting;
pub(crate) use value::currencies;
use value::{Effects, Worth};

/// The stage's outputs: the contract's table, the report, and its HTML page.
pub(crate) struct Outcome {
    pub table: DataFrame,
    pub report: Report,
    pub html: String,
    /// What was learned (saved with the models, for shards).
    pub targeting: Targeting,
}

/// What learning gives the plan: the targeting, the report's learned part, and tonight's
/// encoded features with each message type's support scores (kept so that one process
/// computes them once).
pub(crate) struct Learning {
    pub targeting: Targeting,
    report: Report,
    x: Option<Array2<f64>>,
    support_scores: Vec<Option<Vec<f64>>>,
}

/// Learn tonight's targeting from the campaign history (steps 1 to 3 of the module docs),
/// for the premium users of `features` at `s`, all of them: the support cuts and the send
/// hours' prior are this population's.
pub(crate) fn learn_targeting(
    inputs: &Inputs,
    s: NaiveDate,
    features: &DataFrame,
    artifact: &ModelArtifact,
    settings: &InterventionSettings,
) -> Result<Learning> {
    // Engagement is learned only when it is worth something: it reads months of listening.
    let engagement = settings.value.active_day > 0.0;
    let mut hist = history::load(inputs, s, settings.horizon_days, engagement)?;
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
        plan: prices::Account::default(),
        frontier: Vec::new(),
        qini_curves: Vec::new(),
    };
    let population_hours = send_time::population_hours(&inputs.as_of(s), s)?;
    let learned = learn::learn(&mut hist, settings.seed)?;
    let mut targeting = Targeting {
        snapshot: s,
        seed: settings.seed,
        horizon_days: settings.horizon_days,
        arms: Vec::new(),
        encoder: None,
        type_of: Vec::new(),
        types: Vec::new(),
        unsubscribe: Vec::new(),
        engagement: Vec::new(),
        learner: String::new(),
        population_hours,
        report: serde_json::Value::Null,
    };
    let (mut x, mut support_scores) = (None, Vec::new());
    if let Some(mut l) = learned {
        let production = l.fit_production()?;
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
            let tonight = production[l.type_index(a)].as_ref();
            r.used = tonight.is_some();
            r.t_share = tonight.map_or(0.0, |m| m.t_share);
            report.arms.push(r);
            report.qini_curves.push((arm.clone(), l.curves[a].clone()));
        }
        let encoded = l.encoder.transform(features)?;
        targeting.arms = l.arms.clone();
        targeting.type_of = l.types_of_arms();
        targeting.encoder = Some(l.encoder.clone());
        // Tonight's model per message type, cut where tonight's population is.
        targeting.unsubscribe = l.fit_unsubscribe()?;
        targeting.engagement = l.fit_engagement()?;
        let types = l.take_types(production);
        targeting.types = types
            .into_iter()
            .map(|t| t.map(|(model, support)| targeting::TypeModel { model, support, cut: 0.0 }))
            .collect();
        support_scores = targeting.support_scores(&encoded);
        for (t, scores) in targeting.types.iter_mut().zip(&support_scores) {
            if let (Some(t), Some(scores)) = (t, scores) {
                t.cut = t.support.cut(scores);
            }
        }
        x = Some(encoded);
    }
    targeting.learner = report.chosen_learner.to_string();
    targeting.report = serde_json::to_value(&report).map_err(crate::error::Error::internal)?;
    Ok(Learning { targeting, report, x, support_scores })
}

/// Plan the intervention list for snapshot `s` (contract: `interventions`) in one
/// process: learn, then plan every premium user under the whole budgets.
pub(crate) fn plan(
    inputs: &Inputs,
    s: NaiveDate,
    scores: &DataFrame,
    features: &DataFrame,
    artifact: &ModelArtifact,
    settings: &InterventionSettings,
) -> Result<Outcome> {
    // What the plan weighs, first: prices in currencies without a rate stop the stage
    // before any learning.
    let currencies = (settings.value.value_months > 0.0).then(|| value::currencies(inputs, s)).transpose()?;
    let worth = Worth::of(&settings.value, features, currencies.as_ref())?;
    let Learning { targeting, mut report, x, support_scores } =
        learn_targeting(inputs, s, features, artifact, settings)?;
    let c = Candidates::from_features(features, settings.frequency_cap_days)?;
    let effects = match &x {
        Some(x) => targeting.effects(&c, x, &support_scores),
        None => Effects::none(targeting.arms.len(), c.len()),
    };
    drop((x, support_scores));
    let priced = prices::plan(&effects, &worth, &targeting.arms, &settings.budgets, &settings.unsubscribe_caps);
    report.frontier = prices::frontier(&effects, &worth, &targeting.arms, &settings.budgets);
    drop(effects);
    let table = assemble::assemble(
        inputs,
        s,
        scores,
        &c.ids,
        &targeting.arms,
        &priced.actions,
        settings,
        report.chosen_learner,
        &targeting.population_hours,
    )?;
    count_plan(
        &priced.actions,
        &targeting.arms,
        &mut report.planned,
        &mut report.planned_by_channel,
        &mut report.expected_churn_reduction,
    );
    report.plan = priced.account;
    let html = report::html(&report, s);
    Ok(Outcome { table, report, html, targeting })
}

fn count_plan(
    actions: &[Option<Choice>],
    arms: &[Arm],
    planned: &mut usize,
    by_channel: &mut BTreeMap<String, usize>,
    reduction: &mut f64,
) {
    *planned = actions.iter().flatten().count();
    for x in actions.iter().flatten() {
        *by_channel.entry(arms[x.arm].channel.clone()).or_default() += 1;
    }
    *reduction = actions.iter().flatten().map(|x| x.churn).sum();
}

/// A shard's first phase: its users' best arms per channel (the candidates table, kept
/// for its second phase) and their summary for the merge of budgets and caps ([`budget`]).
/// `currencies` (user_id, currency: [`currencies`]) where prices weigh the value.
pub(crate) fn candidates(
    features: &DataFrame,
    targeting: &Targeting,
    settings: &InterventionSettings,
    currencies: Option<&DataFrame>,
) -> Result<(DataFrame, Summary)> {
    let c = Candidates::from_features(features, settings.frequency_cap_days)?;
    let effects = shard_effects(features, targeting, &c)?;
    let best = value::best(&effects, &Worth::of(&settings.value, features, currencies)?, &targeting.arms, &[0.0; 3]);
    let capped = settings.unsubscribe_caps.map(|cap| cap.is_some());
    // Each user's expected unsubscribes per channel, only where a cap weighs them.
    let risk: Vec<Vec<f64>> = if capped.contains(&true) {
        best.iter().map(|b| b.iter().map(|x| x.map_or(0.0, |x| x.unsubscribe)).collect()).collect()
    } else {
        Vec::new()
    };
    let summary = Summary::with_unsubscribes(&policy::values(&best), &risk, &capped);
    Ok((targeting::candidates_frame(&c.ids, &best, &targeting.arms)?, summary))
}

/// The effects of every arm for a shard's users, by the night's models.
fn shard_effects(features: &DataFrame, targeting: &Targeting, c: &Candidates) -> Result<Effects> {
    Ok(match targeting.encode(features)? {
        Some(x) => targeting.effects(c, &x, &targeting.support_scores(&x)),
        None => Effects::none(targeting.arms.len(), c.len()),
    })
}

/// What a shard plans from: its best arms per channel (the candidates table), or, when
/// the night caps unsubscribes, its features again, so that its plan can move a user to
/// a quieter message under the cap's price, exactly as one process plans.
pub(crate) enum ShardPlan<'a> {
    Budgets { candidates: &'a DataFrame },
    Capped { features: &'a DataFrame, currencies: Option<&'a DataFrame>, caps: [Option<f64>; 3] },
}

/// A shard's second phase: the plan of its users under its `quotas` (and, capped, its
/// quotas of the caps), as the contract's table (priorities within the shard: `retain
/// commit` ranks the whole night), and the report: the learned part with this shard's
/// plan.
pub(crate) fn plan_shard(
    inputs: &Inputs,
    s: NaiveDate,
    scores: &DataFrame,
    from: ShardPlan<'_>,
    targeting: &Targeting,
    quotas: &[u64],
    settings: &InterventionSettings,
) -> Result<(DataFrame, serde_json::Value)> {
    let (ids, actions, account) = match from {
        ShardPlan::Budgets { candidates } => {
            let (ids, best) = targeting::read_candidates(candidates, &targeting.arms)?;
            (ids, policy::plan_best(&best, quotas), None)
        }
        ShardPlan::Capped { features, currencies, caps } => {
            let c = Candidates::from_features(features, settings.frequency_cap_days)?;
            let effects = shard_effects(features, targeting, &c)?;
            let worth = Worth::of(&settings.value, features, currencies)?;
            let priced = prices::plan(&effects, &worth, &targeting.arms, quotas, &caps);
            (c.ids, priced.actions, Some(priced.account))
        }
    };
    let table = assemble::assemble(
        inputs,
        s,
        scores,
        &ids,
        &targeting.arms,
        &actions,
        settings,
        &targeting.learner,
        &targeting.population_hours,
    )?;
    let (mut planned, mut by_channel, mut reduction) = (0, BTreeMap::new(), 0.0);
    count_plan(&actions, &targeting.arms, &mut planned, &mut by_channel, &mut reduction);
    let value: f64 = actions.iter().flatten().map(|x| x.value).sum();
    let mut report = targeting.report.clone();
    if let Some(r) = report.as_object_mut() {
        r.insert("planned".into(), planned.into());
        r.insert("planned_by_channel".into(), serde_json::json!(by_channel));
        r.insert("expected_churn_reduction".into(), reduction.into());
        r.insert("expected_value".into(), value.into());
        r.insert("quotas".into(), serde_json::json!(quotas));
        if let Some(account) = account {
            r.insert("plan".into(), serde_json::to_value(&account).map_err(crate::error::Error::internal)?);
        }
    }
    Ok((table, report))
}

/// The night's interventions table from its shards' parts: the priorities ranked over
/// every shard's users (by expected value, then user id), as one process ranks them.
pub(crate) fn rank_night(parts: DataFrame) -> Result<DataFrame> {
    let mut df = parts
        .sort(
            ["expected_value", "user_id"],
            SortMultipleOptions::default().with_order_descending_multi([true, false]).with_maintain_order(true),
        )
        .ctx("ranking the night's interventions")?;
    let n = df.height();
    df.with_column(Column::new("priority".into(), (1..=n as i32).collect::<Vec<i32>>()))
        .ctx("ranking the night's interventions")?;
    Ok(df)
}
