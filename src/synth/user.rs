//! One user's traits, state and day: what they do on a day is drawn from their own
//! random streams with the hazards of `model`, and written as compact rows.

use chrono::{Datelike, TimeZone};

use super::model::{self, SRC_CANCEL, SRC_TRIAL};
use super::rng::{Purpose, Stream};
use super::tables::{ActivityRow, BillingRow, MessageRow};
use super::truth::{Episode, Horizon};
use super::world::*;

/// What a user is, fixed for the whole world (~70 bytes).
#[derive(Debug, Clone)]
pub(crate) struct Traits {
    /// Day index of signup (negative: before the window).
    pub signup: i16,
    pub onset: i16,
    pub birth_year: i16,
    pub country: u8,
    /// Index into `World::zones`; the user behaves in it even when `tz_known` is false.
    pub zone: u8,
    pub tz_known: bool,
    pub platform: u8,
    pub alt_platform: u8,
    pub push_opt: bool,
    pub email_opt: bool,
    /// The household's plan (what they subscribe to; also drives churn).
    pub plan0: u8,
    pub method: u8,
    /// Free users who never convert.
    pub hard_free: bool,
    /// Annoyed by push (and a little by email): messages there raise churn.
    pub annoy: bool,
    /// Usual listening hour, local time.
    pub hour: u8,
    /// Standardised base engagement.
    pub zbase: f32,
    pub base_ms: f32,
    /// Log-engagement change per day after `onset` (negative: fading).
    pub slope: f32,
    pub skip_base: f32,
    pub week_amp: f32,
    pub week_phase: f32,
    pub pod_share: f32,
    pub uniq: f32,
    pub explore: f32,
    /// Price sensitivity in [0, 1].
    pub sens: f32,
    /// Unobserved churn propensity (log-hazard).
    pub frailty: f32,
    /// Responsiveness to each message type (positive helps, negative backfires).
    pub resp: [f32; 4],
    /// How much a payment reminder speeds up recovery.
    pub rem_rec: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    /// Not signed up yet.
    NotYet,
    /// Never paid (or not since signup).
    Free,
    Trial,
    /// Paying, auto-renew on.
    Active,
    /// Paying, auto-renew off: expires at `pe`.
    Cancelled,
    /// A renewal failed; premium until the grace period ends.
    Dunning,
    /// Lapsed subscriber.
    Expired,
}

impl Status {
    pub(crate) fn premium(self) -> bool {
        matches!(self, Status::Trial | Status::Active | Status::Cancelled | Status::Dunning)
    }
}

/// A delivered message that still changes behaviour.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Msg {
    pub day: i16,
    /// `type * 3 + channel`; `EMPTY` for a free slot.
    pub kind: u8,
    /// Log-hazard shift while active (see `model::message_delta`).
    pub delta: f32,
}

const EMPTY: u8 = 255;
pub(crate) const MSG_SLOTS: usize = 5;

impl Msg {
    pub(crate) const NONE: Msg = Msg { day: i16::MIN, kind: EMPTY, delta: 0.0 };

    pub(crate) fn new(day: i32, ty: u8, ch: u8, delta: f32) -> Self {
        Msg { day: day as i16, kind: ty * 3 + ch, delta }
    }
    pub(crate) fn active_on(&self, d: i32) -> bool {
        self.kind != EMPTY && d >= self.day_i32() && d < self.day_i32() + model::MESSAGE_DAYS
    }
    pub(crate) fn day_i32(&self) -> i32 {
        i32::from(self.day)
    }
    pub(crate) fn kind_type(&self) -> u8 {
        if self.kind == EMPTY { EMPTY } else { self.kind / 3 }
    }
    pub(crate) fn channel(&self) -> u8 {
        if self.kind == EMPTY { EMPTY } else { self.kind % 3 }
    }
}

