//! Who may get which message, and the two targeting policies that choose among them: the
//! uplift policy (largest total predicted churn reduction, exactly, under the budgets) and
//! risk-ranked targeting, the conventional comparison.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::allocate;
use crate::contract::CHANNELS;
use crate::error::{PolarsContext, Result};

/// One kind of action: a message type on a channel.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Arm {
    pub message_type: String,
    pub channel: String,
}

impl Arm {
    pub fn channel_index(&self) -> Option<usize> {
        CHANNELS.iter().position(|c| *c == self.channel)
    }
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
    let best = best_per_channel(
        arms,
        |a, u| {
            (c.allows(u, &arms[a])).then(|| Choice {
                arm: a,
                value: benefit[a][u],
                churn: benefit[a][u],
                unsubscribe: 0.0,
                engagement: 0.0,
            })
        },
        c.len(),
    );
    plan_best(&best, budgets).into_iter().map(|a| a.map(|a| (a.arm, a.value))).collect()
}

/// One arm for one user: its value to the plan (churn prevented unless
/// `[interventions.value]` prices more), and the objectives that value is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Choice {
    pub arm: usize,
    pub value: f64,
    /// Predicted churn reduction (a probability).
    pub churn: f64,
    /// Predicted probability that the send makes the user unsubscribe from its channel.
    pub unsubscribe: f64,
    /// Predicted active days gained in the 14 days after the send (0 when not weighed).
    pub engagement: f64,
}

/// Per user and channel, the allowed arm of largest positive value.
pub(crate) type Best = [Option<Choice>; 3];

/// Each user's [`Best`] arms: `choice(a, u)` is arm a for user u, None where u may not get it.
pub(crate) fn best_per_channel(
    arms: &[Arm],
    choice: impl Fn(usize, usize) -> Option<Choice>,
    users: usize,
) -> Vec<Best> {
    let mut best: Vec<Best> = vec![[None; 3]; users];
    for (a, arm) in arms.iter().enumerate() {
        let Some(ch) = arm.channel_index() else { continue };
        for (u, slot) in best.iter_mut().enumerate() {
            if let Some(x) = choice(a, u)
                && x.value > 0.0
                && slot[ch].is_none_or(|b| x.value > b.value)
            {
                slot[ch] = Some(x);
            }
        }
    }
    best
}

/// The values [`allocate`](allocate::allocate) plans with: each user's best value per channel.
pub(crate) fn values(best: &[Best]) -> Vec<Vec<Option<f64>>> {
    best.iter().map(|s| s.iter().map(|o| o.map(|x| x.value)).collect()).collect()
}

/// The optimal plan of the users' best arms under `capacity` sends per channel.
pub(crate) fn plan_best(best: &[Best], capacity: &[u64]) -> Vec<Option<Choice>> {
    let plan = allocate::allocate(&values(best), capacity);
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
