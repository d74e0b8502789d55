//! `access(workspace, email)`: the member's role and the workspace's
//! effective entitlements right now (DESIGN.md §2.4).

use crate::{
    BillingState, Catalog, Email, Entitlements, PlanKey, Role, SubscriptionStatus, Timestamp,
    Workspace,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessReason {
    Active,
    Trialing,
    PastDueGrace,
    PastDueGraceExpired,
    PeriodEnded,
    Canceled,
    Unpaid,
    Paused,
    Incomplete,
    FreeTier,
    PlanNotInCatalog,
    NotAMember,
    WorkspaceNotFound,
}

impl AccessReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessReason::Active => "active",
            AccessReason::Trialing => "trialing",
            AccessReason::PastDueGrace => "past_due_grace",
            AccessReason::PastDueGraceExpired => "past_due_grace_expired",
            AccessReason::PeriodEnded => "period_ended",
            AccessReason::Canceled => "canceled",
            AccessReason::Unpaid => "unpaid",
            AccessReason::Paused => "paused",
            AccessReason::Incomplete => "incomplete",
            AccessReason::FreeTier => "free_tier",
            AccessReason::PlanNotInCatalog => "plan_not_in_catalog",
            AccessReason::NotAMember => "not_a_member",
            AccessReason::WorkspaceNotFound => "workspace_not_found",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub allowed: bool,
    pub role: Option<Role>,
    pub plan: PlanKey,
    pub subscription_status: Option<SubscriptionStatus>,
    pub entitlements: Entitlements,
    pub reason: AccessReason,
    /// Why the plan is what it is, also for non-members.
    pub plan_reason: AccessReason,
}

/// The plan in force for a billing state at `now`, and why.
pub fn effective_plan(
    billing: &BillingState,
    catalog: &Catalog,
    grace_secs: i64,
    now: Timestamp,
) -> (PlanKey, AccessReason) {
    let free = catalog.free_plan().key.clone();
    let (Some(status), Some(plan)) = (billing.subscription_status, &billing.subscription_plan)
    else {
        return (free, AccessReason::FreeTier);
    };
    let paid = |reason| match catalog.get(plan) {
        Some(p) if !p.free_tier => (p.key.clone(), reason),
        Some(_) => (free.clone(), AccessReason::FreeTier),
        None => (free.clone(), AccessReason::PlanNotInCatalog),
    };
    // A scheduled end that has passed ends paid access, whether or not the
    // `deleted` event has arrived (it may be late, or lost).
    // Once it has passed, a scheduled end reads `period_ended` before and
    // after Stripe's deletion arrives: one answer for one situation.
    let period_over = crate::scheduled_end(
        billing.cancel_at,
        billing.cancel_at_period_end,
        billing.current_period_end,
    )
    .is_some_and(|end| now >= end);
    match status {
        _ if period_over && (status.is_live() || status == SubscriptionStatus::Canceled) => {
            (free, AccessReason::PeriodEnded)
        }
        SubscriptionStatus::Active => paid(AccessReason::Active),
        SubscriptionStatus::Trialing => paid(AccessReason::Trialing),
        SubscriptionStatus::PastDue => {
            let since = billing.past_due_since.unwrap_or(now);
            if now < since.plus_seconds(grace_secs) {
                paid(AccessReason::PastDueGrace)
            } else {
                (free, AccessReason::PastDueGraceExpired)
            }
        }
        SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired => {
            (free, AccessReason::Canceled)
        }
        SubscriptionStatus::Unpaid => (free, AccessReason::Unpaid),
        SubscriptionStatus::Paused => (free, AccessReason::Paused),
        SubscriptionStatus::Incomplete => (free, AccessReason::Incomplete),
    }
}

pub fn access(
    workspace: Option<&Workspace>,
    email: &Email,
    billing: &BillingState,
    catalog: &Catalog,
    grace_secs: i64,
    now: Timestamp,
) -> Access {
    let free = catalog.free_plan();
    let Some(workspace) = workspace else {
        return Access {
            allowed: false,
            role: None,
            plan: free.key.clone(),
            subscription_status: None,
            entitlements: Entitlements::default(),
            reason: AccessReason::WorkspaceNotFound,
            plan_reason: AccessReason::WorkspaceNotFound,
        };
    };
    member_access(workspace.role_of(email), billing, catalog, grace_secs, now)
}

/// [`access`] in a workspace that exists, for someone whose role in it is
/// `role` (`None`: not a member) — all an access check needs to read.
pub fn member_access(
    role: Option<Role>,
    billing: &BillingState,
    catalog: &Catalog,
    grace_secs: i64,
    now: Timestamp,
) -> Access {
    let (plan, plan_reason) = effective_plan(billing, catalog, grace_secs, now);
    let entitlements = catalog
        .get(&plan)
        .map(|p| p.entitlements.clone())
        .unwrap_or_default();
    Access {
        allowed: role.is_some(),
        role,
        plan,
        subscription_status: billing.subscription_status,
        entitlements,
        reason: if role.is_some() {
            plan_reason
        } else {
            AccessReason::NotAMember
        },
        plan_reason,
    }
}
