//! `admit readiness` and `GET /v1/readiness`: gathers the memo's facts from
//! live data (the database, Stripe when a key is set, the mail transport,
//! the audit log's gate runs, reconciliations and decisions), lets the core
//! judge them, and renders the memo. `approve` records a release decision.

use std::fmt::Write as _;

use admit_core::Timestamp;
use admit_core::readiness::{
    Approval, Check, Decision, EventMode, Facts, GateRun, KeyMode, Memo, Recommendation,
    ReconcileRun,
};
use admit_store::{AuditEntry, Store};
use serde_json::{Value, json};
use sha2::Digest;

use crate::config::stripe::StripeMode;
use crate::config::{Config, Provenance};
use crate::mail::transport::Transport;

pub const APPROVED_ACTION: &str = "readiness.approved";
pub const RECONCILED_ACTION: &str = "reconcile.completed";

/// The memo and the hash a decision refers to it by.
#[derive(Debug, Clone)]
pub struct Report {
    pub memo: Memo,
    pub hash: String,
    /// The database's figures the memo was judged on.
    pub inbox: admit_core::readiness::InboxFacts,
}

/// Gathers the facts and judges them.
pub async fn report(
    config: &Config,
    store: &dyn Store,
    stripe: Option<&admit_stripe::api::StripeClient>,
    now: Timestamp,
) -> anyhow::Result<Report> {
    let facts = gather(config, store, stripe, now).await?;
    let memo = admit_core::readiness::assess(&facts);
    let hash = hex::encode(&sha2::Sha256::digest(memo.fingerprint().as_bytes())[..8]);
    Ok(Report {
        memo,
        hash,
        inbox: facts.inbox,
    })
}

async fn gather(
    config: &Config,
    store: &dyn Store,
    stripe: Option<&admit_stripe::api::StripeClient>,
    now: Timestamp,
) -> anyhow::Result<Facts> {
    let database = match store.check_ready().await {
        Ok(()) => Check::Passed("database reachable and migrated".to_owned()),
        Err(e) => Check::Failed(crate::telemetry::error_chain(&e)),
    };
    let inbox = if matches!(database, Check::Passed(_)) {
        store
            .readiness_facts(now.plus_seconds(-admit_core::readiness::RECENT_SECS))
            .await?
    } else {
        admit_core::readiness::InboxFacts::default()
    };
    let mail = match Transport::from_config(&config.mail) {
        Ok(transport) => match transport.check().await {
            Ok(seen) => Check::Passed(seen),
            Err(seen) => Check::Failed(seen),
        },
        Err(e) => Check::Failed(crate::telemetry::error_chain(&e)),
    };
    let stripe_key = config
        .stripe
        .key_is_live()
        .map(|live| if live { KeyMode::Live } else { KeyMode::Test });
    let event_mode = match config.stripe.mode {
        StripeMode::Live => EventMode::Live,
        StripeMode::Test => EventMode::Test,
        StripeMode::Any => EventMode::Any,
    };
    let prices = match stripe {
        Some(client) => check_prices(config, client).await,
        None => {
            Check::NotChecked("no Stripe API key is configured (ADMIT_STRIPE_API_KEY)".to_owned())
        }
    };
    // The newest full run: a run of one scenario, of other files or against
    // a running admit speaks for less than the whole table.
    let gate = store
        .audit_by_action(crate::qa::RECORDED_ACTION, 50)
        .await?
        .iter()
        .filter_map(|e| e.entry.after.as_ref())
        .find(|after| after["scope"] == "full")
        .and_then(gate_run);
    let reconcile = store
        .audit_by_action(RECONCILED_ACTION, 1)
        .await?
        .first()
        .and_then(|e| {
            let after = e.entry.after.as_ref()?;
            Some(ReconcileRun {
                at: e.entry.at,
                differences: after["differences"].as_u64()?,
                applied: after["applied"].as_bool().unwrap_or(false),
            })
        });
    let approvals = store
        .audit_by_action(APPROVED_ACTION, 20)
        .await?
        .iter()
        .filter_map(|e| {
            let after = e.entry.after.as_ref()?;
            Some(Approval {
                by: after["by"].as_str()?.to_owned(),
                decision: Decision::parse(after["decision"].as_str()?)?,
                note: after["note"].as_str().unwrap_or_default().to_owned(),
                at: e.entry.at,
                memo_hash: after["memo_hash"].as_str().unwrap_or_default().to_owned(),
                recommendation: Recommendation::parse(after["recommendation"].as_str()?)?,
            })
        })
        .collect();
    Ok(Facts {
        now,
        webhook_secrets: config.webhook_secrets.len(),
        webhook_secret_generated: config.webhook_secrets_provenance
            == Provenance::GeneratedForDevelopment,
        app_token_generated: config.app_token_provenance == Provenance::GeneratedForDevelopment,
        catalog_plans: config.catalog.plans().count(),
        catalog_fingerprint: crate::qa::catalog_fingerprint(config),
        stripe_key,
        event_mode,
        database,
        mail,
        prices,
        inbox,
        gate,
        reconcile,
        approvals,
    })
}

