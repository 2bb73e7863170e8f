//! `[monitor]`: what `retain monitor` compares, each check's limits, and when it fails the
//! command (README, "Monitoring").

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// When `retain monitor` (and `retain run`, which ends with it) exits non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailOn {
    /// Never: the night completes and the manifest lists the alerts.
    #[default]
    Never,
    /// When any check alerts (exit 3, README "Exit codes").
    Alert,
    /// When any check warns or alerts (exit 3).
    Warn,
}

impl std::str::FromStr for FailOn {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "never" => Ok(FailOn::Never),
            "alert" => Ok(FailOn::Alert),
            "warn" => Ok(FailOn::Warn),
            other => Err(Error::Usage(format!("--fail-on `{other}`: one of never, alert, warn"))),
        }
    }
}

/// A check's two limits on the size of a change: at `warn` it warns, at `alert` it alerts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub warn: f64,
    pub alert: f64,
}

const fn limit(warn: f64, alert: f64) -> Limit {
    Limit { warn, alert }
}

/// `[monitor.limits]`: each check's limits (README, "Monitoring", says what each measures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorLimits {
    /// A day's rows against the same weekday's median of the baseline (relative change).
    pub rows_per_day: Limit,
    /// A country's or platform's rows per day, recent days against the baseline (relative change).
    pub segment_rows: Limit,
    /// A column's mean per row, overall and per country and platform (relative change).
    pub segment_mean: Limit,
    /// A column's share of nulls (absolute change).
    pub null_rate: Limit,
    /// An enumerated column's value shares (L-infinity distance).
    pub enum_share: Limit,
    /// Rows landing in a later partition than their date (absolute change of the share).
    pub late_share: Limit,
    /// Rows repeating a key (absolute change of the share).
    pub duplicate_share: Limit,
    /// A numeric feature against the training snapshots (population stability index).
    pub psi: Limit,
    /// A numeric feature against the training snapshots (Jensen–Shannon distance, base 2).
    pub jensen_shannon: Limit,
    /// A categorical feature, the risk deciles, the plan's and the grace lengths' mix
    /// (L-infinity distance of the shares).
    pub category_share: Limit,
    /// The mean churn probability and the plan's mean expected uplift against the last
    /// nights (relative change).
    pub mean_change: Limit,
    /// The mean probability of recovery of the grace recommendations (absolute change).
    pub p_recover_change: Limit,
    /// Tonight's expected AUC (CBPE) below the champion's validation AUC.
    pub expected_auc_drop: Limit,
    /// A closed night's realised AUC against what was expected of it (absolute gap).
    pub backtest_auc_gap: Limit,
    /// A closed night's expected calibration error beyond what chance gives.
    pub calibration_error: Limit,
}

impl Default for MonitorLimits {
    fn default() -> Self {
        MonitorLimits {
            rows_per_day: limit(0.25, 0.4),
            segment_rows: limit(0.25, 0.4),
            segment_mean: limit(0.2, 0.35),
            null_rate: limit(0.05, 0.1),
            enum_share: limit(0.05, 0.1),
            late_share: limit(0.02, 0.05),
            duplicate_share: limit(0.005, 0.02),
            psi: limit(0.1, 0.25),
            jensen_shannon: limit(0.1, 0.2),
            category_share: limit(0.1, 0.2),
            mean_change: limit(0.2, 0.4),
            p_recover_change: limit(0.1, 0.2),
            expected_auc_drop: limit(0.03, 0.06),
            backtest_auc_gap: limit(0.03, 0.05),
            calibration_error: limit(0.03, 0.05),
        }
    }
}

/// `[monitor]`: what `retain monitor` compares and how sure a change must be to count
/// (README, "Monitoring").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Monitor {
    /// `never`, `alert` or `warn`: the level of check that makes the command exit 3.
    pub fail_on: FailOn,
    /// The input checks' recent days (ending at S), compared with the baseline before them.
    pub recent_days: u32,
    /// The input checks' baseline: the days before the recent ones.
    pub baseline_days: u32,
    /// Earlier nights whose scores, plans and grace recommendations are tonight's baseline,
    /// and closed nights the backtest computes again.
    pub nights: u32,
    /// Fewer rows than this in a segment or window, and it is not judged.
    pub min_rows: u64,
    /// A change must also be this many standard errors from no change to count: sampling
    /// noise alone is not an alarm (Evidently's size-aware tests make the same point).
    pub min_z: f64,
    pub limits: MonitorLimits,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            fail_on: FailOn::Never,
            recent_days: 7,
            baseline_days: 28,
            nights: 7,
            min_rows: 1000,
            min_z: 5.0,
            limits: MonitorLimits::default(),
        }
    }
}

impl Monitor {
    pub(super) fn check(&self) -> Result<()> {
        if !(1..=28).contains(&self.recent_days) || !(7..=120).contains(&self.baseline_days) {
            return Err(Error::config(format!(
                "monitor.recent_days must be in 1..=28 and monitor.baseline_days in 7..=120, got {} and {}",
                self.recent_days, self.baseline_days
            )));
        }
        if !(1..=60).contains(&self.nights) {
            return Err(Error::config(format!("monitor.nights must be in 1..=60, got {}", self.nights)));
        }
        if !(self.min_z.is_finite() && self.min_z >= 0.0) {
            return Err(Error::config(format!("monitor.min_z must be ≥ 0, got {}", self.min_z)));
        }
        let l = &self.limits;
        for (name, v) in [
            ("rows_per_day", l.rows_per_day),
            ("segment_rows", l.segment_rows),
            ("segment_mean", l.segment_mean),
            ("null_rate", l.null_rate),
            ("enum_share", l.enum_share),
            ("late_share", l.late_share),
            ("duplicate_share", l.duplicate_share),
            ("psi", l.psi),
            ("jensen_shannon", l.jensen_shannon),
            ("category_share", l.category_share),
            ("mean_change", l.mean_change),
            ("p_recover_change", l.p_recover_change),
            ("expected_auc_drop", l.expected_auc_drop),
            ("backtest_auc_gap", l.backtest_auc_gap),
            ("calibration_error", l.calibration_error),
        ] {
            if !(v.warn.is_finite() && v.alert.is_finite() && 0.0 <= v.warn && v.warn <= v.alert) {
                return Err(Error::config(format!(
                    "monitor.limits.{name} must have 0 ≤ warn ≤ alert, got warn = {}, alert = {}",
                    v.warn, v.alert
                )));
            }
        }
        Ok(())
    }
}
