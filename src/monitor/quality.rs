//! Input data quality: the recent days of each input table against the days before them.
//!
//! Read straight from the `dt=` partitions (not through `inputs`, which deduplicates and
//! cuts rows by their own time): what landed in each partition is what is checked. Per
//! table, one streaming query per question: rows per partition; per window (recent or
//! baseline) the null rates, the late rows (dated before their partition) and the
//! repeated keys; the enumerated columns' value shares; and for `activity`, the rows and
//! every measure's mean per country (through `users`) and per platform, where a vanished
//! segment or a broken client release shows first.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use polars::prelude::*;

use super::row::Check;
use crate::config::Monitor;
use crate::contract::{self, Table};
use crate::distribution::Categories;
use crate::error::{PolarsContext, Result};
use crate::inputs::{date_lit, date_of_epoch_days, scan_table};
use crate::storage::Storage;

/// The recent days (ending at S) and the baseline days before them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windows {
    pub baseline_from: NaiveDate,
    pub recent_from: NaiveDate,
    pub s: NaiveDate,
}

impl Windows {
    pub(crate) fn of(s: NaiveDate, cfg: &Monitor) -> Self {
        let recent_from = s - Duration::days(cfg.recent_days as i64 - 1);
        Windows { baseline_from: recent_from - Duration::days(cfg.baseline_days as i64), recent_from, s }
    }

    fn baseline_text(&self) -> String {
        format!("{} to {}", self.baseline_from, self.recent_from - Duration::days(1))
    }
}

/// The measures of `activity` whose means are watched.
const MEASURES: &[&str] =
    &["ms_played", "streams", "skips", "unique_tracks", "sessions", "searches", "saves", "podcast_ms"];

fn collect(lf: LazyFrame, what: &str) -> Result<DataFrame> {
    lf.collect_with_engine(Engine::Streaming).map(|r| r.unwrap_single()).ctx(format!("monitor: {what}"))
}

/// The partitions of `table` in the windows, each row with its partition `dt` and
/// `recent` (its partition is one of the recent days); None when there are none.
fn partitions(input: &Storage, table: &Table, w: &Windows) -> Result<Option<LazyFrame>> {
    let parts = input.partition_files(table.name, w.baseline_from, w.s)?;
    let mut by_day: BTreeMap<NaiveDate, Vec<String>> = BTreeMap::new();
    for p in parts {
        by_day.entry(p.date).or_default().push(p.rel);
    }
    let mut frames = Vec::new();
    for (day, rels) in by_day {
        frames.push(scan_table(input, table, &rels)?.with_column(date_lit(day).alias("dt")));
    }
    if frames.is_empty() {
        return Ok(None);
    }
    let all = concat(frames, UnionArgs::default()).ctx(format!("monitor: reading table `{}`", table.name))?;
    Ok(Some(all.with_column(col("dt").gt_eq(date_lit(w.recent_from)).alias("recent"))))
}

/// Every input check of S, on the tables under `input`.
pub(crate) fn check_inputs(input: &Storage, users: LazyFrame, w: &Windows, cfg: &Monitor) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    for table in [contract::ACTIVITY, contract::BILLING, contract::MESSAGES] {
        let Some(lf) = partitions(input, &table, w)? else { continue };
        // Campaigns make `messages` arrive in bursts: its volume and mix are the plan's,
        // not a data-quality signal.
        let campaign_driven = table.name == contract::MESSAGES.name;
        if !campaign_driven {
            out.extend(rows_per_day(lf.clone(), table.name, w, cfg)?);
        }
        out.extend(per_window(lf.clone(), &table, w, cfg)?);
        if !campaign_driven {
            out.extend(enum_shares(lf.clone(), &table, w, cfg)?);
        }
        if table.name == contract::ACTIVITY.name {
            out.extend(segments(lf.clone(), "platform", w, cfg)?);
            let countries = users.clone().select([col("user_id"), col("country")]);
            let with_country = lf.join(countries, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left));
            out.extend(segments(with_country, "country", w, cfg)?);
        }
    }
    Ok(out)
}