fn gate_run(after: &Value) -> Option<GateRun> {
    Some(GateRun {
        passed: after["result"].as_str()? == "PASS",
        held: after["held"].as_u64()?,
        total: after["total"].as_u64()?,
        finished_at: Timestamp::from_unix(after["finished_at"].as_i64()?),
        catalog: after["catalog"].as_str()?.to_owned(),
        passed_scenarios: after["scenarios"]
            .as_array()?
            .iter()
            .filter(|s| s["result"] == "PASS")
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect(),
        held_scenarios: after["scenarios"]
            .as_array()?
            .iter()
            .filter(|s| s["result"] == "HOLD")
            .map(|s| {
                (
                    s["id"].as_str().unwrap_or_default().to_owned(),
                    s["why"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
    })
}

/// Every price of the catalog exists at Stripe and is active.
async fn check_prices(config: &Config, client: &admit_stripe::api::StripeClient) -> Check {
    let mut missing = Vec::new();
    let mut inactive = Vec::new();
    let mut checked = 0;
    for plan in config.catalog.plans() {
        for price in &plan.prices {
            match client.retrieve_price(price).await {
                Ok(object) => {
                    checked += 1;
                    if object["active"] == false {
                        inactive.push(format!("{price} ({})", plan.key.as_str()));
                    }
                }
                Err(admit_stripe::api::StripeError::Api { status: 404, .. }) => {
                    missing.push(format!("{price} ({})", plan.key.as_str()));
                }
                Err(e) => {
                    return Check::Failed(format!(
                        "cannot check the catalog's prices at Stripe: {}",
                        crate::telemetry::error_chain(&e)
                    ));
                }
            }
        }
    }
    if missing.is_empty() && inactive.is_empty() {
        Check::Passed(format!(
            "all {checked} catalog prices exist at Stripe and are active"
        ))
    } else {
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("not found at Stripe: {}", missing.join(", ")));
        }
        if !inactive.is_empty() {
            problems.push(format!("archived at Stripe: {}", inactive.join(", ")));
        }
        Check::Failed(format!("catalog prices {}", problems.join("; ")))
    }
}

/// The memo as JSON: what `GET /v1/readiness` and `--json` print.
pub fn render_json(report: &Report) -> Value {
    let mut value = serde_json::to_value(&report.memo).unwrap_or(Value::Null);
    value["hash"] = json!(report.hash);
    value
}

fn time(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| at.to_string())
}

/// The memo as the release owner reads it.
pub fn render_text(report: &Report) -> String {
    let memo = &report.memo;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "admit readiness, {} (memo {})\n",
        time(memo.generated_at),
        report.hash
    );
    let _ = writeln!(out, "Recommendation: {}", memo.recommendation.as_str());
    let _ = writeln!(out, "Confidence: {}\n", memo.confidence_rule);
    for (title, items, mark) in [
        ("Done", &memo.done, "[x]"),
        ("In progress", &memo.in_progress, "[ ]"),
        ("Blockers / decisions needed", &memo.blockers, "[!]"),
    ] {
        let _ = writeln!(out, "{title}");
        if items.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        for item in items {
            let _ = writeln!(out, "  {mark} {}", item.text);
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "Decision log");
    if memo.decisions.is_empty() {
        let _ = writeln!(
            out,
            "  (none: `admit readiness approve --by NAME --decision go|no-go --note TEXT`)"
        );
    }
    for decision in &memo.decisions {
        let _ = writeln!(
            out,
            "  {} {} by {} on a {} memo ({}){}: {}",
            time(decision.at),
            decision.decision.as_str(),
            decision.by,
            decision.recommended.as_str(),
            decision.memo_hash,
            if decision.stale {
                " STALE: the memo has turned HOLD since"
            } else {
                ""
            },
            decision.note
        );
    }
    out
}

/// Records a release decision on the current memo in the audit log.
pub async fn approve(
    store: &dyn Store,
    report: &Report,
    by: &str,
    decision: Decision,
    note: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    let entry = AuditEntry {
        at: now,
        actor: format!("operator:{by}"),
        action: APPROVED_ACTION.to_owned(),
        workspace_id: None,
        subject: Some("release".to_owned()),
        before: None,
        after: Some(json!({
            "by": by,
            "decision": decision.as_str(),
            "note": note,
            "memo_hash": report.hash,
            "recommendation": report.memo.recommendation.as_str(),
            "memo": render_json(report),
        })),
        cause: None,
    };
    store.append_audit(&entry).await?;
    Ok(())
}

/// Records what a reconciliation found, for the memo's drift line.
pub async fn record_reconcile(
    store: &dyn Store,
    differences: usize,
    applied: bool,
    now: Timestamp,
) -> anyhow::Result<()> {
    store
        .append_audit(&AuditEntry {
            at: now,
            actor: "system".to_owned(),
            action: RECONCILED_ACTION.to_owned(),
            workspace_id: None,
            subject: Some("stripe".to_owned()),
            before: None,
            after: Some(json!({ "differences": differences, "applied": applied })),
            cause: Some("reconcile".to_owned()),
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use admit_core::readiness::{HeldCase, InboxFacts, assess};

    fn facts() -> Facts {
        Facts {
            now: Timestamp::from_unix(1_800_000_000),
            webhook_secrets: 2,
            webhook_secret_generated: false,
            app_token_generated: false,
            catalog_plans: 2,
            catalog_fingerprint: "a9a1e89ca81510ad".into(),
            stripe_key: None,
            event_mode: EventMode::Any,
            database: Check::Passed("database reachable and migrated".into()),
            mail: Check::Passed("the mail folder ./mail is writable".into()),
            prices: Check::NotChecked(
                "no Stripe API key is configured (ADMIT_STRIPE_API_KEY)".into(),
            ),
            inbox: InboxFacts::default(),
            gate: None,
            reconcile: None,
            approvals: Vec::new(),
        }
    }

    fn report_of(facts: &Facts) -> Report {
        let memo = assess(facts);
        let hash = hex::encode(&sha2::Sha256::digest(memo.fingerprint().as_bytes())[..8]);
        Report {
            memo,
            hash,
            inbox: facts.inbox.clone(),
        }
    }

    #[test]
    fn the_memo_of_a_fresh_instance() {
        insta::assert_snapshot!(render_text(&report_of(&facts())));
    }

    #[test]
    fn the_memo_after_a_pass_with_a_held_case_and_a_stale_approval() {
        let mut facts = facts();
        facts.gate = Some(GateRun {
            passed: true,
            held: 0,
            total: 20,
            finished_at: facts.now.plus_seconds(-600),
            catalog: "a9a1e89ca81510ad".into(),
            passed_scenarios: admit_core::readiness::REQUIRED_SCENARIOS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            held_scenarios: Vec::new(),
        });
        facts.inbox.webhooks_recent = 31;
        facts.inbox.last_webhook_at = Some(facts.now.plus_seconds(-40));
        facts.inbox.held_total = 1;
        facts.inbox.held_cases = vec![HeldCase {
            id: "case_4f1c".into(),
            kind: "missing_workspace".into(),
            workspace_id: None,
            created_at: facts.now.plus_seconds(-7_400),
        }];
        facts.approvals = vec![Approval {
            by: "rel-owner".into(),
            decision: Decision::Go,
            note: "launch on Monday".into(),
            at: facts.now.plus_seconds(-8_000),
            memo_hash: "0011223344556677".into(),
            recommendation: Recommendation::Ready,
        }];
        let text = render_text(&report_of(&facts));
        insta::assert_snapshot!(text);
        assert!(text.contains("STALE"));
    }
}
