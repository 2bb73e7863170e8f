//! A user's listening on a day: whether they listen, and the one activity row that sums
//! it up, from their level, engagement trend and weekly rhythm (less when not premium).

use super::context::{Day, DayOut};
use crate::synth::model;
use crate::synth::rng::{Purpose, Stream};
use crate::synth::state::{State, Status};
use crate::synth::tables::ActivityRow;

impl Day<'_> {
    /// The day's listening (no row when the user does not listen).
    pub(super) fn listen(&self, s: &mut State, out: &mut DayOut) {
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
