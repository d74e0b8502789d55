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
