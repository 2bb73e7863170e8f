//! Planning an experiment: what holdout fraction an arm needs to detect an effect of X on
//! metric M within W weeks at the budgets, from the variances the readout observed.

use super::analyse::ArmRead;
use super::metrics::Metric;
use super::stats;

/// "Detect `effect` on `metric` within `weeks` weeks."
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanRequest {
    pub metric: Metric,
    pub effect: f64,
    pub weeks: u32,
}

/// One arm's answer.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Planned {
    pub message_type: String,
    pub channel: String,
    pub metric: &'static str,
    /// Decisions per week the arm gets at the budgets: what the past weeks logged, scaled
    /// down with its channel's other arms when they exceed 7 nights of the channel's budget.
    pub weekly_decisions: f64,
    /// The metric's per-user variance after the pre-period adjustment, as observed.
    pub unit_variance: f64,
    /// The holdout share the arm has today.
    pub holdout_share: f64,
    /// The smallest detectable effect within the weeks at today's holdout share.
    pub mde_now: f64,
    /// The smallest holdout fraction that detects the effect; None when even half cannot.
    pub holdout_needed: Option<f64>,
}

/// Every arm with an observed variance for the request's metric.
pub(crate) fn plan_holdouts(
    arms: &[ArmRead],
    request: &PlanRequest,
    budgets: [u64; 3],
    alpha: f64,
    power: f64,
) -> Vec<Planned> {
    let mut by_channel = [0.0; 3];
    for a in arms.iter().filter(|a| a.metric == request.metric) {
        if let Some(i) = crate::contract::CHANNELS.iter().position(|c| *c == a.channel) {
            by_channel[i] += a.weekly_decisions;
        }
    }
    arms.iter()
        .filter(|a| a.metric == request.metric && a.unit_variance.is_finite() && a.unit_variance > 0.0)
        .map(|a| {
            let scale = crate::contract::CHANNELS
                .iter()
                .position(|c| *c == a.channel)
                .map(|i| {
                    let cap = 7.0 * budgets[i] as f64;
                    if by_channel[i] > cap { cap / by_channel[i] } else { 1.0 }
                })
                .unwrap_or(1.0);
            let weekly = a.weekly_decisions * scale;
            let n = weekly * request.weeks as f64;
            let f = a.holdout_share.clamp(1e-6, 1.0 - 1e-6);
            let se = (a.unit_variance * (1.0 / (f * n) + 1.0 / ((1.0 - f) * n))).sqrt();
            Planned {
                message_type: a.message_type.clone(),
                channel: a.channel.clone(),
                metric: request.metric.name(),
                weekly_decisions: weekly,
                unit_variance: a.unit_variance,
                holdout_share: a.holdout_share,
                mde_now: stats::minimum_detectable_effect(se, alpha, power),
                holdout_needed: stats::holdout_needed(request.effect, a.unit_variance, n, alpha, power),
            }
        })
        .collect()
}
