//! Reading out experiments: every campaign's treatment against its holdout, on retention,
//! conversion, payment recovery, engagement and reachability, with a decision.
//!
//! Why in `retain`: every campaign in `messages` (and every plan `retain` writes, once the
//! messaging platform logs it back) holds out a random share with logged propensities, and
//! a message that keeps subscribers but drives unsubscribes or cuts listening is not a
//! win. The readout weighs each arm by its logged propensities (Hájek means), narrows the
//! intervals with each metric's own pre-period (CUPED), checks the split against the
//! propensities (SRM), reads campaigns whose windows are still open with always-valid
//! intervals, and decides with success metrics and guardrails (the rule of Spotify's
//! Confidence: ship only when a success metric improves significantly and every guardrail
//! is significantly non-inferior).
//!
//! In order: `metrics` (which decisions, and each metric's value per decision) →
//! `analyse` (per campaign arm: estimates, SRM, decision; pooled arms; segments) →
//! `plan` (the holdout an effect needs) → `report` (the HTML page). `stats` is the
//! arithmetic under all of them.

mod analyse;
mod forecast;
mod metrics;
mod plan;
mod report;
mod stats;

use chrono::{Duration, NaiveDate};
use polars::prelude::*;
use serde_json::{Value, json};

use crate::config;
use crate::error::{PolarsContext, Result};
use crate::inputs::{Inputs, Lookback};
use analyse::{ArmRead, CellRead, Measures, Rules};
pub(crate) use forecast::Plan;
pub(crate) use metrics::Metric;
pub(crate) use plan::{PlanRequest, plan_holdouts};
pub(crate) use stats::{Look, Unit, estimate, interval, minimum_detectable_effect, p_value};

/// The table of arms pooled over campaigns.
pub(crate) const ARMS_TABLE: &str = "readout_arms";
/// The table of each arm's effect by segment.
pub(crate) const SEGMENTS_TABLE: &str = "readout_segments";

/// The readout's page, `reports/snapshot=S/readout.html`.
pub(crate) fn report_path(s: NaiveDate) -> String {
    format!("reports/snapshot={s}/readout.html")
}

/// What a readout at S made, before publication.
pub(crate) struct Readout {
    /// `readouts`: one row per (campaign, message type, channel, metric).
    pub table: DataFrame,
    pub arms: DataFrame,
    pub segments: DataFrame,
    pub html: String,
    /// For the manifest: campaigns, decisions, SRM flags.
    pub report: Value,
    /// The pooled arms, for `--plan`.
    arm_reads: Vec<ArmRead>,
}

impl Readout {
    /// `--plan`: the holdout each arm needs to detect the request's effect.
    pub(crate) fn plan(
        &self,
        request: &PlanRequest,
        settings: &config::Readout,
        budgets: [u64; 3],
    ) -> Vec<plan::Planned> {
        plan_holdouts(&self.arm_reads, request, budgets, settings.alpha, settings.power)
    }
}

/// The first day whose campaigns a readout at `s` reads, and how far before it the inputs
/// go: the pre-period (activity, unsubscribes) and the premium status rule (billing).
pub(crate) fn reads(s: NaiveDate, horizon_days: u32, r: &config::Readout) -> (NaiveDate, Lookback) {
    let first = s - Duration::days(7 * r.weeks as i64 - 1);
    let pre = r.pre_days + 1;
    (first, Lookback { activity_days: pre, messages_days: pre, ..Lookback::new(horizon_days) })
}

fn windows(horizon_days: u32, r: &config::Readout) -> metrics::Windows {
    metrics::Windows {
        horizon_days,
        engagement_days: r.engagement_days,
        reachability_days: r.reachability_days,
        pre_days: r.pre_days,
    }
}

fn rules(r: &config::Readout) -> Rules {
    // Names were checked against `config::READOUT_METRICS` when the settings were resolved.
    let metric = |m: &String| Metric::from_name(m).expect("a checked metric name");
    Rules {
        alpha: r.alpha,
        srm_alpha: r.srm_alpha,
        power: r.power,
        sequential_tau: r.sequential_tau,
        success: r.success.iter().map(|(t, ms)| (t.clone(), ms.iter().map(metric).collect())).collect(),
        guardrails: r.guardrails.iter().map(|(m, v)| (metric(m), *v)).collect(),
    }
}

