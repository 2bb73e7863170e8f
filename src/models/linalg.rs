//! The one linear solve of the Newton fits: the logistic churn model, the grace stage's
//! recovery and come-back models all take a Newton step by solving `H x = g` with H the
//! (penalised, so positive definite) Hessian.
//!
//! Why hand-written rather than a LAPACK binding: the systems are small (a few dozen
//! coefficients), a BLAS/LAPACK build is heavy here, and a fixed summation order keeps fits
//! bit-identical on every machine and thread count. The solver refuses a non-positive or
//! non-finite pivot, so a Hessian that lost definiteness (or met a NaN) stops the fit with
//! a clear error instead of spreading NaN through the coefficients.

/// Solve `a x = b` for a symmetric positive definite `a` (row-major, `b.len()` × `b.len()`)
/// by Cholesky. None when a pivot is not positive and finite.
pub(crate) fn cholesky_solve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let p = b.len();
    debug_assert_eq!(a.len(), p * p, "a square system");
    let mut l = vec![0.0; p * p];
    for i in 0..p {
        for j in 0..=i {
            let mut s = a[i * p + j];
            for k in 0..j {
                s -= l[i * p + k] * l[j * p + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * p + i] = s.sqrt();
            } else {
                l[i * p + j] = s / l[j * p + j];
            }
        }
    }
    let mut y = vec![0.0; p];
    for i in 0..p {
        let s: f64 = (0..i).map(|k| l[i * p + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * p + i];
    }
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        let s: f64 = (i + 1..p).map(|k| l[k * p + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * p + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_positive_definite_system() {
        // a = [[4, 2], [2, 3]], x = [1, -2] → b = [0, -4].
        let x = cholesky_solve(&[4.0, 2.0, 2.0, 3.0], &[0.0, -4.0]).unwrap();
        assert!((x[0] - 1.0).abs() < 1e-12 && (x[1] + 2.0).abs() < 1e-12, "{x:?}");
    }

    #[test]
    fn refuses_indefinite_and_non_finite_systems() {
        assert!(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0]).is_none(), "indefinite");
        assert!(cholesky_solve(&[f64::NAN, 0.0, 0.0, 1.0], &[1.0, 1.0]).is_none(), "NaN pivot");
        assert!(cholesky_solve(&[f64::INFINITY, 0.0, 0.0, 1.0], &[1.0, 1.0]).is_none(), "infinite pivot");
    }
}
