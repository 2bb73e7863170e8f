//! Per-user message effects learned from randomised campaigns (uplift models).
//!
//! Two learners, both on the project's GBDT, so that the run can choose by evidence:
//! - the **T-learner** fits the churn probability of treated rows and of held-out rows
//!   separately; the effect is the difference. Simple and strong when both arms are
//!   large, but the difference of two noisy fits is noisier than either.
//! - the **DR-learner** (doubly robust, Kennedy 2020) regresses a pseudo-outcome whose
//!   mean given x is the effect: the outcome models' difference corrected by the
//!   inverse-propensity-weighted residuals. Nuisance models (both outcome models and the
//!   treatment propensity within the campaign) are cross-fitted on two halves, so no row
//!   corrects its own fit. Where an experiment has many decisions, a share of the
//!   T-learner's effect (centred on the regression's mean) is mixed in
//!   ([`learners::t_share`]): it ranks users better there, and is noise on smaller ones.
//!
//! Rows are weighted by the inverse probability of the arm they got (sent or held out),
//! given their features: campaigns did not assign their arms uniformly (some held out
//! half, others a fifth), and unweighted fits would confuse who was sent with what
//! sending did.
//!
//! For flat tables of several arms (`retain table uplift`), [`PooledModel`] is one outcome
//! model over all arms, the arm a feature (an S-learner).
//!
//! The effect is `P(churn | sent) − P(churn | not sent)`: negative keeps the user.
//! [`qini`] scores a learner on rows it never saw.
//!
//! One job per file: `experiment` (the rows, the GBDT settings and splits every fit here
//! uses), `learners` (T, DR, the assignment propensity, [`SentRate`]), `support`,
//! `pooled`, and `choice` (the Qini and the rule that picks a learner).

mod choice;
mod experiment;
mod learners;
mod pooled;
mod support;

