//! Who makes a change. Every write names one, and the audit log records it.

use std::fmt;

use crate::EventId;

/// What an operator of the console may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OperatorRole {
    /// Reads everything, changes nothing.
    Viewer,
    /// Resolves cases, replays events, resends mail.
    Support,
    /// Everything support does, and manages operators.
    Admin,
}

impl OperatorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::Viewer => "viewer",
            OperatorRole::Support => "support",
            OperatorRole::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "viewer" => OperatorRole::Viewer,
            "support" => OperatorRole::Support,
            "admin" => OperatorRole::Admin,
            _ => return None,
        })
    }
}

/// Work admit does by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SystemTask {
    /// Provisioning creating a workspace for an unmatched purchase.
    Provisioning,
    Reconcile,
    Backfill,
    /// `admit operator add|remove`, run on the server.
    OperatorCli,
}

impl SystemTask {
    pub fn as_str(self) -> &'static str {
        match self {
            SystemTask::Provisioning => "provisioning",
            SystemTask::Reconcile => "reconcile",
            SystemTask::Backfill => "backfill",
            SystemTask::OperatorCli => "operator_cli",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Actor {
    /// The application, with the app token (`/v1`).
    App,
    /// A named operator of the console or the CLI.
    Operator {
        name: String,
        role: OperatorRole,
    },
    /// A Stripe event, as the processor applies it.
    Stripe(EventId),
    System(SystemTask),
}

impl Actor {
    /// The app token's caller.
    pub fn api() -> Self {
        Actor::App
    }

    pub fn operator(name: impl Into<String>, role: OperatorRole) -> Self {
        Actor::Operator {
            name: name.into(),
            role,
        }
    }
}

/// As the audit log writes it: `api`, `operator:<name>`, `stripe:evt_…`,
/// `system` (the task is the entry's cause).
impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::App => f.write_str("api"),
            Actor::Operator { name, .. } => write!(f, "operator:{name}"),
            Actor::Stripe(event) => write!(f, "stripe:{event}"),
            Actor::System(_) => f.write_str("system"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_read_as_the_audit_log_writes_them() {
        assert_eq!(Actor::api().to_string(), "api");
        assert_eq!(
            Actor::operator("sam", OperatorRole::Support).to_string(),
            "operator:sam"
        );
        let event = EventId::parse("evt_1").expect("id");
        assert_eq!(Actor::Stripe(event).to_string(), "stripe:evt_1");
        assert_eq!(Actor::System(SystemTask::Reconcile).to_string(), "system");
        for role in [
            OperatorRole::Viewer,
            OperatorRole::Support,
            OperatorRole::Admin,
        ] {
            assert_eq!(OperatorRole::parse(role.as_str()), Some(role));
        }
    }
}
