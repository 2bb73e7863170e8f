//! The intervention list: at most one message per premium user, chosen where past
//! randomised campaigns show the message lowers churn, within channel budgets, opt-ins
//! and a frequency cap, sent at the user's good local hour, with a hashed holdout.
//!
//! Effects come from the `messages` history: for each (message_type, channel), the
//! inverse-propensity-weighted churn rate of the holdout arm minus that of the treatment
//! arm, among messages whose label horizon has closed by S. A user's expected uplift is
//! their churn probability times that relative reduction.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate, TimeZone as _};
use polars::prelude::*;
use serde::Serialize;

use crate::config::Settings;
use crate::error::{PolarsContext, Result};
use crate::inputs::{Inputs, date_lit};
use crate::labels;

/// The estimated effect of one (message_type, channel) from past campaigns.
#[derive(Debug, Clone, Serialize)]
pub struct ArmEffect {
    pub message_type: String,
    pub channel: String,
    pub treated: usize,
    pub held_out: usize,
    pub churn_treated: f64,
    pub churn_held_out: f64,
    /// Churn probability removed per unit of baseline churn (1 − treated / held out).
    pub relative_reduction: f64,
}

/// How many days of message decisions (ending H days before S) the effects are learned
/// from: long enough for several weekly campaigns of every kind, short enough to follow
/// changes in what messages say. The inputs' message lookback must cover it.
pub const EFFECT_WINDOW_DAYS: i64 = 120;

/// Estimate effects from messages whose horizon has closed by `s`.
pub fn estimate_effects(inputs: &Inputs, s: NaiveDate, horizon_days: u32) -> Result<Vec<ArmEffect>> {
    let last_decision = s - Duration::days(horizon_days as i64);
    let first_decision = last_decision - Duration::days(EFFECT_WINDOW_DAYS - 1);
    let msgs = inputs
        .messages
        .clone()
        .with_column(col("ts").dt().date().alias("day"))
        .filter(col("day").lt_eq(date_lit(last_decision)).and(col("day").gt_eq(date_lit(first_decision))))
        .select([col("user_id"), col("day"), col("message_type"), col("channel"), col("arm"), col("propensity")])
        .collect()
        .ctx("reading past messages")?;
    let days: Vec<i32> = {
        let mut d: Vec<i32> =
            msgs.column("day").ctx("messages")?.date().ctx("messages")?.physical().into_no_null_iter().collect();
        d.sort_unstable();
        d.dedup();
        d
    };
    // The churn label of each message: premium at its day, not premium H days later.
    let mut labelled = Vec::new();
    for d in days {
        let day = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + Duration::days(d as i64);
        let lab =
            labels::churn_labels(inputs.billing_until(day + Duration::days(horizon_days as i64)), day, horizon_days)
                .with_column(date_lit(day).alias("day"));
        labelled.push(lab);
    }
    if labelled.is_empty() {
        return Ok(Vec::new());
    }
    let lab = concat(labelled, UnionArgs::default()).ctx("labelling past messages")?;
    let joined = msgs
        .lazy()
        .join(lab, [col("user_id"), col("day")], [col("user_id"), col("day")], JoinArgs::new(JoinType::Inner))
        .with_column((lit(1.0) / col("propensity").clip(lit(0.01), lit(1.0))).alias("w"))
        .group_by([col("message_type"), col("channel"), col("arm")])
        .agg([
            len().alias("n"),
            (col("w") * col("churned").cast(DataType::Float64)).sum().alias("wy"),
            col("w").sum().alias("wsum"),
        ])
        .sort(["message_type", "channel", "arm"], SortMultipleOptions::default())
        .collect()
        .ctx("estimating message effects")?;
    let mt = joined.column("message_type").ctx("effects")?.str().ctx("effects")?.clone();
    let ch = joined.column("channel").ctx("effects")?.str().ctx("effects")?.clone();
    let arm = joined.column("arm").ctx("effects")?.str().ctx("effects")?.clone();
    let n = joined.column("n").ctx("effects")?.cast(&DataType::UInt64).ctx("effects")?;
    let n = n.u64().ctx("effects")?;
    let wy = joined.column("wy").ctx("effects")?.f64().ctx("effects")?.clone();
    let ws = joined.column("wsum").ctx("effects")?.f64().ctx("effects")?.clone();
    let mut acc: HashMap<(String, String), [(usize, f64); 2]> = HashMap::new();
    for i in 0..joined.height() {
        let key = (mt.get(i).unwrap_or("").to_string(), ch.get(i).unwrap_or("").to_string());
        let slot = if arm.get(i) == Some("treatment") { 0 } else { 1 };
        let rate = wy.get(i).unwrap_or(0.0) / ws.get(i).unwrap_or(1.0).max(1e-12);
        acc.entry(key).or_insert([(0, 0.0); 2])[slot] = (n.get(i).unwrap_or(0) as usize, rate);
    }
    let mut out: Vec<ArmEffect> = acc
        .into_iter()
        .filter(|(_, v)| v[0].0 > 0 && v[1].0 > 0)
        .map(|((message_type, channel), v)| ArmEffect {
            message_type,
            channel,
            treated: v[0].0,
            held_out: v[1].0,
            churn_treated: v[0].1,
            churn_held_out: v[1].1,
            relative_reduction: if v[1].1 > 0.0 { 1.0 - v[0].1 / v[1].1 } else { 0.0 },
        })
        .collect();
    out.sort_by(|a, b| (&a.message_type, &a.channel).cmp(&(&b.message_type, &b.channel)));
    Ok(out)
}

