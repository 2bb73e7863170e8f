//! Scoring every premium user at S: calibrated churn probability, risk decile and the
//! features that push each user's risk up most, in words.
//!
//! The reasons are the costly part at a million users: TreeSHAP contributions of every
//! feature for every row (`models::treeshap`). They are computed in chunks of
//! [`REASON_ROWS`] rows (a row's contributions do not depend on the others), so memory is
//! bounded by the chunk, and each chunk's rows are put into words in parallel, only for
//! the features that make a row's top k.

use std::time::Instant;

use ndarray::{Array2, ArrayView2, s};
use polars::prelude::*;
use rayon::prelude::*;

use crate::config::ScoreSettings;
use crate::error::{PolarsContext, Result};
use crate::features::feature;
use crate::models::encoder::{EncodedColumn, Encoder, Encoding};
use crate::models::{Classifier, ModelArtifact, Target, deciles};
use crate::progress;

/// Rows whose contributions are computed at once: about 25 MB of contributions for the
/// models' ~50 columns.
const REASON_ROWS: usize = 65_536;

/// The scores table for a features table (contract: `scores`), from each target's
/// champion: `churn_probability` (calibrated), `risk_decile`, `top_reasons`, and, beyond
/// the contract, `payment_failure_probability`.
///
/// With `shard`, the features are one shard's users, and deciles come from the night's
/// boundaries in the artifact ([`deciles::Boundaries`]).
pub(crate) fn score(
    features: &DataFrame,
    artifact: &ModelArtifact,
    settings: &ScoreSettings,
    shard: bool,
) -> Result<DataFrame> {
    let top_k = settings.top_reasons;
    let churn = artifact.target(Target::Churn)?.champion()?;
    let (x, p) = churn.predict(features)?;
    let ids: Vec<&str> =
        features.column("user_id").ctx("features")?.str().ctx("features")?.iter().map(|v| v.unwrap_or("")).collect();
    // With shards, the night's boundaries published with the model; else this population's ranks.
    let deciles: Vec<i8> = match &artifact.risk_deciles {
        Some(bounds) if shard => p.iter().zip(&ids).map(|(p, id)| bounds.decile(*p, id)).collect(),
        None if shard => {
            return Err(crate::error::Error::data(format!(
                "the model of snapshot {} has no risk-decile boundaries, which shards need: `retain train` (or \
                 `retain run`) writes them",
                artifact.dir
            )));
        }
        _ => deciles::in_population(&p, &ids),
    };
    let reasons = explain(churn.fitted()?.classifier(), &churn.encoder, &x, top_k, REASON_ROWS);
    let (_, p_fail) = artifact.target(Target::PaymentFailure)?.champion()?.predict(features)?;
    let n = features.height();
    let model_name = format!("{}+{}", churn.name, churn.calibration.name());
    let reasons_series: Series = {
        let mut builder = ListStringChunkedBuilder::new("top_reasons".into(), n, n * top_k);
        for r in &reasons {
            builder.append_values_iter(r.iter().map(String::as_str));
        }
        builder.finish().into_series()
    };
    let df = DataFrame::new_infer_height(vec![
        features.column("user_id").ctx("features")?.clone(),
        features.column("snapshot_date").ctx("features")?.clone(),
        Column::new("churn_probability".into(), p),
        Column::new("model".into(), vec![model_name; n]),
        Column::new("risk_decile".into(), deciles),
        reasons_series.into(),
        Column::new("payment_failure_probability".into(), p_fail),
    ])
    .ctx("assembling scores")?;
    Ok(df)
}

/// The night's risk-decile boundaries from its premium users' features (the churn
/// champion's probabilities; no reasons), for the artifact that shards score with.
pub(crate) fn decile_boundaries(features: &DataFrame, artifact: &ModelArtifact) -> Result<deciles::Boundaries> {
    let (_, p) = artifact.target(Target::Churn)?.champion()?.predict(features)?;
    let ids = features.column("user_id").ctx("features")?.str().ctx("features")?;
    let ids: Vec<&str> = ids.iter().map(|v| v.unwrap_or("")).collect();
    Ok(deciles::Boundaries::of(&p, &ids))
}

