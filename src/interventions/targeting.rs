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

use super::policy::{Arm, Best, Candidates, best_per_channel};
use super::predict::{self, ArmPredictor};
use super::send_time::Hours;
use crate::config::InterventionSettings;
use crate::contract::CHANNELS;
use crate::error::{Error, PolarsContext, Result};
use crate::models::encoder::Encoder;
use crate::models::uplift::{Support, UpliftModel};

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

    /// Each user's best arms per channel (rows of `x`, users of `c`), from the support
    /// scores of `x` ([`Targeting::support_scores`]).
    pub(crate) fn best(&self, c: &Candidates, x: &Array2<f64>, support_scores: &[Option<Vec<f64>>]) -> Vec<Best> {
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
        let benefit = predict::benefits(&predictors, &self.arms, c, x, &inside);
        best_per_channel(c, &self.arms, &benefit)
    }
}

/// The candidates table of one shard: per user, the best arm's message type and predicted
/// churn reduction on each channel (`push_action`, `push_value`, …; null where none).
pub(crate) fn candidates_frame(ids: &[String], best: &[Best], arms: &[Arm]) -> Result<DataFrame> {
    let mut columns = vec![Column::new("user_id".into(), ids)];
    for (ch, name) in CHANNELS.iter().enumerate() {
        let action: Vec<Option<&str>> =
            best.iter().map(|b| b[ch].map(|(a, _)| arms[a].message_type.as_str())).collect();
        let value: Vec<Option<f64>> = best.iter().map(|b| b[ch].map(|(_, v)| v)).collect();
        columns.push(Column::new(format!("{name}_action").into(), action));
        columns.push(Column::new(format!("{name}_value").into(), value));
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
        let values = df.column(&format!("{name}_value")).ctx("candidates")?.f64().ctx("candidates")?;
        for (u, (action, value)) in actions.iter().zip(values.iter()).enumerate() {
            if let (Some(action), Some(value)) = (action, value) {
                let a = arms.iter().position(|arm| arm.message_type == action && arm.channel == *name).ok_or_else(
                    || Error::data(format!("the candidates name an arm the models do not have: {action} by {name}")),
                )?;
                best[u][ch] = Some((a, value));
            }
        }
    }
    Ok((ids, best))
}
