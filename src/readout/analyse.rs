//! From measured decisions to results: each campaign's arms (campaign × message type ×
//! channel) read out metric by metric, the sample-ratio check, the decision; the arms
//! pooled over campaigns; and each arm's effect by segment with its heterogeneity test.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::*;

use super::metrics::{Metric, SEGMENTS, Windows};
use super::stats::{self, Estimate, Look, Unit};
use crate::error::{PolarsContext, Result};
use crate::inputs::date_of_epoch_days;

/// What the analysis needs of the settings.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub alpha: f64,
    pub srm_alpha: f64,
    pub power: f64,
    /// The always-valid test's mixture, in standard deviations of the metric.
    pub sequential_tau: f64,
    /// Success metrics per message type.
    pub success: BTreeMap<String, Vec<Metric>>,
    /// Guardrails and their margins (the largest harm accepted, as a share of the holdout's mean).
    pub guardrails: BTreeMap<Metric, f64>,
}

impl Rules {
    /// The metrics read out for a message type, with their roles; success first.
    pub(crate) fn roles(&self, message_type: &str) -> Vec<(Metric, Role)> {
        let success = self.success.get(message_type).cloned().unwrap_or_default();
        let mut out: Vec<_> = success.iter().map(|m| (*m, Role::Success)).collect();
        for m in self.guardrails.keys().filter(|m| !success.contains(m)) {
            out.push((*m, Role::Guardrail));
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Success,
    Guardrail,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Success => "success",
            Role::Guardrail => "guardrail",
        }
    }
}

/// One metric's values over the decisions, None outside its population.
pub(crate) type Values = Vec<Option<f64>>;

/// The decisions as columns, one entry per decision.
pub(crate) struct Measures {
    pub campaign: Vec<String>,
    pub message_type: Vec<String>,
    pub channel: Vec<String>,
    pub send_date: Vec<NaiveDate>,
    pub treated: Vec<bool>,
    pub propensity: Vec<f64>,
    /// Per metric (in [`Metric::ALL`]'s order): value and pre-period value, None outside
    /// the metric's population.
    pub values: Vec<(Values, Values)>,
    /// Per segment dimension (in [`SEGMENTS`]' order).
    pub segments: Vec<Vec<Option<String>>>,
}

fn strings(df: &DataFrame, c: &str) -> Result<Vec<Option<String>>> {
    let s = df.column(c).ctx(c)?.cast(&DataType::String).ctx(c)?;
    Ok(s.str().ctx(c)?.iter().map(|v| v.map(str::to_string)).collect())
}

fn floats(df: &DataFrame, c: &str) -> Result<Vec<Option<f64>>> {
    let s = df.column(c).ctx(c)?.cast(&DataType::Float64).ctx(c)?;
    Ok(s.f64().ctx(c)?.iter().collect())
}

impl Measures {
    pub(crate) fn from_frame(df: &DataFrame) -> Result<Measures> {
        let text = |c: &str| -> Result<Vec<String>> {
            Ok(strings(df, c)?.into_iter().map(Option::unwrap_or_default).collect())
        };
        let dates = df.column("send_date").ctx("send_date")?.cast(&DataType::Int32).ctx("send_date")?;
        let send_date = dates.i32().ctx("send_date")?.iter().map(|d| date_of_epoch_days(d.unwrap_or(0))).collect();
        let mut values = Vec::new();
        for m in Metric::ALL {
            values.push((floats(df, m.name())?, floats(df, &m.pre_column())?));
        }
        Ok(Measures {
            campaign: text("campaign_id")?,
            message_type: text("message_type")?,
            channel: text("channel")?,
            send_date,
            treated: text("arm")?.iter().map(|a| a == "treatment").collect(),
            propensity: floats(df, "propensity")?.into_iter().map(|p| p.unwrap_or(f64::NAN)).collect(),
            values,
            segments: SEGMENTS.iter().map(|c| strings(df, c)).collect::<Result<_>>()?,
        })
    }

    /// The units of `metric` among the decisions `rows`.
    fn units<'a>(&'a self, metric: Metric, rows: impl Iterator<Item = usize> + 'a) -> impl Iterator<Item = Unit> + 'a {
        let (y, pre) = &self.values[metric_index(metric)];
        rows.filter_map(move |i| {
            Some(Unit {
                treated: self.treated[i],
                weight: 1.0 / self.propensity[i],
                y: y[i]?,
                pre: pre[i].unwrap_or(0.0),
            })
        })
    }
}

