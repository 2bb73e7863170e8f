//! A night of shards: each shard's candidates, the night's prices and quotas, each shard's
//! plan under its quotas, and the commit that publishes every shard's parts at once
//! (README, "Shards").

use chrono::NaiveDate;
use polars::prelude::*;
use serde_json::{Value, json};
use tracing::info;

use super::context::{Context, Reads, own_run_id};
use super::summary::{intervention_summary, table_summary};
use crate::config::{Settings, StageSettings};
use crate::error::{Error, Result};
use crate::models::ModelArtifact;
use crate::shard::Shard;
use crate::storage::Storage;
use crate::{contract, interventions, train};

/// The name the uplift models and tonight's targeting are saved under with the model artifact.
const INTERVENTIONS: &str = "interventions";
/// The table of a shard's candidates (its first phase of the interventions).
const CANDIDATES: &str = "intervention_candidates";

/// Save tonight's targeting with the models, for shards to plan with.
pub(super) fn attach_targeting(artifact: &mut ModelArtifact, targeting: &interventions::Targeting) -> Result<()> {
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
pub(crate) fn prices(settings: &Settings, s: NaiveDate, count: u32, run_id: Option<String>) -> Result<()> {
    let run_id = run_id.unwrap_or_else(own_run_id);
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
    let caps = settings.interventions.unsubscribe_cap.by_channel();
    // The summaries must carry the unsubscribes of exactly the channels this merge caps.
    let capped = caps.map(|c| c.is_some());
    let names = |mask: &[bool]| -> String {
        let on: Vec<&str> = contract::CHANNELS.iter().zip(mask).filter(|(_, on)| **on).map(|(c, _)| *c).collect();
        if on.is_empty() { "without caps".into() } else { format!("with caps on {}", on.join(", ")) }
    };
    for (index, summary) in summaries.iter().enumerate() {
        let made: Vec<bool> = if summary.capped.is_empty() { vec![false; 3] } else { summary.capped.clone() };
        if made != capped && !summary.cells.is_empty() {
            return Err(Error::config(format!(
                "the candidates of shard {} were made {}, but this configuration prices the night {}: run `retain \
                 candidates` for every shard again with this configuration",
                Shard { index: index as u32, count },
                names(&made),
                names(&capped)
            )));
        }
    }
    let priced = interventions::merge_prices(&summaries, &budgets, &caps);
    info!(
        prices = ?priced.prices,
        demand = ?priced.demand,
        unsubscribe_prices = ?priced.unsubscribe_prices,
        rounds = priced.rounds,
        cuts = priced.cuts,
        "channel prices"
    );
    let fields = json!({
        "channels": contract::CHANNELS,
        "prices": priced.prices,
        "demand": priced.demand,
        "budgets": priced.budgets,
        "quotas": priced.quotas,
        "unsubscribe_caps": priced.caps,
        "unsubscribe_prices": priced.unsubscribe_prices,
        "expected_unsubscribes": priced.expected_unsubscribes,
        "unsubscribe_quotas": priced.unsubscribe_quotas,
        "rounds": priced.rounds,
        "cuts": priced.cuts,
    });
    write_night_manifest(&output, "prices", s, count, &run_id, started, fields)
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
    run_id: &str,
    started: std::time::Instant,
    fields: Value,
) -> Result<()> {
    let mut manifest = json!({
        "command": command,
        "as_of": s,
        "shards": count,
        "run_id": run_id,
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
pub(super) fn interventions_of_shard(stage: StageSettings) -> Result<()> {
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
    let caps = unsubscribe_quotas(&priced, shard, &ctx.stage.interventions.unsubscribe_caps)
        .map_err(|why| Error::config(format!("{}/{rel}: {why}", ctx.output.uri())))?;
    let candidates = ctx.read_table(CANDIDATES)?;
    let scores = ctx.read_table(contract::SCORES.name)?;
    let targeting = load_targeting(&ctx)?;
    let inputs = ctx.load_inputs(Reads { history: false, grace: false, sample: false })?;
    // Under caps the shard plans from its features again (a user may move to a quieter
    // message at the cap's price), weighed as its candidates were.
    let features = caps.iter().any(Option::is_some).then(|| ctx.read_table("features")).transpose()?;
    let currencies = match &features {
        Some(_) if ctx.stage.interventions.value.value_months > 0.0 => Some(interventions::currencies(&inputs, s)?),
        _ => None,
    };
    let from = match &features {
        Some(features) => interventions::ShardPlan::Capped { features, currencies: currencies.as_ref(), caps },
        None => interventions::ShardPlan::Budgets { candidates: &candidates },
    };
    let (table, report) = ctx.timed("interventions", |c| {
        interventions::plan_shard(&inputs, s, &scores, from, &targeting, &quotas, &c.stage.interventions)
    })?;
    let c = ctx.publish(contract::INTERVENTIONS.name, &table)?;
    ctx.write_manifest(
        "interventions",
        Some(&inputs),
        json!({ "interventions": table_summary(&c) }),
        json!({ "interventions": report, "intervention_list": intervention_summary(&table)? }),
    )
}

/// Shard `shard`'s quotas of the unsubscribe caps in the night's prices (`priced`), which
/// must cap the channels this command's configuration caps (`caps`), with the same caps:
/// a shard planning under other caps than the merge split would break the night's.
fn unsubscribe_quotas(
    priced: &Value,
    shard: Shard,
    caps: &[Option<f64>; 3],
) -> std::result::Result<[Option<f64>; 3], String> {
    let priced_caps: Vec<Option<f64>> =
        serde_json::from_value(priced["unsubscribe_caps"].clone()).unwrap_or_else(|_| vec![None; 3]);
    let same = (0..3).all(|c| match (caps[c], priced_caps.get(c).copied().flatten()) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * (1.0 + a.abs()),
        _ => false,
    });
    if !same {
        return Err(format!(
            "the prices were made for unsubscribe caps {priced_caps:?} (push, email, in_app), this configuration \
             sets {caps:?}: run `retain prices` again with this configuration"
        ));
    }
    if caps.iter().all(Option::is_none) {
        return Ok([None; 3]);
    }
    let quotas: Vec<Option<f64>> = serde_json::from_value(priced["unsubscribe_quotas"][shard.index as usize].clone())
        .map_err(|e| format!("no unsubscribe quotas for shard {shard}: {e}"))?;
    Ok(std::array::from_fn(|c| quotas.get(c).copied().flatten()))
}

/// `retain commit`: publish the tables the `count` shards of night `s` wrote. Every table
/// some shard wrote must have all `count` shards' parts (checked for every table before
/// any is published: a missing shard publishes nothing); then each gets its `_SUCCESS`,
/// and the manifest `runs/snapshot=S/commit.json` is written last.
pub(crate) fn commit_shards(settings: &Settings, s: NaiveDate, count: u32, run_id: Option<String>) -> Result<()> {
    let run_id = run_id.unwrap_or_else(own_run_id);
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
        let meta = json!({ "run_id": run_id, "code_version": crate::version::code_version(), "shards": count });
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
        &run_id,
        started,
        json!({ "output": { "root": output.uri(), "tables": tables } }),
    )
}

/// The tables a shard writes, in the order `retain commit` publishes them.
const SHARDED_TABLES: &[&str] =
    &["features", contract::SCORES.name, contract::INTERVENTIONS.name, contract::GRACE.name, contract::QUARANTINE.name];
