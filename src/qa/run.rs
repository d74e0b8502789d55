//! One scenario in one delivery order against one target: set up the
//! workspaces, deliver the events signed like Stripe signs them, make the
//! API calls, then compare what admit says through its public API and what
//! the mail sink received with what the scenario expects.

use std::collections::BTreeMap;

use admit_core::Catalog;
use serde_json::{Value, json};

use super::scenario::{Order, Outcome, RawDelivery, Scenario, Signing};
use super::target::Target;

/// What went wrong, one line each; empty when the run passed.
pub type Findings = Vec<String>;

/// A signed-to-be event: its id and body.
struct Built {
    id: String,
    created: i64,
    body: Vec<u8>,
}

fn build_events(scenario: &Scenario, run: &str) -> anyhow::Result<Vec<Built>> {
    let mut built = Vec::new();
    for (n, event) in scenario.events.iter().enumerate() {
        let object: Value = serde_json::from_str(&event.object)?;
        let mut data = json!({ "object": object });
        if let Some(previous) = &event.previous {
            data["previous_attributes"] = serde_json::from_str(previous)?;
        }
        let id = format!("evt_qa{run}{n:02}");
        let body = json!({
            "id": id, "object": "event", "api_version": "2025-09-30.clover",
            "created": event.created, "livemode": false, "pending_webhooks": 1,
            "type": event.event_type, "data": data,
            "request": {"id": null, "idempotency_key": null}
        });
        built.push(Built {
            id,
            created: event.created,
            body: serde_json::to_vec(&body)?,
        });
    }
    // Stripe's creation order; the file's order breaks ties (a chain in one second).
    built.sort_by_key(|b| b.created);
    Ok(built)
}

