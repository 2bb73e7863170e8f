//! One user's day, step by step: what they do is drawn from their own random streams
//! with the hazards of `model` and written as compact rows, and at the day's end the
//! truth of `truth` is recorded on the state the day leaves. This module keeps the
//! order of the steps; each job has its own file below it.

mod billing;
mod campaign;
mod context;
mod listening;

use super::model;
use super::state::{Msg, State, Traits};
use super::truth::Horizon;
use super::world::World;

pub(super) use context::{Day, DayOut};

impl Day<'_> {
    /// Run the day. Order: campaign (on the state at the end of yesterday), period ends,
    /// renewals, dunning, the day's own actions, listening, then the day's truth.
    pub(crate) fn run(&self, s: &mut State, out: &mut DayOut) {
        if self.d < i32::from(self.t.signup) {
            return;
        }
        if self.w.is_campaign_day(self.d) && s.status.premium() {
            self.campaign(s, out);
        }
        self.billing(s, out);
        self.listen(s, out);
        if s.status.premium() {
            self.truth(s, out);
        }
    }

    /// The day's truth for a user premium at its end: the 30-day churn probability on a
    /// snapshot day, and on the last day the effect of each message sent the day after.
    fn truth(&self, s: &State, out: &mut DayOut) {
        let (w, t, d) = (self.w, self.t, self.d);
        out.premium += 1;
        let last = d == w.last_day();
        if w.is_snapshot(d) || last {
            let h = Horizon::new(w, t, s, d);
            let base = h.p_churn(None);
            if w.is_snapshot(d) {
                out.churn.push((self.u, base));
            }
            if last {
                for ty in 0..4u8 {
                    for ch in 0..3u8 {
                        let m = Msg::new(d + 1, ty, ch, model::message_delta(w, t, s, d + 1, ty, ch));
                        let p = model::delivery_prob(w, s, d + 1, ch);
                        let effect = if p > 0.0 { p * (h.p_churn(Some(&m)) - base) } else { 0.0 };
                        out.effects.push((self.u, ty, ch, effect));
                    }
                }
            }
        }
    }
}

/// At the end of the world: episodes still open or waiting for a come-back.
pub(super) fn flush(w: &World, u: u32, t: &Traits, s: &mut State, out: &mut DayOut) {
    if s.ep_pending {
        let day = Day { w, u, t, d: w.last_day() };
        day.finish_episode(s, out, None, false);
    }
}
