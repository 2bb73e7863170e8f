//! Tonight's plan under every constraint, each enforced through a price.
//!
//! The plan is an assignment LP: at most one arm per user, at most a budget of sends per
//! channel, and optionally at most a cap of expected unsubscribes per channel
//! (`[interventions.unsubscribe_cap]`). Budgets are counts of users and the allocator
//! ([`allocate`](super::allocate)) meets them exactly by min-cost flow, whose optimum is
//! a vertex of the LP (the constraint matrix is totally unimodular). A cap weighs users
//! unequally, so it is moved into the objective: each unsubscribe on a capped channel
//! costs its dual price μ (the Lagrangian), and the allocator plans with the priced
//! values. The dual, the largest priced value plus μ × cap, is convex and piecewise
//! linear in μ, and each plan the allocator returns is one of its pieces, exactly: the
//! prices that minimise it are found by Kelley's cutting plane (a small LP over at most
//! three prices, each step one exact plan), and at them the dual equals the LP's optimum
//! (strong duality). Whole sends cannot always meet that optimum (the LP sends fractions
//! of the users a cap cuts through), so each plan met on the way is brought within the
//! caps by dropping its sends of least value per unsubscribe on a broken channel, and
//! the best of them is tonight's. Its shortfall from the LP's optimum, the `bound` in the
//! manifest, is what the caps' integrality costs.
//!
//! Why not bisection channel by channel: with two capped channels a user can move back
//! and forth between them as their prices creep up, and coordinate steps stall at a corner
//! of the dual that is not its minimum (found by the brute-force test).
//!
//! The budgets' own prices (what a send on a full channel must be worth) are read off the
//! final plan ([`budget_prices`]); both kinds go to the manifest. The sharded night
//! finds the budget and cap prices from the shards' summaries (`budget/`), and
//! each shard plans here under its quotas of both.
//!
//! [`frontier`] is the trade-off behind a reach price: the plans of largest value minus
//! λ × unsubscribes for λ from 0 up to where no send that risks an unsubscribe is worth it.

use serde::Serialize;

use super::policy::{Arm, Best, Choice, plan_best, values};
use super::value::{self, Effects, Worth};

/// Cutting-plane steps at most (a few dozen suffice for three prices).
const MAX_CUTS: usize = 100;
/// How many prices the frontier is drawn at, besides 0.
const FRONTIER_POINTS: usize = 16;

/// Tonight's plan and the prices that made it.
pub(crate) struct Priced {
    /// Per user, the chosen arm.
    pub actions: Vec<Option<Choice>>,
    pub account: Account,
}

/// What the plan is worth, what it costs in unsubscribes, and its prices (manifest
/// `details.interventions.plan`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub(crate) struct Account {
    /// Total value (units of `[interventions.value]`; churn prevented when all weights are zero).
    pub value: f64,
    /// Churn probability removed, summed.
    pub churn_prevented: f64,
    /// Expected unsubscribes per channel.
    pub unsubscribes: [f64; 3],
    /// The budget constraints' dual prices: what a send on each channel must be worth.
    pub budget_prices: [f64; 3],
    /// The unsubscribe caps' dual prices (0: uncapped, or the cap does not bind).
    pub unsubscribe_prices: [f64; 3],
    /// The LP's optimum (the Lagrangian dual at those prices): no plan within the budgets
    /// and caps, not even one sending fractions of messages, is worth more. Where a cap
    /// binds, whole sends fall short of it by about the users the cap cuts through.
    pub bound: f64,
}

