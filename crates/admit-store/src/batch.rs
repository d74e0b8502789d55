//! What the commit of a batch of derivations decides before it writes,
//! the same in every dialect: which derivations are refused, and which
//! are written together in one statement per kind of row.

use std::collections::{BTreeMap, BTreeSet};

use crate::provisioning::{CommitOutcome, ScopeCommit, ScopeWrite};
use crate::scope::{moved, written_keys};

/// The ids a batch's derivations read: the versions its commit compares.
pub(crate) fn read_keys(commits: &[ScopeCommit]) -> BTreeSet<String> {
    commits
        .iter()
        .flat_map(|c| c.versions.keys().cloned())
        .collect()
}

/// The ids a batch read and those its rows bump: what a commit that locks
/// version rows (PostgreSQL) takes before it writes, so that its own
/// triggers rarely wait on another instance.
pub(crate) fn touched_keys(commits: &[ScopeCommit]) -> BTreeSet<String> {
    commits
        .iter()
        .flat_map(|c| c.versions.keys().cloned().chain(written_keys(&c.write)))
        .collect()
}

/// A batch's commit before its writes.
#[derive(Debug)]
pub(crate) struct Plan {
    /// `Some(Conflict)` for each derivation refused; `None` for the rest,
    /// whose outcome the writes decide.
    pub outcomes: Vec<Option<CommitOutcome>>,
    /// The accepted derivations that create no workspace, written together...
    pub merged: Vec<usize>,
    /// ...as these rows.
    pub write: ScopeWrite,
}

/// Refuses a derivation whose scope moved since its read (`current` holds
/// the versions now), and one sharing an id with a derivation accepted
/// before it in this batch, whose writes it has not seen.
pub(crate) fn plan(commits: &[ScopeCommit], current: &BTreeMap<String, i64>) -> Plan {
    let mut accepted_keys: BTreeSet<String> = BTreeSet::new();
    let mut outcomes: Vec<Option<CommitOutcome>> = Vec::with_capacity(commits.len());
    for commit in commits {
        let touched: BTreeSet<String> = commit
            .versions
            .keys()
            .cloned()
            .chain(written_keys(&commit.write))
            .collect();
        if moved(&commit.versions, current) || !accepted_keys.is_disjoint(&touched) {
            outcomes.push(Some(CommitOutcome::Conflict));
        } else {
            accepted_keys.extend(touched);
            outcomes.push(None);
        }
    }
    let merged: Vec<usize> = (0..commits.len())
        .filter(|&i| outcomes[i].is_none() && commits[i].write.create_workspaces.is_empty())
        .collect();
    let mut write = ScopeWrite::default();
    for &i in &merged {
        write.extend(&commits[i].write);
    }
    Plan {
        outcomes,
        merged,
        write,
    }
}

/// What a derivation written on its own came to, once written.
pub(crate) fn written_alone(commit: &ScopeCommit) -> CommitOutcome {
    if commit.write.create_workspaces.is_empty() {
        CommitOutcome::Written
    } else {
        CommitOutcome::Created
    }
}
