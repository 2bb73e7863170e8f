//! `retain`: nightly churn scores, uplift-targeted interventions and grace-period
//! recommendations for a subscription service, from four event tables.
//!
//! The modules follow the pipeline: `storage` and `contract` describe where data lives and
//! what it must look like; `synth` makes a world to test on and `validate` checks one;
//! `inputs`, `features` and `labels` turn events into rows; `train` (over the `models`
//! seam) and `score` fit and apply the churn model; `interventions` and `grace` decide
//! what to do; `run` ties a night together and `app` dispatches the commands.

pub mod app;
pub mod backfill;
pub mod cli;
pub mod config;
pub mod contract;
pub mod error;
pub mod features;
pub mod grace;
pub mod inputs;
pub mod interventions;
pub mod labels;
pub mod models;
pub mod progress;
pub(crate) mod report;
pub mod run;
pub mod score;
pub mod storage;
pub mod synth;
pub mod table;
pub mod train;
pub mod validate;
