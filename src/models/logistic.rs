//! L2-regularised logistic regression, fitted with linfa-logistic and stored as plain
//! coefficients so scoring needs nothing but this file.

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::{Classifier, sigmoid};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogisticModel {
    pub intercept: f64,
    pub coefficients: Vec<f64>,
}

impl LogisticModel {
    /// Fit on encoded (standardised) rows and 0/1 labels.
    pub fn fit(x: &Array2<f64>, y: &[i32], l2: f64, max_iterations: u64) -> Result<Self> {
        let targets: Array1<bool> = y.iter().map(|&v| v == 1).collect();
        if targets.iter().all(|&t| t) || targets.iter().all(|&t| !t) {
            return Err(Error::data("the training labels have a single class: nothing to learn"));
        }
        let dataset = Dataset::new(x.clone(), targets);
        let fitted = LogisticRegression::default()
            .alpha(l2)
            .max_iterations(max_iterations)
            .fit(&dataset)
            .map_err(|e| Error::internal(format!("logistic regression did not fit: {e}")))?;
        let mut model = LogisticModel { intercept: fitted.intercept(), coefficients: fitted.params().to_vec() };
        // linfa's coefficients give the log-odds of the class it calls positive (the more
        // frequent one); orient them to give P(label = 1).
        if !fitted.labels().pos.class {
            model.intercept = -model.intercept;
            model.coefficients.iter_mut().for_each(|c| *c = -*c);
        }
        Ok(model)
    }
}

impl Classifier for LogisticModel {
    fn name(&self) -> String {
        "logistic-l2/1".into()
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
    fn learns_the_sign_of_a_real_effect_whatever_the_first_label() {
        // y = 1 exactly when x0 > 0; x1 is noise.
        let n = 400;
        let x = Array2::from_shape_fn((n, 2), |(i, j)| {
            let t = i as f64 / n as f64;
            if j == 0 { (t * 37.0).sin() } else { (t * 91.0).cos() }
        });
        let y: Vec<i32> = (0..n).map(|i| i32::from(x[[i, 0]] > 0.0)).collect();
        for flip_first in [false, true] {
            let (mut x2, mut y2) = (x.clone(), y.clone());
            if flip_first {
                // Make the first row a positive one.
                let k = y2.iter().position(|&v| v == 1).unwrap();
                y2.swap(0, k);
                let (r0, rk) = (x2.row(0).to_owned(), x2.row(k).to_owned());
                x2.row_mut(0).assign(&rk);
                x2.row_mut(k).assign(&r0);
            }
            let m = LogisticModel::fit(&x2, &y2, 0.1, 200).unwrap();
            assert!(m.coefficients[0] > 1.0, "x0 raises P(y=1): {:?}", m.coefficients);
            assert!(m.coefficients[1].abs() < m.coefficients[0] / 3.0);
        }
    }
}
