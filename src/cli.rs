//! The command line, and nothing else: clap definitions that `config` resolves into
//! typed settings before any work starts.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "retain",
    version,
    about = "Churn scores, uplift-targeted interventions and grace-period recommendations"
)]
pub struct Cli {
    /// Log format on stderr: `text` for people, `json` lines for machines
    /// (default: text on a terminal, json otherwise).
    #[arg(long, global = true, env = "RETAIN_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log filter, e.g. `info`, `debug`, `retain=debug` (RUST_LOG syntax).
    #[arg(long, global = true, env = "RETAIN_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole nightly pipeline for one snapshot: features, train, score,
    /// interventions and grace.
    Run(StageArgs),
    /// Build the features table for a snapshot.
    Features(StageArgs),
    /// Train the churn model on earlier snapshots whose labels are complete by the as-of date.
    Train(StageArgs),
    /// Score every premium user at the snapshot with the snapshot's model.
    Score(StageArgs),
    /// Plan the intervention list for the snapshot (needs its scores).
    Interventions(StageArgs),
    /// Recommend grace periods for every open dunning episode at the snapshot.
    Grace(StageArgs),
    /// A shard's first phase of the interventions: its users' best arms per channel and
    /// their summary for `retain prices` (needs --shard, the shard's features and the
    /// model of S).
    Candidates(StageArgs),
    /// The channel prices and each shard's quotas that fit the service's budgets and
    /// unsubscribe caps, from every shard's candidates (runs/snapshot=S/prices.json).
    Prices(CommitArgs),
    /// Publish a night run as shards: one `_SUCCESS` per table listing every shard's parts,
    /// once all N shards have written theirs.
    Commit(CommitArgs),
    /// Read out every campaign of the last weeks (treatment against holdout on retention,
    /// conversion, payment recovery, engagement and reachability) with a decision:
    /// readouts/, readout_arms/, readout_segments/ and reports/snapshot=S/readout.html.
    Readout(ReadoutArgs),
    /// Watch the night: input data quality against the trailing weeks, every feature
    /// against the training snapshots, scores, plan and grace against the last nights,
    /// expected and realised model performance: monitor/, monitor_backtest/ and
    /// reports/snapshot=S/index.html (`retain run` ends with it).
    Monitor(StageArgs),
    /// Build one stage for every date in a range; complete dates are skipped.
    Backfill(BackfillArgs),
    /// Check the input tables against the data contract.
    Validate(ValidateArgs),
    /// Generate a synthetic subscriber world in the contract's format, with its ground truth.
    Synth(SynthArgs),
    /// Models on flat tables (CSV or Parquet) for ad hoc analysis.
    #[command(subcommand)]
    Table(TableCommand),
}

#[derive(Debug, Clone, Args)]
pub struct ReadoutArgs {
    #[command(flatten)]
    pub settings: ConfigArgs,

    /// Snapshot date S (UTC): the readout describes the end of this day.
    #[arg(long, env = "RETAIN_AS_OF")]
    pub as_of: Option<NaiveDate>,

    /// Plan an experiment: the metric whose effect is to be detected (with --plan-effect):
    /// prints, per arm, the holdout fraction that detects it within --plan-weeks.
    #[arg(long, requires = "plan_effect")]
    pub plan_metric: Option<String>,

    /// The effect to detect, in the metric's units (0.01 = one point of retention).
    #[arg(long, requires = "plan_metric", allow_negative_numbers = true)]
    pub plan_effect: Option<f64>,

    /// Weeks the planned experiment may run.
    #[arg(long, default_value_t = 4)]
    pub plan_weeks: u32,

