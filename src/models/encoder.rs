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

    /// Encode rows of a features table (which must have every feature column).
    pub fn transform(&self, df: &DataFrame) -> Result<Array2<f64>> {
        let n = df.height();
        let mut x = Array2::<f64>::zeros((n, self.columns.len()));
        let mut cache_num: std::collections::HashMap<&str, Vec<Option<f64>>> = Default::default();
        let mut cache_str: std::collections::HashMap<&str, Vec<Option<String>>> = Default::default();
        for (j, c) in self.columns.iter().enumerate() {
            let name = c.feature.as_str();
            if df.column(name).is_err() {
                return Err(Error::data(format!("features table has no column `{name}` that the model needs")));
            }
            match &c.kind {
                Encoding::Numeric { median, mean, std } => {
                    if !cache_num.contains_key(name) {
                        cache_num.insert(name, numeric_values(df, name)?);
                    }
                    for (i, v) in cache_num[name].iter().enumerate() {
                        x[[i, j]] = (v.unwrap_or(*median) - mean) / std;
                    }
                }
                Encoding::Missing => {
                    if !cache_num.contains_key(name) {
                        cache_num.insert(name, numeric_values(df, name)?);
                    }
                    for (i, v) in cache_num[name].iter().enumerate() {
                        x[[i, j]] = if v.is_none() { 1.0 } else { 0.0 };
                    }
                }
                Encoding::OneHot { value } => {
                    if !cache_str.contains_key(name) {
                        cache_str.insert(name, string_values(df, name)?);
                    }
                    for (i, v) in cache_str[name].iter().enumerate() {
                        x[[i, j]] = if v.as_deref() == Some(value.as_str()) { 1.0 } else { 0.0 };
                    }
                }
                Encoding::Raw { .. } => {
                    if !cache_num.contains_key(name) {
                        cache_num.insert(name, numeric_values(df, name)?);
                    }
                    for (i, v) in cache_num[name].iter().enumerate() {
                        x[[i, j]] = v.unwrap_or(f64::NAN);
                    }
                }
                Encoding::Codes { values } => {
                    if !cache_str.contains_key(name) {
                        cache_str.insert(name, string_values(df, name)?);
                    }
                    for (i, v) in cache_str[name].iter().enumerate() {
                        x[[i, j]] = match v {
                            None => f64::NAN,
                            Some(v) => values.iter().position(|c| c == v).unwrap_or(values.len()) as f64,
                        };
                    }
                }
            }
        }
        Ok(x)
    }
}
