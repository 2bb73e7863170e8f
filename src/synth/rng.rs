//! Counter-based randomness: every `(seed, user, day, purpose)` has its own stream.
//!
//! A stream's starting state is the xxh3 hash of its key under the world seed; inside a
//! stream numbers come from SplitMix64. Because no stream is shared between users, users
//! can be simulated on any number of threads in any order and draw the same numbers, and
//! because purposes have separate streams, drawing one more number for, say, a message
//! does not shift the numbers a user's listening draws.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// What a stream is for. The discriminant is part of the stream's key: never reorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Purpose {
    /// A user's fixed traits (country, levels, responsiveness).
    Traits = 1,
    /// A user's state when the window opens.
    Init = 2,
    /// A user's billing on one day.
    Billing = 3,
    /// A user's listening on one day.
    Listening = 4,
    /// A user's campaign decision on one day.
    Campaign = 5,
    /// What happened to a message after it was sent.
    Outcome = 6,
}

pub(crate) struct Stream {
    state: u64,
}

impl Stream {
    pub(crate) fn new(seed: u64, user: u32, day: i32, purpose: Purpose) -> Self {
        let mut key = [0u8; 16];
        key[0..4].copy_from_slice(&user.to_le_bytes());
        key[4..8].copy_from_slice(&day.to_le_bytes());
        key[8] = purpose as u8;
        key[9..16].copy_from_slice(b"retain!");
        Stream { state: xxh3_64_with_seed(&key, seed) }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in `0..n`.
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal (Box–Muller, one of the pair).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Poisson: inversion by multiplication for small means, a rounded normal for large.
    pub(crate) fn poisson(&mut self, lambda: f64) -> u32 {
        if lambda.is_nan() || lambda <= 0.0 {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut k = 0u32;
            let mut p = self.uniform();
            while p > limit {
                k += 1;
                p *= self.uniform();
            }
            k
        } else {
            (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u32
        }
    }

    /// An index drawn with the given (not necessarily normalised) weights.
    pub(crate) fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.uniform() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_keyed_and_reasonable() {
        let a: Vec<u64> = (0..4).map(|_| Stream::new(7, 1, 2, Purpose::Billing).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]), "same key, same stream");
        assert_ne!(
            Stream::new(7, 1, 2, Purpose::Billing).next_u64(),
            Stream::new(7, 1, 3, Purpose::Billing).next_u64()
        );
        assert_ne!(
            Stream::new(7, 1, 2, Purpose::Billing).next_u64(),
            Stream::new(8, 1, 2, Purpose::Billing).next_u64()
        );
        let mut s = Stream::new(1, 0, 0, Purpose::Traits);
        let n = 20_000;
        let mean: f64 = (0..n).map(|_| s.normal()).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.05, "normal mean {mean}");
        let pm: f64 = (0..n).map(|_| f64::from(s.poisson(4.0))).sum::<f64>() / n as f64;
        assert!((pm - 4.0).abs() < 0.1, "poisson mean {pm}");
        assert!((0..1000).all(|_| s.below(6) < 6));
    }
}
