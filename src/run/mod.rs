//! One night of the pipeline, and each stage on its own for orchestrators.
//!
//! `run` computes every output for snapshot S in memory, then publishes the tables (each
//! atomically, see `storage`) and writes the run manifest last: exit 0 and a manifest mean
//! every table for S is complete, and bad input stops the run before anything is written.
//! The single-stage commands read what earlier stages committed (`features` and the model
//! for `score`, `scores` for `interventions`) and write their own table and manifest.

mod context;

use chrono::NaiveDate;
use polars::prelude::*;
use serde_json::{Value, json};
use tracing::info;

use crate::config::FailOn;
use crate::config::{Settings, StageSettings};
use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::models::ModelArtifact;
use crate::shard::Shard;
use crate::storage::{Commit, Storage};
use crate::{contract, features, grace, interventions, monitor, readout, score, train};

pub use context::{Context, Reads};

fn table_summary(commit: &Commit) -> Value {
    json!({ "rows": commit.rows, "files": commit.files.iter().map(|f| &f.name).collect::<Vec<_>>() })
}

/// Outputs of scoring and planning for one snapshot, before publication.
struct Night {
    features: DataFrame,
    artifact: ModelArtifact,
    scores: DataFrame,
    interventions: interventions::Outcome,
    grace: grace::GraceOutput,
}

/// The commands that fit models in the stage: with shards these would refit per shard,
/// which a night of shards never does (README, "Shards").
fn refuse_shard(stage: &StageSettings, command: &str, instead: &str) -> Result<()> {
    match stage.shard {
        Some(shard) => Err(Error::Usage(format!("`retain {command}` does not take --shard ({shard}): {instead}"))),
        None => Ok(()),
    }
}

/// `retain run`: the whole nightly pipeline.
pub(crate) fn run_all(stage: StageSettings) -> Result<()> {
    refuse_shard(
        &stage,
        "run",
        "a night of shards trains once (`retain train`), then runs per shard `features`, `score`, `grace` and \
         `candidates`, then `retain prices`, then per shard `interventions`, then `retain commit` (README, \
         \"Shards\")",
    )?;
    let mut ctx = Context::open(stage, 6)?;
    let inputs = ctx.load_inputs(Reads { history: true, grace: true, sample: false })?;
    let mut night = compute_night(&mut ctx, &inputs)?;
    let mut tables = serde_json::Map::new();
    attach_grace(&mut night.artifact, &night.grace.learned)?;
    attach_targeting(&mut night.artifact, &night.interventions.targeting)?;
    train::save(&ctx.output, ctx.stage.as_of, &mut night.artifact)?;
    for (name, df) in [
        ("features", &night.features),
        (contract::SCORES.name, &night.scores),
        (contract::INTERVENTIONS.name, &night.interventions.table),
        (contract::GRACE.name, &night.grace.table),
    ] {
        let c = ctx.publish(name, df)?;
        tables.insert(name.to_string(), table_summary(&c));
    }
    write_grace_report(&ctx, &night.grace)?;
    write_interventions_report(&ctx, &night.interventions)?;
    features::forget_kept_before(&inputs, inputs.first);
    let Night { features, artifact, scores, interventions, grace } = night;
    let watched = monitor::Night {
        reference: reference_of(&ctx, &artifact)?,
        validation: validation_of(&artifact),
        features: Some(features),
        scores: Some(scores),
        interventions: Some(interventions.table.clone()),
        grace: Some(grace.table.clone()),
    };
    let (monitor_tables, monitor_report, worst) = monitor_night(&mut ctx, &inputs, watched)?;
    tables.extend(monitor_tables);
    ctx.write_manifest(
        "run",
        Some(&inputs),
        Value::Object(tables),
        json!({
            "model": artifact.summary(),
            "grace": grace.report,
            "interventions": interventions.report,
            "intervention_list": intervention_summary(&interventions.table)?,
            "monitor": monitor_report,
        }),
    )?;
    info!(as_of = %ctx.stage.as_of, "run complete");
    fail_on(&ctx.stage, worst, &monitor_report)
}

