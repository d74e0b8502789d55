//! The client against a real HTTP server on loopback (`wiremock`), with
//! Stripe's response shapes written here. Waits are real: tokio's paused
//! clock would jump to the request timeout whenever the runtime idles on a
//! socket, so the few tests that must wait wait about a second.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::*;

const KEY: &str = "sk_test_51AdmitTestKeyThatMustNeverBeShown";

fn config(server: &MockServer) -> ClientConfig {
    ClientConfig {
        base_url: server.uri(),
        max_requests_per_sec: 1000,
        timeout: Duration::from_secs(5),
        ..ClientConfig::new(SecretString::from(KEY))
    }
}

fn client(config: ClientConfig) -> StripeClient {
    StripeClient::new(config).expect("the test config is complete")
}

async fn received(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("wiremock records requests")
}

fn header_of<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

fn form_of(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}

fn query_of(request: &Request) -> Vec<(String, String)> {
    request.url.query_pairs().into_owned().collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn price() -> Value {
    json!({
        "id": "price_1SiAbCB7WZ01zgkWq3Lm9NoP", "object": "price", "active": true,
        "currency": "usd", "unit_amount": 2500, "lookup_key": "pro_monthly",
        "product": "prod_TfXvP3kQn8Wz1a", "type": "recurring",
        "recurring": {"interval": "month", "interval_count": 1}
    })
}

fn stripe_error(kind: &str, code: &str, message: &str) -> Value {
    json!({"error": {"type": kind, "code": code, "message": message}})
}

/// Answers with `script` in turn (the last one again once it runs out) and
/// notes when each request arrived.
struct Scripted {
    script: Vec<ResponseTemplate>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Scripted {
    fn new(script: Vec<ResponseTemplate>) -> (Self, Arc<Mutex<Vec<Instant>>>) {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let responder = Self {
            script,
            arrivals: Arc::clone(&arrivals),
        };
        (responder, arrivals)
    }
}

impl Respond for Scripted {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut arrivals = self.arrivals.lock().expect("not poisoned");
        let turn = arrivals.len().min(self.script.len() - 1);
        arrivals.push(Instant::now());
        self.script[turn].clone()
    }
}

fn arrivals_of(arrivals: &Mutex<Vec<Instant>>) -> Vec<Instant> {
    arrivals.lock().expect("not poisoned").clone()
}

/// A Stripe list endpoint over `items` in the order given, `page_size` at a
/// time, continuing after the `starting_after` item as Stripe does.
struct Pager {
    items: Vec<Value>,
    page_size: usize,
}

impl Respond for Pager {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let start = request
            .url
            .query_pairs()
            .find(|(key, _)| key == "starting_after")
            .map_or(0, |(_, after)| {
                self.items
                    .iter()
                    .position(|item| item["id"] == *after)
                    .expect("starting_after names an item the server sent")
                    + 1
            });
        let end = (start + self.page_size).min(self.items.len());
        ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "url": request.url.path(),
            "has_more": end < self.items.len(),
            "data": self.items[start..end],
        }))
    }
}

