//! `admit verify`: does this email have access to this workspace right now,
//! on the plan expected? Reads the store, asks the core's `access`, and turns
//! the answer into a verdict (PASS or HOLD) with the reasons it did not pass.
//! The verdict and its two renderings are pure; only [`check`] does IO.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::ExitCode;

use admit_core::provisioning::{Access, AccessReason, access};
use admit_core::{BillingState, Catalog, Email, PlanKey, Timestamp, WorkspaceId};
use admit_store::{Store, StoreError};
use serde::Serialize;

/// Exit status when `verify` reaches no verdict (usage, configuration or
/// database error); 0 and 1 are PASS and HOLD.
pub const NO_VERDICT: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "HOLD")]
    Hold,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Hold => "HOLD",
        }
    }

    pub fn exit_code(self) -> ExitCode {
        match self {
            Verdict::Pass => ExitCode::SUCCESS,
            Verdict::Hold => ExitCode::from(1),
        }
    }
}

/// What `verify` asks about; parsed at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub workspace: WorkspaceId,
    pub email: Email,
    /// The plan the workspace is expected to be on, when the caller says.
    pub plan: Option<PlanKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub verdict: Verdict,
    /// Why it is not PASS: `workspace_not_found`, `not_a_member`,
    /// `expected plan <p>, found <q> (<why>)`. Empty for PASS.
    pub reasons: Vec<String>,
    pub access: Access,
    /// The event that last changed the billing state and the scenario
    /// (S1–S18) that decided it.
    pub decided_by: Option<(String, Option<String>)>,
}

/// PASS when the email is a member and, if a plan is expected, the effective
/// plan is that plan; HOLD otherwise.
pub fn judge(access: Access, expected_plan: Option<&PlanKey>) -> Report {
    let mut reasons = Vec::new();
    if !access.allowed {
        // `workspace_not_found` or `not_a_member`.
        reasons.push(access.reason.as_str().to_owned());
    }
    let workspace_found = access.reason != AccessReason::WorkspaceNotFound;
    if let Some(expected) = expected_plan
        && workspace_found
        && *expected != access.plan
    {
        reasons.push(format!(
            "expected plan {expected}, found {} ({})",
            access.plan,
            access.plan_reason.as_str()
        ));
    }
    Report {
        verdict: if reasons.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Hold
        },
        reasons,
        access,
        decided_by: None,
    }
}

/// Reads the workspace and its billing state and judges the request at `now`.
pub async fn check(
    store: &dyn Store,
    catalog: &Catalog,
    grace_period_secs: i64,
    request: &Request,
    now: Timestamp,
) -> Result<Report, StoreError> {
    let workspace = store.get_workspace(&request.workspace).await?;
    let billing = match workspace {
        Some(_) => store
            .get_billing(&request.workspace)
            .await?
            .unwrap_or_default(),
        None => BillingState::default(),
    };
    let access = access(
        workspace.as_ref(),
        &request.email,
        &billing,
        catalog,
        grace_period_secs,
        now,
    );
    let mut report = judge(access, request.plan.as_ref());
    if let Some(event) = &billing.updated_by_event {
        let scenario = store.get_event(event).await?.and_then(|e| e.scenario);
        report.decided_by = Some((event.to_string(), scenario));
    }
    Ok(report)
}

/// The human-readable report.
pub fn render_text(request: &Request, report: &Report) -> String {
    let access = &report.access;
    let none = || "none".to_owned();
    let features = if access.entitlements.features.is_empty() {
        none()
    } else {
        access
            .entitlements
            .features
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let limits = if access.entitlements.limits.is_empty() {
        none()
    } else {
        access
            .entitlements
            .limits
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = [
        ("verdict", report.verdict.as_str().to_owned()),
        ("workspace", request.workspace.to_string()),
        ("email", request.email.to_string()),
        ("role", access.role.map_or_else(none, |r| r.to_string())),
        (
            "plan",
            format!("{} ({})", access.plan, access.plan_reason.as_str()),
        ),
        (
            "subscription",
            access
                .subscription_status
                .map_or_else(none, |s| s.to_string()),
        ),
        ("features", features),
        ("limits", limits),
        ("reason", access.reason.as_str().to_owned()),
        (
            "decided by",
            report
                .decided_by
                .as_ref()
                .map_or_else(none, |(event, scenario)| {
                    match scenario
                        .as_deref()
                        .and_then(admit_core::provisioning::Scenario::parse)
                    {
                        Some(s) => format!("{s} ({}), event {event}", s.what()),
                        None => format!("event {event}"),
                    }
                }),
        ),
    ];
    let mut text = String::new();
    for (label, value) in rows {
        let _ = writeln!(text, "{label:<13} {value}");
    }
    if !report.reasons.is_empty() {
        let _ = writeln!(text, "not passed because:");
        for reason in &report.reasons {
            let _ = writeln!(text, "  - {reason}");
        }
    }
    text
}

#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    verdict: Verdict,
    reasons: &'a [String],
    access: JsonAccess<'a>,
    /// The scenario that set the current billing state.
    scenario: Option<&'a str>,
    updated_by_event: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct JsonAccess<'a> {
    allowed: bool,
    role: Option<&'static str>,
    plan: &'a str,
    subscription_status: Option<&'static str>,
    entitlements: JsonEntitlements<'a>,
    reason: &'static str,
}

#[derive(Debug, Serialize)]
struct JsonEntitlements<'a> {
    features: &'a BTreeSet<String>,
    limits: &'a BTreeMap<String, i64>,
}

