//! A flat table as an analyst brings it: read, its features and labels found, its rows
//! split, an output column written atomically. What every `retain table` command shares.

use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, PolarsContext, Result};
use crate::models::FeatureKind;

/// Read a CSV or Parquet file, by extension.
pub(crate) fn read_flat(path: &Path) -> Result<DataFrame> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let shown = path.display();
    if !path.exists() {
        return Err(Error::data(format!("{shown} does not exist")));
    }
    match ext.as_str() {
        "parquet" | "pq" => {
            let file = std::fs::File::open(path).map_err(|e| Error::data(format!("{shown}: {e}")))?;
            ParquetReader::new(file).finish().map_err(|e| Error::data(format!("{shown} is not readable Parquet: {e}")))
        }
        "csv" | "txt" | "tsv" => {
            let separator = if ext == "tsv" { b'\t' } else { b',' };
            CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(None)
                .map_parse_options(|o| o.with_separator(separator).with_missing_is_null(true))
                .try_into_reader_with_file_path(Some(path.to_path_buf()))
                .and_then(|r| r.finish())
                .map_err(|e| Error::data(format!("{shown} is not readable CSV: {e}")))
        }
        _ => Err(Error::Usage(format!("{shown}: expected a .csv or .parquet file"))),
    }
}

/// The feature columns of a flat table and their kinds.
pub(crate) fn feature_specs(df: &DataFrame, exclude: &[&str]) -> Vec<(String, FeatureKind)> {
    df.columns()
        .iter()
        .filter(|c| !exclude.contains(&c.name().as_str()))
        .map(|c| {
            let kind = if c.dtype().is_primitive_numeric() || c.dtype().is_bool() {
                FeatureKind::Numeric
            } else {
                FeatureKind::Categorical
            };
            (c.name().to_string(), kind)
        })
        .collect()
}

/// 0/1 labels from a column: `positive` names the positive value; without it, booleans
/// are true, numbers are 1, and anything else needs `--positive`.
pub(crate) fn binary_labels(df: &DataFrame, column: &str, positive: Option<&str>, file: &str) -> Result<Vec<i32>> {
    let s = df
        .column(column)
        .map_err(|_| Error::data(format!("{file}: no column `{column}`")))?
        .as_materialized_series()
        .clone();
    if s.null_count() > 0 {
        let row = s.is_null().iter().position(|v| v == Some(true)).unwrap_or(0);
        return Err(Error::data(format!("{file}: column `{column}` is blank at row {row}")));
    }
    let values: Vec<i32> = match positive {
        Some(p) => {
            let text = s.cast(&DataType::String).ctx(column)?;
            text.str().ctx(column)?.iter().map(|v| i32::from(v == Some(p))).collect()
        }
        None if s.dtype().is_bool() => s.bool().ctx(column)?.iter().map(|v| i32::from(v == Some(true))).collect(),
        None if s.dtype().is_primitive_numeric() => {
            let f = s.cast(&DataType::Float64).ctx(column)?;
            let f = f.f64().ctx(column)?;
            if let Some((row, v)) = f.iter().enumerate().find(|(_, v)| !matches!(v, Some(x) if *x == 0.0 || *x == 1.0))
            {
                return Err(Error::data(format!(
                    "{file}: column `{column}` is not 0/1 (row {row}: {v:?}); name the positive value with --positive"
                )));
            }
            f.iter().map(|v| i32::from(v == Some(1.0))).collect()
        }
        None => {
            return Err(Error::Usage(format!(
                "{file}: column `{column}` holds {}; name its positive value with --positive",
                s.dtype()
            )));
        }
    };
    Ok(values)
}

/// Rows kept for early stopping and calibration: a fixed fifth chosen by a hash of the
/// row number, so the split is the same on every run and unrelated to the row order.
pub(crate) fn is_validation_row(i: usize) -> bool {
    xxhash_rust::xxh3::xxh3_64(&(i as u64).to_le_bytes()).is_multiple_of(5)
}

/// Write one output column as a Parquet file, atomically (temporary name, then rename).
pub(crate) fn write_column(path: &Path, name: &str, values: Vec<f64>) -> Result<()> {
    let df = DataFrame::new_infer_height(vec![Column::new(name.into(), values)]).ctx("assembling the output")?;
    write_frame(path, df)
}

/// Write `df` to `path` as Parquet, through a temporary file renamed into place.
pub(crate) fn write_frame(path: &Path, mut df: DataFrame) -> Result<()> {
    let bytes = crate::storage::parquet_bytes(&mut df).ctx("encoding the output")?;
    let tmp = path.with_extension("parquet.tmp");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::config(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(&tmp, bytes).map_err(|e| Error::config(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::config(format!("cannot write {}: {e}", path.display())))
}

/// Check that the test table has every feature column of the training table.
pub(crate) fn check_same_columns(test: &DataFrame, specs: &[(String, FeatureKind)], test_file: &str) -> Result<()> {
    for (name, _) in specs {
        if test.column(name).is_err() {
            return Err(Error::data(format!("{test_file}: column `{name}` of the training table is missing")));
        }
    }
    Ok(())
}

/// The numbers of `column`: numbers as they are, booleans as 0/1, anything else 0/1 by
/// `positive`. A blank cell is an error that names its row.
pub(crate) fn numbers(df: &DataFrame, column: &str, positive: Option<&str>, file: &str) -> Result<Vec<f64>> {
    let s = df
        .column(column)
        .map_err(|_| Error::data(format!("{file}: no column `{column}`")))?
        .as_materialized_series()
        .clone();
    if let Some(row) = s.is_null().iter().position(|v| v == Some(true)) {
        return Err(Error::data(format!("{file}: column `{column}` is blank at row {row}")));
    }
    match positive {
        Some(p) => {
            let text = s.cast(&DataType::String).ctx(column)?;
            Ok(text.str().ctx(column)?.iter().map(|v| f64::from(u8::from(v == Some(p)))).collect())
        }
        None if s.dtype().is_bool() || s.dtype().is_primitive_numeric() => {
            let f = s.cast(&DataType::Float64).ctx(column)?;
            Ok(f.f64().ctx(column)?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
        }
        None => Err(Error::Usage(format!(
            "{file}: column `{column}` holds {}; name its positive value (--positive / --pre-positive)",
            s.dtype()
        ))),
    }
}
