//! Exact TreeSHAP contributions of a LightGBM model, read from its text model, and its
//! predictions from the same trees.
//!
//! Why predictions here too: the interventions stage predicts small models on millions
//! of rows a night, and a quarter of its CPU was LightGBM's prediction (which also parses
//! the model text anew on every call). The trees read once for TreeSHAP are walked here
//! instead, a numerical split decided without a branch, with LightGBM's decisions, its
//! order of summation and its objective's output transform: LightGBM's numbers to the bit
//! (tested against it), for about 7% less CPU in that stage (BENCHMARKS.md, "The night on
//! 2026-12-01").
//!
//! Why our own: LightGBM's TreeSHAP is the original algorithm, which walks every path of
//! every tree for every row and costs O(leaves × depth²) per tree and row. At a million
//! users it was the whole score stage (472 s of the reasons, and Python LightGBM's
//! `pred_contrib` took as long on the same model and rows).
//!
//! The values are the same path-dependent Shapley values; the work is arranged so that
//! most of it happens once per model instead of once per row. For one leaf with value v
//! and the distinct features F of its path (d of them), each feature j has a cover
//! fraction z_j (the product of the training-count ratios of the path's edges on j) and a
//! row either satisfies every condition on j (j ∈ A) or not. The leaf's part of feature
//! i's contribution is
//!
//! - −v · G(A) when i ∉ A, and
//! - v · (1 − z_i) / z_i · G(A ∖ {i}) when i ∈ A,
//!
//! where G(B) = Σ_{S ⊆ B} |S|! (d − |S| − 1)! / d! · Π_{j ∈ F∖S} z_j depends on the row only
//! through the mask B. G is tabulated for every mask of every leaf when the model is read
//! (the idea of Fast TreeSHAP v2, Yang 2021), so a row costs one decision per node, one
//! mask per leaf and one table look-up per path feature: O(leaves × depth). Leaves with
//! more than [`MAX_TABLE_BITS`] distinct path features (rare: 7 of 8,711 in the 1M-user
//! model) compute G from the fractions' elementary symmetric polynomials instead.
//!
//! Rows are explained in blocks, each block tree by tree, so one tree's tables stay in
//! cache while a block's rows read them; blocks run in parallel on the rayon pool. Each
//! row's sums are added in a fixed order, so the result does not depend on the threads.

use std::fmt;

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Leaves with at most this many distinct path features get a table of 2^d weights (at
/// most 512 KB each; the 1M-user churn model's tables are 20 MB in all).
const MAX_TABLE_BITS: usize = 16;

/// Rows a block explains tree by tree.
const BLOCK_ROWS: usize = 128;

/// LightGBM's `kZeroThreshold` (a float literal widened to double).
const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

/// A LightGBM model ready to explain rows.
pub(crate) struct TreeShap {
    trees: Vec<Tree>,
    features: usize,
    /// How the model's objective turns a raw score into its prediction (None: an
    /// objective read here does not know; LightGBM predicts those).
    output: Option<Output>,
}

/// LightGBM's `ConvertOutput` of the objectives the pipeline fits.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Output {
    /// `regression` (L2): the raw score.
    Raw,
    /// `binary` (with its `sigmoid:` parameter) and `cross_entropy`: 1 / (1 + e^(−σ·raw)).
    Sigmoid(f64),
}

impl Output {
    /// The objective line of a text model (`objective=binary sigmoid:1`).
    fn of(objective: &str) -> Option<Output> {
        let mut words = objective.split_whitespace();
        match words.next()? {
            "regression" => words.next().is_none().then_some(Output::Raw),
            "cross_entropy" => Some(Output::Sigmoid(1.0)),
            "binary" => {
                let sigmoid = words.find_map(|w| w.strip_prefix("sigmoid:")).map_or(Some(1.0), |v| v.parse().ok())?;
                Some(Output::Sigmoid(sigmoid))
            }
            _ => None,
        }
    }

    /// As LightGBM computes it (`1.0f / (1.0f + std::exp(-sigmoid_ * input))`).
    fn apply(self, raw: f64) -> f64 {
        match self {
            Output::Raw => raw,
            Output::Sigmoid(sigmoid) => 1.0 / (1.0 + (-sigmoid * raw).exp()),
        }
    }
}

