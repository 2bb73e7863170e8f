//! Watching the night: input data quality, drift, performance without labels and the
//! backtest once they close, with a status per check and one page an operator opens.
//!
//! Why in `retain`: a nightly model nobody watches fails silently (an export that drops a
//! country, a client release that counts skips twice), and only the pipeline knows both
//! what its models learned from and what it decided tonight. The monitor compares:
//! - the inputs' recent days with the weeks before them (`quality`);
//! - tonight's features with the training snapshots' distributions saved with the model,
//!   and tonight's scores, plan and grace recommendations with the last nights' (`drift`);
//! - tonight's scores with what their calibrated probabilities expect (CBPE), and a closed
//!   night's scores with their labels (`performance`).
//!
//! A check's size must pass its limit (`[monitor.limits]`) and, where sampling noise can
//! be measured, be `monitor.min_z` standard errors from no change: large worlds do not
//! alarm on noise, small ones do not alarm at all on a few rows. `row` is one check;
//! `report` draws `reports/snapshot=S/index.html`.

mod drift;
mod performance;
mod quality;
mod report;
mod row;

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use polars::prelude::*;
use serde_json::{Value, json};

use crate::config;
use crate::distribution::Binned;
use crate::error::{Error, PolarsContext, Result};
use crate::inputs::{Inputs, Lookback};
use crate::labels;
use crate::storage::Storage;
use row::Check;
pub(crate) use row::Status;

/// The backtest table: one row per closed night, kept and grown night by night.
pub(crate) const BACKTEST_TABLE: &str = "monitor_backtest";

/// The night's page, `reports/snapshot=S/index.html`.
pub(crate) fn report_path(s: NaiveDate) -> String {
    format!("reports/snapshot={s}/index.html")
}

/// The first snapshot a monitor at `s` reads (the oldest closed night of the backtest) and
/// how far before it: billing for the labels' premium status; the input checks read their
/// own partitions.
pub(crate) fn reads(s: NaiveDate, horizon_days: u32, cfg: &config::Monitor) -> (NaiveDate, Lookback) {
    let first = s - Duration::days(horizon_days as i64 + cfg.nights as i64 - 1);
    (first, Lookback { activity_days: 0, messages_days: 0, ..Lookback::new(horizon_days) })
}

/// Tonight's outputs, as far as they were written.
#[derive(Default)]
pub(crate) struct Night {
    pub features: Option<DataFrame>,
    /// The training snapshots' feature distributions (`train::FEATURE_REFERENCE`) and the
    /// snapshots they came from.
    pub reference: Option<(Vec<u8>, String)>,
    /// The churn champion's validation AUC and snapshot.
    pub validation: Option<(f64, NaiveDate)>,
    pub scores: Option<DataFrame>,
    pub interventions: Option<DataFrame>,
    pub grace: Option<DataFrame>,
}

/// Columns of a committed table of an earlier snapshot, or None when it was not written.
pub(crate) type Earlier<'a> = &'a dyn Fn(&str, NaiveDate, &[&str]) -> Result<Option<DataFrame>>;

/// What a monitor at S made, before publication.
pub(crate) struct Monitored {
    /// `monitor`: one row per check.
    pub table: DataFrame,
    /// `monitor_backtest`: one row per closed night.
    pub backtest: DataFrame,
    pub html: String,
    /// For the manifest: counts, the alerts, what was not checked, the summaries.
    pub report: Value,
    /// The worst status of the night's checks.
    pub worst: Status,
}

