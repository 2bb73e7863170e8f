//! The stage's account of itself: what was learned per arm, which learner was chosen and
//! why, the policy's off-policy value, tonight's plan — in the manifest
//! (`details.interventions`) and as `reports/snapshot=S/interventions.html`.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::NaiveDate;
use serde::Serialize;

use super::evaluate;
use super::policy::Arm;
use crate::report::{COLORS, Line, chart, esc, page};

/// A Qini curve: (share targeted, churn prevented per user).
pub(crate) type Curve = Vec<(f64, f64)>;
/// Each learner's Qini curve for one arm.
pub(crate) type LearnerCurves = Vec<(&'static str, Curve)>;

/// What the uplift stage learned about one arm.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ArmReport {
    pub message_type: String,
    pub channel: String,
    /// Decisions in the training and evaluation slices.
    pub training_rows: usize,
    pub evaluation_rows: usize,
    pub sent: usize,
    pub held_out: usize,
    /// Inverse-propensity-weighted churn rate held out minus sent, on the training slice
    /// (positive: the message keeps users on average).
    pub average_churn_reduction: f64,
    /// Unsubscribes per send (all decisions of the arm).
    pub unsubscribe_rate: f64,
    /// Inverse-propensity-weighted active days in the 14 days after, sent minus held
    /// out, on the training slice (None: engagement not measured).
    pub active_days_gained: Option<f64>,
    /// Qini coefficient and AUUC of each learner on the evaluation slice (churn prevented
    /// per user; None when the arm is too small to fit or has no later decisions).
    pub qini: BTreeMap<&'static str, f64>,
    pub auuc: BTreeMap<&'static str, f64>,
    /// Whether a model of this arm plans tonight's list.
    pub used: bool,
    /// The share of the T-learner's effect in tonight's DR-learner model of this arm's
    /// message type (`models/uplift/learners.rs`, `t_share`: it grows with the type's decisions; 0
    /// under the T-learner or without a model).
    pub t_share: f64,
}

/// The stage's account of itself (manifest `details.interventions` and the HTML report).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub decisions: usize,
    pub evaluation_from: NaiveDate,
    pub arms: Vec<ArmReport>,
    /// Summed Qini over the arms both learners were evaluated on.
    pub total_qini: BTreeMap<&'static str, f64>,
    /// Bootstrap standard error of the T-learner's summed Qini minus the DR-learner's.
    pub qini_difference_se: f64,
    pub chosen_learner: &'static str,
    pub evaluation: Option<evaluate::PolicyEvaluation>,
    pub planned: usize,
    pub planned_by_channel: BTreeMap<String, usize>,
    pub expected_churn_reduction: f64,
    /// Tonight's plan: its value, unsubscribes, and the prices of its constraints.
    pub plan: super::prices::Account,
    /// The value–unsubscribes frontier as the reach price varies.
    pub frontier: Vec<super::prices::FrontierPoint>,
    #[serde(skip)]
    pub qini_curves: Vec<(Arm, LearnerCurves)>,
}

/// Where the page goes, relative to the output root.
pub(crate) fn path(s: NaiveDate) -> String {
    format!("reports/snapshot={s}/interventions.html")
}

/// Tonight's value, unsubscribes and prices, and the frontier with tonight's plan on it.
fn plan_html(r: &Report) -> String {
    let p = &r.plan;
    let mut body = format!(
        "<p>Value {:.4} (the units of <code>[interventions.value]</code>; churn prevented when every weight is \
         zero); expected unsubscribes {:.2}.</p><table><tr><th>channel</th><th>expected unsubscribes</th>\
         <th>budget price</th><th>unsubscribe price</th></tr>",
        p.value,
        p.unsubscribes.iter().sum::<f64>()
    );
    for (c, name) in crate::contract::CHANNELS.iter().enumerate() {
        let _ = write!(
            body,
            "<tr><td>{name}</td><td>{:.2}</td><td>{:.5}</td><td>{:.5}</td></tr>",
            p.unsubscribes[c], p.budget_prices[c], p.unsubscribe_prices[c]
        );
    }
    body.push_str("</table>");
    if r.frontier.len() > 1 {
        body.push_str(
            "<h2>Value against unsubscribes</h2><p>The plans of largest value minus λ × expected unsubscribes, \
             for λ from 0 up to where no send that risks an unsubscribe is worth it (budgets kept, caps \
             aside); the marker is tonight's plan.</p>",
        );
        let points: Vec<(f64, f64)> = r.frontier.iter().map(|f| (f.unsubscribes, f.value)).collect();
        let tonight = (p.unsubscribes.iter().sum(), p.value);
        body.push_str(&chart(
            "frontier",
            "expected unsubscribes",
            "value",
            &[
                Line { label: "plans as the reach price rises".into(), color: COLORS[0], points, dashed: false },
                // A line of one point: the legend's entry for the dot.
                Line { label: "tonight".into(), color: COLORS[1], points: vec![tonight], dashed: false },
            ],
            &[(tonight.0, tonight.1, COLORS[1])],
        ));
    }
    body
}

