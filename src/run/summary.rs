//! What a command's manifest says of the tables it published.

use polars::prelude::*;
use serde_json::{Value, json};

use crate::error::{PolarsContext, Result};
use crate::storage::Commit;

/// A published table: its rows and files.
pub(super) fn table_summary(commit: &Commit) -> Value {
    json!({ "rows": commit.rows, "files": commit.files.iter().map(|f| &f.name).collect::<Vec<_>>() })
}

/// The planned interventions by group, channel and action: users and expected uplift.
pub(super) fn intervention_summary(df: &DataFrame) -> Result<Value> {
    let by = df
        .clone()
        .lazy()
        .group_by([col("group"), col("channel"), col("action")])
        .agg([len().alias("users"), col("expected_uplift").sum().alias("expected_uplift")])
        .sort(["group", "channel", "action"], SortMultipleOptions::default())
        .collect()
        .ctx("summarising interventions")?;
    let mut rows = Vec::new();
    for i in 0..by.height() {
        let row = by.get_row(i).ctx("summary row")?;
        rows.push(json!(row.0.iter().map(|v| v.to_string()).collect::<Vec<_>>()));
    }
    Ok(json!({ "columns": ["group", "channel", "action", "users", "expected_uplift"], "rows": rows }))
}
