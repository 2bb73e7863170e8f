//! `retain backfill`: one stage over a range of snapshot dates, for analysts and for
//! recovering missed nights.
//!
//! Each date runs exactly as the single-date command would (same code, same outputs,
//! same commit protocol), so a backfilled date is indistinguishable from a nightly one
//! and a rerun writes identical table bytes. Dates whose output is already complete are
//! skipped unless `--force`. Dates run `jobs` at a time: each date holds its own inputs
//! in memory, so `jobs` is the memory bound (about one date's inputs per job).

use chrono::{Duration, NaiveDate};
use rayon::prelude::*;
use tracing::info;

use crate::config::{Settings, StageSettings};
use crate::error::{Error, Result};
use crate::run;
use crate::storage::Storage;

/// The stages a backfill can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackfillStage {
    /// The features table.
    Features,
    /// Grace recommendations.
    Grace,
    /// The whole nightly pipeline.
    Run,
}

impl BackfillStage {
    fn name(self) -> &'static str {
        match self {
            BackfillStage::Features => "features",
            BackfillStage::Grace => "grace",
            BackfillStage::Run => "run",
        }
    }

    /// The tables the stage commits.
    fn tables(self) -> &'static [&'static str] {
        match self {
            BackfillStage::Features => &["features"],
            BackfillStage::Grace => &[crate::contract::GRACE.name],
            BackfillStage::Run => &[
                "features",
                crate::contract::SCORES.name,
                crate::contract::INTERVENTIONS.name,
                crate::contract::GRACE.name,
            ],
        }
    }

    /// Whether the stage's output for `d` is complete: its manifest, written last, and
    /// each of its tables still committed (a table folder deleted since is rebuilt).
    fn complete(self, out: &Storage, d: NaiveDate) -> Result<bool> {
        if !out.exists(&format!("runs/snapshot={d}/{}.json", self.name()))? {
            return Ok(false);
        }
        for table in self.tables() {
            if out.committed(table, d)?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn execute(self, stage: StageSettings) -> Result<()> {
        match self {
            BackfillStage::Features => run::features_only(stage),
            BackfillStage::Grace => run::grace_only(stage),
            BackfillStage::Run => run::run_all(stage),
        }
    }
}

/// What a backfill did, per date.
#[derive(Debug, Default)]
pub(crate) struct BackfillSummary {
    pub built: Vec<NaiveDate>,
    pub skipped: Vec<NaiveDate>,
}

/// Run `stage` for every date in `[from, to]`, reading and writing the roots of `settings`.
pub(crate) fn backfill(
    settings: &Settings,
    from: NaiveDate,
    to: NaiveDate,
    stage: BackfillStage,
    force: bool,
    jobs: usize,
) -> Result<BackfillSummary> {
    if to < from {
        return Err(Error::Usage(format!("--to {to} is before --from {from}")));
    }
    let (_, output) = settings.roots()?;
    let output = output.as_str();
    let out = Storage::open(output, &settings.storage_options(), true)?;
    let dates: Vec<NaiveDate> = (0..=(to - from).num_days()).map(|k| from + Duration::days(k)).collect();
    let mut summary = BackfillSummary::default();
    let mut todo = Vec::new();
    for d in dates {
        if !force && stage.complete(&out, d)? {
            summary.skipped.push(d);
        } else {
            todo.push(d);
        }
    }
    info!(stage = stage.name(), build = todo.len(), skip = summary.skipped.len(), jobs, "backfill");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .thread_name(|i| format!("retain-backfill-{i}"))
        .build()
        .map_err(Error::internal)?;
    let results: Vec<(NaiveDate, Result<()>)> = pool.install(|| {
        todo.par_iter()
            .map(|&d| (d, StageSettings::new(settings.clone(), d, Default::default()).and_then(|s| stage.execute(s))))
            .collect()
    });
    // Every date ran; report the first failure (by date) after all finished, so one bad
    // day does not stop the others.
    let mut first_error = None;
    for (d, r) in results {
        match r {
            Ok(()) => summary.built.push(d),
            Err(e) => {
                tracing::error!(date = %d, error = %e, "backfill date failed");
                first_error.get_or_insert((d, e));
            }
        }
    }
    summary.built.sort();
    match first_error {
        Some((d, e)) => Err(match e {
            Error::Data(m) => Error::Data(format!("{d}: {m}")),
            Error::Config(m) => Error::Config(format!("{d}: {m}")),
            other => other,
        }),
        None => Ok(summary),
    }
}
