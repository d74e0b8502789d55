//! The console in Chromium: what support does with a held purchase, what a
//! viewer can and cannot do (every page, each photographed; and the
//! operators page, an admin's), and what the signed out see. Each page
//! visited is photographed into `target/console-screenshots/<test>/`.

use fantoccini::key::Key;
use serde_json::Value;

use super::browser::{Browser, opted_out};
use super::{
    CHECKOUT_EVENT, CUSTOMER, EMAIL, HttpSession, PASSWORD, WS, actions, add_operator, audited_by,
    case, event, fields, location, message, snapshot, world,
};
use crate::helpers::TestApp;

#[tokio::test]
async fn support_binds_a_held_case_replays_an_event_and_resends_a_dead_message() {
    if opted_out() {
        return;
    }
    let world = world().await;
    let app = &world.app;
    add_operator(app, "sam", "support");
    let mut b = Browser::start("support_flow", &app.address).await;

    // Signed out, the console asks who you are first.
    b.goto("/admin").await;
    b.wait_path("/admin/login").await;
    b.screenshot("login").await;
    b.sign_in("sam", PASSWORD).await;
    b.wait_path("/admin").await;
    assert!(
        b.text("#whoami").await.contains("sam (support)"),
        "{}",
        b.text("#whoami").await
    );
    // The memo's verdict is the one `GET /v1/readiness` gives.
    let verdict = b.text("#memo-verdict").await;
    let readiness = app.get("/v1/readiness").await.expect(200);
    assert_eq!(
        Some(verdict.as_str()),
        readiness["recommendation"].as_str(),
        "the overview's memo and /v1/readiness: {readiness}"
    );
    assert_eq!(
        b.count("#counts a#held-cases[href='/admin/cases?state=held']")
            .await,
        1
    );
    b.screenshot("overview").await;
    b.narrow("overview").await;

    // Support looks the purchaser up and finds the held case.
    b.fill("form#search", "q", EMAIL).await;
    b.send_keys("form#search [name=q]", &Key::Enter).await;
    let case_path = format!("/admin/cases/{}", world.case_id);
    let landed = b.wait_path_in(&["/admin/search", &case_path]).await;
    b.screenshot("search").await;
    if landed == "/admin/search" {
        let link = format!("ul#results a.result[href$='{case_path}']");
        b.click(&link).await;
    }
    b.wait_path(&case_path).await;
    assert_eq!(b.text("#case-state").await, "held");
    assert!(b.text("#case-kind").await.contains("missing_workspace"));
    assert!(
        b.source().await.contains(EMAIL),
        "the case names its purchaser"
    );
    assert_eq!(b.count("form#bind.action").await, 1, "support may bind");
    b.screenshot("case").await;
    b.narrow("case").await;

    // … binds it to the workspace the customer really has.
    b.select("form#bind select[name=workspace_id]", WS).await;
    b.submit("form#bind").await;
    let result = b.text("#result").await;
    b.wait_path(&case_path).await;
    assert!(
        result.contains(WS),
        "the result names the workspace: {result}"
    );
    assert_eq!(b.text("#case-state").await, "resolved");
    b.screenshot("case-resolved").await;
    let resolved = case(app, &world.case_id).await;
    assert_eq!(
        (resolved["state"].as_str(), resolved["resolution"].as_str()),
        (Some("resolved"), Some("bind")),
        "{resolved}"
    );

    // The workspace is provisioned in the background and onboarding is due.
    b.click("a#result-workspace").await;
    b.wait_path(&format!("/admin/workspaces/{WS}")).await;
    b.reload_until(
        "the workspace is paid for and its onboarding message is listed",
        || async {
            app.drain().await;
        },
        "const s = document.querySelector('#subscription_status');
         const mail = [...document.querySelectorAll('table#workspace-mail tr.message')];
         return !!s && /active|trialing/.test(s.textContent)
             && mail.some(r => r.textContent.includes('onboarding'));",
    )
    .await;
    assert_eq!(b.text("#stripe_customer_id").await, CUSTOMER);
    let audit = b.text("table#audit").await;
    assert!(
        audit.contains("operator:sam"),
        "the page's audit names who resolved the case: {audit}"
    );
    assert!(
        !audited_by(app, WS, "operator:sam").await.is_empty(),
        "the audit log names the operator"
    );
    b.screenshot("workspace").await;

    // An event page, replayed: processed once more.
    let before = event(app, CHECKOUT_EVENT).await;
    let event_path = format!("/admin/events/{CHECKOUT_EVENT}");
    b.goto(&event_path).await;
    assert!(!b.text("#event-status").await.is_empty());
    assert!(
        b.text("pre#payload")
            .await
            .contains("checkout.session.completed")
    );
    assert_eq!(b.count("form#replay.action").await, 1, "support may replay");
    b.screenshot("event").await;
    b.submit("form#replay").await;
    b.text("#result").await;
    b.wait_path(&event_path).await;
    b.screenshot("event-replayed").await;
    processed_again(app, &before).await;
    b.reload_until(
        "the event page shows the replay processed",
        || async {},
        "const s = document.querySelector('#event-status');
         return !!s && s.textContent.includes('processed');",
    )
    .await;
    b.screenshot("event-processed").await;

    // The dead support alert, from the overview's count, resent.
    b.goto("/admin").await;
    b.click("a#dead-mail").await;
    b.wait_path("/admin/outbox").await;
    b.screenshot("outbox-dead").await;
    let message_path = format!("/admin/outbox/{}", world.dead_message);
    b.click(&format!("table#list tr.row a[href$='{message_path}']"))
        .await;
    b.wait_path(&message_path).await;
    assert_eq!(b.text("#message-state").await, "dead");
    assert!(!b.text("#message-error").await.is_empty());
    assert_eq!(
        b.count("iframe#html-preview[sandbox]").await,
        1,
        "the HTML body is shown sandboxed"
    );
    assert_eq!(b.count("form#resend.action").await, 1, "support may resend");
    b.screenshot("message").await;
    b.submit("form#resend").await;
    b.text("#result").await;
    b.wait_path(&message_path).await;
    // The sender does not run in the background here: queued again, the
    // message is pending on the page and in the API alike until it runs.
    assert_eq!(b.text("#message-state").await, "pending");
    assert_eq!(
        message(app, &world.dead_message).await["state"],
        "pending",
        "queued again"
    );
    b.screenshot("message-resent").await;
    app.drain_mail().await;
    b.refresh().await;
    let after = message(app, &world.dead_message).await;
    assert_eq!(
        Some(b.text("#message-state").await.as_str()),
        after["state"].as_str(),
        "after the sender ran, the page shows the message's state: {after}"
    );
    b.screenshot("message-after-sending").await;
}