/// Each recent day's rows against the median of the same weekday in the baseline.
fn rows_per_day(lf: LazyFrame, table: &str, w: &Windows, cfg: &Monitor) -> Result<Vec<Check>> {
    let df = collect(lf.group_by([col("dt")]).agg([len().alias("rows")]), "rows per day")?;
    let days = df.column("dt").ctx("dt")?.date().ctx("dt")?.physical().clone();
    let rows = df.column("rows").ctx("rows")?.cast(&DataType::Float64).ctx("rows")?;
    let rows = rows.f64().ctx("rows")?;
    let by_day: BTreeMap<NaiveDate, f64> =
        days.iter().zip(rows.iter()).filter_map(|(d, r)| Some((date_of_epoch_days(d?), r?))).collect();
    let mut out = Vec::new();
    let mut d = w.recent_from;
    while d <= w.s {
        let mut same: Vec<f64> = Vec::new();
        let mut b = w.baseline_from;
        while b < w.recent_from {
            if b.weekday() == d.weekday() {
                same.push(by_day.get(&b).copied().unwrap_or(0.0));
            }
            b += Duration::days(1);
        }
        same.sort_by(f64::total_cmp);
        let base = if same.is_empty() { 0.0 } else { same[same.len() / 2] };
        let n = by_day.get(&d).copied().unwrap_or(0.0);
        if base >= 1.0 {
            let change = n / base - 1.0;
            let z = (n - base) / base.sqrt();
            out.push(
                Check::new(
                    "rows_per_day",
                    format!("{table} dt={d}"),
                    "relative_change",
                    change,
                    format!("median of the {} {}s of {} ({base:.0} rows)", same.len(), d.weekday(), w.baseline_text()),
                )
                .judge(change.abs(), cfg.limits.rows_per_day, Some((z, cfg.min_z))),
            );
        }
        d += Duration::days(1);
    }
    Ok(out)
}

/// The time column of a daily table as a date.
fn own_date(table: &Table) -> Expr {
    match table.layout {
        contract::Layout::Daily { time_column } => col(time_column).cast(DataType::Date),
        contract::Layout::Whole => lit(NULL).cast(DataType::Date),
    }
}

/// Null rates, late rows and repeated keys: recent days against the baseline.
fn per_window(lf: LazyFrame, table: &Table, w: &Windows, cfg: &Monitor) -> Result<Vec<Check>> {
    let nullable: Vec<&str> = table.columns.iter().filter(|c| c.nullable).map(|c| c.name).collect();
    let mut aggs = vec![len().alias("rows"), own_date(table).lt(col("dt")).sum().alias("late")];
    aggs.extend(nullable.iter().map(|c| col(*c).null_count().alias(format!("null {c}"))));
    let df = collect(lf.clone().group_by([col("recent")]).agg(aggs), "null rates and late rows")?;
    let keys: Vec<Expr> = match table.key {
        Some(k) => vec![col(k)],
        None => vec![col("user_id"), col("date")],
    };
    let mut by = keys.clone();
    by.push(col("recent"));
    let dups = collect(
        lf.group_by(by)
            .agg([len().alias("n")])
            .group_by([col("recent")])
            .agg([col("n").sum().cast(DataType::Float64).alias("rows"), len().cast(DataType::Float64).alias("keys")]),
        "repeated keys",
    )?;
    let window = |df: &DataFrame, recent: bool, name: &str| -> Result<Option<f64>> {
        let flags = df.column("recent").ctx("recent")?.bool().ctx("recent")?.clone();
        let values = df.column(name).ctx(name)?.cast(&DataType::Float64).ctx(name)?;
        let values = values.f64().ctx(name)?;
        Ok(flags.iter().zip(values.iter()).find(|(f, _)| *f == Some(recent)).and_then(|(_, v)| v))
    };
    let mut out = Vec::new();
    let (Some(n_recent), Some(n_base)) = (window(&df, true, "rows")?, window(&df, false, "rows")?) else {
        return Ok(out);
    };
    if n_recent < cfg.min_rows as f64 || n_base < cfg.min_rows as f64 {
        return Ok(out);
    }
    let base_text = format!("{} ({n_base:.0} rows)", w.baseline_text());
    // A share in the recent days against the baseline's: a two-proportion z.
    let share = |name: &str, d: &DataFrame, denominators: (f64, f64)| -> Result<Option<(f64, f64, f64)>> {
        let (Some(r), Some(b)) = (window(d, true, name)?, window(d, false, name)?) else { return Ok(None) };
        let (pr, pb) = (r / denominators.0, b / denominators.1);
        let pooled = (r + b) / (denominators.0 + denominators.1);
        let se = (pooled * (1.0 - pooled) * (1.0 / denominators.0 + 1.0 / denominators.1)).sqrt();
        let z = if se > 0.0 { (pr - pb) / se } else { 0.0 };
        Ok(Some((pr, pb, z)))
    };
    for c in &nullable {
        if let Some((pr, pb, z)) = share(&format!("null {c}"), &df, (n_recent, n_base))? {
            out.push(
                Check::new(
                    "null_rate",
                    format!("{}.{c}", table.name),
                    "absolute_change",
                    pr - pb,
                    format!("{pb:.4} in {base_text}"),
                )
                .judge((pr - pb).abs(), cfg.limits.null_rate, Some((z, cfg.min_z))),
            );
        }
    }
    if let Some((pr, pb, z)) = share("late", &df, (n_recent, n_base))? {
        out.push(
            Check::new(
                "late_rows",
                table.name.to_string(),
                "absolute_change",
                pr - pb,
                format!("{pb:.4} of the rows of {base_text} dated before their partition"),
            )
            .judge(pr - pb, cfg.limits.late_share, Some((z, cfg.min_z))),
        );
    }
    let (Some(rows_r), Some(keys_r), Some(rows_b), Some(keys_b)) = (
        window(&dups, true, "rows")?,
        window(&dups, true, "keys")?,
        window(&dups, false, "rows")?,
        window(&dups, false, "keys")?,
    ) else {
        return Ok(out);
    };
    let (pr, pb) = (1.0 - keys_r / rows_r, 1.0 - keys_b / rows_b);
    let pooled = (rows_r - keys_r + rows_b - keys_b) / (rows_r + rows_b);
    let se = (pooled * (1.0 - pooled) * (1.0 / rows_r + 1.0 / rows_b)).sqrt();
    let key_text = table.key.unwrap_or("(user_id, date)");
    out.push(
        Check::new(
            "duplicates",
            format!("{} {key_text}", table.name),
            "absolute_change",
            pr - pb,
            format!("{pb:.4} of the rows of {base_text} repeat a key"),
        )
        .judge(
            pr - pb,
            cfg.limits.duplicate_share,
            Some((if se > 0.0 { (pr - pb) / se } else { 0.0 }, cfg.min_z)),
        ),
    );
    Ok(out)
}

