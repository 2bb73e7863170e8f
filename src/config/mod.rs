//! The typed configuration, resolved once before any work starts.
//!
//! Precedence: command-line flags > environment variables (`RETAIN_*`, declared on the
//! flags in `cli`) > the TOML file given with `--config` > the defaults below. Every key
//! is declared once here with its default; unknown keys are an error (exit 78) so a typo
//! never silently falls back to a default. `--show-config` prints the result.
//!
//! The sections of the commands beside the nightly stages have files of their own, each with
//! its defaults and checks: `[interventions]` (`interventions.rs`), `[readout]` (`readout.rs`),
//! `[monitor]` (`monitor.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::contract::CHANNELS;
use crate::error::{Error, Result};
use crate::models::gbdt::{GbdtParams, lightgbm_seed};
use crate::shard::Shard;
use crate::storage::StorageOptions;

mod interventions;
mod monitor;
mod readout;

pub use interventions::{Budget, ChannelAmounts, Interventions, UnsubscribeCap, Value};
pub use monitor::{FailOn, Limit, Monitor, MonitorLimits};
pub(crate) use readout::READOUT_METRICS;
pub use readout::Readout;

/// Partitions read after the last snapshot for rows that arrive late, unless configured
/// (`inputs.late_days`).
pub(crate) const DEFAULT_LATE_DAYS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Root of the input tables.
    pub input: Option<String>,
    /// Root of the output tables.
    pub output: Option<String>,
    /// Churn label horizon H in days.
    pub horizon_days: u32,
    /// Seed for everything random: the holdout hash, LightGBM's bagging and feature
    /// sampling (unless `training.gbdt.seed` is set), the uplift learners' fits and the
    /// bootstrap that compares them.
    pub seed: u64,
    /// How the input tables are read.
    pub inputs: InputSettings,
    pub features: FeatureSettings,
    pub training: Training,
    pub interventions: Interventions,
    pub grace: Grace,
    /// How experiments are read out (`retain readout`).
    pub readout: Readout,
    /// What `retain monitor` checks and when a check warns or alerts.
    pub monitor: Monitor,
    /// Extra object_store settings (`aws_endpoint_url`, `aws_region`,
    /// `google_service_account_key`, …) applied over the `AWS_*` / `GOOGLE_*` environment.
    #[serde(deserialize_with = "scalars_as_text")]
    pub storage: BTreeMap<String, String>,
}

