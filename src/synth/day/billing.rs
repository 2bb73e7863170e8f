//! The billing steps of a user's day, in the order they happen: the status carried over
//! into the window, sign-up, period ends, renewals, dunning, and the day's own actions
//! (cancel, plan change, come-back, conversion). They draw from one random stream per
//! user and day, in this order, and write the billing events they cause.

use super::context::{Day, DayOut, W_DAY, W_DUNNING, W_PERIOD_END, W_RENEW};
use crate::synth::model;
use crate::synth::rng::{Purpose, Stream};
use crate::synth::state::{SRC_CANCEL, SRC_TRIAL, State, Status};
use crate::synth::tables::BillingRow;
use crate::synth::truth::Episode;
use crate::synth::world::*;

/// Event type indices (into `contract::EVENT_TYPES`).
const TRIAL_START: u8 = 0;
const SUBSCRIBE: u8 = 1;
const RENEW: u8 = 2;
const CANCEL: u8 = 3;
const PAYMENT_FAILED: u8 = 4;
const PAYMENT_RECOVERED: u8 = 5;
const EXPIRE: u8 = 6;
const PLAN_CHANGE: u8 = 7;
const REFUND: u8 = 8;

/// Share of billing events delivered twice.
const DUPLICATE_SHARE: f64 = 0.005;

