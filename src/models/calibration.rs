//! Calibration on the validation snapshot, so a calibrated 0.2 means one in five.
//!
//! Two calibrators: Platt (a logistic fit of the outcome on the model's log-odds: two
//! parameters, smooth, safe on small sets) and isotonic regression (a monotone step
//! function: no shape assumption, needs more rows). Which one a model gets is decided by
//! cross-fitting on the validation rows: each is fitted on one half and scored by log loss
//! on the other, both ways; the better is then fitted on all of them.

use serde::{Deserialize, Serialize};

use super::classifier::{logit, sigmoid};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "method", rename_all = "snake_case")]
pub(crate) enum Calibration {
    Platt(Platt),
    Isotonic(Isotonic),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub(crate) struct Platt {
    pub a: f64,
    pub b: f64,
}

/// A non-decreasing step function: `thresholds[i]` is the smallest raw score of block i.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Isotonic {
    pub thresholds: Vec<f64>,
    pub values: Vec<f64>,
}

impl Calibration {
    pub(crate) fn apply(&self, p_raw: f64) -> f64 {
        match self {
            Calibration::Platt(c) => c.apply(p_raw),
            Calibration::Isotonic(c) => c.apply(p_raw),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Calibration::Platt(_) => "platt",
            Calibration::Isotonic(_) => "isotonic",
        }
    }

    /// Choose and fit a calibrator on validation rows. Also returns cross-fitted
    /// calibrated predictions (each row calibrated by a fit that did not see it), which
    /// give honest validation metrics.
    pub(crate) fn choose(p_raw: &[f64], y: &[i32]) -> (Calibration, Vec<f64>) {
        let n = p_raw.len();
        // Halves by position parity: rows are ordered by user id, so this is a fixed,
        // label-independent split.
        let half =
            |k: usize| -> (Vec<f64>, Vec<i32>) { (0..n).filter(|i| i % 2 == k).map(|i| (p_raw[i], y[i])).unzip() };
        let (pa, ya) = half(0);
        let (pb, yb) = half(1);
        let cross = |fit: &dyn Fn(&[f64], &[i32]) -> Calibration| -> Vec<f64> {
            let (ca, cb) = (fit(&pa, &ya), fit(&pb, &yb));
            (0..n).map(|i| if i % 2 == 0 { cb.apply(p_raw[i]) } else { ca.apply(p_raw[i]) }).collect()
        };
        let platt_fit = |p: &[f64], y: &[i32]| Calibration::Platt(Platt::fit(p, y));
        let iso_fit = |p: &[f64], y: &[i32]| Calibration::Isotonic(Isotonic::fit(p, y));
        let platt_cv = cross(&platt_fit);
        let iso_cv = cross(&iso_fit);
        let loss = |q: &[f64]| super::metrics::evaluate(q, y).log_loss;
        if n >= 200 && loss(&iso_cv) < loss(&platt_cv) {
            (iso_fit(p_raw, y), iso_cv)
        } else {
            (platt_fit(p_raw, y), platt_cv)
        }
    }
}

impl Platt {
    pub(crate) const IDENTITY: Platt = Platt { a: 1.0, b: 0.0 };

