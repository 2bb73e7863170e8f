//! The feature builder: one row per user premium at the end of snapshot S, built the same
//! way for training snapshots and for scoring, so the two cannot drift.
//!
//! Windowed aggregates are SQL in `sql/` (executed by Polars' SQL engine over staged lazy
//! frames); "latest state" features (current plan, price, open dunning episode), which
//! need ordered last-value logic that SQL engines spell differently, are named Polars
//! expressions below. `sql/README.md` documents the split.
//!
//! Point-in-time correctness lives in the staging step: the SQL never sees a row after
//! the end of day S, because [`crate::inputs::Inputs::as_of`] removed it before staging.

use chrono::{Datelike, Duration, NaiveDate};
use polars::prelude::*;
use polars::sql::SQLContext;

mod store;

use crate::error::{PolarsContext, Result};
use crate::inputs::{Inputs, date_lit, end_of_day_us, in_set, ts_lit_us};
use crate::labels;
use crate::models::FeatureKind;

/// The SQL feature models, in join order: name, the staged view it reads, its SQL.
pub(crate) const SQL_MODELS: &[(&str, &str, &str)] = &[
    ("feat_engagement", ACTIVITY_VIEW, include_str!("../../sql/feat_engagement.sql")),
    ("feat_payments", "stg_billing", include_str!("../../sql/feat_payments.sql")),
    ("feat_messaging", "stg_messages", include_str!("../../sql/feat_messaging.sql")),
];

/// Whether feature `name` is computed from `messages` (an output column of
/// `sql/feat_messaging.sql`): its distribution follows the campaign calendar, not the users.
pub(crate) fn follows_campaigns(name: &str) -> bool {
    SQL_MODELS.iter().filter(|(_, view, _)| *view == "stg_messages").any(|(_, _, sql)| {
        sql.lines().any(|line| {
            line.trim_end().trim_end_matches(',').split_whitespace().rev().take(2).collect::<Vec<_>>() == [name, "AS"]
        })
    })
}

/// The staged activity window, the one input too large to aggregate in one pass.
const ACTIVITY_VIEW: &str = "stg_activity";

/// Days of activity the activity models read, ending on S.
const ACTIVITY_WINDOW_DAYS: i64 = 90;

/// What a missing value of a numeric feature means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// A count or a flag: no rows means zero, and the table says 0.
    Zero,
    /// "Unknown" or "never" (a rate with no denominator, days since an event that never
    /// happened): the table keeps it missing and the models impute it.
    Unknown,
}

/// A feature: its name, kind, what a missing value means, whether it reads as a yes/no
/// fact, and the plain words used for it in `top_reasons`. Every property of a feature
/// lives here, so the builder, the encoder and the reasons cannot disagree.
#[derive(Debug, Clone, Copy)]
pub struct FeatureDef {
    pub name: &'static str,
    pub kind: FeatureKind,
    pub(crate) missing: Missing,
    /// Stated as a yes/no fact ("being on a free trial") rather than an amount ("high …").
    pub(crate) flag: bool,
    pub(crate) words: &'static str,
}

/// A numeric feature whose missing value is zero (counts).
const fn count(name: &'static str, words: &'static str) -> FeatureDef {
    FeatureDef { name, kind: FeatureKind::Numeric, missing: Missing::Zero, flag: false, words }
}
/// A numeric feature whose missing value means unknown or never.
const fn measure(name: &'static str, words: &'static str) -> FeatureDef {
    FeatureDef { name, kind: FeatureKind::Numeric, missing: Missing::Unknown, flag: false, words }
}
/// A 0/1 feature, stated as a fact; missing is 0.
const fn flag(name: &'static str, words: &'static str) -> FeatureDef {
    FeatureDef { name, kind: FeatureKind::Numeric, missing: Missing::Zero, flag: true, words }
}
const fn category(name: &'static str, words: &'static str) -> FeatureDef {
    FeatureDef { name, kind: FeatureKind::Categorical, missing: Missing::Unknown, flag: false, words }
}

