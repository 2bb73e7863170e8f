//! `[interventions]`: the holdout, budgets, frequency cap, what the plan weighs
//! (`[interventions.value]`) and the unsubscribe caps, each per channel in the order of
//! [`CHANNELS`], with their defaults and checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::CHANNELS;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Interventions {
    /// Share of chosen users randomly held out (not sent), to measure the policy.
    pub holdout_fraction: f64,
    /// Most sends per channel per run.
    pub budget: Budget,
    /// No message to a user who got one (treatment arm) in the last N days.
    pub frequency_cap_days: u32,
    /// What an action is worth. All zero (the default): the plan maximises churn prevented.
    pub value: Value,
    /// Most expected unsubscribes per channel per run (unset: no cap).
    pub unsubscribe_cap: UnsubscribeCap,
}

/// The weights of an action's value (`[interventions.value]`): churn prevented ×
/// monthly price × `value_months` + active days gained × `active_day` − `send_cost` −
/// expected unsubscribes × `reach`, per channel where a key is per channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Value {
    /// Months of the user's monthly price a retained subscriber is worth. 0: churn
    /// prevented is counted as a probability (no money), and every other weight is in
    /// that unit.
    pub value_months: f64,
    /// Worth of one more active listening day in the 14 days after the message.
    pub active_day: f64,
    /// Cost of one send, per channel.
    pub send_cost: ChannelAmounts,
    /// Worth of the channel's reach to one opted-in user (what an unsubscribe loses).
    pub reach: ChannelAmounts,
    /// With `value_months` > 0 and prices billed in several currencies: the worth of one
    /// unit of each (ISO 4217 code → rate into the unit of the other weights).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub currency_rates: BTreeMap<String, f64>,
}

/// One amount per channel; unset keys are 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelAmounts {
    pub push: f64,
    pub email: f64,
    pub in_app: f64,
}

/// At most this many expected unsubscribes per channel; unset keys: no cap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnsubscribeCap {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_app: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    pub push: u64,
    pub email: u64,
    pub in_app: u64,
}

impl Default for Interventions {
    fn default() -> Self {
        Interventions {
            holdout_fraction: 0.1,
            budget: Budget::default(),
            frequency_cap_days: 7,
            value: Value::default(),
            unsubscribe_cap: UnsubscribeCap::default(),
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget { push: 50_000, email: 100_000, in_app: 100_000 }
    }
}

impl Budget {
    /// The budgets in the order of [`CHANNELS`].
    pub(crate) fn by_channel(&self) -> [u64; 3] {
        by_channel(self.push, self.email, self.in_app)
    }
}

/// A per-channel setting in the order of [`CHANNELS`].
fn by_channel<T: Copy>(push: T, email: T, in_app: T) -> [T; 3] {
    CHANNELS.map(|c| match c {
        "push" => push,
        "email" => email,
        "in_app" => in_app,
        _ => unreachable!("a channel of the contract without a key: {c}"),
    })
}

impl ChannelAmounts {
    /// The amounts in the order of [`CHANNELS`].
    pub(crate) fn by_channel(&self) -> [f64; 3] {
        by_channel(self.push, self.email, self.in_app)
    }
}

impl UnsubscribeCap {
    /// The caps in the order of [`CHANNELS`].
    pub(crate) fn by_channel(&self) -> [Option<f64>; 3] {
        by_channel(self.push, self.email, self.in_app)
    }
}

impl Value {
    pub(super) fn check(&self) -> Result<()> {
        let mut named = vec![("value_months".to_string(), self.value_months), ("active_day".into(), self.active_day)];
        for (c, (cost, reach)) in
            CHANNELS.iter().zip(self.send_cost.by_channel().into_iter().zip(self.reach.by_channel()))
        {
            named.push((format!("send_cost.{c}"), cost));
            named.push((format!("reach.{c}"), reach));
        }
        for (code, rate) in &self.currency_rates {
            named.push((format!("currency_rates.{code}"), *rate));
        }
        for (name, x) in named {
            if !(x.is_finite() && x >= 0.0) {
                return Err(Error::config(format!("interventions.value.{name} must be a finite number ≥ 0, got {x}")));
            }
        }
        Ok(())
    }
}
