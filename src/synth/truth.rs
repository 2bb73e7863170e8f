//! The ground truth: each premium user's true 30-day churn probability, each message's
//! true effect on it, and each dunning episode's true recovery hazard.
//!
//! # How the churn probability is computed
//! Exactly, not by sampling. Given a user's state at the end of day S and no new messages,
//! the only ways to be non-premium at the end of S+30 are few, because a paid period is 30
//! days: any renewal, recovery, resumption, conversion or come-back on day S+1 or later
//! pays until after S+30. So with `pe` the current period end:
//! - active: cancel on a day in (S, pe) (daily hazard `model::cancel_lin`), then not
//!   resume at `pe`, then not come back by S+30; or the renewal at `pe` fails, and for
//!   each failure reason and granted grace length (the same distributions the simulation
//!   draws from) the episode neither recovers nor reaches its end after S+30, and the
//!   user does not come back;
//! - cancelled: not resume at `pe`, not come back; in a trial: not convert at `pe`, not
//!   come back; in dunning: not recover before the grace period ends, not come back.
//!
//! Every term is a product of the daily probabilities of `model`, evaluated on the
//! user's deterministic engagement path, so the result is the exact probability of the
//! process that generated the data (up to floating point). The probability is over
//! the world's randomness given everything about the user at the end of S, including
//! traits no table shows (frailty, responsiveness, the engagement trend's future).
//!
//! A message's true effect is the same computation with the message added on day S+1
//! (the state at the end of S), minus the computation without it, times the chance that
//! the message is delivered: the effect of deciding to send it. Negative keeps the user.

use super::model;
use super::state::{Msg, SRC_CANCEL, SRC_TRIAL, State, Status, Traits};
use super::world::*;

const H: usize = HORIZON as usize;

/// The 30 days after a snapshot, for one user.
pub(crate) struct Horizon<'a> {
    w: &'a World,
    t: &'a Traits,
    s: &'a State,
    snap: i32,
    end: i32,
    /// `stay_out[src][j]`: chance that a user who lapsed (for `src`) on day `snap + j`
    /// has not come back by the end of the horizon.
    stay_out: [[f64; H + 1]; 7],
}

impl<'a> Horizon<'a> {
    pub(crate) fn new(w: &'a World, t: &'a Traits, s: &'a State, snap: i32) -> Self {
        let mut base = [0.0; H + 1];
        for (j, b) in base.iter_mut().enumerate().skip(1) {
            *b = model::comeback_base(t, snap + j as i32);
        }
        let mut stay_out = [[1.0; H + 1]; 7];
        for (src, row) in stay_out.iter_mut().enumerate() {
            let mut acc = 1.0;
            for j in (1..=H).rev() {
                row[j] = acc;
                acc *= 1.0 - model::comeback_hazard(base[j], src as u8);
            }
        }
        Horizon { w, t, s, snap, end: snap + HORIZON, stay_out }
    }

    fn stay_out(&self, lapse_day: i32, src: u8) -> f64 {
        self.stay_out[src as usize][(lapse_day - self.snap) as usize]
    }

    /// P(not premium at the end of `snap + 30`), with `extra` delivered on `snap + 1`.
    pub(crate) fn p_churn(&self, extra: Option<&Msg>) -> f64 {
        let (w, t, s) = (self.w, self.t, self.s);
        let pe = s.pe();
        match s.status {
            Status::Trial => (1.0 - model::trial_conversion(t, &s.msgs, extra, pe)) * self.stay_out(pe, SRC_TRIAL),
            Status::Cancelled => (1.0 - model::resume_prob(t, &s.msgs, extra, pe)) * self.stay_out(pe, SRC_CANCEL),
            Status::Dunning => {
                let f = i32::from(s.fail_day);
                let x = f + i32::from(s.grace);
                if x > self.end {
                    return 0.0;
                }
                let rem = s.reminder().or_else(|| {
                    extra
                        .filter(|m| m.kind_type() == REMINDER)
                        .map(|m| (m.day_i32(), model::reminder_strength(t, m.channel())))
                });
                let mut surv = 1.0;
                for d in self.snap + 1..=x {
                    surv *= 1.0 - model::recovery_hazard(w, t, s.reason, f, d - f, rem);
                }
                surv * self.stay_out(x, s.reason)
            }
            Status::Active => {
                let lapse_after_cancel =
                    (1.0 - model::resume_prob(t, &s.msgs, extra, pe)) * self.stay_out(pe, SRC_CANCEL);
                let mut on = 1.0;
                let mut p = 0.0;
                for d in self.snap + 1..pe {
                    let h = model::cancel_hazard(model::cancel_lin(t, s, d), model::msg_delta_sum(&s.msgs, extra, d));
                    p += on * h * lapse_after_cancel;
                    on *= 1.0 - h;
                }
                p + on * model::fail_prob(t) * self.failed_renewal(pe)
            }
            Status::NotYet | Status::Free | Status::Expired => 0.0,
        }
    }

    /// P(not premium at the end) for a renewal that fails on day `f`.
    fn failed_renewal(&self, f: i32) -> f64 {
        let weights = REASON_BY_METHOD[self.t.method as usize];
        let total: f64 = weights.iter().sum();
        let mut p = 0.0;
        for (reason, wr) in weights.iter().enumerate() {
            if *wr == 0.0 {
                continue;
            }
            let mut surv = 1.0;
            let mut k = 0;
            let mut acc = 0.0;
            for g in GRACE_DAYS {
                let g = i32::from(g);
                if f + g > self.end {
                    break;
                }
                while k < g {
                    k += 1;
                    surv *= 1.0 - model::recovery_hazard(self.w, self.t, reason as u8, f, k, None);
                }
                acc += surv * self.stay_out(f + g, reason as u8);
            }
            p += wr / total * acc / GRACE_DAYS.len() as f64;
        }
        p
    }
}

/// A dunning episode as it happened.
#[derive(Debug, Clone)]
pub(crate) struct Episode {
    pub(crate) user: u32,
    pub(crate) fail_day: i16,
    pub(crate) fail_ts: i64,
    pub(crate) reason: u8,
    pub(crate) method: u8,
    pub(crate) grace: u8,
    /// The payment reminder delivered during the episode: (day, strength).
    pub(crate) reminder: Option<(i32, f32)>,
    /// Days from failure to recovery.
    pub(crate) recovered_day: Option<u8>,
    /// Subscribed again within 60 days of expiring (false when recovered, or when the
    /// world ended first).
    pub(crate) came_back: bool,
}

impl Episode {
    /// The true daily recovery hazard for days 1..=30 after the failure (what recovery
    /// would have been each day had the grace period lasted that long).
    pub(crate) fn hazard(&self, w: &World, t: &Traits) -> Vec<f64> {
        (1..=HORIZON)
            .map(|k| model::recovery_hazard(w, t, self.reason, i32::from(self.fail_day), k, self.reminder))
            .collect()
    }
}
