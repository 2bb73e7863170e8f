//! Grace-period recommendations for every dunning episode open at S.
//!
//! When a renewal fails the user keeps premium while the payment is retried. Too short a
//! grace loses users who would have fixed their card; too long streams for free to users
//! who never pay. Historical grace lengths were randomised, which makes the effect of the
//! length learnable, so this stage:
//!
//! 1. builds every dunning episode of the last `history_days` with its features at the
//!    failure (`episodes`);
//! 2. fits two discrete-time hazard models on episode-day rows, censored at S (`model`,
//!    solved by a small penalised Newton solver in `logit`): the daily chance of
//!    recovery during grace, and the daily chance that a lapsed user comes back within
//!    60 days of the expiry;
//! 3. values every total grace length g = 0..=max_days for each open episode and
//!    recommends the best (`value`);
//! 4. measures the policy on closed historical episodes by inverse propensity over the
//!    randomised arms, with models refitted as of each fortnight (`evaluate`), and
//!    writes a report with the recovery curves and example value curves (`report`).

mod episodes;
mod evaluate;
mod logit;
mod model;
mod report;
mod value;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

pub use episodes::lookback;
pub use evaluate::{ArmComparison, Decision, Estimate, Evaluation};
pub use model::FitSummary;
pub use report::{GraceReport, ReasonCurve};

use crate::config::Grace as GraceConfig;
use crate::contract::FAILURE_REASONS;
use crate::error::{Error, PolarsContext, Result};
use crate::inputs::{Inputs, epoch_days};
use episodes::Episode;
use model::{COMEBACK_DAYS, Models};

/// Days of the recovery curve in the output.
pub(crate) const CURVE_DAYS: usize = 30;
/// Example episodes whose value curves the report draws.
const EXAMPLES: usize = 4;

/// The grace table (contract: `grace`), the report's numbers and its HTML page.
pub(crate) struct GraceOutput {
    pub table: DataFrame,
    pub report: GraceReport,
    pub html: String,
    /// What was learned (saved with the models, for shards).
    pub learned: Learned,
}

/// Where the HTML report for snapshot `s` goes, relative to the output root.
pub(crate) fn report_path(s: NaiveDate) -> String {
    format!("reports/snapshot={s}/grace.html")
}

fn model_days(cfg: &GraceConfig) -> usize {
    (cfg.max_days as usize).max(CURVE_DAYS)
}

/// What the stage learns from the whole history of episodes, once per night: the two
/// hazard models, their recovery curves by reason, and the policy's back-test. One
/// process learns and recommends in one go ([`recommend_all`]); a night of shards learns
/// it once (`retain train`, saved with the models) and each shard recommends with it
/// ([`recommend`]), so that a shard never refits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Learned {
    snapshot: NaiveDate,
    /// The settings it was learned with: recommending with others is refused.
    settings: GraceConfig,
    episodes_in_history: usize,
    models: Option<Models>,
    recovery_curves: BTreeMap<String, ReasonCurve>,
    evaluation: Option<Evaluation>,
}

impl Learned {
    /// Decode what [`serde_json`] wrote, checking it was learned for `s` with `cfg`.
    pub(crate) fn from_json(bytes: &[u8], s: NaiveDate, cfg: &GraceConfig) -> Result<Self> {
        let learned: Learned = serde_json::from_slice(bytes)
            .map_err(|e| Error::data(format!("the grace models saved with the model of {s} cannot be read: {e}")))?;
        if learned.snapshot != s || learned.settings != *cfg {
            return Err(Error::config(format!(
                "the grace models saved for snapshot {} were learned with other [grace] settings ({:?}) than these \
                 ({cfg:?}); run `retain train` with these settings",
                learned.snapshot, learned.settings
            )));
        }
        Ok(learned)
    }
}

