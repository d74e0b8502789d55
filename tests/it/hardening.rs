//! What a service facing the internet must get right at its edge (issue
//! 14): the bearer scheme in any case, the error shape on every refusal,
//! and inputs admit could store but never use refused where they enter.

use serde_json::json;

use crate::helpers::{APP_TOKEN, spawn_app};

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = reqwest::Client::new()
            .get(app.url("/v1/events"))
            .header("authorization", format!("{scheme} {APP_TOKEN}"))
            .send()
            .await
            .expect("admit answers");
        assert_eq!(response.status(), 200, "{scheme}");
    }
    let wrong = reqwest::Client::new()
        .get(app.url("/v1/events"))
        .header("authorization", format!("Basic {APP_TOKEN}"))
        .send()
        .await
        .expect("admit answers");
    assert_eq!(wrong.status(), 401);
}

#[tokio::test]
async fn a_wrong_method_gets_405_with_the_error_shape_and_allow() {
    let app = spawn_app().await;
    let response = reqwest::Client::new()
        .delete(app.url("/webhooks/stripe"))
        .send()
        .await
        .expect("admit answers");
    assert_eq!(response.status(), 405);
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    assert!(
        allow.as_deref().is_some_and(|a| a.contains("POST")),
        "{allow:?}"
    );
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
}

#[tokio::test]
async fn access_with_a_malformed_workspace_id_is_a_bad_request() {
    let app = spawn_app().await;
    app.get("/v1/access?workspace_id=not%20an%20id&email=a@b.test")
        .await
        .expect_error(400, "workspace_id_invalid");
    let unknown = app
        .get("/v1/access?workspace_id=ws_nobody&email=a@b.test")
        .await
        .expect(200);
    assert_eq!(unknown["reason"], "workspace_not_found");
}

#[tokio::test]
async fn emails_the_mailer_refuses_and_names_with_controls_are_refused_at_the_edge() {
    let app = spawn_app().await;
    for owner in ["<script>alert(1)</script>@evil.test", "a b@evil.test"] {
        app.post_json(
            "/v1/workspaces",
            &json!({"name": "Evil", "owner_email": owner}),
        )
        .await
        .expect_error(400, "email_invalid");
    }
    for name in ["Acme\r\nBcc: x@evil.test", "Acme\nRockets", "Acme\u{7}"] {
        app.post_json(
            "/v1/workspaces",
            &json!({"name": name, "owner_email": "dana@acme.test"}),
        )
        .await
        .expect_error(400, "invalid_request");
    }
    app.post_json(
        "/v1/workspaces",
        &json!({"id": "ws_ok", "name": "Acme Rockets", "owner_email": "dana@acme.test"}),
    )
    .await
    .expect(201);
    app.put_json(
        "/v1/workspaces/ws_ok/members/%3Cscript%3E%40evil.test",
        &json!({"role": "member"}),
    )
    .await
    .expect_error(400, "email_invalid");
    let listed = app.get("/v1/workspaces/ws_ok").await.expect(200);
    assert_eq!(
        listed["members"].as_array().map(Vec::len),
        Some(1),
        "nothing stored: {listed}"
    );
}

/// `admit serve` as a service runs it: stdout and stderr captured (no
/// terminal), no secrets configured. The generated ones must not reach the
/// captured streams; they go to a file only the owner can read.
#[tokio::test]
async fn generated_development_secrets_never_reach_a_captured_stream() {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_admit"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("ADMIT_LISTEN", "127.0.0.1:0")
        .env("ADMIT_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("admit starts");
    let secrets = dir.path().join(admit::cli::DEVELOPMENT_SECRETS_FILE);
    // The file is complete once it names the app token (its last line);
    // the log line about it follows at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&secrets).is_ok_and(|t| t.contains("admit_dev_"))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let _ = child.kill();
    let _ = child.wait();
    let mut captured = String::new();
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut stream = stream;
        let _ = stream.read_to_string(&mut captured);
    }
    let written = std::fs::read_to_string(&secrets)
        .unwrap_or_else(|e| panic!("no {}: {e}; output: {captured}", secrets.display()));
    assert!(written.contains("whsec_dev_"), "{written}");
    assert!(written.contains("admit_dev_"), "{written}");
    let mode = std::fs::metadata(&secrets)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert!(
        !captured.contains("whsec_dev_") && !captured.contains("admit_dev_"),
        "a secret in the captured output: {captured}"
    );
    assert!(
        captured.contains(admit::cli::DEVELOPMENT_SECRETS_FILE),
        "the log says where they are: {captured}"
    );
}