impl fmt::Debug for TreeShap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreeShap").field("trees", &self.trees.len()).field("features", &self.features).finish()
    }
}

/// An internal node, as LightGBM decides it.
struct Node {
    feature: usize,
    threshold: f64,
    decision_type: u8,
    left: i32,
    right: i32,
    /// The slot of the node's feature in the paths through it (a path's distinct features
    /// are numbered by first appearance, so every leaf below agrees).
    slot: u8,
}

/// A leaf's path: its distinct features (slots).
struct Leaf {
    value: f64,
    slots: std::ops::Range<usize>,
    /// Where the leaf's 2^d weights start in `Tree::tables`, when tabulated.
    table: Option<usize>,
}

/// One distinct feature of a leaf's path.
struct Slot {
    feature: usize,
    /// z: the share of the training rows at the root that this feature's conditions keep.
    zero: f64,
    /// (1 − z) / z.
    ratio: f64,
}

struct Tree {
    nodes: Vec<Node>,
    /// The internal nodes, each after its parent.
    order: Vec<usize>,
    leaves: Vec<Leaf>,
    slots: Vec<Slot>,
    tables: Vec<f64>,
    cat_boundaries: Vec<usize>,
    cat_threshold: Vec<u32>,
}

impl TreeShap {
    /// Read a LightGBM text model (one tree per iteration, no linear trees).
    pub(crate) fn from_text(text: &str) -> Result<Self> {
        let bad = |what: String| Error::data(format!("the LightGBM model cannot be explained: {what}"));
        let header = |key: &str| text.lines().find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')));
        let features = header("max_feature_idx")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| bad("no max_feature_idx".into()))?
            + 1;
        if header("num_tree_per_iteration").map(str::trim) != Some("1") {
            return Err(bad("not one tree per iteration".into()));
        }
        let body = text.split("end of trees").next().unwrap_or("");
        let mut trees = Vec::new();
        for block in body.split("\nTree=").skip(1) {
            trees.push(Tree::parse(block, features).map_err(|e| bad(format!("tree {}: {e}", trees.len())))?);
        }
        let averaged = header("average_output").is_some() || text.lines().any(|l| l.trim() == "average_output");
        let output = header("objective").and_then(Output::of).filter(|_| !averaged);
        Ok(TreeShap { trees, features, output })
    }

    /// Each row's prediction, as LightGBM's `predict` gives it (probabilities for a
    /// binary model); None when the model's objective is not one [`Output`] knows.
    ///
    /// Rows are predicted in blocks on the rayon pool, each block tree by tree; a row's
    /// leaf values are added in tree order from zero, as LightGBM adds them.
    pub(crate) fn predict(&self, x: ArrayView2<f64>) -> Option<Vec<f64>> {
        let output = self.output?;
        assert_eq!(x.ncols(), self.features, "rows with the model's features");
        let k = self.features;
        let x = x.as_standard_layout();
        let rows = x.as_slice().expect("standard layout");
        let mut out = vec![0.0; x.nrows()];
        out.par_chunks_mut(BLOCK_ROWS).zip(rows.par_chunks(BLOCK_ROWS * k)).for_each(|(scores, rows)| {
            for tree in &self.trees {
                for (score, row) in scores.iter_mut().zip(rows.chunks_exact(k)) {
                    *score += tree.leaf_value(row);
                }
            }
            for score in scores {
                *score = output.apply(*score);
            }
        });
        Some(out)
    }

    /// Each feature's contribution to each row's raw score (log-odds for a binary model):
    /// the same numbers as LightGBM's `predict_contrib` without its last (bias) column.
    pub(crate) fn contributions(&self, x: ArrayView2<f64>) -> Array2<f64> {
        assert_eq!(x.ncols(), self.features, "rows with the model's features");
        let k = self.features;
        let x = x.as_standard_layout();
        let rows = x.as_slice().expect("standard layout");
        let mut out = Array2::<f64>::zeros((x.nrows(), k));
        let phi = out.as_slice_mut().expect("a new array is contiguous");
        phi.par_chunks_mut(BLOCK_ROWS * k).zip(rows.par_chunks(BLOCK_ROWS * k)).for_each(|(phi, rows)| {
            let mut scratch = Scratch::default();
            for tree in &self.trees {
                tree.explain_block(rows, phi, k, &mut scratch);
            }
        });
        out
    }
}

