use super::*;

const NOW: i64 = 1_800_000_000;

fn t(seconds_ago: i64) -> Timestamp {
    Timestamp::from_unix(NOW - seconds_ago)
}

/// A fresh instance: configured, migrated, mail fine, nothing run yet.
fn fresh() -> Facts {
    Facts {
        now: Timestamp::from_unix(NOW),
        webhook_secrets: 1,
        webhook_secret_generated: false,
        app_token_generated: false,
        catalog_plans: 2,
        catalog_fingerprint: "cat1".into(),
        stripe_key: None,
        event_mode: EventMode::Any,
        database: Check::Passed("database migrated (version 7)".into()),
        mail: Check::Passed("mail folder ./mail writable".into()),
        prices: Check::NotChecked("no Stripe API key is configured".into()),
        inbox: InboxFacts::default(),
        gate: None,
        reconcile: None,
        approvals: Vec::new(),
    }
}

fn passed_gate(ago: i64) -> GateRun {
    GateRun {
        passed: true,
        held: 0,
        total: 20,
        finished_at: t(ago),
        catalog: "cat1".into(),
        passed_scenarios: REQUIRED_SCENARIOS.iter().map(|s| (*s).to_owned()).collect(),
        held_scenarios: Vec::new(),
    }
}

fn keys(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.key.as_str()).collect()
}

#[test]
fn a_fresh_instance_holds_until_the_qa_gate_has_run() {
    let memo = assess(&fresh());
    assert_eq!(memo.recommendation, Recommendation::Hold);
    assert_eq!(memo.confidence, Confidence::Low);
    assert_eq!(keys(&memo.blockers), ["qa_gate"]);
    assert!(memo.blockers[0].text.contains("admit qa-gate"));
}

#[test]
fn a_gate_run_that_skipped_a_row_does_not_count() {
    let mut facts = fresh();
    let mut gate = passed_gate(60);
    gate.passed_scenarios.retain(|s| s != "S14");
    facts.gate = Some(gate);
    let memo = assess(&facts);
    assert_eq!(memo.recommendation, Recommendation::Hold);
    assert!(
        memo.blockers[0].text.contains("did not pass S14"),
        "{:?}",
        memo.blockers
    );
}

#[test]
fn signature_failures_block_only_when_no_verified_delivery_arrives() {
    let mut facts = fresh();
    facts.gate = Some(passed_gate(60));
    facts.inbox.rejections_recent = vec![
        ("signature_header_invalid".into(), 50),
        ("signature_mismatch".into(), 4),
    ];
    let memo = assess(&facts);
    assert_eq!(keys(&memo.blockers), ["signature_failures"]);
    assert!(
        memo.blockers[0]
            .text
            .starts_with("4 webhook signature failures")
    );
    facts.inbox.webhooks_recent = 30;
    facts.inbox.last_webhook_at = Some(t(5));
    let memo = assess(&facts);
    assert_eq!(
        memo.recommendation,
        Recommendation::Ready,
        "probes beside real traffic"
    );
    assert!(keys(&memo.in_progress).contains(&"signature_failures"));
    facts.inbox.rejections_recent = vec![("signature_header_invalid".into(), 50)];
    facts.inbox.webhooks_recent = 0;
    assert_eq!(
        assess(&facts).recommendation,
        Recommendation::Ready,
        "a missing header is noise"
    );
}

#[test]
fn a_passed_gate_and_a_clean_state_are_ready_with_medium_confidence_until_verified() {
    let mut facts = fresh();
    facts.gate = Some(passed_gate(60));
    let memo = assess(&facts);
    assert_eq!(memo.recommendation, Recommendation::Ready);
    assert_eq!(memo.confidence, Confidence::Medium);
    assert!(
        memo.confidence_rule
            .contains("no webhook delivery verified yet")
    );
    assert!(memo.confidence_rule.contains("not checked at Stripe"));

    facts.prices = Check::Passed("2 catalog prices exist at Stripe and are active".into());
    facts.inbox.webhooks_recent = 12;
    facts.inbox.last_webhook_at = Some(t(30));
    let memo = assess(&facts);
    assert_eq!(
        memo.confidence,
        Confidence::High,
        "{}",
        memo.confidence_rule
    );

    facts.gate = Some(passed_gate(3 * 86_400));
    assert_eq!(assess(&facts).confidence, Confidence::Medium, "an old pass");
}