/// The plan of largest value under `budgets` and the unsubscribe `caps` (see the module docs).
pub(crate) fn plan(effects: &Effects, worth: &Worth, arms: &[Arm], budgets: &[u64], caps: &[Option<f64>; 3]) -> Priced {
    let solve = |mu: [f64; 3]| {
        let best = value::best(effects, worth, arms, &mu);
        let actions = plan_best(&best, budgets);
        Lagrangian::of(best, actions, arms, mu)
    };
    let fits = |e: &Lagrangian| (0..3).all(|c| caps[c].is_none_or(|cap| e.unsubscribes[c] <= cap));
    let free = solve([0.0; 3]);
    if fits(&free) {
        let bound = free.value;
        return free.priced(arms, budgets, [0.0; 3], bound);
    }
    // The dual's box: at `top` no capped channel carries a send that risks an unsubscribe,
    // so its plan keeps every cap.
    let capped: Vec<usize> = (0..3).filter(|&c| caps[c].is_some()).collect();
    let top: [f64; 3] = std::array::from_fn(|c| {
        if caps[c].is_some() { highest_price(effects, worth, arms, Some(c)) * 2.0 + 1e-12 } else { 0.0 }
    });
    let cap = caps.map(|c| c.unwrap_or(0.0));
    // The dual's optimum mixes plans that are optimal at its prices; the integral plans
    // met on the way may all break a cap, or keep them only far from the optimum (at
    // `top`, say). Each is made to keep the caps by dropping, on a broken channel, the
    // sends of least value per expected unsubscribe; the best of them is tonight's. Only
    // that one is kept whole: the others leave their line of the dual (a few numbers).
    let mut cuts: Vec<Cut> = Vec::new();
    let mut chosen: Option<Lagrangian> = None;
    let mut meet = |e: Lagrangian, cuts: &mut Vec<Cut>| {
        let cut = Cut { mu: e.mu, value: e.value, unsubscribes: e.unsubscribes };
        cuts.push(cut);
        let kept = e.kept_within(&cap, caps, arms);
        if chosen.as_ref().is_none_or(|c| kept.value > c.value) {
            chosen = Some(kept);
        }
        cut.dual(&cap)
    };
    meet(free, &mut cuts);
    meet(solve(top), &mut cuts);
    for _ in 0..MAX_CUTS {
        let Some((mu, lower)) = master(&cuts, &capped, &cap, &top) else { break };
        let dual = meet(solve(mu), &mut cuts);
        if dual - lower <= 1e-9 * (1.0 + dual.abs()) {
            break;
        }
    }
    let (prices, bound) =
        cuts.iter().map(|c| (c.mu, c.dual(&cap))).min_by(|a, b| a.1.total_cmp(&b.1)).expect("at least two plans");
    chosen.expect("at least two plans").priced(arms, budgets, prices, bound)
}

/// A plan's line of the dual: its prices, value and unsubscribes.
#[derive(Clone, Copy)]
struct Cut {
    mu: [f64; 3],
    value: f64,
    unsubscribes: [f64; 3],
}

impl Cut {
    /// The Lagrangian dual at `mu`: an upper bound on every plan's value within the caps.
    fn dual(&self, cap: &[f64; 3]) -> f64 {
        self.value - (0..3).map(|c| self.mu[c] * (self.unsubscribes[c] - cap[c])).sum::<f64>()
    }
}

/// The plan of largest value at unsubscribe prices `mu` (the Lagrangian's inner problem),
/// with what the dual needs of it.
struct Lagrangian {
    mu: [f64; 3],
    best: Vec<Best>,
    actions: Vec<Option<Choice>>,
    /// The plan's value without the prices.
    value: f64,
    unsubscribes: [f64; 3],
}

impl Lagrangian {
    fn of(best: Vec<Best>, actions: Vec<Option<Choice>>, arms: &[Arm], mu: [f64; 3]) -> Self {
        let unsubscribes = unsubscribes(arms, &actions);
        // The priced values include μ × unsubscribes; the value is without them.
        let value = actions.iter().flatten().map(|x| x.value).sum::<f64>()
            + (0..3).map(|c| mu[c] * unsubscribes[c]).sum::<f64>();
        Lagrangian { mu, best, actions, value, unsubscribes }
    }

