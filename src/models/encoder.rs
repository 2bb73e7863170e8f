//! Turning a features table into a numeric design matrix, fitted on training rows and
//! stored with the model so scoring encodes exactly as training did.
//!
//! Two layouts, one per model family:
//! - [`Mode::Standardized`] (linear models): numeric features imputed with the training
//!   median, plus a missing indicator where training saw missing values, then
//!   standardised; categorical features one-hot over the categories seen at least
//!   `MIN_CATEGORY_ROWS` times in training, the most frequent being the all-zero baseline.
//! - [`Mode::Native`] (gradient-boosted trees): numeric features as they are, missing as
//!   NaN (the trees learn where missing goes); categorical features as integer codes of
//!   the frequent categories, with one code for all others, for the trees' own
//!   categorical splits.

use ndarray::Array2;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, PolarsContext, Result};

/// Categories seen fewer times than this in training get no column or code of their own.
const MIN_CATEGORY_ROWS: usize = 20;
/// Most categories of one feature given a column or code.
const MAX_CATEGORIES: usize = 30;

/// Whether a column is a number or a category: all the encoder needs to know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    Numeric,
    Categorical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Standardized,
    Native,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Encoder {
    pub mode: Mode,
    pub(crate) columns: Vec<EncodedColumn>,
}

/// One column of the design matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EncodedColumn {
    /// The feature it comes from.
    pub feature: String,
    pub kind: Encoding,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Encoding {
    Numeric {
        median: f64,
        mean: f64,
        std: f64,
    },
    Missing,
    OneHot {
        value: String,
    },
    /// Native numeric: the value itself, NaN when missing; `median` says "high" or "low".
    Raw {
        median: f64,
    },
    /// Native categorical: the index in `values`, `values.len()` for any other, NaN when missing.
    Codes {
        values: Vec<String>,
    },
}

fn numeric_values(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let s = df
        .column(name)
        .ctx(format!("feature `{name}`"))?
        .cast(&DataType::Float64)
        .ctx(format!("feature `{name}` as a number"))?;
    Ok(s.f64().ctx(format!("feature `{name}`"))?.iter().map(|v| v.filter(|x| x.is_finite())).collect())
}

