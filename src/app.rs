//! Dispatch: resolve settings for a subcommand, set up logging, call the stage.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat, StageArgs, TableCommand};
use crate::config::{self, Settings};
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::{run, synth, validate};

/// Logs go to stderr: text for a person at a terminal, JSON lines otherwise.
pub fn init_logging(format: Option<LogFormat>, filter: &str) {
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

/// Run one command to completion.
pub fn execute(cli: Cli) -> Result<()> {
    let Cli { log_format, log, command } = cli;
    init_logging(log_format, &log);
    match command {
        Command::Run(a) => stage(a, run::run_all),
        Command::Features(a) => stage(a, run::features_only),
        Command::Train(a) => stage(a, run::train_only),
        Command::Score(a) => stage(a, run::score_only),
        Command::Interventions(a) => stage(a, run::interventions_only),
        Command::Grace(a) => stage(a, run::grace_only),
        Command::Backfill(a) => {
            let settings = config::resolve(&a.stage_args)?;
            let (input, output) = settings.roots()?;
            let done = crate::backfill::backfill(&settings, &input, &output, a.from, a.to, a.stage, a.force, a.jobs)?;
            tracing::info!(built = done.built.len(), skipped = done.skipped.len(), "backfill complete");
            Ok(())
        }
        Command::Validate(a) => {
            let settings = Settings::load(a.config.as_deref())?;
            let input =
                a.input.clone().or(settings.input.clone()).ok_or_else(|| {
                    Error::config("no input root: set `input` in the config, RETAIN_INPUT or --input")
                })?;
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
            crate::table::train(&a.train, &a.test, &a.label, a.positive.as_deref(), &a.ignore, &a.output)
        }
        Command::Table(TableCommand::Uplift(a)) => crate::table::uplift(&crate::table::UpliftRequest {
            train: &a.train,
            test: &a.test,
            treatment: &a.treatment,
            treated: &a.treated,
            control: &a.control,
            outcome: &a.outcome,
            ignore: &a.ignore,
            output: &a.output,
        }),
        Command::Synth(a) => {
            let settings = Settings::load(a.config.as_deref())?;
            let out = Storage::open(&a.output, &settings.storage_options(), true)?;
            let cfg = synth::SynthConfig { users: a.users, days: a.days, seed: a.seed, start: a.start };
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

fn stage(args: StageArgs, f: fn(config::StageSettings) -> Result<()>) -> Result<()> {
    if args.show_config {
        let settings = config::resolve(&args)?;
        print!("{}", settings.to_redacted_toml());
        if let Some(d) = args.as_of {
            println!("# as_of = {d}");
        }
        return Ok(());
    }
    f(config::resolve_stage(&args)?)
}
