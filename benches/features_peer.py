"""The peer of `retain features` for the benchmark: the same feature set computed by a
straightforward Python Polars script, the way an analyst would write it (lazy scans of the
partitions in the window, the same SQL files for the windowed aggregates, Polars
expressions for the latest-state features). It writes one Parquet file.

usage: python benches/features_peer.py INPUT_ROOT AS_OF OUTPUT.parquet
"""

import datetime as dt
import pathlib
import sys

import polars as pl

ROOT = pathlib.Path(__file__).resolve().parent.parent
STATUS = ["trial_start", "subscribe", "renew", "payment_recovered", "expire"]


def partitions(root: pathlib.Path, table: str, first: dt.date, last: dt.date) -> list[str]:
    out = []
    for d in sorted((root / table).glob("dt=*")):
        day = dt.date.fromisoformat(d.name[3:])
        if first <= day <= last:
            out.extend(str(f) for f in sorted(d.glob("*.parquet")))
    return out


def main(root: str, as_of: str, output: str) -> None:
    root_path = pathlib.Path(root)
    s = dt.date.fromisoformat(as_of)
    end = dt.datetime.combine(s + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    days_ago = lambda c: (pl.lit(s) - c).dt.total_days().cast(pl.Int32).alias("days_ago")  # noqa: E731

    users = pl.scan_parquet(str(root_path / "users" / "*.parquet")).filter(pl.col("signup_date") <= s)
    activity = pl.scan_parquet(partitions(root_path, "activity", s - dt.timedelta(days=89), s)).filter(
        pl.col("date") <= s
    )
    billing = (
        pl.scan_parquet(partitions(root_path, "billing", s - dt.timedelta(days=400), s))
        .filter(pl.col("ts") < end)
        .unique("event_id", keep="first")
        .collect()
        .lazy()
    )
    messages = pl.scan_parquet(partitions(root_path, "messages", s - dt.timedelta(days=90), s)).filter(
        (pl.col("ts") < end) & (pl.col("ts") >= end - dt.timedelta(days=90))
    )

    stg_activity = activity.select(
        "user_id",
        days_ago(pl.col("date")),
        (pl.col("date").dt.weekday() >= 6).alias("is_weekend"),
        "ms_played", "streams", "skips", "unique_tracks", "sessions", "searches", "saves", "podcast_ms",
    )
    stg_billing = billing.with_columns(days_ago(pl.col("ts").dt.date()))
    stg_messages = messages.select(
        "user_id",
        days_ago(pl.col("ts").dt.date()),
        "message_type", "channel", "arm",
        (pl.col("opened_at") < end).fill_null(False).alias("opened"),
        "clicked", "unsubscribed",
    )
    ctx = pl.SQLContext(stg_activity=stg_activity, stg_billing=stg_billing, stg_messages=stg_messages)

    premium = (
        billing.filter(pl.col("event_type").is_in(STATUS))
        .sort("user_id", "ts", "event_id")
        .group_by("user_id")
        .agg(pl.col("event_type").last())
        .filter(pl.col("event_type") != "expire")
        .select("user_id")
    )
    out = premium.join(users, on="user_id", how="left")
    for name in ["feat_engagement", "feat_payments", "feat_messaging"]:
        out = out.join(ctx.execute((ROOT / "sql" / f"{name}.sql").read_text()), on="user_id", how="left")

    status = pl.col("event_type").is_in(STATUS)
    state = (
        stg_billing.sort("user_id", "ts", "event_id")
        .group_by("user_id")
        .agg(
            pl.col("plan").filter(pl.col("event_type") != "cancel").last(),
            pl.col("amount").drop_nulls().last().alias("price"),
            pl.col("amount").filter(pl.col("amount").is_not_null() & (pl.col("days_ago") >= 90)).last().alias("p90"),
            (pl.col("event_type").filter(status).last() == "trial_start").alias("trial"),
            pl.col("ts").filter(status).last().alias("status_ts"),
            pl.col("ts").filter(pl.col("event_type") == "cancel").last().alias("cancel_ts"),
            pl.col("ts").filter(pl.col("event_type") == "payment_failed").last().alias("fail_ts"),
            pl.col("ts")
            .filter(pl.col("event_type").is_in(["payment_recovered", "expire", "renew", "subscribe"]))
            .last()
            .alias("resolve_ts"),
            pl.col("period_end").drop_nulls().last(),
            pl.col("payment_method").drop_nulls().last(),
        )
        .select(
            "user_id", "plan", "price",
            (pl.col("price") - pl.col("p90")).fill_null(0.0).alias("price_change_90"),
            pl.col("trial").cast(pl.Int32).fill_null(0).alias("is_trial"),
            (pl.col("cancel_ts") > pl.col("status_ts")).fill_null(False).cast(pl.Int32).alias("cancel_pending"),
            (pl.col("period_end") - pl.lit(s)).dt.total_days().cast(pl.Int32).alias("days_to_period_end"),
            (pl.col("fail_ts") > pl.col("resolve_ts").fill_null(dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)))
            .fill_null(False)
            .cast(pl.Int32)
            .alias("open_dunning"),
            "payment_method",
        )
    )
    counts = [
        c for c in out.collect_schema().names()
        if c.endswith(("_7", "_14", "_30", "_60", "_90", "_365")) and not c.startswith(("days_", "listening_trend"))
    ]
    out = out.with_columns(pl.col(counts).fill_null(0))
    out = out.join(state, on="user_id", how="left").with_columns(
        (pl.col("skips_30") / (pl.col("streams_30") + pl.col("skips_30"))).fill_nan(None).alias("skip_rate_30"),
        (pl.col("weekend_days_30") / pl.col("active_days_30")).fill_nan(None).alias("weekend_share_30"),
        (pl.col("podcast_ms_30") / pl.col("ms_played_30")).fill_nan(None).alias("podcast_share_30"),
        (pl.lit(s) - pl.col("signup_date")).dt.total_days().cast(pl.Int32).alias("tenure_days"),
        (pl.lit(s.year) - pl.col("birth_year").cast(pl.Int32)).alias("age"),
        pl.col("days_since_active").fill_null(90),
        pl.col("listening_trend_14_60").fill_null(1.0),
    )
    out.sort("user_id").collect().write_parquet(output)


if __name__ == "__main__":
    main(*sys.argv[1:4])
