//! `retain validate`: check the input tables against the contract and report every
//! problem with its table, file, column and an example row.
//!
//! Checks, per file: the file is readable Parquet; every contract column is present with
//! an allowed type; required columns have no nulls; enumerated columns hold known values;
//! numeric ranges the contract states (ms_played ≥ 0, peak_hour 0–23); rows sit in their
//! `dt=` partition. Per table: ids that must be unique are (billing may repeat an
//! `event_id`: the contract says the same event can be delivered twice, so repeats with
//! identical content are counted, not flagged).

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::contract::{INPUTS, Kind, Layout, Table};
use crate::error::{PolarsContext, Result};
use crate::inputs::check_schema;
use crate::storage::Storage;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub table: String,
    pub file: String,
    pub column: String,
    pub message: String,
    /// The first offending row (0-based within the file) and its value, when there is one.
    pub example: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Report {
    pub files: usize,
    pub rows: HashMap<String, u64>,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
}

impl Report {
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let mut tables: Vec<_> = self.rows.iter().collect();
        tables.sort();
        let _ = writeln!(
            out,
            "checked {} file(s): {}",
            self.files,
            tables.iter().map(|(t, n)| format!("{t} {n} rows")).collect::<Vec<_>>().join(", ")
        );
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        if self.problems.is_empty() {
            let _ = writeln!(out, "ok: the inputs follow the contract");
        }
        for p in &self.problems {
            let _ = write!(out, "problem: table `{}`, file {}, column `{}`: {}", p.table, p.file, p.column, p.message);
            if let Some(e) = &p.example {
                let _ = write!(out, " (e.g. {e})");
            }
            out.push('\n');
        }
        out
    }
}

/// Validate every input table under `storage`.
pub(crate) fn validate(storage: &Storage, max_examples: usize) -> Result<Report> {
    let mut report = Report::default();
    for table in INPUTS {
        let files: Vec<String> = storage
            .list_files(table.name)?
            .into_iter()
            .map(|f| f.rel)
            .filter(|r| {
                let name = r.rsplit('/').next().unwrap_or("");
                !name.starts_with('_') && !name.starts_with('.') && name.ends_with(".parquet")
            })
            .collect();
        if files.is_empty() {
            report.problems.push(Problem {
                table: table.name.into(),
                file: format!("{}/{}/", storage.uri(), table.name),
                column: "-".into(),
                message: "the table is missing (no Parquet files)".into(),
                example: None,
            });
            continue;
        }
        let mut keys: Vec<Series> = Vec::new();
        let before = report.problems.len();
        for rel in &files {
            report.files += 1;
            let df = match storage.read_parquet(rel) {
                Ok(df) => df,
                Err(e) => {
                    report.problems.push(Problem {
                        table: table.name.into(),
                        file: rel.clone(),
                        column: "-".into(),
                        message: e.to_string(),
                        example: None,
                    });
                    continue;
                }
            };
            *report.rows.entry(table.name.to_string()).or_default() += df.height() as u64;
            if let Err(e) = check_schema(table, rel, df.schema()) {
                let column = table
                    .columns
                    .iter()
                    .find(|c| e.to_string().contains(&format!("`{}`", c.name)))
                    .map(|c| c.name)
                    .unwrap_or("-");
                report.problems.push(Problem {
                    table: table.name.into(),
                    file: rel.clone(),
                    column: column.into(),
                    message: e.to_string(),
                    example: None,
                });
                continue;
            }
            let df = table.normalize(df.lazy()).collect();
            let df = match df {
                Ok(df) => df,
                Err(e) => {
                    report.problems.push(Problem {
                        table: table.name.into(),
                        file: rel.clone(),
                        column: "-".into(),
                        message: format!("values do not fit the contract's types: {e}"),
                        example: None,
                    });
                    continue;
                }
            };
            check_values(table, rel, &df, &mut report.problems)?;
            if let Some(key) = table.key {
                keys.push(df.column(key).ctx("key column")?.as_materialized_series().clone());
            }
        }
        if let Some(key) = table.key {
            check_unique(table, key, keys, &mut report)?;
        }
        // Keep the report readable: at most `max_examples` problems per table and check.
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        let mut kept = Vec::new();
        let mut dropped = 0;
        for p in report.problems.drain(before..) {
            let n = seen.entry((p.column.clone(), p.message.split(':').next().unwrap_or("").to_string())).or_default();
            *n += 1;
            if *n <= max_examples { kept.push(p) } else { dropped += 1 }
        }
        report.problems.extend(kept);
        if dropped > 0 {
            report.notes.push(format!("table `{}`: {dropped} more problem(s) like those listed", table.name));
        }
    }
    Ok(report)
}

