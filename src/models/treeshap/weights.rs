//! The Shapley weights of a leaf's path: tabulated for every mask of satisfied features
//! when the model is read, or computed from elementary symmetric polynomials for paths
//! with more than [`MAX_TABLE_BITS`] distinct features.

/// Leaves with at most this many distinct path features get a table of 2^d weights (at
/// most 512 KB each; the 1M-user churn model's tables are 20 MB in all).
pub(super) const MAX_TABLE_BITS: usize = 16;

/// One distinct feature of a leaf's path.
pub(super) struct Slot {
    pub(super) feature: usize,
    /// z: the share of the training rows at the root that this feature's conditions keep.
    pub(super) zero: f64,
    /// (1 − z) / z.
    pub(super) ratio: f64,
}

#[derive(Default)]
pub(super) struct Polynomials {
    satisfied: Vec<f64>,
    deflated: Vec<f64>,
}

/// c_d(s) = s! (d − s − 1)! / d!, the Shapley weight of a coalition of s of d players.
fn shapley_weights(d: usize) -> Vec<f64> {
    let mut c = Vec::with_capacity(d);
    if d == 0 {
        return c;
    }
    c.push(1.0 / d as f64);
    for s in 0..d - 1 {
        let next = c[s] * (s + 1) as f64 / (d - s - 1) as f64;
        c.push(next);
    }
    c
}

/// G(B) for every mask B of a leaf's d path features with cover fractions `zeros`
/// (bit j of B: feature j satisfied). G(B) = Π_{j ∉ B} z_j · Σ_t c_d(|B| − t) e_t(z_B),
/// with e_t the elementary symmetric polynomials of the satisfied features' fractions.
/// The full mask is never read (it has no unsatisfied feature and no smaller coalition is
/// asked with it) and stays 0.
pub(super) fn weight_table(zeros: &[f64]) -> Vec<f64> {
    let d = zeros.len();
    let c = shapley_weights(d);
    let mut table = vec![0.0; 1 << d];
    let mut poly = [0.0f64; MAX_TABLE_BITS + 1];
    poly[0] = 1.0;
    fill(zeros, &c, 0, 0, 0, &poly, 1.0, &mut table);
    table
}

#[allow(clippy::too_many_arguments)]
fn fill(
    zeros: &[f64],
    c: &[f64],
    k: usize,
    mask: usize,
    size: usize,
    poly: &[f64; MAX_TABLE_BITS + 1],
    excluded: f64,
    table: &mut [f64],
) {
    let d = zeros.len();
    if k == d {
        if size < d {
            table[mask] = excluded * (0..=size).map(|t| c[size - t] * poly[t]).sum::<f64>();
        }
        return;
    }
    fill(zeros, c, k + 1, mask, size, poly, excluded * zeros[k], table);
    let mut with = *poly;
    for t in (1..=size + 1).rev() {
        with[t] += zeros[k] * with[t - 1];
    }
    fill(zeros, c, k + 1, mask | 1 << k, size + 1, &with, excluded, table);
}

/// A leaf's contributions without a table: the polynomial of the satisfied features'
/// fractions, deflated by one feature at a time. O(d²), like one leaf of the original
/// algorithm.
pub(super) fn explain_untabulated(slots: &[Slot], satisfied: u64, v: f64, phi: &mut [f64], work: &mut Polynomials) {
    let d = slots.len();
    let c = shapley_weights(d);
    let poly = &mut work.satisfied;
    poly.clear();
    poly.push(1.0);
    let mut excluded = 1.0;
    for (j, slot) in slots.iter().enumerate() {
        if satisfied >> j & 1 == 1 {
            poly.push(0.0);
            for t in (1..poly.len()).rev() {
                poly[t] += slot.zero * poly[t - 1];
            }
        } else {
            excluded *= slot.zero;
        }
    }
    let size = poly.len() - 1;
    let g_satisfied = if size < d { excluded * (0..=size).map(|t| c[size - t] * poly[t]).sum::<f64>() } else { 0.0 };
    for (i, slot) in slots.iter().enumerate() {
        if satisfied >> i & 1 == 1 {
            // The polynomial without feature i: divide by (1 + z_i x).
            let deflated = &mut work.deflated;
            deflated.clear();
            deflated.push(1.0);
            for t in 1..size {
                let previous = deflated[t - 1];
                deflated.push(poly[t] - slot.zero * previous);
            }
            let m = size - 1;
            // Π over the unsatisfied features and i itself, divided by z_i: only the others.
            let g = excluded * (0..=m).map(|t| c[m - t] * deflated[t]).sum::<f64>();
            phi[slot.feature] += v * (1.0 - slot.zero) * g;
        } else {
            phi[slot.feature] -= v * g_satisfied;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_paths_without_tables_agree_with_tabulated_ones() {
        // Every subset of five features satisfied or not: the table and the direct
        // computation give the same weights.
        let zeros = [0.5, 0.25, 0.8, 0.1, 0.6];
        let slots: Vec<Slot> =
            zeros.iter().enumerate().map(|(i, &z)| Slot { feature: i, zero: z, ratio: (1.0 - z) / z }).collect();
        let table = weight_table(&zeros);
        for satisfied in 0u64..32 {
            let mut direct = vec![0.0; 5];
            explain_untabulated(&slots, satisfied, 1.5, &mut direct, &mut Polynomials::default());
            for (i, slot) in slots.iter().enumerate() {
                let expected = if satisfied >> i & 1 == 1 {
                    1.5 * slot.ratio * table[(satisfied ^ (1 << i)) as usize]
                } else {
                    -1.5 * table[satisfied as usize]
                };
                assert!((direct[i] - expected).abs() < 1e-12, "mask {satisfied:05b}, feature {i}");
            }
        }
    }

    #[test]
    fn one_leaf_contributions_add_up_to_its_departure_from_the_expectation() {
        // Efficiency, per leaf: Σ_i φ_i = v·Π o_j − v·Π z_j (the leaf's value for this row
        // minus its share of the tree's expectation).
        let zeros = [0.3, 0.7, 0.45];
        let slots: Vec<Slot> =
            zeros.iter().enumerate().map(|(i, &z)| Slot { feature: i, zero: z, ratio: (1.0 - z) / z }).collect();
        let expectation: f64 = zeros.iter().product();
        for satisfied in 0u64..8 {
            let mut phi = vec![0.0; 3];
            explain_untabulated(&slots, satisfied, 2.0, &mut phi, &mut Polynomials::default());
            let reached = if satisfied == 7 { 2.0 } else { 0.0 };
            let total: f64 = phi.iter().sum();
            assert!((total - (reached - 2.0 * expectation)).abs() < 1e-12, "mask {satisfied:03b}: {total}");
        }
    }
}
