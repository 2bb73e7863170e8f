//! Scoring learners on rows they never saw (the Qini curve) and choosing one by evidence.

use serde::Serialize;

use super::experiment::Experiment;
use super::learners::Learner;

/// The DR-learner unless the T-learner's Qini beats it by two bootstrap standard errors.
/// DR is the default because its effects are unbiased where effects are small and the
/// arms differ in who they hold, which the difference of two separately regularised
/// T-learner fits is not; a Qini gap within the noise of the evaluation rows is no reason
/// to give that up.
pub(crate) fn choose_learner(qini_t: f64, qini_dr: f64, difference_se: f64) -> Learner {
    if qini_t - qini_dr > 2.0 * difference_se { Learner::T } else { Learner::Dr }
}

/// How the learners did on rows they never saw, and the one chosen.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LearnerChoice {
    /// Summed Qini of each learner, in [`Learner::ALL`] order.
    pub(crate) qini: [f64; 2],
    /// Bootstrap standard error of the T-learner's summed Qini minus the DR-learner's.
    pub(crate) difference_se: f64,
    pub(crate) chosen: Learner,
}

/// Choose the learner by evidence, as the pipeline and `retain table uplift` both do: each
/// learner's Qini summed over held-out experiments (an arm's later decisions, or the
/// held-out fifth of an analyst's table), given with each learner's predicted benefit on
/// their rows (in [`Learner::ALL`] order), then [`choose_learner`].
/// `seed` draws the bootstrap.
pub(crate) fn select_learner(evaluations: &[(Experiment, [&[f64]; 2])], seed: u64) -> LearnerChoice {
    let qini_of = |k: usize| -> f64 { evaluations.iter().map(|(e, b)| qini(b[k], e, 20).qini).sum() };
    let qini = [qini_of(0), qini_of(1)];
    let difference_se = qini_difference_se(evaluations, seed);
    LearnerChoice { qini, difference_se, chosen: choose_learner(qini[0], qini[1], difference_se) }
}

/// Bootstrap standard error (rows resampled within each experiment) of the summed Qini of
/// the T-learner minus the DR-learner's, over experiments given with each learner's
/// predicted benefit on their rows (in [`Learner::ALL`] order); `seed` draws the resamples.
fn qini_difference_se(evaluations: &[(Experiment, [&[f64]; 2])], seed: u64) -> f64 {
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let rounds = 100;
    let mut diffs = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut d = 0.0;
        for (e, [t, dr]) in evaluations {
            let n = e.len();
            let idx: Vec<usize> = (0..n).map(|_| r.random_range(0..n)).collect();
            let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
            let treated: Vec<bool> = idx.iter().map(|&i| e.treated[i]).collect();
            let (outcome, propensity) = (pick(e.outcome), pick(e.propensity));
            let resampled = Experiment { x: e.x, treated: &treated, outcome: &outcome, propensity: &propensity };
            d += qini(&pick(t), &resampled, 20).qini - qini(&pick(dr), &resampled, 20).qini;
        }
        diffs.push(d);
    }
    let mean = diffs.iter().sum::<f64>() / rounds as f64;
    (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (rounds - 1) as f64).sqrt()
}

/// A Qini curve: the estimated churn events prevented among the top share of users ranked
/// by predicted benefit, per user of the experiment's (weighted) population.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Qini {
    /// (share of users targeted, churn prevented per user of the population).
    pub curve: Vec<(f64, f64)>,
    /// Area between the curve and random targeting (the straight line to the full-send
    /// gain): positive when the ranking beats random.
    pub qini: f64,
    /// Area under the curve.
    pub auuc: f64,
}

/// The Qini curve of `benefit` (predicted churn prevented: higher = target first) on an
/// experiment the model did not see. Gains are inverse-propensity weighted differences of
/// churn rates between the arms within each top share.
pub(crate) fn qini(benefit: &[f64], e: &Experiment, points: usize) -> Qini {
    let n = benefit.len();
    let w = e.weights();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| benefit[b].total_cmp(&benefit[a]).then(a.cmp(&b)));
    let total_w: f64 = w.iter().sum::<f64>().max(1e-12);
    // Running weighted sums: [control, treated] of weight and weighted churn.
    let (mut ws, mut wy) = ([0.0f64; 2], [0.0f64; 2]);
    let mut curve = vec![(0.0, 0.0)];
    let mut next = 1;
    let mut seen_w = 0.0;
    for &i in &order {
        let arm = e.treated[i] as usize;
        ws[arm] += w[i];
        wy[arm] += w[i] * e.outcome[i];
        seen_w += w[i];
        while next <= points && seen_w >= total_w * next as f64 / points as f64 - 1e-9 {
            let gain =
                if ws[0] > 0.0 && ws[1] > 0.0 { (wy[0] / ws[0] - wy[1] / ws[1]) * seen_w / total_w } else { 0.0 };
            curve.push((seen_w / total_w, gain));
            next += 1;
        }
    }
    let full = curve.last().map_or(0.0, |c| c.1);
    let (mut auuc, mut random) = (0.0, 0.0);
    for pair in curve.windows(2) {
        let dx = pair[1].0 - pair[0].0;
        auuc += dx * (pair[0].1 + pair[1].1) / 2.0;
        random += dx * full * (pair[0].0 + pair[1].0) / 2.0;
    }
    Qini { curve, qini: auuc - random, auuc }
}