/// Learn and recommend: a grace length for every episode open at the end of `s`. The
/// inputs must reach back as far as [`lookback`] says.
pub(crate) fn recommend_all(inputs: &Inputs, s: NaiveDate, cfg: &GraceConfig) -> Result<GraceOutput> {
    let eps = episodes::load(inputs, s, cfg)?;
    let learned = learn_from(&eps, s, cfg);
    recommend_from(&eps, s, cfg, learned)
}

/// Learn from the episodes of `inputs` (see [`Learned`]).
pub(crate) fn learn(inputs: &Inputs, s: NaiveDate, cfg: &GraceConfig) -> Result<Learned> {
    Ok(learn_from(&episodes::load(inputs, s, cfg)?, s, cfg))
}

/// Recommend for the episodes of `inputs` open at `s` with what was learned (the users of
/// `inputs` may be one shard's).
pub(crate) fn recommend(inputs: &Inputs, s: NaiveDate, cfg: &GraceConfig, learned: Learned) -> Result<GraceOutput> {
    recommend_from(&episodes::load(inputs, s, cfg)?, s, cfg, learned)
}

fn learn_from(eps: &[Episode], s: NaiveDate, cfg: &GraceConfig) -> Learned {
    let s_day = epoch_days(s);
    let days = model_days(cfg);
    let models = model::fit(eps, s_day, cfg.history_days as i32, days);
    if models.is_none() {
        tracing::warn!(episodes = eps.len(), "grace: no recovery in the history; every open episode ends now");
    }
    // Evaluation on closed episodes: failures late enough that every arm's outcome,
    // 60 days of come-back included, is observed by S.
    let max_arm = eps.iter().filter_map(|e| e.granted).filter(|g| *g <= cfg.max_days as i32).max().unwrap_or(0);
    let to = s_day - COMEBACK_DAYS - max_arm;
    let from = to - cfg.eval_days as i32 + 1;
    let (decisions, skipped) = evaluate::backtest(eps, from, to, cfg, days);
    let evaluation = evaluate::evaluate(eps, &decisions, skipped, from, to, s_day, cfg);
    Learned {
        snapshot: s,
        settings: cfg.clone(),
        episodes_in_history: eps.len(),
        recovery_curves: models.as_ref().map(|m| reason_curves(m, eps, s_day, cfg)).unwrap_or_default(),
        models,
        evaluation,
    }
}

fn recommend_from(eps: &[Episode], s: NaiveDate, cfg: &GraceConfig, learned: Learned) -> Result<GraceOutput> {
    let s_day = epoch_days(s);
    let models = &learned.models;
    let open: Vec<&Episode> = eps.iter().filter(|e| e.open_at(s_day)).collect();
    let n = open.len();
    let (mut uid, mut fts, mut reason, mut rec, mut prec, mut value, mut curve) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut histogram: BTreeMap<usize, usize> = BTreeMap::new();
    let mut end_now = 0;
    let mut examples = Vec::new();
    for e in &open {
        let elapsed = s_day - e.fail_day;
        let (g, p, v, c) = match &models {
            Some(m) => {
                let val = evaluate::decide(m, e, elapsed, cfg);
                let g = val.best;
                let out = (g, val.p_recover[g], val.values[g], val.curve(g, CURVE_DAYS));
                if examples.len() < EXAMPLES && !examples.iter().any(|x: &report::Example| x.reason == e.reason_name) {
                    examples.push(report::Example {
                        user_id: e.user_id.clone(),
                        reason: e.reason_name.clone(),
                        elapsed: elapsed as usize,
                        price: e.price,
                        values: val.values.clone(),
                        best: g,
                    });
                }
                out
            }
            None => ((elapsed.max(0) as usize).min(cfg.max_days as usize), 0.0, 0.0, vec![0.0; CURVE_DAYS]),
        };
        *histogram.entry(g).or_default() += 1;
        if g as i32 <= elapsed {
            end_now += 1;
        }
        uid.push(e.user_id.clone());
        fts.push(e.failure_us);
        reason.push(e.reason_name.clone());
        rec.push(g.min(i16::MAX as usize) as i16);
        prec.push(p);
        value.push(v);
        curve.push(Series::new("".into(), c));
    }
    let table = grace_frame(s, n, uid, fts, reason, rec, prec, value, curve)?;

    let report = GraceReport {
        snapshot: s,
        episodes_in_history: learned.episodes_in_history,
        open_episodes: n,
        recovery_model: models.as_ref().map(|m| m.recovery.summary.clone()),
        comeback_model: models.as_ref().and_then(|m| m.comeback.as_ref().map(|c| c.summary.clone())),
        recommended_days: histogram,
        end_now,
        recovery_curves: learned.recovery_curves.clone(),
        evaluation: learned.evaluation.clone(),
    };
    let html = report::render(&report, &examples, cfg);
    Ok(GraceOutput { table, report, html, learned })
}

