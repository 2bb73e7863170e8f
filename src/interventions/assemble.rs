//! The contract's `interventions` table for tonight's chosen actions: by priority, each
//! with its send time, its expected uplift in words, and its group from the holdout draw.

use std::collections::HashMap;

use chrono::NaiveDate;
use polars::prelude::*;

use super::frame::{floats, strings};
use super::policy::{Arm, Choice};
use super::send_time;
use crate::config::InterventionSettings;
use crate::error::{PolarsContext, Result};
use crate::inputs::Inputs;

/// A deterministic uniform number in [0, 1) for (seed, snapshot, user): the holdout draw.
/// It depends on nothing else, in particular not on the score.
pub(crate) fn holdout_draw(seed: u64, s: NaiveDate, user_id: &str) -> f64 {
    let key = format!("{seed}/{s}/{user_id}");
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

/// The contract's columns of the intervention list, row by row.
#[derive(Default)]
struct PlanColumns {
    user_id: Vec<String>,
    action: Vec<String>,
    channel: Vec<String>,
    send_at: Vec<i64>,
    expected_uplift: Vec<f64>,
    expected_value: Vec<f64>,
    expected_unsubscribe: Vec<f64>,
    expected_active_days: Vec<f64>,
    churn_probability: Vec<f64>,
    priority: Vec<i32>,
    group: Vec<&'static str>,
    reason: Vec<String>,
}

/// The contract's table for the chosen actions, by priority (by value, then user id),
/// with three columns beyond the contract's: `expected_value` (what the plan weighed,
/// `[interventions.value]`), `expected_unsubscribe` (the probability that the send makes
/// the user leave its channel) and `expected_active_days` (listening days it adds in the
/// 14 days after; 0 when engagement is not weighed).
#[allow(clippy::too_many_arguments)]
pub(super) fn assemble(
    inputs: &Inputs,
    s: NaiveDate,
    scores: &DataFrame,
    ids: &[String],
    arms: &[Arm],
    actions: &[Option<Choice>],
    settings: &InterventionSettings,
    learner: &str,
    population: &send_time::Hours,
) -> Result<DataFrame> {
    let pit = inputs.as_of(s);
    let mut chosen: Vec<(usize, Choice)> = actions.iter().enumerate().filter_map(|(u, a)| a.map(|a| (u, a))).collect();
    chosen.sort_by(|x, y| y.1.value.total_cmp(&x.1.value).then(ids[x.0].cmp(&ids[y.0])));
    let planned = DataFrame::new(
        chosen.len(),
        vec![Column::new("user_id".into(), chosen.iter().map(|&(u, _)| ids[u].as_str()).collect::<Vec<_>>())],
    )
    .ctx("listing the planned users")?;
    let evidence = send_time::hour_evidence(&pit, s, &planned)?;
    let users = pit.users.clone().select([col("user_id"), col("timezone")]).collect().ctx("reading time zones")?;
    let tz: HashMap<String, Option<String>> = strings(&users, "user_id")?
        .into_iter()
        .zip(users.column("timezone").ctx("users")?.str().ctx("users")?.iter().map(|t| t.map(str::to_string)))
        .collect();
    let risk: HashMap<String, f64> =
        strings(scores, "user_id")?.into_iter().zip(floats(scores, "churn_probability")?).collect();
    let n = chosen.len();
    let mut out = PlanColumns::default();
    for (rank, (u, x)) in chosen.into_iter().enumerate() {
        let id = &ids[u];
        let arm = &arms[x.arm];
        let v = x.churn;
        let p = risk.get(id).copied().unwrap_or(f64::NAN);
        let hour = send_time::best_hour(evidence.get(id).unwrap_or(&[0.0; 24]), population);
        let zone = tz.get(id).cloned().flatten();
        out.user_id.push(id.clone());
        out.action.push(arm.message_type.clone());
        out.channel.push(arm.channel.clone());
        out.send_at.push(send_time::utc(s, zone.as_deref(), hour));
        out.expected_uplift.push(v);
        out.expected_value.push(x.value);
        out.expected_unsubscribe.push(x.unsubscribe);
        out.expected_active_days.push(x.engagement);
        out.churn_probability.push(p);
        out.priority.push(rank as i32 + 1);
        let held = holdout_draw(settings.seed, s, id) < settings.holdout_fraction;
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
            Column::new("expected_value".into(), out.expected_value),
            Column::new("expected_unsubscribe".into(), out.expected_unsubscribe),
            Column::new("expected_active_days".into(), out.expected_active_days),
        ],
    )
    .ctx("assembling interventions")
}

#[cfg(test)]
mod tests {
    use super::*;

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
