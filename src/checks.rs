//! The contract's rules on values, defined once and applied twice: `retain validate` checks
//! every file with them, and every command that reads the inputs checks what it read with
//! them before any work, so a run never publishes what `validate` rejects.
//!
//! A rule is a boolean expression over a table's rows (in the contract's types) that is
//! true on a row that breaks it: a null in a required column, a value outside an
//! enumeration, a number outside its range, a timezone that is not an IANA name, a
//! propensity that is not a probability. Keys are checked over the whole table: `users`
//! has one row per `user_id` and at least one row, `messages` one row per `message_id`,
//! and a `billing` event delivered twice must be delivered the same both times.
//!
//! Why expressions: the commands check the scans they read anyway in two streaming queries
//! (the distinct values of enumerated columns; one filter over the other rules, which
//! Parquet row-group statistics mostly decide), and only when one fails read the files one
//! by one to name the file, the row and the value.

use polars::prelude::*;

use crate::contract::{ACTIVITY, BILLING, MESSAGES, Table, USERS, in_set};
use crate::error::{PolarsContext, Result};

/// A rule of the contract on the rows of one table.
pub(crate) struct Rule {
    pub(crate) column: &'static str,
    /// What breaking it means, for the message ("null value(s) in a required column").
    pub(crate) what: String,
    /// True on a row that breaks the rule.
    pub(crate) broken: Expr,
    /// For an enumeration, its values (checked over a column's distinct values).
    pub(crate) values: Option<&'static [&'static str]>,
}

/// Every rule on the rows of `table`.
pub(crate) fn rules(table: &Table) -> Vec<Rule> {
    let mut rules = Vec::new();
    for c in table.columns {
        if !c.nullable {
            rules.push(Rule {
                column: c.name,
                what: "null value(s) in a required column".into(),
                broken: col(c.name).is_null(),
                values: None,
            });
        }
        if !c.values.is_empty() {
            rules.push(Rule {
                column: c.name,
                what: format!("value(s) outside {:?}", c.values),
                broken: col(c.name).is_not_null().and(outside(c.name, c.values)),
                values: Some(c.values),
            });
        }
    }
    let at_least = |name: &'static str, lo: i64| Rule {
        column: name,
        what: format!("value(s) below {lo}"),
        broken: col(name).lt(lit(lo)),
        values: None,
    };
    match table.name {
        n if n == ACTIVITY.name => {
            for name in
                ["ms_played", "podcast_ms", "streams", "skips", "unique_tracks", "sessions", "searches", "saves"]
            {
                rules.push(at_least(name, 0));
            }
            rules.push(Rule {
                column: "peak_hour",
                what: "value(s) outside 0..=23 (a local hour)".into(),
                broken: col("peak_hour").lt(lit(0)).or(col("peak_hour").gt(lit(23))),
                values: None,
            });
        }
        n if n == MESSAGES.name => rules.push(Rule {
            column: "propensity",
            what: "value(s) outside (0, 1] (the probability of the logged arm)".into(),
            broken: col("propensity").gt(lit(0.0)).and(col("propensity").lt_eq(lit(1.0))).not(),
            values: None,
        }),
        n if n == USERS.name => {
            let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
            rules.push(Rule {
                column: "timezone",
                what: "value(s) that are not IANA timezone names".into(),
                broken: col("timezone").is_not_null().and(outside("timezone", &zones)),
                values: None,
            });
        }
        _ => {}
    }
    rules
}

/// True where `column` holds none of `values`. A short enumeration is a chain of
/// comparisons, which the streaming engine evaluates batch by batch (a set membership
/// over a 100M-row scan made it hold the whole scan: 7.5 GB at a million users).
fn outside(column: &str, values: &[&str]) -> Expr {
    if values.len() > 16 {
        return in_set(column, values).not();
    }
    values.iter().fold(lit(true), |all, v| all.and(col(column).neq(lit(*v))))
}

/// A rule broken in one file (or, for keys, in the table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Breach {
    pub(crate) table: String,
    pub(crate) file: String,
    pub(crate) column: String,
    pub(crate) message: String,
    /// The first offending row (0-based within the file) and its value, when there is one.
    pub(crate) example: Option<String>,
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "table `{}`, file {}, column `{}`: {}", self.table, self.file, self.column, self.message)?;
        if let Some(e) = &self.example {
            write!(f, " (e.g. {e})")?;
        }
        Ok(())
    }
}

