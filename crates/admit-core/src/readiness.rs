//! The go/no-go memo: from what the shell measured (configuration, the
//! database's figures, Stripe, the mail transport, the last QA gate and
//! reconciliation, the decisions recorded) to Done / In progress /
//! Blockers, a confidence with the rule that set it, and READY or HOLD.
//! Pure: the shell gathers, this decides.

use serde::Serialize;

use crate::Timestamp;

/// A held case older than this is a blocker; a younger one is support's work in progress.
pub const HELD_CASE_BLOCKS_AFTER_SECS: i64 = 3_600;
/// An unprocessed event older than this means the processor is behind.
pub const BACKLOG_BLOCKS_AFTER_SECS: i64 = 300;
/// A QA gate PASS older than this still counts, with lower confidence.
pub const GATE_FRESH_SECS: i64 = 86_400;
/// "Recent" in the memo.
pub const RECENT_SECS: i64 = 86_400;

/// A held case as the memo lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCase {
    pub id: String,
    pub kind: String,
    pub workspace_id: Option<String>,
    pub created_at: Timestamp,
}

/// The database's live figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxFacts {
    pub backlog: u64,
    pub oldest_unprocessed: Option<Timestamp>,
    pub failed_events: u64,
    pub pending_mail: u64,
    pub dead_mail: u64,
    /// Held cases, oldest first (at most 100).
    pub held_cases: Vec<HeldCase>,
    pub held_total: u64,
    pub last_webhook_at: Option<Timestamp>,
    /// Verified webhook deliveries in the recent window.
    pub webhooks_recent: u64,
    /// Events of the other Stripe mode ignored in the recent window.
    pub mode_mismatches_recent: u64,
    /// Refused webhook deliveries in the recent window, by error code.
    pub rejections_recent: Vec<(String, u64)>,
}

/// A check the shell made: passed, or failed with what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Passed(String),
    Failed(String),
    /// Not possible with this configuration (say why).
    NotChecked(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    Live,
    Test,
}

/// Which events provision (`ADMIT_STRIPE_MODE` as resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventMode {
    Live,
    Test,
    Any,
}

/// The rows a QA gate run must have passed to count for the memo: the
/// decision table S1–S18, S5 under the `create_workspace` policy, and the
/// catalog itself.
pub const REQUIRED_SCENARIOS: &[&str] = &[
    "catalog",
    "S1",
    "S2",
    "S3",
    "S4",
    "S5",
    "S5-create",
    "S6",
    "S7",
    "S8",
    "S9",
    "S10",
    "S11",
    "S12",
    "S13",
    "S14",
    "S15",
    "S16",
    "S17",
    "S18",
];

/// The last full QA gate run (the built-in scenarios on private admits), as
/// its audit entry recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRun {
    pub passed: bool,
    pub held: u64,
    pub total: u64,
    pub finished_at: Timestamp,
    pub catalog: String,
    /// The rows that passed.
    pub passed_scenarios: Vec<String>,
    /// The scenarios that held, with their first reason.
    pub held_scenarios: Vec<(String, String)>,
}

impl GateRun {
    /// Required rows the run did not pass (missing or held).
    pub fn missing(&self) -> Vec<&'static str> {
        REQUIRED_SCENARIOS
            .iter()
            .copied()
            .filter(|id| !self.passed_scenarios.iter().any(|p| p == id))
            .collect()
    }
}

/// The last reconciliation with Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileRun {
    pub at: Timestamp,
    pub differences: u64,
    pub applied: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Go,
    NoGo,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Go => "go",
            Decision::NoGo => "no-go",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "go" => Some(Decision::Go),
            "no-go" => Some(Decision::NoGo),
            _ => None,
        }
    }
}

/// A recorded go/no-go decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub by: String,
    pub decision: Decision,
    pub note: String,
    pub at: Timestamp,
    pub memo_hash: String,
    pub recommendation: Recommendation,
}

/// Everything the memo is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub now: Timestamp,
    pub webhook_secrets: usize,
    pub webhook_secret_generated: bool,
    pub app_token_generated: bool,
    pub catalog_plans: usize,
    pub catalog_fingerprint: String,
    pub stripe_key: Option<KeyMode>,
    pub event_mode: EventMode,
    pub database: Check,
    pub mail: Check,
    /// Every catalog price exists at Stripe and is active.
    pub prices: Check,
    pub inbox: InboxFacts,
    pub gate: Option<GateRun>,
    pub reconcile: Option<ReconcileRun>,
    /// Newest first.
    pub approvals: Vec<Approval>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Recommendation {
    Ready,
    Hold,
}

