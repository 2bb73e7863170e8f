//! The behaviour model: every hazard and probability the world is made of, as pure
//! functions of a user's traits, state and the day. The day-by-day simulation (`day`)
//! draws events with these functions and the ground truth (`truth`) integrates the same
//! functions, so the truth is exactly the process that generated the data.

use super::state::{MESSAGE_DAYS, Msg, State, Status, Traits};
use super::world::*;

/// Log of the baseline daily cancel hazard.
const H0: f64 = -6.9;
/// Hazard effect of the household plan (`free`, individual, duo, family, student).
const PLAN_EFFECT: [f64; 5] = [0.0, 0.0, -0.25, -0.5, 0.35];
/// Highest daily cancel hazard.
const MAX_HAZARD: f64 = 0.3;
/// Come-back hazard multiplier by why the user lapsed: the five failure reasons, then
/// a cancel (`SRC_CANCEL`), then an unconverted trial (`SRC_TRIAL`).
const COMEBACK_BY_SOURCE: [f64; 7] = [1.6, 1.4, 1.0, 2.0, 0.2, 0.8, 0.5];
const COMEBACK_BASE: f64 = 0.0035;
/// How much a payment reminder multiplies recovery, by failure reason.
const REMINDER_BY_REASON: [f64; 5] = [0.3, 3.0, 1.0, 0.2, 0.0];
/// Channel strength of a message's effect (push, email, in-app).
const CHANNEL_STRENGTH: [f64; 3] = [1.0, 0.7, 0.8];

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The user's engagement on day `d` relative to their own base level, in log units:
/// 0 for stable users, falling for faders from their onset day, rising for growers.
pub(crate) fn rel(t: &Traits, d: i32) -> f64 {
    if t.slope == 0.0 {
        return 0.0;
    }
    (f64::from(t.slope) * f64::from((d - i32::from(t.onset)).max(0))).clamp(-3.0, 0.8)
}

/// How far engagement has faded (0 when not fading).
pub(crate) fn fade(t: &Traits, d: i32) -> f64 {
    (-rel(t, d)).max(0.0)
}

/// The share of plays skipped: rises as engagement fades.
pub(crate) fn skip_rate(t: &Traits, d: i32) -> f64 {
    (f64::from(t.skip_base) + 0.12 * fade(t, d)).clamp(0.02, 0.85)
}

/// Log daily cancel hazard on day `d` of an active, auto-renewing subscriber, before
/// message effects.
pub(crate) fn cancel_lin(t: &Traits, s: &State, d: i32) -> f64 {
    let r = rel(t, d);
    let skip = skip_rate(t, d);
    let shock = if s.exposed_at != i16::MAX && d >= i32::from(s.exposed_at) {
        (-f64::from(d - i32::from(s.exposed_at)) / 60.0).exp()
    } else {
        0.0
    };
    let recent_fail =
        if s.last_recovery != i16::MIN { (-f64::from(d - i32::from(s.last_recovery)) / 30.0).exp() } else { 0.0 };
    let tenure = d - i32::from(s.sub_start);
    let newness = if tenure < 60 { 1.0 - f64::from(tenure.max(0)) / 60.0 } else { 0.0 };
    H0 - 0.3 * f64::from(t.zbase) + 0.9 * (-r).max(0.0) + 3.0 * (skip - 0.2) - 0.6 * r.max(0.0)
        + 1.4 * f64::from(t.sens) * shock
        + 1.0 * recent_fail
        + 1.0 * newness
        + PLAN_EFFECT[t.plan0 as usize]
        + f64::from(t.frailty)
}

pub(crate) fn cancel_hazard(lin: f64, msg_delta: f64) -> f64 {
    (lin + msg_delta).exp().min(MAX_HAZARD)
}

/// The summed log-hazard shift on day `d` of the messages delivered in the last 30 days.
pub(crate) fn msg_delta_sum(msgs: &[Msg], extra: Option<&Msg>, d: i32) -> f64 {
    msgs.iter().chain(extra).filter(|m| m.active_on(d)).map(|m| f64::from(m.delta)).sum()
}

/// The log-hazard shift a message of type `ty` on channel `ch`, delivered on day `d`, has
/// on this user's cancel hazard (and, negated, on a trial's conversion) for 30 days.
/// Negative helps. `s` is the state at the end of day `d - 1`.
pub(crate) fn message_delta(w: &World, t: &Traits, s: &State, d: i32, ty: u8, ch: u8) -> f32 {
    let resp = f64::from(t.resp[ty as usize]);
    let tenure = d - 1 - i32::from(s.sub_start);
    let faded = (fade(t, d - 1) / 0.8).min(1.0);
    let (base, strength, annoyed) = match w.effects {
        EffectShapes::Home => {
            let base = match ty {
                EDUCATION => {
                    let newness = if s.status == Status::Trial || tenure < 45 { 1.0 } else { 0.15 };
                    -0.7 * resp * newness
                }
                WINBACK => -f64::from(t.sens) * resp,
                REMINDER => -0.1 * resp,
                _ => -0.8 * resp * faded,
            };
            (base, CHANNEL_STRENGTH[ch as usize], [0.6, 0.15, 0.0][ch as usize])
        }
        EffectShapes::Turned => {
            let base = match ty {
                EDUCATION => -0.7 * resp * if tenure >= 180 { 1.0 } else { 0.2 },
                WINBACK => -(0.75 - f64::from(t.sens)) * resp,
                REMINDER => -0.3 * resp,
                _ => resp * (-0.6 + 0.9 * faded),
            };
            (base, [0.6, 1.0, 0.9][ch as usize], [0.2, 0.5, 0.0][ch as usize])
        }
    };
    let mut delta = base * strength;
    if t.annoy {
        delta += annoyed;
    }
    if ch == PUSH {
        let recent =
            s.msgs.iter().filter(|m| m.channel() == PUSH && m.day_i32() > d - MESSAGE_DAYS && m.day_i32() < d).count();
        if recent >= 2 {
            delta += 0.15 * (recent as f64 - 1.0);
        }
    }
    delta as f32
}

