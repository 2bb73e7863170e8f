//! Choosing who gets which channel: at most one action per user, at most `capacity[c]`
//! users on channel `c`, maximising the summed expected churn reduction.
//!
//! Why not "sort by value and fill": a user whose best channel is full may be worth more
//! on their second channel than the users who would otherwise fill it, and a greedy pass
//! cannot take back an early choice. The problem is a transportation problem (users ×
//! channels), solved exactly by successive shortest augmenting paths of a min-cost flow:
//! each step adds one send along the path of largest gain, which may move already chosen
//! users between channels, and the search stops at the first path that gains nothing
//! (the value of the best k-send plan is concave in k, so that plan is optimal).
//!
//! The flow graph has a node per user, but every augmenting path only enters a user to
//! leave it at once, so paths are searched on the channels alone: the gain of "a new user
//! onto channel c" is the best unassigned value on c, and the gain of "move someone from
//! a to b" is the best `value[b] − value[a]` among users on a. Both are kept in heaps with
//! lazy deletion, so a step costs O(k² log n) for k channels.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Value of one (user, channel) option; ties break towards the lower user index, so the
/// plan does not depend on the heap's internals.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    gain: f64,
    user: usize,
}

impl Eq for Entry {}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.gain.total_cmp(&other.gain).then(other.user.cmp(&self.user))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The optimal plan for `values[u][c]` (None: the user may not get channel c; values at or
/// below zero are never chosen). Returns each user's channel.
pub fn allocate(values: &[Vec<Option<f64>>], capacity: &[u64]) -> Vec<Option<usize>> {
    let k = capacity.len();
    let value = |u: usize, c: usize| values[u].get(c).copied().flatten().filter(|v| *v > 0.0);
    let mut assigned: Vec<Option<usize>> = vec![None; values.len()];
    let mut load = vec![0u64; k];
    let mut free: Vec<BinaryHeap<Entry>> = vec![BinaryHeap::new(); k];
    let mut moves: Vec<Vec<BinaryHeap<Entry>>> = vec![vec![BinaryHeap::new(); k]; k];
    for u in 0..values.len() {
        for (c, heap) in free.iter_mut().enumerate() {
            if let Some(v) = value(u, c) {
                heap.push(Entry { gain: v, user: u });
            }
        }
    }
    // Every simple path over the channels, as a list of channels: enter at the first,
    // leave (to the sink) at the last.
    let paths = simple_paths(k);
    loop {
        // Clean the heap tops of entries that no longer describe the state.
        for (c, heap) in free.iter_mut().enumerate() {
            while heap.peek().is_some_and(|e| assigned[e.user].is_some() || value(e.user, c).is_none()) {
                heap.pop();
            }
        }
        for (a, row) in moves.iter_mut().enumerate() {
            for heap in row.iter_mut() {
                while heap.peek().is_some_and(|e| assigned[e.user] != Some(a)) {
                    heap.pop();
                }
            }
        }
        let mut best: Option<(f64, &Vec<usize>)> = None;
        for path in &paths {
            let last = *path.last().expect("paths are not empty");
            if load[last] >= capacity[last] {
                continue;
            }
            let Some(enter) = free[path[0]].peek() else { continue };
            let mut gain = enter.gain;
            let mut ok = true;
            for w in path.windows(2) {
                match moves[w[0]][w[1]].peek() {
                    Some(e) => gain += e.gain,
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok && gain > 1e-15 && best.is_none_or(|(g, _)| gain > g) {
                best = Some((gain, path));
            }
        }
        let Some((_, path)) = best else { break };
        // Apply the moves from the end of the path backwards (each moved user frees a
        // slot on the channel before it), then the new user.
        let mut moved = Vec::with_capacity(path.len());
        for w in path.windows(2) {
            let e = moves[w[0]][w[1]].pop().expect("checked above");
            moved.push((e.user, w[1]));
        }
        let new = free[path[0]].pop().expect("checked above").user;
        let mut place = |u: usize, c: usize, assigned: &mut Vec<Option<usize>>| {
            assigned[u] = Some(c);
            let vc = value(u, c).expect("assigned only where allowed");
            for (b, heap) in moves[c].iter_mut().enumerate() {
                if b != c
                    && let Some(vb) = value(u, b)
                {
                    heap.push(Entry { gain: vb - vc, user: u });
                }
            }
        };
        for (u, c) in moved {
            place(u, c, &mut assigned);
        }
        place(new, path[0], &mut assigned);
        load[*path.last().expect("not empty")] += 1;
    }
    assigned
}

fn simple_paths(k: usize) -> Vec<Vec<usize>> {
    fn extend(path: &mut Vec<usize>, k: usize, out: &mut Vec<Vec<usize>>) {
        out.push(path.clone());
        for c in 0..k {
            if !path.contains(&c) {
                path.push(c);
                extend(path, k, out);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    for c in 0..k {
        extend(&mut vec![c], k, &mut out);
    }
    out
}

/// The value of a plan.
pub fn plan_value(values: &[Vec<Option<f64>>], plan: &[Option<usize>]) -> f64 {
    plan.iter().enumerate().filter_map(|(u, c)| c.and_then(|c| values[u][c])).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every plan, tried: the best feasible total.
    fn brute_force(values: &[Vec<Option<f64>>], capacity: &[u64]) -> f64 {
        fn go(u: usize, values: &[Vec<Option<f64>>], load: &mut [u64], capacity: &[u64]) -> f64 {
            if u == values.len() {
                return 0.0;
            }
            let mut best = go(u + 1, values, load, capacity);
            for c in 0..capacity.len() {
                if let Some(v) = values[u][c].filter(|v| *v > 0.0)
                    && load[c] < capacity[c]
                {
                    load[c] += 1;
                    best = best.max(v + go(u + 1, values, load, capacity));
                    load[c] -= 1;
                }
            }
            best
        }
        go(0, values, &mut vec![0; capacity.len()], capacity)
    }

    fn instance() -> impl Strategy<Value = (Vec<Vec<Option<f64>>>, Vec<u64>)> {
        let option = prop_oneof![1 => Just(None), 4 => (-0.2f64..1.0).prop_map(Some)];
        (prop::collection::vec(prop::collection::vec(option, 3), 0..8), prop::collection::vec(0u64..4, 3))
    }

    proptest! {
        #[test]
        fn the_plan_is_optimal_and_feasible((values, capacity) in instance()) {
            let plan = allocate(&values, &capacity);
            for (c, cap) in capacity.iter().enumerate() {
                prop_assert!(plan.iter().filter(|p| **p == Some(c)).count() as u64 <= *cap);
            }
            for (u, p) in plan.iter().enumerate() {
                if let Some(c) = p {
                    prop_assert!(values[u][*c].is_some_and(|v| v > 0.0), "only allowed, positive options");
                }
            }
            let best = brute_force(&values, &capacity);
            prop_assert!((plan_value(&values, &plan) - best).abs() < 1e-9, "{} vs {best}", plan_value(&values, &plan));
        }
    }

    #[test]
    fn greedy_is_beaten_where_a_best_channel_is_contested() {
        // Greedy gives user 0 push (0.9) and leaves user 1 nothing; optimal sends user 0
        // email (0.8) and user 1 push (0.85).
        let values = vec![vec![Some(0.9), Some(0.8)], vec![Some(0.85), None]];
        let plan = allocate(&values, &[1, 1]);
        assert_eq!(plan, vec![Some(1), Some(0)]);
    }
}