/// `[storage]` values as written: text, or a number or a boolean (`max_retries = 3`), kept
/// as its text for the storage layer, which parses what each key means.
fn scalars_as_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    let raw: BTreeMap<String, toml::Value> = BTreeMap::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k, s)),
            toml::Value::Integer(i) => Ok((k, i.to_string())),
            toml::Value::Float(f) => Ok((k, f.to_string())),
            toml::Value::Boolean(b) => Ok((k, b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "storage.{k}: expected text, a number or a boolean, got {}",
                other.type_str()
            ))),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputSettings {
    /// How many `dt=` partitions after a snapshot are read for rows that arrived late
    /// (a row dated on or before S in a partition up to S + late_days is used for S).
    pub late_days: u32,
    /// The largest share of a table's rows that may be set aside when they break the
    /// contract (written to `quarantine/snapshot=S/`); above it, or at 0 (the default),
    /// a breach stops the command with exit 65.
    pub quarantine_share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureSettings {
    /// Keep each snapshot's activity aggregates under `<output>/feature_store/` and reuse
    /// them when a later run needs that snapshot with the same activity files.
    pub store: bool,
}

impl Default for FeatureSettings {
    fn default() -> Self {
        FeatureSettings { store: true }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Training {
    /// How many labelled snapshots to use: S − H validates, the others (weekly, ending a
    /// purge gap of H rounded up to weeks before it) train.
    /// The newest is the validation snapshot.
    pub snapshots: u32,
    /// L2 penalty of the logistic model.
    pub l2: f64,
    /// Most optimiser iterations of the logistic model.
    pub max_iterations: u64,
    /// How many reasons to give per user in `top_reasons`.
    pub top_reasons: usize,
    /// Most users with neither label (no churn, no payment failure) a training snapshot
    /// keeps. A snapshot with more keeps every user with a label and this many others,
    /// drawn by a hash of (the LightGBM seed, the snapshot, the user id), each weighted by
    /// how many others it stands for. 0 keeps every user. The validation snapshot is never
    /// sampled.
    pub negatives_per_snapshot: u64,
    /// `retain train` learns from this many users: those of smallest xxh3_64(user_id), a
    /// uniform sample of every shard that stays the same night after night. What shards
    /// need of the whole night (decile boundaries, support cuts, the send hours' prior) is
    /// then estimated on it. 0: every user. `retain run` learns from every user it reads.
    pub sample_users: u64,
    /// LightGBM settings.
    pub gbdt: GbdtParams,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grace {
    /// A recovered subscriber is worth value_months × monthly price.
    pub value_months: f64,
    /// Each unpaid grace day costs cost_fraction × daily price.
    pub cost_fraction: f64,
    /// Longest grace period considered, in days from the failure.
    pub max_days: u32,
    /// Days of dunning episodes (by failure date, before S) the recovery and come-back
    /// models learn from. At most 365: billing is read 400 days back.
    pub history_days: u32,
    /// Days of closed historical episodes the run report evaluates the policy on
    /// (inverse propensity over the randomised grace arms, models refitted as of each
    /// fortnight's start).
    pub eval_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            input: None,
            output: None,
            horizon_days: 30,
            seed: 20261120,
            inputs: InputSettings::default(),
            features: FeatureSettings::default(),
            training: Training::default(),
            interventions: Interventions::default(),
            grace: Grace::default(),
            readout: Readout::default(),
            monitor: Monitor::default(),
            storage: BTreeMap::new(),
        }
    }
}

impl Default for InputSettings {
    fn default() -> Self {
        InputSettings { late_days: DEFAULT_LATE_DAYS, quarantine_share: 0.0 }
    }
}

/// The most training snapshots: a year of weekly snapshots (billing is read 400 days back).
const MAX_TRAINING_SNAPSHOTS: u32 = 52;
/// The most reasons per user (there are about fifty features).
const MAX_TOP_REASONS: usize = 20;

/// The default of `training.negatives_per_snapshot`: at a million users a snapshot has about
/// 430,000 users with neither label, and the champion fitted on this many of them is as
/// good as on all (BENCHMARKS.md, "Training rows"); below about 230,000 users every row is
/// kept.
pub(crate) const DEFAULT_NEGATIVES_PER_SNAPSHOT: u64 = 100_000;

impl Default for Training {
    fn default() -> Self {
        Training {
            snapshots: 8,
            l2: 1.0,
            max_iterations: 100,
            top_reasons: 3,
            negatives_per_snapshot: DEFAULT_NEGATIVES_PER_SNAPSHOT,
            sample_users: 0,
            gbdt: Default::default(),
        }
    }
}

impl Default for Grace {
    fn default() -> Self {
        Grace { value_months: 6.0, cost_fraction: 0.7, max_days: 30, history_days: 180, eval_days: 60 }
    }
}

impl Settings {
    /// Read a TOML file; a missing file, bad TOML, unknown key or bad value is exit 78.
    pub(crate) fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read config {}: {e}", path.display())))?;
        let settings: Settings =
            toml::from_str(&text).map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
        Ok(settings)
    }

    pub fn load(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(p) => Self::from_file(p),
            None => Ok(Settings::default()),
        }
    }

    pub(crate) fn storage_options(&self) -> StorageOptions {
        StorageOptions { entries: self.storage.iter().map(|(k, v)| (k.clone(), v.clone())).collect() }
    }

    /// The input root, required.
    pub(crate) fn input_root(&self) -> Result<String> {
        self.input
            .clone()
            .ok_or_else(|| Error::config("no input root: set `input` in the config, RETAIN_INPUT or --input"))
    }

    /// Whether the input root is one root per shard (`{shard}` in its URI).
    pub(crate) fn input_is_per_shard(&self) -> bool {
        self.input.as_deref().is_some_and(|i| i.contains(crate::shard::PLACEHOLDER))
    }

    /// The output root, required.
    pub(crate) fn output_root(&self) -> Result<String> {
        self.output
            .clone()
            .ok_or_else(|| Error::config("no output root: set `output` in the config, RETAIN_OUTPUT or --output"))
    }

    /// The input and output roots, both required.
    pub(crate) fn roots(&self) -> Result<(String, String)> {
        Ok((self.input_root()?, self.output_root()?))
    }

    /// Check value ranges; called after every layer is applied.
    pub fn check(&self) -> Result<()> {
        let i = &self.interventions;
        if !(0.0..1.0).contains(&i.holdout_fraction) {
            return Err(Error::config(format!(
                "interventions.holdout_fraction must be in [0, 1), got {}",
                i.holdout_fraction
            )));
        }
        if self.horizon_days == 0 || self.horizon_days > 365 {
            return Err(Error::config(format!("horizon_days must be in 1..=365, got {}", self.horizon_days)));
        }
        if self.inputs.late_days > 30 {
            return Err(Error::config(format!("inputs.late_days must be in 0..=30, got {}", self.inputs.late_days)));
        }
        if !(0.0..0.5).contains(&self.inputs.quarantine_share) {
            return Err(Error::config(format!(
                "inputs.quarantine_share must be in [0, 0.5) (a share of a table's rows), got {}",
                self.inputs.quarantine_share
            )));
        }
        if !(2..=MAX_TRAINING_SNAPSHOTS).contains(&self.training.snapshots) {
            return Err(Error::config(format!(
                "training.snapshots must be in 2..={MAX_TRAINING_SNAPSHOTS} (one validates, the others, a week apart, \
                 train), got {}",
                self.training.snapshots
            )));
        }
        self.training.gbdt.check().map_err(Error::config)?;
        if self.training.top_reasons > MAX_TOP_REASONS {
            return Err(Error::config(format!(
                "training.top_reasons must be at most {MAX_TOP_REASONS}, got {}",
                self.training.top_reasons
            )));
        }
        if self.interventions.frequency_cap_days > 365 {
            return Err(Error::config(format!(
                "interventions.frequency_cap_days must be at most 365, got {}",
                self.interventions.frequency_cap_days
            )));
        }
        self.interventions.value.check()?;
        for (c, cap) in CHANNELS.iter().zip(self.interventions.unsubscribe_cap.by_channel()) {
            if let Some(cap) = cap
                && !(cap.is_finite() && cap >= 0.0)
            {
                return Err(Error::config(format!(
                    "interventions.unsubscribe_cap.{c} must be a finite number ≥ 0, got {cap}"
                )));
            }
        }
        if self.training.l2.is_nan() || self.training.l2 < 0.0 {
            return Err(Error::config("training.l2 must be ≥ 0"));
        }
        if let Some(seed) = self.training.gbdt.seed
            && seed >= 1 << 31
        {
            return Err(Error::config(format!(
                "training.gbdt.seed must be below 2^31 (LightGBM's seeds are 32-bit), got {seed}"
            )));
        }
        let g = &self.grace;
        if g.max_days == 0 || g.max_days > 90 {
            return Err(Error::config(format!("grace.max_days must be in 1..=90, got {}", g.max_days)));
        }
        if g.value_months.is_nan() || g.value_months < 0.0 || g.cost_fraction.is_nan() || g.cost_fraction < 0.0 {
            return Err(Error::config("grace.value_months and grace.cost_fraction must be ≥ 0"));
        }
        if !(30..=365).contains(&g.history_days) {
            return Err(Error::config(format!("grace.history_days must be in 30..=365, got {}", g.history_days)));
        }
        if !(7..=365).contains(&g.eval_days) {
            return Err(Error::config(format!("grace.eval_days must be in 7..=365, got {}", g.eval_days)));
        }
        self.readout.check()?;
        self.monitor.check()
    }
}

