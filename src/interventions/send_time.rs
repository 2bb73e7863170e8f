//! Each user's good local hour to receive a message.
//!
//! Evidence per user: the days' `peak_hour` (local hour with the most listening) over the
//! last 90 days, and the local hours at which they opened earlier messages (stronger
//! evidence: it is the behaviour we want, so an open counts as [`OPEN_WEIGHT`] days). A
//! user with little history is shrunk toward the population: the population's hour
//! distribution enters as [`PRIOR_DAYS`] pseudo-days. Hours are smoothed with their
//! neighbours (an evening listener at 20:00 is also reachable at 19:00 and 21:00).

use std::collections::HashMap;

use chrono::{Duration, NaiveDate, TimeZone as _, Timelike};
use polars::prelude::*;

use crate::error::{PolarsContext, Result};
use crate::inputs::{Inputs, date_lit, end_of_day_us, ts_lit_us};

pub(super) const OPEN_WEIGHT: f64 = 3.0;
pub(super) const PRIOR_DAYS: f64 = 5.0;
const HISTORY_DAYS: i64 = 90;

/// Hour counts of one user (or the population).
pub(super) type Hours = [f64; 24];

/// The hour with the most smoothed evidence, the user's counts shrunk toward the
/// population's shares. Ties go to the earlier hour.
pub(super) fn best_hour(user: &Hours, population: &Hours) -> u32 {
    let total: f64 = population.iter().sum::<f64>().max(1e-12);
    let mut score = [0.0; 24];
    let mass = |j: usize| user[j] + PRIOR_DAYS * population[j] / total;
    for (h, s) in score.iter_mut().enumerate() {
        *s = mass(h) + 0.5 * (mass((h + 23) % 24) + mass((h + 1) % 24));
    }
    (0..24).max_by(|&a, &b| score[a].total_cmp(&score[b]).then(b.cmp(&a))).unwrap_or(19) as u32
}

/// The population's hour evidence (every user's listening hours over the last 90 days,
/// and every open), as of the end of `s`: the prior every user is shrunk toward. It is the
/// whole night's, so a shard finds it once with the models (`retain train`), not from its
/// own users.
pub(super) fn population_hours(pit: &Inputs, s: NaiveDate) -> Result<Hours> {
    let by_hour = streaming(
        listening_window(pit, s).group_by([col("peak_hour")]).agg([len().cast(DataType::Float64).alias("n")]),
    )
    .ctx("the population's listening hours")?;
    let mut population = [0.0; 24];
    let hours = by_hour.column("peak_hour").ctx("activity")?.i32().ctx("activity")?;
    let n = by_hour.column("n").ctx("activity")?.f64().ctx("activity")?;
    for (h, n) in hours.iter().zip(n.iter()) {
        if let (Some(h), Some(n)) = (h, n)
            && (0..24).contains(&h)
        {
            population[h as usize] += n;
        }
    }
    for (_, h) in open_hours(pit, s)? {
        population[h] += OPEN_WEIGHT;
    }
    Ok(population)
}

/// The hour evidence of the users in `users` (a frame with a `user_id` column), as of the
/// end of `s`: their listening hours (aggregated for them only: at a million users the
/// plan's 250,000; everyone's was the interventions stage's peak, 3.7 GB) and their opens.
pub(super) fn hour_evidence(pit: &Inputs, s: NaiveDate, users: &DataFrame) -> Result<HashMap<String, Hours>> {
    let listening = streaming(
        listening_window(pit, s)
            .join(
                users.clone().lazy().select([col("user_id")]),
                [col("user_id")],
                [col("user_id")],
                JoinArgs::new(JoinType::Semi),
            )
            .group_by([col("user_id"), col("peak_hour")])
            .agg([len().cast(DataType::Float64).alias("n")]),
    )
    .ctx("users' listening hours")?;
    let mut evidence: HashMap<String, Hours> = HashMap::new();
    let ids = listening.column("user_id").ctx("activity")?.str().ctx("activity")?;
    let hours = listening.column("peak_hour").ctx("activity")?.i32().ctx("activity")?;
    let n = listening.column("n").ctx("activity")?.f64().ctx("activity")?;
    for ((id, h), n) in ids.iter().zip(hours.iter()).zip(n.iter()) {
        if let (Some(id), Some(h), Some(n)) = (id, h, n)
            && (0..24).contains(&h)
        {
            evidence.entry(id.to_string()).or_insert([0.0; 24])[h as usize] += n;
        }
    }
    for (id, h) in open_hours(pit, s)? {
        evidence.entry(id).or_insert([0.0; 24])[h] += OPEN_WEIGHT;
    }
    Ok(evidence)
}

