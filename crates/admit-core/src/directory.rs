//! Workspaces and their members: who may administer what.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Email, Timestamp, WorkspaceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Owners and admins administer a workspace (may buy for it, see billing).
    pub fn administers(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: Timestamp,
    pub members: BTreeMap<Email, Role>,
}

impl Workspace {
    pub fn role_of(&self, email: &Email) -> Option<Role> {
        self.members.get(email).copied()
    }

    pub fn administrators(&self) -> impl Iterator<Item = &Email> {
        self.members
            .iter()
            .filter(|(_, role)| role.administers())
            .map(|(email, _)| email)
    }

    pub fn owners(&self) -> impl Iterator<Item = &Email> {
        self.members
            .iter()
            .filter(|(_, role)| **role == Role::Owner)
            .map(|(email, _)| email)
    }
}

/// The workspaces admit knows, as the core sees them for one decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    workspaces: BTreeMap<WorkspaceId, Workspace>,
}

impl Directory {
    pub fn new(workspaces: impl IntoIterator<Item = Workspace>) -> Self {
        Self {
            workspaces: workspaces.into_iter().map(|w| (w.id.clone(), w)).collect(),
        }
    }

    pub fn get(&self, id: &WorkspaceId) -> Option<&Workspace> {
        self.workspaces.get(id)
    }

    /// Looks a workspace up by an id as written in Stripe metadata.
    pub fn get_raw(&self, raw: &str) -> Option<&Workspace> {
        WorkspaceId::parse(raw)
            .ok()
            .and_then(|id| self.workspaces.get(&id))
    }

    /// Workspaces that `email` owns or administers, in id order.
    pub fn administered_by(&self, email: &Email) -> Vec<&Workspace> {
        self.workspaces
            .values()
            .filter(|w| w.role_of(email).is_some_and(Role::administers))
            .collect()
    }

    pub fn insert(&mut self, workspace: Workspace) {
        self.workspaces.insert(workspace.id.clone(), workspace);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Workspace> {
        self.workspaces.values()
    }
}

/// What setting a member's role does, given the role they have now and how
/// many owners the workspace has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberPlan {
    Unchanged,
    Write,
}

/// A workspace must keep an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the workspace's last owner can be neither removed nor demoted")]
pub struct LastOwner;

/// Setting `role` for a member who has `current` (or none).
pub fn plan_role_change(
    current: Option<Role>,
    role: Role,
    owners: usize,
) -> Result<MemberPlan, LastOwner> {
    match current {
        Some(current) if current == role => Ok(MemberPlan::Unchanged),
        Some(Role::Owner) if owners <= 1 => Err(LastOwner),
        _ => Ok(MemberPlan::Write),
    }
}

/// Removing a member who has `current`.
pub fn plan_removal(current: Role, owners: usize) -> Result<(), LastOwner> {
    if current == Role::Owner && owners <= 1 {
        Err(LastOwner)
    } else {
        Ok(())
    }
}

/// Inviting someone with `role`: an invitation never demotes (an owner
/// invited as a member stays an owner).
pub fn plan_invitation(current: Option<Role>, role: Role) -> MemberPlan {
    match current {
        Some(current) if current <= role => MemberPlan::Unchanged,
        _ => MemberPlan::Write,
    }
}

#[cfg(test)]
mod member_rule_tests {
    use super::*;

    #[test]
    fn the_last_owner_stays_and_invitations_never_demote() {
        assert_eq!(
            plan_role_change(None, Role::Member, 1),
            Ok(MemberPlan::Write)
        );
        assert_eq!(
            plan_role_change(Some(Role::Admin), Role::Admin, 1),
            Ok(MemberPlan::Unchanged)
        );
        assert_eq!(
            plan_role_change(Some(Role::Owner), Role::Admin, 1),
            Err(LastOwner)
        );
        assert_eq!(
            plan_role_change(Some(Role::Owner), Role::Admin, 2),
            Ok(MemberPlan::Write)
        );
        assert_eq!(plan_removal(Role::Owner, 1), Err(LastOwner));
        assert_eq!(plan_removal(Role::Owner, 2), Ok(()));
        assert_eq!(plan_removal(Role::Member, 1), Ok(()));
        assert_eq!(
            plan_invitation(Some(Role::Owner), Role::Member),
            MemberPlan::Unchanged
        );
        assert_eq!(
            plan_invitation(Some(Role::Admin), Role::Admin),
            MemberPlan::Unchanged
        );
        assert_eq!(
            plan_invitation(Some(Role::Member), Role::Admin),
            MemberPlan::Write
        );
        assert_eq!(plan_invitation(None, Role::Member), MemberPlan::Write);
    }
}