/// Read out every campaign of the last `weeks` weeks at `s`. `scores_of(D)` gives the
/// scores written for snapshot D, when there are any (the risk-decile segments);
/// `plans` the plans `retain` wrote in those weeks, by the run id their campaigns carry.
pub(crate) fn read_out(
    inputs: &Inputs,
    s: NaiveDate,
    horizon_days: u32,
    settings: &config::Readout,
    scores_of: &dyn Fn(NaiveDate) -> Result<Option<DataFrame>>,
    plans: &std::collections::BTreeMap<String, Plan>,
) -> Result<Readout> {
    let (first, _) = reads(s, horizon_days, settings);
    let w = windows(horizon_days, settings);
    let rules = rules(settings);
    let decisions = metrics::decisions(inputs.messages.clone(), first, s).collect().ctx("the decisions read out")?;
    let measured = metrics::measure(inputs, &decisions, s, w, scores_of)?;
    let m = if measured.height() == 0 { None } else { Some(Measures::from_frame(&measured)?) };
    let (cells, reads, arm_reads, segment_reads) = match &m {
        Some(m) => {
            let cells = analyse::cells(m);
            let reads = analyse::read_cells(m, &cells, s, w, &rules);
            let arms = analyse::pool_arms(m, &cells, &reads, settings.weeks);
            let segments = analyse::segments(m, &cells, &reads);
            (cells, reads, arms, segments)
        }
        None => Default::default(),
    };
    let expected = forecast::forecasts(plans, &cells)?;
    let table = readouts_frame(&cells, &reads, &expected, s)?;
    let arms = arms_frame(&arm_reads, s, settings)?;
    let segments = segments_frame(&segment_reads, s, settings.alpha)?;
    let promised = promised(&cells, &reads, &expected, plans);
    let html = report::page(s, &cells, &reads, &arm_reads, &segment_reads, &promised, settings);
    let mut decisions = std::collections::BTreeMap::<&str, usize>::new();
    for r in &reads {
        *decisions.entry(r.decision).or_default() += 1;
    }
    let invalid: std::collections::BTreeSet<&str> =
        reads.iter().filter(|r| r.decision == "invalid").map(|r| cells[r.cell].campaign.as_str()).collect();
    let report = json!({
        "campaigns": cells.iter().map(|c| c.campaign.as_str()).collect::<std::collections::BTreeSet<_>>().len(),
        "arms": cells.len(),
        "decisions_read": decisions.len(),
        "decisions": decisions,
        "srm_flagged": invalid,
        "first_campaign_day": first,
        "plans": promised,
    });
    Ok(Readout { table, arms, segments, html, report, arm_reads })
}

/// Each forecast of `retain`'s plans next to what the readout measured (manifest
/// `details.readout.plans`, and the page): one entry per (plan's arm, forecast metric).
fn promised(
    cells: &[analyse::Cell],
    reads: &[CellRead],
    expected: &[std::collections::BTreeMap<Metric, f64>],
    plans: &std::collections::BTreeMap<String, Plan>,
) -> Vec<report::Promise> {
    let mut out = Vec::new();
    for r in reads {
        let cell = &cells[r.cell];
        for read in &r.reads {
            let Some(&forecast) = expected[r.cell].get(&read.metric) else { continue };
            let effect = read.estimate.map(|e| e.effect).filter(|e| e.is_finite());
            let (low, high) = (read.ci.0.is_finite().then_some(read.ci.0), read.ci.1.is_finite().then_some(read.ci.1));
            out.push(report::Promise {
                campaign_id: cell.campaign.clone(),
                plan_snapshot: plans.get(&cell.campaign).map(|p| p.snapshot),
                message_type: cell.message_type.clone(),
                channel: cell.channel.clone(),
                metric: read.metric.name(),
                expected_effect: forecast,
                effect,
                ci_low: low,
                ci_high: high,
                window_closed: read.window_closed,
                within_interval: low.zip(high).map(|(l, h)| l <= forecast && forecast <= h),
            });
        }
    }
    out
}

fn readouts_frame(
    cells: &[analyse::Cell],
    reads: &[CellRead],
    expected: &[std::collections::BTreeMap<Metric, f64>],
    s: NaiveDate,
) -> Result<DataFrame> {
    let (mut campaign, mut message_type, mut channel) = (Vec::new(), Vec::new(), Vec::new());
    let (mut metric, mut role) = (Vec::<&str>::new(), Vec::<&str>::new());
    let (mut nt, mut nh) = (Vec::<i64>::new(), Vec::<i64>::new());
    let mut f: [Vec<Option<f64>>; 10] = Default::default();
    let (mut closed, mut decision, mut first, mut sequential) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut forecast: Vec<Option<f64>> = Vec::new();
    let finite = |v: f64| v.is_finite().then_some(v);
    for r in reads {
        let cell = &cells[r.cell];
        for read in &r.reads {
            campaign.push(cell.campaign.clone());
            message_type.push(cell.message_type.clone());
            channel.push(cell.channel.clone());
            metric.push(read.metric.name());
            role.push(read.role.name());
            let e = read.estimate;
            nt.push(e.map_or(0, |e| e.n_treatment as i64));
            nh.push(e.map_or(0, |e| e.n_holdout as i64));
            let values = [
                e.map(|e| e.mean_treatment),
                e.map(|e| e.mean_holdout),
                e.map(|e| e.effect),
                finite(read.ci.0),
                finite(read.ci.1),
                finite(read.p_value),
                e.map(|e| e.variance_reduction()),
                r.srm_p_value,
                read.margin,
                finite(read.mde),
            ];
            for (col, v) in f.iter_mut().zip(values) {
                col.push(v.and_then(finite));
            }
            closed.push(read.window_closed);
            forecast.push(expected[r.cell].get(&read.metric).copied());
            decision.push(r.decision);
            first.push(cell.first_send);
            sequential.push(matches!(read.look, Look::Sequential { .. }));
        }
    }
    let n = closed.len();
    df!(
        "campaign_id" => campaign,
        "message_type" => message_type,
        "channel" => channel,
        "metric" => metric,
        "role" => role,
        "n_treatment" => nt,
        "n_holdout" => nh,
        "mean_treatment" => &f[0],
        "mean_holdout" => &f[1],
        "effect" => &f[2],
        "ci_low" => &f[3],
        "ci_high" => &f[4],
        "p_value" => &f[5],
        "variance_reduction" => &f[6],
        "srm_p_value" => &f[7],
        "window_closed" => closed,
        "decision" => decision,
        "snapshot_date" => vec![s; n],
        "first_send" => first,
        "sequential" => sequential,
        "margin" => &f[8],
        "mde" => &f[9],
        "expected_effect" => forecast,
    )
    .ctx("the readouts table")
}

