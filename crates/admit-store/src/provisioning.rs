//! The storage side of provisioning: claiming inbox events, loading the
//! scope an event belongs to, and writing a derivation's result — all of a
//! scope in one transaction, so a crash loses nothing and a state change is
//! never committed without its effects (transactional outbox).

use std::collections::{BTreeMap, BTreeSet};

use admit_core::provisioning::{CheckoutIntent, Settlement};
use admit_core::{
    BillingState, CustomerId, Directory, Email, EventId, Role, Timestamp, WorkspaceId,
};
use serde_json::Value;

use crate::audit::AuditEntry;
use crate::events::EventStatus;
use crate::{Actor, StoreError};

pub use admit_core::provisioning::EventKeys;

/// An inbox row within a scope.
#[derive(Clone)]
pub struct ScopeEvent {
    pub id: EventId,
    pub event_type: String,
    pub livemode: bool,
    /// The billing event as read at ingress (see [`crate::NewEvent::billing`]).
    pub billing: Option<String>,
    /// The raw body, loaded only when `billing` is `None`: the processor
    /// then reads the body itself (an event admit does not act on, or one
    /// stored before ingress kept the billing event).
    pub payload: Vec<u8>,
    pub status: EventStatus,
    pub outcome: Option<String>,
    pub scenario: Option<String>,
    pub received_at: Timestamp,
    /// When Stripe created it.
    pub created: Timestamp,
    /// The subscription, customer and checkout session it names.
    pub subscription: Option<String>,
    pub customer: Option<String>,
    pub session: Option<String>,
    /// Its subscription's checkpoint (in [`ScopeSnapshot::checkpoints`])
    /// covers it: neither its billing event nor its body is read.
    pub covered: bool,
}

// The body and the billing event hold email addresses: keep them out of logs.
impl std::fmt::Debug for ScopeEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeEvent")
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A case as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCase {
    pub id: String,
    pub key: String,
    pub kind: String,
    /// The scenario (S1–S18) that held it; `None` for cases no derivation opened.
    pub scenario: Option<String>,
    pub workspace_id: Option<String>,
    pub purchaser_email: Option<String>,
    pub customer_id: Option<String>,
    pub subscription_id: Option<String>,
    pub checkout_session_id: Option<String>,
    pub event_ids: Vec<String>,
    pub details: Value,
    pub state: String,
    pub resolution: Option<String>,
    pub resolution_workspace: Option<String>,
    pub resolution_role: Option<String>,
    pub resolution_note: Option<String>,
    pub resolved_by: Option<String>,
    pub created_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
}

/// Everything a derivation of one scope reads, from one consistent read.
#[derive(Debug, Clone)]
pub struct ScopeSnapshot {
    pub claimed: EventId,
    pub events: Vec<ScopeEvent>,
    pub directory: Directory,
    pub intents: BTreeMap<String, CheckoutIntent>,
    pub customer_bindings: BTreeMap<CustomerId, WorkspaceId>,
    pub purchase_bindings: BTreeMap<String, WorkspaceId>,
    /// Purchase bindings rule 3 found and admit kept (source `purchaser_administers`).
    pub remembered_purchases: BTreeSet<String>,
    /// Purchase bindings to a workspace admit created for them (source `created_workspace`).
    pub created_for_purchases: BTreeSet<String>,
    pub settlements: BTreeMap<String, Settlement>,
    /// Workspaces whose billing state this scope decides.
    pub workspaces: BTreeSet<WorkspaceId>,
    pub billing: BTreeMap<WorkspaceId, BillingState>,
    /// Cases about the scope's purchases, by key.
    pub cases: BTreeMap<String, StoredCase>,
    /// Outbox rows about the scope's purchases: key → state.
    pub outbox: BTreeMap<String, String>,
    /// The checkpoints (JSON) of the scope's subscriptions that cover
    /// exactly the events the store holds up to them, by subscription.
    pub checkpoints: BTreeMap<String, String>,
    /// Subscriptions whose checkpoint does not count the events the store
    /// holds up to it (one created inside it arrived since): read in full.
    pub stale_checkpoints: BTreeSet<String>,
}

