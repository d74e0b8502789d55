//! Where a scenario runs: a private admit on a scratch database (the real
//! `App`, real HTTP, a folder of `.eml` files as the mail sink), or an admit
//! already running somewhere (`--against URL`, Stripe test mode).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::oneshot;

use admit_core::provisioning::UnmatchedPolicy;

use crate::clock::{Clock, ManualClock};
use crate::config::{Config, MailTransport, Provenance};
use crate::startup::App;

/// An answer: status and JSON body (`Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

/// One admit a scenario talks to.
#[derive(Debug)]
pub struct Target {
    pub url: String,
    tolerance_secs: i64,
    webhook_secret: SecretString,
    app_token: SecretString,
    client: reqwest::Client,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Private(Box<Private>),
    Remote,
}

/// The private admit's handles: its clock, its workers (stepped by the
/// gate, so a run is deterministic), its mail folder.
#[derive(Debug)]
struct Private {
    clock: Arc<ManualClock>,
    processor: crate::provision::Processor,
    sender: crate::mail::sender::Sender,
    mail: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// A run id: short, unique enough to keep ids of runs apart.
pub fn run_id() -> String {
    crate::simulate::random_hex(4)
}

impl Target {
    /// Starts a private admit with the operator's catalog and rules on a
    /// scratch SQLite database; `policy` overrides the unmatched-purchase
    /// policy for rows about it.
    pub async fn private(
        config: &Config,
        start: admit_core::Timestamp,
        policy: Option<&str>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot make a scratch folder")?;
        let mail = dir.path().join("mail");
        let mut private = config.clone();
        private.database_url = format!("sqlite://{}", dir.path().join("qa.db").display());
        private.migrate_on_start = true;
        private.listen = "127.0.0.1:0".parse()?;
        let secret = format!("whsec_qa_{}", crate::simulate::random_hex(16));
        private.webhook_secrets = vec![SecretString::from(secret.clone())];
        private.webhook_secrets_provenance = Provenance::Configured;
        let token = crate::simulate::random_hex(24);
        private.app_token = SecretString::from(token.clone());
        private.app_token_provenance = Provenance::Configured;
        private.process_in_background = false;
        private.outbox_settle_secs = 0;
        private.mail.transport = MailTransport::Folder(mail.clone());
        if private.support_email.is_none() {
            private.support_email = Some(admit_core::Email::parse("support@qa.admit.test")?);
        }
        // Never the operator's Stripe account: the private admit runs on webhooks alone.
        private.stripe.api_key = None;
        private.stripe.reconcile_interval_secs = 0;
        private.stripe.mode = crate::config::stripe::StripeMode::Test;
        if let Some(policy) = policy {
            private.unmatched_purchase = match policy {
                "hold" => UnmatchedPolicy::Hold,
                "create_workspace" => UnmatchedPolicy::CreateWorkspace,
                other => bail!("policy {other:?} is not hold or create_workspace"),
            };
        }
        let clock = Arc::new(ManualClock::new(start));
        let app = App::build(private, clock.clone()).await?;
        let processor = app.processor();
        let sender = app.sender();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run(listener, async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            url,
            tolerance_secs: i64::try_from(config.webhook_tolerance_secs).unwrap_or(i64::MAX / 2),
            webhook_secret: SecretString::from(secret),
            app_token: SecretString::from(token),
            client: client()?,
            kind: Kind::Private(Box::new(Private {
                clock,
                processor,
                sender,
                mail,
                shutdown: Some(shutdown),
                server: Some(server),
                _dir: dir,
            })),
        })
    }

