//! A deterministic synthetic subscriber world in the contract's format, with its own
//! ground truth, so that the pipeline can be run end to end and tests can check that the
//! models find the signal that is really there.
//!
//! # What is written (relative to the output root)
//! - `users/users.parquet`: one row per user, the latest snapshot (opt-ins reflect the
//!   unsubscribes that happened in the window).
//! - `activity/dt=D/part-0000.parquet`, `billing/dt=D/…`, `messages/dt=D/…`: one file per
//!   table and day with rows; `dt` is the UTC date of the row's `date`/`ts`.
//! - `_truth/churn.parquet` (user_id, snapshot_date, p_churn): for each weekly snapshot S
//!   (every 7th day back from the last day, while S ≥ start + 90) and each user premium at
//!   the end of S, the true P(not premium at the end of S+30 | world at the end of S, no
//!   new messages), computed exactly (see `truth`).
//! - `_truth/message_effects.parquet` (user_id, message_type, channel, effect): for each
//!   user premium at the end of the last day L and each of the 12 (type, channel) pairs,
//!   the true change in that probability from deciding to send the message on L+1 (zero
//!   where the user cannot receive it). `_truth/message_log_effects.parquet`
//!   (message_id, effect): the same quantity for every logged decision, treatment and
//!   holdout alike, computed on the state the decision saw.
//! - `_truth/recovery.parquet`: one row per dunning episode (user_id, failure_ts,
//!   failure_reason, payment_method, grace_days, hazard = the true daily recovery hazard
//!   for days 1..30 after the failure — what recovery would have been each day had the
//!   grace period lasted that long, including the effect of a payment reminder delivered
//!   during the episode —, recovered_day = days from failure to `payment_recovered` or
//!   null, came_back_within_60 = subscribed again within 60 days of expiring). Episodes
//!   still open when the world ends have recovered_day null and came_back false; so do
//!   expired ones whose 60 days run past the end.
//!
//! # The world
//! Users sign up before the window (80%) or during it (new subscribers). Each has fixed
//! traits drawn once: country (12, weighted; price, currency and IANA time zones per
//! country; four countries raise prices on a day inside the window), birth year, platform,
//! opt-ins, household plan, payment method, a log-normal listening level, a weekly rhythm,
//! an engagement trend (25% fade from an onset day, 18% grow, the rest stable), a skip
//! propensity, price sensitivity, an unobserved frailty, and a responsiveness to each
//! message type (helpful for about a third, useless for about half, harmful for a tenth).
//!
//! How messages act on those traits comes in two families ([`EffectShapes`], `retain synth
//! --effects`): `home`, which the uplift learners were developed on, and `turned`, where
//! other users are helped and harmed and another channel is strongest, so that the
//! learners are also measured where nobody tuned them (README, "Two families of effects").
//!
//! Day by day (order inside a day = order of the event times):
//! 1. Weekly campaigns (every 7th day, 00:01–00:30 UTC) pick one message for each eligible
//!    premium user: `payment_update_reminder` in dunning, `winback_offer` when cancelled,
//!    `premium_education` in a trial or the first 30 days, `content_nudge` or
//!    `winback_offer` (half each) when fading, and a 6% random exploration segment; a
//!    channel uniformly among those the user allows (in-app always); an arm with a
//!    segment-dependent treatment probability (0.3–0.8). `propensity` is the probability
//!    of the logged (arm, type, channel) combination: segment choice × channel × arm.
//! 2. Period ends (00:30–01:00): a cancelled subscription expires, or resumes (more often
//!    after a win-back offer); a trial converts (`subscribe`) or expires.
//! 3. Renewals (01–04): a charge every 30 days at the country's current price; it fails
//!    by payment method, with a reason drawn by method, opening a dunning episode with a
//!    grace period drawn uniformly from {0, 3, 7, 14, 21, 30} days (0 = expire at once).
//! 4. Dunning (04–06): a daily recovery hazard by reason (processing errors recover fast,
//!    insufficient funds peak on paydays — the 1st/2nd/15th/16th — and on retry days,
//!    fraud rarely), payment method and engagement, multiplied after a payment reminder
//!    (strongly for expired cards). Retries on days 1, 3, 7, 14, 21, 28 log another
//!    `payment_failed` (attempt 2, 3…); at the end of grace, `expire`.
//! 5. The day's own actions (07–23): an active subscriber cancels with the daily hazard of
//!    `model::cancel_lin` (fading, skips, price-rise exposure, a recent payment failure,
//!    tenure under 60 days, plan, frailty) shifted by the messages of the last 30 days; a
//!    lapsed subscriber comes back; a free user converts; plan changes and refunds.
//! 6. Listening: one activity row when the user listens, from their level, trend and
//!    weekly rhythm (less when not premium).
//!
//! Premium status by the contract's rule agrees with the simulation on every day: users
//! paying or in a trial when the window opens get a carried-over `renew` or `trial_start`
//! (no amount) at 00:00 on the first day with their real period end, and a `cancel` at
//! 00:00:01 when auto-renew is already off. 0.5% of billing events are delivered twice
//! (same event_id). Billing periods are 30 days long.
//!
//! # Determinism and memory
//! Every random draw comes from a stream keyed by (seed, user, day, purpose) (`rng`), so
//! users are simulated in parallel and the output does not depend on the thread count;
//! the same (users, days, seed, start) writes byte-identical files. Per user the
//! generator holds ~170 bytes of traits and state; each day's rows are written as soon as
//! the day is done (while the next day is simulated). The truth tables are held compactly
//! (a few bytes per row) until the end.
//!
//! # Layout
//! From the bottom up, each module importing only ones before it: `world` (the fixed
//! facts) and `rng` (the random streams); `state` (what a user is and has); `model` (every
//! hazard, from traits and state); `truth` (the exact probabilities, from the model);
//! `tables` (the rows and their frames); `population` (each user's traits and starting
//! state); `day` (one user's day: billing, campaign, listening, the day's truth). This
//! file runs the days in parallel and writes the files.