/// Every feature the models may use, with the words a marketer reads.
pub const FEATURES: &[FeatureDef] = &[
    count("active_days_7", "active days in the last week"),
    count("active_days_14", "active days in the last two weeks"),
    count("active_days_30", "active days in the last 30 days"),
    count("active_days_60", "active days in the last 60 days"),
    count("active_days_90", "active days in the last 90 days"),
    count("streams_7", "streams in the last week"),
    count("streams_30", "streams in the last 30 days"),
    count("streams_90", "streams in the last 90 days"),
    count("hours_played_30", "hours listened in the last 30 days"),
    count("skips_30", "skips in the last 30 days"),
    measure("skip_rate_30", "share of tracks skipped in the last 30 days"),
    count("sessions_30", "listening sessions in the last 30 days"),
    count("searches_30", "searches in the last 30 days"),
    count("saves_30", "library saves in the last 30 days"),
    count("unique_tracks_30", "distinct tracks in the last 30 days"),
    measure("listening_trend_14_60", "listening in the last two weeks compared with before"),
    measure("days_since_active", "days since the user last listened"),
    measure("weekend_share_30", "share of active days on weekends"),
    measure("podcast_share_30", "share of listening time on podcasts"),
    count("failures_30", "failed payments in the last 30 days"),
    count("failures_90", "failed payments in the last 90 days"),
    count("failures_365", "failed payments in the last year"),
    count("failures_insufficient_funds_365", "payments failed for lack of funds in the last year"),
    count("failures_expired_card_365", "payments failed on an expired card in the last year"),
    count("recoveries_365", "payments recovered after a failure in the last year"),
    count("lapses_365", "times premium lapsed in the last year"),
    count("plan_changes_365", "plan changes in the last year"),
    count("refunds_365", "refunds in the last year"),
    measure("days_since_failure", "days since the last failed payment"),
    count("messages_30", "messages received in the last 30 days"),
    count("messages_90", "messages received in the last 90 days"),
    count("opens_90", "messages opened in the last 90 days"),
    count("clicks_90", "messages clicked in the last 90 days"),
    count("unsubscribes_90", "unsubscribes in the last 90 days"),
    measure("days_since_message", "days since the last message"),
    measure("tenure_days", "days since signing up"),
    measure("price", "current monthly price"),
    count("price_change_90", "price increase over the last 90 days"),
    flag("is_trial", "being on a free trial"),
    flag("cancel_pending", "having cancelled (premium ends at period end)"),
    measure("days_to_period_end", "days until the paid period ends"),
    flag("open_dunning", "an unresolved failed payment"),
    measure("age", "age"),
    flag("push_opt_in", "push notifications allowed"),
    flag("email_opt_in", "email allowed"),
    category("plan", "plan"),
    category("country", "country"),
    category("signup_platform", "signup platform"),
    category("payment_method", "payment method"),
];

pub(crate) fn feature(name: &str) -> Option<&'static FeatureDef> {
    FEATURES.iter().find(|f| f.name == name)
}

/// The features as the encoder takes them: names and kinds, in table order.
pub fn specs() -> Vec<(String, FeatureKind)> {
    FEATURES.iter().map(|f| (f.name.to_string(), f.kind)).collect()
}