    /// Fit by Newton's method on the log-likelihood (a small ridge keeps it finite when
    /// the validation set is separable or tiny).
    pub(crate) fn fit(p_raw: &[f64], y: &[i32]) -> Platt {
        let z: Vec<f64> = p_raw.iter().map(|&p| logit(p)).collect();
        let (mut a, mut b) = (1.0, 0.0);
        let ridge = 1e-3;
        for _ in 0..50 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (ridge * (a - 1.0), ridge * b, ridge, 0.0, ridge);
            for (zi, &yi) in z.iter().zip(y) {
                let p = sigmoid(a * zi + b);
                let r = p - yi as f64;
                let w = (p * (1.0 - p)).max(1e-12);
                ga += r * zi;
                gb += r;
                haa += w * zi * zi;
                hab += w * zi;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-18 {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            a -= da;
            b -= db;
            if da.abs() + db.abs() < 1e-10 {
                break;
            }
        }
        if a.is_finite() && b.is_finite() { Platt { a, b } } else { Platt::IDENTITY }
    }

    pub(crate) fn apply(&self, p_raw: f64) -> f64 {
        sigmoid(self.a * logit(p_raw) + self.b)
    }
}

impl Isotonic {
    /// Pool-adjacent-violators on rows sorted by raw score; block values are shrunk a
    /// little toward the overall rate so no calibrated probability is exactly 0 or 1.
    pub(crate) fn fit(p_raw: &[f64], y: &[i32]) -> Isotonic {
        let mut order: Vec<usize> = (0..p_raw.len()).collect();
        order.sort_by(|&a, &b| p_raw[a].total_cmp(&p_raw[b]));
        // Blocks of (start score, sum of y, count).
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        for &i in &order {
            blocks.push((p_raw[i], y[i] as f64, 1.0));
            while blocks.len() >= 2 {
                let (s1, y1, n1) = blocks[blocks.len() - 2];
                let (_, y2, n2) = blocks[blocks.len() - 1];
                if y1 / n1 >= y2 / n2 {
                    blocks.pop();
                    let last = blocks.len() - 1;
                    blocks[last] = (s1, y1 + y2, n1 + n2);
                } else {
                    break;
                }
            }
        }
        let total: f64 = y.iter().map(|&v| v as f64).sum::<f64>();
        let rate = if y.is_empty() { 0.5 } else { total / y.len() as f64 };
        let prior = 1.0;
        Isotonic {
            thresholds: blocks.iter().map(|b| b.0).collect(),
            values: blocks.iter().map(|b| (b.1 + prior * rate) / (b.2 + prior)).collect(),
        }
    }

    pub(crate) fn apply(&self, p_raw: f64) -> f64 {
        match self.thresholds.partition_point(|&t| t <= p_raw) {
            0 => self.values.first().copied().unwrap_or(p_raw),
            k => self.values[k - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_corrects_systematic_overconfidence() {
        // True probability 0.1 everywhere, the model says 0.4.
        let p = vec![0.4; 1000];
        let y: Vec<i32> = (0..1000).map(|i| i32::from(i % 10 == 0)).collect();
        let c = Platt::fit(&p, &y);
        assert!((c.apply(0.4) - 0.1).abs() < 0.01, "{}", c.apply(0.4));
    }

    #[test]
    fn isotonic_is_monotone_and_matches_block_rates() {
        // Scores 0..1; outcome rate 0.1 below 0.5 and 0.6 above.
        let n = 2000;
        let p: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
        let y: Vec<i32> =
            (0..n).map(|i| if i < n / 2 { i32::from(i % 10 == 0) } else { i32::from(i % 5 < 3) }).collect();
        let c = Isotonic::fit(&p, &y);
        assert!(c.values.windows(2).all(|w| w[0] <= w[1]));
        assert!((c.apply(0.25) - 0.1).abs() < 0.05, "{}", c.apply(0.25));
        assert!((c.apply(0.75) - 0.6).abs() < 0.05, "{}", c.apply(0.75));
    }

    #[test]
    fn choosing_prefers_isotonic_when_the_distortion_is_not_logistic() {
        // A flat rate of 0.2 over most scores, then a jump: a logistic map of the log-odds
        // cannot be flat over a wide range and steep at one point.
        let n = 4000;
        let p: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect();
        let y: Vec<i32> =
            (0..n).map(|i| if p[i] < 0.9 { i32::from(i % 5 == 0) } else { i32::from(i % 20 != 0) }).collect();
        let (c, cv) = Calibration::choose(&p, &y);
        assert_eq!(c.name(), "isotonic");
        assert_eq!(cv.len(), n);
    }
}