fn string_values(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>> {
    let s =
        df.column(name).ctx(format!("feature `{name}`"))?.cast(&DataType::String).ctx(format!("feature `{name}`"))?;
    Ok(s.str().ctx(format!("feature `{name}`"))?.iter().map(|v| v.map(str::to_string)).collect())
}

impl Encoder {
    /// Fit on the training rows of a table, for the named columns (`features::specs()`
    /// for the pipeline's features table, any columns of an analyst's flat table).
    pub fn fit(df: &DataFrame, mode: Mode, specs: &[(String, FeatureKind)]) -> Result<Self> {
        let mut columns = Vec::new();
        for (name, kind) in specs {
            let name = name.as_str();
            match kind {
                FeatureKind::Numeric => {
                    let vals = numeric_values(df, name)?;
                    let mut present: Vec<f64> = vals.iter().flatten().copied().collect();
                    if present.is_empty() {
                        continue; // never observed: carries no information
                    }
                    present.sort_by(f64::total_cmp);
                    let median = present[present.len() / 2];
                    if mode == Mode::Native {
                        columns.push(EncodedColumn { feature: name.into(), kind: Encoding::Raw { median } });
                        continue;
                    }
                    let n = vals.len() as f64;
                    let imputed: Vec<f64> = vals.iter().map(|v| v.unwrap_or(median)).collect();
                    let mean = imputed.iter().sum::<f64>() / n;
                    let var = imputed.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                    let std = if var > 1e-12 { var.sqrt() } else { 1.0 };
                    columns.push(EncodedColumn { feature: name.into(), kind: Encoding::Numeric { median, mean, std } });
                    if present.len() < vals.len() {
                        columns.push(EncodedColumn { feature: name.into(), kind: Encoding::Missing });
                    }
                }
                FeatureKind::Categorical => {
                    let vals = string_values(df, name)?;
                    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
                    for v in vals.into_iter().flatten() {
                        *counts.entry(v).or_default() += 1;
                    }
                    let mut frequent: Vec<(String, usize)> =
                        counts.into_iter().filter(|(_, c)| *c >= MIN_CATEGORY_ROWS).collect();
                    frequent.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                    if mode == Mode::Native {
                        let values = frequent.into_iter().take(MAX_CATEGORIES).map(|(v, _)| v).collect();
                        columns.push(EncodedColumn { feature: name.into(), kind: Encoding::Codes { values } });
                        continue;
                    }
                    // The most frequent category is the baseline (no column), so the
                    // one-hot block is not collinear with the intercept.
                    for (value, _) in frequent.into_iter().skip(1).take(MAX_CATEGORIES) {
                        columns.push(EncodedColumn { feature: name.into(), kind: Encoding::OneHot { value } });
                    }
                }
            }
        }
        Ok(Encoder { mode, columns })
    }

    /// Positions of the native categorical columns (for the trees' categorical splits).
    pub fn categorical_columns(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.kind, Encoding::Codes { .. }))
            .map(|(i, _)| i)
            .collect()
    }

    /// Each feature with the positions of its encoded columns, in the order of first
    /// appearance.
    pub(crate) fn columns_by_feature(&self) -> Vec<(&str, Vec<usize>)> {
        let mut features: Vec<(&str, Vec<usize>)> = Vec::new();
        for (j, c) in self.columns.iter().enumerate() {
            match features.iter_mut().find(|(f, _)| *f == c.feature) {
                Some((_, js)) => js.push(j),
                None => features.push((c.feature.as_str(), vec![j])),
            }
        }
        features
    }

    /// Encode rows of a features table (which must have every feature column).
    ///
    /// One feature at a time: its values are decoded once, written into each of its
    /// encoded columns, then dropped, so the only memory beyond the matrix is one
    /// feature's values (decoding every column first held 16 bytes per value for the whole
    /// table: several GB for the 3.4M training rows of a 1M-user night).
    pub fn transform(&self, df: &DataFrame) -> Result<Array2<f64>> {
        let n = df.height();
        let mut x = Array2::<f64>::zeros((n, self.columns.len()));
        for (name, js) in self.columns_by_feature() {
            if df.column(name).is_err() {
                return Err(Error::data(format!("features table has no column `{name}` that the model needs")));
            }
            let categorical =
                js.iter().any(|&j| matches!(self.columns[j].kind, Encoding::OneHot { .. } | Encoding::Codes { .. }));
            if categorical {
                let values = string_values(df, name)?;
                for &j in &js {
                    let mut column = x.column_mut(j);
                    match &self.columns[j].kind {
                        Encoding::OneHot { value } => {
                            for (out, v) in column.iter_mut().zip(&values) {
                                *out = if v.as_deref() == Some(value.as_str()) { 1.0 } else { 0.0 };
                            }
                        }
                        Encoding::Codes { values: known } => {
                            for (out, v) in column.iter_mut().zip(&values) {
                                *out = match v {
                                    None => f64::NAN,
                                    Some(v) => known.iter().position(|c| c == v).unwrap_or(known.len()) as f64,
                                };
                            }
                        }
                        other => return Err(Error::internal(format!("`{name}` mixes {other:?} with categories"))),
                    }
                }
            } else {
                let values = numeric_values(df, name)?;
                for &j in &js {
                    let mut column = x.column_mut(j);
                    match &self.columns[j].kind {
                        Encoding::Numeric { median, mean, std } => {
                            for (out, v) in column.iter_mut().zip(&values) {
                                *out = (v.unwrap_or(*median) - mean) / std;
                            }
                        }
                        Encoding::Missing => {
                            for (out, v) in column.iter_mut().zip(&values) {
                                *out = if v.is_none() { 1.0 } else { 0.0 };
                            }
                        }
                        Encoding::Raw { .. } => {
                            for (out, v) in column.iter_mut().zip(&values) {
                                *out = v.unwrap_or(f64::NAN);
                            }
                        }
                        other => return Err(Error::internal(format!("`{name}` mixes {other:?} with numbers"))),
                    }
                }
            }
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 50 rows: `a` numeric with one missing value; `c` a category: 30 "x", 18 "y" (fewer
    /// than the 20 rows a category needs for a column or code of its own), one "rare" and
    /// one missing.
    fn table() -> DataFrame {
        let a: Vec<Option<f64>> = (0..50).map(|i| if i == 3 { None } else { Some(i as f64) }).collect();
        let c: Vec<Option<&str>> = (0..50)
            .map(|i| match i {
                0..30 => Some("x"),
                30..48 => Some("y"),
                48 => Some("rare"),
                _ => None,
            })
            .collect();
        df!("a" => a, "c" => c).unwrap()
    }

    fn specs() -> Vec<(String, FeatureKind)> {
        vec![("a".into(), FeatureKind::Numeric), ("c".into(), FeatureKind::Categorical)]
    }

    #[test]
    fn each_mode_encodes_numbers_missing_values_and_categories() {
        let df = table();
        let native = Encoder::fit(&df, Mode::Native, &specs()).unwrap();
        let x = native.transform(&df).unwrap();
        assert_eq!(x.dim(), (50, 2));
        assert_eq!(x[[7, 0]], 7.0);
        assert!(x[[3, 0]].is_nan(), "missing stays missing for the trees");
        // "x" is the frequent category (code 0); "y" (18 rows) and "rare" are too rare for a
        // code of their own and share the "other" code; missing is NaN.
        assert_eq!((x[[0, 1]], x[[35, 1]], x[[48, 1]]), (0.0, 1.0, 1.0));
        assert!(x[[49, 1]].is_nan());

        let linear = Encoder::fit(&df, Mode::Standardized, &specs()).unwrap();
        let kinds: Vec<&Encoding> = linear.columns.iter().map(|c| &c.kind).collect();
        assert!(matches!(kinds[..], [Encoding::Numeric { .. }, Encoding::Missing]), "{kinds:?}");
        let x = linear.transform(&df).unwrap();
        let Encoding::Numeric { median, mean, std } = linear.columns[0].kind else { unreachable!() };
        assert_eq!(x[[3, 0]], (median - mean) / std, "missing is imputed with the median");
        assert_eq!(x[[10, 0]], (10.0 - mean) / std);
        assert_eq!((x[[3, 1]], x[[10, 1]]), (1.0, 0.0), "and flagged");
        let column_sum: f64 = x.column(0).sum();
        assert!(column_sum.abs() < 1e-9, "standardised around the training mean");
    }

    #[test]
    fn a_table_without_a_feature_is_bad_input() {
        let enc = Encoder::fit(&table(), Mode::Native, &specs()).unwrap();
        let err = enc.transform(&df!("a" => [1.0]).unwrap()).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::ExitCode::DataErr);
        assert!(err.to_string().contains("`c`"), "{err}");
    }
}
