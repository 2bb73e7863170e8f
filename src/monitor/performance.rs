//! Model performance without labels, then with them.
//!
//! Without labels (CBPE, NannyML's confidence-based performance estimation): a calibrated
//! probability p says the user churns with probability p, so the AUC, log loss and Brier
//! score tonight's scores will have once their labels close are expected values over those
//! Bernoulli outcomes. The expected AUC is the expected number of correctly ordered
//! (churner, stayer) pairs over the expected number of pairs, computed in one pass over the
//! sorted scores. With labels: a night S − H's labels close at S, so its published scores
//! are scored against them (the realised AUC, ECE and Brier) next to what CBPE expected of
//! them; every night's row is kept in `monitor_backtest/`, which grows night by night.

use chrono::NaiveDate;
use polars::prelude::*;

use super::row::Check;
use crate::config::Monitor;
use crate::error::{PolarsContext, Result};
use crate::inputs::date_of_epoch_days;
use crate::models::metrics::evaluate;

/// What calibrated probabilities expect of their own labels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected {
    pub auc: f64,
    pub log_loss: f64,
    pub brier: f64,
    /// The expected calibration error chance alone gives perfectly calibrated scores (ten
    /// equal-width bins, as `models::metrics`): a bin's |observed − predicted| rate has
    /// mean √(2/π) · sd of its sum of Bernoulli outcomes over its rows.
    pub ece_by_chance: f64,
}

pub(crate) fn expected(p: &[f64]) -> Expected {
    let n = p.len().max(1) as f64;
    let mut sorted: Vec<f64> = p.iter().map(|v| v.clamp(0.0, 1.0)).collect();
    sorted.sort_by(f64::total_cmp);
    // Σ_i p_i · (Σ_{j below i} (1 − p_j) + ½ Σ_{j tied with i, j ≠ i} (1 − p_j)).
    let (mut numerator, mut below, mut i) = (0.0, 0.0, 0);
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let v = sorted[i];
        let k = (j - i) as f64;
        let tied_neg = k * (1.0 - v);
        // Each tied row sees the other k − 1 tied rows' (1 − v) at one half.
        numerator += k * v * (below + 0.5 * (tied_neg - (1.0 - v)));
        below += tied_neg;
        i = j;
    }
    let (sp, sq): (f64, f64) = (sorted.iter().sum(), sorted.iter().map(|v| 1.0 - v).sum());
    let pairs = sp * sq - sorted.iter().map(|v| v * (1.0 - v)).sum::<f64>();
    let entropy = |v: f64| {
        let v = v.clamp(1e-12, 1.0 - 1e-12);
        -(v * v.ln() + (1.0 - v) * (1.0 - v).ln())
    };
    let mut bins = [0.0f64; 10];
    for &v in &sorted {
        bins[((v * 10.0) as usize).min(9)] += v * (1.0 - v);
    }
    Expected {
        auc: if pairs > 0.0 { numerator / pairs } else { f64::NAN },
        log_loss: sorted.iter().map(|&v| entropy(v)).sum::<f64>() / n,
        brier: sorted.iter().map(|v| v * (1.0 - v)).sum::<f64>() / n,
        ece_by_chance: bins.iter().map(|v| (2.0 / std::f64::consts::PI * v).sqrt()).sum::<f64>() / n,
    }
}

/// Tonight's expected performance, judged against the champion's validation AUC.
pub(crate) fn tonight(
    p: &[f64],
    model: &str,
    validation: Option<(f64, NaiveDate)>,
    cfg: &Monitor,
) -> (Vec<Check>, Expected) {
    let e = expected(p);
    let subject = format!("scores ({model})");
    let mut out = Vec::new();
    match validation {
        Some((auc, on)) => out.push(
            Check::new(
                "estimated_performance",
                subject.clone(),
                "expected_auc",
                e.auc,
                format!("validation AUC {auc:.4} on {on}"),
            )
            .judge(auc - e.auc, cfg.limits.expected_auc_drop, None),
        ),
        None => out.push(Check::new(
            "estimated_performance",
            subject.clone(),
            "expected_auc",
            e.auc,
            "no validation AUC".into(),
        )),
    }
    out.push(Check::new(
        "estimated_performance",
        subject.clone(),
        "expected_log_loss",
        e.log_loss,
        "calibrated probabilities".into(),
    ));
    out.push(Check::new(
        "estimated_performance",
        subject,
        "expected_brier",
        e.brier,
        "calibrated probabilities".into(),
    ));
    (out, e)
}

