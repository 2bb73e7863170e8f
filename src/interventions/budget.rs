//! One set of channel budgets for the whole service when the plan is made by shards.
//!
//! Each shard plans its own users, but a channel's budget is the service's: split by hand
//! (say equally), a shard with many users worth a push would stop early while another
//! spends its pushes on users worth little. The exact plan over everyone ([`allocate`])
//! would send a channel to the users whose value on it beats a common threshold, the
//! channel's *price* (the budget constraint's dual: what a send must be worth). Prices
//! are what the shards need to agree on, and they can be found from little:
//!
//! 1. **Summary** ([`Summary::of`]): each shard counts its users by their value on every
//!    channel, rounded to 1% steps on a log scale (a cell per rounded value vector; a
//!    user who may not get a channel, or gains nothing from it, has no value there). At a
//!    million users this is a few hundred thousand cells at most, whatever N is.
//! 2. **Merge** ([`merge`]): the cells of all shards, priced. A user takes the channel
//!    with the largest value above its price. The prices minimise the budget constraint's
//!    dual, Σ users max(0, maxᶜ value − price) + Σ budget × price, by exact steps along
//!    the directions that raise or lower the prices of a set of channels together: along
//!    the set S the best step makes the users who prefer some channel of S fill S's
//!    budgets, the (B_S + 1)-th largest gain of S over a user's best channel outside it.
//!    Single channels alone stall where users value several channels equally (a message
//!    type's model that does not tell the channels apart): they want one of them, and only
//!    the channels' prices moving together price them.
//! 3. **Quotas**: each channel's budget split between the shards in proportion to the
//!    users that want it at those prices (ties at the price included), largest
//!    remainders first; the quotas sum to the budget, so the service's sends fit it
//!    whatever the rounding did. Each shard then plans its users exactly under its quotas
//!    ([`allocate`]). With one shard the quota is the budget, and the plan is the plan of
//!    one process.
//!
//! [`allocate`]: super::allocate::allocate

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The smallest value told apart from zero: a millionth of a churn probability.
const SMALLEST: f64 = 1e-6;
/// The relative width of a value step.
const STEP: f64 = 0.01;
/// Rounds of price updates at most (they settle in a handful).
const MAX_ROUNDS: usize = 200;

/// One shard's users counted by their rounded values, one step index per channel (0: no
/// value on that channel).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub channels: usize,
    pub users: u64,
    /// (step per channel, users) for every cell with a user.
    pub cells: Vec<(Vec<u16>, u64)>,
}

/// The step of value `v`: 0 for none, else 1 + ⌊ln(v / SMALLEST) / ln(1 + STEP)⌋.
fn step_of(v: Option<f64>) -> u16 {
    match v {
        Some(v) if v > 0.0 => {
            let k = ((v.max(SMALLEST) / SMALLEST).ln() / (1.0 + STEP).ln()).floor();
            (1.0 + k).min(f64::from(u16::MAX)) as u16
        }
        _ => 0,
    }
}

/// The value a step stands for: the geometric middle of its range.
fn value_of(step: u16) -> f64 {
    if step == 0 { 0.0 } else { SMALLEST * (1.0 + STEP).powf(f64::from(step) - 0.5) }
}

impl Summary {
    /// The summary of one shard's users, `values[u][c]` as [`allocate`](super::allocate::allocate) takes them.
    pub(crate) fn of(values: &[Vec<Option<f64>>], channels: usize) -> Summary {
        let mut cells: BTreeMap<Vec<u16>, u64> = BTreeMap::new();
        for row in values {
            let key: Vec<u16> = (0..channels).map(|c| step_of(row.get(c).copied().flatten())).collect();
            if key.iter().any(|&s| s > 0) {
                *cells.entry(key).or_default() += 1;
            }
        }
        Summary { channels, users: values.len() as u64, cells: cells.into_iter().collect() }
    }
}

impl Summary {
    /// Users per channel that take it at `prices` (`weak`: a value equal to its price counts).
    fn demand(&self, prices: &[f64], weak: bool) -> Vec<u64> {
        let mut d = vec![0u64; prices.len()];
        for (key, n) in &self.cells {
            let values: Vec<f64> = (0..prices.len()).map(|c| value_of(key.get(c).copied().unwrap_or(0))).collect();
            if let Some(c) = choice(&values, prices, weak) {
                d[c] += n;
            }
        }
        d
    }
}

