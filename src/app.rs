//! Dispatch: resolve the settings of a subcommand, set up logging, call the library.
//!
//! This is the only module that knows both the command line (`cli`) and the stages: it
//! turns parsed arguments into typed settings (`config`) before any work starts, so
//! nothing below it sees clap.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::backfill::{self, BackfillStage};
use crate::cli::{self, Cli, Command, ConfigArgs, LogFormat, StageArgs, SynthEffects, TableCommand};
use crate::config::{self, Overrides, Settings, StageOptions, StageSettings};
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::{run, synth, table, validate};

/// Logs go to stderr: text for a person at a terminal, JSON lines otherwise.
fn init_logging(format: Option<LogFormat>, filter: &str) {
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stderr().is_terminal(),
    };
    crate::progress::enable(!json && std::io::stderr().is_terminal());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(crate::progress::LogWriter);
    let _ =
        if json { builder.json().with_current_span(false).try_init() } else { builder.with_target(false).try_init() };
}

/// Stack of each worker of rayon's global pool. The stages run Polars queries from inside
/// parallel loops (labelled snapshots built side by side read the feature store), and a
/// query planned on rayon's default 2 MiB worker stack can overflow it, in debug builds
/// above all. Only the pages a thread touches are committed.
const WORKER_STACK_BYTES: usize = 64 << 20;

fn deep_worker_stacks() {
    // Fails only when the pool was already built (a second call in one process): keep it.
    let _ = rayon::ThreadPoolBuilder::new().stack_size(WORKER_STACK_BYTES).build_global();
}

/// The flag and environment layer of the configuration.
fn overrides(args: ConfigArgs) -> Result<Overrides> {
    let ConfigArgs { config, input, output, horizon_days, seed, fail_on } = args;
    let fail_on = fail_on.map(|f| f.parse()).transpose()?;
    Ok(Overrides { config, input, output, horizon_days, seed, fail_on })
}