impl Settings {
    /// The settings as TOML, with secret-looking storage values redacted.
    pub(crate) fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for (k, v) in shown.storage.iter_mut() {
            let k = k.to_ascii_lowercase();
            if ["secret", "key", "token", "password", "credential"].iter().any(|s| k.contains(s)) {
                *v = "<redacted>".to_string();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_default()
    }
}

/// The layer of flags and environment variables (clap reads both) over the file: what
/// `cli` parsed, in the shape the configuration needs, so this module never sees clap.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub config: Option<std::path::PathBuf>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub horizon_days: Option<u32>,
    pub seed: Option<u64>,
    pub fail_on: Option<FailOn>,
}

/// Apply the flag/environment layer over the file layer and check the result.
pub(crate) fn resolve(overrides: &Overrides) -> Result<Settings> {
    let Overrides { config, input, output, horizon_days, seed, fail_on } = overrides;
    let mut s = Settings::load(config.as_deref())?;
    if let Some(v) = input {
        s.input = Some(v.clone());
    }
    if let Some(v) = output {
        s.output = Some(v.clone());
    }
    if let Some(v) = horizon_days {
        s.horizon_days = *v;
    }
    if let Some(v) = seed {
        s.seed = *v;
    }
    if let Some(v) = fail_on {
        s.monitor.fail_on = *v;
    }
    s.check()?;
    Ok(s)
}