fn metric_index(m: Metric) -> usize {
    Metric::ALL.iter().position(|x| *x == m).expect("a metric of ALL")
}

/// One arm of one campaign: its decisions.
pub(crate) struct Cell {
    pub campaign: String,
    pub message_type: String,
    pub channel: String,
    pub first_send: NaiveDate,
    pub last_send: NaiveDate,
    pub rows: Vec<usize>,
}

/// The campaigns' arms, in (campaign start, campaign, type, channel) order.
pub(crate) fn cells(m: &Measures) -> Vec<Cell> {
    let mut by: BTreeMap<(&str, &str, &str), Vec<usize>> = BTreeMap::new();
    for i in 0..m.campaign.len() {
        by.entry((&m.campaign[i], &m.message_type[i], &m.channel[i])).or_default().push(i);
    }
    let mut cells: Vec<Cell> = by
        .into_iter()
        .map(|((c, t, ch), rows)| Cell {
            campaign: c.to_string(),
            message_type: t.to_string(),
            channel: ch.to_string(),
            first_send: rows.iter().map(|&i| m.send_date[i]).min().expect("a cell has rows"),
            last_send: rows.iter().map(|&i| m.send_date[i]).max().expect("a cell has rows"),
            rows,
        })
        .collect();
    let mut start: BTreeMap<String, NaiveDate> = BTreeMap::new();
    for c in &cells {
        let e = start.entry(c.campaign.clone()).or_insert(c.first_send);
        *e = (*e).min(c.first_send);
    }
    cells.sort_by(|a, b| (start[&a.campaign], &a.campaign).cmp(&(start[&b.campaign], &b.campaign)));
    cells
}

/// One metric of one campaign's arm, read out.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub metric: Metric,
    pub role: Role,
    pub estimate: Option<Estimate>,
    pub look: Look,
    pub window_closed: bool,
    /// The guardrail's margin in the metric's units (the share × the holdout's mean).
    pub margin: Option<f64>,
    pub ci: (f64, f64),
    pub p_value: f64,
    pub mde: f64,
}

/// One campaign's arm, read out: its metrics, its campaign's SRM p-value, the decision.
pub(crate) struct CellRead {
    pub cell: usize,
    pub reads: Vec<Read>,
    pub srm_p_value: Option<f64>,
    pub decision: &'static str,
}

/// The interval and p-value of `e` at level 1 − `alpha`, with a degenerate (zero
/// variance) estimate read as exact.
fn interval_of(e: &Estimate, alpha: f64, look: Look) -> ((f64, f64), f64) {
    if e.se > 0.0 {
        (stats::interval(e.effect, e.se, alpha, look), stats::p_value(e.effect, e.se, look))
    } else {
        ((e.effect, e.effect), if e.effect == 0.0 { 1.0 } else { 0.0 })
    }
}

/// Read out every cell on day `s`.
pub(crate) fn read_cells(m: &Measures, cells: &[Cell], s: NaiveDate, w: Windows, rules: &Rules) -> Vec<CellRead> {
    // The SRM p-value is the campaign's: its cells' statistics combined.
    let mut srm: BTreeMap<&str, Vec<(f64, u64)>> = BTreeMap::new();
    for c in cells {
        let units: Vec<(bool, f64)> = c.rows.iter().map(|&i| (m.treated[i], m.propensity[i])).collect();
        srm.entry(&c.campaign).or_default().extend(stats::srm_z(&units));
    }
    let srm: BTreeMap<&str, Option<f64>> = srm.into_iter().map(|(k, v)| (k, stats::srm_p_value(&v))).collect();
    cells
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let reads: Vec<Read> = rules
                .roles(&c.message_type)
                .into_iter()
                .map(|(metric, role)| {
                    let units: Vec<Unit> = m.units(metric, c.rows.iter().copied()).collect();
                    let estimate = stats::estimate(&units, true);
                    let window_closed = w.last_day(metric, c.last_send) <= s;
                    let look = match (window_closed, estimate) {
                        (false, Some(e)) => Look::Sequential { tau: rules.sequential_tau * e.sd },
                        _ => Look::Fixed,
                    };
                    let margin = match role {
                        Role::Guardrail => estimate.map(|e| rules.guardrails[&metric] * e.mean_holdout.abs()),
                        Role::Success => None,
                    };
                    let (ci, p_value) = estimate
                        .map(|e| interval_of(&e, rules.alpha, look))
                        .unwrap_or(((f64::NAN, f64::NAN), f64::NAN));
                    let mde = estimate.map(|e| stats::minimum_detectable_effect(e.se, rules.alpha, rules.power));
                    Read {
                        metric,
                        role,
                        estimate,
                        look,
                        window_closed,
                        margin,
                        ci,
                        p_value,
                        mde: mde.unwrap_or(f64::NAN),
                    }
                })
                .collect();
            let srm_p_value = srm.get(c.campaign.as_str()).copied().flatten();
            let decision = decide(&reads, srm_p_value, rules);
            CellRead { cell: ci, reads, srm_p_value, decision }
        })
        .collect()
}