#[derive(Default)]
struct Scratch {
    /// Per internal node: the slots a row has failed on the way to it.
    failed: Vec<u64>,
    /// Per row of a block, per leaf: the slots the row fails on the leaf's path.
    leaf_failed: Vec<u64>,
    polynomials: Polynomials,
}

/// Work space of [`explain_untabulated`].
#[derive(Default)]
struct Polynomials {
    satisfied: Vec<f64>,
    deflated: Vec<f64>,
}

fn numbers<T: std::str::FromStr>(fields: &std::collections::HashMap<&str, &str>, key: &str) -> Result<Vec<T>, String> {
    fields
        .get(key)
        .ok_or_else(|| format!("no {key}"))?
        .split_whitespace()
        .map(|v| v.parse::<T>().map_err(|_| format!("{key}: {v:?} is not a number")))
        .collect()
}

impl Tree {
    fn parse(block: &str, features: usize) -> Result<Self, String> {
        let fields: std::collections::HashMap<&str, &str> = block.lines().filter_map(|l| l.split_once('=')).collect();
        if fields.get("is_linear").is_some_and(|v| v.trim() != "0") {
            return Err("a linear tree".into());
        }
        let num_leaves: usize = fields.get("num_leaves").and_then(|v| v.trim().parse().ok()).ok_or("no num_leaves")?;
        let leaf_value: Vec<f64> = numbers(&fields, "leaf_value")?;
        if num_leaves <= 1 {
            // A single leaf adds the same to every row: no contribution to any feature.
            let value = leaf_value.first().copied().unwrap_or(0.0);
            return Ok(Tree {
                nodes: Vec::new(),
                order: Vec::new(),
                leaves: vec![Leaf { value, slots: 0..0, table: None }],
                slots: Vec::new(),
                tables: Vec::new(),
                cat_boundaries: Vec::new(),
                cat_threshold: Vec::new(),
            });
        }
        let split_feature: Vec<usize> = numbers(&fields, "split_feature")?;
        let threshold: Vec<f64> = numbers(&fields, "threshold")?;
        let decision_type: Vec<u8> = numbers(&fields, "decision_type")?;
        let left: Vec<i32> = numbers(&fields, "left_child")?;
        let right: Vec<i32> = numbers(&fields, "right_child")?;
        let leaf_count: Vec<f64> = numbers(&fields, "leaf_count")?;
        let internal_count: Vec<f64> = numbers(&fields, "internal_count")?;
        let (cat_boundaries, cat_threshold) = if fields.contains_key("cat_boundaries") {
            (numbers(&fields, "cat_boundaries")?, numbers(&fields, "cat_threshold")?)
        } else {
            (vec![0], Vec::new())
        };
        let internal = num_leaves - 1;
        let lengths = [split_feature.len(), threshold.len(), decision_type.len(), left.len(), right.len()];
        if lengths.iter().any(|&n| n != internal)
            || leaf_value.len() != num_leaves
            || leaf_count.len() != num_leaves
            || internal_count.len() != internal
        {
            return Err(format!("arrays of the wrong length for {num_leaves} leaves"));
        }
        if split_feature.iter().any(|&f| f >= features) {
            return Err("a split on a feature the model does not have".into());
        }
        let child_ok = |c: i32| if c >= 0 { (c as usize) < internal } else { ((!c) as usize) < num_leaves };
        if !left.iter().chain(&right).all(|&c| child_ok(c)) {
            return Err("a child out of range".into());
        }
        let nodes: Vec<Node> = (0..internal)
            .map(|i| Node {
                feature: split_feature[i],
                threshold: threshold[i],
                decision_type: decision_type[i],
                left: left[i],
                right: right[i],
                slot: 0,
            })
            .collect();
        let count = |c: i32| if c >= 0 { internal_count[c as usize] } else { leaf_count[(!c) as usize] };

        let mut tree = Tree {
            nodes,
            order: Vec::with_capacity(internal),
            leaves: Vec::with_capacity(num_leaves),
            slots: Vec::new(),
            tables: Vec::new(),
            cat_boundaries,
            cat_threshold,
        };
        // Depth-first over the paths; `distinct` holds the features of the path from the
        // root to the current node, in order of first appearance, with their z.
        let mut leaves: Vec<Option<Leaf>> = (0..num_leaves).map(|_| None).collect();
        let mut stack: Vec<(i32, Vec<(usize, f64)>)> = vec![(0, Vec::new())];
        while let Some((node, distinct)) = stack.pop() {
            if node < 0 {
                let leaf = (!node) as usize;
                if leaves[leaf].is_some() {
                    return Err("a leaf reached by two paths".into());
                }
                let slots_start = tree.slots.len();
                for &(feature, zero) in &distinct {
                    tree.slots.push(Slot { feature, zero, ratio: (1.0 - zero) / zero });
                }
                let d = distinct.len();
                let table = (d <= MAX_TABLE_BITS).then(|| {
                    let start = tree.tables.len();
                    let zeros: Vec<f64> = distinct.iter().map(|&(_, z)| z).collect();
                    tree.tables.extend(weight_table(&zeros));
                    start
                });
                leaves[leaf] = Some(Leaf { value: leaf_value[leaf], slots: slots_start..tree.slots.len(), table });
                continue;
            }
            if tree.order.contains(&(node as usize)) {
                return Err("a node reached by two paths".into());
            }
            tree.order.push(node as usize);
            let n = &tree.nodes[node as usize];
            let (feature, total, children) = (n.feature, count(node), [(n.right, false), (n.left, true)]);
            let slot = distinct.iter().position(|&(f, _)| f == feature).unwrap_or(distinct.len());
            if slot >= 63 {
                return Err("a path with more than 63 distinct features".into());
            }
            tree.nodes[node as usize].slot = slot as u8;
            for (child, _) in children {
                let fraction = count(child) / total;
                let mut distinct = distinct.clone();
                match distinct.get_mut(slot) {
                    Some(known) => known.1 *= fraction,
                    None => distinct.push((feature, fraction)),
                }
                stack.push((child, distinct));
            }
        }
        tree.leaves = leaves.into_iter().collect::<Option<Vec<_>>>().ok_or("a leaf no path reaches")?;
        Ok(tree)
    }

