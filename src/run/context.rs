//! What every command of a night shares: the snapshot, its resolved settings, the two
//! storage roots, the run id, what each stage cost (wall and CPU seconds, peak memory), the
//! progress bar, and the manifest written last.

use std::time::Instant;

use chrono::{NaiveDate, Utc};
use polars::prelude::*;
use serde_json::{Value, json};
use tracing::info;

use crate::config::StageSettings;
use crate::contract;
use crate::error::{Error, PolarsContext, Result};
use crate::inputs::{EFFECT_WINDOW_DAYS, Inputs, Lookback, SetAside, UserSubset, date_lit};
use crate::resources::{self, RssSampler};
use crate::storage::{Commit, Storage};
use crate::version::code_version;
use crate::{grace, labels};

/// What every stage of a command gets: the snapshot, settings and the two storage roots.
pub struct Context {
    /// The resolved settings (the snapshot `stage.as_of` among them), each stage's section among them.
    pub stage: StageSettings,
    pub input: Storage,
    pub output: Storage,
    pub run_id: String,
    costs: Vec<StageCost>,
    started: Instant,
    cpu_at_start: f64,
    rss: RssSampler,
    bar: indicatif::ProgressBar,
}

/// What one stage cost, for the manifest.
struct StageCost {
    stage: String,
    seconds: f64,
    cpu_seconds: f64,
    /// The largest resident set sampled during the stage.
    peak_rss_bytes: Option<u64>,
}

/// What a command reads besides the inputs of S itself.
#[derive(Debug, Clone, Copy)]
pub struct Reads {
    /// The labelled snapshots of training and the campaign history.
    pub history: bool,
    /// The dunning episodes of the grace stage.
    pub grace: bool,
    /// Only the users of `training.sample_users` (`retain train`), when set.
    pub sample: bool,
}

impl Context {
    /// Open the roots for a command of `steps` timed stages (for the progress bar).
    pub fn open(stage: StageSettings, steps: u64) -> Result<Self> {
        let opts = stage.settings.storage_options();
        let input = Storage::open(&stage.input, &opts, false)?;
        let output = Storage::open(&stage.output, &opts, true)?;
        let run_id = stage.run_id.clone().unwrap_or_else(own_run_id);
        Ok(Context {
            stage,
            input,
            output,
            run_id,
            costs: Vec::new(),
            started: Instant::now(),
            cpu_at_start: resources::cpu_seconds(),
            rss: RssSampler::start(),
            bar: crate::progress::bar(steps, "retain"),
        })
    }

    /// Run a stage, recording its wall and CPU seconds and peak memory for the manifest.
    pub fn timed<T>(&mut self, name: &str, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        let (t, cpu) = (Instant::now(), resources::cpu_seconds());
        self.rss.mark();
        info!(stage = name, as_of = %self.stage.as_of, "stage started");
        self.bar.set_message(name.to_string());
        let out = f(self)?;
        let cost = StageCost {
            stage: name.to_string(),
            seconds: t.elapsed().as_secs_f64(),
            cpu_seconds: resources::cpu_seconds() - cpu,
            peak_rss_bytes: self.rss.peak(),
        };
        self.bar.inc(1);
        info!(
            stage = name,
            seconds = cost.seconds,
            cpu_seconds = cost.cpu_seconds,
            peak_rss_mb = cost.peak_rss_bytes.map(|b| b >> 20),
            "stage finished"
        );
        self.costs.push(cost);
        Ok(out)
    }

    /// The first snapshot whose features a run needs: the oldest training snapshot, and
    /// the oldest campaign decision the uplift models learn from.
    fn first_snapshot(&self, with_history: bool) -> NaiveDate {
        if with_history {
            let t = &self.stage.settings;
            let snapshots = labels::training_snapshots(self.stage.as_of, t.horizon_days, t.training.snapshots);
            let decisions = self.stage.as_of - chrono::Duration::days(t.horizon_days as i64 + EFFECT_WINDOW_DAYS);
            snapshots.into_iter().min().unwrap_or(self.stage.as_of).min(decisions)
        } else {
            self.stage.as_of
        }
    }

    /// Read the inputs for S: with `reads.history` for the labelled snapshots the models
    /// learn from, with `reads.grace` as far back as the grace stage's episodes reach.
    pub fn load_inputs(&mut self, reads: Reads) -> Result<Inputs> {
        let first = self.first_snapshot(reads.history);
        let last = self.stage.as_of;
        let input = self.input.clone();
        let settings = &self.stage.settings;
        let mut lookback = Lookback::new(settings.horizon_days).reading(&settings.inputs);
        if reads.grace {
            lookback = grace::lookback(lookback, &self.stage.grace, first, last);
        }
        let store = settings.features.store.then(|| self.output.clone());
        let subset = match self.stage.shard {
            Some(shard) => Some(UserSubset::Shard { shard, exported: settings.input_is_per_shard() }),
            None if reads.sample && settings.training.sample_users > 0 => {
                Some(UserSubset::Sample(settings.training.sample_users))
            }
            None => None,
        };
        self.timed("read inputs", |_| {
            let inputs = Inputs::load_users(&input, first, last, lookback, subset)?;
            Ok(match store {
                Some(root) => inputs.with_feature_store(root, subset),
                None => inputs,
            })
        })
    }