#[tokio::test]
async fn create_checkout_session_sends_stripes_form_and_headers() {
    let server = MockServer::start().await;
    let expected_body = "mode=subscription\
        &line_items[0][price]=price_1SiAbCB7WZ01zgkWq3Lm9NoP\
        &line_items[0][quantity]=1\
        &success_url=https%3A%2F%2Fapp.example.com%2Fbilling%2Fsuccess%3Fsession_id%3D%7BCHECKOUT_SESSION_ID%7D\
        &cancel_url=https%3A%2F%2Fapp.example.com%2Fbilling%2Fcancel\
        &customer_email=buyer%40example.com\
        &client_reference_id=ws_01HZYX\
        &metadata[workspace_id]=ws_01HZYX\
        &subscription_data[metadata][workspace_id]=ws_01HZYX";
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("idempotency-key", "checkout-for-ws_01HZYX"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string(expected_body))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "cs_test_a1", "object": "checkout.session", "mode": "subscription",
            "status": "open", "url": "https://checkout.stripe.com/c/pay/cs_test_a1",
            "client_reference_id": "ws_01HZYX", "metadata": {"workspace_id": "ws_01HZYX"}
        })))
        .expect(1)
        .mount(&server)
        .await;

    let form = Form::new()
        .field("mode", "subscription")
        .line_item(0, "price_1SiAbCB7WZ01zgkWq3Lm9NoP", 1)
        .field(
            "success_url",
            "https://app.example.com/billing/success?session_id={CHECKOUT_SESSION_ID}",
        )
        .field("cancel_url", "https://app.example.com/billing/cancel")
        .field("customer_email", "buyer@example.com")
        .field("client_reference_id", "ws_01HZYX")
        .metadata(&[("workspace_id", "ws_01HZYX")])
        .map(
            &["subscription_data", "metadata"],
            &[("workspace_id", "ws_01HZYX")],
        );
    let session = client(config(&server))
        .create_checkout_session(form, "checkout-for-ws_01HZYX")
        .await
        .expect("created");
    assert_eq!(session["id"], "cs_test_a1");

    let requests = received(&server).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(
        form_of(&requests[0]),
        pairs(&[
            ("mode", "subscription"),
            ("line_items[0][price]", "price_1SiAbCB7WZ01zgkWq3Lm9NoP"),
            ("line_items[0][quantity]", "1"),
            (
                "success_url",
                "https://app.example.com/billing/success?session_id={CHECKOUT_SESSION_ID}"
            ),
            ("cancel_url", "https://app.example.com/billing/cancel"),
            ("customer_email", "buyer@example.com"),
            ("client_reference_id", "ws_01HZYX"),
            ("metadata[workspace_id]", "ws_01HZYX"),
            ("subscription_data[metadata][workspace_id]", "ws_01HZYX"),
        ])
    );
}

#[tokio::test]
async fn create_customer_sends_email_metadata_and_its_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "cus_TfXw2hB9mQe4Ld", "object": "customer", "email": "ada+pro@example.com",
            "metadata": {"workspace_id": "ws_01HZYX"}
        })))
        .expect(1)
        .mount(&server)
        .await;

    let customer = client(config(&server))
        .create_customer(
            "ada+pro@example.com",
            &[("workspace_id", "ws_01HZYX"), ("source", "admit")],
            "customer-for-ws_01HZYX",
        )
        .await
        .expect("created");
    assert_eq!(customer["id"], "cus_TfXw2hB9mQe4Ld");

    let requests = received(&server).await;
    let request = &requests[0];
    assert_eq!(
        std::str::from_utf8(&request.body).expect("utf-8"),
        "email=ada%2Bpro%40example.com&metadata[workspace_id]=ws_01HZYX&metadata[source]=admit"
    );
    assert_eq!(
        form_of(request),
        pairs(&[
            ("email", "ada+pro@example.com"),
            ("metadata[workspace_id]", "ws_01HZYX"),
            ("metadata[source]", "admit"),
        ])
    );
    assert_eq!(
        header_of(request, "idempotency-key"),
        Some("customer-for-ws_01HZYX")
    );
    assert_eq!(
        header_of(request, "authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        header_of(request, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn retrieves_objects_by_id_and_expands_a_sessions_subscription() {
    let server = MockServer::start().await;
    let (responder, _) = Scripted::new(vec![ResponseTemplate::new(200).set_body_json(price())]);
    Mock::given(method("GET"))
        .respond_with(responder)
        .mount(&server)
        .await;
    let client = client(config(&server));

    client.retrieve_customer("cus_1").await.expect("customer");
    client
        .retrieve_checkout_session("cs_test_1")
        .await
        .expect("session");
    client
        .retrieve_subscription("sub_1")
        .await
        .expect("subscription");
    let price = client.retrieve_price("price_1").await.expect("price");
    assert_eq!(price["unit_amount"], 2500);
    // An id cannot reach another path or add to the query.
    client
        .retrieve_customer("cus_1/../../v1/charges?x=1")
        .await
        .expect("customer");

    let requests = received(&server).await;
    let seen: Vec<(String, Vec<(String, String)>)> = requests
        .iter()
        .map(|r| (r.url.path().to_owned(), query_of(r)))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("/v1/customers/cus_1".to_owned(), vec![]),
            (
                "/v1/checkout/sessions/cs_test_1".to_owned(),
                pairs(&[("expand[]", "subscription")])
            ),
            ("/v1/subscriptions/sub_1".to_owned(), vec![]),
            ("/v1/prices/price_1".to_owned(), vec![]),
            (
                "/v1/customers/cus_1%2F..%2F..%2Fv1%2Fcharges%3Fx%3D1".to_owned(),
                vec![]
            ),
        ]
    );
    assert!(
        requests
            .iter()
            .all(|r| header_of(r, "idempotency-key").is_none())
    );
}