/// The human-readable summary: learners, their Qini on the later slice, the policy's
/// off-policy value, and tonight's plan.
pub(super) fn html(r: &Report, s: NaiveDate) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>{} past decisions with closed labels; learners fitted on decisions before {} and scored on the later ones. \
         Chosen learner: <b>{}</b> (summed Qini: T {:.4}, DR {:.4}).</p>",
        r.decisions,
        r.evaluation_from,
        esc(r.chosen_learner),
        r.total_qini.get("t_learner").copied().unwrap_or(0.0),
        r.total_qini.get("dr_learner").copied().unwrap_or(0.0),
    );
    body.push_str(
        "<h2>Arms</h2><table><tr><th>message</th><th>channel</th><th>training rows</th><th>later rows</th>\
         <th>average churn cut</th><th>Qini T</th><th>Qini DR</th><th>AUUC T</th><th>AUUC DR</th><th>T share</th><th>used</th></tr>",
    );
    let num = |v: Option<&f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
    for a in &r.arms {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td></tr>",
            esc(&a.message_type),
            esc(&a.channel),
            a.training_rows,
            a.evaluation_rows,
            a.average_churn_reduction,
            num(a.qini.get("t_learner")),
            num(a.qini.get("dr_learner")),
            num(a.auuc.get("t_learner")),
            num(a.auuc.get("dr_learner")),
            a.t_share,
            if a.used { "yes" } else { "no" }
        );
    }
    body.push_str("</table>");
    if let Some(e) = &r.evaluation {
        let _ = write!(
            body,
            "<h2>Policy value on the later slice</h2><p>Replayed on {} premium users of {} snapshots ({} logged \
             decisions) with models that never saw them; churn events prevented per 1,000 premium users against \
             sending nothing, 95% intervals. Sends outside support go to users their message type was never tried \
             on: the estimates there rest on extrapolated outcome models (DR) or on nothing (IPS). For those sends \
             the DR value holds the outcome models' guess, which no logged decision checks and its interval does \
             not account for; the last column leaves it out.</p>\
             <table><tr><th>policy</th><th>sends</th><th>outside support</th><th>IPS</th><th>DR</th>\
             <th>DR from outside support</th><th>DR within support</th></tr>",
            e.premium_users,
            e.snapshots.len(),
            e.logged_decisions
        );
        for p in e.policies.iter().chain(std::iter::once(&e.difference)) {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2} [{:.2}, {:.2}]</td><td>{:.2} [{:.2}, {:.2}]</td>\
                 <td>{:.2}</td><td>{:.2} [{:.2}, {:.2}]</td></tr>",
                esc(&p.policy),
                p.sends,
                p.sends_outside_support,
                p.ips.per_1000,
                p.ips.low,
                p.ips.high,
                p.dr.per_1000,
                p.dr.low,
                p.dr.high,
                p.dr_outside_support,
                p.dr.per_1000 - p.dr_outside_support,
                p.dr.low - p.dr_outside_support,
                p.dr.high - p.dr_outside_support
            );
        }
        body.push_str("</table>");
    }
    let _ = write!(
        body,
        "<h2>Tonight</h2><p>{} users chosen ({}), expected to prevent {:.1} churn events in total.</p>",
        r.planned,
        { r.planned_by_channel.iter().map(|(c, n)| format!("{c} {n}")).collect::<Vec<_>>().join(", ") },
        r.expected_churn_reduction
    );
    body.push_str(&plan_html(r));
    body.push_str("<h2>Qini curves on the later slice</h2>");
    for (arm, curves) in &r.qini_curves {
        if curves.is_empty() {
            continue;
        }
        let mut lines: Vec<Line> = curves
            .iter()
            .enumerate()
            .map(|(i, (name, pts))| Line {
                label: name.to_string(),
                color: COLORS[i],
                points: pts.clone(),
                dashed: false,
            })
            .collect();
        if let Some((_, pts)) = curves.first() {
            let end = pts.last().map_or(0.0, |p| p.1);
            lines.push(Line {
                label: "random".into(),
                color: "#999999",
                points: vec![(0.0, 0.0), (1.0, end)],
                dashed: true,
            });
        }
        body.push_str(&chart(
            &format!("{} by {}", arm.message_type, arm.channel),
            "share of users targeted (best first)",
            "churn prevented per user",
            &lines,
            &[],
        ));
    }
    page(&format!("Interventions — snapshot {s}"), &body)
}