/// The Stripe customers a workspace is known by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceCustomers {
    /// Customers bound to it outside the events (admit created them for it,
    /// or an operator bound them), with when.
    pub bound: Vec<(crate::CustomerId, crate::Timestamp)>,
    /// The customer its billing state names.
    pub billing: Option<crate::CustomerId>,
}

/// The customer a new checkout for the workspace uses: the first one admit
/// bound to it, else the one it pays with; `None` creates one. One customer
/// per workspace keeps a second checkout from splitting its billing.
pub fn checkout_customer(customers: &WorkspaceCustomers) -> Option<crate::CustomerId> {
    customers
        .bound
        .iter()
        .min_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)))
        .map(|(customer, _)| customer.clone())
        .or_else(|| customers.billing.clone())
}

#[cfg(test)]
mod checkout_customer_tests {
    use super::*;
    use crate::{CustomerId, Timestamp};

    fn cus(raw: &str) -> CustomerId {
        CustomerId::parse(raw).expect("id")
    }

    #[test]
    fn the_first_bound_customer_then_the_paying_one_then_none() {
        let mut known = WorkspaceCustomers {
            bound: vec![
                (cus("cus_Later"), Timestamp::from_unix(20)),
                (cus("cus_First"), Timestamp::from_unix(10)),
            ],
            billing: Some(cus("cus_Paying")),
        };
        assert_eq!(checkout_customer(&known), Some(cus("cus_First")));
        known.bound.clear();
        assert_eq!(checkout_customer(&known), Some(cus("cus_Paying")));
        assert_eq!(checkout_customer(&WorkspaceCustomers::default()), None);
    }
}

/// Why a workspace cannot be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalRefused {
    /// Its subscription may still charge or resume (active, trialing,
    /// past_due, unpaid, paused, incomplete): the next webhook would find no
    /// workspace to apply to.
    SubscriptionRunning,
    /// Support has held cases about it (a payment not provisioned yet, a
    /// duplicate to refund): removing it would strand them.
    CasesHeld,
}

/// Whether a workspace may be removed: nobody pays for it any more (no
/// subscription, or one Stripe has ended for good) and no case about it is held.
pub fn plan_workspace_removal(
    billing: Option<&crate::BillingState>,
    held_cases: u64,
) -> Result<(), RemovalRefused> {
    use crate::SubscriptionStatus::{Canceled, IncompleteExpired};
    match billing.and_then(|b| b.subscription_status) {
        None | Some(Canceled | IncompleteExpired) => {}
        Some(_) => return Err(RemovalRefused::SubscriptionRunning),
    }
    if held_cases > 0 {
        return Err(RemovalRefused::CasesHeld);
    }
    Ok(())
}

#[cfg(test)]
mod removal_tests {
    use super::*;
    use crate::{BillingState, SubscriptionStatus};

    #[test]
    fn only_a_workspace_nobody_pays_for_and_nobody_holds_may_be_removed() {
        assert_eq!(plan_workspace_removal(None, 0), Ok(()));
        let mut billing = BillingState::default();
        assert_eq!(plan_workspace_removal(Some(&billing), 0), Ok(()));
        for (status, allowed) in [
            (SubscriptionStatus::Active, false),
            (SubscriptionStatus::Trialing, false),
            (SubscriptionStatus::PastDue, false),
            (SubscriptionStatus::Unpaid, false),
            (SubscriptionStatus::Paused, false),
            (SubscriptionStatus::Incomplete, false),
            (SubscriptionStatus::Canceled, true),
            (SubscriptionStatus::IncompleteExpired, true),
        ] {
            billing.subscription_status = Some(status);
            assert_eq!(
                plan_workspace_removal(Some(&billing), 0).is_ok(),
                allowed,
                "{status:?}"
            );
        }
        assert_eq!(
            plan_workspace_removal(Some(&billing), 1),
            Err(RemovalRefused::CasesHeld)
        );
    }
}