impl Recommendation {
    pub fn as_str(self) -> &'static str {
        match self {
            Recommendation::Ready => "READY",
            Recommendation::Hold => "HOLD",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "READY" => Some(Recommendation::Ready),
            "HOLD" => Some(Recommendation::Hold),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Confidence {
    High,
    Medium,
    Low,
}

/// One line of the memo; `key` is stable for machines and for the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub key: String,
    pub text: String,
}

fn item(key: impl Into<String>, text: impl Into<String>) -> Item {
    Item {
        key: key.into(),
        text: text.into(),
    }
}

/// A decision as the memo shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionLine {
    pub by: String,
    pub decision: Decision,
    pub note: String,
    pub at: i64,
    pub memo_hash: String,
    /// What the memo it approved recommended.
    pub recommended: Recommendation,
    /// A go on a READY memo that has since turned HOLD.
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Memo {
    pub generated_at: i64,
    pub recommendation: Recommendation,
    pub confidence: Confidence,
    pub confidence_rule: String,
    pub done: Vec<Item>,
    pub in_progress: Vec<Item>,
    pub blockers: Vec<Item>,
    pub decisions: Vec<DecisionLine>,
}

impl Memo {
    /// What a decision approves: the recommendation and which lines the memo
    /// had, not their figures (an age that grew a second is the same memo).
    pub fn fingerprint(&self) -> String {
        let keys = |items: &[Item]| {
            items
                .iter()
                .map(|i| i.key.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "{}|done:{}|in_progress:{}|blockers:{}",
            self.recommendation.as_str(),
            keys(&self.done),
            keys(&self.in_progress),
            keys(&self.blockers)
        )
    }
}

/// A duration as a person reads it: `42 s`, `7 min`, `3 h`, `2 d`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 120 {
        format!("{s} s")
    } else if s < 7_200 {
        format!("{} min", s / 60)
    } else if s < 172_800 {
        format!("{} h", s / 3_600)
    } else {
        format!("{} d", s / 86_400)
    }
}

/// Refusals that mean "signed, but not with a secret admit has" (a missing
/// or malformed header is anybody's request, not a sign of a wrong secret).
pub const SIGNATURE_CODES: &[&str] = &["signature_mismatch", "timestamp_outside_tolerance"];