/// Hostile clients that open connections and send half a request are cut
/// off after the header timeout (10 s), and never keep healthy clients
/// waiting meanwhile.
#[tokio::test]
async fn half_open_connections_are_cut_off_and_do_not_starve_healthy_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut hostile = Vec::new();
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: admit\r\n")
            .await
            .expect("half a request");
        hostile.push(stream);
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(8))
        .build()
        .expect("client");
    for _ in 0..5 {
        let answer = client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("a healthy client is served while 300 connections hang");
        assert_eq!(answer.status(), 200);
    }
    app.get("/v1/events").await.expect(200);
    // Every hostile connection is closed by the server (EOF or reset), well
    // after the 10 s header timeout but long before any test timeout.
    for mut stream in hostile {
        let mut buffer = [0u8; 256];
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(60), stream.read(&mut buffer))
                .await
                .expect("the server closes a connection that never finished its headers");
        match read {
            Ok(0) | Err(_) => {}
            Ok(n) => {
                let text = String::from_utf8_lossy(&buffer[..n]);
                assert!(
                    text.starts_with("HTTP/1.1 408"),
                    "only a timeout may be answered: {text}"
                );
            }
        }
    }
}

/// A body that stops arriving gets 408 in the error shape, not a hang.
#[tokio::test]
async fn a_stalled_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: admit\r\nContent-Type: application/json\r\nStripe-Signature: t=1,v1=00\r\nContent-Length: 1000\r\n\r\n{\"id\":",
        )
        .await
        .expect("headers and a little body");
    let mut answer = Vec::new();
    // The body timeout is 10 s; the whole-request timeout (30 s) must not be
    // what answers.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(25),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("admit answers a stalled body before the request timeout");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
}

#[tokio::test]
async fn public_routes_are_limited_per_client() {
    let app = crate::helpers::spawn_app_with(&[("ADMIT_PUBLIC_RATE_PER_MINUTE", "10")]).await;
    let client = reqwest::Client::new();
    let mut limited = None;
    for attempt in 0..12 {
        let answer = client
            .get(app.url("/welcome?session_id=cs_test_nobody"))
            .send()
            .await
            .expect("admit answers");
        if answer.status() == 429 {
            limited = Some((attempt, answer));
            break;
        }
    }
    let (attempt, answer) = limited.expect("the 12th request at the latest is refused");
    assert!(
        attempt >= 5,
        "a burst of 5 is allowed, refused at {attempt}"
    );
    assert_eq!(answer.headers()["retry-after"], "30");
    let body: serde_json::Value = answer.json().await.expect("the error shape");
    assert_eq!(body["error"]["code"], "rate_limited");
    // Other routes, and the API with its token, are not limited by it.
    for _ in 0..20 {
        app.get("/v1/events").await.expect(200);
    }
    let health = client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("answer");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn metrics_can_require_a_bearer_token() {
    const TOKEN: &str = "metrics-token-0123456789";
    let app = crate::helpers::spawn_app_with(&[("ADMIT_METRICS_TOKEN", TOKEN)]).await;
    let client = reqwest::Client::new();
    let bare = client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("answer");
    assert_eq!(bare.status(), 401);
    let wrong = client
        .get(app.url("/metrics"))
        .header("authorization", "Bearer metrics-token-WRONG-56789")
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong.status(), 401);
    let right = client
        .get(app.url("/metrics"))
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(right.status(), 200);
    assert!(right.text().await.expect("text").contains("admit_"));
    // Without a token configured, /metrics stays open (the default).
    let open = spawn_app().await;
    let answer = client
        .get(open.url("/metrics"))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 200);
}

