//! One tree of a LightGBM text model: its nodes as LightGBM decides them, and each leaf's
//! path with its weight table, read once; a row's leaf (prediction) and a block of rows'
//! contributions (TreeSHAP) from them.

use std::collections::HashMap;

use super::weights::{MAX_TABLE_BITS, Polynomials, Slot, explain_untabulated, weight_table};

/// LightGBM's `kZeroThreshold` (a float literal widened to double).
const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

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

pub(super) struct Tree {
    nodes: Vec<Node>,
    /// The internal nodes, each after its parent.
    order: Vec<usize>,
    leaves: Vec<Leaf>,
    slots: Vec<Slot>,
    tables: Vec<f64>,
    cat_boundaries: Vec<usize>,
    cat_threshold: Vec<u32>,
}

#[derive(Default)]
pub(super) struct Scratch {
    /// Per internal node: the slots a row has failed on the way to it.
    failed: Vec<u64>,
    /// Per row of a block, per leaf: the slots the row fails on the leaf's path.
    leaf_failed: Vec<u64>,
    polynomials: Polynomials,
}


fn numbers<T: std::str::FromStr>(fields: &HashMap<&str, &str>, key: &str) -> Result<Vec<T>, String> {
    fields
        .get(key)
        .ok_or_else(|| format!("no {key}"))?
        .split_whitespace()
        .map(|v| v.parse::<T>().map_err(|_| format!("{key}: {v:?} is not a number")))
        .collect()
}

impl Tree {
    pub(super) fn parse(block: &str, features: usize) -> Result<Self, String> {
        let fields: HashMap<&str, &str> = block.lines().filter_map(|l| l.split_once('=')).collect();
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
    pub(super) fn leaf_value(&self, row: &[f64]) -> f64 {
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
    pub(super) fn explain_block(&self, rows: &[f64], phi: &mut [f64], k: usize, scratch: &mut Scratch) {
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