/// The memo of these facts.
pub fn assess(facts: &Facts) -> Memo {
    let now = facts.now;
    let since = |t: Timestamp| now.unix() - t.unix();
    let mut done = Vec::new();
    let mut in_progress = Vec::new();
    let mut blockers = Vec::new();
    // What keeps confidence below High although nothing blocks.
    let mut unverified: Vec<&str> = Vec::new();

    done.push(item(
        "config",
        format!(
            "configuration valid: {} plans in the catalog (fingerprint {})",
            facts.catalog_plans, facts.catalog_fingerprint
        ),
    ));
    if facts.webhook_secret_generated {
        blockers.push(item(
            "webhook_secret",
            "the webhook secret is a development secret generated at start-up: set ADMIT_WEBHOOK_SECRETS to the endpoint's signing secret (whsec_…)",
        ));
    } else {
        done.push(item(
            "webhook_secret",
            format!(
                "webhook signing secret set ({} configured)",
                facts.webhook_secrets
            ),
        ));
    }
    if facts.app_token_generated {
        blockers.push(item(
            "app_token",
            "the app token is generated at start-up: set ADMIT_APP_TOKEN (or ADMIT_APP_TOKEN_FILE)",
        ));
    }
    match (facts.inbox.webhooks_recent, facts.inbox.last_webhook_at) {
        (n, Some(last)) if n > 0 => done.push(item(
            "deliveries",
            format!(
                "{n} webhook deliveries verified in the last 24 h (latest {} ago)",
                age(since(last))
            ),
        )),
        (_, Some(last)) => {
            unverified.push("no webhook delivery in the last 24 h");
            in_progress.push(item(
                "deliveries",
                format!(
                    "no webhook delivery in the last 24 h (latest {} ago): send a test event (`stripe trigger checkout.session.completed`)",
                    age(since(last))
                ),
            ));
        }
        (_, None) => {
            unverified.push("no webhook delivery verified yet");
            in_progress.push(item(
                "deliveries",
                "no webhook delivery verified yet: point Stripe's endpoint here and send a test event",
            ));
        }
    }
    match &facts.prices {
        Check::Passed(text) => done.push(item("prices", text.clone())),
        Check::Failed(text) => blockers.push(item("prices", text.clone())),
        Check::NotChecked(why) => {
            unverified.push("catalog prices not checked at Stripe");
            in_progress.push(item(
                "prices",
                format!("catalog prices not checked at Stripe: {why}"),
            ));
        }
    }
    match &facts.gate {
        None => blockers.push(item(
            "qa_gate",
            "no full QA gate run yet: run `admit qa-gate` (a run with --scenario, --scenarios or --against does not count)",
        )),
        Some(gate) if !gate.passed => {
            let held: Vec<String> = gate
                .held_scenarios
                .iter()
                .map(|(id, why)| format!("{id}: {why}"))
                .collect();
            blockers.push(item(
                "qa_gate",
                format!(
                    "QA gate HOLD ({} of {}) {} ago: {}",
                    gate.held,
                    gate.total,
                    age(since(gate.finished_at)),
                    held.join("; ")
                ),
            ));
        }
        Some(gate) if !gate.missing().is_empty() => blockers.push(item(
            "qa_gate",
            format!(
                "the last QA gate ({} ago) did not pass {}: run `admit qa-gate`",
                age(since(gate.finished_at)),
                gate.missing().join(", ")
            ),
        )),
        Some(gate) if gate.catalog != facts.catalog_fingerprint => blockers.push(item(
            "qa_gate",
            format!(
                "the catalog changed since the last QA gate PASS ({} ago, catalog {}): run `admit qa-gate` again",
                age(since(gate.finished_at)),
                gate.catalog
            ),
        )),
        Some(gate) => {
            if since(gate.finished_at) > GATE_FRESH_SECS {
                unverified.push("the last QA gate PASS is over a day old");
            }
            done.push(item(
                "qa_gate",
                format!(
                    "QA gate PASS, {} of {} scenarios, {} ago",
                    gate.total,
                    gate.total,
                    age(since(gate.finished_at))
                ),
            ));
        }
    }
    for (key, check, what) in [
        ("mail", &facts.mail, "mail transport"),
        ("database", &facts.database, "database"),
    ] {
        match check {
            Check::Passed(text) => done.push(item(key, text.clone())),
            Check::Failed(text) => blockers.push(item(key, format!("{what}: {text}"))),
            Check::NotChecked(text) => in_progress.push(item(key, format!("{what}: {text}"))),
        }
    }
    match (facts.stripe_key, facts.event_mode) {
        (Some(KeyMode::Live), EventMode::Test) => blockers.push(item(
            "mode",
            "a live Stripe key with ADMIT_STRIPE_MODE=test: live payments would be ignored",
        )),
        (Some(KeyMode::Test), EventMode::Live) => blockers.push(item(
            "mode",
            "a test Stripe key with ADMIT_STRIPE_MODE=live: checkouts are test mode but only live events provision",
        )),
        _ => {}
    }
    if facts.inbox.mode_mismatches_recent > 0 {
        blockers.push(item(
            "mode_mismatch",
            format!(
                "{} events of the other Stripe mode were ignored in the last 24 h: the endpoint and ADMIT_STRIPE_MODE disagree",
                facts.inbox.mode_mismatches_recent
            ),
        ));
    }

    // In progress: the work moving through admit now.
    let oldest = facts.inbox.oldest_unprocessed.map(since);
    let backlog = format!(
        "{} events waiting to be processed{}",
        facts.inbox.backlog,
        oldest.map_or(String::new(), |s| format!(", the oldest for {}", age(s)))
    );
    if oldest.is_some_and(|s| s > BACKLOG_BLOCKS_AFTER_SECS) {
        blockers.push(item(
            "backlog",
            format!("{backlog}: the processor is behind or stopped"),
        ));
    } else {
        in_progress.push(item("backlog", backlog));
    }
    in_progress.push(item(
        "pending_mail",
        format!("{} messages waiting to be sent", facts.inbox.pending_mail),
    ));
    let (old, young): (Vec<&HeldCase>, Vec<&HeldCase>) = facts
        .inbox
        .held_cases
        .iter()
        .partition(|c| since(c.created_at) >= HELD_CASE_BLOCKS_AFTER_SECS);
    if !young.is_empty() {
        in_progress.push(item(
            "held_recent",
            format!(
                "{} held cases younger than an hour, for support: {}",
                young.len(),
                case_list(&young, now)
            ),
        ));
    }
    let mut kinds: Vec<&str> = old.iter().map(|c| c.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let of_kind: Vec<&HeldCase> = old.iter().copied().filter(|c| c.kind == kind).collect();
        blockers.push(item(
            format!("held:{kind}"),
            format!(
                "{} held {kind} cases older than an hour: {} (resolve them: docs/runbook.md)",
                of_kind.len(),
                case_list(&of_kind, now)
            ),
        ));
    }
    let listed = u64::try_from(facts.inbox.held_cases.len()).unwrap_or(u64::MAX);
    if facts.inbox.held_total > listed {
        blockers.push(item(
            "held_more",
            format!(
                "{} more held cases not listed here: GET /v1/cases?state=held",
                facts.inbox.held_total - listed
            ),
        ));
    }
    if facts.inbox.dead_mail > 0 {
        blockers.push(item(
            "dead_mail",
            format!(
                "{} messages dead after every retry: `admit outbox list --state dead`, fix the cause, `admit outbox resend ID`",
                facts.inbox.dead_mail
            ),
        ));
    }
    // A bad signature from the internet is noise (anyone can send one); a
    // wrong secret shows as failures while no verified delivery arrives.
    let signature_failures: u64 = facts
        .inbox
        .rejections_recent
        .iter()
        .filter(|(code, _)| SIGNATURE_CODES.contains(&code.as_str()))
        .map(|(_, n)| n)
        .sum();
    if signature_failures > 0 {
        let codes: Vec<String> = facts
            .inbox
            .rejections_recent
            .iter()
            .filter(|(code, _)| SIGNATURE_CODES.contains(&code.as_str()))
            .map(|(code, n)| format!("{n} {code}"))
            .collect();
        if facts.inbox.webhooks_recent == 0 {
            blockers.push(item(
                "signature_failures",
                format!(
                    "{signature_failures} webhook signature failures in the last 24 h ({}) and no verified delivery: the endpoint's signing secret is probably not in ADMIT_WEBHOOK_SECRETS",
                    codes.join(", ")
                ),
            ));
        } else {
            in_progress.push(item(
                "signature_failures",
                format!(
                    "{signature_failures} webhook signature failures in the last 24 h ({}) beside {} verified deliveries: probes, or a secret being rolled",
                    codes.join(", "),
                    facts.inbox.webhooks_recent
                ),
            ));
        }
    }
    if facts.inbox.failed_events > 0 {
        blockers.push(item(
            "failed_events",
            format!(
                "{} events failed to process: GET /v1/events?status=failed shows why; fix the cause and replay them (POST /v1/events/ID/replay)",
                facts.inbox.failed_events
            ),
        ));
    }
    match &facts.reconcile {
        Some(run) if run.differences > 0 => blockers.push(item(
            "drift",
            format!(
                "the last reconciliation ({} ago) found {} differences with Stripe{}",
                age(since(run.at)),
                run.differences,
                if run.applied {
                    " and recorded Stripe's state; run `admit reconcile` again to confirm"
                } else {
                    ": run `admit reconcile --apply`"
                }
            ),
        )),
        Some(run) => done.push(item(
            "drift",
            format!(
                "no drift with Stripe at the last reconciliation ({} ago)",
                age(since(run.at))
            ),
        )),
        None => {}
    }

    let recommendation = if blockers.is_empty() {
        Recommendation::Ready
    } else {
        Recommendation::Hold
    };
    let (confidence, confidence_rule) = if !blockers.is_empty() {
        (
            Confidence::Low,
            format!(
                "Low: {} blocker{} open",
                blockers.len(),
                if blockers.len() == 1 { "" } else { "s" }
            ),
        )
    } else if unverified.is_empty() {
        (
            Confidence::High,
            "High: nothing blocks, the QA gate passed within a day, the catalog's prices are verified at Stripe and webhooks arrive verified".to_owned(),
        )
    } else {
        (
            Confidence::Medium,
            format!("Medium: nothing blocks, but {}", unverified.join("; ")),
        )
    };
    let mut memo = Memo {
        generated_at: now.unix(),
        recommendation,
        confidence,
        confidence_rule,
        done,
        in_progress,
        blockers,
        decisions: Vec::new(),
    };
    memo.decisions = facts
        .approvals
        .iter()
        .map(|a| DecisionLine {
            by: a.by.clone(),
            decision: a.decision,
            note: a.note.clone(),
            at: a.at.unix(),
            memo_hash: a.memo_hash.clone(),
            recommended: a.recommendation,
            stale: a.decision == Decision::Go
                && a.recommendation == Recommendation::Ready
                && memo.recommendation == Recommendation::Hold,
        })
        .collect();
    memo
}

fn case_list(cases: &[&HeldCase], now: Timestamp) -> String {
    let mut shown: Vec<String> = cases
        .iter()
        .take(5)
        .map(|c| {
            format!(
                "{} ({}{}, {} old)",
                c.id,
                c.kind,
                c.workspace_id
                    .as_deref()
                    .map(|w| format!(", {w}"))
                    .unwrap_or_default(),
                age(now.unix() - c.created_at.unix())
            )
        })
        .collect();
    if cases.len() > 5 {
        shown.push(format!("and {} more", cases.len() - 5));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests;