/// What a user is now (~90 bytes). Day fields are day indices.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub status: Status,
    pub plan: u8,
    pub push_opt: bool,
    pub email_opt: bool,
    /// Period end: the next renewal (Active), expiry (Cancelled) or trial end (Trial).
    pub pe: i16,
    /// Start of the current subscription (tenure).
    pub sub_start: i16,
    /// Day of the first renewal charged at a risen price (`i16::MAX`: none).
    pub exposed_at: i16,
    /// Day of the last recovered payment failure (`i16::MIN`: none).
    pub last_recovery: i16,
    pub last_active: i16,
    pub expired_at: i16,
    /// Why the user lapsed: a failure reason, `SRC_CANCEL` or `SRC_TRIAL`.
    pub exp_src: u8,
    pub seq: u16,
    /// The dunning episode (current, or expired and waiting to see a come-back).
    pub ep_pending: bool,
    pub reason: u8,
    pub grace: u8,
    pub attempt: u8,
    pub fail_day: i16,
    pub rem_day: i16,
    pub rem_strength: f32,
    pub fail_ts: i64,
    pub msgs: [Msg; MSG_SLOTS],
}

impl State {
    fn new(t: &Traits) -> Self {
        State {
            status: Status::NotYet,
            plan: FREE,
            push_opt: t.push_opt,
            email_opt: t.email_opt,
            pe: 0,
            sub_start: 0,
            exposed_at: i16::MAX,
            last_recovery: i16::MIN,
            last_active: i16::MIN / 2,
            expired_at: 0,
            exp_src: SRC_CANCEL,
            seq: 0,
            ep_pending: false,
            reason: 0,
            grace: 0,
            attempt: 0,
            fail_day: 0,
            rem_day: i16::MAX,
            rem_strength: 0.0,
            fail_ts: 0,
            msgs: [Msg::NONE; MSG_SLOTS],
        }
    }

    pub(crate) fn pe(&self) -> i32 {
        i32::from(self.pe)
    }

    /// The reminder of the current dunning episode, if one was delivered.
    pub(crate) fn reminder(&self) -> Option<(i32, f32)> {
        (self.rem_day != i16::MAX).then(|| (i32::from(self.rem_day), self.rem_strength))
    }

    fn remember(&mut self, m: Msg) {
        let slot = (0..MSG_SLOTS).min_by_key(|&i| self.msgs[i].day).unwrap_or(0);
        self.msgs[slot] = m;
    }
}

/// Everything one chunk of users emits on one day.
#[derive(Default)]
pub(crate) struct DayOut {
    pub activity: Vec<ActivityRow>,
    pub billing: Vec<BillingRow>,
    pub messages: Vec<MessageRow>,
    /// (user, true 30-day churn probability) at a snapshot day.
    pub churn: Vec<(u32, f64)>,
    /// (user, message type, channel, effect) on the last day.
    pub effects: Vec<(u32, u8, u8, f64)>,
    /// (user, effect) of each message decided today.
    pub log_effects: Vec<(u32, f64)>,
    pub episodes: Vec<Episode>,
    pub premium: u64,
}

fn resp_mixture(r: &mut Stream) -> f32 {
    let x = r.uniform();
    (if x < 0.55 {
        0.05 * r.normal()
    } else if x < 0.9 {
        r.range(0.5, 1.5)
    } else {
        -r.range(0.2, 0.8)
    }) as f32
}

