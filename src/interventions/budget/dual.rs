//! The merge's prices: the budget prices alone by exact steps over sets of channels, and,
//! under caps, the budget and cap prices together by Kelley's cutting plane on the
//! merge's dual (the module docs of `budget` say why together).

use super::summary::Cell;

/// Rounds of price updates at most (they settle in a handful).
const MAX_ROUNDS: usize = 200;
/// Cutting-plane steps at most when caps are priced with the budgets.
const MAX_CUTS: usize = 400;

/// The budget prices of `cells` alone (no caps): exact steps over every set of channels
/// until none moves, and the rounds it took.
pub(super) fn budget_prices(cells: &[Cell], budgets: &[u64]) -> (Vec<f64>, usize) {
    let k = budgets.len();
    let mut prices = vec![0.0; k];
    let mut rounds = 0;
    // Every set of channels, the single ones first: users with equal values on several
    // channels want one of them and do not mind which, so those channels' prices must
    // move together (one at a time, none would move).
    let mut sets: Vec<usize> = (1..1usize << k).collect();
    sets.sort_by_key(|m| m.count_ones());
    while rounds < MAX_ROUNDS {
        rounds += 1;
        let mut moved = false;
        for &set in &sets {
            let shift = filling_shift(cells, &prices, set, budgets);
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
    (prices, rounds)
}

/// The merge's dual at budget prices `lambda` and unsubscribe prices `mu`,
/// Φ = Σ cells users × max(0, maxᶜ value − μ × unsubscribes − λ) + Σ budget × λ + Σ cap × μ,
/// and a subgradient (d/dλ, d/dμ): each cell's users counted on one channel of largest
/// surplus.
fn merge_dual(cells: &[Cell], budgets: &[u64], cap: &[f64], lambda: &[f64], mu: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
    let k = budgets.len();
    let mut value: f64 = (0..k).map(|c| budgets[c] as f64 * lambda[c] + cap[c] * mu[c]).sum();
    let mut d_lambda: Vec<f64> = budgets.iter().map(|&b| b as f64).collect();
    let mut d_mu = cap.to_vec();
    for cell in cells {
        let mut best: Option<(usize, f64)> = None;
        for c in 0..k {
            if cell.values[c] > 0.0 {
                let surplus = cell.values[c] - mu[c] * cell.unsubscribes[c] - lambda[c];
                if surplus > 0.0 && best.is_none_or(|(_, b)| surplus > b) {
                    best = Some((c, surplus));
                }
            }
        }
        if let Some((c, surplus)) = best {
            let n = cell.users as f64;
            value += n * surplus;
            d_lambda[c] -= n;
            d_mu[c] -= n * cell.unsubscribes[c];
        }
    }
    (value, d_lambda, d_mu)
}

/// The budget and unsubscribe prices together that minimise the merge's dual
/// ([`merge_dual`], the Lagrangian of the assignment LP over the cells), by Kelley's
/// cutting plane from the budget prices alone: each cut is exact where it is taken and
/// below the dual elsewhere, the small LP over the cuts gives the next prices and a
/// lower bound, and the steps stop when the bound meets the best dual found. Joint steps
/// matter: a cap's price and its channel's budget price trade off along a ridge (a
/// cheaper send that costs more per unsubscribe keeps the same users), where steps one
/// price at a time creep. Returns the prices and the cuts taken.
pub(super) fn joint_prices(
    cells: &[Cell],
    budgets: &[u64],
    caps: &[Option<f64>],
    capped: &[usize],
    start: Vec<f64>,
) -> (Vec<f64>, Vec<f64>, usize) {
    use microlp::{ComparisonOp, OptimizationDirection, Problem, SolveOutcome};
    let k = budgets.len();
    let cap: Vec<f64> = (0..k).map(|c| caps.get(c).copied().flatten().unwrap_or(0.0)).collect();
    // The box: above a channel's largest value nobody wants it; above the largest value
    // per unsubscribe no send that risks one is worth it.
    let top_lambda: Vec<f64> = (0..k).map(|c| cells.iter().map(|x| x.values[c]).fold(0.0, f64::max) + 1e-12).collect();
    let top_mu: Vec<f64> = (0..k)
        .map(|c| {
            cells
                .iter()
                .filter(|x| x.unsubscribes[c] > 0.0)
                .map(|x| x.values[c] / x.unsubscribes[c])
                .fold(0.0, f64::max)
                * 2.0
                + 1e-12
        })
        .collect();
    // Every point met: (λ, μ), Φ there and its subgradient (dΦ/dλ, dΦ/dμ).
    struct Point {
        at: (Vec<f64>, Vec<f64>),
        value: f64,
        slope: (Vec<f64>, Vec<f64>),
    }
    let mut points: Vec<Point> = Vec::new();
    let mut at = (start.iter().zip(&top_lambda).map(|(p, t)| p.min(*t)).collect::<Vec<f64>>(), vec![0.0; k]);
    for _ in 0..MAX_CUTS {
        let (value, d_lambda, d_mu) = merge_dual(cells, budgets, &cap, &at.0, &at.1);
        points.push(Point { at: at.clone(), value, slope: (d_lambda, d_mu) });
        let best = points.iter().map(|p| p.value).fold(f64::INFINITY, f64::min);
        let mut lp = Problem::new(OptimizationDirection::Minimize);
        let t = lp.add_var(1.0, (f64::NEG_INFINITY, f64::INFINITY));
        let lambda: Vec<_> = (0..k).map(|c| lp.add_var(0.0, (0.0, top_lambda[c]))).collect();
        let mu: Vec<_> =
            (0..k).map(|c| lp.add_var(0.0, (0.0, if capped.contains(&c) { top_mu[c] } else { 0.0 }))).collect();
        for Point { at: (l, m), value, slope: (dl, dm) } in &points {
            // t ≥ Φ(p) + g · (x − p)
            let mut row = vec![(t, 1.0)];
            row.extend((0..k).map(|c| (lambda[c], -dl[c])));
            row.extend((0..k).map(|c| (mu[c], -dm[c])));
            let rhs = value - (0..k).map(|c| dl[c] * l[c] + dm[c] * m[c]).sum::<f64>();
            lp.add_constraint(&row, ComparisonOp::Ge, rhs);
        }
        let Ok(SolveOutcome::Solution(s)) = lp.solve() else { break };
        if best - s.objective() <= 1e-9 * (1.0 + best.abs()) {
            break;
        }
        at = (
            (0..k).map(|c| s[lambda[c]].clamp(0.0, top_lambda[c])).collect(),
            (0..k).map(|c| if capped.contains(&c) { s[mu[c]].clamp(0.0, top_mu[c]) } else { 0.0 }).collect(),
        );
    }
    let cuts = points.len();
    let best = points.into_iter().min_by(|a, b| a.value.total_cmp(&b.value)).expect("one point at least");
    (best.at.0, best.at.1, cuts)
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
