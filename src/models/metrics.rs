//! Ranking and calibration metrics for a binary outcome.

use serde::{Deserialize, Deserializer, Serialize};

/// JSON has no NaN: serde_json writes it as `null`, and this reads it back.
fn f64_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Metrics {
    pub rows: usize,
    #[serde(deserialize_with = "f64_or_null")]
    pub positive_rate: f64,
    #[serde(deserialize_with = "f64_or_null")]
    pub auc: f64,
    /// Average precision: the area under the precision-recall curve.
    #[serde(deserialize_with = "f64_or_null")]
    pub pr_auc: f64,
    #[serde(deserialize_with = "f64_or_null")]
    pub log_loss: f64,
    #[serde(deserialize_with = "f64_or_null")]
    pub brier: f64,
    /// Expected calibration error over ten equal-width bins.
    #[serde(deserialize_with = "f64_or_null")]
    pub ece: f64,
    /// Positive rate in the top-scored decile over the overall positive rate.
    #[serde(deserialize_with = "f64_or_null")]
    pub top_decile_lift: f64,
}

/// Area under the ROC curve by the rank-sum formula (ties get their average rank).
pub fn auc(p: &[f64], y: &[i32]) -> f64 {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut ranks = vec![0.0; p.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && p[idx[j + 1]] == p[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = r;
        }
        i = j + 1;
    }
    let pos = y.iter().filter(|&&v| v == 1).count() as f64;
    let neg = y.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    let sum_pos: f64 = ranks.iter().zip(y).filter(|(_, v)| **v == 1).map(|(r, _)| r).sum();
    (sum_pos - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Average precision: mean precision at the rank of each positive (ties broken by row).
pub(crate) fn average_precision(p: &[f64], y: &[i32]) -> f64 {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    let positives = y.iter().filter(|&&v| v == 1).count();
    if positives == 0 {
        return f64::NAN;
    }
    let (mut hits, mut sum) = (0usize, 0.0);
    for (rank, &i) in order.iter().enumerate() {
        if y[i] == 1 {
            hits += 1;
            sum += hits as f64 / (rank + 1) as f64;
        }
    }
    sum / positives as f64
}

/// One bin of a reliability curve.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ReliabilityBin {
    pub rows: usize,
    #[serde(deserialize_with = "f64_or_null")]
    pub mean_predicted: f64,
    #[serde(deserialize_with = "f64_or_null")]
    pub observed_rate: f64,
}

/// Predicted against observed rates in ten bins of equal count (deciles of the score).
pub(crate) fn reliability(p: &[f64], y: &[i32]) -> Vec<ReliabilityBin> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
    let n = order.len();
    (0..10)
        .filter_map(|b| {
            let rows = &order[b * n / 10..(b + 1) * n / 10];
            (!rows.is_empty()).then(|| ReliabilityBin {
                rows: rows.len(),
                mean_predicted: rows.iter().map(|&i| p[i]).sum::<f64>() / rows.len() as f64,
                observed_rate: rows.iter().map(|&i| y[i] as f64).sum::<f64>() / rows.len() as f64,
            })
        })
        .collect()
}

pub(crate) fn evaluate(p: &[f64], y: &[i32]) -> Metrics {
    let n = p.len().max(1) as f64;
    let rate = y.iter().filter(|&&v| v == 1).count() as f64 / n;
    let log_loss = p
        .iter()
        .zip(y)
        .map(|(&pi, &yi)| {
            let pi = pi.clamp(1e-12, 1.0 - 1e-12);
            if yi == 1 { -pi.ln() } else { -(1.0 - pi).ln() }
        })
        .sum::<f64>()
        / n;
    let brier = p.iter().zip(y).map(|(&pi, &yi)| (pi - yi as f64).powi(2)).sum::<f64>() / n;
    let mut bins = [(0.0f64, 0.0f64, 0usize); 10];
    for (&pi, &yi) in p.iter().zip(y) {
        let b = ((pi * 10.0) as usize).min(9);
        bins[b].0 += pi;
        bins[b].1 += yi as f64;
        bins[b].2 += 1;
    }
    let ece = bins.iter().filter(|b| b.2 > 0).map(|b| (b.0 - b.1).abs()).sum::<f64>() / n;
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let top = (p.len() / 10).max(1).min(p.len());
    let top_rate = order[..top].iter().filter(|&&i| y[i] == 1).count() as f64 / top as f64;
    Metrics {
        rows: p.len(),
        positive_rate: rate,
        auc: auc(p, y),
        pr_auc: average_precision(p, y),
        log_loss,
        brier,
        ece,
        top_decile_lift: if rate > 0.0 { top_rate / rate } else { f64::NAN },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_rankings() {
        let y = [0, 0, 1, 1];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &y), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &y), 0.0);
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &y), 0.5);
    }

    #[test]
    fn average_precision_of_a_perfect_and_a_mixed_ranking() {
        assert_eq!(average_precision(&[0.9, 0.8, 0.1], &[1, 1, 0]), 1.0);
        // Positives at ranks 1 and 3: (1/1 + 2/3) / 2.
        assert!((average_precision(&[0.9, 0.8, 0.7], &[1, 0, 1]) - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }
}