mod day;
mod model;
mod population;
mod rng;
mod state;
mod tables;
mod truth;
mod world;

#[cfg(test)]
mod tests;

use std::io::IsTerminal;

use bytes::Bytes;
use chrono::NaiveDate;
use polars::prelude::*;
use rayon::prelude::*;

use crate::contract::{self, CHANNELS, FAILURE_REASONS, MESSAGE_TYPES, PAYMENT_METHODS, PLATFORMS};
use crate::error::{Error, PolarsContext, Result};
use crate::storage::{Storage, parquet_bytes};
use day::{Day, DayOut};
use state::{State, Traits};
use tables::UserIds;
use truth::Episode;
pub use world::EffectShapes;
use world::{COUNTRIES, World};

/// What world to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthConfig {
    pub users: usize,
    pub days: u32,
    pub seed: u64,
    /// The first day of data.
    pub start: NaiveDate,
    /// How messages act on users.
    pub effects: EffectShapes,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            users: 10_000,
            days: 180,
            seed: 42,
            start: NaiveDate::from_ymd_opt(2026, 5, 25).expect("a valid date"),
            effects: EffectShapes::Home,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    pub users: usize,
    pub days: u32,
    pub activity_rows: u64,
    pub billing_rows: u64,
    pub message_rows: u64,
    /// Files written, truth included.
    pub files: usize,
}

/// What the simulation saw, for tests.
#[derive(Debug, Clone, Default)]
struct Stats {
    /// Users premium at the end of each day.
    premium_by_day: Vec<u64>,
}

/// Users per unit of parallel work.
const CHUNK: usize = 4096;
/// Rows per batch when writing the truth tables.
const TRUTH_BATCH: usize = 1 << 20;

/// Write a synthetic world to `out`.
pub fn generate(cfg: &SynthConfig, out: &Storage) -> Result<SynthSummary> {
    generate_with_stats(cfg, out).map(|(summary, _)| summary)
}

/// The truth tables, held compactly until the end.
#[derive(Default)]
struct TruthLog {
    /// (user, snapshot day, p_churn)
    churn: Vec<(u32, i16, f64)>,
    /// (user, type, channel, effect) on the last day.
    effects: Vec<(u32, u8, u8, f64)>,
    /// (user, day, effect) of each logged message decision.
    log_effects: Vec<(u32, i16, f64)>,
    episodes: Vec<Episode>,
}

