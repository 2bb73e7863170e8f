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
//! Why expressions: the commands check their inputs in one streaming pass over the scans
//! they read anyway (a count per rule), and only when a count is not zero read the files
//! one by one to name the file, the row and the value.

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
            });
        }
        if !c.values.is_empty() {
            rules.push(Rule {
                column: c.name,
                what: format!("value(s) outside {:?}", c.values),
                broken: col(c.name).is_not_null().and(in_set(c.name, c.values).not()),
            });
        }
    }
    let at_least = |name: &'static str, lo: i64| Rule {
        column: name,
        what: format!("value(s) below {lo}"),
        broken: col(name).lt(lit(lo)),
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
            });
        }
        n if n == MESSAGES.name => rules.push(Rule {
            column: "propensity",
            what: "value(s) outside (0, 1] (the probability of the logged arm)".into(),
            broken: col("propensity").gt(lit(0.0)).and(col("propensity").lt_eq(lit(1.0))).not(),
        }),
        n if n == USERS.name => {
            let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
            rules.push(Rule {
                column: "timezone",
                what: "value(s) that are not IANA timezone names".into(),
                broken: col("timezone").is_not_null().and(in_set("timezone", &zones).not()),
            });
        }
        _ => {}
    }
    rules
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

/// How many rows of `lf` (a table's scan, in the contract's types) break each rule of
/// `table`, in one streaming pass: true when none does.
pub(crate) fn follows_rules(table: &Table, lf: LazyFrame) -> Result<bool> {
    let rules = rules(table);
    if rules.is_empty() {
        return Ok(true);
    }
    let counts = lf
        .select(
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| r.broken.clone().fill_null(lit(false)).cast(DataType::UInt64).sum().alias(format!("{i}")))
                .collect::<Vec<_>>(),
        )
        .collect_with_engine(Engine::Streaming)
        .map(|r| r.unwrap_single())
        .ctx(format!("checking table `{}` against the contract", table.name))?;
    Ok(counts.columns().iter().all(|c| c.u64().map(|v| v.get(0).unwrap_or(0) == 0).unwrap_or(false)))
}

/// The key rule of `table` over all its rows (`df`, in the contract's types; `files` names
/// where they came from): `users` and `messages` have one row per key, `users` at least one
/// row, and a `billing` event delivered more than once has the same content each time. A
/// repeated key is named with the files that hold it (`holding`, given the key's value).
pub(crate) fn key_breach(
    table: &Table,
    df: &DataFrame,
    files: &str,
    holding: impl Fn(&str) -> Result<Vec<String>>,
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
        return Ok(Some(breach(files.into(), "the table has no rows".into(), None)));
    }
    // Billing repeats an event_id when an event is delivered again: the same row twice.
    let rows = if table.name == BILLING.name {
        df.clone().lazy().unique(None, UniqueKeepStrategy::Any).collect().ctx("billing events")?
    } else {
        df.clone()
    };
    let ids = rows.column(key).ctx(key)?.as_materialized_series().clone();
    let count = ids.len() - ids.n_unique().ctx(key)?;
    if count == 0 {
        return Ok(None);
    }
    let counts = ids.value_counts(true, false, "n".into(), false).ctx(key)?;
    let id = counts.column(key).ctx(key)?.str().ctx(key)?.get(0).unwrap_or_default().to_string();
    let found = holding(&id)?;
    let file = if found.is_empty() { files.to_string() } else { found.join(" and ") };
    let what = if table.name == BILLING.name {
        format!("{count} repeated event id(s) with a different content (a redelivered event must be the same event)")
    } else {
        format!("{count} repeated value(s) in a column that must be unique")
    };
    Ok(Some(breach(file, what, Some(format!("{key} = {id}")))))
}