/// Whether a scope read starts long histories from their checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    Checkpoints,
    /// Every event's billing event: for a derivation that needs what a
    /// checkpoint covers, or one that cannot be read.
    Full,
}

/// A subscription's checkpoint to keep (`admit_core::provisioning::Checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointWrite {
    pub subscription_id: String,
    pub through: Timestamp,
    pub events: u64,
    /// The version of the fold that took it: a checkpoint of another
    /// version is replaced whatever it counts.
    pub version: u32,
    /// JSON of the checkpoint.
    pub fold: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaseWrite {
    pub id: String,
    pub key: String,
    pub kind: String,
    pub scenario: Option<String>,
    pub workspace_id: Option<String>,
    pub purchaser_email: Option<String>,
    pub customer_id: Option<String>,
    pub subscription_id: Option<String>,
    pub checkout_session_id: Option<String>,
    pub event_ids: Vec<String>,
    pub details: Value,
    /// `held` or `resolved`.
    pub state: String,
    /// Set when the write resolves the case (`auto`).
    pub resolution: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxWrite {
    pub idempotency_key: String,
    pub kind: String,
    pub recipient: String,
    pub workspace_id: Option<String>,
    pub about: Option<String>,
    pub case_key: Option<String>,
    pub payload: Value,
    pub not_before: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceCreation {
    pub id: WorkspaceId,
    pub name: String,
    pub owner: Email,
    /// The purchase to bind to it.
    pub purchase: String,
}

/// What to write for one scope; the store executes it verbatim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeWrite {
    pub event_statuses: Vec<EventStatusWrite>,
    pub billing: Vec<(WorkspaceId, BillingState)>,
    /// Stripe ids whose links are replaced: (kind, id).
    pub unlink: Vec<(String, String)>,
    pub links: Vec<(String, String, WorkspaceId)>,
    pub cases: Vec<CaseWrite>,
    pub outbox: Vec<OutboxWrite>,
    /// Pending outbox rows no longer warranted.
    pub supersede: Vec<String>,
    pub audit: Vec<AuditEntry>,
    pub create_workspaces: Vec<WorkspaceCreation>,
    /// Bindings to keep as facts: (`customer` | `purchase`, id, workspace, source).
    pub bindings: Vec<(String, String, WorkspaceId, String)>,
    pub checkpoints: Vec<CheckpointWrite>,
}

impl ScopeWrite {
    /// Adds another derivation's rows (a batch is written as one).
    pub fn extend(&mut self, other: &ScopeWrite) {
        self.event_statuses.extend_from_slice(&other.event_statuses);
        self.billing.extend_from_slice(&other.billing);
        self.unlink.extend_from_slice(&other.unlink);
        self.links.extend_from_slice(&other.links);
        self.cases.extend_from_slice(&other.cases);
        self.outbox.extend_from_slice(&other.outbox);
        self.supersede.extend_from_slice(&other.supersede);
        self.audit.extend_from_slice(&other.audit);
        self.create_workspaces
            .extend_from_slice(&other.create_workspaces);
        self.bindings.extend_from_slice(&other.bindings);
        self.checkpoints.extend_from_slice(&other.checkpoints);
    }
}

/// An event's status after a derivation, with the machine-readable reason
/// and the scenario (S1–S18) that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStatusWrite {
    pub id: EventId,
    pub status: EventStatus,
    pub outcome: String,
    pub scenario: Option<String>,
}

/// An event a processor has leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEvent {
    pub id: EventId,
    /// When it was received, in milliseconds.
    pub received_ms: i64,
    /// Ingress stored a billing event for it. One it did not is a type admit
    /// does not act on, a thin or unreadable event, or a row stored before
    /// ingress kept the billing event: its own row says which, no scope needed.
    pub billed: bool,
    /// The customer, subscription and checkout session it names, so that
    /// events of one purchase in a batch are not read at the same time.
    pub purchase_keys: Vec<String>,
}

/// A scope as read, with the version of every id it reached
/// (`scope_versions`): what its write is checked against.
#[derive(Debug, Clone)]
pub struct ScopeRead {
    pub snapshot: ScopeSnapshot,
    pub versions: BTreeMap<String, i64>,
}

