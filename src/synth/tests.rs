//! Tests of the synthetic world: determinism, the contract's schemas, partitions, the
//! premium-status rule, and that the truth carries signal.

use std::collections::HashMap;

use chrono::NaiveDate;
use polars::prelude::*;

use super::*;
use crate::storage::{Storage, StorageOptions};

fn world(users: usize, days: u32, seed: u64) -> (tempfile::TempDir, Storage, SynthSummary, Stats) {
    world_on(users, days, seed, None)
}

/// A world of the given family of effects.
fn world_of(effects: EffectShapes, users: usize, days: u32, seed: u64) -> (tempfile::TempDir, Storage) {
    let dir = tempfile::tempdir().unwrap();
    let st = Storage::open(dir.path().to_str().unwrap(), &StorageOptions::default(), true).unwrap();
    let cfg = SynthConfig { users, days, seed, effects, ..Default::default() };
    generate(&cfg, &st).unwrap();
    (dir, st)
}

/// A world generated on a rayon pool of `threads` threads (the global pool when `None`).
fn world_on(
    users: usize,
    days: u32,
    seed: u64,
    threads: Option<usize>,
) -> (tempfile::TempDir, Storage, SynthSummary, Stats) {
    if let Some(n) = threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
        return pool.install(|| world_on(users, days, seed, None));
    }
    let dir = tempfile::tempdir().unwrap();
    let st = Storage::open(dir.path().to_str().unwrap(), &StorageOptions::default(), true).unwrap();
    let cfg =
        SynthConfig { users, days, seed, start: NaiveDate::from_ymd_opt(2026, 5, 25).unwrap(), ..Default::default() };
    let (summary, stats) = generate_with_stats(&cfg, &st).unwrap();
    (dir, st, summary, stats)
}

fn read_table(st: &Storage, table: &str) -> DataFrame {
    let rels: Vec<String> =
        st.list_files(table).unwrap().into_iter().map(|f| f.rel).filter(|r| r.ends_with(".parquet")).collect();
    st.scan_parquet(&rels).unwrap().collect().unwrap()
}

/// Premium status by the contract's rule, from the written billing events.
struct Status {
    /// user → sorted (ts, sets premium) of deduplicated status events.
    events: HashMap<String, Vec<(i64, bool)>>,
    epoch0_us: i64,
}

impl Status {
    fn from_billing(billing: &DataFrame, start: NaiveDate) -> Self {
        let ids = billing.column("event_id").unwrap().str().unwrap();
        let users = billing.column("user_id").unwrap().str().unwrap();
        let ts = billing.column("ts").unwrap().datetime().unwrap().physical().clone();
        let kinds = billing.column("event_type").unwrap().str().unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut events: HashMap<String, Vec<(i64, bool)>> = HashMap::new();
        for i in 0..billing.height() {
            let id = ids.get(i).unwrap();
            if !seen.insert(id.to_string()) {
                continue;
            }
            let kind = kinds.get(i).unwrap();
            if crate::contract::STATUS_EVENTS.contains(&kind) {
                events
                    .entry(users.get(i).unwrap().to_string())
                    .or_default()
                    .push((ts.get(i).unwrap(), kind != "expire"));
            }
        }
        for v in events.values_mut() {
            v.sort();
        }
        let epoch0_us = start.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros();
        Status { events, epoch0_us }
    }

    fn premium(&self, user: &str, day: i32) -> bool {
        let end = self.epoch0_us + (i64::from(day) + 1) * 86_400_000_000;
        let Some(v) = self.events.get(user) else { return false };
        let n = v.partition_point(|(t, _)| *t < end);
        n > 0 && v[n - 1].1
    }
}

#[test]
fn per_user_memory_stays_small() {
    let per_user = std::mem::size_of::<state::Traits>() + std::mem::size_of::<state::State>();
    assert!(per_user <= 200, "{per_user} bytes a user");
}

#[test]
fn same_config_writes_identical_bytes() {
    // 5,000 users make two chunks of parallel work; the second run uses one thread.
    let (_a, sa, ra, _) = world(5000, 12, 7);
    let (_b, sb, rb, _) = world_on(5000, 12, 7, Some(1));
    assert_eq!(ra, rb);
    let fa = sa.list_files("").unwrap();
    let fb = sb.list_files("").unwrap();
    assert_eq!(fa, fb);
    assert_eq!(fa.len(), ra.files);
    for f in &fa {
        assert_eq!(sa.read_bytes(&f.rel).unwrap(), sb.read_bytes(&f.rel).unwrap(), "{} differs", f.rel);
    }
    let (_c, sc, _, _) = world(5000, 12, 8);
    assert_ne!(
        sa.read_bytes("users/users.parquet").unwrap(),
        sc.read_bytes("users/users.parquet").unwrap(),
        "another seed, another world"
    );
}