pub(crate) fn traits(w: &World, u: u32) -> Traits {
    let mut r = Stream::new(w.seed, u, 0, Purpose::Traits);
    let signup = if r.chance(0.8) { -(1 + r.below(900) as i32) } else { r.below(w.days.max(1) as u32) as i32 };
    let weights: Vec<f64> = COUNTRIES.iter().map(|c| c.weight).collect();
    let country = r.weighted(&weights);
    let zone = w.zone_offset[country] + r.below(COUNTRIES[country].timezones.len() as u32) as u8;
    let tz_known = r.chance(0.95);
    let age = (30.0 + 11.0 * r.normal()).round().clamp(14.0, 80.0) as i16;
    let birth_year = if r.chance(0.9) { w.start.year() as i16 - age } else { 0 };
    let platform = r.weighted(&[0.35, 0.40, 0.15, 0.10]) as u8;
    let alt_platform = ((u32::from(platform) + 1 + r.below(3)) % 4) as u8;
    let push_opt = r.chance(0.6);
    let email_opt = r.chance(0.7);
    let plan0 = if age < 25 && r.chance(0.45) { STUDENT } else { r.weighted(&[0.0, 0.64, 0.15, 0.17, 0.04]) as u8 };
    let method = r.weighted(&METHOD_WEIGHT) as u8;
    let hard_free = r.chance(0.4);
    let annoy = r.chance(0.08);
    let hour = ([8i32, 12, 17, 20, 22][r.weighted(&[0.2, 0.15, 0.25, 0.25, 0.15])] + r.below(3) as i32 - 1)
        .rem_euclid(24) as u8;
    let zbase = r.normal();
    let base_ms = 3.0e6 * (0.8 * zbase).exp();
    let x = r.uniform();
    let (slope, onset) = if x < 0.25 {
        (-r.range(0.01, 0.05), r.range(-60.0, f64::from(w.days)) as i16)
    } else if x < 0.43 {
        (r.range(0.003, 0.012), r.range(-30.0, f64::from(w.days)) as i16)
    } else {
        (0.0, 0)
    };
    let skip_base = (0.18 + 0.07 * r.normal()).clamp(0.03, 0.5);
    let week_amp = r.range(0.0, 0.35);
    let week_phase = r.range(0.0, 7.0);
    let pod_share = if r.chance(0.35) { r.range(0.05, 0.6) } else { 0.0 };
    let uniq = r.range(0.35, 0.9);
    let explore = (0.5 * r.normal()).exp();
    let sens = (r.uniform().powf(1.5) + if plan0 == STUDENT { 0.3 } else { 0.0 }).min(1.0);
    let frailty = 0.5 * r.normal();
    let resp = [resp_mixture(&mut r), resp_mixture(&mut r), resp_mixture(&mut r), resp_mixture(&mut r)];
    let rem_rec = r.range(0.4, 1.5);
    Traits {
        signup: signup as i16,
        onset,
        birth_year,
        country: country as u8,
        zone,
        tz_known,
        platform,
        alt_platform,
        push_opt,
        email_opt,
        plan0,
        method,
        hard_free,
        annoy,
        hour,
        zbase: zbase as f32,
        base_ms: base_ms as f32,
        slope: slope as f32,
        skip_base: skip_base as f32,
        week_amp: week_amp as f32,
        week_phase: week_phase as f32,
        pod_share: pod_share as f32,
        uniq: uniq as f32,
        explore: explore as f32,
        sens: sens as f32,
        frailty: frailty as f32,
        resp,
        rem_rec: rem_rec as f32,
    }
}

/// The state at the start of the window. Users who signed up before it are free, lapsed,
/// in a trial, paying, or paying with auto-renew off; their period ends fall in the first
/// 30 days of the window.
pub(crate) fn initial_state(w: &World, u: u32, t: &Traits) -> State {
    let mut s = State::new(t);
    let signup = i32::from(t.signup);
    if signup >= 0 {
        return s;
    }
    let mut r = Stream::new(w.seed, u, 0, Purpose::Init);
    s.sub_start = (signup + r.below((-signup) as u32) as i32) as i16;
    s.last_active = -1 - r.below(10) as i16;
    let x = r.uniform();
    if x < 0.24 {
        s.status = Status::Free;
    } else if x < 0.36 {
        s.status = Status::Expired;
        s.expired_at = (-1 - r.below(150) as i32).max(signup) as i16;
        s.exp_src = r.below(7) as u8;
        s.plan = t.plan0;
    } else if x < 0.39 {
        s.status = Status::Trial;
        let start = (-1 - r.below(29) as i32).max(signup);
        s.sub_start = start as i16;
        s.pe = (start + PERIOD) as i16;
        s.plan = t.plan0;
    } else {
        s.status = if x < 0.42 { Status::Cancelled } else { Status::Active };
        s.pe = (1 + r.below(PERIOD as u32)) as i16;
        s.plan = t.plan0;
    }
    s
}

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