/// A derivation's writes, to commit only if its scope has not moved.
#[derive(Debug, Clone)]
pub struct ScopeCommit {
    pub claimed: EventId,
    pub versions: BTreeMap<String, i64>,
    pub write: ScopeWrite,
}

/// What became of one [`ScopeCommit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Written,
    /// Someone wrote to the scope since it was read: derive again.
    Conflict,
    /// Workspaces were created for unmatched purchases: derive again.
    Created,
    /// The write failed (and was rolled back alone); the others stand.
    Failed(String),
}

/// A resolution an operator chose for a held case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseResolution {
    Bind { workspace: WorkspaceId },
    InvitePurchaser { workspace: WorkspaceId, role: Role },
    MarkRefunded { note: Option<String> },
    Dismiss { note: Option<String> },
}

impl CaseResolution {
    pub fn as_str(&self) -> &'static str {
        match self {
            CaseResolution::Bind { .. } => "bind",
            CaseResolution::InvitePurchaser { .. } => "invite_purchaser",
            CaseResolution::MarkRefunded { .. } => "mark_refunded",
            CaseResolution::Dismiss { .. } => "dismiss",
        }
    }
}

/// An outbox row as operators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub idempotency_key: String,
    pub kind: String,
    pub recipient: String,
    pub workspace_id: Option<String>,
    pub about: Option<String>,
    pub case_key: Option<String>,
    pub payload: Value,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// Where a checkout session stands, for the welcome page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStatus {
    /// An intent or any event names the session.
    pub known: bool,
    /// Events of the session (or of its subscription) still waiting to be processed.
    pub unprocessed: u64,
    /// A held case about the purchase.
    pub held_case: Option<String>,
    /// The workspace the purchase is bound to.
    pub workspace: Option<WorkspaceId>,
    pub purchaser_email: Option<String>,
    /// Where the payment of the checkout stands, from its events' outcomes.
    pub payment: SessionPayment,
    /// The subscription the checkout created, when its events name one.
    pub subscription: Option<String>,
}

/// The payment of a checkout as its processed events tell it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionPayment {
    /// Paid, or nothing says otherwise yet.
    #[default]
    Unknown,
    /// Completed with a delayed method (a bank debit) not yet confirmed.
    Pending,
    /// The delayed payment failed.
    Failed,
}

