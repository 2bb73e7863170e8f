//! The night's checks (`retain monitor`, and the end of `retain run`): what the monitor
//! reads of the model and of earlier nights, its tables and page, and `--fail-on`.

use chrono::NaiveDate;
use polars::prelude::*;
use serde_json::{Value, json};

use super::context::{Context, refuse_shard};
use super::summary::table_summary;
use crate::config::{FailOn, StageSettings};
use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::models::ModelArtifact;
use crate::storage::Storage;
use crate::{contract, monitor, train};

/// The training snapshots' feature distributions saved with the model, and which snapshots.
pub(super) fn reference_of(ctx: &Context, artifact: &ModelArtifact) -> Result<Option<(Vec<u8>, String)>> {
    if !artifact.attachments.contains_key(train::FEATURE_REFERENCE) {
        return Ok(None);
    }
    let bytes = train::attachment(&ctx.output, ctx.stage.as_of, artifact, train::FEATURE_REFERENCE)?;
    let on = &artifact.trained_on;
    let text = match (on.iter().min(), on.iter().max()) {
        (Some(a), Some(b)) => format!("{} snapshots {a} to {b} and {}", on.len(), artifact.validated_on),
        _ => artifact.validated_on.to_string(),
    };
    Ok(Some((bytes, text)))
}

/// The churn champion's validation AUC and the snapshot it was measured on.
pub(super) fn validation_of(artifact: &ModelArtifact) -> Option<(f64, NaiveDate)> {
    let champion = artifact.target(crate::models::Target::Churn).ok()?.champion().ok()?;
    champion.validation.auc.is_finite().then_some((champion.validation.auc, artifact.validated_on))
}

/// Monitor night S: publish `monitor` and `monitor_backtest`, write the night's page.
/// Returns the tables' summaries, the manifest's part and the worst status.
pub(super) fn monitor_night(
    ctx: &mut Context,
    inputs: &Inputs,
    night: monitor::Night,
) -> Result<(serde_json::Map<String, Value>, Value, monitor::Status)> {
    let s = ctx.stage.as_of;
    let settings = ctx.stage.settings.clone();
    let earlier_backtest = latest_before(&ctx.output, monitor::BACKTEST_TABLE, s)?;
    let mut links = Vec::new();
    for (name, file) in [
        ("models", "models.html"),
        ("interventions", "interventions.html"),
        ("grace", "grace.html"),
        ("experiment readouts", "readout.html"),
    ] {
        if ctx.output.exists(&format!("reports/snapshot={s}/{file}"))? {
            links.push((name.to_string(), file.to_string()));
        }
    }
    let out = ctx.timed("monitor", |c| {
        let earlier = |table: &str, d: NaiveDate, columns: &[&str]| -> Result<Option<DataFrame>> {
            let Some(lf) = c.output.scan_committed(table, d)? else { return Ok(None) };
            let df = lf.select(columns.iter().map(|n| col(*n)).collect::<Vec<_>>()).collect();
            Ok(Some(crate::error::PolarsContext::ctx(df, format!("reading table `{table}` of {d}"))?))
        };
        monitor::monitor(
            &c.input,
            inputs,
            s,
            settings.horizon_days,
            &settings.monitor,
            &night,
            &earlier,
            earlier_backtest,
            &links,
        )
    })?;
    let mut tables = serde_json::Map::new();
    for (name, df) in [(contract::MONITOR.name, &out.table), (monitor::BACKTEST_TABLE, &out.backtest)] {
        let c = ctx.publish(name, df)?;
        tables.insert(name.to_string(), table_summary(&c));
    }
    ctx.output.write_bytes(&monitor::report_path(s), out.html.clone().into_bytes().into())?;
    Ok((tables, out.report, out.worst))
}

/// The newest committed partition of `table` before snapshot `s`, if any.
fn latest_before(output: &Storage, table: &str, s: NaiveDate) -> Result<Option<DataFrame>> {
    let mut dates: Vec<NaiveDate> = output
        .list_dirs(table)?
        .iter()
        .filter_map(|d| NaiveDate::parse_from_str(d.strip_prefix("snapshot=")?, "%Y-%m-%d").ok())
        .filter(|d| *d < s)
        .collect();
    dates.sort();
    for d in dates.into_iter().rev() {
        if output.committed(table, d)?.is_some() {
            return Ok(Some(output.read_committed(table, d)?));
        }
    }
    Ok(None)
}

/// `--fail-on`: exit 3 when a check reached the level, after every output was written.
pub(super) fn fail_on(stage: &StageSettings, worst: monitor::Status, report: &Value) -> Result<()> {
    let level = match stage.settings.monitor.fail_on {
        FailOn::Never => return Ok(()),
        FailOn::Alert => monitor::Status::Alert,
        FailOn::Warn => monitor::Status::Warn,
    };
    if worst < level {
        return Ok(());
    }
    let listed: Vec<String> = report["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(report["warnings"].as_array().into_iter().flatten())
        .take(5)
        .map(|a| {
            format!(
                "{} {} {} = {}",
                a["check"].as_str().unwrap_or(""),
                a["subject"].as_str().unwrap_or(""),
                a["statistic"].as_str().unwrap_or(""),
                a["value"]
            )
        })
        .collect();
    Err(Error::Alerted(format!(
        "night {} has {} alert(s) and {} warning(s) (--fail-on {}): {}",
        stage.as_of,
        report["alert"],
        report["warn"],
        worst.name(),
        listed.join("; ")
    )))
}

/// `retain monitor`: the checks of night S over what the night's commands committed.
pub(crate) fn monitor_only(stage: StageSettings) -> Result<()> {
    refuse_shard(&stage, "monitor", "run it once after `retain commit`: it reads the night's committed tables")?;
    let mut ctx = Context::open(stage, 2)?;
    let s = ctx.stage.as_of;
    let settings = ctx.stage.settings.clone();
    let (first, lookback) = monitor::reads(s, settings.horizon_days, &settings.monitor);
    let lookback = lookback.reading(&settings.inputs);
    let inputs = ctx.timed("read inputs", |c| Inputs::load(&c.input, first, s, lookback))?;
    let committed = |table: &str| -> Result<Option<DataFrame>> {
        match ctx.output.committed(table, s)? {
            Some(_) => Ok(Some(ctx.output.read_committed(table, s)?)),
            None => Ok(None),
        }
    };
    let artifact = match train::load(&ctx.output, s) {
        Ok(a) => Some(a),
        Err(Error::Data(_)) => None,
        Err(e) => return Err(e),
    };
    let night = monitor::Night {
        features: committed("features")?,
        reference: match &artifact {
            Some(a) => reference_of(&ctx, a)?,
            None => None,
        },
        validation: artifact.as_ref().and_then(validation_of),
        scores: committed(contract::SCORES.name)?,
        interventions: committed(contract::INTERVENTIONS.name)?,
        grace: committed(contract::GRACE.name)?,
    };
    let (tables, report, worst) = monitor_night(&mut ctx, &inputs, night)?;
    ctx.write_manifest("monitor", Some(&inputs), Value::Object(tables), json!({ "monitor": report }))?;
    fail_on(&ctx.stage, worst, &report)
}
