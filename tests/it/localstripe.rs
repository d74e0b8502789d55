//! localstripe (PyPI; a real, stateful Stripe stand-in) per test:
//! `tests/it/localstripe_server.py` in its own process on 127.0.0.1, state in
//! memory only, killed when the handle drops. `scripts/test` installs
//! localstripe into `.test-services/venv` and exports `ADMIT_TEST_PYTHON`;
//! without it the tests fail and say so, never skip.
//!
//! The helpers create objects the way an integration on the legacy API would
//! (`/v1/plans`, `items[0][plan]`, a card source on the customer), because
//! that is what localstripe implements: it has no Prices and no Checkout.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::smtp::free_port;

/// Any key that starts with `sk_` is accepted by localstripe.
pub const API_KEY: &str = "sk_test_admit";

#[derive(Debug)]
pub struct LocalStripe {
    pub port: u16,
    logdir: tempfile::TempDir,
    child: Child,
    http: reqwest::Client,
}

fn python() -> PathBuf {
    crate::helpers::test_python("localstripe.server", "the Stripe API tests")
}

impl LocalStripe {
    /// An empty localstripe on a fresh port, listening.
    pub async fn start() -> Self {
        let python = python();
        let mut logdir = tempfile::tempdir().expect("localstripe log dir");
        let mut last_log = String::new();
        // A port found free can be taken before the server binds it: try another.
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(logdir.path().join("server.log")).expect("log file");
            let child = Command::new(&python)
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/localstripe_server.py"))
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .expect("start localstripe");
            let mut server = Self {
                port,
                logdir,
                child,
                http: reqwest::Client::new(),
            };
            match server.wait_until_listening().await {
                Ok(()) => return server,
                Err(log) => {
                    last_log = log;
                    drop(server);
                    logdir = tempfile::tempdir().expect("localstripe log dir");
                }
            }
        }
        panic!("localstripe did not start: {last_log}");
    }

    /// `Err(log)` if the process exited (e.g. the port was taken).
    async fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status}): {}", self.log()));
            }
            assert!(
                Instant::now() < deadline,
                "localstripe did not listen on {} in time: {}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the server printed: requests and webhook deliveries.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.logdir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits until the log has `needle` (e.g. a webhook delivery's outcome).
    pub async fn wait_for_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "localstripe never logged {needle:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The API base URL, for `ADMIT_STRIPE_API_BASE`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Value {
        let response = request
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: localstripe unreachable: {e}"));
        let status = response.status();
        let text = response.text().await.expect("localstripe body");
        assert!(status.is_success(), "{what}: {status}: {text}");
        if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
        }
    }

    /// A form POST; panics with the answer unless it is 2xx.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let request = self.http.post(format!("{}{path}", self.url())).form(form);
        self.send(request, &format!("POST {path}")).await
    }

    pub async fn get(&self, path: &str) -> Value {
        let request = self.http.get(format!("{}{path}", self.url()));
        self.send(request, &format!("GET {path}")).await
    }

    pub async fn delete(&self, path: &str) -> Value {
        let request = self.http.delete(format!("{}{path}", self.url()));
        self.send(request, &format!("DELETE {path}")).await
    }

    /// localstripe signs every event with `secret` and posts it to `url`
    /// about a second after the API call, once, without retries.
    pub async fn register_webhook(&self, id: &str, url: &str, secret: &str) {
        self.post(
            &format!("/_config/webhooks/{id}"),
            &[("url", url), ("secret", secret)],
        )
        .await;
    }

    /// A product; returns its id.
    pub async fn create_product(&self, name: &str) -> String {
        let product = self
            .post("/v1/products", &[("name", name), ("type", "service")])
            .await;
        id_of(&product)
    }

    /// A legacy plan (what a price id is for older integrations) with the id
    /// the caller names, so it can be in admit's catalog.
    pub async fn create_plan(&self, id: &str, product: &str, amount: u32) -> String {
        let amount = amount.to_string();
        let plan = self
            .post(
                "/v1/plans",
                &[
                    ("id", id),
                    ("product", product),
                    ("amount", &amount),
                    ("currency", "usd"),
                    ("interval", "month"),
                ],
            )
            .await;
        id_of(&plan)
    }

    /// A customer with a Visa test card as default source (so its
    /// subscriptions are paid and go `active`) and, if given,
    /// `metadata[workspace_id]`. Returns its id.
    pub async fn create_customer(&self, email: &str, workspace: Option<&str>) -> String {
        let mut form = vec![
            ("email", email),
            ("source[object]", "card"),
            ("source[number]", "4242424242424242"),
            ("source[exp_month]", "12"),
            ("source[exp_year]", "2030"),
            ("source[cvc]", "123"),
        ];
        if let Some(workspace) = workspace {
            form.push(("metadata[workspace_id]", workspace));
        }
        id_of(&self.post("/v1/customers", &form).await)
    }

    /// A subscription to one plan (`items[0][plan]`), with
    /// `metadata[workspace_id]` if given. Returns the subscription.
    pub async fn create_subscription(
        &self,
        customer: &str,
        plan: &str,
        workspace: Option<&str>,
    ) -> Value {
        let mut form = vec![("customer", customer), ("items[0][plan]", plan)];
        if let Some(workspace) = workspace {
            form.push(("metadata[workspace_id]", workspace));
        }
        self.post("/v1/subscriptions", &form).await
    }

    /// `POST /v1/subscriptions/{id}` (localstripe sends no webhook for it).
    pub async fn update_subscription(&self, id: &str, form: &[(&str, &str)]) -> Value {
        self.post(&format!("/v1/subscriptions/{id}"), form).await
    }

    /// Cancels at once (`DELETE`); localstripe then sends
    /// `customer.subscription.deleted`.
    pub async fn cancel_subscription(&self, id: &str) -> Value {
        self.delete(&format!("/v1/subscriptions/{id}")).await
    }
}

fn id_of(object: &Value) -> String {
    object["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {object}"))
        .to_owned()
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        self.kill();
    }
}