impl Day<'_> {
    /// The day's billing. A user whose status changed today (signed up, converted,
    /// resumed, renewed or recovered) takes no action of their own.
    pub(super) fn billing(&self, s: &mut State, out: &mut DayOut) {
        let (t, d) = (self.t, self.d);
        let mut r = Stream::new(self.w.seed, self.u, d, Purpose::Billing);
        let mut busy = false;
        if d == 0 && t.signup < 0 {
            self.carry_over(s, out, &mut r);
        }
        if d == i32::from(t.signup) {
            self.sign_up(s, out, &mut r);
            busy = true;
        }
        busy |= self.period_end(s, out, &mut r);
        if s.status == Status::Active && d == s.pe() {
            self.renew(s, out, &mut r);
            busy = true;
        } else if s.status == Status::Dunning && d > i32::from(s.fail_day) {
            busy |= self.dunning(s, out, &mut r);
        }
        if !busy {
            self.own_actions(s, out, &mut r);
        }
        if s.status == Status::Expired && s.ep_pending && d - i32::from(s.expired_at) >= 60 {
            self.finish_episode(s, out, None, false);
        }
    }

    /// Day 0: make the status of users who subscribed before the window visible, with a
    /// carried-over `renew` or `trial_start` (no amount) at midnight, and a `cancel` one
    /// second later for those whose auto-renew is already off.
    fn carry_over(&self, s: &mut State, out: &mut DayOut, r: &mut Stream) {
        let midnight = self.w.ts(0, 0.0);
        let kind = match s.status {
            Status::Active | Status::Cancelled => RENEW,
            Status::Trial => TRIAL_START,
            _ => return,
        };
        let mut row = self.event(s, midnight, kind);
        row.period_end = Some(s.pe());
        if kind == TRIAL_START {
            row.amount = Some(0.0);
            row.currency = Some(self.t.country);
        }
        self.emit(out, r, row);
        if s.status == Status::Cancelled {
            let row = self.event(s, midnight + 1_000_000, CANCEL);
            self.emit(out, r, row);
        }
    }

    /// A new user: a trial, a direct subscription, or the free tier.
    fn sign_up(&self, s: &mut State, out: &mut DayOut, r: &mut Stream) {
        let x = r.uniform();
        s.sub_start = self.d as i16;
        if x < 0.4 {
            s.status = Status::Trial;
            s.plan = self.t.plan0;
            s.pe = (self.d + PERIOD) as i16;
            let ts = self.at(r, W_DAY);
            let mut row = self.charge(s, ts, TRIAL_START, 0.0);
            row.period_end = Some(self.d + PERIOD);
            self.emit(out, r, row);
        } else if x < 0.62 {
            self.subscribe(s, out, r, W_DAY, SUBSCRIBE);
        } else {
            s.status = Status::Free;
        }
    }

    /// Period ends of trials and cancelled subscriptions: a trial converts or expires, a
    /// cancelled subscription resumes or expires. True when the user paid.
    fn period_end(&self, s: &mut State, out: &mut DayOut, r: &mut Stream) -> bool {
        let (t, d) = (self.t, self.d);
        if d == s.pe() && s.status == Status::Trial {
            if r.chance(model::trial_conversion(t, &s.msgs, None, d)) {
                self.subscribe(s, out, r, W_PERIOD_END, SUBSCRIBE);
                return true;
            }
            self.expire(s, out, r, W_PERIOD_END, SRC_TRIAL);
        } else if d == s.pe() && s.status == Status::Cancelled {
            if r.chance(model::resume_prob(t, &s.msgs, None, d)) {
                s.status = Status::Active;
                s.pe = (d + PERIOD) as i16;
                let ts = self.at(r, W_PERIOD_END);
                let mut row = self.charge(s, ts, RENEW, self.price(s));
                row.period_end = Some(d + PERIOD);
                self.emit(out, r, row);
                self.charged(s);
                return true;
            }
            self.expire(s, out, r, W_PERIOD_END, SRC_CANCEL);
        }
        false
    }

    /// The renewal charge at the period end: it renews (and is now and then refunded), or
    /// it fails and opens a dunning episode (which expires at once without grace).
    fn renew(&self, s: &mut State, out: &mut DayOut, r: &mut Stream) {
        let (t, d) = (self.t, self.d);
        let ts = self.at(r, W_RENEW);
        let price = self.price(s);
        if r.chance(model::fail_prob(t)) {
            let weights = REASON_BY_METHOD[t.method as usize];
            s.status = Status::Dunning;
            s.ep_pending = true;
            s.reason = r.weighted(&weights) as u8;
            s.grace = GRACE_DAYS[r.below(GRACE_DAYS.len() as u32) as usize];
            s.attempt = 1;
            s.fail_day = d as i16;
            s.fail_ts = ts;
            s.rem_day = i16::MAX;
            let mut row = self.charge(s, ts, PAYMENT_FAILED, price);
            row.reason = Some(s.reason);
            row.attempt = Some(1);
            row.grace = Some(i16::from(s.grace));
            self.emit(out, r, row);
            if s.grace == 0 {
                self.expire(s, out, r, W_DUNNING, s.reason);
            }
        } else {
            s.pe = (d + PERIOD) as i16;
            let mut row = self.charge(s, ts, RENEW, price);
            row.period_end = Some(d + PERIOD);
            self.emit(out, r, row);
            self.charged(s);
            if r.chance(0.004) {
                let ts = self.at(r, W_DAY);
                let row = self.charge(s, ts, REFUND, price);
                self.emit(out, r, row);
            }
        }
    }

    /// A day in dunning: recover (true), retry, or expire at the end of grace.
    fn dunning(&self, s: &mut State, out: &mut DayOut, r: &mut Stream) -> bool {
        let (w, t, d) = (self.w, self.t, self.d);
        let k = d - i32::from(s.fail_day);
        let h = model::recovery_hazard(w, t, s.reason, i32::from(s.fail_day), k, s.reminder());
        if r.chance(h) {
            s.status = Status::Active;
            s.pe = (d + PERIOD) as i16;
            s.last_recovery = d as i16;
            let ts = self.at(r, W_DUNNING);
            let mut row = self.charge(s, ts, PAYMENT_RECOVERED, self.price(s));
            row.period_end = Some(d + PERIOD);
            self.emit(out, r, row);
            self.charged(s);
            self.finish_episode(s, out, Some(k as u8), false);
            return true;
        }
        if k >= i32::from(s.grace) {
            self.expire(s, out, r, W_DUNNING, s.reason);
        } else if RETRY_DAYS.contains(&k) {
            s.attempt += 1;
            let ts = self.at(r, W_DUNNING);
            let mut row = self.charge(s, ts, PAYMENT_FAILED, self.price(s));
            row.reason = Some(s.reason);
            row.attempt = Some(i16::from(s.attempt));
            self.emit(out, r, row);
        }
        false
    }

    /// The day's own actions: an active subscriber cancels or changes plan, a lapsed one
    /// comes back, a free user converts.
    fn own_actions(&self, s: &mut State, out: &mut DayOut, r: &mut Stream) {
        let (t, d) = (self.t, self.d);
        match s.status {
            Status::Active => {
                let lin = model::cancel_lin(t, s, d);
                let h = model::cancel_hazard(lin, model::msg_delta_sum(&s.msgs, None, d));
                if r.chance(h) {
                    s.status = Status::Cancelled;
                    let ts = self.at(r, W_DAY);
                    let row = self.event(s, ts, CANCEL);
                    self.emit(out, r, row);
                } else if r.chance(0.0007) {
                    let options: &[u8] = match s.plan {
                        INDIVIDUAL => &[DUO, FAMILY],
                        DUO => &[INDIVIDUAL, FAMILY],
                        FAMILY => &[INDIVIDUAL, DUO],
                        _ => &[INDIVIDUAL],
                    };
                    s.plan = options[r.below(options.len() as u32) as usize];
                    let ts = self.at(r, W_DAY);
                    let row = self.charge(s, ts, PLAN_CHANGE, self.price(s));
                    self.emit(out, r, row);
                }
            }
            Status::Expired if d > i32::from(s.expired_at) => {
                let h = model::comeback_hazard(model::comeback_base(t, d), s.exp_src);
                if r.chance(h) {
                    if s.ep_pending && d - i32::from(s.expired_at) <= 60 {
                        self.finish_episode(s, out, None, true);
                    }
                    s.sub_start = d as i16;
                    self.subscribe(s, out, r, W_DAY, SUBSCRIBE);
                }
            }
            Status::Free if r.chance(model::free_conversion(t, d)) => {
                s.sub_start = d as i16;
                self.subscribe(s, out, r, W_DAY, SUBSCRIBE);
            }
            _ => {}
        }
    }

    /// A billing event without an amount.
    fn event(&self, s: &mut State, ts: i64, kind: u8) -> BillingRow {
        s.seq += 1;
        BillingRow {
            user: self.u,
            seq: s.seq,
            ts,
            kind,
            plan: s.plan,
            amount: None,
            currency: None,
            method: None,
            reason: None,
            attempt: None,
            grace: None,
            period_end: None,
        }
    }

    /// An event that charges (or tries to charge, or refunds) `amount`.
    fn charge(&self, s: &mut State, ts: i64, kind: u8, amount: f64) -> BillingRow {
        let mut row = self.event(s, ts, kind);
        row.amount = Some(amount);
        row.currency = Some(self.t.country);
        row.method = Some(self.t.method);
        row
    }

    /// Log a billing event (now and then twice, as the real feed does).
    fn emit(&self, out: &mut DayOut, r: &mut Stream, row: BillingRow) {
        if r.chance(DUPLICATE_SHARE) {
            out.billing.push(row.clone());
        }
        out.billing.push(row);
    }

    /// Today's price of the user's plan in their country.
    fn price(&self, s: &State) -> f64 {
        self.w.price(self.t.country, s.plan, self.d)
    }

    /// A renewal was charged today: note a first charge at a risen price.
    fn charged(&self, s: &mut State) {
        let rise = self.w.rise_day[self.t.country as usize];
        if self.d >= rise && i32::from(s.sub_start) < rise && s.exposed_at == i16::MAX {
            s.exposed_at = self.d as i16;
        }
    }

    /// The subscription ends (`source`: why, for the come-back hazard).
    fn expire(&self, s: &mut State, out: &mut DayOut, r: &mut Stream, win: (f64, f64), source: u8) {
        let ts = self.at(r, win);
        let row = self.event(s, ts, EXPIRE);
        self.emit(out, r, row);
        s.status = Status::Expired;
        s.expired_at = self.d as i16;
        s.exp_src = source;
    }

    /// A paid subscription starts today with a first charge.
    fn subscribe(&self, s: &mut State, out: &mut DayOut, r: &mut Stream, win: (f64, f64), kind: u8) {
        s.plan = self.t.plan0;
        s.status = Status::Active;
        s.pe = (self.d + PERIOD) as i16;
        let ts = self.at(r, win);
        let mut row = self.charge(s, ts, kind, self.price(s));
        row.period_end = Some(self.d + PERIOD);
        self.emit(out, r, row);
    }

    /// Close the dunning episode: recovered after `recovered` days, or came back (or not)
    /// after it expired.
    pub(super) fn finish_episode(&self, s: &mut State, out: &mut DayOut, recovered: Option<u8>, came_back: bool) {
        s.ep_pending = false;
        out.episodes.push(Episode {
            user: self.u,
            fail_day: s.fail_day,
            fail_ts: s.fail_ts,
            reason: s.reason,
            method: self.t.method,
            grace: s.grace,
            reminder: s.reminder(),
            recovered_day: recovered,
            came_back,
        });
    }
}
