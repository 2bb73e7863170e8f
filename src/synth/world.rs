//! The fixed facts of the synthetic world: countries with their prices, currencies,
//! time zones and price rises; plans; payment methods and how they fail; the calendar.

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;

use crate::error::{Error, Result};

pub(crate) struct Country {
    pub(crate) code: &'static str,
    pub(crate) currency: &'static str,
    /// Monthly price of `premium_individual` before any rise.
    pub(crate) price: f64,
    /// Share of users.
    pub(crate) weight: f64,
    pub(crate) timezones: &'static [&'static str],
    /// A price rise inside the window: (when, as a fraction of the window; by how much).
    pub(crate) rise: Option<(f64, f64)>,
    /// Prices are whole numbers in this currency.
    pub(crate) whole: bool,
}

pub(crate) const COUNTRIES: &[Country] = &[
    Country {
        code: "US",
        currency: "USD",
        price: 11.99,
        weight: 0.22,
        timezones: &["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"],
        rise: Some((0.55, 0.10)),
        whole: false,
    },
    Country {
        code: "GB",
        currency: "GBP",
        price: 11.99,
        weight: 0.10,
        timezones: &["Europe/London"],
        rise: Some((0.35, 0.09)),
        whole: false,
    },
    Country {
        code: "DE",
        currency: "EUR",
        price: 10.99,
        weight: 0.10,
        timezones: &["Europe/Berlin"],
        rise: None,
        whole: false,
    },
    Country {
        code: "SE",
        currency: "SEK",
        price: 129.0,
        weight: 0.06,
        timezones: &["Europe/Stockholm"],
        rise: Some((0.45, 0.12)),
        whole: true,
    },
    Country {
        code: "FR",
        currency: "EUR",
        price: 10.99,
        weight: 0.08,
        timezones: &["Europe/Paris"],
        rise: None,
        whole: false,
    },
    Country {
        code: "ES",
        currency: "EUR",
        price: 10.99,
        weight: 0.06,
        timezones: &["Europe/Madrid"],
        rise: None,
        whole: false,
    },
    Country {
        code: "NL",
        currency: "EUR",
        price: 10.99,
        weight: 0.04,
        timezones: &["Europe/Amsterdam"],
        rise: None,
        whole: false,
    },
    Country {
        code: "BR",
        currency: "BRL",
        price: 21.90,
        weight: 0.10,
        timezones: &["America/Sao_Paulo"],
        rise: Some((0.70, 0.15)),
        whole: false,
    },
    Country {
        code: "MX",
        currency: "MXN",
        price: 129.0,
        weight: 0.07,
        timezones: &["America/Mexico_City"],
        rise: None,
        whole: true,
    },
    Country {
        code: "IN",
        currency: "INR",
        price: 119.0,
        weight: 0.07,
        timezones: &["Asia/Kolkata"],
        rise: None,
        whole: true,
    },
    Country {
        code: "JP",
        currency: "JPY",
        price: 980.0,
        weight: 0.05,
        timezones: &["Asia/Tokyo"],
        rise: None,
        whole: true,
    },
    Country {
        code: "AU",
        currency: "AUD",
        price: 13.99,
        weight: 0.05,
        timezones: &["Australia/Sydney", "Australia/Perth"],
        rise: None,
        whole: false,
    },
];

/// Indices into `contract::PLANS`.
pub(crate) const FREE: u8 = 0;
pub(crate) const INDIVIDUAL: u8 = 1;
pub(crate) const DUO: u8 = 2;
pub(crate) const FAMILY: u8 = 3;
pub(crate) const STUDENT: u8 = 4;
/// Price of each plan relative to `premium_individual`.
const PLAN_PRICE: [f64; 5] = [0.0, 1.0, 1.34, 1.67, 0.55];

/// Indices into `contract::PAYMENT_METHODS`; share of subscribers, and chance that a renewal fails.
pub(crate) const METHOD_WEIGHT: [f64; 5] = [0.62, 0.20, 0.08, 0.04, 0.06];
pub(crate) const METHOD_FAIL: [f64; 5] = [0.055, 0.035, 0.08, 0.12, 0.06];
/// How fast each method recovers after a failure, relative to a card.
pub(crate) const METHOD_RECOVERY: [f64; 5] = [1.0, 1.3, 0.8, 0.6, 0.9];
/// Failure reasons (indices into `contract::FAILURE_REASONS`) by payment method.
pub(crate) const REASON_BY_METHOD: [[f64; 5]; 5] = [
    [0.33, 0.27, 0.20, 0.14, 0.06],
    [0.45, 0.00, 0.25, 0.25, 0.05],
    [0.55, 0.00, 0.20, 0.20, 0.05],
    [0.70, 0.00, 0.10, 0.15, 0.05],
    [0.40, 0.10, 0.20, 0.25, 0.05],
];
pub(crate) const INSUFFICIENT_FUNDS: u8 = 0;
pub(crate) const EXPIRED_CARD: u8 = 1;
pub(crate) const CARD_DECLINED: u8 = 2;
pub(crate) const PROCESSING_ERROR: u8 = 3;
pub(crate) const FRAUD_SUSPECTED: u8 = 4;

/// Grace periods granted at random (the historical experiment), in days.
pub(crate) const GRACE_DAYS: [u8; 6] = [0, 3, 7, 14, 21, 30];
/// Days since failure on which the payment is retried (another `payment_failed` when it fails).
pub(crate) const RETRY_DAYS: [i32; 6] = [1, 3, 7, 14, 21, 28];

/// A paid period. Renewals happen every `PERIOD` days, so that a renewal on day S+1 or
/// later always ends after the 30-day label horizon (see `truth`).
pub(crate) const PERIOD: i32 = 30;
/// Label horizon of the truth tables.
pub(crate) const HORIZON: i32 = 30;