/// Realised churn per snapshot from the written billing, joined to the truth.
fn churn_pairs(st: &Storage, start: NaiveDate, days: i32) -> Vec<(f64, bool)> {
    let status = Status::from_billing(&read_table(st, "billing"), start);
    let truth = st.read_parquet("_truth/churn.parquet").unwrap();
    let users = truth.column("user_id").unwrap().str().unwrap();
    let snaps = truth.column("snapshot_date").unwrap().date().unwrap().physical().clone();
    let ps = truth.column("p_churn").unwrap().f64().unwrap();
    let epoch_day0 = (start.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() / 86_400) as i32;
    let mut pairs = Vec::new();
    for i in 0..truth.height() {
        let s = snaps.get(i).unwrap() - epoch_day0;
        if s + 30 >= days {
            continue;
        }
        let u = users.get(i).unwrap();
        assert!(status.premium(u, s), "truth row for a user not premium at {s}");
        pairs.push((ps.get(i).unwrap(), !status.premium(u, s + 30)));
    }
    pairs
}

fn auc(pairs: &[(f64, bool)]) -> f64 {
    let mut v = pairs.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut pos) = (0.0, 0.0);
    for (i, (_, y)) in v.iter().enumerate() {
        if *y {
            rank_sum += (i + 1) as f64;
            pos += 1.0;
        }
    }
    let neg = v.len() as f64 - pos;
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[test]
#[ignore = "a timing: SYNTH_USERS=100000 cargo test --lib synth::tests::scale -- --ignored --nocapture"]
fn scale() {
    let users = std::env::var("SYNTH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let t0 = std::time::Instant::now();
    let (_d, st, summary, _) = world(users, 180, 1);
    let bytes: u64 = st.list_files("").unwrap().iter().map(|f| f.size).sum();
    eprintln!("{summary:?} in {:?}, {:.1} MB", t0.elapsed(), bytes as f64 / 1e6);
}

#[test]
#[ignore = "a diagnostic: cargo test --lib synth::tests::diagnostics -- --ignored --nocapture"]
fn diagnostics() {
    let users = std::env::var("SYNTH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let days = 180;
    let t0 = std::time::Instant::now();
    let (_d, st, summary, stats) = world(users, days, 1);
    eprintln!("{summary:?} in {:?}", t0.elapsed());
    eprintln!("premium by day (every 20): {:?}", stats.premium_by_day.iter().step_by(20).collect::<Vec<_>>());
    let start = NaiveDate::from_ymd_opt(2026, 5, 25).unwrap();
    let pairs = churn_pairs(&st, start, days as i32);
    let n = pairs.len() as f64;
    let mean_p = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let rate = pairs.iter().filter(|p| p.1).count() as f64 / n;
    eprintln!("labelled rows {n}, mean p {mean_p:.4}, realised churn {rate:.4}, AUC {:.3}", auc(&pairs));
    let mut v = pairs.clone();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    for q in 0..5 {
        let s = &v[q * v.len() / 5..(q + 1) * v.len() / 5];
        let r = s.iter().filter(|p| p.1).count() as f64 / s.len() as f64;
        let m = s.iter().map(|p| p.0).sum::<f64>() / s.len() as f64;
        eprintln!("  quintile {q}: mean p {m:.4} realised {r:.4}");
    }
    let billing = read_table(&st, "billing");
    let counts = billing
        .clone()
        .lazy()
        .group_by([col("event_type")])
        .agg([len()])
        .sort(["event_type"], Default::default())
        .collect()
        .unwrap();
    eprintln!("{counts}");
    let fails = billing
        .clone()
        .lazy()
        .filter(col("event_type").eq(lit("payment_failed")).and(col("attempt").eq(lit(1))))
        .group_by([col("failure_reason")])
        .agg([len()])
        .collect()
        .unwrap();
    eprintln!("{fails}");
    let rec = st.read_parquet("_truth/recovery.parquet").unwrap();
    let recsum = rec
        .clone()
        .lazy()
        .group_by([col("failure_reason")])
        .agg([
            len(),
            col("recovered_day").is_not_null().mean().alias("recovered"),
            col("came_back_within_60").mean().alias("came_back"),
            col("grace_days").mean(),
        ])
        .sort(["failure_reason"], Default::default())
        .collect()
        .unwrap();
    eprintln!("{recsum}");
    let msgs = read_table(&st, "messages");
    let m = msgs
        .clone()
        .lazy()
        .group_by([col("message_type"), col("arm")])
        .agg([
            len(),
            col("propensity").mean(),
            col("delivered").mean(),
            col("opened_at").is_not_null().mean().alias("opened"),
            col("clicked").mean(),
            col("unsubscribed").mean(),
        ])
        .sort(["message_type", "arm"], Default::default())
        .collect()
        .unwrap();
    eprintln!("{m}");
    let le = st.read_parquet("_truth/message_log_effects.parquet").unwrap();
    let le = msgs
        .lazy()
        .join(le.lazy(), [col("message_id")], [col("message_id")], JoinArgs::new(JoinType::Left))
        .collect()
        .unwrap();
    let e = le
        .lazy()
        .group_by([col("message_type"), col("channel")])
        .agg([
            len(),
            col("effect").mean().alias("mean"),
            col("effect").lt(lit(-0.01)).mean().alias("helps"),
            col("effect").gt(lit(0.01)).mean().alias("harms"),
            col("effect").min().alias("min"),
            col("effect").max().alias("max"),
        ])
        .sort(["message_type", "channel"], Default::default())
        .collect()
        .unwrap();
    eprintln!("{e}");
    let act = read_table(&st, "activity");
    eprintln!(
        "{}",
        act.clone()
            .lazy()
            .select([
                len(),
                col("ms_played").mean(),
                col("streams").mean(),
                col("skips").mean(),
                col("sessions").mean(),
                col("saves").mean(),
                col("peak_hour").null_count()
            ])
            .collect()
            .unwrap()
    );
    let files = st.list_files("").unwrap();
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    eprintln!("{} files, {:.1} MB", files.len(), bytes as f64 / 1e6);
}

#[test]
fn tables_match_the_contract_and_sit_in_their_partitions() {
    let (_d, st, summary, _) = world(300, 60, 3);
    assert!(summary.activity_rows > 0 && summary.billing_rows > 0 && summary.message_rows > 0, "{summary:?}");
    let users = st.read_parquet("users/users.parquet").unwrap();
    assert_eq!(users.schema().as_ref(), &crate::contract::USERS.schema());
    assert_eq!(users.height(), 300);
    assert_eq!(users.column("user_id").unwrap().n_unique().unwrap(), 300);
    let mut rows = [0u64; 3];
    for (i, table) in
        [crate::contract::ACTIVITY, crate::contract::BILLING, crate::contract::MESSAGES].iter().enumerate()
    {
        let crate::contract::Layout::Daily { time_column } = table.layout else { panic!() };
        let files = st.list_files(table.name).unwrap();
        assert!(!files.is_empty());
        for f in files {
            let dt = f.rel.split('/').nth(1).unwrap().strip_prefix("dt=").unwrap().to_string();
            let df = st.read_parquet(&f.rel).unwrap();
            assert_eq!(df.schema().as_ref(), &table.schema(), "{}", f.rel);
            rows[i] += df.height() as u64;
            let dates = df.column(time_column).unwrap().cast(&DataType::Date).unwrap();
            let dates = dates.date().unwrap();
            for d in dates.as_date_iter() {
                assert_eq!(d.unwrap().to_string(), dt, "{}: a row outside its partition", f.rel);
            }
            for c in table.columns.iter().filter(|c| !c.values.is_empty()) {
                let s = df.column(c.name).unwrap().str().unwrap();
                for v in s.iter().flatten() {
                    assert!(c.values.contains(&v), "{}.{}: `{v}`", table.name, c.name);
                }
            }
        }
    }
    assert_eq!(rows, [summary.activity_rows, summary.billing_rows, summary.message_rows]);
    // Message ids are unique; billing event ids repeat only as exact duplicates.
    let msgs = read_table(&st, "messages");
    assert_eq!(msgs.column("message_id").unwrap().n_unique().unwrap(), msgs.height());
    let billing = read_table(&st, "billing");
    let distinct_rows = billing.unique_stable(None, UniqueKeepStrategy::First, None).unwrap().height();
    assert_eq!(billing.column("event_id").unwrap().n_unique().unwrap(), distinct_rows);
    // Push and email only to users who allowed them (when they were sent).
    let opt = msgs
        .lazy()
        .filter(col("delivered"))
        .join(users.lazy(), [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Inner))
        .filter(col("channel").eq(lit("push")).and(col("push_opt_in").not()).and(col("unsubscribed").not()))
        .collect()
        .unwrap();
    // A user who unsubscribed from push later shows push_opt_in = false: allow exactly those.
    let unsubscribed: std::collections::HashSet<String> = read_table(&st, "messages")
        .lazy()
        .filter(col("unsubscribed").and(col("channel").eq(lit("push"))))
        .collect()
        .unwrap()
        .column("user_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(str::to_string)
        .collect();
    for u in opt.column("user_id").unwrap().str().unwrap().iter().flatten() {
        assert!(unsubscribed.contains(u), "push to {u}, who never allowed it");
    }
    // The truth tables have their documented columns.
    let cols =
        |rel: &str| st.read_parquet(rel).unwrap().schema().iter().map(|(n, t)| format!("{n}:{t}")).collect::<Vec<_>>();
    assert_eq!(cols("_truth/churn.parquet"), ["user_id:str", "snapshot_date:date", "p_churn:f64"]);
    assert_eq!(
        cols("_truth/message_effects.parquet"),
        ["user_id:str", "message_type:str", "channel:str", "effect:f64"]
    );
    assert_eq!(cols("_truth/message_log_effects.parquet"), ["message_id:str", "effect:f64"]);
    assert_eq!(
        cols("_truth/recovery.parquet"),
        [
            "user_id:str",
            "failure_ts:datetime[μs, UTC]",
            "failure_reason:str",
            "payment_method:str",
            "grace_days:i16",
            "hazard:list[f64]",
            "recovered_day:i16",
            "came_back_within_60:bool"
        ]
    );
}

#[test]
fn premium_status_by_the_contract_rule_agrees_with_the_simulation() {
    let days = 120;
    let (_d, st, _, stats) = world(300, days, 11);
    let start = NaiveDate::from_ymd_opt(2026, 5, 25).unwrap();
    let status = Status::from_billing(&read_table(&st, "billing"), start);
    let users = st.read_parquet("users/users.parquet").unwrap();
    let ids: Vec<String> =
        users.column("user_id").unwrap().str().unwrap().iter().flatten().map(str::to_string).collect();
    for day in 0..days as i32 {
        let derived = ids.iter().filter(|u| status.premium(u, day)).count() as u64;
        assert_eq!(derived, stats.premium_by_day[day as usize], "day {day}");
    }
    assert!(stats.premium_by_day[0] > 100, "{:?}", &stats.premium_by_day[..3]);
}

#[test]
fn the_churn_truth_is_calibrated_and_informative() {
    let days = 150;
    let (_d, st, _, _) = world(800, days, 5);
    let pairs = churn_pairs(&st, NaiveDate::from_ymd_opt(2026, 5, 25).unwrap(), days as i32);
    assert!(pairs.len() > 1000, "{} labelled rows", pairs.len());
    let mut v = pairs.clone();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let rate = |s: &[(f64, bool)]| s.iter().filter(|p| p.1).count() as f64 / s.len() as f64;
    let q = v.len() / 5;
    let (bottom, top) = (rate(&v[..q]), rate(&v[v.len() - q..]));
    assert!(top > 2.0 * bottom.max(0.01), "top quintile churns {top:.3}, bottom {bottom:.3}");
    let mean_p = v.iter().map(|p| p.0).sum::<f64>() / v.len() as f64;
    let all = rate(&v);
    assert!((0.04..0.16).contains(&all), "realised 30-day churn {all:.3}");
    assert!((mean_p - all).abs() < 0.025, "mean p {mean_p:.3} vs realised {all:.3}");
    assert!(auc(&pairs) > 0.7, "AUC {:.3}", auc(&pairs));
    assert!(v.iter().all(|p| (0.0..=1.0).contains(&p.0)));
}

#[test]
fn every_message_and_episode_has_its_truth() {
    let days = 100;
    let (_d, st, _, stats) = world(400, days, 9);
    let effects = st.read_parquet("_truth/message_effects.parquet").unwrap();
    assert_eq!(effects.height() as u64, 12 * stats.premium_by_day[days as usize - 1]);
    let msgs = read_table(&st, "messages");
    let logs = st.read_parquet("_truth/message_log_effects.parquet").unwrap();
    assert_eq!(logs.height(), msgs.height());
    let joined = msgs
        .lazy()
        .join(logs.clone().lazy(), [col("message_id")], [col("message_id")], JoinArgs::new(JoinType::Inner))
        .collect()
        .unwrap();
    assert_eq!(joined.height(), logs.height());
    // Reminders help on average, and some message somewhere harms.
    let by_type = joined
        .lazy()
        .group_by([col("message_type")])
        .agg([col("effect").mean().alias("mean"), col("effect").max().alias("max")])
        .collect()
        .unwrap();
    let types = by_type.column("message_type").unwrap().str().unwrap();
    let means = by_type.column("mean").unwrap().f64().unwrap();
    let maxes = by_type.column("max").unwrap().f64().unwrap();
    for i in 0..by_type.height() {
        if types.get(i) == Some("payment_update_reminder") {
            assert!(means.get(i).unwrap() < -0.01, "reminders: {by_type}");
        }
    }
    assert!(maxes.iter().flatten().any(|m| m > 0.005), "nothing harms: {by_type}");
    // One recovery row per opened dunning episode.
    let billing = read_table(&st, "billing").unique_stable(None, UniqueKeepStrategy::First, None).unwrap();
    let first_failures = billing
        .lazy()
        .filter(col("event_type").eq(lit("payment_failed")).and(col("attempt").eq(lit(1))))
        .collect()
        .unwrap()
        .height();
    let rec = st.read_parquet("_truth/recovery.parquet").unwrap();
    assert_eq!(rec.height(), first_failures);
    let hz = rec.column("hazard").unwrap().list().unwrap();
    for i in 0..hz.len() {
        let h = hz.get_as_series(i).unwrap();
        assert_eq!(h.len(), 30);
        assert!(h.f64().unwrap().iter().flatten().all(|x| (0.0..=1.0).contains(&x)));
    }
}

/// The second family of effects (`--effects turned`) is another answer on the same
/// tables: other users helped and harmed, another strongest channel, e-mails read later.
#[test]
fn the_turned_family_helps_other_users_on_other_channels() {
    type Effects = HashMap<(String, String, String), f64>;
    let effects_of = |st: &Storage| -> Effects {
        let df = st.read_parquet("_truth/message_effects.parquet").unwrap();
        let text = |c: &str| df.column(c).unwrap().str().unwrap().iter().map(|v| v.unwrap().to_string()).collect();
        let (u, t, c): (Vec<String>, Vec<String>, Vec<String>) =
            (text("user_id"), text("message_type"), text("channel"));
        let e = df.column("effect").unwrap().f64().unwrap();
        (0..df.height()).map(|i| ((u[i].clone(), t[i].clone(), c[i].clone()), e.get(i).unwrap())).collect()
    };
    let (_h, home) = world_of(EffectShapes::Home, 3000, 150, 5);
    let (_t, turned) = world_of(EffectShapes::Turned, 3000, 150, 5);
    let (home, turned) = (effects_of(&home), effects_of(&turned));
    // Which channel is stronger: the share of users a win-back offer helps more by e-mail
    // than by push (among those who can get both).
    let email_wins = |e: &Effects| {
        let (mut wins, mut n) = (0usize, 0usize);
        for ((u, t, c), push) in e.iter().filter(|((_, t, c), x)| t == "winback_offer" && c == "push" && **x != 0.0) {
            let email = e[&(u.clone(), t.clone(), "email".to_string())];
            if email != 0.0 && c == "push" {
                n += 1;
                wins += usize::from(email < *push);
            }
        }
        wins as f64 / n.max(1) as f64
    };
    let (h, t) = (email_wins(&home), email_wins(&turned));
    eprintln!("win-back offers that help more by e-mail than by push: home {h:.2}, turned {t:.2}");
    assert!(h < 0.5 && t > 0.5, "push is the stronger channel at home, e-mail in the turned world");
    // Who is helped: over the users premium in both worlds, the effects of a message
    // type barely agree between the families (nudges: those helped at home are harmed).
    for ty in ["premium_education", "content_nudge"] {
        let pairs: Vec<(f64, f64)> = home
            .iter()
            .filter(|((_, t, c), _)| t == ty && c == "in_app")
            .filter_map(|(k, h)| turned.get(k).map(|t| (*h, *t)))
            .filter(|(h, t)| *h != 0.0 && *t != 0.0)
            .collect();
        let n = pairs.len() as f64;
        let (mh, mt) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
        let cov: f64 = pairs.iter().map(|(h, t)| (h - mh) * (t - mt)).sum();
        let var = |f: &dyn Fn(&(f64, f64)) -> f64, m: f64| pairs.iter().map(|p| (f(p) - m).powi(2)).sum::<f64>();
        let r = cov / (var(&|p| p.0, mh) * var(&|p| p.1, mt)).sqrt();
        eprintln!("{ty} in-app: {} users, correlation of effects between the families {r:.2}", pairs.len());
        assert!(pairs.len() > 100, "{ty}: users to compare");
        assert!(r < 0.5, "{ty}: the turned family helps other users ({r:.2})");
    }
}