/// The value shares of each enumerated column: recent days against the baseline.
fn enum_shares(lf: LazyFrame, table: &Table, w: &Windows, cfg: &Monitor) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    for c in table.columns.iter().filter(|c| !c.values.is_empty()) {
        let df = collect(
            lf.clone().group_by([col("recent"), col(c.name)]).agg([len().cast(DataType::Float64).alias("n")]),
            "value shares",
        )?;
        let flags = df.column("recent").ctx("recent")?.bool().ctx("recent")?.clone();
        let values = df.column(c.name).ctx(c.name)?.str().ctx(c.name)?.clone();
        let n = df.column("n").ctx("n")?.f64().ctx("n")?.clone();
        let (mut recent, mut base) = (Categories::default(), Categories::default());
        for ((f, v), n) in flags.iter().zip(values.iter()).zip(n.iter()) {
            let target = if f == Some(true) { &mut recent } else { &mut base };
            *target.0.entry(v.unwrap_or("(null)").to_string()).or_default() += n.unwrap_or(0.0);
        }
        if recent.total() < cfg.min_rows as f64 || base.total() < cfg.min_rows as f64 {
            continue;
        }
        let (d, which) = recent.l_infinity(&base);
        // The largest share's change, with its two-proportion z.
        let which = which.unwrap_or_default();
        let (r, b) = (recent.0.get(&which).copied().unwrap_or(0.0), base.0.get(&which).copied().unwrap_or(0.0));
        let (nr, nb) = (recent.total(), base.total());
        let pooled = (r + b) / (nr + nb);
        let se = (pooled * (1.0 - pooled) * (1.0 / nr + 1.0 / nb)).sqrt();
        let z = if se > 0.0 { (r / nr - b / nb) / se } else { 0.0 };
        out.push(
            Check::new(
                "enum_shares",
                format!("{}.{}", table.name, c.name),
                "l_infinity",
                d,
                format!("{} ({which}: {:.3} then {:.3})", w.baseline_text(), b / nb, r / nr),
            )
            .judge(d, cfg.limits.enum_share, Some((z, cfg.min_z))),
        );
    }
    Ok(out)
}