/// Every check of night `s`. `links` are the night's other reports (name, file next to
/// the page); `earlier_backtest` is the backtest table as the last monitor left it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn monitor(
    input: &Storage,
    inputs: &Inputs,
    s: NaiveDate,
    horizon_days: u32,
    cfg: &config::Monitor,
    night: &Night,
    earlier: Earlier,
    earlier_backtest: Option<DataFrame>,
    links: &[(String, String)],
) -> Result<Monitored> {
    let mut skipped = Vec::new();
    let windows = quality::Windows::of(s, cfg);
    let mut checks = quality::check_inputs(input, inputs.users.clone(), &windows, cfg)?;

    let mut compared = Vec::new();
    let mut summaries = serde_json::Map::new();
    match (&night.features, &night.reference) {
        (Some(features), Some((bytes, trained_on))) => {
            let reference: BTreeMap<String, Binned> = serde_json::from_slice(bytes)
                .map_err(|e| Error::data(format!("the model's feature reference is not readable: {e}")))?;
            let drifted = drift::features(features, &reference, trained_on, cfg)?;
            checks.extend(drifted.checks);
            compared = drifted.compared;
            summaries.insert("features".into(), serde_json::to_value(&drifted.summary).map_err(Error::internal)?);
        }
        _ => skipped.push("feature drift (no features table or no reference with the model of S)".to_string()),
    }

    // The last nights' scores, plans and grace recommendations, pooled.
    let nights: Vec<NaiveDate> = (1..=cfg.nights as i64).map(|k| s - Duration::days(k)).collect();
    let pooled = |table: &str, columns: &[&str]| -> Result<(Option<DataFrame>, Vec<NaiveDate>)> {
        let (mut frames, mut found) = (Vec::new(), Vec::new());
        for &d in &nights {
            if let Some(df) = earlier(table, d, columns)? {
                frames.push(df.lazy());
                found.push(d);
            }
        }
        if frames.is_empty() {
            return Ok((None, found));
        }
        let df = concat(frames, UnionArgs::default()).and_then(|lf| lf.collect());
        Ok((Some(df.ctx(format!("monitor: the last nights' {table}"))?), found))
    };
    let described = |found: &[NaiveDate]| {
        format!("the {} night(s) {} to {}", found.len(), found.last().copied().unwrap_or(s), found[0])
    };
    type Compare = fn(&DataFrame, &DataFrame, &str, &config::Monitor) -> Result<Vec<Check>>;
    let plans: [(&str, &[&str], &Option<DataFrame>, Compare); 3] = [
        ("scores", &["churn_probability", "risk_decile"], &night.scores, drift::scores),
        ("interventions", &["action", "channel", "group", "expected_uplift"], &night.interventions, drift::plan),
        ("grace", &["recommended_grace_days", "p_recover"], &night.grace, drift::grace),
    ];
    for (table, columns, tonight, compare) in plans {
        let Some(tonight) = tonight else {
            skipped.push(format!("{table} drift (no {table} tonight)"));
            continue;
        };
        match pooled(table, columns)? {
            (Some(before), found) if tonight.height() > 0 && before.height() > 0 => {
                checks.extend(compare(tonight, &before, &described(&found), cfg)?);
            }
            _ => skipped.push(format!("{table} drift (no {table} in the last {} nights)", cfg.nights)),
        }
    }

    // Performance: tonight without labels, the closed nights with them.
    let mut expected_tonight = None;
    if let Some(scores) = &night.scores {
        let p: Vec<f64> =
            scores.column("churn_probability").ctx("scores")?.f64().ctx("scores")?.into_no_null_iter().collect();
        let model = scores.column("model").ctx("scores")?.str().ctx("scores")?.get(0).unwrap_or("").to_string();
        if !p.is_empty() {
            let (c, e) = performance::tonight(&p, &model, night.validation, cfg);
            checks.extend(c);
            expected_tonight = Some(e);
        }
    }
    let newest_closed = s - Duration::days(horizon_days as i64);
    let already: Vec<NaiveDate> = match &earlier_backtest {
        Some(df) => performance::rows_of(df)?.iter().map(|b| b.night).collect(),
        None => Vec::new(),
    };
    let mut fresh = Vec::new();
    for k in 0..cfg.nights as i64 {
        let d = newest_closed - Duration::days(k);
        if d != newest_closed && already.contains(&d) {
            continue;
        }
        let Some(scores) = earlier("scores", d, &["user_id", "churn_probability", "model"])? else { continue };
        let labels = labels::churn_labels(inputs.billing.clone(), d, horizon_days)
            .collect()
            .ctx(format!("monitor: the labels of {d}"))?;
        if let Some(b) = performance::backtest(d, &scores, labels)? {
            if d == newest_closed {
                checks.extend(performance::backtest_checks(&b, cfg));
            }
            fresh.push(b);
        }
    }
    if !fresh.iter().any(|b| b.night == newest_closed) {
        skipped.push(format!("backtest (no scores published for {newest_closed}, whose labels close tonight)"));
    }
    let backtest = performance::backtest_table(&fresh, earlier_backtest, s)?;
    let history = performance::rows_of(&backtest)?;

    let worst = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
    let table = frame(&checks, s)?;
    let html = report::page(s, &checks, &compared, &history, links, &skipped);
    let count = |st: Status| checks.iter().filter(|c| c.status == st).count();
    let flagged = |st: Status| -> Vec<Value> {
        checks
            .iter()
            .filter(|c| c.status == st)
            .map(|c| json!({ "check": c.check, "subject": c.subject, "statistic": c.statistic, "value": c.value }))
            .collect()
    };
    let report = json!({
        "checks": checks.len(),
        "ok": count(Status::Ok),
        "warn": count(Status::Warn),
        "alert": count(Status::Alert),
        "alerts": flagged(Status::Alert),
        "warnings": flagged(Status::Warn),
        "skipped": skipped,
        "expected": expected_tonight.map(|e| json!({ "auc": e.auc, "log_loss": e.log_loss, "brier": e.brier })),
        "backtest_nights": history.len(),
        "summaries": summaries,
    });
    Ok(Monitored { table, backtest, html, report, worst })
}

fn frame(checks: &[Check], s: NaiveDate) -> Result<DataFrame> {
    df!(
        "check" => checks.iter().map(|c| c.check).collect::<Vec<_>>(),
        "subject" => checks.iter().map(|c| c.subject.as_str()).collect::<Vec<_>>(),
        "statistic" => checks.iter().map(|c| c.statistic).collect::<Vec<_>>(),
        "value" => checks.iter().map(|c| c.value.is_finite().then_some(c.value)).collect::<Vec<_>>(),
        "threshold" => checks.iter().map(|c| c.threshold).collect::<Vec<_>>(),
        "status" => checks.iter().map(|c| c.status.name()).collect::<Vec<_>>(),
        "baseline" => checks.iter().map(|c| c.baseline.as_str()).collect::<Vec<_>>(),
        "snapshot_date" => vec![s; checks.len()],
    )
    .ctx("the monitor table")
}