/// A small deterministic shuffle (xorshift), seeded by the run id so a
/// failing order can be named and replayed.
fn shuffle<T>(items: &mut [T], seed: &str) {
    let mut state = seed.bytes().fold(0x9E37_79B9_7F4A_7C15_u64, |s, b| {
        (s ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    }) | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
}

/// The deliveries of an order: (event index, copy number).
fn deliveries(count: usize, order: Order, seed: &str) -> Vec<(usize, u32)> {
    let mut plan: Vec<(usize, u32)> = (0..count).map(|i| (i, 0)).collect();
    match order {
        Order::Creation => {}
        Order::Reversed => plan.reverse(),
        Order::Shuffled => shuffle(&mut plan, seed),
        Order::Duplicated => {
            plan = (0..count).flat_map(|i| [(i, 0), (i, 1)]).collect();
        }
    }
    plan
}

/// Runs `scenario` in `order` on `target`.
pub async fn run(
    scenario: &Scenario,
    order: Order,
    run: &str,
    target: &Target,
    catalog: &Catalog,
) -> anyhow::Result<Findings> {
    let mut findings = Findings::new();
    for workspace in &scenario.workspaces {
        let answer = target
            .call(
                "POST",
                "/v1/workspaces",
                Some(&json!({"id": workspace.id, "name": workspace.name, "owner_email": workspace.owner})),
            )
            .await?;
        if answer.status != 201 {
            findings.push(format!(
                "creating workspace {} answered {}: {}",
                workspace.id, answer.status, answer.text
            ));
            return Ok(findings);
        }
        for (email, role) in workspace
            .admins
            .iter()
            .map(|e| (e, "admin"))
            .chain(workspace.members.iter().map(|e| (e, "member")))
        {
            let answer = target
                .call(
                    "PUT",
                    &format!("/v1/workspaces/{}/members/{email}", workspace.id),
                    Some(&json!({ "role": role })),
                )
                .await?;
            if answer.status != 200 {
                findings.push(format!("adding {role} {email} answered {}", answer.status));
            }
        }
    }

    let events = build_events(scenario, run)?;
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let copies = scenario.concurrent_copies.unwrap_or(1).max(1);
    let mut delivered: Vec<String> = Vec::new();
    for (index, copy) in deliveries(events.len(), order, run) {
        let event = &events[index];
        if copy == 0 {
            delivered.push(event.id.clone());
        }
        let header = admit_stripe::signature::sign(&event.body, target.secret(), target.now());
        let answers = futures_all(target, &event.body, &header, copies).await?;
        let fresh = answers
            .iter()
            .filter(|a| a.status == 200 && a.body["duplicate"] == false)
            .count();
        if let Some(bad) = answers.iter().find(|a| a.status != 200) {
            findings.push(format!(
                "{} answered {}: {}",
                event.id, bad.status, bad.text
            ));
            continue;
        }
        let expected_fresh = usize::from(copy == 0);
        if fresh != expected_fresh {
            findings.push(format!(
                "{} delivered {} time(s) at once was stored {fresh} time(s), expected {expected_fresh}",
                event.id,
                answers.len()
            ));
        }
        if let Some(repeat) = answers
            .iter()
            .find(|a| a.body["duplicate"] == true && a.body["scenario"] != "S6")
        {
            findings.push(format!(
                "a redelivery of {} did not answer scenario S6: {}",
                event.id, repeat.text
            ));
        }
        target.settle(&delivered).await?;
        if order == Order::Duplicated {
            // As if each delivery came long after the last: mail goes out at
            // once, and a redelivery must not send it again.
            target.deliver_mail().await?;
        }
        // Stripe's deliveries are seconds apart; a late one must look late.
        target.advance(1);
    }

    for delivery in &scenario.deliveries {
        check_raw_delivery(target, delivery, &mut findings).await?;
    }
    for request in &scenario.requests {
        let body = request
            .body
            .as_deref()
            .map(serde_json::from_str::<Value>)
            .transpose()?;
        let answer = target
            .call(&request.method, &request.path, body.as_ref())
            .await?;
        if answer.status != request.status {
            findings.push(format!(
                "{}: answered {}, expected {}: {}",
                request.what, answer.status, request.status, answer.text
            ));
        } else if let Some(code) = &request.code
            && answer.body["error"]["code"] != code.as_str()
        {
            findings.push(format!(
                "{}: error code {}, expected {code}",
                request.what, answer.body["error"]["code"]
            ));
        }
    }
    target.settle(&ids).await?;

    check_events(scenario, order, target, &ids, &mut findings).await?;
    check_billing(scenario, target, &mut findings).await?;
    check_cases(scenario, order, target, &mut findings).await?;
    check_messages(scenario, order, target, &mut findings).await?;
    if let Some(created) = &scenario.expect.created_workspace {
        check_created_workspace(created, target, catalog, &mut findings).await?;
    }
    for welcome in &scenario.expect.welcome {
        let page = target
            .page(&format!("/welcome?session_id={}", welcome.session))
            .await?;
        if !page.contains(&welcome.contains) {
            findings.push(format!(
                "the welcome page of {} does not say {:?}",
                welcome.session, welcome.contains
            ));
        }
    }
    check_access(scenario, target, catalog, &mut findings).await?;
    Ok(findings)
}

async fn futures_all(
    target: &Target,
    body: &[u8],
    header: &str,
    copies: u32,
) -> anyhow::Result<Vec<super::target::Answer>> {
    let sends = (0..copies).map(|_| target.deliver(body, Some(header)));
    futures::future::try_join_all(sends).await
}

async fn check_raw_delivery(
    target: &Target,
    delivery: &RawDelivery,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let mut body = delivery.body.clone().into_bytes();
    if let Some(size) = delivery.pad_to {
        body.resize(size.max(body.len()), b' ');
    }
    let now = target.now();
    let header = match delivery.signing {
        Signing::Valid | Signing::Tampered => {
            Some(admit_stripe::signature::sign(&body, target.secret(), now))
        }
        Signing::WrongSecret => Some(admit_stripe::signature::sign(
            &body,
            "whsec_not_the_endpoint_secret",
            now,
        )),
        Signing::Stale => Some(admit_stripe::signature::sign(
            &body,
            target.secret(),
            now.plus_seconds(-(target.tolerance_secs() + 60)),
        )),
        Signing::Missing => None,
    };
    if delivery.signing == Signing::Tampered
        && let Some(byte) = body.iter_mut().rev().find(|b| b.is_ascii_digit())
    {
        *byte = if *byte == b'9' { b'8' } else { *byte + 1 };
    }
    let answer = target.deliver(&body, header.as_deref()).await?;
    if answer.status != delivery.status || answer.body["error"]["code"] != delivery.code.as_str() {
        findings.push(format!(
            "{}: answered {} {}, expected {} {}",
            delivery.what,
            answer.status,
            answer.body["error"]["code"],
            delivery.status,
            delivery.code
        ));
    }
    if let Some(id) = &delivery.not_stored {
        let stored = target
            .call("GET", &format!("/v1/events/{id}"), None)
            .await?;
        if stored.status != 404 {
            findings.push(format!(
                "{}: the refused event {id} was stored ({})",
                delivery.what, stored.status
            ));
        }
    }
    Ok(())
}

async fn check_events(
    scenario: &Scenario,
    order: Order,
    target: &Target,
    ids: &[String],
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let mut statuses = Vec::new();
    let mut scenarios = Vec::new();
    for id in ids {
        let event = target.get(&format!("/v1/events/{id}")).await?;
        let status = event["status"].as_str().unwrap_or_default().to_owned();
        if event["outcome"] == "livemode_mismatch" {
            findings.push(format!(
                "{id} was ignored as a test-mode event: this admit provisions live events only (ADMIT_STRIPE_MODE); run the gate against an admit in Stripe test mode"
            ));
        }
        if matches!(status.as_str(), "received" | "failed") {
            findings.push(format!(
                "{id} ({}) ended {status}: {}",
                event["type"], event["outcome"]
            ));
        }
        if let Some(s) = event["scenario"].as_str() {
            scenarios.push(s.to_owned());
        }
        statuses.push(status);
    }
    match scenario.expect.outcome {
        Outcome::Provisioned | Outcome::NotProvisioned => {
            if let Some(held) = statuses.iter().position(|s| s == "held") {
                findings.push(format!("expected PROVISIONED; {} was held", ids[held]));
            }
        }
        Outcome::Held => {
            if !statuses.iter().any(|s| s == "held") {
                findings.push(format!("expected HELD; no event was held ({statuses:?})"));
            }
        }
        Outcome::Rejected | Outcome::Refused => {}
    }
    let wanted_order = scenario.expect.scenario_order.unwrap_or(Order::Creation);
    if let Some(expected) = &scenario.expect.scenario
        && order == wanted_order
        && !ids.is_empty()
    {
        // On a running admit, only this run's workspaces' cases count.
        let ours: Vec<&str> = scenario.workspaces.iter().map(|w| w.id.as_str()).collect();
        let cases = all_cases(target).await?;
        scenarios.extend(
            cases
                .iter()
                .filter(|c| {
                    target.is_private()
                        || c["workspace_id"]
                            .as_str()
                            .is_some_and(|w| ours.contains(&w))
                })
                .filter_map(|c| c["scenario"].as_str().map(str::to_owned)),
        );
        if !scenarios.contains(expected) {
            scenarios.sort();
            scenarios.dedup();
            findings.push(format!(
                "admit named {} for these events, not {expected}",
                if scenarios.is_empty() {
                    "no scenario".to_owned()
                } else {
                    scenarios.join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// `"none"` in a scenario file is JSON null.
fn same(expected: &str, found: &Value) -> bool {
    if expected == "none" {
        found.is_null()
    } else {
        found.as_str() == Some(expected)
    }
}

async fn check_billing(
    scenario: &Scenario,
    target: &Target,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    for expect in &scenario.expect.billing {
        let billing = target
            .get(&format!("/v1/workspaces/{}/billing", expect.workspace))
            .await?;
        for (field, wanted) in [
            ("subscription_status", &expect.subscription_status),
            ("subscription_plan", &expect.subscription_plan),
            ("stripe_customer_id", &expect.stripe_customer_id),
            ("stripe_subscription_id", &expect.stripe_subscription_id),
            ("purchaser_email", &expect.purchaser_email),
        ] {
            if let Some(wanted) = wanted
                && !same(wanted, &billing[field])
            {
                findings.push(format!(
                    "billing of {}: {field} is {}, expected {wanted}",
                    expect.workspace, billing[field]
                ));
            }
        }
    }
    Ok(())
}

async fn all_cases(target: &Target) -> anyhow::Result<Vec<Value>> {
    let mut cases = Vec::new();
    for state in ["held", "resolved"] {
        let page = target
            .get(&format!("/v1/cases?state={state}&limit=1000"))
            .await?;
        cases.extend(page["cases"].as_array().cloned().unwrap_or_default());
    }
    Ok(cases)
}

async fn check_cases(
    scenario: &Scenario,
    order: Order,
    target: &Target,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    if !target.is_private() && scenario.expect.cases.is_empty() {
        // A running admit has cases of its own; only a private one is known empty.
        return Ok(());
    }
    let mut cases = all_cases(target).await?;
    for expect in &scenario.expect.cases {
        let found = cases.iter().position(|c| {
            c["kind"] == expect.kind.as_str()
                && c["state"] == expect.state.as_str()
                && expect
                    .workspace
                    .as_ref()
                    .is_none_or(|w| same(w, &c["workspace_id"]))
                && expect
                    .action
                    .as_ref()
                    .is_none_or(|a| c["details"]["action"] == a.as_str())
        });
        match found {
            Some(i) => {
                let case = cases.remove(i);
                if let Some(wanted) = &expect.scenario
                    && order == Order::Creation
                    && case["scenario"] != wanted.as_str()
                {
                    findings.push(format!(
                        "case {} names scenario {}, expected {wanted}",
                        expect.kind, case["scenario"]
                    ));
                }
            }
            None => findings.push(format!(
                "no {} case {}{}",
                expect.state,
                expect.kind,
                expect
                    .workspace
                    .as_ref()
                    .map(|w| format!(" for {w}"))
                    .unwrap_or_default()
            )),
        }
    }
    if target.is_private() {
        // Out of order, a purchase may be held until the event that binds it
        // arrives; the case it had is resolved `auto` and stays as history.
        let transient = |c: &Value| {
            order != Order::Creation && c["state"] == "resolved" && c["resolution"] == "auto"
        };
        for case in cases.into_iter().filter(|c| !transient(c)) {
            findings.push(format!(
                "unexpected {} case {} ({})",
                case["state"], case["kind"], case["scenario"]
            ));
        }
    }
    Ok(())
}

async fn check_created_workspace(
    created: &super::scenario::CreatedWorkspace,
    target: &Target,
    catalog: &Catalog,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let page = target
        .get(&format!(
            "/v1/outbox?kind=onboarding&recipient={}",
            created.owner
        ))
        .await?;
    let Some(workspace) = page["messages"][0]["workspace_id"].as_str() else {
        findings.push(format!("no workspace was made for {}", created.owner));
        return Ok(());
    };
    let read = target.get(&format!("/v1/workspaces/{workspace}")).await?;
    let owner = read["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["email"] == created.owner.as_str()))
        .map(|m| m["role"].clone());
    if owner != Some(json!("owner")) {
        findings.push(format!(
            "the workspace made for the purchase ({workspace}) is not owned by {}",
            created.owner
        ));
    }
    let expect = super::scenario::AccessExpect {
        workspace: workspace.to_owned(),
        email: created.owner.clone(),
        allowed: true,
        role: Some("owner".to_owned()),
        plan: Some(created.plan.clone()),
        reason: Some("active".to_owned()),
        after_seconds: None,
    };
    let probe = Scenario {
        expect: super::scenario::Expect {
            access: vec![expect],
            ..empty_expect()
        },
        ..empty_scenario()
    };
    check_access(&probe, target, catalog, findings).await
}

fn empty_expect() -> super::scenario::Expect {
    super::scenario::Expect {
        outcome: Outcome::Provisioned,
        scenario: None,
        scenario_order: None,
        billing: Vec::new(),
        access: Vec::new(),
        cases: Vec::new(),
        messages: Vec::new(),
        welcome: Vec::new(),
        created_workspace: None,
    }
}

fn empty_scenario() -> Scenario {
    Scenario {
        id: String::new(),
        what: String::new(),
        policy: None,
        orders: Vec::new(),
        against: false,
        concurrent_copies: None,
        workspaces: Vec::new(),
        events: Vec::new(),
        deliveries: Vec::new(),
        requests: Vec::new(),
        expect: empty_expect(),
    }
}

async fn check_messages(
    scenario: &Scenario,
    order: Order,
    target: &Target,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let received = target.deliver_mail().await?;
    let mut expected: Vec<(String, String)> = scenario
        .expect
        .messages
        .iter()
        .map(|m| (m.kind.clone(), m.to.to_ascii_lowercase()))
        .collect();
    expected.sort();
    let workspaces: Vec<&str> = scenario.workspaces.iter().map(|w| w.id.as_str()).collect();
    let page = target.get("/v1/outbox?limit=1000").await?;
    let mut queued = Vec::new();
    let mut states = BTreeMap::new();
    for message in page["messages"].as_array().cloned().unwrap_or_default() {
        // A running admit has mail of its own: only this run's workspaces count there.
        if !target.is_private()
            && !message["workspace_id"]
                .as_str()
                .is_some_and(|w| workspaces.contains(&w))
        {
            continue;
        }
        let state = message["state"].as_str().unwrap_or_default().to_owned();
        if state == "superseded" {
            continue;
        }
        let pair = (
            message["kind"].as_str().unwrap_or_default().to_owned(),
            message["recipient"].as_str().unwrap_or_default().to_owned(),
        );
        states.insert(pair.clone(), state);
        queued.push(pair);
    }
    queued.sort();
    // Mail sent at once (the duplicated order) cannot be withdrawn by a
    // later event, so there the expected messages need only all be there.
    let matches = if order == Order::Duplicated {
        let count = |list: &[(String, String)], pair: &(String, String)| {
            list.iter().filter(|p| *p == pair).count()
        };
        expected
            .iter()
            .all(|e| count(&queued, e) >= count(&expected, e))
            && queued
                .iter()
                .all(|q| count(&queued, q) <= count(&expected, q).max(1))
    } else {
        queued == expected
    };
    if !matches {
        let show = |v: &[(String, String)]| {
            if v.is_empty() {
                "nothing".to_owned()
            } else {
                v.iter()
                    .map(|(k, r)| format!("{k} to {r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        findings.push(format!(
            "messages: {} queued, expected {}",
            show(&queued),
            show(&expected)
        ));
    }
    if let Some(received) = received {
        for ((kind, to), state) in &states {
            if state != "sent" {
                findings.push(format!("{kind} to {to} is {state}, not sent"));
            }
        }
        let mut sent: Vec<String> = queued.iter().map(|(_, to)| to.clone()).collect();
        sent.sort();
        if received != sent {
            findings.push(format!(
                "the mail sink received mail for [{}], expected [{}]",
                received.join(", "),
                sent.join(", ")
            ));
        }
    }
    Ok(())
}

async fn check_access(
    scenario: &Scenario,
    target: &Target,
    catalog: &Catalog,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let mut checks: Vec<_> = scenario.expect.access.iter().collect();
    checks.sort_by_key(|c| c.after_seconds.unwrap_or(0));
    let mut moved = 0;
    for expect in checks {
        let after = expect.after_seconds.unwrap_or(0);
        if after != moved {
            if !target.advance(after - moved) {
                continue;
            }
            moved = after;
        }
        let access = target
            .get(&format!(
                "/v1/access?workspace_id={}&email={}",
                expect.workspace, expect.email
            ))
            .await?;
        let when = if after > 0 {
            format!(" {after} s later")
        } else {
            String::new()
        };
        let who = format!("access of {} to {}{when}", expect.email, expect.workspace);
        if access["allowed"] != expect.allowed {
            findings.push(format!(
                "{who}: allowed is {}, expected {} ({})",
                access["allowed"], expect.allowed, access["reason"]
            ));
        }
        for (field, wanted) in [
            ("role", &expect.role),
            ("plan", &expect.plan),
            ("reason", &expect.reason),
        ] {
            if let Some(wanted) = wanted
                && !same(wanted, &access[field])
            {
                findings.push(format!(
                    "{who}: {field} is {}, expected {wanted}",
                    access[field]
                ));
            }
        }
        if let Some(plan) = expect.plan.as_deref().and_then(|p| catalog.get_str(p)) {
            let wanted = json!({
                "features": plan.entitlements.features,
                "limits": plan.entitlements.limits,
            });
            if access["entitlements"] != wanted {
                findings.push(format!(
                    "{who}: entitlements are {}, the catalog's {} grants {wanted}",
                    access["entitlements"],
                    plan.key.as_str()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_order_delivers_every_event_and_duplicated_twice() {
        for order in Order::ALL {
            let mut plan = deliveries(5, order, "seed");
            let copies = if order == Order::Duplicated { 2 } else { 1 };
            assert_eq!(plan.len(), 5 * copies, "{order:?}");
            plan.sort_unstable();
            plan.dedup_by_key(|(i, _)| *i);
            assert_eq!(plan.len(), 5, "{order:?}");
        }
        assert_eq!(deliveries(3, Order::Reversed, "x")[0], (2, 0));
    }

    #[test]
    fn a_shuffle_is_a_permutation_fixed_by_its_seed() {
        let mut a: Vec<u32> = (0..20).collect();
        let mut b = a.clone();
        shuffle(&mut a, "run1");
        shuffle(&mut b, "run1");
        assert_eq!(a, b);
        let mut c: Vec<u32> = (0..20).collect();
        shuffle(&mut c, "run2");
        assert_ne!(a, c, "another seed, another order");
        a.sort_unstable();
        assert_eq!(a, (0..20).collect::<Vec<_>>());
    }
}
