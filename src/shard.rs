//! Shards: which users one task of a night works on.
//!
//! A night at hundreds of millions of users runs as N tasks side by side, each on the users
//! of one shard. User `u` belongs to shard `xxh3_64(utf8(u)) mod N`: XXH3, 64-bit, seed 0,
//! over the `user_id`'s UTF-8 bytes, the hash every language has a library for (Python's
//! `xxhash.xxh3_64_intdigest`, Java's `zero-allocation-hashing`, Spark's and ClickHouse's
//! `xxh3`), so an export job elsewhere can split the inputs the same way. The README lists
//! test vectors, checked below against Python's `xxhash` 3.5.0.
//!
//! Why a hash of the id and not ranges: a shard is then a uniform random sample of the
//! users (its churn rate, plan mix and sizes match the whole), and a user stays in the same
//! shard as long as N does, night after night.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The placeholder an input URI may hold for inputs already exported one root per shard.
pub const PLACEHOLDER: &str = "{shard}";

/// Shard `index` of `count` (`--shard K/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// The shard of `user_id` among `count`.
pub fn shard_of(user_id: &str, count: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(user_id.as_bytes()) % u64::from(count.max(1))) as u32
}

impl Shard {
    /// Whether `user_id` is one of this shard's users.
    pub fn holds(&self, user_id: &str) -> bool {
        shard_of(user_id, self.count) == self.index
    }

    /// `K-of-N`, as in file and folder names.
    pub fn label(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }

    /// An input URI with [`PLACEHOLDER`] replaced by this shard's index.
    pub fn expand(&self, uri: &str) -> String {
        uri.replace(PLACEHOLDER, &self.index.to_string())
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Usage(format!("--shard `{s}`: expected K/N with 0 <= K < N, e.g. 3/8"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Computed with Python's `xxhash` 3.5.0: `xxh3_64_intdigest(s.encode())`, then mod N.
    #[test]
    fn the_hash_matches_the_published_test_vectors() {
        let vectors: [(&str, u64, u32, u32, u32); 5] = [
            ("", 0x2d06800538d394c2, 1, 4, 2),
            ("u0000001", 0x4f0da4ee0b4607f5, 2, 3, 53),
            ("u0000002", 0xfd1e2d4da9172081, 2, 1, 1),
            ("u0999999", 0x50f7d9bc3f821cc7, 0, 0, 7),
            ("user-ä", 0x16026aa0bb9c7825, 1, 5, 37),
        ];
        for (id, hash, of3, of7, of64) in vectors {
            assert_eq!(xxhash_rust::xxh3::xxh3_64(id.as_bytes()), hash, "{id:?}");
            assert_eq!([shard_of(id, 3), shard_of(id, 7), shard_of(id, 64)], [of3, of7, of64], "{id:?}");
        }
    }

    #[test]
    fn a_shard_is_written_k_slash_n_with_k_below_n() {
        assert_eq!("3/8".parse::<Shard>().unwrap(), Shard { index: 3, count: 8 });
        assert_eq!(Shard { index: 3, count: 8 }.to_string(), "3/8");
        assert_eq!(Shard { index: 3, count: 8 }.label(), "3-of-8");
        for bad in ["8/8", "1/0", "3", "-1/4", "a/b", "3/8/9"] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert_eq!(err.exit_code(), crate::error::ExitCode::Usage, "{bad}: {err}");
        }
        assert_eq!(Shard { index: 2, count: 4 }.expand("s3://b/export/shard={shard}/"), "s3://b/export/shard=2/");
    }

    proptest! {
        #[test]
        fn every_user_is_in_exactly_one_shard(id in ".{0,24}", n in 1u32..50) {
            let holding = (0..n).filter(|&k| Shard { index: k, count: n }.holds(&id)).count();
            prop_assert_eq!(holding, 1);
        }
    }

    #[test]
    fn shards_are_about_equal() {
        let n = 7;
        let mut sizes = [0usize; 7];
        for u in 0..70_000 {
            sizes[shard_of(&format!("u{u:07}"), n) as usize] += 1;
        }
        // 10,000 expected each; a binomial standard deviation is about 93.
        assert!(sizes.iter().all(|&s| (9_600..=10_400).contains(&s)), "{sizes:?}");
    }
}
