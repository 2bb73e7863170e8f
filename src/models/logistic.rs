//! L2-regularised logistic regression, fitted by Newton's method (iteratively reweighted
//! least squares) and stored as plain coefficients so scoring needs nothing but this file.
//!
//! Why not linfa-logistic: measured here it needs about 3× scikit-learn's CPU time on
//! 1M × 40 (L-BFGS through argmin, generic code that is also unusably slow in debug
//! builds). With standardised features and a few dozen columns, Newton's method converges
//! in a handful of iterations, and each iteration is one matrix product X'WX that the
//! `matrixmultiply` kernels behind ndarray do at full speed.
//!
//! How an iteration runs: the rows are cut into chunks of [`CHUNK`] rows. For each chunk,
//! one pass over its rows computes the probabilities q, adds the gradient X'(q − y) up
//! row by row, and writes the rows scaled by √(q(1 − q)) into a chunk-sized buffer whose
//! product with itself is the chunk's share of the Hessian X'WX. No copy of the whole
//! design is made (the first version copied it twice per iteration, 2 GB each at 3.4M ×
//! 72), the buffers stay small, and the chunks run in parallel on the current rayon pool.
//!
//! Why the result does not depend on the thread count: floating-point addition is not
//! associative, so a sum split among threads as they come would change in its last bits
//! from run to run, and so would the coefficients and every score after them; the
//! pipeline's outputs must be byte-identical across reruns. Here the chunk boundaries
//! depend only on the number of rows, each chunk's partial sums are computed by one
//! thread in row order, and the partial sums are added sequentially in chunk order; the
//! linear predictor is computed row by row. The same inputs give bit-identical
//! coefficients on one thread or many (a test checks it). On another CPU, `matrixmultiply`
//! may choose another kernel (with or without FMA) and round differently, as before.

use std::ops::Range;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Zip, s};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::classifier::{Classifier, sigmoid};
use super::linalg::cholesky_solve;
use crate::error::{Error, Result};

/// Rows per chunk of the parallel sums. Fixed, never derived from the thread count: the
/// chunk boundaries decide how the sums are rounded. At 72 columns a chunk's scaled
/// buffer is about 9 MB.
const CHUNK: usize = 16_384;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogisticModel {
    pub intercept: f64,
    pub coefficients: Vec<f64>,
}

/// log(1 + e^z), computed without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() }
}

/// The training rows, labels and penalty, with the fixed chunking of the rows. A weight
/// vector `w` has the intercept first, then one coefficient per column of `x`.
struct Problem<'a> {
    x: ArrayView2<'a, f64>,
    y: Vec<f64>,
    /// Per-row weights; None weighs every row 1 (and computes exactly the unweighted sums).
    weights: Option<&'a [f64]>,
    l2: f64,
    chunks: Vec<Range<usize>>,
}