#[tokio::test]
async fn waits_as_long_as_retry_after_says_on_429_then_succeeds() {
    let server = MockServer::start().await;
    let (responder, arrivals) = Scripted::new(vec![
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "1")
            .set_body_json(stripe_error(
                "invalid_request_error",
                "rate_limit",
                "Too many requests",
            )),
        ResponseTemplate::new(200).set_body_json(price()),
    ]);
    Mock::given(method("GET"))
        .respond_with(responder)
        .mount(&server)
        .await;

    let started = Instant::now();
    let price = client(config(&server))
        .retrieve_price("price_1")
        .await
        .expect("succeeds on the retry");
    assert_eq!(price["id"], "price_1SiAbCB7WZ01zgkWq3Lm9NoP");
    let arrivals = arrivals_of(&arrivals);
    assert_eq!(arrivals.len(), 2);
    // Retry-After (1 s), not the first backoff step (0.5 s).
    assert!(arrivals[1] - arrivals[0] >= Duration::from_secs(1));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn retries_5xx_with_backoff_and_the_same_idempotency_key() {
    let server = MockServer::start().await;
    let (responder, arrivals) = Scripted::new(vec![
        ResponseTemplate::new(500).set_body_json(stripe_error("api_error", "", "Oops")),
        ResponseTemplate::new(500),
        ResponseTemplate::new(200).set_body_json(json!({"id": "cus_1", "object": "customer"})),
    ]);
    Mock::given(method("POST"))
        .respond_with(responder)
        .mount(&server)
        .await;

    let customer = client(config(&server))
        .create_customer("buyer@example.com", &[], "customer-for-ws_1")
        .await
        .expect("succeeds on the third attempt");
    assert_eq!(customer["id"], "cus_1");

    let requests = received(&server).await;
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(
            header_of(request, "idempotency-key"),
            Some("customer-for-ws_1")
        );
        assert_eq!(request.body, requests[0].body);
    }
    let arrivals = arrivals_of(&arrivals);
    assert!(arrivals[1] - arrivals[0] >= Duration::from_millis(500));
    assert!(arrivals[2] - arrivals[1] >= Duration::from_millis(1000));
}

#[tokio::test]
async fn a_400_is_an_api_error_after_exactly_one_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(stripe_error(
            "invalid_request_error",
            "parameter_missing",
            "Missing required param: line_items.",
        )))
        .expect(1)
        .mount(&server)
        .await;

    let error = client(config(&server))
        .create_checkout_session(Form::new().field("mode", "subscription"), "checkout-1")
        .await
        .expect_err("a 400 fails");
    match error {
        StripeError::Api {
            status,
            code,
            message,
            kind,
        } => {
            assert_eq!(status, 400);
            assert_eq!(code.as_deref(), Some("parameter_missing"));
            assert_eq!(message, "Missing required param: line_items.");
            assert_eq!(kind.as_deref(), Some("invalid_request_error"));
        }
        other => panic!("expected an Api error, got {other:?}"),
    }
    assert_eq!(received(&server).await.len(), 1);
}

#[tokio::test]
async fn a_404_is_not_found_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(stripe_error(
            "invalid_request_error",
            "resource_missing",
            "No such customer: 'cus_gone'",
        )))
        .expect(1)
        .mount(&server)
        .await;

    let error = client(config(&server))
        .retrieve_customer("cus_gone")
        .await
        .expect_err("missing");
    assert!(error.is_not_found(), "{error:?}");
}