/// Seconds into the UTC day at which each kind of step happens, so that event times
/// follow the order in which the simulation decides them: campaigns, then period ends,
/// then renewals, then dunning, then the day's own actions.
const W_CAMPAIGN: (f64, f64) = (60.0, 1_800.0);
const W_PERIOD_END: (f64, f64) = (1_800.0, 3_600.0);
const W_RENEW: (f64, f64) = (3_600.0, 14_400.0);
const W_DUNNING: (f64, f64) = (14_400.0, 21_600.0);
const W_DAY: (f64, f64) = (25_200.0, 82_800.0);

/// Share of billing events delivered twice.
const DUPLICATE_SHARE: f64 = 0.005;

/// One user on one day.
pub(crate) struct Day<'a> {
    pub w: &'a World,
    pub u: u32,
    pub t: &'a Traits,
    pub d: i32,
}

impl Day<'_> {
    fn at(&self, r: &mut Stream, win: (f64, f64)) -> i64 {
        self.w.ts(self.d, r.range(win.0, win.1))
    }

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

    fn emit(&self, out: &mut DayOut, r: &mut Stream, row: BillingRow) {
        if r.chance(DUPLICATE_SHARE) {
            out.billing.push(row.clone());
        }
        out.billing.push(row);
    }

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

    fn expire(&self, s: &mut State, out: &mut DayOut, r: &mut Stream, win: (f64, f64), source: u8) {
        let ts = self.at(r, win);
        let row = self.event(s, ts, EXPIRE);
        self.emit(out, r, row);
        s.status = Status::Expired;
        s.expired_at = self.d as i16;
        s.exp_src = source;
    }

    fn subscribe(&self, s: &mut State, out: &mut DayOut, r: &mut Stream, win: (f64, f64), kind: u8) {
        s.plan = self.t.plan0;
        s.status = Status::Active;
        s.pe = (self.d + PERIOD) as i16;
        let ts = self.at(r, win);
        let mut row = self.charge(s, ts, kind, self.price(s));
        row.period_end = Some(self.d + PERIOD);
        self.emit(out, r, row);
    }

    fn finish_episode(&self, s: &mut State, out: &mut DayOut, recovered: Option<u8>, came_back: bool) {
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

    /// Run the day. Order: campaign (on the state at the end of yesterday), period ends,
    /// renewals, dunning, the day's own actions, listening, then the day's truth.
    pub(crate) fn run(&self, s: &mut State, out: &mut DayOut) {
        let (w, t, d) = (self.w, self.t, self.d);
        if d < i32::from(t.signup) {
            return;
        }
        if w.is_campaign_day(d) && s.status.premium() {
            self.campaign(s, out);
        }
        let mut r = Stream::new(w.seed, self.u, d, Purpose::Billing);
        let mut busy = false;
        if d == 0 && t.signup < 0 {
            self.carry_over(s, out, &mut r);
        }
        if d == i32::from(t.signup) {
            self.sign_up(s, out, &mut r);
            busy = true;
        }

        // Period ends of trials and cancelled subscriptions.
        if d == s.pe() && s.status == Status::Trial {
            if r.chance(model::trial_conversion(t, &s.msgs, None, d)) {
                self.subscribe(s, out, &mut r, W_PERIOD_END, SUBSCRIBE);
                busy = true;
            } else {
                self.expire(s, out, &mut r, W_PERIOD_END, SRC_TRIAL);
            }
        } else if d == s.pe() && s.status == Status::Cancelled {
            if r.chance(model::resume_prob(t, &s.msgs, None, d)) {
                s.status = Status::Active;
                s.pe = (d + PERIOD) as i16;
                let ts = self.at(&mut r, W_PERIOD_END);
                let mut row = self.charge(s, ts, RENEW, self.price(s));
                row.period_end = Some(d + PERIOD);
                self.emit(out, &mut r, row);
                self.charged(s);
                busy = true;
            } else {
                self.expire(s, out, &mut r, W_PERIOD_END, SRC_CANCEL);
            }
        }

        // Renewals.
        if s.status == Status::Active && d == s.pe() {
            busy = true;
            let ts = self.at(&mut r, W_RENEW);
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
                self.emit(out, &mut r, row);
                if s.grace == 0 {
                    self.expire(s, out, &mut r, W_DUNNING, s.reason);
                }
            } else {
                s.pe = (d + PERIOD) as i16;
                let mut row = self.charge(s, ts, RENEW, price);
                row.period_end = Some(d + PERIOD);
                self.emit(out, &mut r, row);
                self.charged(s);
                if r.chance(0.004) {
                    let ts = self.at(&mut r, W_DAY);
                    let row = self.charge(s, ts, REFUND, price);
                    self.emit(out, &mut r, row);
                }
            }
        } else if s.status == Status::Dunning && d > i32::from(s.fail_day) {
            // Dunning: recover, retry, or expire at the end of grace.
            let k = d - i32::from(s.fail_day);
            let h = model::recovery_hazard(w, t, s.reason, i32::from(s.fail_day), k, s.reminder());
            if r.chance(h) {
                s.status = Status::Active;
                s.pe = (d + PERIOD) as i16;
                s.last_recovery = d as i16;
                let ts = self.at(&mut r, W_DUNNING);
                let mut row = self.charge(s, ts, PAYMENT_RECOVERED, self.price(s));
                row.period_end = Some(d + PERIOD);
                self.emit(out, &mut r, row);
                self.charged(s);
                self.finish_episode(s, out, Some(k as u8), false);
                busy = true;
            } else if k >= i32::from(s.grace) {
                self.expire(s, out, &mut r, W_DUNNING, s.reason);
            } else if RETRY_DAYS.contains(&k) {
                s.attempt += 1;
                let ts = self.at(&mut r, W_DUNNING);
                let mut row = self.charge(s, ts, PAYMENT_FAILED, self.price(s));
                row.reason = Some(s.reason);
                row.attempt = Some(i16::from(s.attempt));
                self.emit(out, &mut r, row);
            }
        }

        // The day's own actions.
        if !busy {
            match s.status {
                Status::Active => {
                    let lin = model::cancel_lin(t, s, d);
                    let h = model::cancel_hazard(lin, model::msg_delta_sum(&s.msgs, None, d));
                    if r.chance(h) {
                        s.status = Status::Cancelled;
                        let ts = self.at(&mut r, W_DAY);
                        let row = self.event(s, ts, CANCEL);
                        self.emit(out, &mut r, row);
                    } else if r.chance(0.0007) {
                        let options: &[u8] = match s.plan {
                            INDIVIDUAL => &[DUO, FAMILY],
                            DUO => &[INDIVIDUAL, FAMILY],
                            FAMILY => &[INDIVIDUAL, DUO],
                            _ => &[INDIVIDUAL],
                        };
                        s.plan = options[r.below(options.len() as u32) as usize];
                        let ts = self.at(&mut r, W_DAY);
                        let row = self.charge(s, ts, PLAN_CHANGE, self.price(s));
                        self.emit(out, &mut r, row);
                    }
                }
                Status::Expired if d > i32::from(s.expired_at) => {
                    let h = model::comeback_hazard(model::comeback_base(t, d), s.exp_src);
                    if r.chance(h) {
                        if s.ep_pending && d - i32::from(s.expired_at) <= 60 {
                            self.finish_episode(s, out, None, true);
                        }
                        s.sub_start = d as i16;
                        self.subscribe(s, out, &mut r, W_DAY, SUBSCRIBE);
                    }
                }
                Status::Free if r.chance(model::free_conversion(t, d)) => {
                    s.sub_start = d as i16;
                    self.subscribe(s, out, &mut r, W_DAY, SUBSCRIBE);
                }
                _ => {}
            }
        }
        if s.status == Status::Expired && s.ep_pending && d - i32::from(s.expired_at) >= 60 {
            self.finish_episode(s, out, None, false);
        }

        self.listen(s, out);

        // The day's truth, as of its end.
        if s.status.premium() {
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
                            let m = Msg::new(d + 1, ty, ch, model::message_delta(t, s, d + 1, ty, ch));
                            let p = model::delivery_prob(s, d + 1, ch);
                            let effect = if p > 0.0 { p * (h.p_churn(Some(&m)) - base) } else { 0.0 };
                            out.effects.push((self.u, ty, ch, effect));
                        }
                    }
                }
            }
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

    /// Weekly campaigns: pick the user's segment (one message a week at most), a channel
    /// and an arm at random, log the decision with its probability, and apply the message.
    fn campaign(&self, s: &mut State, out: &mut DayOut) {
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

        let msg = Msg::new(d, ty, ch, model::message_delta(t, s, d, ty, ch));
        let p_deliver = model::delivery_prob(s, d, ch);
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
                    row.opened_at = Some(self.local_time_after(ts, &mut o));
                    row.clicked = o.chance((0.25 + 0.3 * f64::from(-msg.delta).max(0.0)).min(0.9));
                }
                if ch != IN_APP && o.chance(if t.annoy { 0.2 } else { 0.004 }) {
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

    /// The first time after `after` that is around the user's usual local listening hour.
    fn local_time_after(&self, after: i64, r: &mut Stream) -> i64 {
        let zone = self.w.zones[self.t.zone as usize];
        let secs = ((f64::from(self.t.hour) + 0.5 + 0.75 * r.normal()).clamp(0.0, 23.99) * 3600.0) as i64;
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

    /// The day's listening (no row when the user does not listen).
    fn listen(&self, s: &mut State, out: &mut DayOut) {
        let (t, d) = (self.t, self.d);
        if s.status == Status::NotYet {
            return;
        }
        let mut r = Stream::new(self.w.seed, self.u, d, Purpose::Listening);
        let rel = model::rel(t, d);
        let premium = s.status.premium();
        let weekday = f64::from(self.w.weekday(d));
        let weekly =
            1.0 + f64::from(t.week_amp) * (std::f64::consts::TAU * (weekday - f64::from(t.week_phase)) / 7.0).cos();
        let zb = f64::from(t.zbase);
        let p_active =
            model::sigmoid(1.0 + 0.9 * zb + 1.4 * rel + 2.0 * (weekly - 1.0)) * if premium { 1.0 } else { 0.55 };
        if !r.chance(p_active) {
            return;
        }
        s.last_active = d as i16;
        let ms = f64::from(t.base_ms)
            * rel.exp()
            * weekly
            * if premium { 1.0 } else { 0.45 }
            * (0.45 * r.normal() - 0.1).exp();
        let podcast = (ms * f64::from(t.pod_share) * r.range(0.5, 1.5)).min(0.9 * ms);
        let music = ms - podcast;
        let streams = (music / (r.range(170.0, 230.0) * 1000.0)).round().max(1.0);
        let skip = model::skip_rate(t, d);
        let skips = r.poisson(streams * skip / (1.0 - skip));
        let unique = (streams * f64::from(t.uniq) * r.range(0.8, 1.2)).round().clamp(1.0, streams);
        let sessions = 1 + r.poisson(ms / 2.4e6);
        let searches = r.poisson(0.4 * f64::from(sessions) * f64::from(t.explore));
        let saves = r.poisson(0.04 * streams * (0.5 * rel).exp() * f64::from(t.explore));
        let platform = if r.chance(0.8) { t.platform } else { t.alt_platform };
        let peak_hour = if r.chance(0.04) {
            None
        } else {
            Some((i32::from(t.hour) + (1.5 * r.normal()).round() as i32).rem_euclid(24) as i8)
        };
        out.activity.push(ActivityRow {
            user: self.u,
            ms: ms.round() as i64,
            podcast_ms: podcast.round() as i64,
            streams: streams as i32,
            skips: skips as i32,
            unique: unique as i32,
            sessions: sessions as i32,
            searches: searches as i32,
            saves: saves as i32,
            platform,
            peak_hour,
        });
    }
}

/// At the end of the world: episodes still open or waiting for a come-back.
pub(crate) fn flush(w: &World, u: u32, t: &Traits, s: &mut State, out: &mut DayOut) {
    if s.ep_pending {
        let day = Day { w, u, t, d: w.last_day() };
        day.finish_episode(s, out, None, false);
    }
}
