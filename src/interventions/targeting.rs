//! What tonight's plan needs from the campaign history, once learned: per message type
//! the production uplift model, where it was tried (its support) and where tonight's whole
//! population is cut, plus the population's send hours and the report's learned part.
//!
//! Why a value of its own: one process learns it and plans at once, but a night of shards
//! learns it once (`retain train`, saved with the models) and every shard plans its users
//! with it. Everything in it that depends on a population (the support cuts, the prior of
//! the send hours) is the night's whole population's, so a shard's users are judged as
//! the single process judges them.

use chrono::NaiveDate;
use ndarray::Array2;
use polars::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::policy::{Arm, Best, Candidates, Choice};
use super::predict::{self, ArmPredictor};
use super::send_time::Hours;
use super::value::Effects;
use crate::config::InterventionSettings;
use crate::contract::CHANNELS;
use crate::error::{Error, PolarsContext, Result};
use crate::models::encoder::Encoder;
use crate::models::uplift::{SentRate, Support, UpliftModel};

/// One message type's model for tonight.
#[derive(Serialize, Deserialize)]
pub(crate) struct TypeModel {
    pub model: UpliftModel,
    pub support: Support,
    /// The support score at or above which a user of tonight's population is inside.
    pub cut: f64,
}

/// See the module docs.
#[derive(Serialize, Deserialize)]
pub(crate) struct Targeting {
    pub snapshot: NaiveDate,
    /// The run seed and horizon it was learned with: planning with others is refused.
    pub seed: u64,
    pub horizon_days: u32,
    /// The arms seen in the history, sorted.
    pub arms: Vec<Arm>,
    /// The encoder of the history's features (None: no history to learn from).
    pub encoder: Option<Encoder>,
    /// Per arm, its message type (an index into `types`).
    pub type_of: Vec<usize>,
    /// Per message type, its model (None: too few decisions, or never tried).
    pub types: Vec<Option<TypeModel>>,
    /// Per arm, the probability that its send makes the user unsubscribe from its channel
    /// (None: never sent; empty in models saved before it was learned: none predicted).
    #[serde(default)]
    pub unsubscribe: Vec<Option<SentRate>>,
    /// Per message type, its effect on the share of active days after a send (empty:
    /// engagement not weighed, `interventions.value.active_day` = 0).
    #[serde(default)]
    pub engagement: Vec<Option<UpliftModel>>,
    /// The learner chosen, as the table's `reason` names it.
    pub learner: String,
    /// The population's send-hour evidence, the prior of every user's.
    pub population_hours: Hours,
    /// The report's learned part (what each arm taught, the learners' Qini, the replay).
    pub report: serde_json::Value,
}

impl Targeting {
    /// Decode what [`serde_json`] wrote, checking it was learned for `s` with `settings`.
    pub(crate) fn from_json(bytes: &[u8], s: NaiveDate, settings: &InterventionSettings) -> Result<Self> {
        let t: Targeting = serde_json::from_slice(bytes)
            .map_err(|e| Error::data(format!("the uplift models saved with the model of {s} cannot be read: {e}")))?;
        if t.snapshot != s || t.seed != settings.seed || t.horizon_days != settings.horizon_days {
            return Err(Error::config(format!(
                "the uplift models saved for snapshot {} were learned with seed {} and horizon {} days, not {} and {}: \
                 run `retain train` with these settings",
                t.snapshot, t.seed, t.horizon_days, settings.seed, settings.horizon_days
            )));
        }
        Ok(t)
    }

    /// Tonight's features encoded for the uplift models (None without a history).
    pub(crate) fn encode(&self, features: &DataFrame) -> Result<Option<Array2<f64>>> {
        self.encoder.as_ref().map(|e| e.transform(features)).transpose()
    }

    /// Per message type, the support score of each row of `x` (None for types without a model).
    pub(crate) fn support_scores(&self, x: &Array2<f64>) -> Vec<Option<Vec<f64>>> {
        self.types.par_iter().map(|t| t.as_ref().map(|t| t.support.scores(x))).collect()
    }

