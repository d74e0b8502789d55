//! Console operators, their sign-in sessions and failed sign-ins: the
//! storage side of `/admin` and `admit operator`. Secrets never reach the
//! store: passwords arrive as argon2 PHC strings, session and setup tokens
//! as SHA-256 hashes (hex).

use admit_core::{OperatorRole, Timestamp};

use crate::StoreError;
use crate::directory::Actor;

/// An operator as lists show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub role: OperatorRole,
    pub created_at: Timestamp,
    /// `false` while the one-time setup link is not redeemed.
    pub password_set: bool,
}

impl Operator {
    /// Who the audit log names for this operator's actions.
    pub fn actor(&self) -> Actor {
        Actor::operator(self.name.clone(), self.role)
    }
}

/// How a new operator gets a password.
#[derive(Clone, PartialEq, Eq)]
pub enum OperatorSecret {
    /// The argon2 PHC string of a password read from standard input.
    PasswordHash(String),
    /// The hash of a one-time setup token, redeemable until `expires_at`.
    SetupToken {
        token_hash: String,
        expires_at: Timestamp,
    },
}

impl std::fmt::Debug for OperatorSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OperatorSecret::PasswordHash(_) => f.write_str("PasswordHash([redacted])"),
            OperatorSecret::SetupToken { expires_at, .. } => f
                .debug_struct("SetupToken")
                .field("expires_at", expires_at)
                .finish_non_exhaustive(),
        }
    }
}

/// What sign-in compares: the operator and their password hash, if set.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorCredentials {
    pub operator: Operator,
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for OperatorCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorCredentials")
            .field("operator", &self.operator)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// A live console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSession {
    pub operator: Operator,
    /// The absolute end; idle sessions end sooner.
    pub expires_at: Timestamp,
}