/// A stable hash of the feature schema (names, kinds and order) the models are built on:
/// a model refuses to score features of another schema.
pub(crate) fn feature_schema_hash() -> String {
    let text: String = FEATURES.iter().map(|f| format!("{}:{:?};", f.name, f.kind)).collect();
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

fn days_ago(s: NaiveDate, date: Expr) -> Expr {
    (date_lit(s).cast(DataType::Int32) - date.cast(DataType::Int32)).alias("days_ago")
}

/// Most premium users whose activity one pass of [`build`] aggregates. The activity
/// aggregate is a group-by with one group per user: Polars' streaming group-by keeps a
/// hot table of a few thousand groups and holds every other row (its key and each
/// aggregate's input column) until the input ends. A pass therefore holds its users'
/// activity window: in the 1M-user benchmark world, one pass over all 42M rows of the
/// window peaked at 8.5 GB; passes of ~160,000 users (9.3M rows) hold about 1.5 GB each.
/// The pass size is the memory bound; each further pass re-reads the `user_id` column.
const USERS_PER_PASS: usize = 200_000;

/// Build the features table for snapshot `s` from inputs loaded for a range containing it.
/// Columns: user_id, snapshot_date, then [`FEATURES`] in order; sorted by user_id.
///
/// A user's features depend only on that user's rows. The SQL models over the activity
/// window are therefore computed in passes: the population (premium at the end of S) is
/// split into runs of consecutive user ids, and each pass reads only its users' activity
/// (a `user_id` range the Parquet reader applies as it decodes, then a semi-join). The
/// passes' rows are stacked and joined, in one last query, with the models over the
/// population's billing and messages (small, already in memory) and the latest-state
/// features. Every query runs on the streaming engine. Every aggregate is exact (integer
/// sums, counts, minima, last values), so the table does not depend on how many passes
/// built it; it is returned as one chunk, so the Parquet row groups written from it do
/// not either.
pub fn build(inputs: &Inputs, s: NaiveDate) -> Result<DataFrame> {
    build_in_passes(inputs, s, None, USERS_PER_PASS)
}

/// The rows of [`build`] for the users in `users` (a frame with a `user_id` column; those
/// not premium at the end of S have no row), computed from those users' rows only. A
/// user's features depend only on that user's rows, so each row is the one [`build`]
/// gives; callers that need a few users of many snapshots (the campaign history) skip the
/// rest of each population.
pub(crate) fn build_of(inputs: &Inputs, s: NaiveDate, users: &DataFrame) -> Result<DataFrame> {
    build_in_passes(inputs, s, Some(users), USERS_PER_PASS)
}

fn build_in_passes(
    inputs: &Inputs,
    s: NaiveDate,
    users: Option<&DataFrame>,
    users_per_pass: usize,
) -> Result<DataFrame> {
    let pit = inputs.as_of(s);
    let mut premium = labels::premium_at(pit.billing.clone(), s);
    if let Some(users) = users {
        premium = premium
            .join(
                users.clone().lazy().select([col("user_id")]),
                [col("user_id")],
                [col("user_id")],
                JoinArgs::new(JoinType::Semi),
            )
            .sort(["user_id"], SortMultipleOptions::default());
    }
    let population = collect_streaming(premium).ctx(format!("finding the premium users at {s}"))?;
    let activity = activity_rows(&pit, s, &population, users.is_none(), users_per_pass)?.lazy();
    // Other users' billing and messages would only be dropped by the joins on the population.
    let of_population = |lf: LazyFrame| {
        lf.join(population.clone().lazy(), [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Semi))
    };
    let pit =
        Inputs { billing: of_population(pit.billing.clone()), messages: of_population(pit.messages.clone()), ..pit };
    let mut table = collect_streaming(features_of(&pit, population.lazy(), vec![activity], s)?)
        .ctx(format!("computing features for snapshot {s}"))?;
    table.rechunk_mut_par();
    Ok(table)
}

/// The activity models' rows (`user_id` and their columns) of every user in `population`
/// (the premium users at the end of `s`, sorted by id), from the inputs as of `s` (`pit`,
/// which carry the feature store and the activity files read). With a store, the rows it
/// keeps for `s` are used when they were aggregated from the same activity files
/// (`store`); the users it lacks are aggregated here. Without one, or when the activity
/// changed, every user is aggregated, and the rows of a whole population (`whole`) are
/// kept for later runs.
fn activity_rows(
    pit: &Inputs,
    s: NaiveDate,
    population: &DataFrame,
    whole: bool,
    users_per_pass: usize,
) -> Result<DataFrame> {
    let Some(store) = pit.store.as_deref() else {
        return activity_in_passes(pit, s, population, users_per_pass);
    };
    let key = store::key(pit, store, s, ACTIVITY_WINDOW_DAYS, &activity_definition())?;
    let Some(kept) = store::read(store, s, &key) else {
        let rows = activity_in_passes(pit, s, population, users_per_pass)?;
        if whole {
            store::keep(store, s, &key, &rows);
        } else {
            store.note(s, format!("aggregated {} users (nothing kept for this snapshot)", rows.height()));
        }
        return Ok(rows);
    };
    let on_user = |how: JoinType| {
        move |lf: LazyFrame, other: LazyFrame| {
            lf.join(other.select([col("user_id")]), [col("user_id")], [col("user_id")], JoinArgs::new(how))
        }
    };
    let found = on_user(JoinType::Semi)(kept.clone().lazy(), population.clone().lazy())
        .collect()
        .ctx(format!("reading the kept activity aggregates of snapshot {s}"))?;
    let missing = on_user(JoinType::Anti)(population.clone().lazy(), kept.lazy())
        .collect()
        .ctx(format!("finding the users the feature store lacks for snapshot {s}"))?;
    if missing.height() == 0 {
        store.note(s, format!("reused {} users", found.height()));
        return Ok(found);
    }
    let built = activity_in_passes(pit, s, &missing, users_per_pass)?;
    store.note(s, format!("reused {} users, aggregated {} more", found.height(), built.height()));
    let names = built.get_column_names_owned();
    found.select(names).and_then(|f| f.vstack(&built)).ctx(format!("joining the activity aggregates of snapshot {s}"))
}

/// Remove the feature store's entries of snapshots before `before` (when there is a
/// store): `retain run` calls it with the oldest snapshot its night reads, older than any
/// snapshot a later night needs.
pub(crate) fn forget_kept_before(inputs: &Inputs, before: NaiveDate) {
    if let Some(store) = inputs.store.as_deref() {
        store::prune(store, before);
    }
}

/// What the activity aggregates of a snapshot are computed by: the activity models' SQL,
/// the window, the feature schema and the code's version. Kept aggregates computed by
/// anything else are not reused.
fn activity_definition() -> String {
    let sql: String = SQL_MODELS
        .iter()
        .filter(|(_, view, _)| *view == ACTIVITY_VIEW)
        .map(|(name, _, sql)| format!("{name}:{sql};"))
        .collect();
    format!(
        "{sql}window={ACTIVITY_WINDOW_DAYS};schema={};code={}",
        feature_schema_hash(),
        crate::version::code_version()
    )
}

/// The activity models' rows for the users of `population`, in passes of at most
/// `users_per_pass` users with consecutive ids (see [`build`]).
fn activity_in_passes(pit: &Inputs, s: NaiveDate, population: &DataFrame, users_per_pass: usize) -> Result<DataFrame> {
    let passes = population.height().div_ceil(users_per_pass).max(1);
    let per_pass = population.height().div_ceil(passes).max(1);
    let mut activity: Option<DataFrame> = None;
    for pass in 0..passes {
        let users = population.slice((pass * per_pass) as i64, per_pass);
        let in_pass = match id_range(&users)? {
            Some((first, last)) => col("user_id").gt_eq(lit(first)).and(col("user_id").lt_eq(lit(last))),
            None => lit(false),
        };
        let window = pit.activity.clone().filter(in_pass).join(
            users.clone().lazy(),
            [col("user_id")],
            [col("user_id")],
            JoinArgs::new(JoinType::Semi),
        );
        let mut part = users.lazy();
        for model in activity_models(window, s)? {
            part = part.join(model, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left));
        }
        let part = collect_streaming(part)
            .ctx(format!("aggregating activity for snapshot {s} (pass {} of {passes})", pass + 1))?;
        match activity.as_mut() {
            None => activity = Some(part),
            Some(rows) => {
                rows.vstack_mut_owned(part).ctx(format!("stacking the activity features of snapshot {s}"))?;
            }
        }
    }
    Ok(activity.expect("at least one pass"))
}