/// `activity` per value of `dimension` (and over all rows, once, with the platforms): the
/// rows per day, and each measure's mean per row, recent days against the baseline.
fn segments(lf: LazyFrame, dimension: &str, w: &Windows, cfg: &Monitor) -> Result<Vec<Check>> {
    let mut aggs = vec![len().cast(DataType::Float64).alias("rows")];
    for m in MEASURES {
        let v = col(*m).cast(DataType::Float64);
        aggs.push(v.clone().sum().alias(format!("sum {m}")));
        aggs.push((v.clone() * v).sum().alias(format!("sq {m}")));
    }
    let df = collect(lf.group_by([col("recent"), col(dimension)]).agg(aggs), "activity by segment")?;
    let flags = df.column("recent").ctx("recent")?.bool().ctx("recent")?.clone();
    let keys = df.column(dimension).ctx(dimension)?.cast(&DataType::String).ctx(dimension)?;
    let keys = keys.str().ctx(dimension)?.clone();
    let mut numbers: Vec<(String, Vec<f64>)> = vec![("rows".into(), Vec::new())];
    for m in MEASURES {
        numbers.push((format!("sum {m}"), Vec::new()));
        numbers.push((format!("sq {m}"), Vec::new()));
    }
    for (name, v) in numbers.iter_mut() {
        *v = df.column(name).ctx(name.as_str())?.f64().ctx(name.as_str())?.iter().map(|x| x.unwrap_or(0.0)).collect();
    }
    // segment → (recent, baseline) sums in the order of `numbers`.
    let mut by: BTreeMap<String, [Vec<f64>; 2]> = BTreeMap::new();
    for i in 0..df.height() {
        let key = keys.get(i).unwrap_or("(unknown)").to_string();
        let slot = if flags.get(i) == Some(true) { 0 } else { 1 };
        let entry = by.entry(key).or_insert_with(|| [vec![0.0; numbers.len()], vec![0.0; numbers.len()]]);
        for (j, (_, v)) in numbers.iter().enumerate() {
            entry[slot][j] += v[i];
        }
        if dimension == "platform" {
            let all = by.entry("(all)".into()).or_insert_with(|| [vec![0.0; numbers.len()], vec![0.0; numbers.len()]]);
            for (j, (_, v)) in numbers.iter().enumerate() {
                all[slot][j] += v[i];
            }
        }
    }
    let (days_r, days_b) =
        ((w.s - w.recent_from).num_days() as f64 + 1.0, (w.recent_from - w.baseline_from).num_days() as f64);
    let mut out = Vec::new();
    for (key, [r, b]) in &by {
        let subject = |what: &str| {
            if key == "(all)" { format!("activity{what}") } else { format!("activity{what} {dimension}={key}") }
        };
        let (nr, nb) = (r[0], b[0]);
        if nb < cfg.min_rows as f64 {
            continue;
        }
        if key != "(all)" {
            // Rows per day: a vanished or half-exported segment.
            let (per_r, per_b) = (nr / days_r, nb / days_b);
            let change = per_r / per_b - 1.0;
            let expected = nb * days_r / days_b;
            let z = (nr - expected) / expected.sqrt();
            out.push(
                Check::new(
                    "segment_rows",
                    subject(""),
                    "relative_change",
                    change,
                    format!("{per_b:.0} rows per day in {}", w.baseline_text()),
                )
                .judge(change.abs(), cfg.limits.segment_rows, Some((z, cfg.min_z))),
            );
        }
        if nr < cfg.min_rows as f64 {
            continue;
        }
        for (j, m) in MEASURES.iter().enumerate() {
            let (sr, qr, sb, qb) = (r[1 + 2 * j], r[2 + 2 * j], b[1 + 2 * j], b[2 + 2 * j]);
            let (mr, mb) = (sr / nr, sb / nb);
            if mb <= 0.0 {
                continue;
            }
            let (vr, vb) = ((qr / nr - mr * mr).max(0.0), (qb / nb - mb * mb).max(0.0));
            let se = (vr / nr + vb / nb).sqrt();
            let change = mr / mb - 1.0;
            out.push(
                Check::new(
                    "segment_mean",
                    subject(&format!(".{m}")),
                    "relative_change",
                    change,
                    format!("{mb:.4} per row in {}", w.baseline_text()),
                )
                .judge(
                    change.abs(),
                    cfg.limits.segment_mean,
                    Some((if se > 0.0 { (mr - mb) / se } else { 0.0 }, cfg.min_z)),
                ),
            );
        }
    }
    Ok(out)
}