/// One closed night in the backtest.
#[derive(Debug, Clone)]
pub(crate) struct Backtested {
    pub night: NaiveDate,
    pub model: String,
    pub users: usize,
    pub churned: usize,
    pub expected: Expected,
    pub realised_auc: f64,
    pub realised_log_loss: f64,
    pub realised_brier: f64,
    pub realised_ece: f64,
}

/// Night `d`'s published scores against their labels (`user_id`, `churned`).
pub(crate) fn backtest(d: NaiveDate, scores: &DataFrame, labels: DataFrame) -> Result<Option<Backtested>> {
    let joined = scores
        .clone()
        .lazy()
        .select([col("user_id"), col("churn_probability"), col("model")])
        .join(labels.lazy(), [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Inner))
        .collect()
        .ctx(format!("monitor: the scores of {d} with their labels"))?;
    if joined.height() == 0 {
        return Ok(None);
    }
    let p: Vec<f64> = joined.column("churn_probability").ctx("p")?.f64().ctx("p")?.into_no_null_iter().collect();
    let y: Vec<i32> = joined
        .column("churned")
        .ctx("churned")?
        .cast(&DataType::Int32)
        .ctx("churned")?
        .i32()
        .ctx("churned")?
        .into_no_null_iter()
        .collect();
    let model = joined.column("model").ctx("model")?.str().ctx("model")?.get(0).unwrap_or("").to_string();
    let m = evaluate(&p, &y);
    Ok(Some(Backtested {
        night: d,
        model,
        users: p.len(),
        churned: y.iter().filter(|&&v| v == 1).count(),
        expected: expected(&p),
        realised_auc: m.auc,
        realised_log_loss: m.log_loss,
        realised_brier: m.brier,
        realised_ece: m.ece,
    }))
}

/// The checks of the newest closed night.
pub(crate) fn backtest_checks(b: &Backtested, cfg: &Monitor) -> Vec<Check> {
    let subject = format!("scores of {} ({})", b.night, b.model);
    let gap = b.realised_auc - b.expected.auc;
    let excess = b.realised_ece - b.expected.ece_by_chance;
    vec![
        Check::new(
            "backtest",
            subject.clone(),
            "auc_gap",
            gap,
            format!("expected AUC {:.4} (CBPE on that night), realised {:.4}", b.expected.auc, b.realised_auc),
        )
        .judge(gap.abs(), cfg.limits.backtest_auc_gap, None),
        Check::new(
            "backtest",
            subject.clone(),
            "excess_ece",
            excess,
            format!("ECE {:.4} against {:.4} by chance", b.realised_ece, b.expected.ece_by_chance),
        )
        .judge(excess, cfg.limits.calibration_error, None),
        Check::new("backtest", subject, "brier", b.realised_brier, format!("expected {:.4}", b.expected.brier)),
    ]
}

/// The backtest table: `rows` (this night's, newest closed nights) over the `earlier` table.
pub(crate) fn backtest_table(rows: &[Backtested], earlier: Option<DataFrame>, s: NaiveDate) -> Result<DataFrame> {
    let fresh = df!(
        "night" => rows.iter().map(|r| r.night).collect::<Vec<_>>(),
        "model" => rows.iter().map(|r| r.model.as_str()).collect::<Vec<_>>(),
        "users" => rows.iter().map(|r| r.users as i64).collect::<Vec<_>>(),
        "churned" => rows.iter().map(|r| r.churned as i64).collect::<Vec<_>>(),
        "expected_auc" => rows.iter().map(|r| r.expected.auc).collect::<Vec<_>>(),
        "realised_auc" => rows.iter().map(|r| r.realised_auc).collect::<Vec<_>>(),
        "expected_log_loss" => rows.iter().map(|r| r.expected.log_loss).collect::<Vec<_>>(),
        "realised_log_loss" => rows.iter().map(|r| r.realised_log_loss).collect::<Vec<_>>(),
        "expected_brier" => rows.iter().map(|r| r.expected.brier).collect::<Vec<_>>(),
        "realised_brier" => rows.iter().map(|r| r.realised_brier).collect::<Vec<_>>(),
        "realised_ece" => rows.iter().map(|r| r.realised_ece).collect::<Vec<_>>(),
        "ece_by_chance" => rows.iter().map(|r| r.expected.ece_by_chance).collect::<Vec<_>>(),
        "computed_at" => vec![s; rows.len()],
    )
    .ctx("the backtest table")?;
    let all = match earlier {
        Some(old) => {
            let nights: Vec<NaiveDate> = rows.iter().map(|r| r.night).collect();
            let keep = old
                .lazy()
                .filter(col("night").is_in(lit(Series::new("n".into(), nights)).implode(false), false).not())
                .select(fresh.get_column_names().iter().map(|c| col(c.as_str())).collect::<Vec<_>>());
            concat([keep, fresh.lazy()], UnionArgs::default()).ctx("the backtest table")?
        }
        None => fresh.lazy(),
    };
    all.sort(["night"], SortMultipleOptions::default()).collect().ctx("the backtest table")
}