/// The chance that a message sent on day `d` reaches the user (state at end of `d - 1`).
pub(crate) fn delivery_prob(w: &World, s: &State, d: i32, ch: u8) -> f64 {
    let turned = w.effects == EffectShapes::Turned;
    match ch {
        PUSH if s.push_opt => {
            if turned {
                0.8
            } else {
                0.97
            }
        }
        EMAIL if s.email_opt => 0.98,
        IN_APP if i32::from(s.last_active) >= d - if turned { 3 } else { 7 } => 1.0,
        _ => 0.0,
    }
}

/// The chance that a delivered message on `ch` makes the user unsubscribe from it.
pub(crate) fn unsubscribe_prob(w: &World, t: &Traits, ch: u8) -> f64 {
    let annoying = match w.effects {
        EffectShapes::Home => [0.2, 0.2, 0.0],
        EffectShapes::Turned => [0.08, 0.3, 0.0],
    };
    if ch == IN_APP {
        0.0
    } else if t.annoy {
        annoying[ch as usize]
    } else {
        0.004
    }
}

/// Hours after their usual listening hour that users read a message on `ch`.
pub(crate) fn reading_delay_hours(w: &World, ch: u8) -> f64 {
    match (w.effects, ch) {
        (EffectShapes::Turned, EMAIL) => 4.0,
        _ => 0.0,
    }
}

/// Chance that a renewal charge fails.
pub(crate) fn fail_prob(t: &Traits) -> f64 {
    let student = if t.plan0 == STUDENT { 1.3 } else { 1.0 };
    METHOD_FAIL[t.method as usize] * student * (-0.15 * f64::from(t.zbase)).exp()
}

/// How much a delivered payment reminder on channel `ch` raises this user's recovery.
pub(crate) fn reminder_strength(t: &Traits, ch: u8) -> f32 {
    t.rem_rec * [1.0, 1.2, 0.6][ch as usize]
}

/// Daily chance that a dunning episode opened on `fail_day` recovers on day
/// `fail_day + k` (k ≥ 1), given a reminder (day, strength) if one was delivered.
pub(crate) fn recovery_hazard(
    w: &World,
    t: &Traits,
    reason: u8,
    fail_day: i32,
    k: i32,
    rem: Option<(i32, f32)>,
) -> f64 {
    let d = fail_day + k;
    let mut r = match reason {
        INSUFFICIENT_FUNDS => 0.025,
        EXPIRED_CARD => 0.02,
        CARD_DECLINED => 0.03,
        PROCESSING_ERROR => {
            if k <= 3 {
                0.35
            } else {
                0.06
            }
        }
        FRAUD_SUSPECTED => 0.003,
        _ => 0.0,
    };
    if reason == INSUFFICIENT_FUNDS && matches!(w.day_of_month(d), 1 | 2 | 15 | 16) {
        r *= 4.0;
    }
    if RETRY_DAYS.contains(&k) && matches!(reason, INSUFFICIENT_FUNDS | CARD_DECLINED | PROCESSING_ERROR) {
        r *= 1.8;
    }
    r *= METHOD_RECOVERY[t.method as usize];
    r *= (0.35 * (f64::from(t.zbase) + rel(t, d)).clamp(-2.5, 2.5)).exp();
    if let Some((day, strength)) = rem
        && d >= day
    {
        r *= 1.0 + REMINDER_BY_REASON[reason as usize] * f64::from(strength);
    }
    r.min(0.9)
}

/// Chance that a cancelled subscriber renews after all at period end `pe` instead of
/// expiring: small, more after a win-back offer delivered in the 30 days before.
pub(crate) fn resume_prob(t: &Traits, msgs: &[Msg], extra: Option<&Msg>, pe: i32) -> f64 {
    let offers: f64 = msgs
        .iter()
        .chain(extra)
        .filter(|m| m.kind_type() == WINBACK && m.active_on(pe))
        .map(|m| {
            0.45 * f64::from(t.sens)
                * f64::from(t.resp[WINBACK as usize]).max(0.0)
                * CHANNEL_STRENGTH[m.channel() as usize]
        })
        .sum();
    (0.03 + offers).min(0.85)
}

/// Chance that a trial converts to a paid subscription at its end `pe`.
pub(crate) fn trial_conversion(t: &Traits, msgs: &[Msg], extra: Option<&Msg>, pe: i32) -> f64 {
    sigmoid(0.1 + 0.8 * f64::from(t.zbase) + 1.2 * rel(t, pe) - msg_delta_sum(msgs, extra, pe))
}

/// The source-independent part of the daily come-back hazard of a lapsed subscriber.
pub(crate) fn comeback_base(t: &Traits, d: i32) -> f64 {
    COMEBACK_BASE * (0.5 * f64::from(t.zbase) + 0.8 * rel(t, d)).exp()
}

/// Daily chance that a lapsed subscriber subscribes again.
pub(crate) fn comeback_hazard(base: f64, source: u8) -> f64 {
    (base * COMEBACK_BY_SOURCE[source as usize]).min(0.2)
}

/// Daily chance that a free user who has never paid subscribes.
pub(crate) fn free_conversion(t: &Traits, d: i32) -> f64 {
    if t.hard_free { 0.0 } else { 0.0012 * (0.5 * f64::from(t.zbase) + 0.5 * rel(t, d)).exp() }
}
