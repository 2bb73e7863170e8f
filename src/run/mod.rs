//! One night of the pipeline, and each stage on its own for orchestrators.
//!
//! `run` computes every output for snapshot S in memory, then publishes the tables (each
//! atomically, see `storage`) and writes the run manifest last: exit 0 and a manifest mean
//! every table for S is complete, and bad input stops the run before anything is written.
//! The single-stage commands read what earlier stages committed (`features` and the model
//! for `score`, `scores` for `interventions`) and write their own table and manifest.
//!
//! Here: `run` and the single-stage commands. Beside it, one job each: `context` (the
//! roots, inputs, timings and manifest every command shares), `watch` (the night's checks
//! and `--fail-on`), `shards` (candidates, prices, a shard's plan, the commit of a night of
//! shards), `summary` (what a manifest says of a published table).

mod context;
mod shards;
mod summary;
mod watch;

use chrono::NaiveDate;
use polars::prelude::*;
use serde_json::{Value, json};
use tracing::info;

use crate::config::StageSettings;
use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::models::ModelArtifact;
use crate::{contract, features, grace, interventions, monitor, readout, score, train};

pub use context::{Context, Reads};
pub(crate) use shards::{candidates_only, commit_shards, prices};
pub(crate) use watch::monitor_only;

use context::refuse_shard;
use shards::{attach_targeting, interventions_of_shard};
use summary::{intervention_summary, table_summary};
use watch::{fail_on, monitor_night, reference_of, validation_of};

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
        let plans = plans_of(&c.output, first, s)?;
        readout::read_out(&inputs, s, settings.horizon_days, &settings.readout, &scores_of, &plans)
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

/// The plans `retain` wrote under `output` whose messages a readout of `first`..=`s` can
/// hold (a plan of night D is sent on D + 1), by the run id that wrote each: the
/// `campaign_id` the messaging platform logs them back under (README, "Reading out
/// `retain`'s own plans").
fn plans_of(
    output: &crate::storage::Storage,
    first: NaiveDate,
    s: NaiveDate,
) -> Result<std::collections::BTreeMap<String, readout::Plan>> {
    let mut plans = std::collections::BTreeMap::new();
    let mut night = first - chrono::Duration::days(1);
    while night < s {
        if let Some(commit) = output.committed(contract::INTERVENTIONS.name, night)?
            && let Some(run_id) = commit.meta.get("run_id").and_then(Value::as_str)
        {
            let table = output.read_committed(contract::INTERVENTIONS.name, night)?;
            plans.insert(run_id.to_string(), readout::Plan { snapshot: night, table });
        }
        night += chrono::Duration::days(1);
    }
    Ok(plans)
}

/// The name the grace stage's learned models are saved under with the model artifact.
const GRACE: &str = "grace";

/// Save what the grace stage learned with the models, for shards to recommend with.
fn attach_grace(artifact: &mut ModelArtifact, learned: &grace::Learned) -> Result<()> {
    artifact.attach(GRACE, serde_json::to_vec(learned).map_err(Error::internal)?);
    Ok(())
}
