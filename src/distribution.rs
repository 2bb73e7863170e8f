//! Distributions kept as counts on fixed bins, and the distances between two of them.
//!
//! Why counts on fixed bins rather than the values: a reference kept with the model (the
//! training snapshots' features, `train`), a night's summary and a shard's summary are then
//! all the same small object, and the summaries of disjoint sets of users add cell by cell
//! (a night of shards' counts sum to the service's). The bins of a numeric column are
//! the reference's weighted quantiles, fixed once: every later distribution is counted on
//! them. The distances are the ones monitoring tools agree on (Evidently, NannyML, Vertex
//! AI): the population stability index and Jensen–Shannon distance for numbers, the
//! L-infinity distance of the shares and Pearson's chi-squared test for categories.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counts of a numeric column on fixed bins: bin i holds `edges[i-1] < v ≤ edges[i]`
/// (the first from −∞, the last to +∞), and `missing` the nulls and NaNs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Histogram {
    pub(crate) edges: Vec<f64>,
    pub(crate) counts: Vec<f64>,
    pub(crate) missing: f64,
}

impl Histogram {
    /// Empty counts on `edges` (sorted, distinct).
    pub(crate) fn on(edges: Vec<f64>) -> Self {
        let counts = vec![0.0; edges.len() + 1];
        Histogram { edges, counts, missing: 0.0 }
    }

    /// Bins of `bins` weighted quantiles of `values` (ties merged: a column of mostly
    /// zeros gets fewer bins), with the values counted on them.
    pub(crate) fn of_quantiles(values: &[Option<f64>], weights: Option<&[f64]>, bins: usize) -> Self {
        let mut pairs: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.filter(|v| v.is_finite()).map(|v| (v, weights.map_or(1.0, |w| w[i]))))
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = pairs.iter().map(|p| p.1).sum();
        let mut edges: Vec<f64> = Vec::new();
        if total > 0.0 {
            let max = pairs.last().map_or(0.0, |p| p.0);
            let (mut acc, mut next) = (0.0, 1);
            for &(v, w) in &pairs {
                acc += w;
                while next < bins && acc >= total * next as f64 / bins as f64 {
                    // A bin holds every value up to its edge, ties included; the largest
                    // value needs no edge of its own.
                    if edges.last() != Some(&v) && v < max {
                        edges.push(v);
                    }
                    next += 1;
                }
            }
        }
        let mut h = Histogram::on(edges);
        h.count(values, weights);
        h
    }

    /// Count `values` (with their `weights`) into the bins.
    pub(crate) fn count(&mut self, values: &[Option<f64>], weights: Option<&[f64]>) {
        for (i, v) in values.iter().enumerate() {
            let w = weights.map_or(1.0, |w| w[i]);
            match v.filter(|v| v.is_finite()) {
                Some(v) => {
                    let bin = self.edges.partition_point(|&e| e < v);
                    self.counts[bin] += w;
                }
                None => self.missing += w,
            }
        }
    }

    /// The same bins, empty.
    pub(crate) fn empty_like(&self) -> Self {
        Histogram::on(self.edges.clone())
    }

    #[cfg(test)]
    fn total(&self) -> f64 {
        self.counts.iter().sum::<f64>() + self.missing
    }

    /// The bins' counts then the missing count: what the distances compare.
    fn cells(&self) -> Vec<f64> {
        let mut c = self.counts.clone();
        c.push(self.missing);
        c
    }

    /// Each bin's share of the rows, then the missing rows' share.
    pub(crate) fn shares(&self) -> Vec<f64> {
        shares(&self.cells())
    }
}

/// Counts of a categorical column by value (null as `"(null)"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Categories(pub(crate) BTreeMap<String, f64>);

impl Categories {
    pub(crate) fn of<'a>(values: impl Iterator<Item = Option<&'a str>>, weights: Option<&[f64]>) -> Self {
        let mut c = Categories::default();
        for (i, v) in values.enumerate() {
            *c.0.entry(v.unwrap_or("(null)").to_string()).or_default() += weights.map_or(1.0, |w| w[i]);
        }
        c
    }

    pub(crate) fn total(&self) -> f64 {
        self.0.values().sum()
    }

    /// The two distributions' counts on the union of their values, in one order.
    fn aligned(&self, other: &Categories) -> (Vec<String>, Vec<f64>, Vec<f64>) {
        let keys: Vec<String> = self
            .0
            .keys()
            .chain(other.0.keys())
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let a = keys.iter().map(|k| self.0.get(k).copied().unwrap_or(0.0)).collect();
        let b = keys.iter().map(|k| other.0.get(k).copied().unwrap_or(0.0)).collect();
        (keys, a, b)
    }

    /// The largest difference of a value's share, and that value.
    pub(crate) fn l_infinity(&self, reference: &Categories) -> (f64, Option<String>) {
        let (keys, a, b) = self.aligned(reference);
        let (sa, sb) = (shares(&a), shares(&b));
        let mut best = (0.0, None);
        for (i, k) in keys.iter().enumerate() {
            let d = (sa[i] - sb[i]).abs();
            if d > best.0 {
                best = (d, Some(k.clone()));
            }
        }
        best
    }

    /// Pearson's chi-squared test of `self` against `reference`'s shares: the p-value.
    pub(crate) fn chi_squared_p(&self, reference: &Categories) -> f64 {
        let (_, a, b) = self.aligned(reference);
        chi_squared_p(&a, &b)
    }
}

/// A feature's reference: numbers on quantile bins, or categories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Binned {
    Numeric(Histogram),
    Categorical(Categories),
}

fn shares(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return vec![0.0; counts.len()];
    }
    counts.iter().map(|c| c / total).collect()
}