pub(crate) use choice::{LearnerChoice, qini, select_learner};
pub(crate) use experiment::{Experiment, Fitting, MIN_ARM_ROWS};
pub(crate) use learners::{Learner, SentRate, UpliftModel, assignment_propensity, fit, fit_each};
pub(crate) use pooled::PooledModel;
pub(crate) use support::Support;

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};

    use super::experiment::part;
    use super::learners::t_share;
    use super::*;
    use crate::models::classifier::Classifier;

    const FITTING: Fitting = Fitting { threads: 1, seed: 17 };

    /// A randomised experiment where sending cuts churn by 0.2 for x0 > 0.5 and raises
    /// it by 0.1 otherwise; x1 is noise; the treated share depends on x1 (known).
    /// Features, sent, churned, propensity of the arm got, true effect.
    type Rows = (Array2<f64>, Vec<bool>, Vec<f64>, Vec<f64>, Vec<f64>);

    fn experiment(n: usize, seed: u64) -> Rows {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((n, 2), |_| r.random::<f64>());
        let mut treated = Vec::new();
        let mut y = Vec::new();
        let mut prop = Vec::new();
        let mut tau = Vec::new();
        for i in 0..n {
            let e = if x[[i, 1]] > 0.5 { 0.7 } else { 0.4 };
            let t = r.random::<f64>() < e;
            let effect = if x[[i, 0]] > 0.5 { -0.2 } else { 0.1 };
            let p = 0.35 + if t { effect } else { 0.0 };
            treated.push(t);
            y.push(f64::from(u8::from(r.random::<f64>() < p)));
            prop.push(if t { e } else { 1.0 - e });
            tau.push(effect);
        }
        (x, treated, y, prop, tau)
    }

    #[test]
    fn both_learners_find_who_the_message_helps_and_the_qini_says_so() {
        let (x, t, y, p, _) = experiment(8000, 1);
        let train = Experiment { x: &x, treated: &t, outcome: &y, propensity: &p };
        let (xv, tv, yv, pv, tau) = experiment(8000, 2);
        let valid = Experiment { x: &xv, treated: &tv, outcome: &yv, propensity: &pv };
        for learner in Learner::ALL {
            let m = fit(learner, &train, &[], FITTING).unwrap();
            let effect = m.effect(&xv);
            let right = effect.iter().zip(&tau).filter(|(e, t)| (**e < 0.0) == (**t < 0.0)).count();
            assert!(right as f64 > 0.85 * tau.len() as f64, "{learner:?}: {right} of {} signs right", tau.len());
            let benefit: Vec<f64> = effect.iter().map(|e| -e).collect();
            let q = qini(&benefit, &valid, 20);
            // Targeting the helped half prevents about 0.2 × 0.5 = 0.1 churn per user.
            let peak = q.curve.iter().map(|c| c.1).fold(f64::MIN, f64::max);
            assert!((peak - 0.1).abs() < 0.03, "{learner:?}: peak {peak}");
            assert!(q.qini > 0.02, "{learner:?}: qini {}", q.qini);
            let random: Vec<f64> = (0..xv.nrows()).map(|i| part(i, 9, 1000) as f64).collect();
            assert!(qini(&random, &valid, 20).qini.abs() < 0.02, "a random ranking has no Qini");
        }
    }

    #[test]
    fn the_seed_reaches_the_fits_and_the_bootstrap() {
        let (x, t, y, p, _) = experiment(4000, 3);
        let e = Experiment { x: &x, treated: &t, outcome: &y, propensity: &p };
        let effect = |seed: u64| fit(Learner::Dr, &e, &[], Fitting { threads: 1, seed }).unwrap().effect(&x);
        assert_eq!(effect(1), effect(1), "a seed gives one fit");
        assert_ne!(effect(1), effect(2), "another seed samples other rows");
        let benefit = effect(1);
        let evaluations = [(e, [benefit.as_slice(), y.as_slice()])];
        let se = |seed: u64| select_learner(&evaluations, seed).difference_se;
        assert_eq!(se(5), se(5));
        assert_ne!(se(5), se(6), "the bootstrap draws from the seed");
    }

    /// Small experiments get the DR-learner's regression alone; larger ones a share of the
    /// T-learner's effect that grows with their decisions, up to a quarter, and that moves
    /// who ranks first but never the mean effect over the rows the model learned from.
    #[test]
    fn the_t_learners_share_grows_with_the_decisions_and_keeps_the_mean_effect() {
        assert_eq!(t_share(100), 0.0);
        assert_eq!(t_share(25_000), 0.0);
        assert!(0.0 < t_share(30_000) && t_share(30_000) < t_share(45_000) && t_share(45_000) < 0.25);
        assert_eq!(t_share(50_000), 0.25);
        assert_eq!(t_share(2_000_000), 0.25);

        let (x, t, y, p, _) = experiment(4000, 6);
        let small = fit(Learner::Dr, &Experiment { x: &x, treated: &t, outcome: &y, propensity: &p }, &[], FITTING);
        let small = small.unwrap();
        assert_eq!(small.t_share, 0.0);
        assert_eq!(
            small.effect(&x),
            small.effect.as_ref().unwrap().predict(&x).iter().map(|v| v.clamp(-1.0, 1.0)).collect::<Vec<_>>()
        );

        let (x, t, y, p, _) = experiment(30_000, 7);
        let m =
            fit(Learner::Dr, &Experiment { x: &x, treated: &t, outcome: &y, propensity: &p }, &[], FITTING).unwrap();
        assert!((m.t_share - t_share(30_000)).abs() < 1e-12 && m.t_share > 0.05, "{}", m.t_share);
        let mixed = m.effect(&x);
        let regression: Vec<f64> = m.effect.as_ref().unwrap().predict(&x).iter().map(|v| v.clamp(-1.0, 1.0)).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean(&mixed) - mean(&regression)).abs() < 1e-9, "{} against {}", mean(&mixed), mean(&regression));
        assert!(mixed.iter().zip(&regression).any(|(a, b)| (a - b).abs() > 1e-3), "the T-learner's part moves effects");
        let t = fit(Learner::T, &Experiment { x: &x, treated: &t, outcome: &y, propensity: &p }, &[], FITTING).unwrap();
        assert_eq!(t.t_share, 0.0, "the T-learner is itself");
    }
}