fn collect_streaming(lf: LazyFrame) -> PolarsResult<DataFrame> {
    lf.collect_with_engine(Engine::Streaming).map(|r| r.unwrap_single())
}

/// The first and last user id of a frame sorted by `user_id`, unless it is empty.
fn id_range(users: &DataFrame) -> Result<Option<(String, String)>> {
    let ids = users.column("user_id").ctx("population user ids")?.str().ctx("population user ids")?;
    if ids.is_empty() {
        return Ok(None);
    }
    Ok(match (ids.get(0), ids.get(ids.len() - 1)) {
        (Some(a), Some(b)) => Some((a.to_string(), b.to_string())),
        _ => None,
    })
}

/// The SQL models over the activity window (`user_id` and their columns, one row per user
/// with activity), from point-in-time `activity` rows.
fn activity_models(activity: LazyFrame, s: NaiveDate) -> Result<Vec<LazyFrame>> {
    let window_start = s - Duration::days(ACTIVITY_WINDOW_DAYS - 1);
    let stg_activity = activity.filter(col("date").gt_eq(date_lit(window_start))).select([
        col("user_id"),
        days_ago(s, col("date")),
        col("date").dt().weekday().gt_eq(lit(6)).alias("is_weekend"),
        col("ms_played"),
        col("streams"),
        col("skips"),
        col("unique_tracks"),
        col("sessions"),
        col("searches"),
        col("saves"),
        col("podcast_ms"),
    ]);
    let mut ctx = SQLContext::new();
    ctx.register(ACTIVITY_VIEW, stg_activity);
    run_models(&mut ctx, |view| view == ACTIVITY_VIEW)
}