/// The decision rule: `invalid` when the campaign's split does not match its logged
/// propensities (SRM p < `srm_alpha`); `stop` when a success metric is significantly worse
/// or a guardrail significantly worse than its margin; `ship` when a success metric is
/// significantly better (Bonferroni over the type's success metrics) and every guardrail
/// is significantly non-inferior (one-sided at α); otherwise `keep testing` while a window
/// is open, and `stop` once every window has closed.
pub(crate) fn decide(reads: &[Read], srm_p_value: Option<f64>, rules: &Rules) -> &'static str {
    if srm_p_value.is_some_and(|p| p < rules.srm_alpha) {
        return "invalid";
    }
    let k = reads.iter().filter(|r| r.role == Role::Success).count().max(1) as f64;
    // Each read as "good direction positive": the bounds of its interval at `alpha`.
    let bounds = |r: &Read, alpha: f64| -> Option<(f64, f64)> {
        let e = r.estimate?;
        let ((lo, hi), _) = interval_of(&e, alpha, r.look);
        Some(if r.metric.higher_is_better() { (lo, hi) } else { (-hi, -lo) })
    };
    let mut better = false;
    let mut worse = false;
    let mut all_guarded = true;
    for r in reads {
        match r.role {
            Role::Success => {
                if let Some((lo, hi)) = bounds(r, rules.alpha / k) {
                    better |= lo > 0.0;
                    worse |= hi < 0.0;
                }
            }
            Role::Guardrail => match (bounds(r, 2.0 * rules.alpha), r.margin) {
                (Some((lo, hi)), Some(margin)) => {
                    all_guarded &= lo > -margin;
                    worse |= hi < -margin;
                }
                _ => all_guarded = false,
            },
        }
    }
    if worse {
        "stop"
    } else if better && all_guarded {
        "ship"
    } else if reads.iter().all(|r| r.window_closed) {
        "stop"
    } else {
        "keep testing"
    }
}

/// An arm (message type × channel) on one metric, pooled over the campaigns whose window
/// for it has closed.
pub(crate) struct ArmRead {
    pub message_type: String,
    pub channel: String,
    pub metric: Metric,
    pub role: Role,
    pub campaigns: usize,
    pub n_treatment: u64,
    pub n_holdout: u64,
    pub effect: f64,
    pub se: f64,
    pub heterogeneity_p: Option<f64>,
    /// Per-unit variance after CUPED, averaged over the campaigns by size (for planning).
    pub unit_variance: f64,
    /// Decisions per week (both arms), over every campaign of the window.
    pub weekly_decisions: f64,
    /// The holdout's share of the decisions.
    pub holdout_share: f64,
    /// The pooled effect after each closed campaign, by its last send: (date, effect, se).
    pub cumulative: Vec<(NaiveDate, f64, f64)>,
}