fn generate_with_stats(cfg: &SynthConfig, out: &Storage) -> Result<(SynthSummary, Stats)> {
    if cfg.users == 0 || cfg.days == 0 {
        return Err(Error::config("synth: users and days must be at least 1"));
    }
    if cfg.users > u32::MAX as usize / 2 || cfg.days > 10_000 {
        return Err(Error::config("synth: at most 2^31 users and 10,000 days"));
    }
    let w = World::new(cfg.seed, cfg.days, cfg.start, cfg.effects)?;
    let ids = UserIds::new(cfg.users);
    let traits: Vec<Traits> = (0..cfg.users as u32).into_par_iter().map(|u| population::traits(&w, u)).collect();
    let mut states: Vec<State> =
        traits.par_iter().enumerate().map(|(u, t)| population::initial_state(&w, u as u32, t)).collect();

    let mut summary =
        SynthSummary { users: cfg.users, days: cfg.days, activity_rows: 0, billing_rows: 0, message_rows: 0, files: 0 };
    let mut stats = Stats::default();
    let mut truth = TruthLog::default();
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(u64::from(cfg.days));
        bar.set_style(
            indicatif::ProgressStyle::with_template("synth {bar:40} day {pos}/{len} {elapsed_precise} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    tracing::info!(users = cfg.users, days = cfg.days, seed = cfg.seed, start = %cfg.start, out = out.uri(), "synth: generating");

    let mut pending: Option<(i32, Vec<DayOut>)> = None;
    for d in 0..w.days {
        let (outs, written) = rayon::join(
            || simulate_day(&w, &traits, &mut states, d),
            || pending.take().map(|(day, outs)| write_day(&w, &ids, out, day, &outs)).transpose(),
        );
        add(&mut summary, written?);
        let mut outs = outs;
        let mut premium = 0;
        for o in &mut outs {
            premium += o.premium;
            truth.churn.extend(o.churn.drain(..).map(|(u, p)| (u, d as i16, p)));
            truth.effects.append(&mut o.effects);
            truth.log_effects.extend(o.log_effects.drain(..).map(|(u, e)| (u, d as i16, e)));
            truth.episodes.append(&mut o.episodes);
        }
        stats.premium_by_day.push(premium);
        pending = Some((d, outs));
        match &progress {
            Some(bar) => bar.inc(1),
            None if (d + 1) % 10 == 0 || d + 1 == w.days => {
                tracing::info!(day = d + 1, days = w.days, premium, "synth: simulated day");
            }
            None => {}
        }
    }
    if let Some((day, outs)) = pending.take() {
        add(&mut summary, Some(write_day(&w, &ids, out, day, &outs)?));
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }

    write_users(&w, &ids, &traits, &states, out)?;
    summary.files += 1;
    summary.files += write_truth(&w, &ids, &traits, truth, out)?;
    tracing::info!(
        activity = summary.activity_rows,
        billing = summary.billing_rows,
        messages = summary.message_rows,
        files = summary.files,
        "synth: done"
    );
    Ok((summary, stats))
}

/// Rows and files written for one day.
struct Written {
    activity: u64,
    billing: u64,
    messages: u64,
    files: usize,
}

fn add(summary: &mut SynthSummary, w: Option<Written>) {
    if let Some(w) = w {
        summary.activity_rows += w.activity;
        summary.billing_rows += w.billing;
        summary.message_rows += w.messages;
        summary.files += w.files;
    }
}

fn simulate_day(w: &World, traits: &[Traits], states: &mut [State], d: i32) -> Vec<DayOut> {
    states
        .par_chunks_mut(CHUNK)
        .zip(traits.par_chunks(CHUNK))
        .enumerate()
        .map(|(ci, (ss, ts))| {
            let mut out = DayOut::default();
            for (i, (s, t)) in ss.iter_mut().zip(ts).enumerate() {
                let u = (ci * CHUNK + i) as u32;
                Day { w, u, t, d }.run(s, &mut out);
                if d == w.last_day() {
                    day::flush(w, u, t, s, &mut out);
                }
            }
            out.billing.sort_by_key(|r| (r.user, r.ts));
            out
        })
        .collect()
}

fn write_day(w: &World, ids: &UserIds, out: &Storage, d: i32, outs: &[DayOut]) -> Result<Written> {
    let date = w.date(d);
    let mut written = Written { activity: 0, billing: 0, messages: 0, files: 0 };
    let activity = outs.iter().flat_map(|o| o.activity.iter());
    if activity.clone().next().is_some() {
        let df = tables::activity_frame(w, ids, d, activity)?;
        written.activity = df.height() as u64;
        put(out, &format!("activity/dt={date}/part-0000.parquet"), &contract::ACTIVITY, df)?;
        written.files += 1;
    }
    let billing = outs.iter().flat_map(|o| o.billing.iter());
    if billing.clone().next().is_some() {
        let df = tables::billing_frame(w, ids, billing)?;
        written.billing = df.height() as u64;
        put(out, &format!("billing/dt={date}/part-0000.parquet"), &contract::BILLING, df)?;
        written.files += 1;
    }
    let messages = outs.iter().flat_map(|o| o.messages.iter());
    if messages.clone().next().is_some() {
        let df = tables::messages_frame(ids, d, messages)?;
        written.messages = df.height() as u64;
        put(out, &format!("messages/dt={date}/part-0000.parquet"), &contract::MESSAGES, df)?;
        written.files += 1;
    }
    Ok(written)
}

fn put(out: &Storage, rel: &str, table: &contract::Table, mut df: DataFrame) -> Result<()> {
    tables::check(table, &df)?;
    let bytes = parquet_bytes(&mut df).ctx(format!("synth: encoding {rel}"))?;
    out.write_bytes(rel, Bytes::from(bytes))
}

fn write_users(w: &World, ids: &UserIds, traits: &[Traits], states: &[State], out: &Storage) -> Result<()> {
    let n = traits.len();
    let cols = vec![
        StringChunked::from_iter_values("user_id".into(), (0..n as u32).map(|u| ids.get(u))).into_column(),
        Int32Chunked::from_iter_values("signup_date".into(), traits.iter().map(|t| w.epoch_day(i32::from(t.signup))))
            .into_date()
            .into_column(),
        StringChunked::from_iter_values("country".into(), traits.iter().map(|t| COUNTRIES[t.country as usize].code))
            .into_column(),
        StringChunked::from_iter_options(
            "timezone".into(),
            traits.iter().map(|t| t.tz_known.then(|| w.zones[t.zone as usize].name())),
        )
        .into_column(),
        Int16Chunked::from_iter_options(
            "birth_year".into(),
            traits.iter().map(|t| (t.birth_year != 0).then_some(t.birth_year)),
        )
        .into_column(),
        StringChunked::from_iter_values(
            "signup_platform".into(),
            traits.iter().map(|t| PLATFORMS[t.platform as usize]),
        )
        .into_column(),
        BooleanChunked::from_iter_values("push_opt_in".into(), states.iter().map(|s| s.push_opt)).into_column(),
        BooleanChunked::from_iter_values("email_opt_in".into(), states.iter().map(|s| s.email_opt)).into_column(),
    ];
    let df = DataFrame::new_infer_height(cols).ctx("synth: building users")?;
    put(out, "users/users.parquet", &contract::USERS, df)
}

/// Write a table in batches of `TRUTH_BATCH` rows into one Parquet file.
fn write_batched(
    out: &Storage,
    rel: &str,
    n: usize,
    make: impl Fn(std::ops::Range<usize>) -> Result<DataFrame>,
) -> Result<()> {
    let mut buf = Vec::new();
    {
        let mut writer: Option<polars::io::parquet::write::BatchedWriter<&mut Vec<u8>>> = None;
        let mut start = 0;
        loop {
            let end = (start + TRUTH_BATCH).min(n);
            let mut df = make(start..end)?;
            df.rechunk_mut();
            if writer.is_none() {
                writer = Some(
                    ParquetWriter::new(&mut buf)
                        .with_compression(ParquetCompression::Zstd(None))
                        .with_statistics(StatisticsOptions::full())
                        .batched(df.schema())
                        .ctx(format!("synth: writing {rel}"))?,
                );
            }
            if let Some(wr) = writer.as_mut() {
                wr.write_batch(&df).ctx(format!("synth: writing {rel}"))?;
            }
            start = end;
            if start >= n {
                break;
            }
        }
        if let Some(wr) = writer {
            wr.finish().ctx(format!("synth: writing {rel}"))?;
        }
    }
    out.write_bytes(rel, Bytes::from(buf))
}

fn write_truth(w: &World, ids: &UserIds, traits: &[Traits], mut truth: TruthLog, out: &Storage) -> Result<usize> {
    let churn = &truth.churn;
    write_batched(out, "_truth/churn.parquet", churn.len(), |r| {
        let rows = &churn[r];
        DataFrame::new_infer_height(vec![
            StringChunked::from_iter_values("user_id".into(), rows.iter().map(|x| ids.get(x.0))).into_column(),
            Int32Chunked::from_iter_values("snapshot_date".into(), rows.iter().map(|x| w.epoch_day(i32::from(x.1))))
                .into_date()
                .into_column(),
            Float64Chunked::from_iter_values("p_churn".into(), rows.iter().map(|x| x.2)).into_column(),
        ])
        .ctx("synth: building churn truth")
    })?;

    let effects = &truth.effects;
    write_batched(out, "_truth/message_effects.parquet", effects.len(), |r| {
        let rows = &effects[r];
        DataFrame::new_infer_height(vec![
            StringChunked::from_iter_values("user_id".into(), rows.iter().map(|x| ids.get(x.0))).into_column(),
            StringChunked::from_iter_values("message_type".into(), rows.iter().map(|x| MESSAGE_TYPES[x.1 as usize]))
                .into_column(),
            StringChunked::from_iter_values("channel".into(), rows.iter().map(|x| CHANNELS[x.2 as usize]))
                .into_column(),
            Float64Chunked::from_iter_values("effect".into(), rows.iter().map(|x| x.3)).into_column(),
        ])
        .ctx("synth: building message effects")
    })?;

    let logs = &truth.log_effects;
    write_batched(out, "_truth/message_log_effects.parquet", logs.len(), |r| {
        let rows = &logs[r];
        let mids: Vec<String> = rows.iter().map(|x| tables::message_id(ids, x.0, i32::from(x.1))).collect();
        DataFrame::new_infer_height(vec![
            StringChunked::from_iter_values("message_id".into(), mids.iter().map(String::as_str)).into_column(),
            Float64Chunked::from_iter_values("effect".into(), rows.iter().map(|x| x.2)).into_column(),
        ])
        .ctx("synth: building message log effects")
    })?;

    truth.episodes.sort_by_key(|e| (e.user, e.fail_day));
    let eps = &truth.episodes;
    write_batched(out, "_truth/recovery.parquet", eps.len(), |r| {
        let rows = &eps[r];
        let mut hazard = ListPrimitiveChunkedBuilder::<Float64Type>::new(
            "hazard".into(),
            rows.len(),
            rows.len() * world::HORIZON as usize,
            DataType::Float64,
        );
        for e in rows {
            hazard.append_slice(&e.hazard(w, &traits[e.user as usize]));
        }
        DataFrame::new_infer_height(vec![
            StringChunked::from_iter_values("user_id".into(), rows.iter().map(|e| ids.get(e.user))).into_column(),
            Int64Chunked::from_iter_values("failure_ts".into(), rows.iter().map(|e| e.fail_ts))
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
            StringChunked::from_iter_values(
                "failure_reason".into(),
                rows.iter().map(|e| FAILURE_REASONS[e.reason as usize]),
            )
            .into_column(),
            StringChunked::from_iter_values(
                "payment_method".into(),
                rows.iter().map(|e| PAYMENT_METHODS[e.method as usize]),
            )
            .into_column(),
            Int16Chunked::from_iter_values("grace_days".into(), rows.iter().map(|e| i16::from(e.grace))).into_column(),
            hazard.finish().into_column(),
            Int16Chunked::from_iter_options(
                "recovered_day".into(),
                rows.iter().map(|e| e.recovered_day.map(i16::from)),
            )
            .into_column(),
            BooleanChunked::from_iter_values("came_back_within_60".into(), rows.iter().map(|e| e.came_back))
                .into_column(),
        ])
        .ctx("synth: building recovery truth")
    })?;
    Ok(4)
}