/// Waits until the event was claimed again after `before` and is processed.
async fn processed_again(app: &TestApp, before: &Value) {
    let started = std::time::Instant::now();
    loop {
        app.drain().await;
        let now = event(app, CHECKOUT_EVENT).await;
        if now["status"] == "processed" && now["attempts"].as_i64() > before["attempts"].as_i64() {
            return;
        }
        assert!(
            started.elapsed() < super::browser::PATIENCE,
            "the replayed event was not processed again: before {before}, now {now}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_viewer_sees_every_page_and_can_change_nothing_even_by_forging_a_post() {
    if opted_out() {
        return;
    }
    let world = world().await;
    let app = &world.app;
    add_operator(app, "vera", "viewer");
    let mut b = Browser::start("viewer", &app.address).await;
    b.goto("/admin/login").await;
    b.wait("form#login").await;
    b.screenshot("login").await;
    b.sign_in("vera", PASSWORD).await;
    b.wait_path("/admin").await;
    assert!(b.text("#whoami").await.contains("vera (viewer)"));

    // Every page, each waited for by what only it shows (an error page
    // has none of these), and none with an action for a viewer.
    let case_path = format!("/admin/cases/{}", world.case_id);
    let event_path = format!("/admin/events/{CHECKOUT_EVENT}");
    let message_path = format!("/admin/outbox/{}", world.dead_message);
    let workspace_path = format!("/admin/workspaces/{WS}");
    let pages = [
        ("overview", "/admin".to_owned(), "#memo-verdict".to_owned()),
        (
            "cases",
            "/admin/cases".to_owned(),
            format!("table#list a[href='{case_path}']"),
        ),
        ("case", case_path.clone(), "#case-state".to_owned()),
        (
            "events",
            "/admin/events".to_owned(),
            format!("table#list a[href='{event_path}']"),
        ),
        ("event", event_path.clone(), "#event-status".to_owned()),
        (
            "outbox",
            "/admin/outbox".to_owned(),
            format!("table#list a[href='{message_path}']"),
        ),
        ("message", message_path.clone(), "#message-state".to_owned()),
        (
            "workspaces",
            "/admin/workspaces".to_owned(),
            format!("table#list a[href='{workspace_path}']"),
        ),
        (
            "workspace",
            workspace_path.clone(),
            "table#members".to_owned(),
        ),
        (
            "search",
            "/admin/search?q=dana%40acme.test".to_owned(),
            format!("ul#results a.result[href='{case_path}']"),
        ),
    ];
    for (name, path, only_there) in &pages {
        b.goto(path).await;
        b.wait_path(path.split('?').next().unwrap_or(path)).await;
        b.wait(only_there).await;
        assert_eq!(
            b.count("form.action").await,
            0,
            "a viewer sees no action on {path}"
        );
        b.screenshot(name).await;
    }
    // The viewer's own session and CSRF token, used outside the browser.
    let session = HttpSession::of(b.cookie("admit_session").await);
    let csrf = b
        .attr("form#signout input[name=csrf]", "value")
        .await
        .expect("the sign-out form carries a csrf value");
    let before = snapshot(&world).await;
    for (path, form) in actions(&world, Some(&csrf)) {
        let (status, body) = session.post(app, &path, &fields(&form)).await;
        assert_eq!(status, 403, "a viewer's POST {path}: {body}");
        assert!(body.contains("Forbidden"), "{body}");
    }
    app.drain().await;
    assert_eq!(snapshot(&world).await, before, "nothing changed");
    assert_eq!(case(app, &world.case_id).await["state"], "held");
    assert!(audited_by(app, WS, "operator:vera").await.is_empty());

    // The same session and token are good for what a viewer may do.
    let (status, body) = session
        .post(
            app,
            &format!("/admin/workspaces/{WS}/verify"),
            &[("csrf", csrf.as_str()), ("email", EMAIL)],
        )
        .await;
    assert!(
        status == 200 || status == 303,
        "a viewer may verify access ({status}): {body}"
    );

    // The one page a viewer may not see, the operators, is an admin's.
    assert_eq!(session.get(app, "/admin/operators").await.0, 403);
    add_operator(app, "ada", "admin");
    b.submit("form#signout").await;
    b.wait_path("/admin/login").await;
    b.sign_in("ada", PASSWORD).await;
    b.wait_path("/admin").await;
    assert!(b.text("#whoami").await.contains("ada (admin)"));
    b.click("nav#nav a[href='/admin/operators']").await;
    b.wait_path("/admin/operators").await;
    let operators = b.text("table#list").await;
    assert!(
        operators.contains("vera") && operators.contains("ada"),
        "{operators}"
    );
    b.screenshot("operators").await;
}

#[tokio::test]
async fn the_signed_out_see_only_the_login_page_and_signing_out_ends_the_session() {
    if opted_out() {
        return;
    }
    let world = world().await;
    let app = &world.app;
    add_operator(app, "sam", "support");
    let mut b = Browser::start("signed_out", &app.address).await;
    let case_path = format!("/admin/cases/{}", world.case_id);

    for (name, path) in [
        ("overview", "/admin"),
        ("cases", "/admin/cases"),
        ("case", case_path.as_str()),
    ] {
        b.goto(path).await;
        b.wait_path("/admin/login").await;
        b.wait("form#login").await;
        assert!(
            b.location().await.contains("next="),
            "{}",
            b.location().await
        );
        let page = b.source().await;
        assert!(
            !page.contains(EMAIL) && !page.contains(CUSTOMER),
            "{path} signed out shows the case's data: {page}"
        );
        b.screenshot(&format!("{name}-to-login")).await;
    }

    // Signing in from there lands on the page asked for.
    b.sign_in("sam", PASSWORD).await;
    b.wait_path(&case_path).await;
    b.wait("#case-state").await;
    b.screenshot("case-after-sign-in").await;
    let old = HttpSession::of(b.cookie("admit_session").await);
    assert_eq!(old.get(app, "/admin").await.0, 200);

    b.submit("form#signout").await;
    b.wait_path_not(&case_path).await;
    b.screenshot("signed-out").await;
    b.goto("/admin").await;
    b.wait_path("/admin/login").await;
    b.screenshot("overview-to-login").await;

    // The old cookie is worth nothing now.
    for path in ["/admin", case_path.as_str()] {
        let response = old.get_response(app, path).await;
        let status = response.status().as_u16();
        let went = location(&response);
        let body = response.text().await.expect("body");
        assert_eq!(status, 303, "GET {path} with a signed-out cookie: {body}");
        assert!(
            went.contains("/admin/login"),
            "GET {path} with a signed-out cookie goes to {went}"
        );
        assert!(!body.contains(EMAIL), "{body}");
    }
}