/// What the train stage reads of the settings. `training.gbdt.seed` is always set: the
/// configured one, or the run's `seed` made a LightGBM seed.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub horizon_days: u32,
    pub training: Training,
}

/// What the score stage reads of the settings.
#[derive(Debug, Clone, Copy)]
pub struct ScoreSettings {
    /// How many reasons to give per user.
    pub top_reasons: usize,
}

/// What the interventions stage reads of the settings.
#[derive(Debug, Clone)]
pub struct InterventionSettings {
    pub horizon_days: u32,
    /// The run's seed: the holdout hash, the uplift learners' fits, the bootstrap.
    pub seed: u64,
    pub holdout_fraction: f64,
    /// Most sends per channel, in the order of [`CHANNELS`].
    pub budgets: [u64; 3],
    pub frequency_cap_days: u32,
    /// What an action is worth.
    pub value: Value,
    /// Most expected unsubscribes per channel, in the order of [`CHANNELS`].
    pub unsubscribe_caps: [Option<f64>; 3],
}

/// What a command line says beyond the settings.
#[derive(Debug, Clone, Default)]
pub struct StageOptions {
    /// Refit models even when the labelled data is unchanged.
    pub retrain: bool,
    /// Work on this shard's users only.
    pub shard: Option<Shard>,
    /// With a shard: redo its tables even when already written.
    pub force: bool,
    /// The run id the orchestrator gave (`--run-id`); None: the command makes its own.
    pub run_id: Option<String>,
}

/// Everything a pipeline command needs, resolved once: the snapshot, the roots, and each
/// stage's own section. `settings` is kept whole for `--show-config` and the manifest.
#[derive(Debug, Clone)]
pub struct StageSettings {
    pub as_of: NaiveDate,
    /// The one shard of users this command works on (`--shard K/N`); None: every user.
    pub shard: Option<Shard>,
    /// Redo a shard's tables even when it already wrote them with these settings.
    pub force: bool,
    /// Refit models even when the labelled data is unchanged.
    pub retrain: bool,
    /// The run id the orchestrator gave (`--run-id`); None: the command makes its own.
    pub run_id: Option<String>,
    pub input: String,
    pub output: String,
    pub settings: Settings,
    pub train: TrainSettings,
    pub score: ScoreSettings,
    pub interventions: InterventionSettings,
    pub grace: Grace,
}