pub(crate) fn pool_arms(m: &Measures, cells: &[Cell], reads: &[CellRead], weeks: u32) -> Vec<ArmRead> {
    type Reads<'a> = Vec<(usize, &'a Read)>;
    let mut by: BTreeMap<(&str, &str, Metric), Reads> = BTreeMap::new();
    let mut volume: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for r in reads {
        let c = &cells[r.cell];
        let v = volume.entry((&c.message_type, &c.channel)).or_default();
        for &i in &c.rows {
            if m.treated[i] { v.0 += 1 } else { v.1 += 1 }
        }
        for read in &r.reads {
            by.entry((&c.message_type, &c.channel, read.metric)).or_default().push((r.cell, read));
        }
    }
    by.into_iter()
        .filter_map(|((t, ch, metric), list)| {
            let closed: Vec<(usize, Estimate)> =
                list.iter().filter(|(_, r)| r.window_closed).filter_map(|(c, r)| Some((*c, r.estimate?))).collect();
            let role = list.first()?.1.role;
            let pairs: Vec<(f64, f64)> = closed.iter().map(|(_, e)| (e.effect, e.se)).collect();
            let (effect, se) = stats::pool(&pairs).unwrap_or((f64::NAN, f64::NAN));
            let mut cumulative = Vec::new();
            for k in 1..=closed.len() {
                if let Some((e, s)) = stats::pool(&pairs[..k]) {
                    cumulative.push((cells[closed[k - 1].0].last_send, e, s));
                }
            }
            let n: f64 = closed.iter().map(|(_, e)| (e.n_treatment + e.n_holdout) as f64).sum();
            let unit_variance =
                closed.iter().map(|(_, e)| e.unit_variance * (e.n_treatment + e.n_holdout) as f64).sum::<f64>() / n;
            let (vt, vh) = volume[&(t, ch)];
            Some(ArmRead {
                message_type: t.to_string(),
                channel: ch.to_string(),
                metric,
                role,
                campaigns: closed.len(),
                n_treatment: closed.iter().map(|(_, e)| e.n_treatment).sum(),
                n_holdout: closed.iter().map(|(_, e)| e.n_holdout).sum(),
                effect,
                se,
                heterogeneity_p: stats::heterogeneity(&pairs).map(|(_, p)| p),
                unit_variance,
                weekly_decisions: (vt + vh) as f64 / weeks as f64,
                holdout_share: vh as f64 / (vt + vh).max(1) as f64,
                cumulative,
            })
        })
        .collect()
}

/// An arm's effect on one metric within one segment, pooled over its closed campaigns.
pub(crate) struct SegmentRead {
    pub message_type: String,
    pub channel: String,
    pub metric: Metric,
    pub dimension: &'static str,
    pub segment: String,
    pub n_treatment: u64,
    pub n_holdout: u64,
    pub effect: f64,
    pub se: f64,
    /// Cochran's Q across the dimension's segments: do they differ?
    pub heterogeneity_p: Option<f64>,
}

pub(crate) fn segments(m: &Measures, cells: &[Cell], reads: &[CellRead]) -> Vec<SegmentRead> {
    let mut out = Vec::new();
    // (type, channel, metric, dimension) → segment → per-campaign estimates.
    type Key<'a> = (&'a str, &'a str, Metric, usize);
    let mut by: BTreeMap<Key, BTreeMap<&str, Vec<Estimate>>> = BTreeMap::new();
    for r in reads {
        let c = &cells[r.cell];
        for read in r.reads.iter().filter(|r| r.window_closed) {
            for (d, values) in m.segments.iter().enumerate() {
                let mut levels: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
                for &i in &c.rows {
                    if let Some(v) = values[i].as_deref() {
                        levels.entry(v).or_default().push(i);
                    }
                }
                for (level, rows) in levels {
                    let units: Vec<Unit> = m.units(read.metric, rows.into_iter()).collect();
                    if let Some(e) = stats::estimate(&units, true) {
                        by.entry((&c.message_type, &c.channel, read.metric, d))
                            .or_default()
                            .entry(level)
                            .or_default()
                            .push(e);
                    }
                }
            }
        }
    }
    for ((t, ch, metric, d), levels) in by {
        let pooled: Vec<(&str, u64, u64, f64, f64)> = levels
            .iter()
            .filter_map(|(level, es)| {
                let (e, s) = stats::pool(&es.iter().map(|e| (e.effect, e.se)).collect::<Vec<_>>())?;
                Some((*level, es.iter().map(|e| e.n_treatment).sum(), es.iter().map(|e| e.n_holdout).sum(), e, s))
            })
            .collect();
        let q = stats::heterogeneity(&pooled.iter().map(|p| (p.3, p.4)).collect::<Vec<_>>()).map(|(_, p)| p);
        for (level, nt, nh, effect, se) in pooled {
            out.push(SegmentRead {
                message_type: t.to_string(),
                channel: ch.to_string(),
                metric,
                dimension: SEGMENTS[d],
                segment: level.to_string(),
                n_treatment: nt,
                n_holdout: nh,
                effect,
                se,
                heterogeneity_p: q,
            });
        }
    }
    out
}