    fn commit_meta(&self) -> Value {
        match self.stage.shard {
            None => json!({ "run_id": self.run_id, "code_version": code_version() }),
            Some(shard) => json!({
                "run_id": self.run_id,
                "code_version": code_version(),
                "shard": shard.to_string(),
                "settings": self.settings_hash(),
            }),
        }
    }

    /// A hash of the resolved settings: a shard's parts made with other settings are redone.
    fn settings_hash(&self) -> String {
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(self.stage.settings.to_redacted_toml().as_bytes()))
    }

    /// Commit table `table` of snapshot S (atomically, see `storage`); with a shard, write
    /// the shard's parts, which `retain commit` publishes with the other shards'.
    pub fn publish(&self, table: &str, df: &DataFrame) -> Result<Commit> {
        self.publish_with(table, df, Value::Null)
    }

    /// [`Context::publish`] with `extra` keys in the commit marker's `meta`.
    pub fn publish_with(&self, table: &str, df: &DataFrame, extra: Value) -> Result<Commit> {
        let (s, mut meta) = (self.stage.as_of, self.commit_meta());
        if let (Some(meta), Value::Object(extra)) = (meta.as_object_mut(), extra) {
            meta.extend(extra);
        }
        let commit = match self.stage.shard {
            Some(shard) => self.output.publish_shard(table, s, shard, df, meta)?,
            None => self.output.publish(table, s, df, meta)?,
        };
        info!(
            table,
            rows = commit.rows,
            files = commit.files.len(),
            shard = self.stage.shard.map(|s| s.to_string()),
            "table written"
        );
        Ok(commit)
    }

    /// Table `table` of snapshot S as an earlier command wrote it: the committed table,
    /// or with a shard, that shard's part.
    pub fn read_table(&self, table: &str) -> Result<DataFrame> {
        match self.stage.shard {
            Some(shard) => self.output.read_shard(table, self.stage.as_of, shard),
            None => self.output.read_committed(table, self.stage.as_of),
        }
    }

    /// Whether this command's shard already wrote every table of `tables` with this code
    /// version and these settings (and `--force` was not given): a rerun of a night's
    /// failed shards then redoes only those. Always false without a shard.
    pub fn shard_already_done(&self, tables: &[&str]) -> Result<bool> {
        let Some(shard) = self.stage.shard else { return Ok(false) };
        if self.stage.force {
            return Ok(false);
        }
        let (version, settings) = (code_version(), self.settings_hash());
        for table in tables {
            let Some(c) = self.output.shard_committed(table, self.stage.as_of, shard)? else { return Ok(false) };
            let same = c.meta.get("code_version").and_then(Value::as_str) == Some(version.as_str())
                && c.meta.get("settings").and_then(Value::as_str) == Some(settings.as_str());
            if !same {
                return Ok(false);
            }
        }
        info!(shard = %shard, tables = ?tables, "this shard's tables are already written: nothing to do (--force redoes them)");
        crate::progress::finish(&self.bar);
        Ok(true)
    }

    /// Commit the rows the inputs set aside for breaking the contract (`quarantine/`,
    /// empty when none was), and say per table how many, for which rules.
    fn publish_quarantine(&self, aside: &[SetAside]) -> Result<(Commit, Value)> {
        let s = self.stage.as_of;
        let mut parts = vec![DataFrame::empty_with_schema(&contract::QUARANTINE.schema()).lazy()];
        parts.extend(aside.iter().map(|a| a.rows.clone().lazy().with_column(date_lit(s).alias("snapshot_date"))));
        let columns: Vec<Expr> = contract::QUARANTINE.columns.iter().map(|c| col(c.name)).collect();
        let rows = concat(parts, UnionArgs::default())
            .and_then(|lf| lf.select(columns).collect())
            .ctx("the rows set aside")?;
        let commit = self.publish(contract::QUARANTINE.name, &rows)?;
        Ok((commit, quarantine_summary(aside, &self.stage)?))
    }

    /// Write the run manifest: `runs/snapshot=S/<command>.json`, last (after the rows the
    /// inputs set aside, when `inputs.quarantine_share` allows that: committed by the
    /// commands that make the night's tables; `monitor` and `readout`, which read a night
    /// others made, only count theirs).
    pub fn write_manifest(&self, command: &str, inputs: Option<&Inputs>, outputs: Value, extra: Value) -> Result<()> {
        let mut outputs = outputs;
        let aside = inputs.and_then(|i| i.set_aside.as_deref());
        let quarantine = match aside {
            Some(aside) if QUARANTINE_READERS.contains(&command) => Some(quarantine_summary(aside, &self.stage)?),
            Some(aside) => {
                let (commit, summary) = self.publish_quarantine(aside)?;
                if let Value::Object(tables) = &mut outputs {
                    tables.insert(
                        contract::QUARANTINE.name.into(),
                        json!({ "rows": commit.rows, "files": commit.files.iter().map(|f| &f.name).collect::<Vec<_>>() }),
                    );
                }
                Some(summary)
            }
            None => None,
        };
        let manifest = json!({
            "command": command,
            "as_of": self.stage.as_of,
            "run_id": self.run_id,
            "shard": self.stage.shard.map(|s| s.to_string()),
            "code_version": code_version(),
            "finished_at": Utc::now().to_rfc3339(),
            "seconds": self.started.elapsed().as_secs_f64(),
            "cpu_seconds": resources::cpu_seconds() - self.cpu_at_start,
            // The kernel's high-water mark can miss memory returned with madvise; the
            // stages' sampled peaks can miss a short spike: the larger of the two.
            "peak_rss_bytes": self.costs.iter().filter_map(|c| c.peak_rss_bytes)
                .chain(resources::process_peak_rss_bytes()).max(),
            "stages": self.costs.iter().map(|c| json!({
                "stage": c.stage,
                "seconds": c.seconds,
                "cpu_seconds": c.cpu_seconds,
                "peak_rss_bytes": c.peak_rss_bytes,
            })).collect::<Vec<_>>(),
            "input": {
                "root": self.input.uri(),
                "files": inputs.map(|i| i.files.len()),
                "file_list": inputs.map(|i| i.files.clone()),
            },
            // Per snapshot whose features were built: what the feature store gave.
            "feature_store": inputs.map(|i| i.feature_store_log()),
            // Input rows set aside for breaking the contract (`inputs.quarantine_share`).
            "quarantine": quarantine,
            "output": { "root": self.output.uri(), "tables": outputs },
            "config": toml::from_str::<toml::Value>(&self.stage.settings.to_redacted_toml()).ok(),
            "details": extra,
        });
        let rel = match self.stage.shard {
            Some(shard) => format!("runs/snapshot={}/{command}.shard-{}.json", self.stage.as_of, shard.label()),
            None => format!("runs/snapshot={}/{command}.json", self.stage.as_of),
        };
        self.output
            .write_bytes(&rel, serde_json::to_vec_pretty(&manifest).map_err(crate::error::Error::internal)?.into())?;
        crate::progress::finish(&self.bar);
        Ok(())
    }
}

