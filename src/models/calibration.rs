//! Platt calibration: a one-feature logistic fit of the outcome on the model's log-odds,
//! on the validation snapshot, so a calibrated 0.2 means one in five.

use serde::{Deserialize, Serialize};

use super::{logit, sigmoid};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

impl Platt {
    pub const IDENTITY: Platt = Platt { a: 1.0, b: 0.0 };

    /// Fit by Newton's method on the log-likelihood (a small ridge keeps it finite when
    /// the validation set is separable or tiny).
    pub fn fit(p_raw: &[f64], y: &[i32]) -> Platt {
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

    pub fn apply(&self, p_raw: f64) -> f64 {
        sigmoid(self.a * logit(p_raw) + self.b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrects_systematic_overconfidence() {
        // True probability 0.1 everywhere, the model says 0.4.
        let p = vec![0.4; 1000];
        let y: Vec<i32> = (0..1000).map(|i| i32::from(i % 10 == 0)).collect();
        let c = Platt::fit(&p, &y);
        assert!((c.apply(0.4) - 0.1).abs() < 0.01, "{}", c.apply(0.4));
    }
}