    /// This plan with, on every channel whose cap it breaks, the sends of least value per
    /// expected unsubscribe dropped until the cap holds.
    fn kept_within(mut self, cap: &[f64; 3], caps: &[Option<f64>; 3], arms: &[Arm]) -> Self {
        for c in (0..3).filter(|&c| caps[c].is_some()) {
            if self.unsubscribes[c] <= cap[c] {
                continue;
            }
            let mut risky: Vec<usize> = (0..self.actions.len())
                .filter(|&u| {
                    self.actions[u].is_some_and(|x| arms[x.arm].channel_index() == Some(c) && x.unsubscribe > 0.0)
                })
                .collect();
            let worth = |u: usize| {
                let x = self.actions[u].expect("chosen");
                (x.value + self.mu[c] * x.unsubscribe) / x.unsubscribe
            };
            risky.sort_by(|&a, &b| worth(a).total_cmp(&worth(b)).then(a.cmp(&b)));
            for u in risky {
                if self.unsubscribes[c] <= cap[c] {
                    break;
                }
                let x = self.actions[u].take().expect("chosen");
                self.unsubscribes[c] -= x.unsubscribe;
                self.value -= x.value + self.mu[c] * x.unsubscribe;
            }
            // Rounding must not leave a cap broken by a hair.
            self.unsubscribes[c] = self.unsubscribes[c].max(0.0);
        }
        self
    }

    /// The plan with its account: `prices` are the caps' dual prices and `bound` the
    /// dual's value there.
    fn priced(self, arms: &[Arm], budgets: &[u64], prices: [f64; 3], bound: f64) -> Priced {
        let chosen_channel: Vec<Option<usize>> =
            self.actions.iter().map(|a| a.and_then(|x| arms[x.arm].channel_index())).collect();
        let account = Account {
            value: self.value,
            churn_prevented: self.actions.iter().flatten().map(|x| x.churn).sum(),
            unsubscribes: self.unsubscribes,
            budget_prices: budget_prices(&values(&self.best), budgets, &chosen_channel),
            unsubscribe_prices: prices,
            bound,
        };
        Priced { actions: self.actions, account }
    }
}

/// Kelley's cutting plane over the caps' prices: the prices in the box [0, `top`] that
/// minimise the largest of the plans' lines `value − Σ μ (unsubscribes − cap)` met so
/// far (each line is exact where its plan is optimal, and below the dual elsewhere), and
/// that minimum, a lower bound on the dual. None if the small LP fails.
fn master(cuts: &[Cut], capped: &[usize], cap: &[f64; 3], top: &[f64; 3]) -> Option<([f64; 3], f64)> {
    use microlp::{ComparisonOp, OptimizationDirection, Problem, SolveOutcome};
    let mut lp = Problem::new(OptimizationDirection::Minimize);
    let t = lp.add_var(1.0, (f64::NEG_INFINITY, f64::INFINITY));
    let mu: Vec<_> = capped.iter().map(|&c| lp.add_var(0.0, (0.0, top[c]))).collect();
    for cut in cuts {
        let mut row = vec![(t, 1.0)];
        row.extend(capped.iter().zip(&mu).map(|(&c, &v)| (v, cut.unsubscribes[c] - cap[c])));
        lp.add_constraint(&row, ComparisonOp::Ge, cut.value);
    }
    match lp.solve() {
        Ok(SolveOutcome::Solution(s)) => {
            let mut out = [0.0; 3];
            for (&c, &v) in capped.iter().zip(&mu) {
                out[c] = s[v].clamp(0.0, top[c]);
            }
            Some((out, s.objective()))
        }
        other => {
            tracing::warn!(
                cuts = cuts.len(),
                ?top,
                "the caps' prices stop where they are: their LP failed ({other:?})"
            );
            None
        }
    }
}