fn run_models(ctx: &mut SQLContext, reads: impl Fn(&str) -> bool) -> Result<Vec<LazyFrame>> {
    SQL_MODELS
        .iter()
        .filter(|(_, view, _)| reads(view))
        .map(|(name, _, sql)| ctx.execute(sql).ctx(format!("sql/{name}.sql")))
        .collect()
}

/// Features of the users in `population` (`user_id`s premium at the end of `s`) from
/// point-in-time inputs `pit`, given the activity models' rows (`activity`).
fn features_of(pit: &Inputs, population: LazyFrame, activity: Vec<LazyFrame>, s: NaiveDate) -> Result<LazyFrame> {
    let stg_billing = pit.billing.clone().with_columns([days_ago(s, col("ts").dt().date())]);
    let stg_messages =
        pit.messages.clone().filter(col("ts").gt_eq(ts_lit_us(end_of_day_us(s - Duration::days(90))))).select([
            col("user_id"),
            days_ago(s, col("ts").dt().date()),
            col("message_type"),
            col("channel"),
            col("arm"),
            // A message decided on S may be opened after S: only opens known by then count.
            col("opened_at").lt(ts_lit_us(end_of_day_us(s))).fill_null(lit(false)).alias("opened"),
            col("clicked"),
            col("unsubscribed"),
        ]);
    let mut ctx = SQLContext::new();
    ctx.register("stg_billing", stg_billing.clone());
    ctx.register("stg_messages", stg_messages);

    let mut out = population.join(pit.users.clone(), [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left));
    for model in activity.into_iter().chain(run_models(&mut ctx, |view| view != ACTIVITY_VIEW)?) {
        out = out.join(model, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left));
    }
    out =
        out.join(subscription_state(stg_billing, s), [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Left));

    // Counts are zero, not missing, for users without rows in a window.
    let mut derived = vec![
        (col("skips_30").cast(DataType::Float64) / (col("streams_30") + col("skips_30")).cast(DataType::Float64))
            .fill_nan(lit(NULL))
            .alias("skip_rate_30"),
        (col("weekend_days_30").cast(DataType::Float64) / col("active_days_30").cast(DataType::Float64))
            .fill_nan(lit(NULL))
            .alias("weekend_share_30"),
        (col("podcast_ms_30").cast(DataType::Float64) / col("ms_played_30").cast(DataType::Float64))
            .fill_nan(lit(NULL))
            .alias("podcast_share_30"),
        ((date_lit(s) - col("signup_date")).dt().total_days(false)).cast(DataType::Int32).alias("tenure_days"),
        (lit(s.year()) - col("birth_year").cast(DataType::Int32)).alias("age"),
        col("push_opt_in").cast(DataType::Int32),
        col("email_opt_in").cast(DataType::Int32),
        // Users who never listened in 90 days: the window's length, not missing.
        col("days_since_active").fill_null(lit(90)),
        col("listening_trend_14_60").fill_null(lit(1.0)),
    ];
    let derived_names: Vec<String> =
        derived.iter().filter_map(|e| e.clone().meta().output_name().ok().map(|n| n.to_string())).collect();
    let zero_filled: Vec<Expr> = FEATURES
        .iter()
        .filter(|f| f.kind == FeatureKind::Numeric && f.missing == Missing::Zero)
        .filter(|f| !derived_names.iter().any(|d| d == f.name))
        .map(|f| col(f.name).fill_null(lit(0)))
        .collect();
    derived.extend(zero_filled);
    let mut select = vec![col("user_id"), date_lit(s).alias("snapshot_date")];
    select.extend(FEATURES.iter().map(|f| col(f.name)));
    Ok(out.with_columns(derived).select(select).sort(["user_id"], SortMultipleOptions::default()))
}

