//! The types that describe a user, shared by the behaviour model, the ground truth and
//! the day-by-day simulation: fixed traits, the current state, and the messages that
//! still change behaviour. They live below all three so that the model and the truth can
//! read a user without depending on the code that simulates one.

use super::world::FREE;

/// How long a message changes behaviour, in days (the day it is sent and the 29 after).
pub(crate) const MESSAGE_DAYS: i32 = 30;

/// Why a user lapsed, besides the five failure reasons (`State::exp_src`): a cancel, or
/// an unconverted trial.
pub(crate) const SRC_CANCEL: u8 = 5;
pub(crate) const SRC_TRIAL: u8 = 6;

/// What a user is, fixed for the whole world (~70 bytes).
#[derive(Debug, Clone)]
pub(crate) struct Traits {
    /// Day index of signup (negative: before the window).
    pub(crate) signup: i16,
    pub(crate) onset: i16,
    pub(crate) birth_year: i16,
    pub(crate) country: u8,
    /// Index into `World::zones`; the user behaves in it even when `tz_known` is false.
    pub(crate) zone: u8,
    pub(crate) tz_known: bool,
    pub(crate) platform: u8,
    pub(crate) alt_platform: u8,
    pub(crate) push_opt: bool,
    pub(crate) email_opt: bool,
    /// The household's plan (what they subscribe to; also drives churn).
    pub(crate) plan0: u8,
    pub(crate) method: u8,
    /// Free users who never convert.
    pub(crate) hard_free: bool,
    /// Annoyed by push (and a little by email): messages there raise churn.
    pub(crate) annoy: bool,
    /// Usual listening hour, local time.
    pub(crate) hour: u8,
    /// Standardised base engagement.
    pub(crate) zbase: f32,
    pub(crate) base_ms: f32,
    /// Log-engagement change per day after `onset` (negative: fading).
    pub(crate) slope: f32,
    pub(crate) skip_base: f32,
    pub(crate) week_amp: f32,
    pub(crate) week_phase: f32,
    pub(crate) pod_share: f32,
    pub(crate) uniq: f32,
    pub(crate) explore: f32,
    /// Price sensitivity in [0, 1].
    pub(crate) sens: f32,
    /// Unobserved churn propensity (log-hazard).
    pub(crate) frailty: f32,
    /// Responsiveness to each message type (positive helps, negative backfires).
    pub(crate) resp: [f32; 4],
    /// How much a payment reminder speeds up recovery.
    pub(crate) rem_rec: f32,
}

/// Where a user stands with the subscription.
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
    pub(crate) day: i16,
    /// `type * 3 + channel`; `EMPTY` for a free slot.
    pub(crate) kind: u8,
    /// Log-hazard shift while active (see `model::message_delta`).
    pub(crate) delta: f32,
}

const EMPTY: u8 = 255;
/// How many delivered messages a user remembers (the oldest is forgotten first).
const MSG_SLOTS: usize = 5;

impl Msg {
    const NONE: Msg = Msg { day: i16::MIN, kind: EMPTY, delta: 0.0 };

    pub(crate) fn new(day: i32, ty: u8, ch: u8, delta: f32) -> Self {
        Msg { day: day as i16, kind: ty * 3 + ch, delta }
    }
    pub(crate) fn active_on(&self, d: i32) -> bool {
        self.kind != EMPTY && d >= self.day_i32() && d < self.day_i32() + MESSAGE_DAYS
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
    pub(crate) status: Status,
    pub(crate) plan: u8,
    pub(crate) push_opt: bool,
    pub(crate) email_opt: bool,
    /// Period end: the next renewal (Active), expiry (Cancelled) or trial end (Trial).
    pub(crate) pe: i16,
    /// Start of the current subscription (tenure).
    pub(crate) sub_start: i16,
    /// Day of the first renewal charged at a risen price (`i16::MAX`: none).
    pub(crate) exposed_at: i16,
    /// Day of the last recovered payment failure (`i16::MIN`: none).
    pub(crate) last_recovery: i16,
    pub(crate) last_active: i16,
    pub(crate) expired_at: i16,
    /// Why the user lapsed: a failure reason, `SRC_CANCEL` or `SRC_TRIAL`.
    pub(crate) exp_src: u8,
    pub(crate) seq: u16,
    /// The dunning episode (current, or expired and waiting to see a come-back).
    pub(crate) ep_pending: bool,
    pub(crate) reason: u8,
    pub(crate) grace: u8,
    pub(crate) attempt: u8,
    pub(crate) fail_day: i16,
    pub(crate) rem_day: i16,
    pub(crate) rem_strength: f32,
    pub(crate) fail_ts: i64,
    pub(crate) msgs: [Msg; MSG_SLOTS],
}

impl State {
    /// A user who has not signed up yet.
    pub(crate) fn new(t: &Traits) -> Self {
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

    /// Keep a delivered message, in place of the oldest one.
    pub(crate) fn remember(&mut self, m: Msg) {
        let slot = (0..MSG_SLOTS).min_by_key(|&i| self.msgs[i].day).unwrap_or(0);
        self.msgs[slot] = m;
    }
}