    /// The value of the leaf a row (the model's features) falls in. LightGBM predicts
    /// from a buffer where values within its zero threshold are exactly zero; so here.
    fn leaf_value(&self, row: &[f64]) -> f64 {
        if self.nodes.is_empty() {
            return self.leaves[0].value;
        }
        let mut node = 0i32;
        while node >= 0 {
            let n = &self.nodes[node as usize];
            let v = row[n.feature];
            // A number away from zero on a numerical split: the threshold alone decides
            // (whatever the split's missing-value rule), chosen without a branch.
            node = if n.decision_type & 1 == 0 && v.abs() > ZERO_THRESHOLD {
                [n.right, n.left][usize::from(v <= n.threshold)]
            } else {
                let v = if v.abs() <= ZERO_THRESHOLD { 0.0 } else { v };
                if self.goes_left(n, v) { n.left } else { n.right }
            };
        }
        self.leaves[(!node) as usize].value
    }

    /// Whether `value` goes to the left child of `node`, exactly as LightGBM's
    /// `Tree::Decision` decides.
    fn goes_left(&self, node: &Node, value: f64) -> bool {
        if node.decision_type & 1 != 0 {
            if value.is_nan() {
                return false;
            }
            let category = value as i32;
            if category < 0 {
                return false;
            }
            let index = node.threshold as usize;
            let (start, end) = (self.cat_boundaries[index], self.cat_boundaries[index + 1]);
            let word = category as usize / 32;
            if word >= end - start {
                return false;
            }
            return (self.cat_threshold[start + word] >> (category % 32)) & 1 == 1;
        }
        let missing_type = (node.decision_type >> 2) & 3;
        let mut value = value;
        if value.is_nan() && missing_type != 2 {
            value = 0.0;
        }
        let is_zero = (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&value);
        if (missing_type == 1 && is_zero) || (missing_type == 2 && value.is_nan()) {
            return node.decision_type & 2 != 0;
        }
        value <= node.threshold
    }