/// Run one command to completion.
pub fn execute(cli: Cli) -> Result<()> {
    let Cli { log_format, log, command } = cli;
    init_logging(log_format, &log);
    deep_worker_stacks();
    match command {
        Command::Run(a) => stage(a, run::run_all),
        Command::Features(a) => stage(a, run::features_only),
        Command::Train(a) => stage(a, run::train_only),
        Command::Score(a) => stage(a, run::score_only),
        Command::Interventions(a) => stage(a, run::interventions_only),
        Command::Grace(a) => stage(a, run::grace_only),
        Command::Monitor(a) => stage(a, run::monitor_only),
        Command::Candidates(a) => stage(a, run::candidates_only),
        Command::Prices(a) => {
            let settings = config::resolve(&overrides(a.settings)?)?;
            run::prices(&settings, a.as_of, a.shards, run_id(a.run_id)?)
        }
        Command::Commit(a) => {
            let settings = config::resolve(&overrides(a.settings)?)?;
            run::commit_shards(&settings, a.as_of, a.shards, run_id(a.run_id)?)
        }
        Command::Readout(a) => {
            let settings = config::resolve(&overrides(a.settings)?)?;
            if a.show_config {
                print!("{}", settings.to_redacted_toml());
                return Ok(());
            }
            let as_of = a.as_of.ok_or_else(|| Error::Usage("--as-of (or RETAIN_AS_OF) is required".into()))?;
            let plan = match (a.plan_metric, a.plan_effect) {
                (Some(metric), Some(effect)) => Some(run::PlanAsk { metric, effect, weeks: a.plan_weeks }),
                _ => None,
            };
            run::readout_only(StageSettings::new(settings, as_of, StageOptions::default())?, plan)
        }
        Command::Backfill(a) => {
            let settings = config::resolve(&overrides(a.settings)?)?;
            if a.show_config {
                print!("{}", settings.to_redacted_toml());
                return Ok(());
            }
            let stage = match a.stage {
                cli::BackfillStage::Features => BackfillStage::Features,
                cli::BackfillStage::Grace => BackfillStage::Grace,
                cli::BackfillStage::Run => BackfillStage::Run,
            };
            let done = backfill::backfill(&settings, a.from, a.to, stage, a.force, a.jobs)?;
            tracing::info!(built = done.built.len(), skipped = done.skipped.len(), "backfill complete");
            Ok(())
        }
        Command::Validate(a) => {
            let mut settings = Settings::load(a.config.as_deref())?;
            if let Some(input) = a.input {
                settings.input = Some(input);
            }
            let input = settings.input_root()?;
            let storage = Storage::open(&input, &settings.storage_options(), false)?;
            let report = validate::validate(&storage, a.examples)?;
            println!("{}", report.render());
            if report.problems.is_empty() {
                Ok(())
            } else {
                Err(Error::data(format!("{} problem(s) in the inputs under {input}", report.problems.len())))
            }
        }
        Command::Table(TableCommand::Train(a)) => {
            table::train(&a.train, &a.test, &a.label, a.positive.as_deref(), &a.ignore, &a.output)
        }
        Command::Table(TableCommand::Uplift(a)) => table::uplift(&table::UpliftRequest {
            train: &a.train,
            test: &a.test,
            treatment: &a.treatment,
            treated: &a.treated,
            control: &a.control,
            outcome: &a.outcome,
            positive: a.positive.as_deref(),
            ignore: &a.ignore,
            output: &a.output,
        }),
        Command::Table(TableCommand::Readout(a)) => table::readout(&table::ReadoutRequest {
            data: &a.data,
            treatment: &a.treatment,
            control: &a.control,
            outcome: &a.outcome,
            positive: a.positive.as_deref(),
            pre: a.pre.as_deref(),
            pre_positive: a.pre_positive.as_deref(),
            output: &a.output,
        }),
        Command::Synth(a) => {
            let settings = Settings::load(a.config.as_deref())?;
            let out = Storage::open(&a.output, &settings.storage_options(), true)?;
            let effects = match a.effects {
                SynthEffects::Home => synth::EffectShapes::Home,
                SynthEffects::Turned => synth::EffectShapes::Turned,
            };
            let cfg = synth::SynthConfig { users: a.users, days: a.days, seed: a.seed, start: a.start, effects };
            let summary = synth::generate(&cfg, &out)?;
            tracing::info!(
                users = summary.users,
                days = summary.days,
                activity_rows = summary.activity_rows,
                billing_rows = summary.billing_rows,
                message_rows = summary.message_rows,
                files = summary.files,
                output = out.uri(),
                "synthetic world written"
            );
            Ok(())
        }
    }
}

/// A pipeline command: `--show-config` prints the resolved settings; otherwise the
/// snapshot date is required and the command runs with its settings resolved once.
fn stage(args: StageArgs, f: fn(StageSettings) -> Result<()>) -> Result<()> {
    let StageArgs { settings, as_of, retrain, shard, force, run_id: given, show_config } = args;
    let run_id = run_id(given)?;
    let shard = shard.map(|s| s.parse::<crate::shard::Shard>()).transpose()?;
    let settings = config::resolve(&overrides(settings)?)?;
    if show_config {
        print!("{}", settings.to_redacted_toml());
        if let Some(d) = as_of {
            println!("# as_of = {d}");
        }
        return Ok(());
    }
    let as_of = as_of.ok_or_else(|| Error::Usage("--as-of (or RETAIN_AS_OF) is required".into()))?;
    f(StageSettings::new(settings, as_of, StageOptions { retrain, shard, force, run_id })?)
}

/// A run id given on the command line: what an orchestrator names its runs by (Airflow's
/// `scheduled__2026-11-30T02:30:00+00:00`, an Argo workflow's name), so anything but
/// nothing, white space and control characters, within 256 bytes.
fn run_id(given: Option<String>) -> Result<Option<String>> {
    match given {
        Some(id) if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err(Error::Usage(format!(
                "--run-id (or RETAIN_RUN_ID) {id:?}: give 1 to 256 bytes without white space or control characters"
            )))
        }
        other => Ok(other),
    }
}
