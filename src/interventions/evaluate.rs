//! Off-policy evaluation: what a targeting policy would have prevented, estimated from
//! randomised decisions it did not make.
//!
//! Each logged decision sent (or held out) one arm with a known propensity (the logged
//! probability of that arm). For a policy that, on the same day, would have given user u
//! the arm a, the inverse-propensity (IPS) estimate of the churn it prevents is the sum,
//! over logged decisions of arm a to users the policy gives a, of `Y/p` for held-out rows
//! minus `Y/p` for sent rows (Horvitz–Thompson: each row stands for 1/p users). The doubly
//! robust (DR) estimate adds the outcome models' predicted reduction for every user the
//! policy targets and corrects it with the same weighted residuals, so it is unbiased when
//! either the propensities or the outcome models are right, with less variance than IPS.
//! Intervals are normal 95% intervals over the logged rows (the model term is held fixed).
//! Values are churn events prevented per 1,000 premium users.
//!
//! A policy may send a message type to users it was never tried on. No logged row speaks
//! for them: IPS counts nothing there, and DR counts the outcome models' extrapolation,
//! whose error no interval shows. That part of the DR value is reported apart, so that a
//! policy is not preferred for what the models guess where nothing was observed.

use serde::Serialize;

/// One logged decision of an evaluation day.
#[derive(Debug, Clone)]
pub(super) struct Logged {
    /// Index of the user in the day's population.
    pub user: usize,
    pub arm: usize,
    pub treated: bool,
    pub churned: f64,
    pub propensity: f64,
    /// The outcome models' churn probability for this user without and with the arm.
    pub control: f64,
    pub sent: f64,
}

/// What a policy gives one user: an arm, the outcome models' predicted churn reduction
/// for it, and whether the user is inside the support of the arm's message type.
#[derive(Debug, Clone, Copy)]
pub(super) struct Action {
    pub arm: usize,
    pub predicted: f64,
    pub supported: bool,
}

/// An evaluation day: the population size, the logged decisions, and for each policy and
/// each user of the population what the policy gives them.
pub(super) struct Day {
    pub population: usize,
    pub logged: Vec<Logged>,
    pub actions: Vec<Vec<Option<Action>>>,
}

/// A value and its 95% interval, in churn events prevented per 1,000 premium users.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Estimate {
    pub per_1000: f64,
    pub low: f64,
    pub high: f64,
}