    /// Each arm's predicted effects for the users of `c` (rows of `x`), from the support
    /// scores of `x` ([`Targeting::support_scores`]): who may get it, the churn it
    /// prevents, and the unsubscribes it causes.
    pub(crate) fn effects(&self, c: &Candidates, x: &Array2<f64>, support_scores: &[Option<Vec<f64>>]) -> Effects {
        let inside_type: Vec<Option<Vec<bool>>> = self
            .types
            .iter()
            .zip(support_scores)
            .map(|(t, scores)| match (t, scores) {
                (Some(t), Some(scores)) => Some(scores.iter().map(|&p| p >= t.cut).collect()),
                _ => None,
            })
            .collect();
        let predictors: Vec<Option<ArmPredictor>> = self
            .arms
            .iter()
            .enumerate()
            .map(|(a, arm)| self.types[self.type_of[a]].as_ref().map(|t| ArmPredictor::new(arm, &t.model, &t.support)))
            .collect();
        let inside: Vec<Option<Vec<bool>>> = (0..self.arms.len())
            .map(|a| predictors[a].as_ref().and_then(|_| inside_type[self.type_of[a]].clone()))
            .collect();
        let churn = predict::benefits(&predictors, &self.arms, c, x, &inside);
        let eligible: Vec<Vec<bool>> = (0..self.arms.len())
            .map(|a| match &inside[a] {
                Some(inside) => (0..c.len()).map(|u| inside[u] && c.allows(u, &self.arms[a])).collect(),
                None => vec![false; c.len()],
            })
            .collect();
        let unsubscribe = (0..self.arms.len())
            .into_par_iter()
            .map(|a| {
                let model = self.unsubscribe.get(a).and_then(Option::as_ref);
                predict::sent_rates(model, &self.arms[a], x, &eligible[a])
            })
            .collect();
        let engagement = (!self.engagement.is_empty()).then(|| {
            (0..self.arms.len())
                .into_par_iter()
                .map(|a| {
                    let model = self.engagement.get(self.type_of[a]).and_then(Option::as_ref);
                    predict::active_days(model, &self.arms[a], x, &eligible[a])
                })
                .collect()
        });
        Effects { users: c.len(), churn, unsubscribe, engagement, eligible }
    }
}

/// The candidates table of one shard: per user, the best arm's message type, value,
/// predicted churn reduction, unsubscribe probability and active days gained on each
/// channel (`push_action`, `push_value`, `push_churn`, `push_unsubscribe`,
/// `push_active_days`, …; null where none).
pub(crate) fn candidates_frame(ids: &[String], best: &[Best], arms: &[Arm]) -> Result<DataFrame> {
    let mut columns = vec![Column::new("user_id".into(), ids)];
    for (ch, name) in CHANNELS.iter().enumerate() {
        let action: Vec<Option<&str>> = best.iter().map(|b| b[ch].map(|x| arms[x.arm].message_type.as_str())).collect();
        columns.push(Column::new(format!("{name}_action").into(), action));
        for (what, of) in [
            ("value", (|x: Choice| x.value) as fn(Choice) -> f64),
            ("churn", |x: Choice| x.churn),
            ("unsubscribe", |x: Choice| x.unsubscribe),
            ("active_days", |x: Choice| x.engagement),
        ] {
            let v: Vec<Option<f64>> = best.iter().map(|b| b[ch].map(of)).collect();
            columns.push(Column::new(format!("{name}_{what}").into(), v));
        }
    }
    DataFrame::new(ids.len(), columns).ctx("assembling the candidates")
}

/// A candidates table read back: the users and their best arms (indices into `arms`).
pub(crate) fn read_candidates(df: &DataFrame, arms: &[Arm]) -> Result<(Vec<String>, Vec<Best>)> {
    let ids: Vec<String> = df
        .column("user_id")
        .ctx("candidates")?
        .str()
        .ctx("candidates")?
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect();
    let mut best: Vec<Best> = vec![[None; 3]; ids.len()];
    for (ch, name) in CHANNELS.iter().enumerate() {
        let actions = df.column(&format!("{name}_action")).ctx("candidates")?.str().ctx("candidates")?;
        let number = |what: &str| -> Result<Vec<Option<f64>>> {
            Ok(df.column(&format!("{name}_{what}")).ctx("candidates")?.f64().ctx("candidates")?.iter().collect())
        };
        let (values, churn, unsubscribe) = (number("value")?, number("churn")?, number("unsubscribe")?);
        let active_days = number("active_days")?;
        for (u, action) in actions.iter().enumerate() {
            if let (Some(action), Some(value)) = (action, values[u]) {
                let a = arms.iter().position(|arm| arm.message_type == action && arm.channel == *name).ok_or_else(
                    || Error::data(format!("the candidates name an arm the models do not have: {action} by {name}")),
                )?;
                best[u][ch] = Some(Choice {
                    arm: a,
                    value,
                    churn: churn[u].unwrap_or(0.0),
                    unsubscribe: unsubscribe[u].unwrap_or(0.0),
                    engagement: active_days[u].unwrap_or(0.0),
                });
            }
        }
    }
    Ok((ids, best))
}
