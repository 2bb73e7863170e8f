//! What `retain`'s own plans promised, against what their readout measured.
//!
//! A plan logged back into `messages` (`campaign_id` = the run id of the command that
//! wrote it: README, "Reading out `retain`'s own plans") is read out like any campaign,
//! with one thing more: the plan wrote, per user, the churn probability the message
//! removes (`expected_uplift`) and the probability that it makes the user unsubscribe
//! from the channel (`expected_unsubscribe`). Averaged over an arm's randomised users,
//! treatment and holdout alike, they are the plan's forecast of the arm's effect on two
//! of the readout's own metrics, retention and unsubscribes. A forecast outside the
//! readout's interval, plan after plan, says the learners that priced the plan are off,
//! which no other check shows: the replay values the policy on past campaigns, not on
//! what tonight's plan promised.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::*;

use super::analyse::Cell;
use super::metrics::Metric;
use crate::error::{PolarsContext, Result};

/// A plan `retain` wrote: the interventions table of night `snapshot`.
pub(crate) struct Plan {
    pub snapshot: NaiveDate,
    pub table: DataFrame,
}

/// The metrics a plan forecasts, and the column of the interventions table that does.
const FORECASTS: [(Metric, &str); 2] =
    [(Metric::Retention, "expected_uplift"), (Metric::Unsubscribed, "expected_unsubscribe")];

/// Per cell (in the order of `cells`), the forecast effect per metric of the plan whose
/// run id is the cell's campaign: the mean of the forecasting column over the plan's rows
/// of the cell's action and channel. Empty for cells of other campaigns, and for columns
/// a plan does not have (written before they were).
pub(crate) fn forecasts(plans: &BTreeMap<String, Plan>, cells: &[Cell]) -> Result<Vec<BTreeMap<Metric, f64>>> {
    let mut means: BTreeMap<(&str, String, String), BTreeMap<Metric, f64>> = BTreeMap::new();
    for (campaign, plan) in plans {
        let columns: Vec<(Metric, &str)> =
            FORECASTS.into_iter().filter(|(_, c)| plan.table.column(c).is_ok()).collect();
        if columns.is_empty() {
            continue;
        }
        let context = format!("the forecasts of the plan of {}", plan.snapshot);
        let by = plan
            .table
            .clone()
            .lazy()
            .group_by([col("action"), col("channel")])
            .agg(columns.iter().map(|(_, c)| col(*c).cast(DataType::Float64).mean()).collect::<Vec<_>>())
            .collect()
            .ctx(&context)?;
        let text = |name: &str| -> Result<Vec<String>> {
            Ok(by
                .column(name)
                .ctx(&context)?
                .str()
                .ctx(&context)?
                .iter()
                .map(|v| v.unwrap_or("").to_string())
                .collect())
        };
        let (actions, channels) = (text("action")?, text("channel")?);
        for (metric, column) in &columns {
            let values: Vec<Option<f64>> = by.column(column).ctx(&context)?.f64().ctx(&context)?.iter().collect();
            for ((action, channel), value) in actions.iter().zip(&channels).zip(values) {
                if let Some(v) = value.filter(|v| v.is_finite()) {
                    means.entry((campaign.as_str(), action.clone(), channel.clone())).or_default().insert(*metric, v);
                }
            }
        }
    }
    Ok(cells
        .iter()
        .map(|c| {
            means.get(&(c.campaign.as_str(), c.message_type.clone(), c.channel.clone())).cloned().unwrap_or_default()
        })
        .collect())
}