#[tokio::test]
async fn gives_up_on_429_after_max_retries() {
    let server = MockServer::start().await;
    let (responder, _) = Scripted::new(vec![
        ResponseTemplate::new(429).insert_header("Retry-After", "0"),
    ]);
    Mock::given(method("GET"))
        .respond_with(responder)
        .mount(&server)
        .await;

    let error = client(ClientConfig {
        max_retries: 2,
        ..config(&server)
    })
    .retrieve_price("price_1")
    .await
    .expect_err("still rate-limited");
    assert!(
        matches!(error, StripeError::RateLimited { retries: 2 }),
        "{error:?}"
    );
    assert_eq!(received(&server).await.len(), 3);
}

#[tokio::test]
async fn gives_up_on_5xx_after_max_retries_with_the_last_answer() {
    let server = MockServer::start().await;
    let (responder, _) = Scripted::new(vec![ResponseTemplate::new(503)]);
    Mock::given(method("GET"))
        .respond_with(responder)
        .mount(&server)
        .await;

    let error = client(ClientConfig {
        max_retries: 1,
        ..config(&server)
    })
    .retrieve_price("price_1")
    .await
    .expect_err("still failing");
    assert!(
        matches!(error, StripeError::Api { status: 503, .. }),
        "{error:?}"
    );
    assert_eq!(received(&server).await.len(), 2);
}

/// A loopback port nothing listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn retries_a_refused_connection_then_reports_it_without_the_url() {
    let started = Instant::now();
    let error = client(ClientConfig {
        base_url: closed_port_url(),
        max_retries: 1,
        timeout: Duration::from_secs(2),
        ..ClientConfig::new(SecretString::from(KEY))
    })
    .list_customers_by_email("buyer@example.com")
    .await
    .expect_err("nothing listens");
    assert!(
        matches!(&error, StripeError::Transport(e) if e.is_connect()),
        "{error:?}"
    );
    // The one retry waited for the first backoff step.
    assert!(started.elapsed() >= Duration::from_millis(500));
    // The query held an email address: neither it nor the URL shows.
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains("example.com"), "{shown}");
        assert!(!shown.contains("/v1/customers"), "{shown}");
    }
}