/// A deterministic uniform number in [0, 1) for (seed, snapshot, user): the holdout draw.
/// It depends on nothing else, in particular not on the score.
pub fn holdout_draw(seed: u64, s: NaiveDate, user_id: &str) -> f64 {
    let key = format!("{seed}/{s}/{user_id}");
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

/// One user's facts needed to plan.
struct Candidate {
    user_id: String,
    p: f64,
    push_ok: bool,
    email_ok: bool,
    open_dunning: bool,
    capped: bool,
    timezone: Option<String>,
    hour: u32,
}

/// Plan the intervention list (contract: `interventions`).
pub fn plan(
    inputs: &Inputs,
    s: NaiveDate,
    scores: &DataFrame,
    features: &DataFrame,
    effects: &[ArmEffect],
    settings: &Settings,
) -> Result<DataFrame> {
    let cfg = &settings.interventions;
    let pit = inputs.as_of(s);
    let hours = good_hours(&pit, s)?;
    let facts = scores
        .clone()
        .lazy()
        .select([col("user_id"), col("churn_probability")])
        .join(
            features.clone().lazy().select([col("user_id"), col("open_dunning"), col("days_since_message")]),
            [col("user_id")],
            [col("user_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            pit.users.clone().select([col("user_id"), col("push_opt_in"), col("email_opt_in"), col("timezone")]),
            [col("user_id")],
            [col("user_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(hours.0.lazy(), [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left))
        .sort(["user_id"], SortMultipleOptions::default())
        .collect()
        .ctx("gathering intervention candidates")?;
    let get_str = |name: &str| -> Result<Vec<Option<String>>> {
        Ok(facts.column(name).ctx(name)?.str().ctx(name)?.iter().map(|v| v.map(str::to_string)).collect())
    };
    let ids = get_str("user_id")?;
    let tzs = get_str("timezone")?;
    let p = facts.column("churn_probability").ctx("scores")?.f64().ctx("scores")?.clone();
    let push = facts.column("push_opt_in").ctx("users")?.bool().ctx("users")?.clone();
    let email = facts.column("email_opt_in").ctx("users")?.bool().ctx("users")?.clone();
    let dunning = facts.column("open_dunning").ctx("features")?.cast(&DataType::Int32).ctx("features")?;
    let dunning = dunning.i32().ctx("features")?;
    let since = facts.column("days_since_message").ctx("features")?.cast(&DataType::Int32).ctx("features")?;
    let since = since.i32().ctx("features")?;
    let hour = facts.column("good_hour").ctx("hours")?.cast(&DataType::Int32).ctx("hours")?;
    let hour = hour.i32().ctx("hours")?;
    let candidates: Vec<Candidate> = (0..facts.height())
        .map(|i| Candidate {
            user_id: ids[i].clone().unwrap_or_default(),
            p: p.get(i).unwrap_or(0.0),
            push_ok: push.get(i).unwrap_or(false),
            email_ok: email.get(i).unwrap_or(false),
            open_dunning: dunning.get(i).unwrap_or(0) == 1,
            capped: since.get(i).is_some_and(|d| d < cfg.frequency_cap_days as i32),
            timezone: tzs[i].clone(),
            hour: hour.get(i).unwrap_or(hours.1 as i32) as u32,
        })
        .collect();

    // Every allowed (user, action) with a positive expected effect, best first.
    let mut options: Vec<(f64, usize, &ArmEffect)> = Vec::new();
    for (u, c) in candidates.iter().enumerate() {
        if c.capped {
            continue;
        }
        for e in effects {
            let allowed = match e.channel.as_str() {
                "push" => c.push_ok,
                "email" => c.email_ok,
                _ => true,
            };
            let relevant = e.message_type != "payment_update_reminder" || c.open_dunning;
            let uplift = c.p * e.relative_reduction;
            if allowed && relevant && uplift > 0.0 {
                options.push((uplift, u, e));
            }
        }
    }
    options.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut used: HashMap<&str, u64> = HashMap::new();
    let mut taken = vec![false; candidates.len()];
    let mut chosen = Vec::new();
    for (uplift, u, e) in options {
        let spent = used.entry(e.channel.as_str()).or_default();
        if taken[u] || *spent >= cfg.budget.for_channel(&e.channel) {
            continue;
        }
        *spent += 1;
        taken[u] = true;
        chosen.push((uplift, u, e));
    }

    let n = chosen.len();
    let (
        mut user_id,
        mut action,
        mut channel,
        mut send_at,
        mut uplift_col,
        mut prob,
        mut priority,
        mut group,
        mut reason,
    ) = (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for (rank, (uplift, u, e)) in chosen.iter().enumerate() {
        let c = &candidates[*u];
        user_id.push(c.user_id.clone());
        action.push(e.message_type.clone());
        channel.push(e.channel.clone());
        send_at.push(send_time_utc(s, c.timezone.as_deref(), c.hour));
        uplift_col.push(*uplift);
        prob.push(c.p);
        priority.push(rank as i32 + 1);
        let held = holdout_draw(settings.seed, s, &c.user_id) < cfg.holdout_fraction;
        group.push(if held { "holdout" } else { "treatment" });
        reason.push(format!(
            "{} by {}: past campaigns cut churn by {:.0}% relative ({} sent, {} held out); churn risk {:.2}",
            e.message_type,
            e.channel,
            e.relative_reduction * 100.0,
            e.treated,
            e.held_out,
            c.p
        ));
    }
    let send_at = Series::new("send_at".into(), send_at)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC)))
        .ctx("send times")?;
    let df = DataFrame::new(
        n,
        vec![
            Column::new("user_id".into(), user_id),
            Column::new("snapshot_date".into(), vec![s; n]),
            Column::new("action".into(), action),
            Column::new("channel".into(), channel),
            send_at.into(),
            Column::new("expected_uplift".into(), uplift_col),
            Column::new("churn_probability".into(), prob),
            Column::new("priority".into(), priority),
            Column::new("group".into(), group),
            Column::new("reason".into(), reason),
        ],
    )
    .ctx("assembling interventions")?;
    Ok(df)
}

/// Each user's good local hour: the most frequent `peak_hour` of the last 30 days when
/// there are at least three, else the population's most frequent hour. Returns the
/// per-user table (`user_id`, `good_hour`) and the population hour.
fn good_hours(pit: &Inputs, s: NaiveDate) -> Result<(DataFrame, u32)> {
    let recent = pit
        .activity
        .clone()
        .filter(col("date").gt(date_lit(s - Duration::days(30))).and(col("peak_hour").is_not_null()))
        .select([col("user_id"), col("peak_hour").cast(DataType::Int32)]);
    let population = recent
        .clone()
        .group_by([col("peak_hour")])
        .agg([len().alias("n")])
        .sort_by_exprs(
            [col("n"), col("peak_hour")],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .first()
        .collect()
        .ctx("population listening hour")?;
    let pop_hour = population.column("peak_hour").ctx("hours")?.i32().ctx("hours")?.get(0).unwrap_or(19) as u32;
    let per_user = recent
        .group_by([col("user_id"), col("peak_hour")])
        .agg([len().alias("n")])
        .sort_by_exprs(
            [col("user_id"), col("n"), col("peak_hour")],
            SortMultipleOptions::default().with_order_descending_multi([false, true, false]),
        )
        .group_by([col("user_id")])
        .agg([col("peak_hour").first().alias("mode"), col("n").sum().alias("observed")])
        .select([
            col("user_id"),
            when(col("observed").gt_eq(lit(3))).then(col("mode")).otherwise(lit(pop_hour as i32)).alias("good_hour"),
        ])
        .collect()
        .ctx("users' listening hours")?;
    Ok((per_user, pop_hour))
}

/// The UTC instant of local `hour` on the day after `s` in `timezone` (UTC when unknown).
/// A local time skipped by a daylight-saving change moves to the next hour.
pub fn send_time_utc(s: NaiveDate, timezone: Option<&str>, hour: u32) -> i64 {
    let day = s + Duration::days(1);
    let tz: chrono_tz::Tz = timezone.and_then(|t| t.parse().ok()).unwrap_or(chrono_tz::UTC);
    for h in hour..hour + 3 {
        let naive = day.and_hms_opt(h % 24, 0, 0).expect("valid hour");
        if let Some(t) = tz.from_local_datetime(&naive).earliest() {
            return t.timestamp_micros();
        }
    }
    day.and_hms_opt(hour % 24, 0, 0).expect("valid hour").and_utc().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_time_is_the_local_hour_in_utc() {
        let s = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        // Stockholm is UTC+1 in November: 19:00 local is 18:00 UTC on the 21st.
        let t = send_time_utc(s, Some("Europe/Stockholm"), 19);
        let expected = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap().and_hms_opt(18, 0, 0).unwrap().and_utc();
        assert_eq!(t, expected.timestamp_micros());
        // Unknown zones fall back to UTC.
        assert_eq!(send_time_utc(s, Some("Mars/Olympus"), 19), expected.timestamp_micros() + 3_600_000_000);
    }

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
