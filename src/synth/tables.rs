//! Compact rows as the simulation emits them, and their conversion into frames with the
//! contract's exact columns and types.

use polars::prelude::*;

use super::world::{COUNTRIES, World};
use crate::contract::{self, CHANNELS, EVENT_TYPES, FAILURE_REASONS, MESSAGE_TYPES, PAYMENT_METHODS, PLANS, PLATFORMS};
use crate::error::{PolarsContext, Result};

/// Fixed-width user ids (`u0000001`…), kept in one arena.
pub(crate) struct UserIds {
    arena: String,
    width: usize,
}

impl UserIds {
    pub(crate) fn new(n: usize) -> Self {
        let digits = n.to_string().len().max(7);
        let width = digits + 1;
        let mut arena = String::with_capacity(n * width);
        for u in 0..n {
            use std::fmt::Write;
            let _ = write!(arena, "u{:0digits$}", u + 1);
        }
        UserIds { arena, width }
    }

    pub(crate) fn get(&self, u: u32) -> &str {
        let i = u as usize * self.width;
        &self.arena[i..i + self.width]
    }

    /// The id without its `u`, to build other ids from.
    pub(crate) fn digits(&self, u: u32) -> &str {
        &self.get(u)[1..]
    }
}

pub(crate) struct ActivityRow {
    pub(crate) user: u32,
    pub(crate) ms: i64,
    pub(crate) podcast_ms: i64,
    pub(crate) streams: i32,
    pub(crate) skips: i32,
    pub(crate) unique: i32,
    pub(crate) sessions: i32,
    pub(crate) searches: i32,
    pub(crate) saves: i32,
    pub(crate) platform: u8,
    pub(crate) peak_hour: Option<i8>,
}

#[derive(Clone)]
pub(crate) struct BillingRow {
    pub(crate) user: u32,
    pub(crate) seq: u16,
    pub(crate) ts: i64,
    pub(crate) kind: u8,
    pub(crate) plan: u8,
    pub(crate) amount: Option<f64>,
    /// Country whose currency the amount is in (`None` when there is no amount).
    pub(crate) currency: Option<u8>,
    pub(crate) method: Option<u8>,
    pub(crate) reason: Option<u8>,
    pub(crate) attempt: Option<i16>,
    pub(crate) grace: Option<i16>,
    /// Day index of `period_end`.
    pub(crate) period_end: Option<i32>,
}

pub(crate) struct MessageRow {
    pub(crate) user: u32,
    pub(crate) ts: i64,
    pub(crate) ty: u8,
    pub(crate) ch: u8,
    pub(crate) treated: bool,
    pub(crate) propensity: f64,
    pub(crate) delivered: bool,
    pub(crate) opened_at: Option<i64>,
    pub(crate) clicked: bool,
    pub(crate) unsubscribed: bool,
}

pub(crate) fn message_id(ids: &UserIds, user: u32, day: i32) -> String {
    format!("m{}-{:03}", ids.digits(user), day)
}

fn campaign_id(day: i32, ty: u8, ch: u8) -> String {
    format!("c{:02}-{}-{}", day / 7, MESSAGE_TYPES[ty as usize], CHANNELS[ch as usize])
}

fn ts_column(name: &str, v: Vec<i64>) -> Column {
    Int64Chunked::from_vec(name.into(), v).into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)).into_column()
}

fn opt_ts_column(name: &str, v: impl Iterator<Item = Option<i64>>) -> Column {
    Int64Chunked::from_iter_options(name.into(), v)
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_column()
}

fn str_column<'a>(name: &str, v: impl Iterator<Item = &'a str>) -> Column {
    StringChunked::from_iter_values(name.into(), v).into_column()
}

fn opt_str_column<'a>(name: &str, v: impl Iterator<Item = Option<&'a str>>) -> Column {
    StringChunked::from_iter_options(name.into(), v).into_column()
}

fn frame(cols: Vec<Column>) -> Result<DataFrame> {
    DataFrame::new_infer_height(cols).ctx("synth: building a frame")
}

pub(crate) fn activity_frame<'a>(
    w: &World,
    ids: &UserIds,
    day: i32,
    rows: impl Iterator<Item = &'a ActivityRow> + Clone,
) -> Result<DataFrame> {
    let n = rows.clone().count();
    let date = Int32Chunked::from_vec("date".into(), vec![w.epoch_day(day); n]).into_date().into_column();
    let i32col = |name: &str, f: fn(&ActivityRow) -> i32| {
        Int32Chunked::from_iter_values(name.into(), rows.clone().map(f)).into_column()
    };
    frame(vec![
        str_column("user_id", rows.clone().map(|r| ids.get(r.user))),
        date,
        Int64Chunked::from_iter_values("ms_played".into(), rows.clone().map(|r| r.ms)).into_column(),
        i32col("streams", |r| r.streams),
        i32col("skips", |r| r.skips),
        i32col("unique_tracks", |r| r.unique),
        i32col("sessions", |r| r.sessions),
        i32col("searches", |r| r.searches),
        i32col("saves", |r| r.saves),
        Int64Chunked::from_iter_values("podcast_ms".into(), rows.clone().map(|r| r.podcast_ms)).into_column(),
        str_column("platform", rows.clone().map(|r| PLATFORMS[r.platform as usize])),
        Int8Chunked::from_iter_options("peak_hour".into(), rows.map(|r| r.peak_hour)).into_column(),
    ])
}

