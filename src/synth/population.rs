//! Who the users are: each one's fixed traits, drawn once from their own random stream,
//! and their state when the window opens. Kept apart from the day loop because it runs
//! once per user before the first day, not once per user and day.

use chrono::Datelike;

use super::rng::{Purpose, Stream};
use super::state::{State, Status, Traits};
use super::world::*;

/// A responsiveness to one message type: about half the users barely react, a third
/// are helped, a tenth are put off.
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

/// The fixed traits of user `u`.
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