    /// Print the resolved configuration as TOML on stdout and exit.
    #[arg(long)]
    pub show_config: bool,
}

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Train a calibrated classifier on A and write P(label = positive) for each row of B.
    Train(TableTrainArgs),
    /// Learn from a randomised experiment in A and write, for each row of B, the effect of
    /// treatment on the outcome's probability (treated minus control).
    Uplift(TableUpliftArgs),
    /// Read out a randomised experiment in A: each treatment value against the control, on
    /// the outcome's mean, with CUPED on a pre-period column; one row per treatment value.
    Readout(TableReadoutArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TableReadoutArgs {
    /// The experiment's table (.csv or .parquet): one row per unit.
    #[arg(long)]
    pub data: PathBuf,
    /// The column holding each row's arm.
    #[arg(long)]
    pub treatment: String,
    /// The treatment column's value for control rows; every other value is read out against it.
    #[arg(long)]
    pub control: String,
    /// The outcome column: numbers, booleans, or any values with --positive.
    #[arg(long)]
    pub outcome: String,
    /// The outcome's positive value, for a categorical outcome (the outcome is then 0/1).
    #[arg(long)]
    pub positive: Option<String>,
    /// The outcome's own pre-period value (CUPED): numbers, booleans, or any values with
    /// --pre-positive.
    #[arg(long)]
    pub pre: Option<String>,
    /// The pre-period column's positive value, for a categorical one.
    #[arg(long)]
    pub pre_positive: Option<String>,
    /// Output Parquet file: one row per treatment value.
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct TableUpliftArgs {
    /// Training table A (.csv or .parquet): one row per unit of the experiment.
    #[arg(long)]
    pub train: PathBuf,
    /// Table B to predict (same feature columns as A).
    #[arg(long)]
    pub test: PathBuf,
    /// The column holding each row's arm.
    #[arg(long)]
    pub treatment: String,
    /// The treatment column's value for treated rows; several arms, comma-separated
    /// (`A,B,C`), each get their uplift column and the best arm per row.
    #[arg(long, value_delimiter = ',', required = true)]
    pub treated: Vec<String>,
    /// The treatment column's value for control rows (rows with any other value are not used).
    #[arg(long)]
    pub control: String,
    /// The binary outcome column (true/false or 0/1, or any values with --positive).
    #[arg(long)]
    pub outcome: String,
    /// The outcome's positive value (default: true, or 1).
    #[arg(long)]
    pub positive: Option<String>,
    /// Columns that are not features.
    #[arg(long, value_delimiter = ',')]
    pub ignore: Vec<String>,
    /// Output Parquet file, a row per row of B in B's order: `uplift` (one arm), or
    /// `uplift_<arm>` per arm and `best_arm` (several).
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct TableTrainArgs {
    /// Training table A (.csv or .parquet).
    #[arg(long)]
    pub train: PathBuf,
    /// Table B to predict (same columns as A; the label may be absent).
    #[arg(long)]
    pub test: PathBuf,
    /// The label column.
    #[arg(long)]
    pub label: String,
    /// The label's positive value (default: true, or 1).
    #[arg(long)]
    pub positive: Option<String>,
    /// Columns that are not features.
    #[arg(long, value_delimiter = ',')]
    pub ignore: Vec<String>,
    /// Output Parquet file: one `probability` per row of B, in B's order.
    #[arg(long)]
    pub output: PathBuf,
}

/// The settings layer of the command line: every flag that overrides a configuration
/// key (each also read from its environment variable).
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Pipeline configuration (TOML).
    #[arg(long, short = 'c', env = "RETAIN_CONFIG")]
    pub config: Option<PathBuf>,

    /// Root of the input tables (folder, file://, s3://, gs://).
    #[arg(long, env = "RETAIN_INPUT")]
    pub input: Option<String>,

    /// Root of the output tables.
    #[arg(long, env = "RETAIN_OUTPUT")]
    pub output: Option<String>,

    /// Churn label horizon H in days.
    #[arg(long, env = "RETAIN_HORIZON_DAYS")]
    pub horizon_days: Option<u32>,

    /// Seed for everything random (holdout assignment, model fitting).
    #[arg(long, env = "RETAIN_SEED")]
    pub seed: Option<u64>,

    /// `retain monitor` and `retain run`: exit 3 when a check alerts (`alert`), warns or
    /// alerts (`warn`), or never (`never`, the default: the manifest lists the alerts).
    #[arg(long, env = "RETAIN_FAIL_ON", value_name = "never|alert|warn")]
    pub fail_on: Option<String>,
}

/// Arguments shared by every pipeline stage.
#[derive(Debug, Clone, Args)]
pub struct StageArgs {
    #[command(flatten)]
    pub settings: ConfigArgs,

    /// Snapshot date S (UTC): outputs describe the end of this day.
    #[arg(long, env = "RETAIN_AS_OF")]
    pub as_of: Option<NaiveDate>,

    /// Fit new models even when the labelled data has not changed since the last model
    /// (`train` and `run`; by default that model is reused).
    #[arg(long)]
    pub retrain: bool,

    /// Work on one shard of the users only: K/N, the users whose `user_id` hashes to K
    /// (xxh3_64 mod N; README, "Shards"). The tables are written as that shard's parts,
    /// published by `retain commit` once every shard is done.
    #[arg(long, env = "RETAIN_SHARD", value_name = "K/N")]
    pub shard: Option<String>,

    /// With --shard: redo the shard's tables even when it already wrote them with this
    /// version and these settings (by default such a shard is skipped).
    #[arg(long, requires = "shard")]
    pub force: bool,

    /// The id this command's manifest and committed tables carry (default: the UTC time and
    /// the process id). Give every command of a night of shards the same one (the
    /// orchestrator's run id): the plan `retain commit` publishes is then known by it, the
    /// `campaign_id` under which a readout finds the plan's sends (README, "Reading out
    /// `retain`'s own plans").
    #[arg(long, env = "RETAIN_RUN_ID")]
    pub run_id: Option<String>,

    /// Print the resolved configuration as TOML on stdout and exit.
    #[arg(long)]
    pub show_config: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CommitArgs {
    #[command(flatten)]
    pub settings: ConfigArgs,

    /// Snapshot date S of the night to publish.
    #[arg(long, env = "RETAIN_AS_OF")]
    pub as_of: NaiveDate,

    /// How many shards the night ran as (the N of every task's --shard K/N).
    #[arg(long)]
    pub shards: u32,

    /// The id this command's manifest and committed tables carry (default: the UTC time and
    /// the process id). Give every command of a night of shards the same one (the
    /// orchestrator's run id): the plan `retain commit` publishes is then known by it, the
    /// `campaign_id` under which a readout finds the plan's sends (README, "Reading out
    /// `retain`'s own plans").
    #[arg(long, env = "RETAIN_RUN_ID")]
    pub run_id: Option<String>,
}

/// The stages a backfill can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackfillStage {
    /// The features table.
    Features,
    /// Grace recommendations.
    Grace,
    /// The whole nightly pipeline.
    Run,
}

#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// First snapshot date.
    #[arg(long)]
    pub from: NaiveDate,
    /// Last snapshot date (inclusive).
    #[arg(long)]
    pub to: NaiveDate,
    /// The stage to build for each date.
    #[arg(long, value_enum, default_value = "features")]
    pub stage: BackfillStage,
    /// Rebuild dates whose output is already complete.
    #[arg(long)]
    pub force: bool,
    /// Dates built at once (each holds its own inputs in memory).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Print the resolved configuration as TOML on stdout and exit.
    #[arg(long)]
    pub show_config: bool,
    #[command(flatten)]
    pub settings: ConfigArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Pipeline configuration (TOML); only storage settings and `input` are used.
    #[arg(long, short = 'c', env = "RETAIN_CONFIG")]
    pub config: Option<PathBuf>,

    /// Root of the input tables.
    #[arg(long, env = "RETAIN_INPUT")]
    pub input: Option<String>,

    /// Most problems listed per check.
    #[arg(long, default_value_t = 5)]
    pub examples: usize,
}

#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Number of users.
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
    /// Number of days of history.
    #[arg(long, default_value_t = 180)]
    pub days: u32,
    /// Random seed; the same seed writes the same world.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// First day of the world.
    #[arg(long, default_value = "2026-05-25")]
    pub start: NaiveDate,
    /// Root to write the input tables (and `_truth/`) to.
    #[arg(long)]
    pub output: String,
    /// Which family of message effects the world has: `home`, the one the uplift learners
    /// were developed on, or `turned`, with other segments helped and harmed, other channel
    /// strengths, reach and reading hours (README, "Two families of effects").
    #[arg(long, value_enum, default_value_t = SynthEffects::Home)]
    pub effects: SynthEffects,
    /// Pipeline configuration (TOML); only storage settings are used.
    #[arg(long, short = 'c', env = "RETAIN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `retain synth --effects`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SynthEffects {
    Home,
    Turned,
}