#[async_trait::async_trait]
pub trait ProvisioningStore: Send + Sync {
    /// Leases up to `limit` events due for processing in one transaction,
    /// oldest first; a processor settles them together, and an event a
    /// sibling's derivation settles is not derived again.
    async fn claim_events(
        &self,
        now: Timestamp,
        lease_secs: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedEvent>, StoreError>;

    /// Gives up the lease on an event this process claimed but could not
    /// finish (a shutdown cut it short), so a restart takes it at once.
    /// `lease_until` is the lease the claim set: a lease someone else has
    /// taken since is left alone.
    async fn release_event(&self, id: &EventId, lease_until: Timestamp) -> Result<(), StoreError>;

    /// Reads the claimed event's scope (grown from `keys` and the event's
    /// own stored keys to a fixpoint) and the versions of the ids it
    /// reached, in one read transaction: no write lock is taken, so ingress
    /// and other processors go on meanwhile.
    async fn read_scope(
        &self,
        claimed: &EventId,
        keys: &EventKeys,
        history: History,
    ) -> Result<ScopeRead, StoreError>;

    /// Writes derivations in one transaction (one commit, one sync), in
    /// order. Each is written only if none of its scope's versions moved
    /// since it was read — writes earlier in the same call count — and each
    /// in a savepoint of its own, so one that fails is rolled back alone.
    ///
    /// Concurrency contract: a derivation is never written over a scope
    /// that changed after it was read, whoever changed it. Every backend
    /// bumps the versions of the ids a changed row names, in the writing
    /// transaction (SQLite: triggers).
    async fn commit_scopes(
        &self,
        commits: &[ScopeCommit],
        now: Timestamp,
    ) -> Result<Vec<CommitOutcome>, StoreError>;

    /// Marks an event as not provisioned: `failed` with the error, retried at
    /// `retry_at` (never, when `None`), or `ignored`. An event settled
    /// meanwhile (by another processor whose derivation won) is left alone.
    async fn finish_event_unprovisioned(
        &self,
        id: &EventId,
        status: EventStatus,
        reason: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError>;

    async fn get_billing(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<Option<BillingState>, StoreError>;

    /// What an access check reads, in one statement: `None` when the
    /// workspace does not exist, else the email's role in it and the
    /// workspace's billing state.
    async fn access_facts(
        &self,
        workspace: &WorkspaceId,
        email: &Email,
    ) -> Result<Option<(Option<Role>, Option<BillingState>)>, StoreError>;

    async fn get_case(&self, id: &str) -> Result<Option<StoredCase>, StoreError>;

    /// Records an operator's resolution with its facts (binding, membership,
    /// settlement) and audit entries, and queues the case's events for
    /// provisioning again — all in one transaction.
    async fn resolve_case(
        &self,
        id: &str,
        resolution: &CaseResolution,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<StoredCase, StoreError>;

    /// Checkout sessions admit creates (the trusted binding).
    async fn insert_intent(
        &self,
        intent: &CheckoutIntent,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Takes the workspace's checkout lease for `holder` until `until`,
    /// unless another holder's lease is still running at `now`. Whether
    /// `holder` has it.
    async fn lease_checkout(
        &self,
        workspace: &WorkspaceId,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Ends `holder`'s checkout lease on the workspace (if it still has it).
    async fn end_checkout_lease(
        &self,
        workspace: &WorkspaceId,
        holder: &str,
    ) -> Result<(), StoreError>;

    /// Binds a Stripe customer to a workspace outside the events.
    async fn bind_customer(
        &self,
        customer: &CustomerId,
        workspace: &WorkspaceId,
        source: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// `state` = `pending` | `sent` | `dead` | `superseded` | `None` for all; newest first.
    async fn list_outbox(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError>;

    /// The Stripe customers a workspace is known by (bound to it, and the
    /// one its billing state names); the core chooses among them.
    async fn workspace_customers(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<admit_core::WorkspaceCustomers, StoreError>;

    /// The workspace a subscription was bound to by the last derivation.
    async fn workspace_of_subscription(
        &self,
        subscription: &str,
    ) -> Result<Option<WorkspaceId>, StoreError>;

    /// How many stored events name this subscription.
    async fn count_subscription_events(&self, subscription: &str) -> Result<u64, StoreError>;

    /// Opens a case that no event derives (reconciliation's
    /// `duplicate_customer`) with its messages and audit entry, once per key.
    /// Returns whether it was new.
    async fn record_case(
        &self,
        case: &CaseWrite,
        messages: &[OutboxWrite],
        audit: &AuditEntry,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// What admit knows of a checkout session (and the subscription it created).
    async fn session_status(&self, session_id: &str) -> Result<SessionStatus, StoreError>;

    /// Queues a stored event for processing again (an operator's replay,
    /// e.g. after a catalog change), audited (`event.replayed`, on the
    /// workspace the event is linked to). `false` when there is no such event.
    async fn requeue_event(
        &self,
        id: &EventId,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// The workspace an event is linked to (as `requeue_event` audits it):
    /// the one its subscription, checkout session or customer is linked to,
    /// else its `metadata.workspace_id` when that workspace exists.
    async fn event_workspace(&self, id: &EventId) -> Result<Option<WorkspaceId>, StoreError>;

    /// Events not yet in a final status (`received`, or `failed` and due), for tests and ops.
    async fn pending_events(&self) -> Result<u64, StoreError>;
}

/// The audit entry of an operator's replay of event `id`, on the workspace
/// the event is linked to (if any).
pub(crate) fn replay_audit(
    id: &EventId,
    actor: &Actor,
    workspace: Option<WorkspaceId>,
    now: Timestamp,
) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: actor.to_string(),
        action: "event.replayed".into(),
        workspace_id: workspace,
        subject: Some(format!("event:{}", id.as_str())),
        before: None,
        after: None,
        cause: Some(id.as_str().to_owned()),
    }
}