impl StageSettings {
    /// Resolve the stage sections of checked settings for snapshot `as_of` (and the
    /// command's options: a shard's index replaces `{shard}` in the input URI); the input
    /// and output roots are required.
    pub fn new(settings: Settings, as_of: NaiveDate, options: StageOptions) -> Result<Self> {
        let StageOptions { retrain, shard, force, run_id } = options;
        let (input, output) = settings.roots()?;
        let input = match shard {
            Some(shard) => shard.expand(&input),
            None if input.contains(crate::shard::PLACEHOLDER) => {
                return Err(Error::Usage(format!(
                    "the input root `{input}` is one root per shard ({}): give the shard, --shard K/N",
                    crate::shard::PLACEHOLDER
                )));
            }
            None => input,
        };
        let s = &settings;
        let mut training = s.training.clone();
        training.gbdt.seed = Some(training.gbdt.seed.unwrap_or(lightgbm_seed(s.seed)));
        Ok(StageSettings {
            as_of,
            shard,
            force,
            retrain,
            run_id,
            input,
            output,
            train: TrainSettings { horizon_days: s.horizon_days, training },
            score: ScoreSettings { top_reasons: s.training.top_reasons },
            interventions: InterventionSettings {
                horizon_days: s.horizon_days,
                seed: s.seed,
                holdout_fraction: s.interventions.holdout_fraction,
                budgets: s.interventions.budget.by_channel(),
                frequency_cap_days: s.interventions.frequency_cap_days,
                value: s.interventions.value.clone(),
                unsubscribe_caps: s.interventions.unsubscribe_cap.by_channel(),
            },
            grace: s.grace.clone(),
            settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<&Path>) -> Overrides {
        Overrides { config: config.map(Path::to_path_buf), ..Overrides::default() }
    }

    #[test]
    fn flags_override_file_and_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "input = \"s3://b/in\"\noutput = \"out\"\nhorizon_days = 14\n[inputs]\nlate_days = 5\n[interventions]\nholdout_fraction = 0.2\nbudget = { push = 5 }\n",
        )
        .unwrap();
        let mut a = args(Some(&path));
        let s = resolve(&a).unwrap();
        assert_eq!(s.horizon_days, 14);
        assert_eq!(s.inputs.late_days, 5);
        assert_eq!(Settings::default().inputs.late_days, 3);
        assert_eq!(s.interventions.budget.push, 5);
        assert_eq!(s.interventions.budget.email, 100_000, "unset keys keep their defaults");
        a.horizon_days = Some(7);
        a.input = Some("/data".into());
        let s = resolve(&a).unwrap();
        assert_eq!((s.horizon_days, s.input.as_deref()), (7, Some("/data")));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_configuration_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "horizon_dayz = 3\n").unwrap();
        assert_eq!(resolve(&args(Some(&path))).unwrap_err().exit_code(), crate::error::ExitCode::Config);
        std::fs::write(&path, "[interventions]\nholdout_fraction = 1.5\n").unwrap();
        assert_eq!(resolve(&args(Some(&path))).unwrap_err().exit_code(), crate::error::ExitCode::Config);
        std::fs::write(&path, "[inputs]\nlate_days = 45\n").unwrap();
        assert_eq!(resolve(&args(Some(&path))).unwrap_err().exit_code(), crate::error::ExitCode::Config);
    }

    #[test]
    fn storage_values_may_be_written_as_numbers_and_booleans() {
        let s: Settings = toml::from_str(
            "[storage]\nmax_retries = 3\nretry_timeout = 2.5\naws_allow_http = true\naws_region = \"eu-north-1\"\n",
        )
        .unwrap();
        let kept: Vec<(&str, &str)> = s.storage.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            kept,
            [("aws_allow_http", "true"), ("aws_region", "eu-north-1"), ("max_retries", "3"), ("retry_timeout", "2.5")]
        );
        let err = toml::from_str::<Settings>("[storage]\nmax_retries = [3]\n").unwrap_err();
        assert!(err.to_string().contains("storage.max_retries"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_when_shown() {
        let mut s = Settings::default();
        s.storage.insert("aws_secret_access_key".into(), "hunter2".into());
        s.storage.insert("aws_region".into(), "eu-north-1".into());
        let shown = s.to_redacted_toml();
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("eu-north-1"));
    }
}
