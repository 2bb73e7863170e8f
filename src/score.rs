//! Scoring every premium user at S: calibrated churn probability, risk decile and the
//! features that push each user's risk up most, in words.

use ndarray::Array2;
use polars::prelude::*;

use crate::config::ScoreSettings;
use crate::error::{PolarsContext, Result};
use crate::features::feature;
use crate::models::encoder::{EncodedColumn, Encoding};
use crate::models::{ModelArtifact, Target};

/// The scores table for a features table (contract: `scores`), from each target's
/// champion: `churn_probability` (calibrated), `risk_decile`, `top_reasons`, and, beyond
/// the contract, `payment_failure_probability`.
pub(crate) fn score(features: &DataFrame, artifact: &ModelArtifact, settings: &ScoreSettings) -> Result<DataFrame> {
    let top_k = settings.top_reasons;
    let churn = artifact.target(Target::Churn)?.champion()?;
    let (x, p) = churn.predict(features)?;
    let deciles = risk_deciles(&p);
    let contributions = churn.fitted()?.classifier().contributions(&x);
    let reasons = top_reasons(&churn.encoder.columns, &x, &contributions, top_k);
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

/// Decile 1 holds the highest-risk tenth. Ties keep row order (rows are sorted by user id),
/// so the assignment is deterministic.
pub(crate) fn risk_deciles(p: &[f64]) -> Vec<i8> {
    let n = p.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    let mut out = vec![10i8; n];
    for (rank, &i) in order.iter().enumerate() {
        out[i] = (rank * 10 / n.max(1)) as i8 + 1;
    }
    out
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

/// Per row, the features whose contributions to the log-odds are largest and positive,
/// in words (a feature's encoded columns are summed).
fn top_reasons(cols: &[EncodedColumn], x: &Array2<f64>, contrib: &Array2<f64>, k: usize) -> Vec<Vec<String>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deciles_put_the_riskiest_tenth_first() {
        let p: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        let d = risk_deciles(&p);
        assert_eq!(d[99], 1);
        assert_eq!(d[0], 10);
        for k in 1..=10 {
            assert_eq!(d.iter().filter(|&&v| v == k).count(), 10);
        }
    }
}
