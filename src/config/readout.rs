//! `[readout]`: what `retain readout` reads out and how it decides (README, "Readouts").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `[readout]`: what `retain readout` reads out and how it decides (README, "Readouts").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Readout {
    /// Campaigns whose first decision is in the last N weeks are read out, and pooled per arm.
    pub weeks: u32,
    /// Days after the send that engagement (active days, streams) is counted over.
    pub engagement_days: u32,
    /// Days after the send that an unsubscribe counts against reachability.
    pub reachability_days: u32,
    /// Days before the send of every metric's own pre-period value (CUPED).
    pub pre_days: u32,
    /// Error rate of the tests (two-sided for success metrics, Bonferroni over a type's
    /// success metrics; one-sided for the guardrails' non-inferiority).
    pub alpha: f64,
    /// A campaign whose split has a sample-ratio-mismatch p-value below this is invalid.
    pub srm_alpha: f64,
    /// The power of the minimum detectable effects and of `--plan`.
    pub power: f64,
    /// The always-valid intervals' mixture, in standard deviations of the metric.
    pub sequential_tau: f64,
    /// The success metrics of each message type.
    pub success: BTreeMap<String, Vec<String>>,
    /// The guardrail metrics, each with its margin: the largest harm accepted, as a share
    /// of the holdout's mean.
    pub guardrails: BTreeMap<String, f64>,
}

impl Default for Readout {
    fn default() -> Self {
        let success = [
            ("premium_education", "retention"),
            ("content_nudge", "retention"),
            ("winback_offer", "conversion"),
            ("payment_update_reminder", "payment_recovery"),
        ];
        Readout {
            weeks: 12,
            engagement_days: 14,
            reachability_days: 30,
            pre_days: 28,
            alpha: 0.05,
            srm_alpha: 0.001,
            power: 0.8,
            sequential_tau: 0.1,
            success: success.iter().map(|(t, m)| (t.to_string(), vec![m.to_string()])).collect(),
            guardrails: [("active_days", 0.05), ("streams", 0.05), ("unsubscribed", 0.5)]
                .iter()
                .map(|(m, v)| (m.to_string(), *v))
                .collect(),
        }
    }
}

impl Readout {
    pub(super) fn check(&self) -> Result<()> {
        let r = self;
        if !(1..=52).contains(&r.weeks) {
            return Err(Error::config(format!("readout.weeks must be in 1..=52, got {}", r.weeks)));
        }
        for (key, v) in [
            ("engagement_days", r.engagement_days),
            ("reachability_days", r.reachability_days),
            ("pre_days", r.pre_days),
        ] {
            if !(1..=90).contains(&v) {
                return Err(Error::config(format!("readout.{key} must be in 1..=90, got {v}")));
            }
        }
        for (key, v) in [("alpha", r.alpha), ("srm_alpha", r.srm_alpha), ("power", r.power)] {
            if !(v > 0.0 && v < 1.0) {
                return Err(Error::config(format!("readout.{key} must be in (0, 1), got {v}")));
            }
        }
        if !(r.sequential_tau > 0.0 && r.sequential_tau.is_finite()) {
            return Err(Error::config(format!("readout.sequential_tau must be > 0, got {}", r.sequential_tau)));
        }
        let metric = |m: &str| READOUT_METRICS.contains(&m);
        for (ty, metrics) in &r.success {
            if !crate::contract::MESSAGE_TYPES.contains(&ty.as_str()) {
                return Err(Error::config(format!(
                    "readout.success: `{ty}` is not a message type ({})",
                    crate::contract::MESSAGE_TYPES.join(", ")
                )));
            }
            if let Some(m) = metrics.iter().find(|m| !metric(m)) {
                return Err(Error::config(format!(
                    "readout.success.{ty}: `{m}` is not a metric ({})",
                    READOUT_METRICS.join(", ")
                )));
            }
        }
        for (m, margin) in &r.guardrails {
            if !metric(m) {
                return Err(Error::config(format!(
                    "readout.guardrails: `{m}` is not a metric ({})",
                    READOUT_METRICS.join(", ")
                )));
            }
            if !(*margin >= 0.0 && margin.is_finite()) {
                return Err(Error::config(format!("readout.guardrails.{m} must be a margin ≥ 0, got {margin}")));
            }
        }
        Ok(())
    }
}

/// The metrics `[readout]` may name (defined in `readout/metrics.rs`).
pub(crate) const READOUT_METRICS: &[&str] =
    &["retention", "conversion", "payment_recovery", "active_days", "streams", "unsubscribed"];
