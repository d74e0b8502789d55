//! What an operator's resolution of a held case does: whether it applies to
//! the case at all, and which facts it records before provisioning runs
//! again for the events the case held.

use super::cases::CaseKind;

/// The resolutions of DESIGN.md §2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolutionAction {
    Bind,
    InvitePurchaser,
    MarkRefunded,
    Dismiss,
}

impl ResolutionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolutionAction::Bind => "bind",
            ResolutionAction::InvitePurchaser => "invite_purchaser",
            ResolutionAction::MarkRefunded => "mark_refunded",
            ResolutionAction::Dismiss => "dismiss",
        }
    }
}

/// The facts a resolution records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolutionPlan {
    /// Bind the case's purchase to the chosen workspace (an operator binding).
    pub bind_purchase: bool,
    /// Add the purchaser to the workspace with the chosen role (never a demotion).
    pub add_purchaser: bool,
    /// Queue the case's events for provisioning again.
    pub rerun: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResolutionRefused {
    #[error("the case is already resolved")]
    AlreadyResolved,
    #[error("this action does not apply to this kind of case (see the case's `actions`)")]
    NotForThisKind,
}

/// The actions a case accepts: its kind's, or for kinds no derivation opens
/// (reconciliation's `duplicate_customer`, settled by hand at Stripe) a
/// refund record or a dismissal.
pub fn case_actions(kind: Option<CaseKind>) -> &'static [&'static str] {
    kind.map_or(&["mark_refunded", "dismiss"], CaseKind::actions)
}

/// Decides what `action` does to a case of `kind` (`None` for kinds no
/// derivation opens, such as reconciliation's `duplicate_customer`).
/// An informational `email_mismatch` stays open to `invite_purchaser` after
/// it was born resolved: inviting the billing contact is what it suggests.
pub fn plan_resolution(
    kind: Option<CaseKind>,
    resolved: bool,
    action: ResolutionAction,
) -> Result<ResolutionPlan, ResolutionRefused> {
    let informational_invite =
        kind == Some(CaseKind::EmailMismatch) && action == ResolutionAction::InvitePurchaser;
    if resolved && !informational_invite {
        return Err(ResolutionRefused::AlreadyResolved);
    }
    if !case_actions(kind).contains(&action.as_str()) {
        return Err(ResolutionRefused::NotForThisKind);
    }
    Ok(ResolutionPlan {
        bind_purchase: action == ResolutionAction::Bind
            || (action == ResolutionAction::InvitePurchaser
                && kind == Some(CaseKind::MissingWorkspace)),
        add_purchaser: action == ResolutionAction::InvitePurchaser,
        rerun: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResolutionAction::{Bind, Dismiss, InvitePurchaser, MarkRefunded};

    #[test]
    fn each_kind_takes_its_actions_and_records_its_facts() {
        let bind = plan_resolution(Some(CaseKind::MissingWorkspace), false, Bind).expect("bind");
        assert!(bind.bind_purchase && !bind.add_purchaser && bind.rerun);
        let invite = plan_resolution(Some(CaseKind::MissingWorkspace), false, InvitePurchaser)
            .expect("invite");
        assert!(invite.bind_purchase && invite.add_purchaser);
        let invite_dup = plan_resolution(
            Some(CaseKind::DuplicateSubscription),
            false,
            InvitePurchaser,
        )
        .expect("invite");
        assert!(!invite_dup.bind_purchase && invite_dup.add_purchaser);
        for kind in [CaseKind::PaymentDisputed, CaseKind::PaymentRefunded] {
            for action in [Bind, InvitePurchaser] {
                assert_eq!(
                    plan_resolution(Some(kind), false, action),
                    Err(ResolutionRefused::NotForThisKind),
                    "{kind:?} {action:?}"
                );
            }
            for action in [MarkRefunded, Dismiss] {
                let plan = plan_resolution(Some(kind), false, action).expect("settles");
                assert!(!plan.bind_purchase && !plan.add_purchaser && plan.rerun);
            }
        }
        assert_eq!(
            plan_resolution(Some(CaseKind::DuplicateSubscription), false, Bind),
            Err(ResolutionRefused::NotForThisKind)
        );
        for action in [Bind, InvitePurchaser] {
            assert_eq!(
                plan_resolution(None, false, action),
                Err(ResolutionRefused::NotForThisKind)
            );
        }
        assert!(plan_resolution(None, false, Dismiss).is_ok());
        assert!(plan_resolution(None, false, MarkRefunded).is_ok());
    }

    #[test]
    fn a_resolved_case_stays_resolved_except_an_invitation_from_a_mismatch() {
        for kind in CaseKind::ALL {
            for action in [Bind, MarkRefunded, Dismiss] {
                assert_eq!(
                    plan_resolution(Some(kind), true, action),
                    Err(ResolutionRefused::AlreadyResolved)
                );
            }
        }
        assert!(plan_resolution(Some(CaseKind::EmailMismatch), true, InvitePurchaser).is_ok());
        assert_eq!(
            plan_resolution(Some(CaseKind::MissingWorkspace), true, InvitePurchaser),
            Err(ResolutionRefused::AlreadyResolved)
        );
    }
}
