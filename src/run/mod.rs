//! One night of the pipeline, and each stage on its own for orchestrators.
//!
//! `run` computes every output for snapshot S in memory, then publishes the tables (each
//! atomically, see `storage`) and writes the run manifest last: exit 0 and a manifest mean
//! every table for S is complete, and bad input stops the run before anything is written.
//! The single-stage commands read what earlier stages committed (`features` and the model
//! for `score`, `scores` for `interventions`) and write their own table and manifest.

use std::time::Instant;

use chrono::{NaiveDate, Utc};
use polars::prelude::*;
use serde_json::{Value, json};
use tracing::info;

use crate::config::{Settings, StageSettings};
use crate::error::Result;
use crate::inputs::{Inputs, Lookback};
use crate::models::ModelArtifact;
use crate::storage::Storage;
use crate::{contract, features, grace, interventions, score, train};

/// The code version written into every manifest.
pub fn code_version() -> String {
    match option_env!("RETAIN_GIT_SHA") {
        Some(sha) => format!("{} ({sha})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// What every stage gets: the snapshot, settings and the two storage roots.
pub struct Context {
    pub as_of: NaiveDate,
    /// Refit models even when the labelled data is unchanged.
    pub retrain: bool,
    pub settings: Settings,
    pub input: Storage,
    pub output: Storage,
    pub run_id: String,
    timings: Vec<(String, f64)>,
    started: Instant,
    bar: indicatif::ProgressBar,
}

/// What a command reads besides the inputs of S itself.
#[derive(Debug, Clone, Copy)]
pub struct Reads {
    /// The labelled snapshots of training and the campaign history.
    pub history: bool,
    /// The dunning episodes of the grace stage.
    pub grace: bool,
}

impl Context {
    /// Open the roots for a command of `steps` timed stages (for the progress bar).
    pub fn open(stage: StageSettings, steps: u64) -> Result<Self> {
        let opts = stage.settings.storage_options();
        let input = Storage::open(&stage.input, &opts, false)?;
        let output = Storage::open(&stage.output, &opts, true)?;
        let run_id = format!("{}-{}", Utc::now().format("%Y%m%dT%H%M%SZ"), std::process::id());
        Ok(Context {
            as_of: stage.as_of,
            retrain: stage.retrain,
            settings: stage.settings,
            input,
            output,
            run_id,
            timings: Vec::new(),
            started: Instant::now(),
            bar: crate::progress::bar(steps, "retain"),
        })
    }

    /// Time a stage for the manifest.
    pub fn timed<T>(&mut self, name: &str, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        let t = Instant::now();
        info!(stage = name, as_of = %self.as_of, "stage started");
        self.bar.set_message(name.to_string());
        let out = f(self)?;
        let secs = t.elapsed().as_secs_f64();
        self.bar.inc(1);
        info!(stage = name, seconds = secs, "stage finished");
        self.timings.push((name.to_string(), secs));
        Ok(out)
    }

    /// The first snapshot whose features a run needs: the oldest training snapshot, and
    /// the oldest campaign decision the uplift models learn from.
    fn first_snapshot(&self, with_history: bool) -> NaiveDate {
        if with_history {
            let t = &self.settings;
            let snapshots = crate::labels::training_snapshots(self.as_of, t.horizon_days, t.training.snapshots);
            let decisions =
                self.as_of - chrono::Duration::days(t.horizon_days as i64 + interventions::EFFECT_WINDOW_DAYS);
            snapshots.into_iter().min().unwrap_or(self.as_of).min(decisions)
        } else {
            self.as_of
        }
    }

    /// Read the inputs for S: with `reads.history` for the labelled snapshots the models
    /// learn from, with `reads.grace` as far back as the grace stage's episodes reach.
    pub fn load_inputs(&mut self, reads: Reads) -> Result<Inputs> {
        let first = self.first_snapshot(reads.history);
        let last = self.as_of;
        let input = self.input.clone();
        let mut lookback = Lookback::new(self.settings.horizon_days).with_late_days(self.settings.inputs.late_days);
        if reads.grace {
            lookback = grace::lookback(lookback, &self.settings.grace, first, last);
        }
        self.timed("read inputs", |_| Inputs::load(&input, first, last, lookback))
    }

    fn commit_meta(&self) -> Value {
        json!({ "run_id": self.run_id, "code_version": code_version() })
    }

    pub fn publish(&self, table: &str, df: &DataFrame) -> Result<crate::storage::Commit> {
        let commit = self.output.publish(table, self.as_of, df, self.commit_meta())?;
        info!(table, rows = commit.rows, files = commit.files.len(), "table committed");
        Ok(commit)
    }

    /// Write the run manifest: `runs/snapshot=S/<command>.json`, last.
    pub fn write_manifest(&self, command: &str, inputs: Option<&Inputs>, outputs: Value, extra: Value) -> Result<()> {
        let manifest = json!({
            "command": command,
            "as_of": self.as_of,
            "run_id": self.run_id,
            "code_version": code_version(),
            "finished_at": Utc::now().to_rfc3339(),
            "seconds": self.started.elapsed().as_secs_f64(),
            "stages": self.timings.iter().map(|(n, s)| json!({"stage": n, "seconds": s})).collect::<Vec<_>>(),
            "input": {
                "root": self.input.uri(),
                "files": inputs.map(|i| i.files.len()),
                "file_list": inputs.map(|i| i.files.clone()),
            },
            "output": { "root": self.output.uri(), "tables": outputs },
            "config": toml::from_str::<toml::Value>(&self.settings.to_redacted_toml()).ok(),
            "details": extra,
        });
        let rel = format!("runs/snapshot={}/{command}.json", self.as_of);
        self.output
            .write_bytes(&rel, serde_json::to_vec_pretty(&manifest).map_err(crate::error::Error::internal)?.into())?;
        crate::progress::finish(&self.bar);
        Ok(())
    }
}

fn table_summary(commit: &crate::storage::Commit) -> Value {
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
pub fn run_all(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 6)?;
    let inputs = ctx.load_inputs(Reads { history: true, grace: true })?;
    let night = compute_night(&mut ctx, &inputs)?;
    let mut tables = serde_json::Map::new();
    train::save(&ctx, &night.artifact)?;
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
    info!(as_of = %ctx.as_of, "run complete");
    Ok(())
}

fn compute_night(ctx: &mut Context, inputs: &Inputs) -> Result<Night> {
    let s = ctx.as_of;
    let features = ctx.timed("features", |_| features::build(inputs, s))?;
    let retrain = ctx.retrain;
    let artifact = ctx.timed("train", |c| train::train_or_reuse(c, inputs, retrain))?;
    let top_k = ctx.settings.training.top_reasons;
    let scores = ctx.timed("score", |_| score::score(&features, &artifact, top_k))?;
    let interventions =
        ctx.timed("interventions", |c| interventions::plan(inputs, s, &scores, &features, &artifact, &c.settings))?;
    let grace = ctx.timed("grace", |c| grace::recommend_all(inputs, s, &c.settings.grace))?;
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
pub fn features_only(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 2)?;
    let inputs = ctx.load_inputs(Reads { history: false, grace: false })?;
    let s = ctx.as_of;
    let df = ctx.timed("features", |_| features::build(&inputs, s))?;
    let c = ctx.publish("features", &df)?;
    ctx.write_manifest("features", Some(&inputs), json!({ "features": table_summary(&c) }), Value::Null)
}

/// `retain train`.
pub fn train_only(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 2)?;
    let inputs = ctx.load_inputs(Reads { history: true, grace: false })?;
    let retrain = ctx.retrain;
    let artifact = ctx.timed("train", |c| train::train_or_reuse(c, &inputs, retrain))?;
    train::save(&ctx, &artifact)?;
    ctx.write_manifest("train", Some(&inputs), json!({}), json!({ "model": artifact.summary() }))
}

/// `retain score`: needs the committed features and the model of S.
pub fn score_only(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 1)?;
    let s = ctx.as_of;
    let features = ctx.output.read_committed("features", s)?;
    let artifact = train::load(&ctx, s)?;
    let top_k = ctx.settings.training.top_reasons;
    let scores = ctx.timed("score", |_| score::score(&features, &artifact, top_k))?;
    let c = ctx.publish(contract::SCORES.name, &scores)?;
    ctx.write_manifest("score", None, json!({ "scores": table_summary(&c) }), Value::Null)
}

/// `retain interventions`: needs the committed features, scores and model of S.
pub fn interventions_only(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 2)?;
    let s = ctx.as_of;
    let features = ctx.output.read_committed("features", s)?;
    let scores = ctx.output.read_committed(contract::SCORES.name, s)?;
    let artifact = train::load(&ctx, s)?;
    let inputs = ctx.load_inputs(Reads { history: true, grace: false })?;
    let out =
        ctx.timed("interventions", |c| interventions::plan(&inputs, s, &scores, &features, &artifact, &c.settings))?;
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
pub fn grace_only(stage: StageSettings) -> Result<()> {
    let mut ctx = Context::open(stage, 2)?;
    let inputs = ctx.load_inputs(Reads { history: false, grace: true })?;
    let s = ctx.as_of;
    let out = ctx.timed("grace", |c| grace::recommend_all(&inputs, s, &c.settings.grace))?;
    let c = ctx.publish(contract::GRACE.name, &out.table)?;
    write_grace_report(&ctx, &out)?;
    ctx.write_manifest("grace", Some(&inputs), json!({ "grace": table_summary(&c) }), json!({ "grace": out.report }))
}

/// The interventions stage's HTML report, `reports/snapshot=S/interventions.html`.
fn write_interventions_report(ctx: &Context, out: &interventions::Outcome) -> Result<()> {
    ctx.output.write_bytes(&interventions::report_path(ctx.as_of), out.html.clone().into_bytes().into())
}

/// The grace stage's HTML report, `reports/snapshot=S/grace.html`, after its table.
fn write_grace_report(ctx: &Context, out: &grace::GraceOutput) -> Result<()> {
    ctx.output.write_bytes(&grace::report_path(ctx.as_of), out.html.clone().into_bytes().into())
}
