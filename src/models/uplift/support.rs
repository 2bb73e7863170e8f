//! Where an arm was tried, so that effects are predicted only there.

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use super::experiment::{Fitting, fit_on};
use crate::error::{Error, Result};
use crate::models::classifier::Classifier;
use crate::models::gbdt::{GbdtModel, Objective};

/// Where an arm was tried: a classifier of "this user got a decision of the arm" against
/// the background population, the score above which 95% of the tried users lie, and the
/// share of the background at or above it. Effects are only predicted where the arm was
/// tried; elsewhere a model extrapolates and its noise would look like opportunity to
/// the allocation.
///
/// A population scored later than the history (the users at S) can sit lower on the
/// classifier's scale as a whole: features that grow with the calendar (tenure, counts
/// over 365 days) are beyond the range the classifier saw. So the cut is never stricter
/// than the one that keeps the historical share of a population inside; it is a ranking
/// within the population, not a fixed score.
#[derive(Serialize, Deserialize)]
pub(crate) struct Support {
    pub model: GbdtModel,
    pub threshold: f64,
    pub background_inside: f64,
}

/// The share of tried users allowed to fall outside the support.
const SUPPORT_TAIL: f64 = 0.05;

impl Support {
    pub(crate) fn fit(
        tried: &Array2<f64>,
        background: &Array2<f64>,
        categorical: &[usize],
        fitting: Fitting,
    ) -> Result<Support> {
        let x = ndarray::concatenate(Axis(0), &[tried.view(), background.view()]).map_err(Error::internal)?;
        let y: Vec<f64> = (0..x.nrows()).map(|i| f64::from(u8::from(i < tried.nrows()))).collect();
        let all: Vec<usize> = (0..x.nrows()).collect();
        let model = fit_on(Objective::Binary, &x, &y, None, &all, categorical, fitting)?;
        let mut scores = model.predict(tried);
        scores.sort_by(f64::total_cmp);
        let threshold = scores.get((scores.len() as f64 * SUPPORT_TAIL) as usize).copied().unwrap_or(0.0);
        let inside = model.predict(background).iter().filter(|&&p| p >= threshold).count();
        let background_inside = inside as f64 / background.nrows().max(1) as f64;
        Ok(Support { model, threshold, background_inside })
    }

    /// Which rows of a population lie inside the support: those at or above the fitted
    /// threshold, or within the population's top `background_inside` share by score.
    pub(crate) fn contains(&self, population: &Array2<f64>) -> Vec<bool> {
        let scores = self.scores(population);
        let cut = self.cut(&scores);
        scores.into_iter().map(|p| p >= cut).collect()
    }

    /// The support classifier's score of each row.
    pub(crate) fn scores(&self, x: &Array2<f64>) -> Vec<f64> {
        self.model.predict(x)
    }

    /// The score at or above which a row of the population with these `scores` is inside
    /// (see [`Support::contains`]): a property of the whole population, so a part of it
    /// (a shard) is cut where the whole is.
    pub(crate) fn cut(&self, scores: &[f64]) -> f64 {
        let mut sorted = scores.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let keep = (self.background_inside * sorted.len() as f64).ceil() as usize;
        match keep {
            0 => self.threshold,
            k => sorted[k.min(sorted.len()) - 1].min(self.threshold),
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, Axis};
    use rand::{Rng, SeedableRng};

    use super::*;

    const FITTING: Fitting = Fitting { threads: 1, seed: 17 };

    /// Users with x0 > 0.7 were tried, on snapshots where a calendar feature (x1, say
    /// tenure) ran from 0 to 1. Tonight's population has the same users, later: x1 from
    /// 1 to 2, beyond anything the classifier saw.
    #[test]
    fn the_support_keeps_the_users_like_the_tried_ones_in_a_later_population() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let background = Array2::from_shape_fn((20_000, 2), |_| r.random::<f64>());
        let tried_rows: Vec<usize> = (0..background.nrows()).filter(|&i| background[[i, 0]] > 0.7).collect();
        let tried = background.select(Axis(0), &tried_rows);
        let support = Support::fit(&tried, &background, &[], FITTING).unwrap();
        assert!((support.background_inside - 0.3).abs() < 0.06, "about the tried share: {}", support.background_inside);

        let later = Array2::from_shape_fn((5_000, 2), |(_, j)| r.random::<f64>() + j as f64);
        let inside = support.contains(&later);
        let like_tried = (0..later.nrows()).filter(|&i| later[[i, 0]] > 0.7);
        let kept = like_tried.clone().filter(|&i| inside[i]).count() as f64 / like_tried.count() as f64;
        let others = (0..later.nrows()).filter(|&i| later[[i, 0]] < 0.6 && inside[i]).count();
        assert!(kept > 0.9, "users like the tried ones are inside: {kept}");
        assert!(others < 50, "users unlike them are not: {others}");

        // However low the population sits on the classifier's scale, its top share is inside.
        let strict = Support { threshold: 2.0, ..support };
        let inside = strict.contains(&later).iter().filter(|&&i| i).count() as f64 / later.nrows() as f64;
        assert!((inside - strict.background_inside).abs() < 0.01, "{inside}");
    }
}