/// The rules of `table` that the rows of file `rel` (`df`, in the contract's types) break.
pub(crate) fn breaches_in(table: &Table, rel: &str, df: &DataFrame) -> Result<Vec<Breach>> {
    let rules = rules(table);
    if rules.is_empty() || df.height() == 0 {
        return Ok(Vec::new());
    }
    let masks = df
        .clone()
        .lazy()
        .select(
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| r.broken.clone().fill_null(lit(false)).alias(format!("{i}")))
                .collect::<Vec<_>>(),
        )
        .collect()
        .ctx(format!("checking {rel}"))?;
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let mask = masks.column(&format!("{i}")).ctx("rule")?.bool().ctx("rule")?;
        let count = mask.sum().unwrap_or(0);
        if count == 0 {
            continue;
        }
        let row = mask.iter().position(|v| v == Some(true));
        let value = row.and_then(|r| df.column(rule.column).ok()?.get(r).ok().map(|v| v.to_string()));
        out.push(Breach {
            table: table.name.into(),
            file: rel.into(),
            column: rule.column.into(),
            message: format!("{count} {}", rule.what),
            example: row.map(|r| format!("row {r}{}", value.map(|v| format!(": {v}")).unwrap_or_default())),
        });
    }
    Ok(out)
}

/// Whether every row of `lf` (a table's scan, in the contract's types) follows the rules
/// of `table`, in two streaming queries that read little when the data is clean: the
/// distinct values of each enumerated column (dictionary-encoded in Parquet), and the
/// rows that break any other rule, whose predicates the Parquet reader first tries
/// against each row group's statistics (null counts, minima, maxima).
pub(crate) fn follows_rules(table: &Table, lf: LazyFrame) -> Result<bool> {
    let rules = rules(table);
    let context = || format!("checking table `{}` against the contract", table.name);
    let collect = |lf: LazyFrame| -> Result<DataFrame> {
        lf.collect_with_engine(Engine::Streaming).map(|r| r.unwrap_single()).ctx(context())
    };
    let (enums, others): (Vec<&Rule>, Vec<&Rule>) = rules.iter().partition(|r| r.values.is_some());
    if !enums.is_empty() {
        let distinct =
            collect(lf.clone().select(
                enums.iter().map(|r| col(r.column).unique().implode(false).alias(r.column)).collect::<Vec<_>>(),
            ))?;
        for r in &enums {
            let allowed = r.values.unwrap_or_default();
            let column = distinct
                .column(r.column)
                .ctx(context())?
                .explode(ExplodeOptions { empty_as_null: false, keep_nulls: false })
                .ctx(context())?;
            let values = column.str().ctx(context())?;
            if values.iter().flatten().any(|v| !allowed.contains(&v)) {
                return Ok(false);
            }
        }
    }
    let Some(any) = others.iter().map(|r| r.broken.clone()).reduce(|a, b| a.or(b)) else { return Ok(true) };
    let breaking = collect(lf.filter(any).select([rows().alias("len")]))?;
    Ok(breaking.column("len").ctx(context())?.u64().ctx(context())?.get(0).unwrap_or(0) == 0)
}

/// The number of rows, as a UInt64, for a streaming query over an input table's scan.
///
/// Why not `len()`: Polars 0.55's streaming engine panics ("sum not implemented for dtype
/// UInt128") on `len()` over a scan that `inputs::scan_table` made of files with different
/// physical types (an int64 `peak_hour` next to int8 ones, which the contract allows). Every
/// input table has `user_id`; whether it is null is never null.
pub(crate) fn rows() -> Expr {
    col("user_id").is_null().count().cast(DataType::UInt64)
}

/// The files of a table, for a message: each of a few, or how many.
pub(crate) fn files_named(table: &Table, rels: &[String]) -> String {
    if rels.len() <= 3 { rels.join(", ") } else { format!("{}/ ({} files)", table.name, rels.len()) }
}

/// The key values of `table` that break its key rule over all its rows (`df`, in the
/// contract's types), with how many rows repeat a key and what the rule says: `users` and
/// `messages` have one row per key, and a `billing` event delivered more than once has the
/// same content each time. None when the key rule holds (or the table has no key).
pub(crate) fn repeated_keys(table: &Table, df: &DataFrame) -> Result<Option<(DataFrame, usize, String)>> {
    let Some(key) = table.key else { return Ok(None) };
    let repeated_ids = |rows: &DataFrame| -> Result<Option<(usize, DataFrame)>> {
        let ids = rows.column(key).ctx(key)?.as_materialized_series().clone();
        let count = ids.len() - ids.n_unique().ctx(key)?;
        if count == 0 {
            return Ok(None);
        }
        let counts = ids.value_counts(true, false, "n".into(), false).ctx(key)?;
        let repeated = counts.lazy().filter(col("n").gt(lit(1))).select([col(key)]).collect().ctx(key)?;
        Ok(Some((count, repeated)))
    };
    let Some((mut count, mut repeated)) = repeated_ids(df)? else { return Ok(None) };
    if table.name == BILLING.name {
        // An event delivered again is the same row twice: only ids whose rows differ break
        // the rule (the rows of repeated ids only, made distinct).
        let differing = df
            .clone()
            .lazy()
            .join(repeated.lazy(), [col(key)], [col(key)], JoinArgs::new(JoinType::Semi))
            .unique(None, UniqueKeepStrategy::Any)
            .collect()
            .ctx("billing events delivered more than once")?;
        let Some(found) = repeated_ids(&differing)? else { return Ok(None) };
        (count, repeated) = found;
    }
    let what = if table.name == BILLING.name {
        "repeated event id(s) with a different content (a redelivered event must be the same event)".to_string()
    } else {
        "repeated value(s) in a column that must be unique".to_string()
    };
    Ok(Some((repeated, count, what)))
}