/// The model's curves by reason, averaged over the reason's training episodes.
fn reason_curves(m: &Models, eps: &[Episode], s_day: i32, cfg: &GraceConfig) -> BTreeMap<String, ReasonCurve> {
    let days = model_days(cfg);
    let mut out = BTreeMap::new();
    for (r, name) in FAILURE_REASONS.iter().enumerate() {
        let members: Vec<&Episode> = eps
            .iter()
            .filter(|e| e.reason == Some(r) && e.fail_day <= s_day && e.fail_day >= s_day - cfg.history_days as i32)
            .collect();
        if members.is_empty() {
            continue;
        }
        let mut avg = vec![0.0; days + 1];
        for e in &members {
            let h = m.recovery.hazard_path(e, 0, days);
            let mut surv = 1.0;
            for k in 1..=days {
                surv *= 1.0 - h[k];
                avg[k] += (1.0 - surv) / members.len() as f64;
            }
        }
        out.insert(
            name.to_string(),
            ReasonCurve {
                episodes: m.recovery.empirical_episodes[r],
                model: avg,
                empirical: m.recovery.empirical[r].clone(),
            },
        );
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn grace_frame(
    s: NaiveDate,
    n: usize,
    uid: Vec<String>,
    fts: Vec<i64>,
    reason: Vec<String>,
    rec: Vec<i16>,
    prec: Vec<f64>,
    value: Vec<f64>,
    curve: Vec<Series>,
) -> Result<DataFrame> {
    let utc = DataType::Datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC));
    let list = DataType::List(Box::new(DataType::Float64));
    let curve = if curve.is_empty() {
        Series::new_empty("curve".into(), &list)
    } else {
        Series::new("curve".into(), curve).cast(&list).ctx("curve")?
    };
    DataFrame::new(
        n,
        vec![
            Column::new("user_id".into(), uid),
            Column::new("snapshot_date".into(), vec![s; n]),
            Series::new("failure_ts".into(), fts).cast(&utc).ctx("failure_ts")?.into(),
            Column::new("failure_reason".into(), reason),
            Column::new("recommended_grace_days".into(), rec),
            Column::new("p_recover".into(), prec),
            Column::new("expected_net_value".into(), value),
            curve.into(),
        ],
    )
    .ctx("assembling grace recommendations")?
    .sort(["user_id", "failure_ts"], SortMultipleOptions::default())
    .ctx("sorting grace recommendations")
}

/// The decisions the models would have made at the failure of every episode failed in
/// `[from, to]`, each with models fitted on the data known the day before its fortnight
/// (for back-tests and for checking against a synthetic world's truth).
pub fn backtest(
    inputs: &Inputs,
    s: NaiveDate,
    cfg: &GraceConfig,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<Decision>> {
    let eps = episodes::load(inputs, s, cfg)?;
    let (d, _) = evaluate::backtest(&eps, epoch_days(from), epoch_days(to), cfg, model_days(cfg));
    Ok(d)
}
