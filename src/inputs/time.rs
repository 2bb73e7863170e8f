//! Dates and times as Polars sees them: epoch days (the physical Date), microsecond
//! timestamps, and the literals every point-in-time filter is written with.

use chrono::{Duration, NaiveDate};
use polars::prelude::*;

/// The end of day `d` (UTC) as microseconds since the epoch: rows at or after it are
/// in the future of snapshot `d`.
pub(crate) fn end_of_day_us(d: NaiveDate) -> i64 {
    (d + Duration::days(1)).and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_micros()
}

/// Days since the Unix epoch, polars' physical Date representation.
pub(crate) fn epoch_days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// The date of a polars Date's physical value (days since the Unix epoch).
pub(crate) fn date_of_epoch_days(days: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + Duration::days(days as i64)
}

pub(crate) fn date_lit(d: NaiveDate) -> Expr {
    lit(epoch_days(d)).cast(DataType::Date)
}

pub(crate) fn ts_lit_us(us: i64) -> Expr {
    lit(us).cast(DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)))
}