/// Shares with every cell given half an observation: an empty bin in one distribution
/// would otherwise make the logarithms infinite (the usual correction for PSI).
fn smoothed(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum::<f64>() + 0.5 * counts.len() as f64;
    counts.iter().map(|c| (c + 0.5) / total).collect()
}

/// The population stability index of `current` against `reference` (same bins):
/// Σ (c − r) ln(c / r). Below 0.1: stable; 0.1–0.25: a shift; above 0.25: a large one.
pub(crate) fn psi(current: &Histogram, reference: &Histogram) -> f64 {
    let (c, r) = (smoothed(&current.cells()), smoothed(&reference.cells()));
    c.iter().zip(&r).map(|(c, r)| (c - r) * (c / r).ln()).sum()
}

/// The Jensen–Shannon distance (base 2, in [0, 1]) of the two histograms' shares.
pub(crate) fn jensen_shannon(current: &Histogram, reference: &Histogram) -> f64 {
    let (p, q) = (shares(&current.cells()), shares(&reference.cells()));
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter().zip(m).filter(|(a, _)| **a > 0.0).map(|(a, m)| a * (a / m).log2()).sum()
    };
    let m: Vec<f64> = p.iter().zip(&q).map(|(p, q)| 0.5 * (p + q)).collect();
    (0.5 * kl(&p, &m) + 0.5 * kl(&q, &m)).max(0.0).sqrt()
}

/// Pearson's chi-squared goodness-of-fit p-value of `observed` counts against the shares
/// of `reference` counts (cells the reference never saw count as one half).
pub(crate) fn chi_squared_p(observed: &[f64], reference: &[f64]) -> f64 {
    use statrs::distribution::{ChiSquared, ContinuousCDF};
    let n: f64 = observed.iter().sum();
    let expected = smoothed(reference);
    let cells = observed.len();
    if n <= 0.0 || cells < 2 {
        return 1.0;
    }
    let stat: f64 = observed.iter().zip(&expected).map(|(o, e)| (o - n * e).powi(2) / (n * e)).sum();
    match ChiSquared::new((cells - 1) as f64) {
        Ok(d) => 1.0 - d.cdf(stat),
        Err(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &[f64]) -> Vec<Option<f64>> {
        v.iter().map(|&x| Some(x)).collect()
    }

    #[test]
    fn quantile_bins_split_the_weight_evenly_and_merge_ties() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let h = Histogram::of_quantiles(&values(&v), None, 10);
        assert_eq!(h.edges.len(), 9);
        assert!(h.counts.iter().all(|&c| c == 100.0), "{:?}", h.counts);
        // A column of mostly zeros: one bin for the zeros, the rest split.
        let mut z = vec![0.0; 900];
        z.extend((1..=100).map(f64::from));
        let h = Histogram::of_quantiles(&values(&z), None, 10);
        assert_eq!(h.edges[0], 0.0);
        assert_eq!(h.counts[0], 900.0);
        assert_eq!(h.total(), 1000.0);
        // Weights count as repeated rows.
        let w = vec![1.0, 1.0, 2.0];
        let h = Histogram::of_quantiles(&values(&[1.0, 2.0, 3.0]), Some(&w), 2);
        assert_eq!(h.edges, vec![2.0]);
        assert_eq!(h.counts, vec![2.0, 2.0]);
    }

    #[test]
    fn summaries_of_disjoint_rows_add_to_the_summary_of_all() {
        let v: Vec<Option<f64>> =
            (0..500).map(|i| if i % 17 == 0 { None } else { Some((i * 7 % 101) as f64) }).collect();
        let reference = Histogram::of_quantiles(&v, None, 10);
        let mut all = reference.empty_like();
        all.count(&v, None);
        let (mut a, mut b) = (reference.empty_like(), reference.empty_like());
        a.count(&v[..200], None);
        b.count(&v[200..], None);
        let added: Vec<f64> = a.counts.iter().zip(&b.counts).map(|(x, y)| x + y).collect();
        assert_eq!(added, all.counts);
        assert_eq!(a.missing + b.missing, all.missing);
        let c = Categories::of([Some("y"), None, Some("y")].into_iter(), None);
        assert_eq!(c.0["y"], 2.0);
        assert_eq!(c.0["(null)"], 1.0);
    }

    #[test]
    fn distances_are_zero_on_equal_shares_and_grow_with_a_shift() {
        let v: Vec<f64> = (0..1000).map(|i| f64::from(i % 100)).collect();
        let reference = Histogram::of_quantiles(&values(&v), None, 10);
        let mut same = reference.empty_like();
        same.count(&values(&v[..500]), None);
        assert!(psi(&same, &reference).abs() < 1e-3);
        assert!(jensen_shannon(&same, &reference) < 1e-3);
        let shifted: Vec<f64> = v.iter().map(|x| x + 30.0).collect();
        let mut moved = reference.empty_like();
        moved.count(&values(&shifted), None);
        assert!(psi(&moved, &reference) > 0.5, "{}", psi(&moved, &reference));
        let js = jensen_shannon(&moved, &reference);
        assert!(js > 0.3 && js <= 1.0, "{js}");
        // Categories: a value that vanished.
        let r = Categories::of(["a", "b", "c", "c"].iter().cycle().take(400).map(|s| Some(*s)), None);
        let c = Categories::of(["a", "c", "c"].iter().cycle().take(300).map(|s| Some(*s)), None);
        let (d, which) = c.l_infinity(&r);
        assert!((d - 0.25).abs() < 1e-9 && which.as_deref() == Some("b"), "{d} {which:?}");
        assert!(c.chi_squared_p(&r) < 1e-6);
        assert!(r.chi_squared_p(&r) > 0.99);
    }
}