impl Estimate {
    fn new(sum: f64, squares: f64, n: f64) -> Self {
        let v = 1000.0 * sum / n;
        let half = 1000.0 * 1.96 * squares.sqrt() / n;
        Estimate { per_1000: v, low: v - half, high: v + half }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PolicyValue {
    pub policy: String,
    /// Sends the policy made over the evaluation days.
    pub sends: usize,
    /// Of those, sends of a message type to users outside where it was ever tried: no
    /// logged row speaks for them, so their DR model term is an extrapolation and their
    /// IPS term is zero.
    pub sends_outside_support: usize,
    pub ips: Estimate,
    pub dr: Estimate,
    /// The part of the DR value that is the outcome models' prediction for the sends
    /// outside support (per 1,000): no logged decision checks it, and the interval leaves
    /// its uncertainty out. `dr` minus this is the value the logged decisions speak for.
    pub dr_outside_support: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PolicyEvaluation {
    pub snapshots: Vec<chrono::NaiveDate>,
    pub premium_users: usize,
    pub logged_decisions: usize,
    /// Each policy against sending nothing (whose value is zero by definition).
    pub policies: Vec<PolicyValue>,
    /// The first policy minus the second, paired on the same rows.
    pub difference: PolicyValue,
}

/// Per-row IPS and DR terms of a policy on a logged row (zero when it chose otherwise).
fn terms(l: &Logged, action: Option<Action>) -> (f64, f64) {
    if action.map(|a| a.arm) != Some(l.arm) {
        return (0.0, 0.0);
    }
    let p = l.propensity.clamp(1e-3, 1.0);
    if l.treated { (-l.churned / p, -(l.churned - l.sent) / p) } else { (l.churned / p, (l.churned - l.control) / p) }
}

/// Value `names.len()` policies over the days; the difference is policy 0 minus policy 1.
pub(super) fn evaluate(names: &[&str], snapshots: Vec<chrono::NaiveDate>, days: &[Day]) -> PolicyEvaluation {
    let n: f64 = days.iter().map(|d| d.population).sum::<usize>().max(1) as f64;
    let k = names.len();
    let (mut ips, mut ips_sq, mut dr, mut dr_sq, mut sends) =
        (vec![0.0; k], vec![0.0; k], vec![0.0; k], vec![0.0; k], vec![0usize; k]);
    let (mut outside, mut dr_outside) = (vec![0usize; k], vec![0.0; k]);
    let (mut d_ips, mut d_ips_sq, mut d_dr, mut d_dr_sq) = (0.0, 0.0, 0.0, 0.0);
    for day in days {
        for p in 0..k {
            for a in day.actions[p].iter().flatten() {
                dr[p] += a.predicted;
                sends[p] += 1;
                if !a.supported {
                    outside[p] += 1;
                    dr_outside[p] += a.predicted;
                }
            }
        }
        for l in &day.logged {
            let t: Vec<(f64, f64)> = (0..k).map(|p| terms(l, day.actions[p][l.user])).collect();
            for p in 0..k {
                ips[p] += t[p].0;
                ips_sq[p] += t[p].0 * t[p].0;
                dr[p] += t[p].1;
                dr_sq[p] += t[p].1 * t[p].1;
            }
            if k >= 2 {
                let (di, dd) = (t[0].0 - t[1].0, t[0].1 - t[1].1);
                d_ips += di;
                d_ips_sq += di * di;
                d_dr += dd;
                d_dr_sq += dd * dd;
            }
        }
        if k >= 2 {
            let dm: f64 = day.actions[0].iter().flatten().map(|a| a.predicted).sum::<f64>()
                - day.actions[1].iter().flatten().map(|a| a.predicted).sum::<f64>();
            d_dr += dm;
        }
    }
    let policies = (0..k)
        .map(|p| PolicyValue {
            policy: names[p].to_string(),
            sends: sends[p],
            sends_outside_support: outside[p],
            ips: Estimate::new(ips[p], ips_sq[p], n),
            dr: Estimate::new(dr[p], dr_sq[p], n),
            dr_outside_support: 1000.0 * dr_outside[p] / n,
        })
        .collect();
    let pair = |v: &[f64]| if k >= 2 { v[0] - v[1] } else { 0.0 };
    PolicyEvaluation {
        snapshots,
        premium_users: days.iter().map(|d| d.population).sum(),
        logged_decisions: days.iter().map(|d| d.logged.len()).sum(),
        policies,
        difference: PolicyValue {
            policy: format!("{} minus {}", names.first().unwrap_or(&""), names.get(1).unwrap_or(&"")),
            sends: 0,
            sends_outside_support: 0,
            ips: Estimate::new(d_ips, d_ips_sq, n),
            dr: Estimate::new(d_dr, d_dr_sq, n),
            dr_outside_support: 1000.0 * pair(&dr_outside) / n,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A world where arm 0 cuts churn by 0.3 for odd users and does nothing for even
    /// ones, logged with a 50/50 holdout among a random 40% of users (propensity 0.2).
    #[test]
    fn ips_and_dr_recover_a_known_policy_value() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = 200_000;
        let mut logged = Vec::new();
        for u in 0..n {
            if r.random::<f64>() >= 0.4 {
                continue;
            }
            let treated = r.random::<f64>() < 0.5;
            let base = 0.4;
            let p = if treated && u % 2 == 1 { base - 0.3 } else { base };
            let churned = f64::from(u8::from(r.random::<f64>() < p));
            // Deliberately wrong outcome models: DR must still be right (the propensities are).
            logged.push(Logged { user: u, arm: 0, treated, churned, propensity: 0.2, control: 0.5, sent: 0.5 });
        }
        // Policy "odd": targets the odd users; policy "all": everyone.
        let send = Action { arm: 0, predicted: 0.0, supported: true };
        let odd: Vec<Option<Action>> = (0..n).map(|u| (u % 2 == 1).then_some(send)).collect();
        let all: Vec<Option<Action>> = (0..n).map(|_| Some(send)).collect();
        let day = Day { population: n, logged, actions: vec![odd, all] };
        let e = evaluate(&["odd", "all"], vec![], &[day]);
        // Truth: half the users, 0.3 each: 150 per 1,000; the difference is 0.
        for est in [e.policies[0].ips, e.policies[0].dr, e.policies[1].ips, e.policies[1].dr] {
            assert!(est.low < 150.0 && 150.0 < est.high, "{est:?}");
            assert!(est.high - est.low < 40.0, "a tight interval on 80k rows: {est:?}");
        }
        assert!(e.difference.ips.low < 0.0 && 0.0 < e.difference.ips.high, "{:?}", e.difference);
        assert_eq!(e.policies[0].sends, n / 2);
        assert_eq!(e.policies[0].dr_outside_support, 0.0);
    }

    /// A policy that sends to 100 of 1,000 users no logged decision speaks for, each
    /// predicted to be kept with probability 0.05: its whole DR value is extrapolation.
    #[test]
    fn the_value_of_sends_outside_support_is_reported_apart() {
        let guess = Action { arm: 0, predicted: 0.05, supported: false };
        let extrapolating: Vec<Option<Action>> = (0..1000).map(|u| (u < 100).then_some(guess)).collect();
        let day = Day { population: 1000, logged: Vec::new(), actions: vec![extrapolating, vec![None; 1000]] };
        let e = evaluate(&["extrapolating", "nothing"], vec![], &[day]);
        let p = &e.policies[0];
        assert_eq!((p.sends, p.sends_outside_support), (100, 100));
        assert!((p.dr.per_1000 - 5.0).abs() < 1e-9 && (p.dr_outside_support - 5.0).abs() < 1e-9, "{p:?}");
        assert_eq!(p.ips.per_1000, 0.0, "IPS has no row to count");
        assert!((e.difference.dr_outside_support - 5.0).abs() < 1e-9, "{:?}", e.difference);
    }
}