#[tokio::test]
async fn a_slow_answer_times_out_as_a_transport_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(price())
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;

    let error = client(ClientConfig {
        max_retries: 0,
        timeout: Duration::from_millis(200),
        ..config(&server)
    })
    .retrieve_price("price_1")
    .await
    .expect_err("times out");
    assert!(
        matches!(&error, StripeError::Transport(e) if e.is_timeout()),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_rate_limit_holds_across_clones() {
    let server = MockServer::start().await;
    let (responder, arrivals) =
        Scripted::new(vec![ResponseTemplate::new(200).set_body_json(price())]);
    Mock::given(method("GET"))
        .respond_with(responder)
        .mount(&server)
        .await;
    let client = client(ClientConfig {
        max_requests_per_sec: 5,
        ..config(&server)
    });

    let started = Instant::now();
    let mut requests = JoinSet::new();
    for i in 0..15 {
        let client = client.clone();
        requests.spawn(async move { client.retrieve_price(&format!("price_{i}")).await });
    }
    while let Some(done) = requests.join_next().await {
        done.expect("the task ran").expect("the request succeeded");
    }
    assert!(started.elapsed() >= Duration::from_secs(2));

    let mut arrivals = arrivals_of(&arrivals);
    arrivals.sort();
    assert_eq!(arrivals.len(), 15);
    // Six starts are 1 s apart at 5/s; the slack covers scheduling jitter
    // between a request's start and its arrival, not a limiter fault (with
    // no limiter all fifteen arrive within milliseconds).
    for six in arrivals.windows(6) {
        assert!(
            six[5] - six[0] >= Duration::from_millis(900),
            "six requests within {:?}",
            six[5] - six[0]
        );
    }
}

fn subscription(n: u32) -> Value {
    json!({"id": format!("sub_{n:02}"), "object": "subscription", "status": "active",
           "customer": "cus_1", "metadata": {"workspace_id": "ws_01HZYX"}})
}

#[tokio::test]
async fn list_subscriptions_pages_through_every_status() {
    let server = MockServer::start().await;
    let items: Vec<Value> = (1..=7).map(subscription).collect();
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions"))
        .respond_with(Pager {
            items: items.clone(),
            page_size: 3,
        })
        .mount(&server)
        .await;

    let listed = client(config(&server))
        .list_subscriptions(Some("cus_1"))
        .await
        .expect("listed");
    assert_eq!(listed, items);

    let queries: Vec<_> = received(&server).await.iter().map(query_of).collect();
    assert_eq!(
        queries,
        vec![
            pairs(&[("status", "all"), ("limit", "100"), ("customer", "cus_1")]),
            pairs(&[
                ("status", "all"),
                ("limit", "100"),
                ("customer", "cus_1"),
                ("starting_after", "sub_03")
            ]),
            pairs(&[
                ("status", "all"),
                ("limit", "100"),
                ("customer", "cus_1"),
                ("starting_after", "sub_06")
            ]),
        ]
    );
}

#[tokio::test]
async fn list_customers_by_email_pages_with_the_email_in_the_query() {
    let server = MockServer::start().await;
    let items: Vec<Value> = (1..=5)
        .map(
            |n| json!({"id": format!("cus_{n}"), "object": "customer", "email": "a+b@example.com"}),
        )
        .collect();
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .respond_with(Pager {
            items: items.clone(),
            page_size: 2,
        })
        .mount(&server)
        .await;

    let listed = client(config(&server))
        .list_customers_by_email("a+b@example.com")
        .await
        .expect("listed");
    assert_eq!(listed, items);
    let requests = received(&server).await;
    assert_eq!(requests.len(), 3);
    assert_eq!(
        query_of(&requests[0]),
        pairs(&[("email", "a+b@example.com"), ("limit", "100")])
    );
}

fn event(id: &str, created: i64) -> Value {
    json!({"id": id, "object": "event", "type": "customer.subscription.updated",
           "created": created, "api_version": "2026-07-29.dahlia", "livemode": false,
           "data": {"object": {"id": "sub_1", "object": "subscription", "customer": "cus_1"}}})
}

/// Seven events, two pairs of them created in the same second, oldest first.
fn events_oldest_first() -> Vec<Value> {
    vec![
        event("evt_a1", 1_790_000_000),
        event("evt_b2", 1_790_000_000),
        event("evt_c3", 1_790_000_005),
        event("evt_d4", 1_790_000_009),
        event("evt_e5", 1_790_000_009),
        event("evt_f6", 1_790_000_010),
        event("evt_g7", 1_790_000_020),
    ]
}

async fn all_events_served_in(order: Vec<Value>) -> (Vec<Value>, Vec<Vec<(String, String)>>) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/events"))
        .respond_with(Pager {
            items: order,
            page_size: 3,
        })
        .mount(&server)
        .await;
    let events = client(config(&server))
        .all_events_since(1_790_000_000)
        .await
        .expect("listed");
    let queries = received(&server).await.iter().map(query_of).collect();
    (events, queries)
}

#[tokio::test]
async fn all_events_since_reads_newest_first_pages_like_stripe() {
    let mut newest_first = events_oldest_first();
    newest_first.reverse();
    let (events, queries) = all_events_served_in(newest_first).await;
    assert_eq!(events, events_oldest_first());
    assert_eq!(queries.len(), 3);
    assert_eq!(
        queries[0],
        pairs(&[("limit", "100"), ("created[gte]", "1790000000")])
    );
    assert_eq!(
        queries[1],
        pairs(&[
            ("limit", "100"),
            ("created[gte]", "1790000000"),
            ("starting_after", "evt_e5")
        ])
    );
    assert_eq!(
        queries[2][2],
        ("starting_after".to_owned(), "evt_b2".to_owned())
    );
}

#[tokio::test]
async fn all_events_since_reads_oldest_first_pages_like_localstripe() {
    let (events, queries) = all_events_served_in(events_oldest_first()).await;
    assert_eq!(events, events_oldest_first());
    assert_eq!(queries.len(), 3);
    assert_eq!(
        queries[1][2],
        ("starting_after".to_owned(), "evt_c3".to_owned())
    );
    assert_eq!(
        queries[2][2],
        ("starting_after".to_owned(), "evt_f6".to_owned())
    );
}

