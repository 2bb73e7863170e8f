//! `retain validate`: check the input tables against the contract and report every
//! problem with its table, file, column and an example row.
//!
//! Checks, per file: the file is readable Parquet; every contract column is present with
//! an allowed type; then the contract's rules on values (`checks`, the same rules every
//! command applies to what it reads): no nulls in required columns, known values in
//! enumerations, numbers in range, IANA timezones, propensities in (0, 1]; and no row dated
//! after its `dt=` partition (a row in a later partition than its date was exported late,
//! which the commands support). Per table, the key rule of `checks` (unique user and
//! message ids, at least one user, a billing event delivered twice delivered the same;
//! identical redeliveries are counted in a note).

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::checks;
use crate::contract::{INPUTS, Kind, Layout, Table};
use crate::error::{PolarsContext, Result};
use crate::inputs::check_schema;
use crate::storage::Storage;

/// A problem found: a rule of the contract broken in a file (`checks`).
pub(crate) use crate::checks::Breach as Problem;

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
            let _ = writeln!(out, "problem: {p}");
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
            report.problems.push(problem(
                table,
                format!("{}/{}/", storage.uri(), table.name),
                "-",
                "the table is missing (no Parquet files)".into(),
            ));
            continue;
        }
        let mut rows_of_table: Vec<(String, DataFrame)> = Vec::new();
        let before = report.problems.len();
        for rel in &files {
            report.files += 1;
            // The commands refuse a partition folder that is not a date (`dt=2026-11-31`).
            if let Some(bad) = rel.split('/').find(|p| p.starts_with("dt=") && partition_date(p).is_none()) {
                report.problems.push(problem(
                    table,
                    rel.clone(),
                    "-",
                    format!("partition folder `{bad}` is not dt=YYYY-MM-DD"),
                ));
                continue;
            }
            let df = match storage.read_parquet(rel) {
                Ok(df) => df,
                Err(e) => {
                    report.problems.push(problem(table, rel.clone(), "-", e.to_string()));
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
                report.problems.push(problem(table, rel.clone(), column, e.to_string()));
                continue;
            }
            let df = table.normalize(df.lazy()).collect();
            let df = match df {
                Ok(df) => df,
                Err(e) => {
                    report.problems.push(problem(
                        table,
                        rel.clone(),
                        "-",
                        format!("values do not fit the contract's types: {e}"),
                    ));
                    continue;
                }
            };
            check_values(table, rel, &df, &mut report.problems)?;
            if table.key.is_some() {
                rows_of_table.push((rel.clone(), df));
            }
        }
        if table.key.is_some() {
            check_key(table, &files, rows_of_table, &mut report)?;
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

/// A problem with a whole file (or table), not with a row of it.
fn problem(table: &Table, file: String, column: &str, message: String) -> Problem {
    Problem { table: table.name.into(), file, column: column.into(), message, example: None }
}

fn first_index(mask: &BooleanChunked) -> Option<usize> {
    mask.iter().position(|v| v == Some(true))
}

fn check_values(table: &Table, rel: &str, df: &DataFrame, problems: &mut Vec<Problem>) -> Result<()> {
    problems.extend(checks::breaches_in(table, rel, df)?);
    let mut push = |column: &str, message: String, row: Option<usize>, value: Option<String>| {
        problems.push(Problem {
            table: table.name.into(),
            file: rel.into(),
            column: column.into(),
            message,
            example: row.map(|r| format!("row {r}{}", value.map(|v| format!(": {v}")).unwrap_or_default())),
        });
    };
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
        // Later than the partition: a row cannot be exported before its time. Earlier is
        // a row exported late, which the commands use from its own time on.
        let bad: BooleanChunked = days.iter().map(|d| Some(d.is_some_and(|d| d > want))).collect();
        let count = bad.sum().unwrap_or(0);
        if count > 0 {
            let row = first_index(&bad);
            let value = row.and_then(|r| s.get(r).ok()).map(|v| v.to_string());
            push(time_column, format!("{count} row(s) dated after their partition dt={dt}"), row, value);
        }
    }
    Ok(())
}

fn partition_date(rel: &str) -> Option<NaiveDate> {
    rel.split('/').find_map(|p| p.strip_prefix("dt=")).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
}

/// The key rule of `checks` over all the rows of a table; identical redeliveries of a
/// billing event are allowed, and counted in a note.
fn check_key(table: &Table, files: &[String], parts: Vec<(String, DataFrame)>, report: &mut Report) -> Result<()> {
    let Some((_, mut all)) = parts.first().cloned() else { return Ok(()) };
    for (_, p) in &parts[1..] {
        all.vstack_mut(p).ctx("collecting the table's rows")?;
    }
    let holding = |key: &str, id: &str| -> Result<Vec<String>> {
        let mut found = Vec::new();
        for (rel, df) in &parts {
            let ids = df.column(key).ctx(key)?.str().ctx(key)?;
            if ids.iter().any(|v| v == Some(id)) {
                found.push(rel.clone());
            }
        }
        Ok(found)
    };
    report.problems.extend(checks::key_breach(table, &all, files, holding)?);
    if let Some(key) = table.key.filter(|_| table.name == "billing") {
        let ids = all.column(key).ctx(key)?.as_materialized_series().clone();
        let repeated = ids.len() - ids.n_unique().ctx(key)?;
        if repeated > 0 {
            report.notes.push(format!(
                "table `billing`: {repeated} repeated event_id(s) (duplicate deliveries; deduplicated on read)"
            ));
        }
    }
    Ok(())
}
