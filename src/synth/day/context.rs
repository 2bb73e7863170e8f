//! What every step of a user's day shares: who and when (`Day`), what the day emits
//! (`DayOut`), and the time windows that put the steps in order. It sits below the
//! steps so that each step can be read on its own and the day's order in one place.

use crate::synth::rng::Stream;
use crate::synth::state::Traits;
use crate::synth::tables::{ActivityRow, BillingRow, MessageRow};
use crate::synth::truth::Episode;
use crate::synth::world::World;

/// Seconds into the UTC day at which each kind of step happens, so that event times
/// follow the order in which the simulation decides them: campaigns, then period ends,
/// then renewals, then dunning, then the day's own actions.
pub(super) const W_CAMPAIGN: (f64, f64) = (60.0, 1_800.0);
pub(super) const W_PERIOD_END: (f64, f64) = (1_800.0, 3_600.0);
pub(super) const W_RENEW: (f64, f64) = (3_600.0, 14_400.0);
pub(super) const W_DUNNING: (f64, f64) = (14_400.0, 21_600.0);
pub(super) const W_DAY: (f64, f64) = (25_200.0, 82_800.0);

/// One user on one day.
pub(crate) struct Day<'a> {
    pub(crate) w: &'a World,
    pub(crate) u: u32,
    pub(crate) t: &'a Traits,
    pub(crate) d: i32,
}

impl Day<'_> {
    /// A time inside today's window `win`.
    pub(super) fn at(&self, r: &mut Stream, win: (f64, f64)) -> i64 {
        self.w.ts(self.d, r.range(win.0, win.1))
    }
}

/// Everything one chunk of users emits on one day.
#[derive(Default)]
pub(crate) struct DayOut {
    pub(crate) activity: Vec<ActivityRow>,
    pub(crate) billing: Vec<BillingRow>,
    pub(crate) messages: Vec<MessageRow>,
    /// (user, true 30-day churn probability) at a snapshot day.
    pub(crate) churn: Vec<(u32, f64)>,
    /// (user, message type, channel, effect) on the last day.
    pub(crate) effects: Vec<(u32, u8, u8, f64)>,
    /// (user, effect) of each message decided today.
    pub(crate) log_effects: Vec<(u32, f64)>,
    pub(crate) episodes: Vec<Episode>,
    pub(crate) premium: u64,
}
