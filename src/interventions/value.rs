//! What an action is worth to the business, from what it is predicted to do.
//!
//! An arm for a user has predicted effects ([`Effects`]): churn probability removed, the
//! probability that the send makes the user unsubscribe from its channel, and (when it
//! is weighed) the active listening days it adds in the 14 days after. The plan
//! weighs them by `[interventions.value]` ([`Worth`]):
//!
//! value = churn prevented × the user's monthly price × `value_months`
//!         + active days gained × `active_day`
//!         − `send_cost` of the channel − P(unsubscribe) × (`reach` of the channel + its price)
//!
//! where the price of unsubscribes on a channel is the dual price of its cap (found where
//! the plan is made), 0 when uncapped. With every weight zero (the default) the value is
//! the churn prevented, and the plan is the one that maximises it.

use polars::prelude::*;

use super::policy::{Arm, Best, Choice, best_per_channel};
use crate::config::Value;
use crate::error::{Error, PolarsContext, Result};
use crate::inputs::Inputs;
use chrono::NaiveDate;

/// Per arm and user, the predicted effects of sending it, and whether the user may get it.
#[derive(Debug)]
pub(crate) struct Effects {
    pub users: usize,
    /// `churn[a][u]`: churn probability removed by arm a for user u.
    pub churn: Vec<Vec<f64>>,
    /// `unsubscribe[a][u]`: probability that the send makes u leave a's channel.
    pub unsubscribe: Vec<Vec<f32>>,
    /// `engagement[a][u]`: active days gained in the 14 days after the send (None: not
    /// learned, engagement is not weighed).
    pub engagement: Option<Vec<Vec<f32>>>,
    /// `eligible[a][u]`: u may get a (opt-in, frequency cap, inside a's support, a model).
    pub eligible: Vec<Vec<bool>>,
}

impl Effects {
    /// No arm for anyone (no history to learn from).
    pub(crate) fn none(arms: usize, users: usize) -> Effects {
        Effects {
            users,
            churn: vec![vec![0.0; users]; arms],
            unsubscribe: vec![vec![0.0; users]; arms],
            engagement: None,
            eligible: vec![vec![false; users]; arms],
        }
    }
}

/// The weights of an action's value, per user where they depend on the user.
pub(crate) struct Worth {
    /// What one unit of churn probability removed is worth, per user (1 without money).
    pub churn: Vec<f64>,
    /// What one more active day is worth.
    pub active_day: f64,
    pub send_cost: [f64; 3],
    pub reach: [f64; 3],
}

impl Worth {
    /// The weights for the users of `features` (one row each): their monthly price is the
    /// `price` feature (the latest amount billed) in the unit of `currency_rates` (by the
    /// currency of each user's latest billed amount, `currencies`: user_id, currency), or
    /// the population's median paid price where it is unknown or 0 (a trial: what a kept
    /// trial user will likely pay). Prices in several currencies without a rate for each
    /// cannot be added up: a configuration error naming the currencies.
    pub(crate) fn of(settings: &Value, features: &DataFrame, currencies: Option<&DataFrame>) -> Result<Worth> {
        let churn = if settings.value_months > 0.0 {
            let price = features.column("price").ctx("features")?.cast(&DataType::Float64).ctx("price")?;
            let rates = rates_of(settings, features, currencies)?;
            let price: Vec<Option<f64>> = price
                .f64()
                .ctx("price")?
                .iter()
                .zip(rates)
                .map(|(p, r)| p.filter(|p| *p > 0.0).zip(r).map(|(p, r)| p * r))
                .collect();
            let mut known: Vec<f64> = price.iter().flatten().copied().collect();
            known.sort_by(f64::total_cmp);
            let typical = known.get(known.len() / 2).copied().unwrap_or(0.0);
            price.into_iter().map(|p| p.unwrap_or(typical) * settings.value_months).collect()
        } else {
            vec![1.0; features.height()]
        };
        Ok(Worth {
            churn,
            active_day: settings.active_day,
            send_cost: settings.send_cost.by_channel(),
            reach: settings.reach.by_channel(),
        })
    }
}