/// The training snapshots' feature distributions saved with the model, and which snapshots.
fn reference_of(ctx: &Context, artifact: &ModelArtifact) -> Result<Option<(Vec<u8>, String)>> {
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
fn validation_of(artifact: &ModelArtifact) -> Option<(f64, NaiveDate)> {
    let champion = artifact.target(crate::models::Target::Churn).ok()?.champion().ok()?;
    champion.validation.auc.is_finite().then_some((champion.validation.auc, artifact.validated_on))
}

/// Monitor night S: publish `monitor` and `monitor_backtest`, write the night's page.
/// Returns the tables' summaries, the manifest's part and the worst status.
fn monitor_night(
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
fn fail_on(stage: &StageSettings, worst: monitor::Status, report: &Value) -> Result<()> {
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

fn compute_night(ctx: &mut Context, inputs: &Inputs) -> Result<Night> {
    let s = ctx.stage.as_of;
    let features = ctx.timed("features", |_| features::build(inputs, s))?;
    let mut artifact =
        ctx.timed("train", |c| train::train_or_reuse(inputs, s, &c.stage.train, &c.output, c.stage.retrain))?;
    let scores = ctx.timed("score", |c| score::score(&features, &artifact, &c.stage.score, false))?;
    // The night's decile boundaries, saved with the model for shards to score against.
    artifact.risk_deciles = Some(score::decile_boundaries_of_scores(&scores)?);
    let interventions = ctx.timed("interventions", |c| {
        interventions::plan(inputs, s, &scores, &features, &artifact, &c.stage.interventions)
    })?;
    let grace = ctx.timed("grace", |c| grace::recommend_all(inputs, s, &c.stage.grace))?;
    Ok(Night { features, artifact, scores, interventions, grace })
}

fn intervention_summary(df: &DataFrame) -> Result<Value> {
    use crate::error::PolarsContext;
    let by = df
        .clone()
        .lazy()
        .group_by([col("group"), col("channel"), col("action")])
        .agg([len().alias("users"), col("expected_uplift").sum().alias("expected_uplift")])
        .sort(["group", "channel", "action"], SortMultipleOptions::default())
        .collect()
        .ctx("summarising interventions")?;
    let mut rows = Vec::new();
    for i in 0..by.height() {
        let row = by.get_row(i).ctx("summary row")?;
        rows.push(json!(row.0.iter().map(|v| v.to_string()).collect::<Vec<_>>()));
    }
    Ok(json!({ "columns": ["group", "channel", "action", "users", "expected_uplift"], "rows": rows }))
}

/// `retain features`.
pub(crate) fn features_only(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 2)?;
    if ctx.shard_already_done(&["features"])? {
        return Ok(());
    }
    let inputs = ctx.load_inputs(Reads { history: false, grace: false, sample: false })?;
    let s = ctx.stage.as_of;
    let df = ctx.timed("features", |_| features::build(&inputs, s))?;
    let c = ctx.publish("features", &df)?;
    ctx.write_manifest("features", Some(&inputs), json!({ "features": table_summary(&c) }), Value::Null)
}

/// `retain train`.
pub(crate) fn train_only(stage: StageSettings) -> Result<()> {
    refuse_shard(&stage, "train", "the models are fitted once for every shard, on the sample `training` sets")?;
    let mut ctx = Context::open(stage, 5)?;
    let inputs = ctx.load_inputs(Reads { history: true, grace: true, sample: true })?;
    let s = ctx.stage.as_of;
    let mut artifact =
        ctx.timed("train", |c| train::train_or_reuse(&inputs, s, &c.stage.train, &c.output, c.stage.retrain))?;
    // What the shards need besides the models: the night's decile boundaries, the uplift
    // models with tonight's support cuts, and the grace hazards.
    let features = ctx.timed("features", |_| features::build(&inputs, s))?;
    artifact.risk_deciles = Some(score::decile_boundaries(&features, &artifact)?);
    let learning = ctx.timed("uplift models", |c| {
        interventions::learn_targeting(&inputs, s, &features, &artifact, &c.stage.interventions)
    })?;
    drop(features);
    attach_targeting(&mut artifact, &learning.targeting)?;
    drop(learning);
    let learned = ctx.timed("grace models", |c| grace::learn(&inputs, s, &c.stage.grace))?;
    attach_grace(&mut artifact, &learned)?;
    train::save(&ctx.output, s, &mut artifact)?;
    ctx.write_manifest("train", Some(&inputs), json!({}), json!({ "model": artifact.summary() }))
}

/// `retain score`: needs the committed features and the model of S.
pub(crate) fn score_only(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 1)?;
    if ctx.shard_already_done(&[contract::SCORES.name])? {
        return Ok(());
    }
    let s = ctx.stage.as_of;
    let features = ctx.read_table("features")?;
    let artifact = train::load(&ctx.output, s)?;
    let shard = ctx.stage.shard.is_some();
    let scores = ctx.timed("score", |c| score::score(&features, &artifact, &c.stage.score, shard))?;
    let c = ctx.publish(contract::SCORES.name, &scores)?;
    ctx.write_manifest("score", None, json!({ "scores": table_summary(&c) }), Value::Null)
}

/// `retain interventions`: needs the committed features, scores and model of S.
pub(crate) fn interventions_only(stage: StageSettings) -> Result<()> {
    if stage.shard.is_some() {
        return interventions_of_shard(stage);
    }
    let mut ctx = Context::open(stage, 2)?;
    let s = ctx.stage.as_of;
    let features = ctx.output.read_committed("features", s)?;
    let scores = ctx.output.read_committed(contract::SCORES.name, s)?;
    let artifact = train::load(&ctx.output, s)?;
    let inputs = ctx.load_inputs(Reads { history: true, grace: false, sample: false })?;
    let out = ctx.timed("interventions", |c| {
        interventions::plan(&inputs, s, &scores, &features, &artifact, &c.stage.interventions)
    })?;
    let c = ctx.publish(contract::INTERVENTIONS.name, &out.table)?;
    write_interventions_report(&ctx, &out)?;
    ctx.write_manifest(
        "interventions",
        Some(&inputs),
        json!({ "interventions": table_summary(&c) }),
        json!({ "interventions": out.report, "intervention_list": intervention_summary(&out.table)? }),
    )
}

/// The name the uplift models and tonight's targeting are saved under with the model artifact.
const INTERVENTIONS: &str = "interventions";
/// The table of a shard's candidates (its first phase of the interventions).
const CANDIDATES: &str = "intervention_candidates";

/// Save tonight's targeting with the models, for shards to plan with.
fn attach_targeting(artifact: &mut ModelArtifact, targeting: &interventions::Targeting) -> Result<()> {
    artifact.attach(INTERVENTIONS, serde_json::to_vec(targeting).map_err(Error::internal)?);
    Ok(())
}

fn load_targeting(ctx: &Context) -> Result<interventions::Targeting> {
    let s = ctx.stage.as_of;
    let artifact = train::load(&ctx.output, s)?;
    let bytes = train::attachment(&ctx.output, s, &artifact, INTERVENTIONS)?;
    interventions::Targeting::from_json(&bytes, s, &ctx.stage.interventions)
}

/// `retain candidates --shard K/N`: a shard's users' best arms per channel, kept for its
/// plan, and their summary (in the shard's marker) for `retain prices`.
pub(crate) fn candidates_only(stage: StageSettings) -> Result<()> {
    if stage.shard.is_none() {
        return Err(Error::Usage(
            "`retain candidates` is a shard's first phase of the interventions: give --shard K/N (one process plans \
             with `retain interventions`)"
                .into(),
        ));
    }
    let mut ctx = Context::open(stage, 1)?;
    if ctx.shard_already_done(&[CANDIDATES])? {
        return Ok(());
    }
    let features = ctx.read_table("features")?;
    let targeting = load_targeting(&ctx)?;
    // Prices weigh the value in their currencies: the shard's billing says which.
    let currencies = if ctx.stage.interventions.value.value_months > 0.0 {
        let inputs = ctx.load_inputs(Reads { history: false, grace: false, sample: false })?;
        Some(interventions::currencies(&inputs, ctx.stage.as_of)?)
    } else {
        None
    };
    let (table, summary) = ctx.timed("candidates", |c| {
        interventions::candidates(&features, &targeting, &c.stage.interventions, currencies.as_ref())
    })?;
    let summary = serde_json::to_value(&summary).map_err(Error::internal)?;
    let c = ctx.publish_with(CANDIDATES, &table, json!({ "summary": summary }))?;
    ctx.write_manifest("candidates", None, json!({ CANDIDATES: table_summary(&c) }), Value::Null)
}

/// `retain prices`: the channel prices and each shard's quotas for night `s` of `count`
/// shards, from every shard's candidate summary, in `runs/snapshot=S/prices.json`.
pub(crate) fn prices(settings: &Settings, s: NaiveDate, count: u32) -> Result<()> {
    if count == 0 {
        return Err(Error::Usage("--shards must be at least 1".into()));
    }
    let started = std::time::Instant::now();
    let output = Storage::open(&settings.output_root()?, &settings.storage_options(), true)?;
    let (mut summaries, mut missing) = (Vec::new(), Vec::new());
    for index in 0..count {
        let shard = Shard { index, count };
        match output.shard_committed(CANDIDATES, s, shard)? {
            Some(c) => summaries.push(
                serde_json::from_value::<interventions::Summary>(c.meta.get("summary").cloned().unwrap_or_default())
                    .map_err(|e| {
                        Error::data(format!("the candidates of shard {shard} have no readable summary: {e}"))
                    })?,
            ),
            None => missing.push(shard.to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(Error::data(format!(
            "night {s} under {}: no candidates from shard(s) {}: run `retain candidates` for them first",
            output.uri(),
            missing.join(", ")
        )));
    }
    let budgets = settings.interventions.budget.by_channel();
    let priced = interventions::merge_budgets(&summaries, &budgets);
    info!(prices = ?priced.prices, demand = ?priced.demand, rounds = priced.rounds, "channel prices");
    let fields = json!({
        "channels": contract::CHANNELS,
        "prices": priced.prices,
        "demand": priced.demand,
        "budgets": priced.budgets,
        "quotas": priced.quotas,
        "rounds": priced.rounds,
    });
    write_night_manifest(&output, "prices", s, count, started, fields)
}

fn prices_path(s: NaiveDate) -> String {
    format!("runs/snapshot={s}/prices.json")
}

/// The manifest of a step of the whole night of `count` shards (`prices`, `commit`):
/// `runs/snapshot=S/<command>.json`, with what it cost and `fields`.
fn write_night_manifest(
    output: &Storage,
    command: &str,
    s: NaiveDate,
    count: u32,
    started: std::time::Instant,
    fields: Value,
) -> Result<()> {
    let mut manifest = json!({
        "command": command,
        "as_of": s,
        "shards": count,
        "code_version": crate::version::code_version(),
        "finished_at": chrono::Utc::now().to_rfc3339(),
        "seconds": started.elapsed().as_secs_f64(),
        "cpu_seconds": crate::resources::cpu_seconds(),
        "peak_rss_bytes": crate::resources::process_peak_rss_bytes(),
    });
    if let (Some(m), Value::Object(fields)) = (manifest.as_object_mut(), fields) {
        m.extend(fields);
    }
    let body = serde_json::to_vec_pretty(&manifest).map_err(Error::internal)?;
    output.write_bytes(&format!("runs/snapshot={s}/{command}.json"), body.into())
}

/// `retain interventions --shard K/N`: the shard's plan under its quotas of the night's
/// prices (`retain prices`), from its candidates.
fn interventions_of_shard(stage: StageSettings) -> Result<()> {
    let shard = stage.shard.expect("called with a shard");
    let mut ctx = Context::open(stage, 2)?;
    if ctx.shard_already_done(&[contract::INTERVENTIONS.name])? {
        return Ok(());
    }
    let s = ctx.stage.as_of;
    let rel = prices_path(s);
    if !ctx.output.exists(&rel)? {
        return Err(Error::data(format!(
            "no prices for night {s} under {} ({rel}): run `retain prices --shards {}` first",
            ctx.output.uri(),
            shard.count
        )));
    }
    let priced: Value = serde_json::from_slice(&ctx.output.read_bytes(&rel)?)
        .map_err(|e| Error::data(format!("{}/{rel} is not readable: {e}", ctx.output.uri())))?;
    if priced["shards"].as_u64() != Some(u64::from(shard.count)) {
        return Err(Error::data(format!(
            "{}/{rel} prices a night of {} shards, not {}: run `retain prices --shards {}` again",
            ctx.output.uri(),
            priced["shards"],
            shard.count,
            shard.count
        )));
    }
    let quotas: Vec<u64> = serde_json::from_value(priced["quotas"][shard.index as usize].clone())
        .map_err(|e| Error::data(format!("{}/{rel}: no quotas for shard {shard}: {e}", ctx.output.uri())))?;
    let candidates = ctx.read_table(CANDIDATES)?;
    let scores = ctx.read_table(contract::SCORES.name)?;
    let targeting = load_targeting(&ctx)?;
    let inputs = ctx.load_inputs(Reads { history: false, grace: false, sample: false })?;
    let (table, report) = ctx.timed("interventions", |c| {
        interventions::plan_shard(&inputs, s, &scores, &candidates, &targeting, &quotas, &c.stage.interventions)
    })?;
    let c = ctx.publish(contract::INTERVENTIONS.name, &table)?;
    ctx.write_manifest(
        "interventions",
        Some(&inputs),
        json!({ "interventions": table_summary(&c) }),
        json!({ "interventions": report, "intervention_list": intervention_summary(&table)? }),
    )
}

/// `retain grace`.
pub(crate) fn grace_only(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 2)?;
    if ctx.shard_already_done(&[contract::GRACE.name])? {
        return Ok(());
    }
    let s = ctx.stage.as_of;
    // A shard recommends with what `retain train` learned from everyone; one process learns.
    let learned = match ctx.stage.shard {
        Some(_) => {
            let artifact = train::load(&ctx.output, s)?;
            Some(grace::Learned::from_json(&train::attachment(&ctx.output, s, &artifact, GRACE)?, s, &ctx.stage.grace)?)
        }
        None => None,
    };
    let inputs = ctx.load_inputs(Reads { history: false, grace: true, sample: false })?;
    let out = ctx.timed("grace", |c| match learned {
        Some(learned) => grace::recommend(&inputs, s, &c.stage.grace, learned),
        None => grace::recommend_all(&inputs, s, &c.stage.grace),
    })?;
    let c = ctx.publish(contract::GRACE.name, &out.table)?;
    write_grace_report(&ctx, &out)?;
    ctx.write_manifest("grace", Some(&inputs), json!({ "grace": table_summary(&c) }), json!({ "grace": out.report }))
}

/// The interventions stage's HTML report, `reports/snapshot=S/interventions.html`.
fn write_interventions_report(ctx: &Context, out: &interventions::Outcome) -> Result<()> {
    ctx.output.write_bytes(&interventions::report_path(ctx.stage.as_of), out.html.clone().into_bytes().into())
}

/// The grace stage's HTML report, `reports/snapshot=S/grace.html` (a shard's:
/// `grace.shard-K-of-N.html`), after its table.
fn write_grace_report(ctx: &Context, out: &grace::GraceOutput) -> Result<()> {
    let path = grace::report_path(ctx.stage.as_of);
    let path = match ctx.stage.shard {
        Some(shard) => path.replace(".html", &format!(".shard-{}.html", shard.label())),
        None => path,
    };
    ctx.output.write_bytes(&path, out.html.clone().into_bytes().into())
}

/// `retain readout --plan-metric M --plan-effect X --plan-weeks W`, as given.
#[derive(Debug, Clone)]
pub struct PlanAsk {
    pub metric: String,
    pub effect: f64,
    pub weeks: u32,
}

/// `retain readout`: every campaign of the last `readout.weeks` weeks read out at S
/// (`readouts`, `readout_arms`, `readout_segments`, `reports/snapshot=S/readout.html`); with
/// a plan, the holdout each arm needs, printed and kept in the manifest.
pub(crate) fn readout_only(stage: StageSettings, plan: Option<PlanAsk>) -> Result<()> {
    let plan = plan
        .map(|p| {
            let metric = readout::Metric::from_name(&p.metric).ok_or_else(|| {
                Error::Usage(format!(
                    "--plan-metric `{}` is not a metric ({})",
                    p.metric,
                    crate::config::READOUT_METRICS.join(", ")
                ))
            })?;
            if p.weeks == 0 || !(p.effect.is_finite() && p.effect != 0.0) {
                return Err(Error::Usage("--plan-effect must be a non-zero number and --plan-weeks at least 1".into()));
            }
            Ok(readout::PlanRequest { metric, effect: p.effect, weeks: p.weeks })
        })
        .transpose()?;
    let mut ctx = Context::open(stage, 2)?;
    let s = ctx.stage.as_of;
    let settings = ctx.stage.settings.clone();
    let (first, lookback) = readout::reads(s, settings.horizon_days, &settings.readout);
    let lookback = lookback.reading(&settings.inputs);
    let inputs = ctx.timed("read inputs", |c| Inputs::load(&c.input, first, s, lookback))?;
    let out = ctx.timed("readout", |c| {
        let scores_of = |d: NaiveDate| -> Result<Option<DataFrame>> {
            match c.output.committed(contract::SCORES.name, d)? {
                Some(_) => Ok(Some(c.output.read_committed(contract::SCORES.name, d)?)),
                None => Ok(None),
            }
        };
        readout::read_out(&inputs, s, settings.horizon_days, &settings.readout, &scores_of)
    })?;
    let mut tables = serde_json::Map::new();
    for (name, df) in [
        (contract::READOUTS.name, &out.table),
        (readout::ARMS_TABLE, &out.arms),
        (readout::SEGMENTS_TABLE, &out.segments),
    ] {
        let c = ctx.publish(name, df)?;
        tables.insert(name.to_string(), table_summary(&c));
    }
    ctx.output.write_bytes(&readout::report_path(s), out.html.clone().into_bytes().into())?;
    let planned = plan.map(|p| out.plan(&p, &settings.readout, settings.interventions.budget.by_channel()));
    if let Some(rows) = &planned {
        println!("message_type\tchannel\tmetric\tweekly_decisions\tholdout_share\tmde_now\tholdout_needed");
        for r in rows {
            let needed = r.holdout_needed.map_or("not reachable".to_string(), |f| format!("{f:.4}"));
            println!(
                "{}\t{}\t{}\t{:.0}\t{:.3}\t{:.5}\t{needed}",
                r.message_type, r.channel, r.metric, r.weekly_decisions, r.holdout_share, r.mde_now
            );
        }
    }
    ctx.write_manifest(
        "readout",
        Some(&inputs),
        Value::Object(tables),
        json!({ "readout": out.report, "plan": planned }),
    )
}

/// The name the grace stage's learned models are saved under with the model artifact.
const GRACE: &str = "grace";

/// Save what the grace stage learned with the models, for shards to recommend with.
fn attach_grace(artifact: &mut ModelArtifact, learned: &grace::Learned) -> Result<()> {
    artifact.attach(GRACE, serde_json::to_vec(learned).map_err(Error::internal)?);
    Ok(())
}

/// `retain commit`: publish the tables the `count` shards of night `s` wrote. Every table
/// some shard wrote must have all `count` shards' parts (checked for every table before
/// any is published: a missing shard publishes nothing); then each gets its `_SUCCESS`,
/// and the manifest `runs/snapshot=S/commit.json` is written last.
pub(crate) fn commit_shards(settings: &Settings, s: NaiveDate, count: u32) -> Result<()> {
    if count == 0 {
        return Err(Error::Usage("--shards must be at least 1".into()));
    }
    let output = Storage::open(&settings.output_root()?, &settings.storage_options(), true)?;
    let started = std::time::Instant::now();
    let mut written = Vec::new();
    for table in SHARDED_TABLES {
        let dir = format!("{table}/snapshot={s}");
        let suffix = format!("-of-{count}");
        let markers = output
            .list_files(&dir)?
            .iter()
            .filter(|f| f.rel.rsplit('/').next().is_some_and(|n| n.starts_with("_SHARD-") && n.ends_with(&suffix)))
            .count();
        if markers > 0 {
            written.push(*table);
        }
    }
    if written.is_empty() {
        return Err(Error::data(format!(
            "no table of snapshot {s} under {} has shard parts of {count} shards: nothing to commit",
            output.uri()
        )));
    }
    let mut missing = Vec::new();
    for table in &written {
        for index in 0..count {
            let shard = Shard { index, count };
            if output.shard_committed(table, s, shard)?.is_none() {
                missing.push(format!("{table}: shard {shard}"));
            }
        }
    }
    if !missing.is_empty() {
        return Err(Error::data(format!(
            "night {s} under {} is not complete, nothing was published; rerun these shards, then commit again: {}",
            output.uri(),
            missing.join("; ")
        )));
    }
    let mut tables = serde_json::Map::new();
    for table in written {
        let meta = json!({ "code_version": crate::version::code_version(), "shards": count });
        let c = if table == contract::INTERVENTIONS.name {
            // One priority order over the whole night: the table is rewritten, ranked.
            let mut parts = Vec::new();
            for index in 0..count {
                parts.push(output.read_shard(table, s, Shard { index, count })?.lazy());
            }
            let all = concat(parts, UnionArgs::default()).and_then(|lf| lf.collect());
            let all = crate::error::PolarsContext::ctx(all, "reading the shards' interventions")?;
            output.publish_over_shards(table, s, count, &interventions::rank_night(all)?, meta)?
        } else {
            output.commit_shards(table, s, count, meta)?
        };
        info!(table, rows = c.rows, files = c.files.len(), shards = count, "table committed");
        tables.insert(table.to_string(), table_summary(&c));
    }
    write_night_manifest(
        &output,
        "commit",
        s,
        count,
        started,
        json!({ "output": { "root": output.uri(), "tables": tables } }),
    )
}

/// The tables a shard writes, in the order `retain commit` publishes them.
const SHARDED_TABLES: &[&str] =
    &["features", contract::SCORES.name, contract::INTERVENTIONS.name, contract::GRACE.name, contract::QUARANTINE.name];
