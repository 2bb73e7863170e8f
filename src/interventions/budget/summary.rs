//! A shard's summary for the merge: its users counted in cells of rounded values (1% steps
//! on a log scale, one per channel), and under caps their expected unsubscribes on the
//! capped channels (summed per cell; the key adds the mean's 5% step). What the merge
//! prices ([`Cell`]) and a shard's demand at given prices.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The smallest value told apart from zero: a millionth of a churn probability.
const SMALLEST: f64 = 1e-6;
/// The relative width of a value step.
const STEP: f64 = 0.01;
/// The relative width of an expected-unsubscribes step in a cell's key.
const UNSUBSCRIBE_STEP: f64 = 0.05;

/// One shard's users counted by their rounded values, one step index per channel (0: no
/// value on that channel).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub channels: usize,
    pub users: u64,
    /// (step per channel, users) for every cell with a user; with caps the key goes on
    /// with the step of the cell's mean expected unsubscribes per channel (0: uncapped).
    pub cells: Vec<(Vec<u16>, u64)>,
    /// With caps, per cell (in the order of `cells`) the expected unsubscribes of its
    /// users' sends per channel, summed; empty without caps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsubscribes: Vec<Vec<f64>>,
    /// The channels whose unsubscribes the summary carries (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<bool>,
}

/// The step of value `v`: 0 for none, else 1 + ⌊ln(v / SMALLEST) / ln(1 + STEP)⌋.
pub(super) fn step_of(v: Option<f64>) -> u16 {
    match v {
        Some(v) if v > 0.0 => {
            let k = ((v.max(SMALLEST) / SMALLEST).ln() / (1.0 + STEP).ln()).floor();
            (1.0 + k).min(f64::from(u16::MAX)) as u16
        }
        _ => 0,
    }
}

/// The value a step stands for: the geometric middle of its range.
pub(super) fn value_of(step: u16) -> f64 {
    if step == 0 { 0.0 } else { SMALLEST * (1.0 + STEP).powf(f64::from(step) - 0.5) }
}

/// The step of an expected-unsubscribes mean (0: none).
fn unsubscribe_step_of(u: f64) -> u16 {
    if u > 0.0 {
        (1.0 + ((u.max(SMALLEST) / SMALLEST).ln() / (1.0 + UNSUBSCRIBE_STEP).ln()).floor()).min(f64::from(u16::MAX))
            as u16
    } else {
        0
    }
}

impl Summary {
    /// The summary of one shard's users, `values[u][c]` as `allocate` takes them.
    #[cfg(test)]
    pub(super) fn of(values: &[Vec<Option<f64>>], channels: usize) -> Summary {
        Summary::with_unsubscribes(values, &[], &vec![false; channels])
    }

    /// The summary of one shard's users with, on the `capped` channels, the expected
    /// unsubscribes of each user's send there (`unsubscribes[u][c]`; unused when no
    /// channel is capped).
    pub(crate) fn with_unsubscribes(
        values: &[Vec<Option<f64>>],
        unsubscribes: &[Vec<f64>],
        capped: &[bool],
    ) -> Summary {
        let channels = capped.len();
        let any_cap = capped.iter().any(|&c| c);
        let mut cells: BTreeMap<Vec<u16>, (u64, Vec<f64>)> = BTreeMap::new();
        for (u, row) in values.iter().enumerate() {
            let mut key: Vec<u16> = (0..channels).map(|c| step_of(row.get(c).copied().flatten())).collect();
            if !key.iter().any(|&s| s > 0) {
                continue;
            }
            let risk: Vec<f64> = (0..channels)
                .map(|c| if capped[c] && key[c] > 0 { unsubscribes[u][c].max(0.0) } else { 0.0 })
                .collect();
            if any_cap {
                key.extend(risk.iter().map(|&r| unsubscribe_step_of(r)));
            }
            let cell = cells.entry(key).or_insert_with(|| (0, vec![0.0; channels]));
            cell.0 += 1;
            for (sum, r) in cell.1.iter_mut().zip(&risk) {
                *sum += r;
            }
        }
        let mut keyed = Vec::with_capacity(cells.len());
        let mut unsubscribes = Vec::new();
        for (key, (n, risk)) in cells {
            keyed.push((key, n));
            if any_cap {
                unsubscribes.push(risk);
            }
        }
        let capped = if any_cap { capped.to_vec() } else { Vec::new() };
        Summary { channels, users: values.len() as u64, cells: keyed, unsubscribes, capped }
    }

    /// The cells with their values and mean expected unsubscribes.
    fn cells(&self, channels: usize) -> impl Iterator<Item = Cell> + '_ {
        self.cells.iter().enumerate().map(move |(i, (key, users))| Cell {
            values: (0..channels).map(|c| value_of(key.get(c).copied().unwrap_or(0))).collect(),
            unsubscribes: (0..channels)
                .map(|c| self.unsubscribes.get(i).map_or(0.0, |r| r.get(c).copied().unwrap_or(0.0) / *users as f64))
                .collect(),
            users: *users,
        })
    }

    /// Users per channel that take it at budget `prices` and unsubscribe prices `mu`
    /// (`weak`: a value equal to its price counts), and their expected unsubscribes.
    pub(super) fn demand(&self, prices: &[f64], mu: &[f64], weak: bool) -> (Vec<u64>, Vec<f64>) {
        let (mut d, mut risk) = (vec![0u64; prices.len()], vec![0.0; prices.len()]);
        for cell in self.cells(prices.len()) {
            if let Some(c) = choice(&cell.priced(mu), prices, weak) {
                d[c] += cell.users;
                risk[c] += cell.users as f64 * cell.unsubscribes[c];
            }
        }
        (d, risk)
    }
}

/// One cell: its values and mean expected unsubscribes per channel, and its users.
pub(super) struct Cell {
    pub values: Vec<f64>,
    pub unsubscribes: Vec<f64>,
    pub users: u64,
}

impl Cell {
    /// The values with unsubscribes priced at `mu`; 0 (no value) where the price leaves
    /// nothing.
    fn priced(&self, mu: &[f64]) -> Vec<f64> {
        self.values
            .iter()
            .zip(&self.unsubscribes)
            .zip(mu)
            .map(|((&v, &r), &m)| if v > 0.0 { (v - m * r).max(0.0) } else { 0.0 })
            .collect()
    }
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
