//! The operators' lists over HTTP: filters by what a customer or Stripe
//! gives, newest first, paged by `next_cursor`.

use serde_json::Value;

use crate::helpers::{PRIMARY_SECRET, TestApp};
use crate::stripe_story::{DAY, Sub, T, WS, acme};

/// Posts every event, then processes them.
async fn deliver(app: &TestApp, events: &[Vec<u8>]) {
    for body in events {
        app.post_signed(body, PRIMARY_SECRET).await.expect(200);
    }
    app.drain().await;
}

/// Every page of a list, following `next_cursor`.
async fn all_pages(app: &TestApp, path: &str, field: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}cursor={c}"),
            None => path.to_owned(),
        };
        let body = app.get(&url).await.expect(200);
        pages.push(body[field].as_array().cloned().unwrap_or_default());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return pages,
        }
        assert!(pages.len() < 50, "paging does not end");
    }
}

#[tokio::test]
async fn events_are_listed_newest_first_filtered_and_paged() {
    let app = acme().await;
    let sub = Sub::new(301, "dana@acme.test", T);
    deliver(&app, &sub.purchase()).await;
    let mut stranger = Sub::new(302, "stranger@else.test", T + DAY);
    stranger.workspace = None;
    deliver(&app, &stranger.purchase()).await;

    let pages = all_pages(&app, "/v1/events?limit=3", "events").await;
    let ids: Vec<&str> = pages
        .iter()
        .flatten()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 8, "every event once: {ids:?}");
    assert_eq!(pages[0].len(), 3);
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 8, "no event on two pages");

    let by_scenario = app.get("/v1/events?scenario=S5").await.expect(200);
    let held: Vec<&str> = by_scenario["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(held.len(), 4, "{by_scenario}");
    assert!(held.iter().all(|id| id.starts_with("evt_1Sem302")));

    let by_subscription = app
        .get(&format!("/v1/events?stripe_id={}", sub.id))
        .await
        .expect(200);
    assert_eq!(by_subscription["events"].as_array().map(Vec::len), Some(4));
    let by_email = app
        .get("/v1/events?email=Stranger@Else.test&type=checkout.session.completed")
        .await
        .expect(200);
    assert_eq!(by_email["events"].as_array().map(Vec::len), Some(1));
    let by_workspace = app
        .get(&format!("/v1/events?workspace_id={WS}"))
        .await
        .expect(200);
    assert_eq!(by_workspace["events"].as_array().map(Vec::len), Some(4));

    app.get("/v1/events?scenario=S99")
        .await
        .expect_error(400, "invalid_request");
    app.get("/v1/events?cursor=garbage")
        .await
        .expect_error(400, "invalid_request");
}

#[tokio::test]
async fn cases_and_outbox_filter_by_what_support_is_given() {
    let app = acme().await;
    for n in 0..3 {
        let mut lost = Sub::new(
            310 + n,
            &format!("buyer{n}@else.test"),
            T + i64::from(n) * DAY,
        );
        lost.workspace = None;
        deliver(&app, &lost.purchase()).await;
    }
    let pages = all_pages(&app, "/v1/cases?state=held&limit=2", "cases").await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    let by_email = app
        .get("/v1/cases?email=buyer1@else.test")
        .await
        .expect(200);
    assert_eq!(by_email["cases"].as_array().map(Vec::len), Some(1));
    assert_eq!(by_email["cases"][0]["kind"], "missing_workspace");
    let by_stripe = app
        .get("/v1/cases?stripe_id=sub_1Sem0312B7WZ01zgkW&kind=missing_workspace")
        .await
        .expect(200);
    assert_eq!(by_stripe["cases"].as_array().map(Vec::len), Some(1));
    app.get("/v1/cases?kind=nonsense")
        .await
        .expect_error(400, "invalid_request");

    let alerts = app
        .get("/v1/outbox?kind=support_alert&limit=1")
        .await
        .expect(200);
    assert_eq!(alerts["messages"].as_array().map(Vec::len), Some(1));
    assert!(alerts["next_cursor"].is_string(), "{alerts}");
    let to_buyer = app
        .get("/v1/outbox?recipient=buyer2@else.test")
        .await
        .expect(200);
    assert_eq!(to_buyer["messages"][0]["kind"], "access_delayed");
}
