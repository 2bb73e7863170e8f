//! A small penalised logistic regression on sparse rows, solved by Newton's method.
//!
//! Why not linfa: the hazard models have a few hundred coefficients, almost all of them
//! one-hot indicators (day since failure × failure reason, day-of-month bucket, …), so
//! each episode-day row has about fifteen non-zeros. Building X'WX from sparse rows and
//! solving the dense p × p system by Cholesky takes milliseconds even in a debug build,
//! and the ridge penalty per coefficient (heavier on interactions) is what shrinks sparse
//! cells toward their main effects.

/// Rows of a sparse design, with a 0/1 outcome per row.
#[derive(Debug, Clone, Default)]
pub(crate) struct Design {
    pub p: usize,
    idx: Vec<u32>,
    val: Vec<f64>,
    start: Vec<usize>,
    y: Vec<f64>,
}

impl Design {
    pub(crate) fn new(p: usize) -> Self {
        Design { p, start: vec![0], ..Default::default() }
    }

    /// Add one row: its non-zero entries and its outcome.
    pub(crate) fn push(&mut self, x: &[(usize, f64)], y: bool) {
        for &(j, v) in x {
            debug_assert!(j < self.p);
            self.idx.push(j as u32);
            self.val.push(v);
        }
        self.start.push(self.idx.len());
        self.y.push(if y { 1.0 } else { 0.0 });
    }

    pub(crate) fn rows(&self) -> usize {
        self.y.len()
    }

    pub(crate) fn events(&self) -> f64 {
        self.y.iter().sum()
    }

    fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let (a, b) = (self.start[i], self.start[i + 1]);
        (&self.idx[a..b], &self.val[a..b])
    }
}

/// A fitted model: coefficients and how the fit went.
#[derive(Debug, Clone)]
pub(crate) struct Fit {
    pub beta: Vec<f64>,
    pub iterations: usize,
    pub log_likelihood: f64,
}

use crate::models::linalg::cholesky_solve;
pub(crate) use crate::models::sigmoid;

pub(crate) fn linear(beta: &[f64], x: &[(usize, f64)]) -> f64 {
    x.iter().map(|&(j, v)| beta[j] * v).sum()
}

/// Maximise Σ log-likelihood − ½ Σ penalty_j β_j², starting from `start`.
pub(crate) fn fit(d: &Design, penalty: &[f64], start: Vec<f64>, max_iter: usize) -> Fit {
    let p = d.p;
    assert_eq!(penalty.len(), p);
    let objective = |beta: &[f64]| -> f64 {
        let mut ll = 0.0;
        for i in 0..d.rows() {
            let (ix, v) = d.row(i);
            let z: f64 = ix.iter().zip(v).map(|(&j, &x)| beta[j as usize] * x).sum();
            // log σ(z) for y = 1, log(1 − σ(z)) for y = 0, computed stably.
            let s = if d.y[i] > 0.5 { z } else { -z };
            ll -= if s > 0.0 { (-s).exp().ln_1p() } else { -s + s.exp().ln_1p() };
        }
        ll - 0.5 * beta.iter().zip(penalty).map(|(b, l)| l * b * b).sum::<f64>()
    };
    let mut beta = start;
    let mut obj = objective(&beta);
    let mut iterations = 0;
    for it in 0..max_iter {
        iterations = it + 1;
        let mut grad: Vec<f64> = beta.iter().zip(penalty).map(|(b, l)| -l * b).collect();
        let mut hess = vec![0.0; p * p];
        for (j, l) in penalty.iter().enumerate() {
            hess[j * p + j] = l + 1e-9;
        }
        for i in 0..d.rows() {
            let (ix, v) = d.row(i);
            let z: f64 = ix.iter().zip(v).map(|(&j, &x)| beta[j as usize] * x).sum();
            let mu = sigmoid(z);
            let w = (mu * (1.0 - mu)).max(1e-12);
            let r = d.y[i] - mu;
            for (a, (&ja, &xa)) in ix.iter().zip(v).enumerate() {
                grad[ja as usize] += r * xa;
                let row = ja as usize * p;
                for (&jb, &xb) in ix[..=a].iter().zip(&v[..=a]) {
                    hess[row + jb as usize] += w * xa * xb;
                }
            }
        }
        // Only one triangle was accumulated (the row order of indices is arbitrary):
        // fold it into a full symmetric matrix.
        for a in 0..p {
            for b in 0..a {
                let s = hess[a * p + b] + hess[b * p + a];
                hess[a * p + b] = s;
                hess[b * p + a] = s;
            }
        }
        let Some(step) = cholesky_solve(&hess, &grad) else { break };
        let mut t = 1.0;
        let mut improved = false;
        for _ in 0..30 {
            let cand: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b + t * s).collect();
            let o = objective(&cand);
            if o >= obj - 1e-12 {
                let gain = o - obj;
                beta = cand;
                obj = o;
                improved = gain > 1e-8 * (1.0 + obj.abs());
                break;
            }
            t *= 0.5;
        }
        if !improved {
            break;
        }
    }
    let penalty_term = 0.5 * beta.iter().zip(penalty).map(|(b, l)| l * b * b).sum::<f64>();
    Fit { beta, iterations, log_likelihood: obj + penalty_term }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_coefficients_of_a_simulated_logistic_model() {
        // y ~ Bernoulli(σ(-1 + 0.8 x1 - 1.5 [group])) on a deterministic pseudo-random grid.
        let mut d = Design::new(3);
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..20_000 {
            let x1 = next() * 4.0 - 2.0;
            let g = next() < 0.4;
            let mut x = vec![(0, 1.0), (1, x1)];
            if g {
                x.push((2, 1.0));
            }
            let p = sigmoid(-1.0 + 0.8 * x1 - if g { 1.5 } else { 0.0 });
            d.push(&x, next() < p);
        }
        let f = fit(&d, &[0.0, 1e-3, 1e-3], vec![0.0; 3], 50);
        assert!((f.beta[0] + 1.0).abs() < 0.08, "{:?}", f.beta);
        assert!((f.beta[1] - 0.8).abs() < 0.06, "{:?}", f.beta);
        assert!((f.beta[2] + 1.5).abs() < 0.1, "{:?}", f.beta);
        assert!(f.iterations < 15);
    }

    #[test]
    fn a_heavy_penalty_shrinks_toward_zero() {
        let mut d = Design::new(2);
        for i in 0..100 {
            d.push(&[(0, 1.0), (1, 1.0)], i % 2 == 0);
            d.push(&[(0, 1.0)], i % 10 == 0);
        }
        let loose = fit(&d, &[0.0, 1e-6], vec![0.0; 2], 50);
        let tight = fit(&d, &[0.0, 1e6], vec![0.0; 2], 50);
        assert!(loose.beta[1] > 1.5 && tight.beta[1].abs() < 1e-3);
    }
}
