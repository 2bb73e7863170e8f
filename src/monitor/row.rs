//! One row of `monitor/`: a check, what it looked at, the statistic and its value, the limit,
//! the status, and what it was compared with.

use crate::config::Limit;

/// How bad a check's result is. Ordered: the worst of a night is its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    Ok,
    Warn,
    Alert,
}

impl Status {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Alert => "alert",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub check: &'static str,
    pub subject: String,
    pub statistic: &'static str,
    pub value: f64,
    /// The alert limit the value was judged against; None for a figure shown, not judged.
    pub threshold: Option<f64>,
    pub status: Status,
    pub baseline: String,
}

impl Check {
    /// A figure, shown without a limit until [`Check::judge`] gives it one.
    pub(crate) fn new(
        check: &'static str,
        subject: String,
        statistic: &'static str,
        value: f64,
        baseline: String,
    ) -> Self {
        Check { check, subject, statistic, value, threshold: None, status: Status::Ok, baseline }
    }

    /// Judge the change's `size` (≥ 0, in the limit's units) against `limit`. With
    /// `significance` = (z, min_z), z its distance from no change in standard errors, a
    /// change counts only when also at least min_z standard errors: sampling noise alone
    /// is not an alarm.
    pub(crate) fn judge(self, size: f64, limit: Limit, significance: Option<(f64, f64)>) -> Self {
        let sure = significance.is_none_or(|(z, min_z)| z.abs() >= min_z);
        let status = if !size.is_finite() || !sure {
            Status::Ok
        } else if size >= limit.alert {
            Status::Alert
        } else if size >= limit.warn {
            Status::Warn
        } else {
            Status::Ok
        };
        Check { threshold: Some(limit.alert), status, ..self }
    }

    /// How far past its alert limit the value is (1 = at it); 0 for a figure not judged.
    pub(crate) fn severity(&self) -> f64 {
        match self.threshold {
            Some(t) if self.statistic == "chi_squared_p" => t / self.value.max(f64::MIN_POSITIVE),
            Some(t) if t > 0.0 => self.value.abs() / t,
            _ => 0.0,
        }
    }

    /// A test's p-value: alerts below 0.001, warns below 0.01 (the small-sample form of
    /// a share check, where distances between shares are mostly noise).
    pub(crate) fn p_value(check: &'static str, subject: String, p: f64, baseline: String) -> Self {
        let status = if p < 0.001 {
            Status::Alert
        } else if p < 0.01 {
            Status::Warn
        } else {
            Status::Ok
        };
        Check { check, subject, statistic: "chi_squared_p", value: p, threshold: Some(0.001), status, baseline }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_alerts_past_its_limit_only_when_it_is_not_noise() {
        let limit = Limit { warn: 0.2, alert: 0.4 };
        let judge = |size: f64, z: Option<(f64, f64)>| {
            Check::new("c", "s".into(), "x", size, "b".into()).judge(size, limit, z).status
        };
        assert_eq!(judge(0.1, None), Status::Ok);
        assert_eq!(judge(0.2, None), Status::Warn);
        assert_eq!(judge(0.5, None), Status::Alert);
        assert_eq!(judge(0.5, Some((3.0, 5.0))), Status::Ok, "half again, but within noise");
        assert_eq!(judge(0.5, Some((-6.0, 5.0))), Status::Alert);
        assert_eq!(judge(f64::NAN, None), Status::Ok);
        assert_eq!(Check::p_value("c", "s".into(), 1e-4, "b".into()).status, Status::Alert);
        assert_eq!(Check::p_value("c", "s".into(), 0.005, "b".into()).status, Status::Warn);
    }
}