    /// A running admit, reached with this configuration's secret and token.
    pub fn remote(config: &Config, url: &str) -> anyhow::Result<Self> {
        if config.webhook_secrets_provenance == Provenance::GeneratedForDevelopment
            || config.app_token_provenance == Provenance::GeneratedForDevelopment
        {
            bail!(
                "--against needs the running admit's ADMIT_WEBHOOK_SECRETS and ADMIT_APP_TOKEN in this configuration"
            );
        }
        let secret = config
            .webhook_secrets
            .first()
            .context("ADMIT_WEBHOOK_SECRETS is empty")?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            tolerance_secs: i64::try_from(config.webhook_tolerance_secs).unwrap_or(i64::MAX / 2),
            webhook_secret: secret.clone(),
            app_token: config.app_token.clone(),
            client: client()?,
            kind: Kind::Remote,
        })
    }

    pub fn is_private(&self) -> bool {
        matches!(self.kind, Kind::Private(_))
    }

    /// The time the target's signatures are checked against.
    pub fn now(&self) -> admit_core::Timestamp {
        match &self.kind {
            Kind::Private(p) => p.clock.now(),
            Kind::Remote => crate::clock::SystemClock.now(),
        }
    }

    /// Moves the private admit's clock (for grace periods and scheduled ends).
    pub fn advance(&self, seconds: i64) -> bool {
        match &self.kind {
            Kind::Private(p) => {
                p.clock.advance(seconds);
                true
            }
            Kind::Remote => false,
        }
    }

    /// How far a signature may be from now at the target (this configuration's).
    pub fn tolerance_secs(&self) -> i64 {
        self.tolerance_secs
    }

    pub fn secret(&self) -> &str {
        self.webhook_secret.expose_secret()
    }

    /// Posts a webhook body with the given `Stripe-Signature` header (none: no header).
    pub async fn deliver(&self, body: &[u8], signature: Option<&str>) -> anyhow::Result<Answer> {
        let mut request = self
            .client
            .post(format!("{}/webhooks/stripe", self.url))
            .header("content-type", "application/json")
            .header("user-agent", crate::simulate::USER_AGENT)
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("stripe-signature", signature);
        }
        answer(request.send().await.context("cannot reach admit")?).await
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .with_context(|| format!("{method:?} is no HTTP method"))?;
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(self.app_token.expose_secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        answer(request.send().await.context("cannot reach admit")?).await
    }

    /// A `GET` that must answer 200.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let answer = self.call("GET", path, None).await?;
        if answer.status != 200 {
            bail!("GET {path} answered {}: {}", answer.status, answer.text);
        }
        Ok(answer.body)
    }

    /// A page that is not JSON (the welcome page).
    pub async fn page(&self, path: &str) -> anyhow::Result<String> {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .context("cannot reach admit")?;
        Ok(response.text().await?)
    }

    /// Lets the target act on what it received: the private admit's
    /// processor runs to empty; a running admit is polled until `events`
    /// left `received`.
    pub async fn settle(&self, events: &[String]) -> anyhow::Result<()> {
        match &self.kind {
            Kind::Private(p) => {
                p.processor.drain().await?;
                Ok(())
            }
            Kind::Remote => {
                for _ in 0..300 {
                    let mut waiting = false;
                    for id in events {
                        let event = self.get(&format!("/v1/events/{id}")).await?;
                        if event["status"] == "received" {
                            waiting = true;
                            break;
                        }
                    }
                    if !waiting {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                bail!("the running admit did not process the events within 60 s")
            }
        }
    }

    /// Sends what is due (private admit only) and reads what the mail sink
    /// received; `None` for a running admit, whose mail is its own.
    /// (The folder transport names a file by its Message-ID: one file per
    /// outbox row, however often it is sent.)
    pub async fn deliver_mail(&self) -> anyhow::Result<Option<Vec<String>>> {
        let Kind::Private(p) = &self.kind else {
            return Ok(None);
        };
        p.sender.drain().await?;
        let mut recipients = Vec::new();
        let Ok(entries) = std::fs::read_dir(&p.mail) else {
            return Ok(Some(recipients));
        };
        for entry in entries {
            let path = entry?.path();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let header = |name: &str| {
                text.lines()
                    .take_while(|l| !l.is_empty())
                    .find_map(|l| l.strip_prefix(name).map(str::trim))
            };
            if let Some(to) = header("To: ") {
                recipients.push(to.trim_matches(['<', '>']).to_ascii_lowercase());
            }
        }
        recipients.sort();
        Ok(Some(recipients))
    }

    /// Stops the private admit and removes its scratch folder.
    pub async fn stop(mut self) {
        if let Kind::Private(p) = &mut self.kind {
            if let Some(shutdown) = p.shutdown.take() {
                let _ = shutdown.send(());
            }
            if let Some(server) = p.server.take() {
                let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
            }
        }
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?)
}

async fn answer(response: reqwest::Response) -> anyhow::Result<Answer> {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Answer { status, body, text })
}