/// The backtest table's rows, for the page.
pub(crate) fn rows_of(df: &DataFrame) -> Result<Vec<Backtested>> {
    let f = |name: &str| -> Result<Vec<f64>> {
        Ok(df
            .column(name)
            .ctx(name)?
            .cast(&DataType::Float64)
            .ctx(name)?
            .f64()
            .ctx(name)?
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect())
    };
    let nights = df.column("night").ctx("night")?.date().ctx("night")?.physical().clone();
    let models = df.column("model").ctx("model")?.str().ctx("model")?.clone();
    let (users, churned) = (f("users")?, f("churned")?);
    let (ea, ra, el, rl, eb, rb, re, ec) = (
        f("expected_auc")?,
        f("realised_auc")?,
        f("expected_log_loss")?,
        f("realised_log_loss")?,
        f("expected_brier")?,
        f("realised_brier")?,
        f("realised_ece")?,
        f("ece_by_chance")?,
    );
    Ok((0..df.height())
        .map(|i| Backtested {
            night: date_of_epoch_days(nights.get(i).unwrap_or(0)),
            model: models.get(i).unwrap_or("").to_string(),
            users: users[i] as usize,
            churned: churned[i] as usize,
            expected: Expected { auc: ea[i], log_loss: el[i], brier: eb[i], ece_by_chance: ec[i] },
            realised_auc: ra[i],
            realised_log_loss: rl[i],
            realised_brier: rb[i],
            realised_ece: re[i],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::metrics::auc;

    #[test]
    fn the_expected_auc_is_the_mean_auc_of_labels_drawn_from_the_probabilities() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // Ties included: scores on a coarse grid.
        let p: Vec<f64> = (0..4000).map(|_| (rng.random::<f64>().powi(3) * 50.0).round() / 50.0).collect();
        let e = expected(&p);
        let draws = 200;
        let mut mean = 0.0;
        for _ in 0..draws {
            let y: Vec<i32> = p.iter().map(|&v| i32::from(rng.random::<f64>() < v)).collect();
            mean += auc(&p, &y) / draws as f64;
        }
        assert!((e.auc - mean).abs() < 0.003, "expected {} against the draws' mean {mean}", e.auc);
        let brier = p.iter().map(|v| v * (1.0 - v)).sum::<f64>() / p.len() as f64;
        assert!((e.brier - brier).abs() < 1e-12);
    }

    fn night(d: &str, auc: f64) -> Backtested {
        let e = Expected { auc: 0.8, log_loss: 0.3, brier: 0.1, ece_by_chance: 0.01 };
        Backtested {
            night: d.parse().unwrap(),
            model: "m".into(),
            users: 10,
            churned: 2,
            expected: e,
            realised_auc: auc,
            realised_log_loss: 0.3,
            realised_brier: 0.1,
            realised_ece: 0.02,
        }
    }

    #[test]
    fn the_backtest_table_keeps_earlier_nights_and_replaces_a_night_computed_again() {
        let s1: NaiveDate = "2026-11-19".parse().unwrap();
        let first = backtest_table(&[night("2026-10-19", 0.7), night("2026-10-20", 0.71)], None, s1).unwrap();
        let later = backtest_table(
            &[night("2026-10-20", 0.75), night("2026-10-21", 0.72)],
            Some(first),
            s1.succ_opt().unwrap(),
        )
        .unwrap();
        let rows = rows_of(&later).unwrap();
        let nights: Vec<String> = rows.iter().map(|r| r.night.to_string()).collect();
        assert_eq!(nights, ["2026-10-19", "2026-10-20", "2026-10-21"]);
        assert_eq!(rows[1].realised_auc, 0.75, "the night computed again replaces its row");
    }
}