/// The machine-readable report (`--json`), one line.
pub fn render_json(report: &Report) -> Result<String, serde_json::Error> {
    let access = &report.access;
    serde_json::to_string(&JsonReport {
        verdict: report.verdict,
        reasons: &report.reasons,
        access: JsonAccess {
            allowed: access.allowed,
            role: access.role.map(|r| r.as_str()),
            plan: access.plan.as_str(),
            subscription_status: access.subscription_status.map(|s| s.as_str()),
            entitlements: JsonEntitlements {
                features: &access.entitlements.features,
                limits: &access.entitlements.limits,
            },
            reason: access.reason.as_str(),
        },
        scenario: report
            .decided_by
            .as_ref()
            .and_then(|(_, scenario)| scenario.as_deref()),
        updated_by_event: report.decided_by.as_ref().map(|(event, _)| event.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use admit_core::{Entitlements, Plan, Role, SubscriptionStatus, Workspace};
    use admit_store::Actor;

    use super::*;

    const DAY: i64 = 86_400;

    fn now() -> Timestamp {
        Timestamp::from_unix(1_767_225_600)
    }

    fn email(raw: &str) -> Email {
        Email::parse(raw).expect("valid address")
    }

    fn catalog() -> Catalog {
        let plan = |key: &str, prices: &[&str], seats: i64, free: bool| Plan {
            key: PlanKey::new(key),
            name: key.to_uppercase(),
            prices: prices.iter().map(|p| (*p).to_owned()).collect(),
            entitlements: Entitlements {
                features: if free {
                    BTreeSet::new()
                } else {
                    BTreeSet::from(["sso".to_owned()])
                },
                limits: BTreeMap::from([("seats".to_owned(), seats)]),
            },
            free_tier: free,
            rank: 0,
        };
        Catalog::new([
            plan("free", &[], 3, true),
            plan("pro", &["price_pro"], 25, false),
        ])
        .expect("valid catalog")
    }

    fn workspace() -> Workspace {
        Workspace {
            id: WorkspaceId::parse("acme").expect("id"),
            name: "Acme".into(),
            created_at: now(),
            members: BTreeMap::from([(email("dana@acme.test"), Role::Owner)]),
        }
    }

    fn billing(status: SubscriptionStatus, past_due_since: Option<Timestamp>) -> BillingState {
        BillingState {
            subscription_status: Some(status),
            subscription_plan: Some(PlanKey::new("pro")),
            past_due_since,
            ..BillingState::default()
        }
    }

    fn verify(
        workspace: Option<&Workspace>,
        who: &str,
        billing: &BillingState,
        plan: Option<&str>,
    ) -> Report {
        let access = access(workspace, &email(who), billing, &catalog(), 7 * DAY, now());
        judge(access, plan.map(PlanKey::new).as_ref())
    }

    #[test]
    fn pass_for_a_member_on_the_expected_plan() {
        let report = verify(
            Some(&workspace()),
            "Dana@Acme.test",
            &billing(SubscriptionStatus::Active, None),
            Some("pro"),
        );
        assert_eq!(report.verdict, Verdict::Pass);
        assert!(report.reasons.is_empty());
        assert_eq!(report.verdict.exit_code(), ExitCode::SUCCESS);
        // Without --plan, membership alone passes.
        let report = verify(
            Some(&workspace()),
            "dana@acme.test",
            &BillingState::default(),
            None,
        );
        assert_eq!(report.verdict, Verdict::Pass);
        assert_eq!(report.access.plan.as_str(), "free");
    }

    #[test]
    fn hold_when_not_a_member() {
        let report = verify(
            Some(&workspace()),
            "eve@acme.test",
            &billing(SubscriptionStatus::Active, None),
            Some("pro"),
        );
        assert_eq!(report.verdict, Verdict::Hold);
        assert_eq!(report.reasons, ["not_a_member"]);
        assert_eq!(report.verdict.exit_code(), ExitCode::from(1));
    }

    #[test]
    fn hold_on_the_wrong_plan_says_why_the_plan_is_what_it_is() {
        let report = verify(
            Some(&workspace()),
            "dana@acme.test",
            &billing(
                SubscriptionStatus::PastDue,
                Some(now().plus_seconds(-8 * DAY)),
            ),
            Some("pro"),
        );
        assert_eq!(report.verdict, Verdict::Hold);
        assert_eq!(
            report.reasons,
            ["expected plan pro, found free (past_due_grace_expired)"]
        );
        // Both reasons when neither holds.
        let report = verify(
            Some(&workspace()),
            "eve@acme.test",
            &BillingState::default(),
            Some("pro"),
        );
        assert_eq!(
            report.reasons,
            ["not_a_member", "expected plan pro, found free (free_tier)"]
        );
    }

    #[test]
    fn hold_when_the_workspace_is_not_found() {
        let report = verify(
            None,
            "dana@acme.test",
            &BillingState::default(),
            Some("pro"),
        );
        assert_eq!(report.verdict, Verdict::Hold);
        assert_eq!(report.reasons, ["workspace_not_found"]);
    }

    #[test]
    fn the_plan_matches_during_the_grace_period() {
        let report = verify(
            Some(&workspace()),
            "dana@acme.test",
            &billing(SubscriptionStatus::PastDue, Some(now().plus_seconds(-DAY))),
            Some("pro"),
        );
        assert_eq!(report.verdict, Verdict::Pass, "{:?}", report.reasons);
        assert_eq!(report.access.plan_reason.as_str(), "past_due_grace");
    }

    #[test]
    fn renders_text_and_json() {
        let request = Request {
            workspace: WorkspaceId::parse("acme").expect("id"),
            email: email("eve@acme.test"),
            plan: Some(PlanKey::new("pro")),
        };
        let report = verify(
            Some(&workspace()),
            "eve@acme.test",
            &billing(SubscriptionStatus::PastDue, Some(now().plus_seconds(-DAY))),
            Some("pro"),
        );
        let text = render_text(&request, &report);
        for line in [
            "verdict       HOLD",
            "workspace     acme",
            "email         eve@acme.test",
            "role          none",
            "plan          pro (past_due_grace)",
            "subscription  past_due",
            "features      sso",
            "limits        seats=25",
            "reason        not_a_member",
            "  - not_a_member",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&report).expect("json")).expect("parses");
        assert_eq!(
            json,
            serde_json::json!({
                "verdict": "HOLD",
                "reasons": ["not_a_member"],
                "access": {
                    "allowed": false,
                    "role": null,
                    "plan": "pro",
                    "subscription_status": "past_due",
                    "entitlements": {"features": ["sso"], "limits": {"seats": 25}},
                    "reason": "not_a_member"
                },
                "scenario": null,
                "updated_by_event": null
            })
        );
        let mut decided = report.clone();
        decided.decided_by = Some(("evt_1".into(), Some("S11".into())));
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&decided).expect("json")).expect("parses");
        assert_eq!(
            (json["scenario"].as_str(), json["updated_by_event"].as_str()),
            (Some("S11"), Some("evt_1"))
        );
        assert!(
            render_text(&request, &decided)
                .contains("decided by    S11 (renewal payment failed), event evt_1")
        );
    }

    #[tokio::test]
    async fn checks_against_the_store() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("admit.db").display());
        let store = admit_store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        let acme = WorkspaceId::parse("acme").expect("id");
        store
            .create_workspace(
                &acme,
                "Acme",
                &email("dana@acme.test"),
                &Actor::api(),
                now(),
            )
            .await
            .expect("create");
        let request = |workspace: &str, who: &str, plan: Option<&str>| Request {
            workspace: WorkspaceId::parse(workspace).expect("id"),
            email: email(who),
            plan: plan.map(PlanKey::new),
        };
        let catalog = catalog();
        let run = |r: Request| {
            let store = store.clone();
            let catalog = catalog.clone();
            async move {
                check(store.as_ref(), &catalog, 7 * DAY, &r, now())
                    .await
                    .expect("check")
            }
        };
        let pass = run(request("acme", "dana@acme.test", Some("free"))).await;
        assert_eq!(pass.verdict, Verdict::Pass);
        assert_eq!(pass.access.role, Some(Role::Owner));
        let hold = run(request("acme", "dana@acme.test", Some("pro"))).await;
        assert_eq!(hold.reasons, ["expected plan pro, found free (free_tier)"]);
        let missing = run(request("globex", "dana@acme.test", None)).await;
        assert_eq!(missing.reasons, ["workspace_not_found"]);
    }
}
