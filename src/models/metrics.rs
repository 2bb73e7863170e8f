//! Ranking and calibration metrics for a binary outcome.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    pub rows: usize,
    pub positive_rate: f64,
    pub auc: f64,
    pub log_loss: f64,
    pub brier: f64,
    /// Expected calibration error over ten equal-width bins.
    pub ece: f64,
    /// Positive rate in the top-scored decile over the overall positive rate.
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

pub fn evaluate(p: &[f64], y: &[i32]) -> Metrics {
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
}