/// The same boundaries from a scores table of every premium user.
pub(crate) fn decile_boundaries_of_scores(scores: &DataFrame) -> Result<deciles::Boundaries> {
    let p: Vec<f64> = scores
        .column("churn_probability")
        .ctx("scores")?
        .f64()
        .ctx("scores")?
        .iter()
        .map(|v| v.unwrap_or(0.0))
        .collect();
    let ids = scores.column("user_id").ctx("scores")?.str().ctx("scores")?;
    let ids: Vec<&str> = ids.iter().map(|v| v.unwrap_or("")).collect();
    Ok(deciles::Boundaries::of(&p, &ids))
}

/// How one encoded column describes the row's value, in words; None when the column says
/// nothing about this row (a one-hot column of another category).
fn describe(column: &EncodedColumn, value: f64) -> Option<String> {
    let f = column.feature.as_str();
    let def = feature(f);
    let plain = def.map(|d| d.words).unwrap_or(f);
    let is_flag = def.is_some_and(|d| d.flag);
    let level = |high: bool| {
        if is_flag {
            if high { plain.to_string() } else { format!("not {plain}") }
        } else if high {
            format!("high {plain}")
        } else {
            format!("low {plain}")
        }
    };
    match &column.kind {
        Encoding::Numeric { .. } => Some(level(value >= 0.0)),
        Encoding::Missing => (value > 0.0).then(|| format!("unknown {plain}")),
        Encoding::OneHot { value: category } => (value > 0.0).then(|| format!("{plain}: {category}")),
        Encoding::Raw { median } => {
            Some(if value.is_nan() { format!("unknown {plain}") } else { level(value > *median) })
        }
        Encoding::Codes { values } => Some(if value.is_nan() {
            format!("unknown {plain}")
        } else {
            format!("{plain}: {}", values.get(value as usize).map(String::as_str).unwrap_or("other"))
        }),
    }
}

/// [`top_reasons`] for every row of `x`, `rows_per_chunk` rows' contributions at a time.
fn explain(
    classifier: &dyn Classifier,
    encoder: &Encoder,
    x: &Array2<f64>,
    k: usize,
    rows_per_chunk: usize,
) -> Vec<Vec<String>> {
    let n = x.nrows();
    let mut reasons: Vec<Vec<String>> = Vec::with_capacity(n);
    let (mut in_model, mut in_words) = (0.0, 0.0);
    for start in (0..n).step_by(rows_per_chunk.max(1)) {
        let rows = x.slice(s![start..(start + rows_per_chunk).min(n), ..]);
        let t = Instant::now();
        let contributions = classifier.contributions(&rows.to_owned());
        in_model += t.elapsed().as_secs_f64();
        let t = Instant::now();
        reasons.extend(top_reasons(encoder, rows, &contributions, k));
        in_words += t.elapsed().as_secs_f64();
        progress::step("rows explained", start + rows.nrows(), n);
    }
    // For the benchmarks: the contributions' share is what a peer calling the same
    // library on the same model and rows would pay.
    tracing::info!(rows = n, contribution_seconds = in_model, words_seconds = in_words, "reasons explained");
    reasons
}

