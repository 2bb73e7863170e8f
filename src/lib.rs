//! `retain`: nightly churn scores, uplift-targeted interventions and grace-period
//! recommendations for a subscription service, from four event tables.
//!
//! The modules follow the pipeline, in layers that only import downward
//! (`ARCHITECTURE.md` draws them):
//! - foundations: `error`, `storage` (URIs, partitioned reads, atomic commits), `contract`
//!   (the tables' schemas), `version`, `progress`, `resources` (CPU and memory per stage),
//!   `report` (HTML building blocks), `distribution` (counts on fixed bins that add, and
//!   the drift distances between them);
//! - `models`: the learning seam (encoder, logistic, GBDT, calibration, metrics, uplift
//!   learners, and the rules that choose among fitted models);
//! - `config`: the typed settings, resolved once;
//! - rows: `inputs` (reading the tables), `labels`, `features`, `labelled` (features
//!   joined with labels, for every learner);
//! - stages: `train`, `score`, `interventions`, `grace`, `readout` (experiments read out),
//!   `monitor` (tonight against the nights before and the training snapshots);
//! - commands: `run` (a night, or one stage, with its manifest), `backfill`, `validate`,
//!   `table` (flat-table models for analysts), `synth` (a world to test on);
//! - the edge: `cli` (clap definitions only) and `app` (settings resolved, command
//!   dispatched), called by the thin binary.

pub mod app;
mod backfill;
mod checks;
pub mod cli;
pub mod config;
pub mod contract;
mod distribution;
pub mod error;
pub mod features;
pub mod grace;
pub mod inputs;
pub mod interventions;
mod labelled;
pub mod labels;
pub mod models;
mod monitor;
mod progress;
mod readout;
mod report;
mod resources;
pub mod run;
mod score;
pub mod shard;
pub mod storage;
pub mod synth;
mod table;
pub mod train;
mod validate;
mod version;