fn streaming(lf: LazyFrame) -> PolarsResult<DataFrame> {
    lf.collect_with_engine(Engine::Streaming).map(|r| r.unwrap_single())
}

/// The days' listening peak hours of the last 90 days.
fn listening_window(pit: &Inputs, s: NaiveDate) -> LazyFrame {
    let since = s - Duration::days(HISTORY_DAYS);
    pit.activity
        .clone()
        .filter(col("date").gt(date_lit(since)).and(col("peak_hour").is_not_null()).and(col("user_id").is_not_null()))
        .select([col("user_id"), col("peak_hour").cast(DataType::Int32)])
}

/// Every message open of the last 90 days: the user and the local hour it happened at.
fn open_hours(pit: &Inputs, s: NaiveDate) -> Result<Vec<(String, usize)>> {
    let since = s - Duration::days(HISTORY_DAYS);
    let opens = pit
        .messages
        .clone()
        .filter(
            col("opened_at")
                .is_not_null()
                .and(col("opened_at").lt(ts_lit_us(end_of_day_us(s))))
                .and(col("ts").gt_eq(ts_lit_us(end_of_day_us(since)))),
        )
        .select([col("user_id"), col("opened_at").dt().timestamp(TimeUnit::Microseconds).alias("opened_us")])
        .join(
            pit.users.clone().select([col("user_id"), col("timezone")]),
            [col("user_id")],
            [col("user_id")],
            JoinArgs::new(JoinType::Left),
        )
        .sort(["user_id", "opened_us"], SortMultipleOptions::default())
        .collect()
        .ctx("users' message-open hours")?;
    let ids = opens.column("user_id").ctx("messages")?.str().ctx("messages")?;
    let at = opens.column("opened_us").ctx("messages")?.i64().ctx("messages")?;
    let tz = opens.column("timezone").ctx("users")?.str().ctx("users")?;
    let mut zones: HashMap<String, chrono_tz::Tz> = HashMap::new();
    let mut out = Vec::new();
    for ((id, at), tz) in ids.iter().zip(at.iter()).zip(tz.iter()) {
        let (Some(id), Some(at)) = (id, at) else { continue };
        let zone = *zones
            .entry(tz.unwrap_or("UTC").to_string())
            .or_insert_with(|| tz.and_then(|t| t.parse().ok()).unwrap_or(chrono_tz::UTC));
        let Some(utc) = chrono::Utc.timestamp_micros(at).single() else { continue };
        out.push((id.to_string(), utc.with_timezone(&zone).hour() as usize));
    }
    Ok(out)
}

/// The UTC instant of local `hour` on the day after `s` in `timezone` (UTC when unknown).
/// A local time skipped by a daylight-saving change moves to the next hour.
pub(super) fn utc(s: NaiveDate, timezone: Option<&str>, hour: u32) -> i64 {
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
        let t = utc(s, Some("Europe/Stockholm"), 19);
        let expected = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap().and_hms_opt(18, 0, 0).unwrap().and_utc();
        assert_eq!(t, expected.timestamp_micros());
        // Unknown zones fall back to UTC.
        assert_eq!(utc(s, Some("Mars/Olympus"), 19), expected.timestamp_micros() + 3_600_000_000);
    }

    #[test]
    fn little_history_is_shrunk_toward_the_population_and_much_is_not() {
        let mut population = [0.0; 24];
        population[20] = 1000.0;
        population[8] = 300.0;
        let mut user = [0.0; 24];
        user[8] = 1.0;
        assert_eq!(best_hour(&user, &population), 20, "one morning day is not enough");
        user[8] = 12.0;
        assert_eq!(best_hour(&user, &population), 8, "a habit is");
        assert_eq!(best_hour(&[0.0; 24], &population), 20, "no history: the population's hour");
        // Neighbours count: evenings spread over 21 and 22 beat five mornings at 8.
        let mut split = [0.0; 24];
        split[21] = 4.0;
        split[22] = 4.0;
        split[8] = 5.0;
        assert_eq!(best_hour(&split, &[1.0; 24]), 21);
    }
}