/// Per row, the features whose contributions to the log-odds are largest and positive,
/// in words (a feature's encoded columns are summed); ties on the contribution go to the
/// words in alphabetical order.
fn top_reasons(encoder: &Encoder, x: ArrayView2<f64>, contrib: &Array2<f64>, k: usize) -> Vec<Vec<String>> {
    let cols = &encoder.columns;
    let groups = encoder.columns_by_feature();
    let words = |i: usize, js: &[usize]| js.iter().find_map(|&j| describe(&cols[j], x[[i, j]]));
    (0..x.nrows())
        .into_par_iter()
        .map(|i| {
            // The features that push this row up and can be put into words, largest first.
            let mut pushing: Vec<(f64, &[usize])> = groups
                .iter()
                .filter_map(|(_, js)| {
                    let total: f64 = js.iter().map(|&j| contrib[[i, j]]).sum();
                    (total > 0.0 && js.iter().any(|&j| describable(&cols[j], x[[i, j]])))
                        .then_some((total, js.as_slice()))
                })
                .collect();
            pushing.sort_by(|a, b| b.0.total_cmp(&a.0));
            // Words only for the top k and whatever ties with the k-th.
            let last = pushing.get(k.saturating_sub(1)).map(|p| p.0);
            let mut chosen: Vec<(f64, String)> = pushing
                .into_iter()
                .enumerate()
                .take_while(|(rank, (total, _))| *rank < k || Some(*total) == last)
                .filter_map(|(_, (total, js))| words(i, js).map(|w| (total, w)))
                .collect();
            chosen.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            chosen.into_iter().take(k).map(|(_, w)| w).collect()
        })
        .collect()
}

/// Whether [`describe`] says something of this column's value (without the words).
fn describable(column: &EncodedColumn, value: f64) -> bool {
    match &column.kind {
        Encoding::Missing | Encoding::OneHot { .. } => value > 0.0,
        Encoding::Numeric { .. } | Encoding::Raw { .. } | Encoding::Codes { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::encoder::Mode;

    /// The reasons as first written: every pushing feature put into words, then sorted.
    fn reference(cols: &[EncodedColumn], x: &Array2<f64>, contrib: &Array2<f64>, k: usize) -> Vec<Vec<String>> {
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (j, c) in cols.iter().enumerate() {
            match groups.iter_mut().find(|(f, _)| *f == c.feature) {
                Some((_, js)) => js.push(j),
                None => groups.push((&c.feature, vec![j])),
            }
        }
        (0..x.nrows())
            .map(|i| {
                let mut per_feature: Vec<(f64, String)> = groups
                    .iter()
                    .filter_map(|(_, js)| {
                        let total: f64 = js.iter().map(|&j| contrib[[i, j]]).sum();
                        let words = js.iter().find_map(|&j| describe(&cols[j], x[[i, j]]))?;
                        (total > 0.0).then_some((total, words))
                    })
                    .collect();
                per_feature.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
                per_feature.into_iter().take(k).map(|(_, w)| w).collect()
            })
            .collect()
    }

    #[test]
    fn reasons_are_the_top_pushing_features_whatever_the_chunks() {
        use crate::models::logistic::LogisticModel;
        let col = |feature: &str, kind: Encoding| EncodedColumn { feature: feature.into(), kind };
        let numeric = || Encoding::Numeric { median: 0.0, mean: 0.0, std: 1.0 };
        let cols = vec![
            col("active_days_7", numeric()),
            col("price", numeric()),
            col("price", Encoding::Missing),
            col("is_trial", numeric()),
            col("plan", Encoding::OneHot { value: "premium_duo".into() }),
            col("plan", Encoding::OneHot { value: "premium_family".into() }),
            col("skips_30", numeric()),
        ];
        // Values on a coarse grid and equal weights, so that totals tie often.
        let n = 500;
        let x = Array2::from_shape_fn((n, cols.len()), |(i, j)| {
            let v = ((i * 7 + j * 13) % 5) as f64 - 2.0;
            if matches!(cols[j].kind, Encoding::Missing | Encoding::OneHot { .. }) { f64::from(v > 0.0) } else { v }
        });
        let model = LogisticModel { intercept: 0.0, coefficients: vec![1.0, 0.5, 0.5, 1.0, 1.0, 2.0, 0.5] };
        let encoder = Encoder { mode: Mode::Standardized, columns: cols.clone() };
        let whole = explain(&model, &encoder, &x, 3, n);
        assert_eq!(whole, reference(&cols, &x, &model.contributions(&x), 3), "only the top k are put into words");
        assert_eq!(explain(&model, &encoder, &x, 3, 7), whole, "chunks change nothing");
        assert!(
            whole.iter().any(|r| r.len() == 3)
                && whole.iter().any(|r| r.contains(&"high skips in the last 30 days".to_string()))
        );
    }
}
