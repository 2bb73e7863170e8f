//! Columns of a frame as plain vectors, for the stage's row-by-row steps.

use polars::prelude::*;

use crate::error::{PolarsContext, Result};

/// Column `name` as f64 (booleans and integers included).
pub(super) fn floats(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let c = df.column(name).ctx(name)?.cast(&DataType::Float64).ctx(name)?;
    Ok(c.f64().ctx(name)?.iter().map(|v| v.unwrap_or(0.0)).collect())
}

pub(super) fn strings(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    Ok(df.column(name).ctx(name)?.str().ctx(name)?.iter().map(|v| v.unwrap_or_default().to_string()).collect())
}