    /// Add this tree's contributions for a block of rows (`rows`, k values each) to `phi`
    /// (k per row). Leaf by leaf, so a leaf's table is read by every row of the block
    /// while it is in the nearest cache; each row's sums are still added tree by tree and
    /// leaf by leaf, so the order, and the result, is that of one row at a time.
    fn explain_block(&self, rows: &[f64], phi: &mut [f64], k: usize, scratch: &mut Scratch) {
        if self.nodes.is_empty() {
            return;
        }
        // Per row, per leaf: the slots whose conditions the row fails somewhere on the
        // path, pushed down from the root one node at a time.
        let leaves = self.leaves.len();
        let Scratch { failed, leaf_failed, polynomials } = scratch;
        failed.clear();
        failed.resize(self.nodes.len(), 0);
        leaf_failed.clear();
        leaf_failed.resize(leaves * rows.len() / k, 0);
        for (row, leaf_failed) in rows.chunks_exact(k).zip(leaf_failed.chunks_exact_mut(leaves)) {
            for &node in &self.order {
                let n = &self.nodes[node];
                let here = failed[node];
                let off = here | 1u64 << n.slot;
                let (left, right) = if self.goes_left(n, row[n.feature]) { (here, off) } else { (off, here) };
                for (child, mask) in [(n.left, left), (n.right, right)] {
                    if child >= 0 {
                        failed[child as usize] = mask;
                    } else {
                        leaf_failed[(!child) as usize] = mask;
                    }
                }
            }
        }
        for (l, leaf) in self.leaves.iter().enumerate() {
            let slots = &self.slots[leaf.slots.clone()];
            let d = slots.len();
            let v = leaf.value;
            for (r, phi) in phi.chunks_exact_mut(k).enumerate() {
                let satisfied: u64 = ((1u64 << d) - 1) & !leaf_failed[r * leaves + l];
                match leaf.table {
                    Some(start) => {
                        // i satisfied: v · ratio_i · G(A ∖ {i}); not: −v · G(A) = −v · G(A ∖ {i}).
                        let g = &self.tables[start..start + (1usize << d)];
                        for (i, slot) in slots.iter().enumerate() {
                            let weight = if satisfied >> i & 1 == 1 { slot.ratio } else { -1.0 };
                            phi[slot.feature] += v * weight * g[(satisfied & !(1 << i)) as usize];
                        }
                    }
                    None => explain_untabulated(slots, satisfied, v, phi, polynomials),
                }
            }
        }
    }
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
fn weight_table(zeros: &[f64]) -> Vec<f64> {
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
fn explain_untabulated(slots: &[Slot], satisfied: u64, v: f64, phi: &mut [f64], work: &mut Polynomials) {
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
    use crate::models::gbdt::{GbdtModel, GbdtParams, Objective, Rows};

    /// Rows with the shapes the pipeline's models see: a few informative numeric columns,
    /// missing values (NaN), exact zeros, and a categorical column of codes.
    fn rows(n: usize, offset: usize) -> (Array2<f64>, Vec<i32>) {
        let x = Array2::from_shape_fn((n, 6), |(i, j)| {
            let i = i + offset;
            let u = ((i * 7919 + j * 104_729) % 1009) as f64 / 1009.0;
            match j {
                0 => u,
                1 if i.is_multiple_of(7) => f64::NAN,
                1 => u * 10.0,
                2 if i.is_multiple_of(5) => 0.0,
                2 => u - 0.5,
                3 => (i % 9) as f64,
                4 if i.is_multiple_of(11) => f64::NAN,
                4 => ((i * 31) % 5) as f64,
                _ => u * u,
            }
        });
        let y = (0..n)
            .map(|i| {
                let r = x.row(i);
                let score = 2.0 * r[0]
                    + if r[1].is_nan() { 1.0 } else { -0.1 * r[1] }
                    + if r[3] == 2.0 || r[3] == 7.0 { 1.5 } else { 0.0 }
                    + r[2] * r[5]
                    + if r[4].is_nan() { 0.5 } else { 0.0 };
                let noise = ((i * 2_654_435_761) % 1000) as f64 / 1000.0;
                i32::from(score + noise > 2.0)
            })
            .collect();
        (x, y)
    }

    fn lightgbm_contributions(model: &GbdtModel, x: &Array2<f64>) -> Array2<f64> {
        let k = x.ncols();
        let booster = lightgbm3::Booster::from_string(&model.model).unwrap();
        let raw = booster.predict_contrib(x.as_slice().unwrap(), k as i32, true).unwrap();
        Array2::from_shape_fn((x.nrows(), k), |(i, j)| raw[i * (k + 1) + j])
    }

    #[test]
    fn the_contributions_are_lightgbms() {
        let (x, y) = rows(6000, 0);
        let (xv, yv) = rows(2000, 6000);
        for (leaves, categorical) in [(31, vec![3, 4]), (63, vec![]), (4, vec![3])] {
            let params = GbdtParams { num_leaves: leaves, num_rounds: 60, min_data_in_leaf: 5, ..Default::default() };
            let model = GbdtModel::fit(&x, &y, &xv, &yv, &categorical, &params, 2).unwrap();
            let decisions: Vec<u8> = model
                .model
                .lines()
                .filter_map(|l| l.strip_prefix("decision_type="))
                .flat_map(|l| l.split_whitespace().map(|v| v.parse::<u8>().unwrap()))
                .collect();
            assert!(decisions.iter().any(|d| d >> 2 & 3 != 0), "splits that route missing values");
            assert_eq!(decisions.iter().any(|d| d & 1 == 1), !categorical.is_empty(), "categorical splits");
            let shap = TreeShap::from_text(&model.model).unwrap();
            let ours = shap.contributions(xv.view());
            let theirs = lightgbm_contributions(&model, &xv);
            let worst = ours.iter().zip(theirs.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-9, "{leaves} leaves: largest difference {worst}");
            assert!(theirs.iter().any(|v| v.abs() > 0.1), "the model explains something");
        }
    }

    /// Our walk of the trees gives LightGBM's `predict` to the bit: binary models with
    /// missing-value routing and categorical splits, a regression, a cross-entropy model
    /// and one of single-leaf trees, on rows with values LightGBM reads as zero.
    #[test]
    fn the_predictions_are_lightgbms_to_the_bit() {
        let (x, y) = rows(6000, 0);
        let (mut xv, yv) = rows(2000, 6000);
        for i in (0..xv.nrows()).step_by(13) {
            xv[[i, 2]] = 1e-40;
            xv[[i, 0]] = -1e-36;
        }
        let share = |x: &Array2<f64>, y: &[i32]| -> Vec<f64> {
            (0..x.nrows()).map(|i| (0.6 * x[[i, 0]] + if y[i] == 1 { 0.3 } else { 0.0 }).clamp(0.0, 1.0)).collect()
        };
        let (s, sv) = (share(&x, &y), share(&xv, &yv));
        let params = |leaves| GbdtParams { num_leaves: leaves, num_rounds: 60, min_data_in_leaf: 5, ..Default::default() };
        let mut models = Vec::new();
        for (leaves, categorical) in [(31, vec![3, 4]), (63, vec![]), (4, vec![3])] {
            models.push(GbdtModel::fit(&x, &y, &xv, &yv, &categorical, &params(leaves), 2).unwrap());
        }
        for objective in [Objective::Regression, Objective::CrossEntropy] {
            let (train, valid) = (Rows { x: &x, y: &s, weights: None }, Rows { x: &xv, y: &sv, weights: None });
            models.push(GbdtModel::fit_rows(objective, &train, &valid, &[3], &params(4), 2).unwrap());
        }
        let constant = vec![0.25; x.nrows()];
        let (train, valid) = (Rows { x: &x, y: &constant, weights: None }, Rows { x: &xv, y: &constant[..2000], weights: None });
        models.push(GbdtModel::fit_rows(Objective::Regression, &train, &valid, &[], &params(4), 2).unwrap());
        assert!(models.last().unwrap().model.contains("num_leaves=1"), "a model of single-leaf trees");
        for model in &models {
            let objective = model.model.lines().find(|l| l.starts_with("objective=")).unwrap();
            let ours = TreeShap::from_text(&model.model).unwrap().predict(xv.view()).expect(objective);
            let booster = lightgbm3::Booster::from_string(&model.model).unwrap();
            let theirs = booster.predict_with_params(xv.as_slice().unwrap(), 6, true, "num_threads=1").unwrap();
            assert_eq!(ours.len(), theirs.len());
            let differ = ours.iter().zip(&theirs).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differ, 0, "{objective}: {differ} of {} rows differ", ours.len());
            assert!(ours.iter().any(|&p| (p - ours[0]).abs() > 1e-3) || model.model.contains("num_leaves=1"));
        }
    }

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