#[async_trait::async_trait]
pub trait OperatorStore: Send + Sync {
    /// Adds an operator, audited (`operator.added`). `OperatorExists` when
    /// the name is taken.
    async fn add_operator(
        &self,
        name: &str,
        role: OperatorRole,
        secret: &OperatorSecret,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Operator, StoreError>;

    /// Every operator, by name.
    async fn operators(&self) -> Result<Vec<Operator>, StoreError>;

    async fn operator_credentials(
        &self,
        name: &str,
    ) -> Result<Option<OperatorCredentials>, StoreError>;

    /// Removes an operator and ends their sessions, audited
    /// (`operator.removed`). `false` when there is no such operator.
    async fn remove_operator(
        &self,
        name: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Redeems a setup token once: sets the password, audited
    /// (`operator.password_set`). `None` for an unknown, used or expired token.
    async fn complete_operator_setup(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<Option<Operator>, StoreError>;

    /// Starts a session (audited `operator.signed_in`) that ends at
    /// `expires_at`, or `idle_secs` after its last use, whichever is first.
    async fn start_operator_session(
        &self,
        session_hash: &str,
        name: &str,
        now: Timestamp,
        expires_at: Timestamp,
        idle_secs: i64,
    ) -> Result<(), StoreError>;

    /// The live session with this hash, its idle end moved to
    /// `now + idle_secs` (at most one write a minute per session). `None` when
    /// unknown, ended, expired, idle too long or its operator was removed.
    async fn operator_session(
        &self,
        session_hash: &str,
        now: Timestamp,
        idle_secs: i64,
    ) -> Result<Option<OperatorSession>, StoreError>;

    /// Ends a session (sign-out, audited `operator.signed_out`); nothing when unknown.
    async fn end_operator_session(
        &self,
        session_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Records a sign-in attempt for `key` (e.g. a name, or a name and a
    /// client address) and returns how many attempts `key` has at or after
    /// `since`, this one included — in one transaction, so concurrent
    /// attempts each see the others. Forgets every key's attempts older
    /// than a day.
    async fn count_login_attempt(
        &self,
        key: &str,
        now: Timestamp,
        since: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Forgets `key`'s attempts (a successful sign-in).
    async fn clear_login_attempts(&self, key: &str) -> Result<(), StoreError>;

    /// The operator a setup token is for, while it is redeemable: checked
    /// before any password is hashed for it.
    async fn setup_token_operator(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError>;
}

/// Sign-in attempts are forgotten after this long.
pub(crate) const LOGIN_FAILURE_MEMORY_SECS: i64 = 86_400;

/// A session's idle end moves only when it would move by more than this:
/// reading a session writes at most once a minute.
const SLIDE_STEP_SECS: i64 = 60;

/// The audit entry of a change to operator `name` (never a secret in it).
pub(crate) fn operator_audit(
    action: &str,
    name: &str,
    actor: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    now: Timestamp,
) -> crate::AuditEntry {
    crate::AuditEntry {
        at: now,
        actor,
        action: action.to_owned(),
        workspace_id: None,
        subject: Some(format!("operator:{name}")),
        before,
        after,
        cause: None,
    }
}

pub(crate) fn role_json(role: OperatorRole) -> serde_json::Value {
    serde_json::json!({ "role": role.as_str() })
}

/// The actor of what operator `name` does to their own sign-in.
pub(crate) fn self_actor(name: &str) -> String {
    format!("operator:{name}")
}

/// Whether a session ending at `expires_at`, or idle at `idle_expires_at`,
/// is still live at `now`.
pub(crate) fn session_live(expires_at: i64, idle_expires_at: i64, now: Timestamp) -> bool {
    now.unix() < expires_at && now.unix() < idle_expires_at
}

/// The idle end a live session read at `now` moves to, or `None` to leave
/// it: at most its absolute end, and only when that moves it by more than
/// [`SLIDE_STEP_SECS`].
pub(crate) fn slid_idle_end(
    expires_at: i64,
    idle_expires_at: i64,
    now: Timestamp,
    idle_secs: i64,
) -> Option<i64> {
    let wanted = now.unix().saturating_add(idle_secs);
    let end = wanted.min(expires_at);
    (wanted - idle_expires_at > SLIDE_STEP_SECS && end > idle_expires_at).then_some(end)
}

/// A new session's idle end: `idle_secs` from `now`, at most its absolute end.
pub(crate) fn first_idle_end(expires_at: Timestamp, now: Timestamp, idle_secs: i64) -> i64 {
    now.unix().saturating_add(idle_secs).min(expires_at.unix())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_unix(1_795_000_000);

    #[test]
    fn an_idle_end_moves_at_most_once_a_minute_and_never_past_the_absolute_end() {
        let now = NOW.unix();
        // Read 30 s after the last move: left alone.
        assert_eq!(slid_idle_end(now + 7200, now + 1770, NOW, 1800), None);
        // Read 61 s after: moved to now + idle.
        assert_eq!(
            slid_idle_end(now + 7200, now + 1739, NOW, 1800),
            Some(now + 1800)
        );
        // Near the absolute end: moved to it, and then no more.
        assert_eq!(
            slid_idle_end(now + 1000, now + 500, NOW, 1800),
            Some(now + 1000)
        );
        assert_eq!(slid_idle_end(now + 1000, now + 1000, NOW, 1800), None);
    }

    #[test]
    fn a_session_ends_at_either_end() {
        assert!(session_live(NOW.unix() + 1, NOW.unix() + 1, NOW));
        assert!(!session_live(NOW.unix(), NOW.unix() + 1, NOW));
        assert!(!session_live(NOW.unix() + 1, NOW.unix(), NOW));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let secret = OperatorSecret::PasswordHash("$argon2id$v=19$secret".into());
        assert!(!format!("{secret:?}").contains("argon2"));
        let token = OperatorSecret::SetupToken {
            token_hash: "abcdef0123".into(),
            expires_at: NOW,
        };
        assert!(!format!("{token:?}").contains("abcdef"));
    }
}
