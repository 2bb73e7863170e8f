//! Risk deciles: decile 1 holds the riskiest tenth of the night's premium users.
//!
//! A decile is a rank among everyone scored that night: users in order of churn
//! probability, highest first, ties in user-id order; the user at rank r (from 0) of n is in
//! decile ⌊10r/n⌋ + 1. One process that scores everyone ranks them directly
//! ([`in_population`]). Shards score a part each and cannot rank, so the night's nine
//! boundaries (the users that open deciles 2 to 10) are found once, where the models are
//! fitted, and published with them ([`Boundaries`]); a shard places its users against them
//! ([`Boundaries::decile`]). Found on every user, the boundaries give each user the decile
//! the single process gives; found on a sample of users, they estimate it.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// The decile of each user of one population, ranked directly. `ids` must be unique and
/// in the population's order (ties between equal probabilities go to the smaller id).
pub(crate) fn in_population(p: &[f64], ids: &[&str]) -> Vec<i8> {
    let n = p.len();
    let mut out = vec![10i8; n];
    for (rank, &i) in order(p, ids).iter().enumerate() {
        out[i] = (rank * 10 / n.max(1)) as i8 + 1;
    }
    out
}

/// Row indices from riskiest to safest.
fn order(p: &[f64], ids: &[&str]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| riskier(p[a], ids[a], p[b], ids[b]));
    order
}

/// `Less` when (pa, a) ranks before (pb, b).
fn riskier(pa: f64, a: &str, pb: f64, b: &str) -> Ordering {
    pb.total_cmp(&pa).then_with(|| a.cmp(b))
}

/// The users that open deciles 2 to 10 of one night, with their probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Boundaries {
    /// How many users they were found on.
    pub population: usize,
    /// (probability, user id) of the first user of deciles 2..=10, riskiest first.
    pub opening: Vec<(f64, String)>,
}

impl Boundaries {
    /// The boundaries of the population `p`, `ids`.
    pub(crate) fn of(p: &[f64], ids: &[&str]) -> Self {
        let n = p.len();
        let order = order(p, ids);
        let opening = (2..=10usize)
            .filter_map(|d| {
                let rank = ((d - 1) * n).div_ceil(10);
                order.get(rank).map(|&i| (p[i], ids[i].to_string()))
            })
            .collect();
        Boundaries { population: n, opening }
    }

    /// The decile of a user with probability `p`: one more than the number of deciles
    /// whose opening user it ranks at or after.
    pub(crate) fn decile(&self, p: f64, id: &str) -> i8 {
        let after = self.opening.iter().filter(|(bp, bid)| riskier(p, id, *bp, bid) != Ordering::Less).count();
        after as i8 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn deciles_put_the_riskiest_tenth_first() {
        let p: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        let ids: Vec<String> = (0..100).map(|i| format!("u{i:03}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let d = in_population(&p, &ids);
        assert_eq!(d[99], 1);
        assert_eq!(d[0], 10);
        for k in 1..=10 {
            assert_eq!(d.iter().filter(|&&v| v == k).count(), 10);
        }
    }

    proptest! {
        /// Boundaries found on everyone give every user of every shard the decile of the
        /// whole population's ranking, ties and small populations included.
        #[test]
        fn boundaries_of_everyone_give_each_user_the_population_decile(
            p in prop::collection::vec(prop_oneof![Just(0.5), 0.0f64..1.0], 0..300),
        ) {
            let ids: Vec<String> = (0..p.len()).map(|i| format!("u{:04}", (i * 7919) % 10_007)).collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let whole = in_population(&p, &ids);
            let bounds = Boundaries::of(&p, &ids);
            for (i, d) in whole.iter().enumerate() {
                prop_assert_eq!(bounds.decile(p[i], ids[i]), *d, "user {} p {}", ids[i], p[i]);
            }
        }
    }
}