impl Problem<'_> {
    fn new<'a>(x: ArrayView2<'a, f64>, y: &[i32], weights: Option<&'a [f64]>, l2: f64) -> Problem<'a> {
        let n = x.nrows();
        let chunks = (0..n).step_by(CHUNK).map(|a| a..(a + CHUNK).min(n)).collect();
        Problem { x, y: y.iter().map(|&v| v as f64).collect(), weights, l2, chunks }
    }

    fn weight(&self, i: usize) -> f64 {
        self.weights.map_or(1.0, |w| w[i])
    }

    /// The linear predictor z = w₀ + X w₁.. and the penalised negative log-likelihood
    /// Σ ωᵢ (log(1 + e^z) − y z) + l2/2 · ‖w₁..‖² (intercept free, ω the row weights). Each z is one row's own
    /// dot product; the log-likelihood is summed per chunk, then over chunks in order.
    fn evaluate(&self, w: &[f64]) -> (Vec<f64>, f64) {
        let coefficients = ArrayView1::from(&w[1..]);
        let mut z = vec![0.0; self.x.nrows()];
        let parts: Vec<f64> = z
            .par_chunks_mut(CHUNK)
            .zip(self.chunks.par_iter())
            .map(|(out, rows)| {
                let mut nll = 0.0;
                for (((zi, row), &yi), i) in out
                    .iter_mut()
                    .zip(self.x.slice(s![rows.clone(), ..]).rows())
                    .zip(&self.y[rows.clone()])
                    .zip(rows.clone())
                {
                    *zi = w[0] + row.dot(&coefficients);
                    nll += self.weight(i) * (softplus(*zi) - yi * *zi);
                }
                nll
            })
            .collect();
        let penalty = 0.5 * self.l2 * w[1..].iter().map(|v| v * v).sum::<f64>();
        (z, parts.iter().sum::<f64>() + penalty)
    }

    /// The unpenalised Hessian X'WX and gradient X'Ω(q − y) at the linear predictor `z`,
    /// with the intercept's column of ones first, W = Ω diag(q(1 − q)) (q(1 − q) floored
    /// at 1e-10), Ω the row weights.
    fn newton_sums(&self, z: &[f64]) -> (Array2<f64>, Array1<f64>) {
        let k = self.x.ncols() + 1;
        let rows_per_buffer = CHUNK.min(self.x.nrows());
        let parts: Vec<(Array2<f64>, Array1<f64>)> = self
            .chunks
            .par_iter()
            .map_init(|| Array2::zeros((rows_per_buffer, k)), |buffer, rows| self.chunk_sums(rows.clone(), z, buffer))
            .collect();
        let mut hessian = Array2::<f64>::zeros((k, k));
        let mut gradient = Array1::<f64>::zeros(k);
        for (h, g) in &parts {
            hessian += h;
            gradient += g;
        }
        (hessian, gradient)
    }

    /// One chunk's share of [`Problem::newton_sums`], in one pass over its rows. `buffer`
    /// is scratch space of at least `rows.len()` rows; whatever it holds is overwritten.
    fn chunk_sums(&self, rows: Range<usize>, z: &[f64], buffer: &mut Array2<f64>) -> (Array2<f64>, Array1<f64>) {
        let mut gradient = Array1::<f64>::zeros(self.x.ncols() + 1);
        let mut scaled = buffer.slice_mut(s![..rows.len(), ..]);
        for ((i, row), mut out) in rows.clone().zip(self.x.slice(s![rows, ..]).rows()).zip(scaled.rows_mut()) {
            let q = sigmoid(z[i]);
            let omega = self.weight(i);
            let root_weight = (q * (1.0 - q)).max(1e-10).sqrt() * omega.sqrt();
            let residual = omega * (q - self.y[i]);
            out[0] = root_weight;
            gradient[0] += residual;
            Zip::from(out.slice_mut(s![1..])).and(gradient.slice_mut(s![1..])).and(&row).for_each(|o, g, &v| {
                *o = v * root_weight;
                *g += residual * v;
            });
        }
        (scaled.t().dot(&scaled), gradient)
    }
}

impl LogisticModel {
    /// Fit on encoded (standardised) rows and 0/1 labels. Runs on the current rayon pool;
    /// the result does not depend on its size.
    pub fn fit(x: &Array2<f64>, y: &[i32], l2: f64, max_iterations: u64) -> Result<Self> {
        Self::fit_weighted(x, y, None, l2, max_iterations)
    }