/// Current subscription state from ordered billing events (last-value logic).
fn subscription_state(billing: LazyFrame, s: NaiveDate) -> LazyFrame {
    let status = in_set("event_type", crate::contract::STATUS_EVENTS);
    let ts_of = |cond: Expr| col("ts").filter(cond).last();
    billing
        .sort(["user_id", "ts", "event_id"], SortMultipleOptions::default())
        .group_by([col("user_id")])
        .agg([
            col("plan").filter(col("event_type").neq(lit("cancel"))).last().alias("plan"),
            col("amount").filter(col("amount").is_not_null()).last().alias("price"),
            col("amount")
                .filter(col("amount").is_not_null().and(col("days_ago").gt_eq(lit(90))))
                .last()
                .alias("price_90_ago"),
            col("event_type").filter(status.clone()).last().eq(lit("trial_start")).alias("trial"),
            ts_of(status.clone()).alias("status_ts"),
            ts_of(col("event_type").eq(lit("cancel"))).alias("cancel_ts"),
            ts_of(col("event_type").eq(lit("payment_failed"))).alias("fail_ts"),
            ts_of(in_set("event_type", &["payment_recovered", "expire", "renew", "subscribe"])).alias("resolve_ts"),
            col("period_end").filter(col("period_end").is_not_null()).last().alias("period_end"),
            col("payment_method").filter(col("payment_method").is_not_null()).last().alias("payment_method"),
        ])
        .select([
            col("user_id"),
            col("plan"),
            col("price"),
            (col("price") - col("price_90_ago")).fill_null(lit(0.0)).alias("price_change_90"),
            col("trial").cast(DataType::Int32).fill_null(lit(0)).alias("is_trial"),
            col("cancel_ts").gt(col("status_ts")).fill_null(lit(false)).cast(DataType::Int32).alias("cancel_pending"),
            (col("period_end") - date_lit(s)).dt().total_days(false).cast(DataType::Int32).alias("days_to_period_end"),
            col("fail_ts")
                .gt(col("resolve_ts").fill_null(ts_lit_us(0)))
                .fill_null(lit(false))
                .cast(DataType::Int32)
                .alias("open_dunning"),
            col("payment_method"),
        ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_campaign_features_are_the_messaging_models_columns() {
        for f in ["messages_30", "opens_90", "days_since_message", "unsubscribes_90"] {
            assert!(super::follows_campaigns(f), "{f}");
        }
        for f in ["streams_7", "price", "failures_30", "user_id"] {
            assert!(!super::follows_campaigns(f), "{f}");
        }
    }

    use super::*;

    #[test]
    fn the_table_does_not_depend_on_how_many_passes_built_it() {
        let s = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let inputs = crate::inputs::sample_inputs(s, s, 30);
        let whole = build_in_passes(&inputs, s, None, usize::MAX).unwrap();
        assert!(whole.height() > 300, "a real population");
        let mut bytes = Vec::new();
        for users_per_pass in [whole.height(), 301, 100] {
            let mut table = build_in_passes(&inputs, s, None, users_per_pass).unwrap();
            assert_eq!(table, whole, "{users_per_pass} users per pass");
            bytes.push(crate::storage::parquet_bytes(&mut table).unwrap());
        }
        assert!(bytes.windows(2).all(|w| w[0] == w[1]), "the same Parquet bytes");

        // Some users' rows, whichever passes build them; ids of users not premium at S
        // (or unknown) have none.
        let ids: Vec<String> =
            whole.column("user_id").unwrap().str().unwrap().iter().flatten().map(String::from).collect();
        let mut some: Vec<String> = ids.iter().step_by(3).cloned().collect();
        some.push("nobody".into());
        let users = df!("user_id" => &some).unwrap();
        for users_per_pass in [usize::MAX, 50] {
            let table = build_in_passes(&inputs, s, Some(&users), users_per_pass).unwrap();
            let keep: BooleanChunked = ids.iter().map(|id| some.contains(id)).collect();
            assert_eq!(table, whole.filter(&keep).unwrap(), "{users_per_pass} users per pass");
        }

        // Before the sample's first day nobody is premium: an empty table with every column
        // (an early training snapshot; a command's own snapshot there is refused on read).
        let early = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let none = build(&crate::inputs::sample_inputs(early, s, 30), early).unwrap();
        assert_eq!((none.height(), none.schema()), (0, whole.schema()));
    }

    /// A copy of the shipped sample as an input root, so a test can add files to it.
    fn sample_copy() -> tempfile::TempDir {
        fn copy(from: &std::path::Path, to: &std::path::Path) {
            std::fs::create_dir_all(to).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                let target = to.join(entry.file_name());
                if entry.file_type().unwrap().is_dir() {
                    copy(&entry.path(), &target);
                } else {
                    std::fs::copy(entry.path(), target).unwrap();
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        copy(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data-samples")), dir.path());
        dir
    }

    #[test]
    fn kept_activity_aggregates_are_used_while_the_activity_they_came_from_is_the_same() {
        use crate::inputs::Lookback;
        use crate::storage::{Storage, StorageOptions};
        let s = NaiveDate::from_ymd_opt(2026, 11, 10).unwrap();
        let input = sample_copy();
        let output = tempfile::tempdir().unwrap();
        let open = |dir: &tempfile::TempDir| {
            Storage::open(dir.path().to_str().unwrap(), &StorageOptions::default(), true).unwrap()
        };
        // The sample has partitions after S (within `late_days`), none with a row of S's window.
        let plain = || Inputs::load(&open(&input), s, s, Lookback::new(30)).unwrap();
        let with_store = || plain().with_feature_store(open(&output), None);
        let log = |inputs: &Inputs| -> Vec<String> {
            inputs.store.as_ref().unwrap().log.lock().unwrap().get(&s).cloned().unwrap_or_default()
        };

        let fresh = build(&plain(), s).unwrap();
        let n = fresh.height();
        let first = with_store();
        assert_eq!(build(&first, s).unwrap(), fresh);
        assert_eq!(log(&first), [format!("aggregated {n} users and kept them")]);

        // A later run reads them back, for the whole population and for some users.
        let later = with_store();
        assert_eq!(build(&later, s).unwrap(), fresh);
        let ids: Vec<&str> = fresh.column("user_id").unwrap().str().unwrap().iter().flatten().collect();
        let some: Vec<&str> = ids.iter().copied().step_by(3).collect();
        let keep: BooleanChunked = ids.iter().map(|id| some.contains(id)).collect();
        let of_some = build_of(&later, s, &df!("user_id" => &some).unwrap()).unwrap();
        assert_eq!(of_some, fresh.filter(&keep).unwrap());
        assert_eq!(log(&later), [format!("reused {n} users"), format!("reused {} users", some.len())]);

        // Users the kept rows lack (the premium users changed) are aggregated.
        let root = open(&output);
        let commit = root.committed(store::TABLE, s).unwrap().unwrap();
        let kept = root.read_committed(store::TABLE, s).unwrap();
        root.publish(store::TABLE, s, &kept.slice(5, n), commit.meta).unwrap();
        let partial = with_store();
        assert_eq!(build(&partial, s).unwrap(), fresh);
        assert_eq!(log(&partial), [format!("reused {} users, aggregated 5 more", n - 5)]);

        // Kept rows that cannot be read are a miss: aggregated and kept again.
        let part = &root.committed(store::TABLE, s).unwrap().unwrap().files[0].name;
        std::fs::remove_file(output.path().join(format!("{}/snapshot={s}/{part}", store::TABLE))).unwrap();
        let broken = with_store();
        assert_eq!(build(&broken, s).unwrap(), fresh);
        let said = log(&broken);
        assert!(said[0].starts_with("could not read the kept aggregates"), "{said:?}");
        assert_eq!(said[1], format!("aggregated {n} users and kept them"));

        // A row of S's window that lands late, in the partition after S: the kept rows no
        // longer say what the activity says, and S is aggregated (and kept) again.
        let rel = open(&input).list_files(&format!("activity/dt={s}")).unwrap()[0].rel.clone();
        let day = open(&input).read_parquet(&rel).unwrap();
        let mut late = day.head(Some(1)).lazy().with_column(col("ms_played") + lit(3_600_000i64)).collect().unwrap();
        let next = s + Duration::days(1);
        let bytes = crate::storage::parquet_bytes(&mut late).unwrap();
        open(&input).write_bytes(&format!("activity/dt={next}/late-0.parquet"), bytes.into()).unwrap();
        let changed = build(&plain(), s).unwrap();
        assert_ne!(changed, fresh, "the late row counts for S");
        let after = with_store();
        assert_eq!(build(&after, s).unwrap(), changed);
        assert_eq!(log(&after), [format!("aggregated {n} users and kept them")]);
        let again = with_store();
        assert_eq!(build(&again, s).unwrap(), changed);
        assert_eq!(log(&again), [format!("reused {n} users")]);
    }
}
