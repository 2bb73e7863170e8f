//! One night of the pipeline, and each stage on its own for orchestrators.
//!
//! `run` computes every output for snapshot S in memory, then publishes the tables (each
//! atomically, see `storage`) and writes the run manifest last: exit 0 and a manifest mean
//! every table for S is complete, and bad input stops the run before anything is written.
//! The single-stage commands read what earlier stages committed (`features` and the model
//! for `score`, `scores` for `interventions`) and write their own table and manifest.

mod context;

use polars::prelude::*;
use serde_json::{Value, json};
use tracing::info;

use crate::config::StageSettings;
use crate::error::Result;
use crate::inputs::Inputs;
use crate::models::ModelArtifact;
use crate::storage::Commit;
use crate::{contract, features, grace, interventions, score, train};

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

/// `retain run`: the whole nightly pipeline.
pub(crate) fn run_all(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 6)?;
    let inputs = ctx.load_inputs(Reads { history: true, grace: true })?;
    let mut night = compute_night(&mut ctx, &inputs)?;
    let mut tables = serde_json::Map::new();
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
    ctx.write_manifest(
        "run",
        Some(&inputs),
        Value::Object(tables),
        json!({
            "model": night.artifact.summary(),
            "grace": night.grace.report,
            "interventions": night.interventions.report,
            "intervention_list": intervention_summary(&night.interventions.table)?,
        }),
    )?;
    info!(as_of = %ctx.stage.as_of, "run complete");
    Ok(())
}

fn compute_night(ctx: &mut Context, inputs: &Inputs) -> Result<Night> {
    let s = ctx.stage.as_of;
    let features = ctx.timed("features", |_| features::build(inputs, s))?;
    let artifact =
        ctx.timed("train", |c| train::train_or_reuse(inputs, s, &c.stage.train, &c.output, c.stage.retrain))?;
    let scores = ctx.timed("score", |c| score::score(&features, &artifact, &c.stage.score))?;
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
    let inputs = ctx.load_inputs(Reads { history: false, grace: false })?;
    let s = ctx.stage.as_of;
    let df = ctx.timed("features", |_| features::build(&inputs, s))?;
    let c = ctx.publish("features", &df)?;
    ctx.write_manifest("features", Some(&inputs), json!({ "features": table_summary(&c) }), Value::Null)
}

/// `retain train`.
pub(crate) fn train_only(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 2)?;
    let inputs = ctx.load_inputs(Reads { history: true, grace: false })?;
    let s = ctx.stage.as_of;
    let mut artifact =
        ctx.timed("train", |c| train::train_or_reuse(&inputs, s, &c.stage.train, &c.output, c.stage.retrain))?;
    train::save(&ctx.output, s, &mut artifact)?;
    ctx.write_manifest("train", Some(&inputs), json!({}), json!({ "model": artifact.summary() }))
}

/// `retain score`: needs the committed features and the model of S.
pub(crate) fn score_only(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 1)?;
    let s = ctx.stage.as_of;
    let features = ctx.output.read_committed("features", s)?;
    let artifact = train::load(&ctx.output, s)?;
    let scores = ctx.timed("score", |c| score::score(&features, &artifact, &c.stage.score))?;
    let c = ctx.publish(contract::SCORES.name, &scores)?;
    ctx.write_manifest("score", None, json!({ "scores": table_summary(&c) }), Value::Null)
}

/// `retain interventions`: needs the committed features, scores and model of S.
pub(crate) fn interventions_only(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 2)?;
    let s = ctx.stage.as_of;
    let features = ctx.output.read_committed("features", s)?;
    let scores = ctx.output.read_committed(contract::SCORES.name, s)?;
    let artifact = train::load(&ctx.output, s)?;
    let inputs = ctx.load_inputs(Reads { history: true, grace: false })?;
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

/// `retain grace`.
pub(crate) fn grace_only(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 2)?;
    let inputs = ctx.load_inputs(Reads { history: false, grace: true })?;
    let s = ctx.stage.as_of;
    let out = ctx.timed("grace", |c| grace::recommend_all(&inputs, s, &c.stage.grace))?;
    let c = ctx.publish(contract::GRACE.name, &out.table)?;
    write_grace_report(&ctx, &out)?;
    ctx.write_manifest("grace", Some(&inputs), json!({ "grace": table_summary(&c) }), json!({ "grace": out.report }))
}

/// The interventions stage's HTML report, `reports/snapshot=S/interventions.html`.
fn write_interventions_report(ctx: &Context, out: &interventions::Outcome) -> Result<()> {
    ctx.output.write_bytes(&interventions::report_path(ctx.stage.as_of), out.html.clone().into_bytes().into())
}

/// The grace stage's HTML report, `reports/snapshot=S/grace.html`, after its table.
fn write_grace_report(ctx: &Context, out: &grace::GraceOutput) -> Result<()> {
    ctx.output.write_bytes(&grace::report_path(ctx.stage.as_of), out.html.clone().into_bytes().into())
}