/// Indices into `contract::MESSAGE_TYPES` and `contract::CHANNELS`.
pub(crate) const EDUCATION: u8 = 0;
pub(crate) const WINBACK: u8 = 1;
pub(crate) const REMINDER: u8 = 2;
pub(crate) const NUDGE: u8 = 3;
pub(crate) const PUSH: u8 = 0;
pub(crate) const EMAIL: u8 = 1;
pub(crate) const IN_APP: u8 = 2;
/// Campaigns run on every day `d` with `d % 7 == CAMPAIGN_WEEKDAY` (days counted from the start).
pub(crate) const CAMPAIGN_WEEKDAY: i32 = 2;

/// Everything about the world that does not depend on a user.
/// Which family of message effects the world has: who each message helps and harms, how
/// strong each channel is, who it reaches, and when its messages are read. The uplift
/// learners were developed on `Home`; `Turned` exists so that they are also measured on
/// effects nobody tuned them on (the same features and tables, other answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EffectShapes {
    /// Education helps new subscribers, win-back offers the price-sensitive, nudges the
    /// users whose listening fades; push is the strongest channel and annoys 8% of users.
    #[default]
    Home,
    /// Education helps long-standing subscribers, win-back offers harm the most
    /// price-sensitive and help the rest, nudges help steady listeners and harm those
    /// fading; e-mail is the strongest channel and the one that annoys, push reaches fewer
    /// users, in-app only those active in the last three days, and e-mails are read four
    /// hours after the usual listening hour.
    Turned,
}

pub(crate) struct World {
    pub(crate) seed: u64,
    /// How messages act on users (see [`EffectShapes`]).
    pub(crate) effects: EffectShapes,
    pub(crate) days: i32,
    pub(crate) start: NaiveDate,
    /// Day index of each country's price rise (`i32::MAX` when none).
    pub(crate) rise_day: Vec<i32>,
    /// Parsed time zones, flat, and the offset of each country's first one in it.
    pub(crate) zones: Vec<Tz>,
    pub(crate) zone_offset: Vec<u8>,
    /// Unix seconds of the start of day 0 (UTC).
    pub(crate) epoch0: i64,
    /// Day of month of day indices `0..days + 2 * HORIZON + 2`.
    dom: Vec<u8>,
    /// Weekday of day 0 (0 = Monday).
    pub(crate) weekday0: i32,
}

impl World {
    pub(crate) fn new(seed: u64, days: u32, start: NaiveDate, effects: EffectShapes) -> Result<Self> {
        let days = i32::try_from(days).map_err(|_| Error::config("synth: too many days"))?;
        let mut zones = Vec::new();
        let mut zone_offset = Vec::new();
        for c in COUNTRIES {
            zone_offset.push(zones.len() as u8);
            for name in c.timezones {
                zones.push(name.parse::<Tz>().map_err(|e| Error::internal(format!("time zone {name}: {e}")))?);
            }
        }
        let rise_day = COUNTRIES
            .iter()
            .map(|c| c.rise.map_or(i32::MAX, |(frac, _)| ((f64::from(days) * frac).round() as i32).max(1)))
            .collect();
        let dom = (0..days + 2 * HORIZON + 2).map(|d| (start + chrono::Days::new(d as u64)).day() as u8).collect();
        let epoch0 = start.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp();
        Ok(World {
            seed,
            effects,
            days,
            start,
            rise_day,
            zones,
            zone_offset,
            epoch0,
            dom,
            weekday0: start.weekday().num_days_from_monday() as i32,
        })
    }

    pub(crate) fn date(&self, day: i32) -> NaiveDate {
        if day >= 0 {
            self.start + chrono::Days::new(day as u64)
        } else {
            self.start - chrono::Days::new(day.unsigned_abs() as u64)
        }
    }

    /// Days since 1970-01-01 of a day index (Polars' Date representation).
    pub(crate) fn epoch_day(&self, day: i32) -> i32 {
        (self.epoch0 / 86_400) as i32 + day
    }

    /// Microseconds since the epoch of `secs` seconds into a day.
    pub(crate) fn ts(&self, day: i32, secs: f64) -> i64 {
        (self.epoch0 + i64::from(day) * 86_400) * 1_000_000 + (secs * 1e6) as i64
    }

    pub(crate) fn day_of_month(&self, day: i32) -> u32 {
        if day >= 0 && (day as usize) < self.dom.len() {
            u32::from(self.dom[day as usize])
        } else {
            self.date(day).day()
        }
    }

    /// 0 = Monday.
    pub(crate) fn weekday(&self, day: i32) -> i32 {
        (self.weekday0 + day).rem_euclid(7)
    }

    /// The monthly price of a plan in a country on a day.
    pub(crate) fn price(&self, country: u8, plan: u8, day: i32) -> f64 {
        let c = &COUNTRIES[country as usize];
        let mut p = c.price * PLAN_PRICE[plan as usize];
        if let Some((_, pct)) = c.rise
            && day >= self.rise_day[country as usize]
        {
            p *= 1.0 + pct;
        }
        if c.whole { p.round() } else { (p * 100.0).round() / 100.0 }
    }

    pub(crate) fn is_campaign_day(&self, day: i32) -> bool {
        day >= 0 && day % 7 == CAMPAIGN_WEEKDAY
    }

    pub(crate) fn last_day(&self) -> i32 {
        self.days - 1
    }

    /// The weekly truth snapshots: every 7th day back from the last day while ≥ start + 90.
    pub(crate) fn is_snapshot(&self, day: i32) -> bool {
        day >= 90 && day <= self.last_day() && (self.last_day() - day) % 7 == 0
    }
}