/// The key rule of `table` over all its rows (`df`, in the contract's types, read from
/// `files`), and that `users` has at least one row ([`repeated_keys`]). A repeated key is
/// named with the files that hold it (`holding`, given the key column and value).
pub(crate) fn key_breach(
    table: &Table,
    df: &DataFrame,
    files: &[String],
    holding: impl Fn(&str, &str) -> Result<Vec<String>>,
) -> Result<Option<Breach>> {
    let Some(key) = table.key else { return Ok(None) };
    let breach = |file: String, message: String, example: Option<String>| Breach {
        table: table.name.into(),
        file,
        column: key.into(),
        message,
        example,
    };
    if table.name == USERS.name && df.height() == 0 {
        return Ok(Some(breach(files_named(table, files), "the table has no rows".into(), None)));
    }
    let Some((repeated, count, what)) = repeated_keys(table, df)? else { return Ok(None) };
    let id = repeated.column(key).ctx(key)?.str().ctx(key)?.get(0).unwrap_or_default().to_string();
    let found = holding(key, &id)?;
    let file = if found.is_empty() { files_named(table, files) } else { found.join(" and ") };
    Ok(Some(breach(file, format!("{count} {what}"), Some(format!("{key} = {id}")))))
}

/// True on a row that breaks any rule of `table` on rows (None when it has none).
pub(crate) fn any_broken(table: &Table) -> Option<Expr> {
    rules(table).into_iter().map(|r| r.broken.fill_null(lit(false))).reduce(|a, b| a.or(b))
}

/// The rows of `lf` (a scan of `table`) that break a rule on rows, in the quarantine
/// table's columns but `snapshot_date` ([`crate::contract::QUARANTINE`]): one row per
/// rule a row breaks.
pub(crate) fn broken_rows(table: &Table, lf: LazyFrame) -> Result<LazyFrame> {
    let parts: Vec<LazyFrame> = rules(table)
        .iter()
        .map(|r| {
            lf.clone().filter(r.broken.clone().fill_null(lit(false))).select(set_aside_columns(
                table,
                r.column,
                &r.what,
                col(r.column),
            ))
        })
        .collect();
    if parts.is_empty() {
        return Ok(DataFrame::empty_with_schema(&set_aside_schema()).lazy());
    }
    concat(parts, UnionArgs::default()).ctx(format!("setting aside rows of `{}`", table.name))
}

/// The rows of `df` whose key is one of `repeated` ([`repeated_keys`]), in the quarantine
/// table's columns but `snapshot_date`.
pub(crate) fn repeated_rows(table: &Table, df: &DataFrame, repeated: &DataFrame, what: &str) -> LazyFrame {
    let key = table.key.unwrap_or("user_id");
    df.clone()
        .lazy()
        .join(repeated.clone().lazy(), [col(key)], [col(key)], JoinArgs::new(JoinType::Semi))
        .select(set_aside_columns(table, key, what, col(key)))
}

fn set_aside_columns(table: &Table, column: &str, what: &str, value: Expr) -> Vec<Expr> {
    // The whole row as text: `column=value, …` (nulls as `null`).
    let mut parts = Vec::new();
    for (i, c) in table.columns.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        parts.push(lit(format!("{sep}{}=", c.name)));
        parts.push(col(c.name).cast(DataType::String).fill_null(lit("null")));
    }
    vec![
        lit(table.name).alias("table"),
        col("user_id").cast(DataType::String).alias("user_id"),
        lit(column.to_string()).alias("column"),
        lit(what.to_string()).alias("rule"),
        value.cast(DataType::String).alias("value"),
        concat_str(parts, "", false).alias("row"),
    ]
}

fn set_aside_schema() -> Schema {
    Schema::from_iter(
        ["table", "user_id", "column", "rule", "value", "row"].map(|n| Field::new(n.into(), DataType::String)),
    )
}