/// The unsubscribe price above which no arm (of `channel`, or of any) that risks an
/// unsubscribe has a positive value.
fn highest_price(effects: &Effects, worth: &Worth, arms: &[Arm], channel: Option<usize>) -> f64 {
    let mut hi = 0.0f64;
    for (a, arm) in arms.iter().enumerate() {
        let Some(ch) = arm.channel_index() else { continue };
        if channel.is_some_and(|c| c != ch) {
            continue;
        }
        for u in 0..effects.users {
            if let Some(x) = value::choice(effects, worth, arms, &[0.0; 3], a, u)
                && x.unsubscribe > 0.0
                && x.value > 0.0
            {
                hi = hi.max(x.value / x.unsubscribe);
            }
        }
    }
    hi
}

/// Expected unsubscribes of a plan, per channel.
fn unsubscribes(arms: &[Arm], actions: &[Option<Choice>]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for x in actions.iter().flatten() {
        if let Some(ch) = arms[x.arm].channel_index() {
            out[ch] += x.unsubscribe;
        }
    }
    out
}

/// The smallest dual prices of the budgets for an optimal `plan` of `values` (as
/// [`allocate`](super::allocate::allocate) takes them): a channel with room costs
/// nothing; a full channel costs at least what any user left out would gain from it, and
/// at least what a user on another channel would gain by moving to it. The prices are
/// the least solution of those difference constraints (Bellman–Ford over the channels).
pub(crate) fn budget_prices(values: &[Vec<Option<f64>>], capacity: &[u64], plan: &[Option<usize>]) -> [f64; 3] {
    let k = capacity.len().min(3);
    let mut load = [0u64; 3];
    for c in plan.iter().flatten() {
        load[*c] += 1;
    }
    let full: Vec<bool> = (0..k).map(|c| load[c] >= capacity[c]).collect();
    let value = |u: usize, c: usize| values[u].get(c).copied().flatten().filter(|v| *v > 0.0);
    // The largest gain into c of a user left out, and of a user on c' moving to c.
    let mut enter = [0.0f64; 3];
    let mut moving = [[f64::NEG_INFINITY; 3]; 3];
    for (u, p) in plan.iter().enumerate() {
        for c in 0..k {
            let Some(v) = value(u, c) else { continue };
            match p {
                None => enter[c] = enter[c].max(v),
                Some(from) if *from != c => {
                    let here = value(u, *from).unwrap_or(0.0);
                    moving[*from][c] = moving[*from][c].max(v - here);
                }
                Some(_) => {}
            }
        }
    }
    let mut prices = [0.0f64; 3];
    for _ in 0..=k {
        for c in (0..k).filter(|&c| full[c]) {
            let mut p = prices[c].max(enter[c]);
            for from in 0..k {
                if from != c && moving[from][c].is_finite() {
                    p = p.max(prices[from] + moving[from][c]);
                }
            }
            prices[c] = p;
        }
    }
    prices
}

/// One plan on the frontier: the plan of largest value − λ × expected unsubscribes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct FrontierPoint {
    /// λ: the price of one unsubscribe on every channel, on top of the configured reach.
    pub unsubscribe_price: f64,
    pub value: f64,
    pub churn_prevented: f64,
    /// Expected unsubscribes, all channels.
    pub unsubscribes: f64,
}