/// Per user of `features`, the rate of their price's currency into the value's unit (None:
/// no currency known); 1 for everyone when all prices are in one currency and no rates
/// are set.
fn rates_of(settings: &Value, features: &DataFrame, currencies: Option<&DataFrame>) -> Result<Vec<Option<f64>>> {
    let n = features.height();
    let Some(currencies) = currencies else { return Ok(vec![Some(1.0); n]) };
    let users = features.column("user_id").ctx("features")?.str().ctx("features")?;
    let of: std::collections::HashMap<&str, &str> = currencies
        .column("user_id")
        .ctx("currencies")?
        .str()
        .ctx("currencies")?
        .iter()
        .zip(currencies.column("currency").ctx("currencies")?.str().ctx("currencies")?.iter())
        .filter_map(|(u, c)| u.zip(c))
        .collect();
    let seen: std::collections::BTreeSet<&str> = users.iter().flatten().filter_map(|u| of.get(u).copied()).collect();
    if settings.currency_rates.is_empty() {
        if seen.len() > 1 {
            return Err(Error::config(format!(
                "interventions.value.value_months weighs churn by price, but prices are billed in {} currencies ({}): \
                 set interventions.value.currency_rates for each",
                seen.len(),
                seen.iter().copied().collect::<Vec<_>>().join(", ")
            )));
        }
        return Ok(users.iter().map(|u| u.and_then(|u| of.get(u)).map(|_| 1.0)).collect());
    }
    let missing: Vec<&str> = seen.iter().copied().filter(|c| !settings.currency_rates.contains_key(*c)).collect();
    if !missing.is_empty() {
        return Err(Error::config(format!(
            "interventions.value.currency_rates has no rate for {} (prices are billed in {})",
            missing.join(", "),
            seen.iter().copied().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(users.iter().map(|u| u.and_then(|u| of.get(u)).map(|c| settings.currency_rates[*c])).collect())
}

/// Each user's currency at `s`: that of their latest billed amount (user_id, currency).
pub(crate) fn currencies(inputs: &Inputs, s: NaiveDate) -> Result<DataFrame> {
    inputs
        .as_of(s)
        .billing
        .filter(col("amount").is_not_null().and(col("currency").is_not_null()))
        .sort(["ts"], SortMultipleOptions::default())
        .group_by([col("user_id")])
        .agg([col("currency").last()])
        .collect()
        .ctx("reading the currency of each user's price")
}

/// Arm `a` for user `u` with unsubscribes priced at `unsubscribe_price` per channel (on
/// top of the reach they lose); None where u may not get a.
pub(crate) fn choice(
    effects: &Effects,
    worth: &Worth,
    arms: &[Arm],
    unsubscribe_price: &[f64; 3],
    a: usize,
    u: usize,
) -> Option<Choice> {
    if !effects.eligible[a][u] {
        return None;
    }
    let ch = arms[a].channel_index()?;
    let churn = effects.churn[a][u];
    let unsubscribe = f64::from(effects.unsubscribe[a][u]);
    let engagement = effects.engagement.as_ref().map_or(0.0, |e| f64::from(e[a][u]));
    let value = churn * worth.churn[u] + engagement * worth.active_day
        - worth.send_cost[ch]
        - unsubscribe * (worth.reach[ch] + unsubscribe_price[ch]);
    Some(Choice { arm: a, value, churn, unsubscribe, engagement })
}

/// Each user's best arm per channel by value, unsubscribes priced at `unsubscribe_price`.
pub(crate) fn best(effects: &Effects, worth: &Worth, arms: &[Arm], unsubscribe_price: &[f64; 3]) -> Vec<Best> {
    best_per_channel(arms, |a, u| choice(effects, worth, arms, unsubscribe_price, a, u), effects.users)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChannelAmounts;

    fn arms() -> Vec<Arm> {
        ["push", "email"].iter().map(|c| Arm { message_type: "winback_offer".into(), channel: c.to_string() }).collect()
    }

    /// With every weight zero the value is the churn prevented; a family plan's user is
    /// worth more than a student's for the same churn prevented; a channel's reach makes
    /// an annoying send worth less than a quiet one.
    #[test]
    fn the_value_weighs_churn_by_price_and_prices_unsubscribes_and_sends() {
        let effects = Effects {
            users: 2,
            churn: vec![vec![0.02, 0.02], vec![0.015, 0.015]],
            unsubscribe: vec![vec![0.2, 0.0], vec![0.0, 0.0]],
            engagement: None,
            eligible: vec![vec![true, true], vec![true, true]],
        };
        let features = df!("price" => [Some(5.99), Some(19.99)]).unwrap();
        let zero = Worth::of(&Value::default(), &features, None).unwrap();
        let b = best(&effects, &zero, &arms(), &[0.0; 3]);
        assert_eq!(b[0][0].unwrap().value, 0.02, "churn prevented, as a probability");
        let money = Value {
            value_months: 6.0,
            send_cost: ChannelAmounts { push: 0.001, email: 0.002, in_app: 0.0 },
            reach: ChannelAmounts { push: 1.0, email: 0.0, in_app: 0.0 },
            ..Value::default()
        };
        let worth = Worth::of(&money, &features, None).unwrap();
        let b = best(&effects, &worth, &arms(), &[0.0; 3]);
        let (student, family) = (b[0][0].unwrap().value, b[1][0].unwrap().value);
        // (The unsubscribe probabilities are kept as f32.)
        assert!((student - (0.02 * 5.99 * 6.0 - 0.001 - 0.2)).abs() < 1e-7, "{student}");
        assert!((family - (0.02 * 19.99 * 6.0 - 0.001)).abs() < 1e-12, "{family}");
        assert!(b[1][1].unwrap().value > b[0][1].unwrap().value, "same churn prevented, higher price");
        // A cap's price on push unsubscribes lowers only the push sends that risk one.
        let priced = best(&effects, &worth, &arms(), &[0.5, 0.0, 0.0]);
        assert!((priced[0][0].unwrap().value - (student - 0.1)).abs() < 1e-7);
        assert_eq!(priced[1][0], b[1][0]);
    }
}