/// The commands that read a night other commands made: they count the rows they set aside
/// but do not commit `quarantine/`, which is the night's.
const QUARANTINE_READERS: &[&str] = &["monitor", "readout"];

/// Per table: rows read, rows set aside, their share, and how many rows broke each rule.
fn quarantine_summary(aside: &[SetAside], stage: &StageSettings) -> Result<Value> {
    let context = "the rows set aside";
    let mut tables = serde_json::Map::new();
    for a in aside {
        let by_rule = a
            .rows
            .clone()
            .lazy()
            .group_by([col("column"), col("rule")])
            .agg([len().cast(DataType::UInt64).alias("n")])
            .sort(["column", "rule"], SortMultipleOptions::default())
            .collect()
            .ctx(context)?;
        let mut rules = serde_json::Map::new();
        for i in 0..by_rule.height() {
            let text = |c: &str| by_rule.column(c).ok().and_then(|v| v.str().ok()?.get(i).map(str::to_string));
            let n = by_rule.column("n").ctx(context)?.u64().ctx(context)?.get(i).unwrap_or(0);
            rules.insert(
                format!("{}: {}", text("column").unwrap_or_default(), text("rule").unwrap_or_default()),
                json!(n),
            );
        }
        tables.insert(
            a.table.to_string(),
            json!({
                "rows_read": a.rows_read,
                "rows_set_aside": a.rows_set_aside,
                "share": a.rows_set_aside as f64 / a.rows_read.max(1) as f64,
                "rules": rules,
            }),
        );
    }
    Ok(json!({ "max_share": stage.settings.inputs.quarantine_share, "tables": tables }))
}

/// The commands that fit models in the stage: with shards these would refit per shard,
/// which a night of shards never does (README, "Shards").
pub(super) fn refuse_shard(stage: &StageSettings, command: &str, instead: &str) -> Result<()> {
    match stage.shard {
        Some(shard) => Err(Error::Usage(format!("`retain {command}` does not take --shard ({shard}): {instead}"))),
        None => Ok(()),
    }
}

/// The run id of a command that was given none: the UTC time it started and its process id.
pub(crate) fn own_run_id() -> String {
    format!("{}-{}", Utc::now().format("%Y%m%dT%H%M%SZ"), std::process::id())
}
