//! The value of every total grace length for one open episode, and the best one.
//!
//! For an episode open `e` days after its failure and a total grace of g days (counted
//! from the failure):
//!
//! value(g) = value_months × price × P(recovered on days e+1..g, or back within 60 days
//! of the expiry at g) − cost_fraction × price / 30 × E[unpaid grace days from S]
//!
//! where a day k of grace is unpaid when the episode is still open at its start (the
//! user streams on credit that day; a recovery pays from its own day on). g ≤ e means
//! ending the grace now: nothing more is recovered and nothing more is given away, only
//! the come-back chance remains.

use crate::config::Grace as GraceConfig;

/// One episode's values by total grace length.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Valuation {
    pub elapsed: usize,
    /// value(g), g = 0..=max_days.
    pub values: Vec<f64>,
    /// P(recovered during a grace of g | open now), g = 0..=max_days.
    pub p_recover: Vec<f64>,
    /// Expected unpaid days from now under g.
    pub unpaid: Vec<f64>,
    /// The best g (the smallest among equals; `min(elapsed, max)` when ending now wins).
    pub best: usize,
}

/// `hazard[k]`, k = 1..=max (index 0 unused), from the recovery model; `come_back[g]`,
/// g = 0..=max. Returns the valuation of g = 0..=max.
pub(crate) fn valuate(hazard: &[f64], come_back: &[f64], elapsed: usize, price: f64, cfg: &GraceConfig) -> Valuation {
    let max = cfg.max_days as usize;
    let worth = cfg.value_months * price;
    let daily_cost = cfg.cost_fraction * price / 30.0;
    let now = elapsed.min(max);
    let mut values = vec![0.0; max + 1];
    let mut p_recover = vec![0.0; max + 1];
    let mut unpaid = vec![0.0; max + 1];
    let mut surv = 1.0;
    let mut days = 0.0;
    for g in 0..=max {
        if g > elapsed {
            days += surv; // day g is unpaid when still open at its start
            surv *= 1.0 - hazard.get(g).copied().unwrap_or(0.0).clamp(0.0, 1.0);
        }
        let r = 1.0 - surv;
        let cb = come_back[if g > elapsed { g } else { now }.min(come_back.len() - 1)];
        p_recover[g] = r;
        unpaid[g] = days;
        values[g] = worth * (r + (1.0 - r) * cb) - daily_cost * days;
    }
    let mut best = now;
    for g in elapsed + 1..=max {
        if values[g] > values[best] + 1e-9 {
            best = g;
        }
    }
    Valuation { elapsed, values, p_recover, unpaid, best }
}

impl Valuation {
    /// P(recovered by day d | open now), d = 1..=days, under the grace length `g`.
    pub(crate) fn curve(&self, g: usize, days: usize) -> Vec<f64> {
        (1..=days)
            .map(|d| if d <= self.elapsed { 0.0 } else { self.p_recover[d.min(g).min(self.p_recover.len() - 1)] })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GraceConfig {
        GraceConfig { value_months: 6.0, cost_fraction: 0.7, max_days: 30, ..GraceConfig::default() }
    }

    #[test]
    fn early_recoverers_get_a_short_grace_and_hopeless_ones_none() {
        // Recoveries only in the first three days, at a hazard worth waiting for.
        let mut h = vec![0.0; 31];
        h[1..=3].fill(0.3);
        let v = valuate(&h, &[0.0; 31], 0, 10.0, &cfg());
        assert_eq!(v.best, 3);
        let p3 = 1.0 - 0.7f64.powi(3);
        assert!((v.p_recover[3] - p3).abs() < 1e-12);
        // Unpaid days: day 1 always, day 2 if not recovered on 1, day 3 if not by 2.
        let unpaid = 1.0 + 0.7 + 0.49;
        assert!((v.unpaid[3] - unpaid).abs() < 1e-12);
        assert!((v.values[3] - (60.0 * p3 - 0.7 * 10.0 / 30.0 * unpaid)).abs() < 1e-9);
        let c = v.curve(v.best, 30);
        assert_eq!(c.len(), 30);
        assert!((c[29] - p3).abs() < 1e-12, "flat after the grace ends");
        // Nobody recovers: end now, whatever has elapsed.
        let v = valuate(&[0.0; 31], &[0.0; 31], 2, 10.0, &cfg());
        assert_eq!((v.best, v.p_recover[v.best]), (2, 0.0));
        assert!(v.best <= v.elapsed, "not above the elapsed days: end the grace now");
    }

    #[test]
    fn the_break_even_hazard_decides_and_come_backs_lower_the_worth_of_waiting() {
        // A day of grace pays when h × 6 months > 0.7 daily prices, i.e. h > 0.7/180.
        let cfg = cfg();
        let just_above = vec![0.0045; 31];
        let just_below = vec![0.0035; 31];
        assert_eq!(valuate(&just_above, &[0.0; 31], 0, 9.99, &cfg).best, 30);
        assert_eq!(valuate(&just_below, &[0.0; 31], 0, 9.99, &cfg).best, 0);
        // If half the lapsed come back anyway, only half of a recovery is extra value.
        assert_eq!(valuate(&just_above, &[0.5; 31], 0, 9.99, &cfg).best, 0);
        // Conditioning on the days elapsed: value counts only days still ahead.
        let v = valuate(&just_above, &[0.0; 31], 10, 9.99, &cfg);
        assert_eq!(v.best, 30);
        assert_eq!(v.unpaid[10], 0.0);
        assert!((v.unpaid[11] - 1.0).abs() < 1e-12);
        assert!(v.curve(30, 30)[..10].iter().all(|p| *p == 0.0));
    }
}