fn first_index(mask: &BooleanChunked) -> Option<usize> {
    mask.iter().position(|v| v == Some(true))
}

fn check_values(table: &Table, rel: &str, df: &DataFrame, problems: &mut Vec<Problem>) -> Result<()> {
    let mut push = |column: &str, message: String, row: Option<usize>, value: Option<String>| {
        problems.push(Problem {
            table: table.name.into(),
            file: rel.into(),
            column: column.into(),
            message,
            example: row.map(|r| format!("row {r}{}", value.map(|v| format!(": {v}")).unwrap_or_default())),
        });
    };
    for c in table.columns {
        let s = df.column(c.name).ctx(c.name)?.as_materialized_series();
        let nulls = s.null_count();
        if !c.nullable && nulls > 0 {
            let row = first_index(&s.is_null());
            push(c.name, format!("{nulls} null value(s) in a required column"), row, None);
        }
        if !c.values.is_empty() {
            let known: BooleanChunked =
                s.str().ctx(c.name)?.iter().map(|v| Some(v.is_none_or(|v| c.values.contains(&v)))).collect();
            let bad = !&known;
            let count = bad.sum().unwrap_or(0);
            if count > 0 {
                let row = first_index(&bad);
                let value = row.and_then(|r| s.get(r).ok()).map(|v| v.to_string());
                push(c.name, format!("{count} value(s) outside {:?}", c.values), row, value);
            }
        }
    }
    let range = |name: &str, lo: i64, hi: i64| -> Result<Option<(usize, usize, String)>> {
        let s = df.column(name).ctx(name)?.cast(&DataType::Int64).ctx(name)?;
        let v = s.i64().ctx(name)?;
        let bad: BooleanChunked = v.iter().map(|x| Some(x.is_some_and(|x| x < lo || x > hi))).collect();
        let count = bad.sum().unwrap_or(0) as usize;
        Ok(first_index(&bad).map(|r| (count, r, v.get(r).map(|x| x.to_string()).unwrap_or_default())))
    };
    if table.name == "activity" {
        for (name, lo, hi) in [
            ("ms_played", 0, i64::MAX),
            ("podcast_ms", 0, i64::MAX),
            ("peak_hour", 0, 23),
            ("streams", 0, i64::MAX),
            ("skips", 0, i64::MAX),
        ] {
            if let Some((count, row, value)) = range(name, lo, hi)? {
                push(name, format!("{count} value(s) outside {lo}..={hi}"), Some(row), Some(value));
            }
        }
    }
    if let Layout::Daily { time_column } = table.layout
        && let Some(dt) = partition_date(rel)
    {
        let s = df.column(time_column).ctx(time_column)?;
        let dates = if matches!(table.column(time_column).map(|c| c.kind), Some(Kind::Date)) {
            s.as_materialized_series().clone()
        } else {
            s.as_materialized_series().cast(&DataType::Date).ctx(time_column)?
        };
        let days = dates.date().ctx(time_column)?.physical().clone();
        let want = crate::inputs::epoch_days(dt);
        let bad: BooleanChunked = days.iter().map(|d| Some(d.is_some_and(|d| d != want))).collect();
        let count = bad.sum().unwrap_or(0);
        if count > 0 {
            let row = first_index(&bad);
            let value = row.and_then(|r| s.get(r).ok()).map(|v| v.to_string());
            push(time_column, format!("{count} row(s) outside their partition dt={dt}"), row, value);
        }
    }
    Ok(())
}

fn partition_date(rel: &str) -> Option<NaiveDate> {
    rel.split('/').find_map(|p| p.strip_prefix("dt=")).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
}

fn check_unique(table: &Table, key: &str, parts: Vec<Series>, report: &mut Report) -> Result<()> {
    let Some(mut all) = parts.first().cloned() else { return Ok(()) };
    for p in &parts[1..] {
        all.append(p).ctx("collecting ids")?;
    }
    let total = all.len();
    let distinct = all.n_unique().ctx("counting ids")?;
    if distinct < total {
        let dup = total - distinct;
        if table.name == "billing" {
            report.notes.push(format!(
                "table `billing`: {dup} repeated event_id(s) (duplicate deliveries; deduplicated on read)"
            ));
        } else {
            let counts = all.value_counts(true, false, "n".into(), false).ctx("counting ids")?;
            let example = counts.column(key).ok().and_then(|c| c.get(0).ok()).map(|v| v.to_string());
            report.problems.push(Problem {
                table: table.name.into(),
                file: format!("{}/", table.name),
                column: key.into(),
                message: format!("{dup} duplicate value(s) in a column that must be unique"),
                example: example.map(|e| format!("{key} = {e}")),
            });
        }
    }
    Ok(())
}