pub(crate) fn billing_frame<'a>(
    w: &World,
    ids: &UserIds,
    rows: impl Iterator<Item = &'a BillingRow> + Clone,
) -> Result<DataFrame> {
    let event_ids: Vec<String> = rows.clone().map(|r| format!("b{}-{:04}", ids.digits(r.user), r.seq)).collect();
    frame(vec![
        str_column("event_id", event_ids.iter().map(String::as_str)),
        str_column("user_id", rows.clone().map(|r| ids.get(r.user))),
        ts_column("ts", rows.clone().map(|r| r.ts).collect()),
        str_column("event_type", rows.clone().map(|r| EVENT_TYPES[r.kind as usize])),
        str_column("plan", rows.clone().map(|r| PLANS[r.plan as usize])),
        Float64Chunked::from_iter_options("amount".into(), rows.clone().map(|r| r.amount)).into_column(),
        opt_str_column("currency", rows.clone().map(|r| r.currency.map(|c| COUNTRIES[c as usize].currency))),
        opt_str_column("payment_method", rows.clone().map(|r| r.method.map(|m| PAYMENT_METHODS[m as usize]))),
        opt_str_column("failure_reason", rows.clone().map(|r| r.reason.map(|m| FAILURE_REASONS[m as usize]))),
        Int16Chunked::from_iter_options("attempt".into(), rows.clone().map(|r| r.attempt)).into_column(),
        Int16Chunked::from_iter_options("grace_days".into(), rows.clone().map(|r| r.grace)).into_column(),
        Int32Chunked::from_iter_options("period_end".into(), rows.map(|r| r.period_end.map(|d| w.epoch_day(d))))
            .into_date()
            .into_column(),
    ])
}

pub(crate) fn messages_frame<'a>(
    ids: &UserIds,
    day: i32,
    rows: impl Iterator<Item = &'a MessageRow> + Clone,
) -> Result<DataFrame> {
    let message_ids: Vec<String> = rows.clone().map(|r| message_id(ids, r.user, day)).collect();
    let campaigns: Vec<String> = rows.clone().map(|r| campaign_id(day, r.ty, r.ch)).collect();
    frame(vec![
        str_column("message_id", message_ids.iter().map(String::as_str)),
        str_column("user_id", rows.clone().map(|r| ids.get(r.user))),
        ts_column("ts", rows.clone().map(|r| r.ts).collect()),
        str_column("campaign_id", campaigns.iter().map(String::as_str)),
        str_column("message_type", rows.clone().map(|r| MESSAGE_TYPES[r.ty as usize])),
        str_column("channel", rows.clone().map(|r| CHANNELS[r.ch as usize])),
        str_column("arm", rows.clone().map(|r| if r.treated { "treatment" } else { "holdout" })),
        Float64Chunked::from_iter_values("propensity".into(), rows.clone().map(|r| r.propensity)).into_column(),
        BooleanChunked::from_iter_values("delivered".into(), rows.clone().map(|r| r.delivered)).into_column(),
        opt_ts_column("opened_at", rows.clone().map(|r| r.opened_at)),
        BooleanChunked::from_iter_values("clicked".into(), rows.clone().map(|r| r.clicked)).into_column(),
        BooleanChunked::from_iter_values("unsubscribed".into(), rows.map(|r| r.unsubscribed)).into_column(),
    ])
}

/// Check a frame against a contract table: same columns, order and types, and no nulls
/// where the contract forbids them. A mismatch is a bug in the generator.
pub(crate) fn check(table: &contract::Table, df: &DataFrame) -> Result<()> {
    let want = table.schema();
    let got = df.schema();
    if got.len() != want.len() || got.iter().zip(want.iter()).any(|(a, b)| a != b) {
        return Err(crate::error::Error::internal(format!(
            "synth wrote {} with schema {got:?}, the contract says {want:?}",
            table.name
        )));
    }
    for c in table.columns {
        if !c.nullable {
            let nulls = df.column(c.name).map(|s| s.null_count()).unwrap_or(0);
            if nulls > 0 {
                return Err(crate::error::Error::internal(format!(
                    "synth wrote {nulls} nulls in {}.{}",
                    table.name, c.name
                )));
            }
        }
    }
    Ok(())
}