/// The value–unsubscribes frontier under the budgets (caps aside): plans at λ = 0 and
/// [`FRONTIER_POINTS`] prices spaced geometrically up to where no send that risks an
/// unsubscribe is worth it.
pub(crate) fn frontier(effects: &Effects, worth: &Worth, arms: &[Arm], budgets: &[u64]) -> Vec<FrontierPoint> {
    // Just above the highest price, so that the last plan has no send that risks one.
    let top = highest_price(effects, worth, arms, None) * (1.0 + 1e-9);
    let mut prices = vec![0.0];
    if top > 0.0 {
        // Six decades: where the predicted churn effects of two channels nearly tie, the
        // smallest price already moves a send to the channel that risks no unsubscribe.
        let low = top * 1e-6;
        let ratio = (top / low).powf(1.0 / (FRONTIER_POINTS - 1) as f64);
        prices.extend((0..FRONTIER_POINTS).map(|i| low * ratio.powi(i as i32)));
    }
    prices
        .into_iter()
        .map(|lambda| {
            let actions = plan_best(&value::best(effects, worth, arms, &[lambda; 3]), budgets);
            let unsubscribes: f64 = unsubscribes(arms, &actions).iter().sum();
            FrontierPoint {
                unsubscribe_price: lambda,
                value: actions.iter().flatten().map(|x| x.value).sum::<f64>() + lambda * unsubscribes,
                churn_prevented: actions.iter().flatten().map(|x| x.churn).sum(),
                unsubscribes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::allocate::allocate;
    use super::*;
    use proptest::prelude::*;

    fn arms() -> Vec<Arm> {
        let mut out = Vec::new();
        for t in ["content_nudge", "winback_offer"] {
            for c in ["push", "email", "in_app"] {
                out.push(Arm { message_type: t.into(), channel: c.into() });
            }
        }
        out
    }

    /// A small random instance: 6 arms (2 types × 3 channels), up to `n` users.
    fn instance(n: usize) -> impl Strategy<Value = (Effects, Vec<u64>, [Option<f64>; 3])> {
        let user = prop::collection::vec((-0.02f64..0.1, 0.0f32..0.3, prop::bool::weighted(0.8)), 6);
        (
            prop::collection::vec(user, 1..=n),
            prop::collection::vec(0u64..4, 3),
            prop::collection::vec(prop::option::weighted(0.7, 0.0f64..0.6), 3),
        )
            .prop_map(|(users, budgets, caps)| {
                let mut e = Effects {
                    users: users.len(),
                    churn: vec![vec![]; 6],
                    unsubscribe: vec![vec![]; 6],
                    engagement: None,
                    eligible: vec![vec![]; 6],
                };
                for row in &users {
                    for (a, (churn, unsub, ok)) in row.iter().enumerate() {
                        e.churn[a].push(*churn);
                        // In-app sends never cost a channel.
                        e.unsubscribe[a].push(if a % 3 == 2 { 0.0 } else { *unsub });
                        e.eligible[a].push(*ok);
                    }
                }
                (e, budgets, [caps[0], caps[1], caps[2]])
            })
    }

    fn zero_worth(users: usize) -> Worth {
        Worth { churn: vec![1.0; users], active_day: 0.0, send_cost: [0.0; 3], reach: [0.0; 3] }
    }

    /// Every integral plan (one arm or none per user), tried: the best value among those
    /// within the budgets and with at most `limit[c]` expected unsubscribes on channel c.
    fn brute_force(e: &Effects, arms: &[Arm], budgets: &[u64], limit: &[f64; 3]) -> f64 {
        fn go(
            u: usize,
            e: &Effects,
            arms: &[Arm],
            load: &mut [u64; 3],
            uns: &mut [f64; 3],
            budgets: &[u64],
            limit: &[f64; 3],
        ) -> f64 {
            if u == e.users {
                return if (0..3).all(|c| uns[c] <= limit[c] + 1e-9) { 0.0 } else { f64::NEG_INFINITY };
            }
            let mut best = go(u + 1, e, arms, load, uns, budgets, limit);
            for (a, arm) in arms.iter().enumerate() {
                let c = arm.channel_index().unwrap();
                if e.eligible[a][u] && e.churn[a][u] > 0.0 && load[c] < budgets[c] {
                    load[c] += 1;
                    uns[c] += f64::from(e.unsubscribe[a][u]);
                    best = best.max(e.churn[a][u] + go(u + 1, e, arms, load, uns, budgets, limit));
                    uns[c] -= f64::from(e.unsubscribe[a][u]);
                    load[c] -= 1;
                }
            }
            best
        }
        go(0, e, arms, &mut [0; 3], &mut [0.0; 3], budgets, limit)
    }

    /// The LP's optimum, solved by a simplex solver: the fractional plan of largest value
    /// within the budgets and caps.
    fn lp_optimum(e: &Effects, arms: &[Arm], budgets: &[u64], caps: &[Option<f64>; 3]) -> f64 {
        use microlp::{ComparisonOp, OptimizationDirection, Problem};
        let mut p = Problem::new(OptimizationDirection::Maximize);
        let mut vars = Vec::new();
        for u in 0..e.users {
            for (a, _) in arms.iter().enumerate() {
                if e.eligible[a][u] && e.churn[a][u] > 0.0 {
                    vars.push((u, a, p.add_var(e.churn[a][u], (0.0, 1.0))));
                }
            }
        }
        for u in 0..e.users {
            let row: Vec<_> = vars.iter().filter(|v| v.0 == u).map(|v| (v.2, 1.0)).collect();
            if !row.is_empty() {
                p.add_constraint(&row, ComparisonOp::Le, 1.0);
            }
        }
        for c in 0..3 {
            let on_c: Vec<_> = vars.iter().filter(|v| arms[v.1].channel_index() == Some(c)).collect();
            if on_c.is_empty() {
                continue;
            }
            p.add_constraint(on_c.iter().map(|v| (v.2, 1.0)).collect::<Vec<_>>(), ComparisonOp::Le, budgets[c] as f64);
            if let Some(cap) = caps[c] {
                let row: Vec<_> = on_c.iter().map(|v| (v.2, f64::from(e.unsubscribe[v.1][v.0]))).collect();
                p.add_constraint(&row, ComparisonOp::Le, cap);
            }
        }
        match p.solve().expect("a bounded, feasible LP (x = 0 is feasible)") {
            microlp::SolveOutcome::Solution(s) => s.objective(),
            other => panic!("the LP was not solved: {other:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// The priced plan keeps every budget and cap; its prices are the LP's optimal
        /// duals (the dual there equals the LP's optimum, solved independently by simplex);
        /// without a binding cap it is the LP's optimum, and with one it falls short of the
        /// LP by at most two users' values per binding cap (the LP sends fractions of the
        /// users a cap cuts through). Checked against every integral plan (brute force).
        #[test]
        fn the_priced_plan_is_optimal_for_the_lp_and_keeps_every_cap((e, budgets, caps) in instance(6)) {
            let arms = arms();
            let worth = zero_worth(e.users);
            let priced = plan(&e, &worth, &arms, &budgets, &caps);
            let mut load = [0u64; 3];
            for x in priced.actions.iter().flatten() {
                load[arms[x.arm].channel_index().unwrap()] += 1;
            }
            for c in 0..3 {
                prop_assert!(load[c] <= budgets[c], "budget of channel {c}");
                if let Some(cap) = caps[c] {
                    prop_assert!(priced.account.unsubscribes[c] <= cap + 1e-9, "cap of channel {c}: {:?} > {cap}", priced.account.unsubscribes);
                }
            }
            let value = priced.account.value;
            let by_hand: f64 =
                priced.actions.iter().enumerate().filter_map(|(u, x)| x.map(|x| e.churn[x.arm][u])).sum();
            prop_assert!((value - by_hand).abs() < 1e-9, "the account's value is the plan's: {value} vs {by_hand}");
            // Within the caps: no integral plan is better than the best one, the LP relaxes
            // them all.
            let limit = caps.map(|c| c.unwrap_or(f64::INFINITY));
            let integral = brute_force(&e, &arms, &budgets, &limit);
            let lp = lp_optimum(&e, &arms, &budgets, &caps);
            prop_assert!(lp >= integral - 1e-7, "the LP relaxes the integral plans: {lp} vs {integral}");
            prop_assert!(value <= lp + 1e-7, "no plan within the caps beats the LP: {value} vs {lp}");
            let largest = e.churn.iter().flatten().fold(0.0f64, |m, v| m.max(*v));
            // The caps that bind: those the plan without caps breaks.
            let free = plan(&e, &worth, &arms, &budgets, &[None; 3]).account.unsubscribes;
            let binding = (0..3).filter(|&c| caps[c].is_some_and(|cap| free[c] > cap)).count();
            prop_assert!(value <= integral + 1e-9, "a plan within the caps: {value} vs the best {integral}");
            prop_assert!(
                (priced.account.bound - lp).abs() < 1e-6,
                "the prices are the LP's duals: the dual there is the LP's optimum, {} vs {lp}",
                priced.account.bound
            );
            prop_assert!(
                value >= lp - 2.0 * binding as f64 * largest - 1e-7,
                "{value} vs the LP's {lp} ({binding} binding caps), the best plan {integral}, prices {:?} use {:?} \
                 caps {caps:?} budgets {budgets:?}",
                priced.account.unsubscribe_prices,
                priced.account.unsubscribes
            );
            if binding == 0 {
                prop_assert!((value - lp).abs() < 1e-7, "without a binding cap the plan is the LP's optimum: {value} vs {lp}");
            }
        }

        /// The budget prices are the budgets' duals: with them, the LP's dual objective
        /// equals the plan's value (strong duality), and every user's choice is their best
        /// at those prices.
        #[test]
        fn the_budget_prices_certify_the_plan((values, capacity) in (
            prop::collection::vec(prop::collection::vec(prop_oneof![1 => Just(None), 4 => (-0.2f64..1.0).prop_map(Some)], 3), 0..10),
            prop::collection::vec(0u64..4, 3),
        )) {
            let plan = allocate(&values, &capacity);
            let prices = budget_prices(&values, &capacity, &plan);
            let value = |u: usize, c: usize| values[u][c].filter(|v| *v > 0.0);
            let primal: f64 = plan.iter().enumerate().filter_map(|(u, c)| c.and_then(|c| value(u, c))).sum();
            let dual: f64 = (0..values.len())
                .map(|u| (0..3).filter_map(|c| value(u, c).map(|v| v - prices[c])).fold(0.0f64, f64::max))
                .sum::<f64>()
                + (0..3).map(|c| capacity[c] as f64 * prices[c]).sum::<f64>();
            prop_assert!((primal - dual).abs() < 1e-9, "primal {primal} vs dual {dual} at {prices:?}");
        }
    }

    /// The frontier trades value for unsubscribes: as the price rises, both fall, and at
    /// the top no send risks an unsubscribe.
    #[test]
    fn the_frontier_falls_in_value_and_unsubscribes_as_reach_is_priced() {
        let arms = arms();
        let n = 200;
        let mut e = Effects {
            users: n,
            churn: vec![vec![]; 6],
            unsubscribe: vec![vec![]; 6],
            engagement: None,
            eligible: vec![vec![]; 6],
        };
        for u in 0..n {
            for a in 0..6 {
                let h = xxhash_rust::xxh3::xxh3_64(&((u * 6 + a) as u64).to_le_bytes());
                e.churn[a].push((h % 1000) as f64 / 10_000.0);
                e.unsubscribe[a].push(if a % 3 == 2 { 0.0 } else { ((h >> 20) % 100) as f32 / 500.0 });
                e.eligible[a].push(true);
            }
        }
        let points = frontier(&e, &zero_worth(n), &arms, &[40, 40, 40]);
        assert_eq!(points.len(), 1 + FRONTIER_POINTS);
        for w in points.windows(2) {
            assert!(w[1].value <= w[0].value + 1e-12 && w[1].unsubscribes <= w[0].unsubscribes + 1e-12, "{w:?}");
        }
        assert!(points[0].unsubscribes > 1.0);
        assert!(points.last().unwrap().unsubscribes < 1e-12, "{:?}", points.last());
        assert!(points.last().unwrap().value > 0.0, "in-app sends never cost reach");
    }
}