fn arms_frame(arms: &[ArmRead], s: NaiveDate, r: &config::Readout) -> Result<DataFrame> {
    let ci = |a: &ArmRead| interval(a.effect, a.se, r.alpha, Look::Fixed);
    let finite = |v: f64| v.is_finite().then_some(v);
    df!(
        "message_type" => arms.iter().map(|a| a.message_type.as_str()).collect::<Vec<_>>(),
        "channel" => arms.iter().map(|a| a.channel.as_str()).collect::<Vec<_>>(),
        "metric" => arms.iter().map(|a| a.metric.name()).collect::<Vec<_>>(),
        "role" => arms.iter().map(|a| a.role.name()).collect::<Vec<_>>(),
        "campaigns" => arms.iter().map(|a| a.campaigns as i64).collect::<Vec<_>>(),
        "n_treatment" => arms.iter().map(|a| a.n_treatment as i64).collect::<Vec<_>>(),
        "n_holdout" => arms.iter().map(|a| a.n_holdout as i64).collect::<Vec<_>>(),
        "effect" => arms.iter().map(|a| finite(a.effect)).collect::<Vec<_>>(),
        "ci_low" => arms.iter().map(|a| finite(ci(a).0)).collect::<Vec<_>>(),
        "ci_high" => arms.iter().map(|a| finite(ci(a).1)).collect::<Vec<_>>(),
        "p_value" => arms.iter().map(|a| finite(stats::p_value(a.effect, a.se, Look::Fixed))).collect::<Vec<_>>(),
        "mde" => arms.iter().map(|a| finite(minimum_detectable_effect(a.se, r.alpha, r.power))).collect::<Vec<_>>(),
        "heterogeneity_p" => arms.iter().map(|a| a.heterogeneity_p.and_then(finite)).collect::<Vec<_>>(),
        "weekly_decisions" => arms.iter().map(|a| a.weekly_decisions).collect::<Vec<_>>(),
        "holdout_share" => arms.iter().map(|a| a.holdout_share).collect::<Vec<_>>(),
        "unit_variance" => arms.iter().map(|a| finite(a.unit_variance)).collect::<Vec<_>>(),
        "snapshot_date" => vec![s; arms.len()],
    )
    .ctx("the readout_arms table")
}

fn segments_frame(rows: &[analyse::SegmentRead], s: NaiveDate, alpha: f64) -> Result<DataFrame> {
    let ci: Vec<(f64, f64)> = rows.iter().map(|r| interval(r.effect, r.se, alpha, Look::Fixed)).collect();
    let finite = |v: f64| v.is_finite().then_some(v);
    df!(
        "message_type" => rows.iter().map(|r| r.message_type.as_str()).collect::<Vec<_>>(),
        "channel" => rows.iter().map(|r| r.channel.as_str()).collect::<Vec<_>>(),
        "metric" => rows.iter().map(|r| r.metric.name()).collect::<Vec<_>>(),
        "dimension" => rows.iter().map(|r| r.dimension).collect::<Vec<_>>(),
        "segment" => rows.iter().map(|r| r.segment.as_str()).collect::<Vec<_>>(),
        "n_treatment" => rows.iter().map(|r| r.n_treatment as i64).collect::<Vec<_>>(),
        "n_holdout" => rows.iter().map(|r| r.n_holdout as i64).collect::<Vec<_>>(),
        "effect" => rows.iter().map(|r| finite(r.effect)).collect::<Vec<_>>(),
        "ci_low" => ci.iter().map(|c| finite(c.0)).collect::<Vec<_>>(),
        "ci_high" => ci.iter().map(|c| finite(c.1)).collect::<Vec<_>>(),
        "p_value" => rows.iter().map(|r| finite(stats::p_value(r.effect, r.se, Look::Fixed))).collect::<Vec<_>>(),
        "heterogeneity_p" => rows.iter().map(|r| r.heterogeneity_p.and_then(finite)).collect::<Vec<_>>(),
        "snapshot_date" => vec![s; rows.len()],
    )
    .ctx("the readout_segments table")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_configurable_metric_names_are_the_metrics() {
        let names: Vec<&str> = super::Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names, crate::config::READOUT_METRICS);
    }
}
