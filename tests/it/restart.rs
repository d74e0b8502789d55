//! Durability across restarts and graceful shutdown.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{PRIMARY_SECRET, START, spawn_app, spawn_app_in};

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","object":"event","type":"customer.updated","created":1795000000,"livemode":false,"data":{{"object":{{"id":"cus_R1","object":"customer","metadata":{{}}}}}}}}"#).into_bytes()
}

#[tokio::test]
async fn events_survive_a_restart_on_the_same_database() {
    let app = spawn_app().await;
    let dir = app.dir.clone();
    let clock = app.clock.clone();
    app.post_signed(&body("evt_durable"), PRIMARY_SECRET)
        .await
        .expect(200);
    app.stop().await;

    let app = spawn_app_in(dir, clock).await;
    let stored = app.get("/v1/events/evt_durable").await.expect(200);
    assert_eq!(stored["received_at"], START.unix());
    let again = app
        .post_signed(&body("evt_durable"), PRIMARY_SECRET)
        .await
        .expect(200);
    assert_eq!(
        again["duplicate"], true,
        "the inbox remembers across restarts"
    );
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight() {
    let mut app = spawn_app().await;
    let event = body("evt_in_flight");
    let header = admit_stripe::signature::sign(&event, PRIMARY_SECRET, app.clock_now());
    let address = app.address.trim_start_matches("http://").to_owned();

    // Send the headers and half the body, then ask the server to stop.
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let head = format!(
        "POST /webhooks/stripe HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\nstripe-signature: {header}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        event.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let (first, rest) = event.split_at(event.len() / 2);
    stream.write_all(first).await.expect("write first half");
    stream.flush().await.expect("flush");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let server = app.begin_shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !server.is_finished(),
        "the server waits for the request in flight"
    );
    stream.write_all(rest).await.expect("write second half");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    server.await.expect("server task").expect("clean stop");
    // New connections are refused once it has stopped.
    assert!(tokio::net::TcpStream::connect(&address).await.is_err());

    let app = spawn_app_in(app.dir.clone(), Arc::clone(&app.clock)).await;
    app.get("/v1/events/evt_in_flight").await.expect(200);
}