/// Beyond ADMIT_MAX_CONNECTIONS a connection gets 503 at once and is closed;
/// once others close, clients are served again.
#[tokio::test]
async fn connections_beyond_the_limit_get_503_not_a_hang() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = crate::helpers::spawn_app_with(&[("ADMIT_MAX_CONNECTIONS", "3")]).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(
            tokio::net::TcpStream::connect(&address)
                .await
                .expect("connect"),
        );
    }
    // Let the server accept the three before the fourth arrives.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut extra = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: admit\r\n\r\n")
        .await
        .expect("request");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        extra.read_to_end(&mut answer),
    )
    .await
    .expect("answered, not left hanging")
    .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    drop(idle);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let served = reqwest::Client::new()
            .get(app.url("/healthz"))
            .header("connection", "close")
            .send()
            .await
            .map(|r| r.status().as_u16());
        if matches!(served, Ok(200)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "served again once connections closed: {served:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// PostgreSQL refuses NUL in text: every place a request's text reaches a
/// query is guarded, and answers 400 (or 404 for an id no row can have),
/// never 500. schemathesis found the filters on PostgreSQL.
#[tokio::test]
async fn nul_and_control_characters_in_filters_ids_and_notes_are_refused_not_a_500() {
    let app = spawn_app().await;
    for path in [
        "/v1/events?stripe_id=cus_%00x",
        "/v1/events?type=invoice.paid%00",
        "/v1/events?outcome=%00",
        "/v1/outbox?recipient=a%00b",
        "/v1/outbox?kind=%00",
        "/v1/cases?stripe_id=%00",
        "/v1/cases/case_%00",
        "/v1/workspaces/ws_%00",
    ] {
        app.get(path).await.expect_error(400, "invalid_request");
    }
    // Other control characters reach no query through the filters either.
    for path in ["/v1/events?stripe_id=cus_%07x", "/v1/outbox?recipient=%1b"] {
        app.get(path).await.expect_error(400, "invalid_request");
    }
    // A case id that is not printable ASCII names no case.
    app.get("/v1/cases/case_%C3%A9")
        .await
        .expect_error(404, "case_not_found");
    // The console's search and forms too (the gate answers first: no session).
    let search = app
        .client
        .get(app.url("/admin/search?q=a%00b"))
        .send()
        .await
        .expect("admit answers");
    assert_eq!(search.status(), 400);

    // A resolution's note may hold line breaks, not NUL.
    let app = crate::stripe_story::acme().await;
    let mut sub = crate::stripe_story::Sub::new(602, "stranger@else.test", crate::stripe_story::T);
    sub.workspace = None;
    crate::stripe_story::deliver(&app, &sub.purchase()).await;
    let cases = app.get("/v1/cases?state=held").await.expect(200);
    let case = cases["cases"][0]["id"]
        .as_str()
        .expect("a held case")
        .to_owned();
    let resolve = format!("/v1/cases/{case}/resolve");
    app.post_json(&resolve, &json!({"action": "dismiss", "note": "a\u{0}b"}))
        .await
        .expect_error(400, "invalid_request");
    let held = app.get(&format!("/v1/cases/{case}")).await.expect(200);
    assert_eq!(
        held["state"], "held",
        "a refused resolution changes nothing"
    );
    let resolved = app
        .post_json(
            &resolve,
            &json!({"action": "dismiss", "note": "refunded by hand\nsee ticket 12"}),
        )
        .await
        .expect(200);
    assert_eq!(resolved["state"], "resolved");
}

/// A merchant's metadata may hold a NUL (PostgreSQL refuses it in text): the
/// purchase is stored and decided all the same, held for support since no
/// workspace id has one, never a 500 Stripe would retry for days. A NUL in
/// a field only Stripe sets means the body is not Stripe's: 400.
#[tokio::test]
async fn a_nul_in_metadata_is_stored_and_held_and_one_in_stripes_fields_is_refused() {
    let app = crate::stripe_story::acme().await;
    let mut sub = crate::stripe_story::Sub::new(603, "dana@acme.test", crate::stripe_story::T);
    sub.workspace = Some("ws_acme01\u{0}".to_owned());
    for body in sub.purchase() {
        app.post_signed(&body, crate::helpers::PRIMARY_SECRET)
            .await
            .expect(200);
        app.drain().await;
    }
    let events = app.get("/v1/events").await.expect(200);
    let statuses: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["status"].as_str())
        .collect();
    assert!(!statuses.is_empty());
    assert!(
        statuses.iter().all(|s| *s != "failed" && *s != "received"),
        "every event decided: {statuses:?}"
    );

    let mut forged: serde_json::Value = serde_json::from_slice(&sub.purchase()[0]).expect("JSON");
    forged["id"] = json!("evt_nul_in_api_version");
    forged["api_version"] = json!("2025-03-31\u{0}");
    let body = serde_json::to_vec(&forged).expect("JSON");
    app.post_signed(&body, crate::helpers::PRIMARY_SECRET)
        .await
        .expect_error(400, "event_malformed");
}

/// The console's forms hold no NUL either (the gate reads every form first).
#[tokio::test]
async fn a_console_form_with_a_nul_is_refused() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/admin/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=sam%00&password=whatever-it-is&csrf=x")
        .send()
        .await
        .expect("admit answers");
    assert_eq!(response.status(), 400);
    let text = response.text().await.expect("body");
    assert!(text.contains("NUL"), "{text}");
}
