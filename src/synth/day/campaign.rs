//! The weekly campaigns as they reach one user: which message the user's segment gets,
//! on which channel, treated or held out, with the probability of that decision logged,
//! the true effect of deciding to send it recorded, and what the user then does with it
//! (open, click, unsubscribe). Its own random streams keep a message from shifting the
//! draws of the user's billing or listening.

use chrono::TimeZone;

use super::context::{Day, DayOut, W_CAMPAIGN};
use crate::synth::model;
use crate::synth::rng::{Purpose, Stream};
use crate::synth::state::{Msg, State, Status};
use crate::synth::tables::MessageRow;
use crate::synth::truth::Horizon;
use crate::synth::world::*;

impl Day<'_> {
    /// Weekly campaigns: pick the user's segment (one message a week at most), a channel
    /// and an arm at random, log the decision with its probability, and apply the message.
    pub(super) fn campaign(&self, s: &mut State, out: &mut DayOut) {
        let (w, t, d) = (self.w, self.t, self.d);
        let mut r = Stream::new(w.seed, self.u, d, Purpose::Campaign);
        let fade = model::fade(t, d - 1);
        let (ty, p_type, p_treat) = match s.status {
            Status::Dunning => (REMINDER, 1.0, if s.reason == EXPIRED_CARD { 0.8 } else { 0.5 }),
            Status::Cancelled => (WINBACK, 1.0, 0.5),
            _ if s.status == Status::Trial || d - 1 - i32::from(s.sub_start) < 30 => (EDUCATION, 1.0, 0.5),
            _ if fade >= 0.3 => {
                if r.chance(0.5) {
                    (NUDGE, 0.5, if fade >= 1.0 { 0.8 } else { 0.5 })
                } else {
                    (WINBACK, 0.5, 0.5)
                }
            }
            _ if r.chance(0.06) => {
                if r.chance(0.5) {
                    (NUDGE, 0.03, 0.3)
                } else {
                    (EDUCATION, 0.03, 0.3)
                }
            }
            _ => return,
        };
        let mut allowed = [IN_APP; 3];
        let mut n = 0;
        for (ch, ok) in [(PUSH, s.push_opt), (EMAIL, s.email_opt), (IN_APP, true)] {
            if ok {
                allowed[n] = ch;
                n += 1;
            }
        }
        let ch = allowed[r.below(n as u32) as usize];
        let treated = r.chance(p_treat);
        let propensity = p_type / n as f64 * if treated { p_treat } else { 1.0 - p_treat };
        let ts = w.ts(d, r.range(W_CAMPAIGN.0, W_CAMPAIGN.1));

        let msg = Msg::new(d, ty, ch, model::message_delta(w, t, s, d, ty, ch));
        let p_deliver = model::delivery_prob(w, s, d, ch);
        let h = Horizon::new(w, t, s, d - 1);
        let effect = if p_deliver > 0.0 { p_deliver * (h.p_churn(Some(&msg)) - h.p_churn(None)) } else { 0.0 };
        out.log_effects.push((self.u, effect));

        let mut row = MessageRow {
            user: self.u,
            ts,
            ty,
            ch,
            treated,
            propensity,
            delivered: false,
            opened_at: None,
            clicked: false,
            unsubscribed: false,
        };
        if treated {
            let mut o = Stream::new(w.seed, self.u, d, Purpose::Outcome);
            row.delivered = o.chance(p_deliver);
            if row.delivered {
                s.remember(msg);
                if ty == REMINDER && s.status == Status::Dunning && s.rem_day == i16::MAX {
                    s.rem_day = d as i16;
                    s.rem_strength = model::reminder_strength(t, ch);
                }
                let engaged = (0.4 * (f64::from(t.zbase) + model::rel(t, d))).exp().min(2.5);
                let p_open = [0.15, 0.22, 0.5][ch as usize] * engaged;
                if o.chance(p_open.min(0.95)) {
                    row.opened_at = Some(self.local_time_after(ts, model::reading_delay_hours(w, ch), &mut o));
                    row.clicked = o.chance((0.25 + 0.3 * f64::from(-msg.delta).max(0.0)).min(0.9));
                }
                if ch != IN_APP && o.chance(model::unsubscribe_prob(w, t, ch)) {
                    row.unsubscribed = true;
                    if ch == PUSH {
                        s.push_opt = false;
                    } else {
                        s.email_opt = false;
                    }
                }
            }
        }
        out.messages.push(row);
    }

    /// The first time after `after` that is around the user's usual local listening hour,
    /// `delay` hours later.
    fn local_time_after(&self, after: i64, delay: f64, r: &mut Stream) -> i64 {
        let zone = self.w.zones[self.t.zone as usize];
        let hour = f64::from(self.t.hour) + delay + 0.5 + 0.75 * r.normal();
        let secs = (hour.clamp(0.0, 23.99) * 3600.0) as i64;
        for day in [self.d, self.d + 1, self.d + 2] {
            let local = self.w.date(day).and_hms_opt(0, 0, 0).expect("midnight") + chrono::Duration::seconds(secs);
            if let Some(t) = zone.from_local_datetime(&local).earliest() {
                let us = t.timestamp_micros();
                if us > after + 60_000_000 {
                    return us;
                }
            }
        }
        after + 3_600_000_000
    }
}