    /// [`LogisticModel::fit`] with a weight per row (a sampled row standing for several):
    /// each row's log-likelihood counts `weights[i]` times.
    pub fn fit_weighted(
        x: &Array2<f64>,
        y: &[i32],
        weights: Option<&[f64]>,
        l2: f64,
        max_iterations: u64,
    ) -> Result<Self> {
        let (n, p) = x.dim();
        if y.iter().all(|&v| v == 1) || y.iter().all(|&v| v == 0) {
            return Err(Error::data("the training labels have a single class: nothing to learn"));
        }
        if y.len() != n {
            return Err(Error::internal(format!("logistic regression: {n} rows but {} labels", y.len())));
        }
        if weights.is_some_and(|w| w.len() != n || w.iter().any(|&v| !(v.is_finite() && v > 0.0))) {
            return Err(Error::internal(format!("logistic regression: {n} rows need as many positive weights")));
        }
        let problem = Problem::new(x.view(), y, weights, l2);
        let total: f64 = (0..n).map(|i| problem.weight(i)).sum();
        let rate = (0..n).map(|i| problem.weight(i) * problem.y[i]).sum::<f64>() / total;
        let mut w = vec![0.0; p + 1];
        w[0] = (rate / (1.0 - rate)).ln();
        let (mut z, mut f) = problem.evaluate(&w);
        for _ in 0..max_iterations.max(1) {
            let (mut hess, mut grad) = problem.newton_sums(&z);
            for j in 1..=p {
                grad[j] += l2 * w[j];
                hess[[j, j]] += l2;
            }
            // A tiny ridge on every diagonal keeps the system solvable on separable data.
            for j in 0..=p {
                hess[[j, j]] += 1e-9 * (1.0 + hess[[j, j]]);
            }
            let step = cholesky_solve(
                hess.as_slice().expect("a new matrix is contiguous"),
                grad.as_slice().expect("contiguous"),
            )
            .ok_or_else(|| Error::internal("logistic regression: singular Hessian"))?;
            // Newton step with halving until the objective does not increase.
            let mut t = 1.0;
            let (new_w, new_z, new_f) = loop {
                let cand: Vec<f64> = w.iter().zip(step.iter()).map(|(w, s)| w - t * s).collect();
                let (cz, cf) = problem.evaluate(&cand);
                if cf <= f + 1e-12 * f.abs() || t < 1e-6 {
                    break (cand, cz, cf);
                }
                t *= 0.5;
            };
            let change = (f - new_f).abs() / f.abs().max(1.0);
            (w, z, f) = (new_w, new_z, new_f);
            if change < 1e-10 {
                break;
            }
        }
        Ok(LogisticModel { intercept: w[0], coefficients: w[1..].to_vec() })
    }
}

impl Classifier for LogisticModel {
    fn name(&self) -> String {
        "logistic-l2/newton".into()
    }

    fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        // A plain left-to-right sum rather than a BLAS-style dot: its result must not
        // depend on memory alignment, or a rerun would differ in the last bit.
        x.rows()
            .into_iter()
            .map(|row| sigmoid(row.iter().zip(&self.coefficients).fold(self.intercept, |acc, (v, w)| acc + v * w)))
            .collect()
    }

    fn contributions(&self, x: &Array2<f64>) -> Array2<f64> {
        let w = Array1::from(self.coefficients.clone());
        x * &w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_known_coefficients() {
        // y ~ Bernoulli(sigmoid(-1 + 2 x0 - 1 x1)), x2 is noise; deterministic pseudo-draws.
        let n = 20_000;
        let x = Array2::from_shape_fn((n, 3), |(i, j)| {
            let h = xxhash_rust::xxh3::xxh3_64(&((i * 3 + j) as u64).to_le_bytes());
            (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        });
        let y: Vec<i32> = (0..n)
            .map(|i| {
                let p = sigmoid(-1.0 + 2.0 * x[[i, 0]] - x[[i, 1]]);
                let u = (xxhash_rust::xxh3::xxh3_64(&(i as u64 + 1_000_000).to_le_bytes()) >> 11) as f64
                    / (1u64 << 53) as f64;
                i32::from(u < p)
            })
            .collect();
        let m = LogisticModel::fit(&x, &y, 1e-6, 50).unwrap();
        assert!((m.intercept + 1.0).abs() < 0.1, "{m:?}");
        assert!((m.coefficients[0] - 2.0).abs() < 0.15, "{m:?}");
        assert!((m.coefficients[1] + 1.0).abs() < 0.15, "{m:?}");
        assert!(m.coefficients[2].abs() < 0.1, "{m:?}");
        // A strong penalty shrinks toward zero.
        let shrunk = LogisticModel::fit(&x, &y, 1e5, 50).unwrap();
        assert!(shrunk.coefficients[0].abs() < 0.5 * m.coefficients[0].abs());
    }

    /// A straightforward dense Newton fit, sums in one sequential pass over the rows: the
    /// reference the chunked, parallel fit must agree with.
    fn reference_fit(x: &Array2<f64>, y: &[i32], l2: f64, max_iterations: u64) -> Vec<f64> {
        let (n, p) = x.dim();
        let k = p + 1;
        let row = |i: usize| std::iter::once(1.0).chain(x.row(i).iter().copied()).collect::<Vec<f64>>();
        let evaluate = |w: &[f64]| {
            let z: Vec<f64> = (0..n).map(|i| row(i).iter().zip(w).map(|(a, b)| a * b).sum::<f64>()).collect();
            let nll: f64 = z.iter().zip(y).map(|(&z, &y)| softplus(z) - y as f64 * z).sum();
            let f = nll + 0.5 * l2 * w[1..].iter().map(|v| v * v).sum::<f64>();
            (z, f)
        };
        let rate = y.iter().filter(|&&v| v == 1).count() as f64 / n as f64;
        let mut w = vec![0.0; k];
        w[0] = (rate / (1.0 - rate)).ln();
        let (mut z, mut f) = evaluate(&w);
        for _ in 0..max_iterations {
            let mut hess = Array2::<f64>::zeros((k, k));
            let mut grad = Array1::<f64>::zeros(k);
            for i in 0..n {
                let (xi, q) = (row(i), sigmoid(z[i]));
                let weight = (q * (1.0 - q)).max(1e-10);
                for a in 0..k {
                    grad[a] += (q - y[i] as f64) * xi[a];
                    for b in 0..k {
                        hess[[a, b]] += weight * xi[a] * xi[b];
                    }
                }
            }
            for j in 1..k {
                grad[j] += l2 * w[j];
                hess[[j, j]] += l2;
            }
            for j in 0..k {
                hess[[j, j]] += 1e-9 * (1.0 + hess[[j, j]]);
            }
            let step = cholesky_solve(hess.as_slice().unwrap(), grad.as_slice().unwrap()).unwrap();
            let mut t = 1.0;
            let (new_w, new_z, new_f) = loop {
                let cand: Vec<f64> = w.iter().zip(step.iter()).map(|(w, s)| w - t * s).collect();
                let (cz, cf) = evaluate(&cand);
                if cf <= f + 1e-12 * f.abs() || t < 1e-6 {
                    break (cand, cz, cf);
                }
                t *= 0.5;
            };
            let change = (f - new_f).abs() / f.abs().max(1.0);
            (w, z, f) = (new_w, new_z, new_f);
            if change < 1e-10 {
                break;
            }
        }
        w
    }

    /// A problem of several chunks, the last one partial: uniform features of different
    /// scales and a label drawn from a known logistic model.
    fn several_chunks() -> (Array2<f64>, Vec<i32>) {
        let (n, p) = (2 * CHUNK + 5_003, 6);
        let unit = |seed: u64| (xxhash_rust::xxh3::xxh3_64(&seed.to_le_bytes()) >> 11) as f64 / (1u64 << 53) as f64;
        let x = Array2::from_shape_fn((n, p), |(i, j)| (unit((i * p + j) as u64) * 2.0 - 1.0) * (1.0 + j as f64));
        let y = (0..n)
            .map(|i| {
                let z = 0.5 + x[[i, 0]] - 0.3 * x[[i, 1]] + 0.1 * x[[i, 2]] - 0.05 * x[[i, 4]];
                i32::from(unit(i as u64 + 7_000_000) < sigmoid(z))
            })
            .collect();
        (x, y)
    }

    #[test]
    fn a_row_of_weight_two_counts_as_the_row_twice() {
        let (x, y) = several_chunks();
        let n = x.nrows();
        // Every third row weighs 2 in one fit and appears twice in the other.
        let weights: Vec<f64> = (0..n).map(|i| if i % 3 == 0 { 2.0 } else { 1.0 }).collect();
        let twice: Vec<usize> = (0..n).flat_map(|i| if i % 3 == 0 { vec![i, i] } else { vec![i] }).collect();
        let xd = x.select(ndarray::Axis(0), &twice);
        let yd: Vec<i32> = twice.iter().map(|&i| y[i]).collect();
        let weighted = LogisticModel::fit_weighted(&x, &y, Some(&weights), 1.0, 100).unwrap();
        let duplicated = LogisticModel::fit(&xd, &yd, 1.0, 100).unwrap();
        let unweighted = LogisticModel::fit(&x, &y, 1.0, 100).unwrap();
        let close = |a: &LogisticModel, b: &LogisticModel| {
            (a.intercept - b.intercept).abs() < 1e-8
                && a.coefficients.iter().zip(&b.coefficients).all(|(u, v)| (u - v).abs() < 1e-8)
        };
        assert!(close(&weighted, &duplicated), "{weighted:?} against {duplicated:?}");
        assert!(!close(&weighted, &unweighted), "the weights change the fit");
        let ones = vec![1.0; n];
        let all_ones = LogisticModel::fit_weighted(&x, &y, Some(&ones), 1.0, 100).unwrap();
        assert_eq!(all_ones.coefficients, unweighted.coefficients, "weights of 1 are the unweighted fit, bit for bit");
        assert!(LogisticModel::fit_weighted(&x, &y, Some(&ones[1..]), 1.0, 100).is_err(), "one weight per row");
    }

    #[test]
    fn the_chunked_fit_matches_a_dense_reference() {
        let (x, y) = several_chunks();
        assert!(x.nrows() > 2 * CHUNK && x.nrows() % CHUNK != 0);
        let m = LogisticModel::fit(&x, &y, 1.0, 100).unwrap();
        let reference = reference_fit(&x, &y, 1.0, 100);
        let fitted: Vec<f64> = std::iter::once(m.intercept).chain(m.coefficients.iter().copied()).collect();
        for (a, b) in fitted.iter().zip(&reference) {
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "{fitted:?} against {reference:?}");
        }
        // The same rows stored column-major give the same model (not necessarily to the bit:
        // the row dot products then run in another order).
        let mut xf = Array2::<f64>::zeros(ndarray::ShapeBuilder::f(x.dim()));
        xf.assign(&x);
        let mf = LogisticModel::fit(&xf, &y, 1.0, 100).unwrap();
        assert!((mf.intercept - m.intercept).abs() < 1e-9);
        for (a, b) in mf.coefficients.iter().zip(&m.coefficients) {
            assert!((a - b).abs() < 1e-9, "{mf:?} against {m:?}");
        }
    }

    #[test]
    fn the_fit_is_bit_identical_on_any_number_of_threads() {
        let (x, y) = several_chunks();
        let bits = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let m = pool.install(|| LogisticModel::fit(&x, &y, 1.0, 100)).unwrap();
            std::iter::once(m.intercept).chain(m.coefficients).map(f64::to_bits).collect::<Vec<u64>>()
        };
        let one = bits(1);
        assert_eq!(one, bits(2));
        assert_eq!(one, bits(3));
        assert_eq!(one, bits(1), "a rerun on one thread");
    }

    #[test]
    fn mismatched_labels_are_an_error() {
        let x = Array2::<f64>::zeros((4, 2));
        assert!(LogisticModel::fit(&x, &[0, 1, 0], 1.0, 10).is_err());
    }

    #[test]
    fn separable_data_still_fits_with_a_penalty() {
        let x = Array2::from_shape_fn((100, 1), |(i, _)| i as f64 / 50.0 - 1.0);
        let y: Vec<i32> = (0..100).map(|i| i32::from(i >= 50)).collect();
        let m = LogisticModel::fit(&x, &y, 1.0, 100).unwrap();
        assert!(m.coefficients[0] > 3.0 && m.coefficients[0].is_finite());
    }
}