/// What the merge decided: a price per channel, and per shard its quota per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Prices {
    pub prices: Vec<f64>,
    /// Users per channel that want it at the prices, over all shards.
    pub demand: Vec<u64>,
    pub budgets: Vec<u64>,
    /// `quotas[k][c]`: the most sends shard k makes on channel c.
    pub quotas: Vec<Vec<u64>>,
    pub rounds: usize,
}

/// One priced cell: its values and users.
struct Cell {
    values: Vec<f64>,
    users: u64,
}

/// The channel a cell takes at `prices`, if any: the largest value above its price (ties
/// to the first channel); `weak` counts a value equal to its price as wanted.
fn choice(values: &[f64], prices: &[f64], weak: bool) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (c, (&v, &p)) in values.iter().zip(prices).enumerate() {
        let surplus = v - p;
        let wanted = v > 0.0 && if weak { surplus >= 0.0 } else { surplus > 0.0 };
        if wanted && best.is_none_or(|(_, b)| surplus > b) {
            best = Some((c, surplus));
        }
    }
    best.map(|(c, _)| c)
}

/// The prices that fit the service's `budgets`, and each shard's quotas (see the module
/// docs). `summaries[k]` is shard k's.
pub(crate) fn merge(summaries: &[Summary], budgets: &[u64]) -> Prices {
    let k = budgets.len();
    let mut merged: BTreeMap<&[u16], u64> = BTreeMap::new();
    for s in summaries {
        for (key, n) in &s.cells {
            *merged.entry(key.as_slice()).or_default() += n;
        }
    }
    let cells: Vec<Cell> = merged
        .iter()
        .map(|(key, &users)| Cell {
            values: (0..k).map(|c| value_of(key.get(c).copied().unwrap_or(0))).collect(),
            users,
        })
        .collect();
    let mut prices = vec![0.0; k];
    let mut rounds = 0;
    while rounds < MAX_ROUNDS {
        rounds += 1;
        let mut moved = false;
        // Every set of channels, the single ones first: users with equal values on several
        // channels want one of them and do not mind which, so those channels' prices must
        // move together (one at a time, none would move).
        let mut sets: Vec<usize> = (1..1usize << k).collect();
        sets.sort_by_key(|m| m.count_ones());
        for set in sets {
            let shift = filling_shift(&cells, &prices, set, budgets);
            if shift.abs() > 1e-12 {
                for (c, p) in prices.iter_mut().enumerate() {
                    if set & (1 << c) != 0 {
                        *p += shift;
                    }
                }
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    let shard_demand: Vec<Vec<u64>> = summaries.iter().map(|s| s.demand(&prices, true)).collect();
    let demand: Vec<u64> = (0..k).map(|c| shard_demand.iter().map(|d| d[c]).sum()).collect();
    let mut quotas = vec![vec![0u64; k]; summaries.len()];
    for c in 0..k {
        // Shares by demand; with none anywhere, by size (the budget is spent on nobody).
        let weights: Vec<u64> = if demand[c] > 0 {
            shard_demand.iter().map(|d| d[c]).collect()
        } else {
            summaries.iter().map(|s| s.users).collect()
        };
        for (shard, q) in split(budgets[c], &weights).into_iter().enumerate() {
            quotas[shard][c] = q;
        }
    }
    Prices { prices, demand, budgets: budgets.to_vec(), quotas, rounds }
}

/// How far to move the prices of the channels in `set` (a bit per channel), all by the
/// same amount, so that the users who want one of them fill their budgets together: the
/// (budget + 1)-th largest gain of a user's best channel of the set over its best
/// alternative outside it (at the current prices), or down to the lowest price of the set
/// reaching 0 when fewer users gain than the budgets hold. This is the exact minimum of
/// the budget constraint's dual along that direction.
fn filling_shift(cells: &[Cell], prices: &[f64], set: usize, budgets: &[u64]) -> f64 {
    let inside = |c: usize| set & (1 << c) != 0;
    let budget: u64 = (0..prices.len()).filter(|&c| inside(c)).map(|c| budgets[c]).sum();
    let mut gains: Vec<(f64, u64)> = cells
        .iter()
        .filter_map(|cell| {
            let surplus = |c: usize| (cell.values[c] > 0.0).then(|| cell.values[c] - prices[c]);
            let best_in = (0..prices.len()).filter(|&c| inside(c)).filter_map(surplus).reduce(f64::max)?;
            let best_out = (0..prices.len()).filter(|&c| !inside(c)).filter_map(surplus).fold(0.0f64, f64::max);
            Some((best_in - best_out, cell.users))
        })
        .collect();
    gains.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut taken = 0u64;
    for (gain, users) in gains {
        taken += users;
        if taken > budget {
            // Never below a zero price.
            let lowest = (0..prices.len()).filter(|&c| inside(c)).map(|c| prices[c]).fold(f64::INFINITY, f64::min);
            return gain.max(-lowest);
        }
    }
    -(0..prices.len()).filter(|&c| inside(c)).map(|c| prices[c]).fold(f64::INFINITY, f64::min)
}

/// `total` split in proportion to `weights`, largest remainders first (ties to the lower
/// index); all to nobody when every weight is zero.
fn split(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<(u64, u128)> = weights
        .iter()
        .map(|&w| {
            let num = u128::from(total) * u128::from(w);
            ((num / sum) as u64, num % sum)
        })
        .collect();
    let mut out: Vec<u64> = exact.iter().map(|e| e.0).collect();
    let left = total - out.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for &i in order.iter().take(left as usize) {
        out[i] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::allocate::{allocate, plan_value};
    use super::*;
    use proptest::prelude::*;

    /// Users with values on three channels, as the stage makes them: some channels not
    /// allowed, most values small, a few large.
    fn users(n: usize, seed: u64) -> Vec<Vec<Option<f64>>> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let base = next().powi(3) * 0.08;
                (0..3)
                    .map(|c| {
                        let r = next();
                        (r > 0.2).then(|| base * (0.5 + next()) * [1.0, 0.7, 0.4][c] - 0.002)
                    })
                    .collect()
            })
            .collect()
    }

    /// The plan by `n` shards (users dealt round the shards by `shard_of`).
    fn sharded_plan(values: &[Vec<Option<f64>>], budgets: &[u64], n: usize) -> (f64, Vec<u64>, Prices) {
        let shard_of = |u: usize| (u * 7919 + 13) % n;
        let rows: Vec<Vec<usize>> = (0..n).map(|k| (0..values.len()).filter(|&u| shard_of(u) == k).collect()).collect();
        let shard_values: Vec<Vec<Vec<Option<f64>>>> =
            rows.iter().map(|r| r.iter().map(|&u| values[u].clone()).collect()).collect();
        let summaries: Vec<Summary> = shard_values.iter().map(|v| Summary::of(v, budgets.len())).collect();
        let prices = merge(&summaries, budgets);
        let (mut value, mut sends) = (0.0, vec![0u64; budgets.len()]);
        for (k, v) in shard_values.iter().enumerate() {
            let plan = allocate(v, &prices.quotas[k]);
            value += plan_value(v, &plan);
            for c in plan.iter().flatten() {
                sends[*c] += 1;
            }
        }
        (value, sends, prices)
    }

    #[test]
    fn the_sharded_plan_fits_the_budgets_and_nearly_matches_the_exact_plan() {
        for (seed, n_users, budgets) in [
            (1, 20_000, vec![1_000, 3_000, 2_000]),
            (2, 20_000, vec![200, 200, 200]),
            (3, 5_000, vec![4_000, 10, 4_000]),
        ] {
            let values = users(n_users, seed);
            let exact = plan_value(&values, &allocate(&values, &budgets));
            for n in [1, 3, 7, 16] {
                let (value, sends, prices) = sharded_plan(&values, &budgets, n);
                for c in 0..3 {
                    assert!(
                        sends[c] <= budgets[c],
                        "seed {seed}, {n} shards: channel {c} sends {sends:?} > {budgets:?}"
                    );
                    assert_eq!(prices.quotas.iter().map(|q| q[c]).sum::<u64>(), budgets[c]);
                }
                assert!(
                    value >= 0.99 * exact,
                    "seed {seed}, {n} shards: {value} < 99% of {exact} (prices {:?})",
                    prices.prices
                );
                if n == 1 {
                    assert_eq!(value, exact, "one shard plans as one process");
                }
            }
        }
    }

    #[test]
    fn prices_are_zero_where_the_budget_does_not_bind_and_positive_where_it_does() {
        let values = users(10_000, 4);
        let wanting = |c: usize| values.iter().filter(|v| v[c].is_some_and(|x| x > 0.0)).count() as u64;
        let budgets = vec![wanting(0) + 10, 100, 100];
        let summary = Summary::of(&values, 3);
        let p = merge(std::slice::from_ref(&summary), &budgets);
        assert_eq!(p.prices[0], 0.0, "{:?}", p.prices);
        assert!(p.prices[1] > 0.0 && p.prices[2] > 0.0, "{:?}", p.prices);
        // The prices are thresholds: above them the budget holds everyone, at them it is full.
        let strict = summary.demand(&p.prices, false);
        assert!(strict[1] <= 100 && strict[2] <= 100, "{strict:?}");
        assert!(p.demand[1] >= 100 && p.demand[2] >= 100, "{:?}", p.demand);
    }

    /// The budget constraint's dual at `prices` over the users' rounded values: at the
    /// optimal prices it equals the value of the exact plan of those values.
    fn dual(values: &[Vec<Option<f64>>], prices: &[f64], budgets: &[u64]) -> f64 {
        let users: f64 = values
            .iter()
            .map(|row| {
                (0..prices.len())
                    .filter_map(|c| row[c].filter(|v| *v > 0.0).map(|v| value_of(step_of(Some(v))) - prices[c]))
                    .fold(0.0f64, f64::max)
            })
            .sum();
        users + budgets.iter().zip(prices).map(|(b, p)| *b as f64 * p).sum::<f64>()
    }

    #[test]
    fn the_prices_are_the_dual_where_users_value_channels_alike() {
        // Half the users value every channel alike (one model for all channels), the
        // others only one channel; every budget binds.
        let mut values = users(6_000, 5);
        for (u, row) in values.iter_mut().enumerate().filter(|(u, _)| u % 2 == 0) {
            let v = row.iter().flatten().copied().fold(0.0f64, f64::max) + (u % 7) as f64 * 1e-4;
            *row = vec![Some(v); 3];
        }
        let budgets = vec![300, 500, 400];
        let rounded: Vec<Vec<Option<f64>>> = values
            .iter()
            .map(|row| row.iter().map(|v| v.filter(|v| *v > 0.0).map(|v| value_of(step_of(Some(v))))).collect())
            .collect();
        let exact = plan_value(&rounded, &allocate(&rounded, &budgets));
        let p = merge(&[Summary::of(&values, 3)], &budgets);
        assert!(p.prices.iter().all(|&x| x > 0.0), "every budget binds, every price is positive: {:?}", p.prices);
        let gap = dual(&values, &p.prices, &budgets) - exact;
        assert!(gap >= -1e-9 && gap <= 1e-3 * exact, "dual {} against the plan's {exact}", exact + gap);
        let (value, sends, _) = sharded_plan(&values, &budgets, 7);
        assert!(
            sends.iter().zip(&budgets).all(|(s, b)| s <= b)
                && value >= 0.99 * plan_value(&values, &allocate(&values, &budgets))
        );
    }

    proptest! {
        #[test]
        fn steps_keep_values_within_one_percent(v in 1e-6f64..1.0) {
            let back = value_of(step_of(Some(v)));
            prop_assert!((back / v - 1.0).abs() <= 0.0101, "{v} -> {back}");
        }

        #[test]
        fn a_split_sums_to_the_total_in_proportion(total in 0u64..10_000, weights in prop::collection::vec(0u64..1000, 1..9)) {
            let parts = split(total, &weights);
            let sum: u64 = weights.iter().sum();
            if sum == 0 {
                prop_assert!(parts.iter().all(|&p| p == 0));
            } else {
                prop_assert_eq!(parts.iter().sum::<u64>(), total);
                for (p, w) in parts.iter().zip(&weights) {
                    let exact = total as f64 * *w as f64 / sum as f64;
                    prop_assert!((*p as f64 - exact).abs() < 1.0 + 1e-9);
                }
            }
        }
    }
}