#[test]
fn a_held_case_blocks_once_it_is_an_hour_old_and_is_listed() {
    let mut facts = fresh();
    facts.gate = Some(passed_gate(60));
    facts.inbox.held_total = 1;
    facts.inbox.held_cases = vec![HeldCase {
        id: "case_young".into(),
        kind: "missing_workspace".into(),
        workspace_id: None,
        created_at: t(600),
    }];
    let memo = assess(&facts);
    assert_eq!(memo.recommendation, Recommendation::Ready);
    assert!(keys(&memo.in_progress).contains(&"held_recent"));

    facts.inbox.held_cases[0].created_at = t(2 * 3_600);
    facts.inbox.held_cases[0].id = "case_old".into();
    let memo = assess(&facts);
    assert_eq!(memo.recommendation, Recommendation::Hold);
    assert_eq!(keys(&memo.blockers), ["held:missing_workspace"]);
    assert!(memo.blockers[0].text.contains("case_old"));
    assert!(memo.blockers[0].text.contains("2 h old"));
}

#[test]
fn every_kind_of_trouble_is_a_blocker_with_what_to_do() {
    let mut facts = fresh();
    facts.gate = Some(passed_gate(60));
    facts.webhook_secret_generated = true;
    facts.stripe_key = Some(KeyMode::Live);
    facts.event_mode = EventMode::Test;
    facts.inbox.dead_mail = 2;
    facts.inbox.failed_events = 1;
    facts.inbox.backlog = 40;
    facts.inbox.oldest_unprocessed = Some(t(900));
    facts.inbox.mode_mismatches_recent = 3;
    facts.inbox.rejections_recent = vec![
        ("payload_too_large".into(), 9),
        ("signature_mismatch".into(), 4),
    ];
    facts.inbox.webhooks_recent = 0;
    facts.reconcile = Some(ReconcileRun {
        at: t(100),
        differences: 2,
        applied: false,
    });
    facts.mail = Check::Failed("cannot connect to smtp://mail:25".into());
    let memo = assess(&facts);
    let mut blockers = keys(&memo.blockers);
    blockers.sort_unstable();
    assert_eq!(
        blockers,
        [
            "backlog",
            "dead_mail",
            "drift",
            "failed_events",
            "mail",
            "mode",
            "mode_mismatch",
            "signature_failures",
            "webhook_secret"
        ]
    );
    let signatures = memo
        .blockers
        .iter()
        .find(|b| b.key == "signature_failures")
        .expect("listed");
    assert!(
        signatures.text.starts_with("4 webhook signature failures"),
        "{}",
        signatures.text
    );
}

#[test]
fn a_gate_that_held_or_ran_on_another_catalog_blocks() {
    let mut facts = fresh();
    facts.gate = Some(GateRun {
        passed: false,
        held: 1,
        total: 20,
        finished_at: t(60),
        catalog: "cat1".into(),
        passed_scenarios: Vec::new(),
        held_scenarios: vec![("S10".into(), "no held case unknown_price".into())],
    });
    let memo = assess(&facts);
    assert!(
        memo.blockers[0]
            .text
            .contains("S10: no held case unknown_price")
    );
    facts.gate = Some(passed_gate(60));
    facts.catalog_fingerprint = "cat2".into();
    let memo = assess(&facts);
    assert_eq!(keys(&memo.blockers), ["qa_gate"]);
    assert!(memo.blockers[0].text.contains("catalog changed"));
}

#[test]
fn a_go_on_a_ready_memo_turns_stale_when_the_memo_turns_hold() {
    let mut facts = fresh();
    facts.gate = Some(passed_gate(60));
    let ready = assess(&facts);
    facts.approvals = vec![Approval {
        by: "rel".into(),
        decision: Decision::Go,
        note: "launch".into(),
        at: t(30),
        memo_hash: "h1".into(),
        recommendation: ready.recommendation,
    }];
    assert!(!assess(&facts).decisions[0].stale);
    facts.approvals.push(Approval {
        decision: Decision::NoGo,
        ..facts.approvals[0].clone()
    });
    facts.inbox.dead_mail = 1;
    let memo = assess(&facts);
    assert!(memo.decisions[0].stale);
    assert!(
        !memo.decisions[1].stale,
        "a no-go is not made stale by a HOLD"
    );
    assert_ne!(memo.fingerprint(), ready.fingerprint());
}

#[test]
fn the_fingerprint_ignores_figures_that_move_with_time() {
    let mut facts = fresh();
    facts.gate = Some(passed_gate(60));
    let a = assess(&facts);
    facts.now = Timestamp::from_unix(NOW + 5);
    facts.inbox.pending_mail = 3;
    assert_eq!(assess(&facts).fingerprint(), a.fingerprint());
}

#[test]
fn ages_read_as_a_person_says_them() {
    assert_eq!(age(42), "42 s");
    assert_eq!(age(600), "10 min");
    assert_eq!(age(3 * 3_600), "3 h");
    assert_eq!(age(5 * 86_400), "5 d");
    assert_eq!(age(-3), "0 s");
}