#[tokio::test]
async fn list_events_returns_one_page_and_clamps_the_limit() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/events"))
        .respond_with(Pager {
            items: events_oldest_first(),
            page_size: 3,
        })
        .mount(&server)
        .await;
    let client = client(config(&server));

    let page = client
        .list_events(Some(1_790_000_000), Some("evt_b2"), 500)
        .await
        .expect("page");
    assert!(page.has_more);
    assert_eq!(page.data, events_oldest_first()[2..5]);
    let page = client.list_events(None, None, 0).await.expect("page");
    assert_eq!(page.data.len(), 3);

    let queries: Vec<_> = received(&server).await.iter().map(query_of).collect();
    assert_eq!(
        queries,
        vec![
            pairs(&[
                ("limit", "100"),
                ("created[gte]", "1790000000"),
                ("starting_after", "evt_b2")
            ]),
            pairs(&[("limit", "1")]),
        ]
    );
}

#[tokio::test]
async fn a_page_that_promises_more_but_is_empty_ends_the_listing() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"object": "list", "data": [], "has_more": true})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let error = client(config(&server))
        .list_subscriptions(None)
        .await
        .expect_err("cannot continue");
    assert!(matches!(error, StripeError::Unexpected(_)), "{error:?}");
}

#[tokio::test]
async fn a_success_that_is_not_json_is_a_decode_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
        .expect(1)
        .mount(&server)
        .await;

    let error = client(config(&server))
        .retrieve_price("price_1")
        .await
        .expect_err("not JSON");
    assert!(matches!(error, StripeError::Decode(_)), "{error:?}");
}

#[test]
fn event_body_is_an_event_admit_can_parse() {
    let event = event("evt_a1", 1_790_000_000);
    let body = event_body(&event);
    let envelope = crate::EventEnvelope::parse(&body).expect("an event");
    assert_eq!(envelope.id.as_str(), "evt_a1");
    assert_eq!(serde_json::from_slice::<Value>(&body).expect("JSON"), event);
}

#[tokio::test]
async fn the_api_key_never_shows_in_debug_or_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(stripe_error(
            "invalid_request_error",
            "api_key_invalid",
            "Invalid API Key provided: sk_test_****************************hown",
        )))
        .mount(&server)
        .await;
    let (limited, _) = Scripted::new(vec![
        ResponseTemplate::new(429).insert_header("Retry-After", "0"),
    ]);
    let limited_server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(limited)
        .mount(&limited_server)
        .await;

    let config = config(&server);
    let client = client(config.clone());
    let mut shown = vec![format!("{client:?}"), format!("{config:?}")];
    let mut errors = vec![
        client.retrieve_price("price_1").await.expect_err("401"),
        self::client(ClientConfig {
            max_retries: 1,
            ..self::config(&limited_server)
        })
        .retrieve_price("price_1")
        .await
        .expect_err("429"),
        self::client(ClientConfig {
            base_url: closed_port_url(),
            max_retries: 0,
            ..config.clone()
        })
        .retrieve_price("price_1")
        .await
        .expect_err("refused"),
    ];
    errors.push(
        StripeClient::new(ClientConfig {
            max_requests_per_sec: 0,
            ..config
        })
        .expect_err("not configured"),
    );
    for error in &errors {
        shown.push(error.to_string());
        shown.push(format!("{error:?}"));
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            shown.push(cause.to_string());
            source = cause.source();
        }
    }
    for text in &shown {
        assert!(!text.contains(KEY), "the key shows in {text}");
        assert!(
            !text.contains("MustNever"),
            "part of the key shows in {text}"
        );
    }
    assert!(shown[0].contains("StripeClient"));
}

#[test]
fn refuses_an_incomplete_configuration() {
    let complete = ClientConfig::new(SecretString::from(KEY));
    assert_eq!(complete.base_url, "https://api.stripe.com");
    assert!(StripeClient::new(complete.clone()).is_ok());
    for config in [
        ClientConfig::new(SecretString::from("")),
        ClientConfig::new(SecretString::from("  ")),
        ClientConfig {
            base_url: "api.stripe.com".to_owned(),
            ..complete.clone()
        },
        ClientConfig {
            base_url: "ftp://api.stripe.com".to_owned(),
            ..complete.clone()
        },
        ClientConfig {
            max_requests_per_sec: 0,
            ..complete.clone()
        },
    ] {
        assert!(
            matches!(StripeClient::new(config), Err(StripeError::NotConfigured)),
            "should be refused"
        );
    }
}
