//! A real SMTP server per test: `tests/it/smtp_server.py` (aiosmtpd) in its
//! own process, so a test can start it late, stop it, or have it refuse mail.
//! `scripts/test` installs aiosmtpd into `.test-services/venv` and exports
//! `ADMIT_TEST_PYTHON`; without it the tests fail and say so, never skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How the server answers `RCPT TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Accept,
    /// `451`: try again later.
    Transient451,
    /// `550`: never.
    Permanent550,
    /// Never answers `RCPT TO` for this address; serves the others.
    StallFor(&'static str),
}

/// A message the server accepted, as Python's email package read it.
#[derive(Debug, Clone)]
pub struct Received {
    pub rcpt_tos: Vec<String>,
    /// Header name (lower-case) → decoded value.
    pub headers: Value,
    pub content_type: String,
    pub text: String,
    pub html: String,
    /// The DATA as received.
    pub raw: String,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers[name].as_str().unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct SmtpServer {
    pub port: u16,
    maildir: tempfile::TempDir,
    child: Child,
}

/// A port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub fn smtp_url(port: u16) -> String {
    format!("smtp://127.0.0.1:{port}")
}

fn python() -> PathBuf {
    crate::helpers::test_python("aiosmtpd", "the mail tests")
}

fn spawn(port: u16, maildir: &Path, reply: Reply) -> Child {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(maildir.join("server.log"))
        .expect("server log");
    let mut command = Command::new(python());
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp_server.py"))
        .args(["--port", &port.to_string()])
        .arg("--maildir")
        .arg(maildir.join("received"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log);
    match reply {
        Reply::Accept => {}
        Reply::Transient451 => {
            command.args(["--reply", "451"]);
        }
        Reply::Permanent550 => {
            command.args(["--reply", "550"]);
        }
        Reply::StallFor(address) => {
            command.args(["--stall", address]);
        }
    }
    command.spawn().expect("start the SMTP server")
}

impl SmtpServer {
    /// An accepting server on a fresh port.
    pub async fn start() -> Self {
        Self::start_on(free_port(), Reply::Accept).await
    }

    /// A server on `port` (which must be free) answering as `reply` says.
    pub async fn start_on(port: u16, reply: Reply) -> Self {
        let maildir = tempfile::tempdir().expect("maildir");
        let child = spawn(port, maildir.path(), reply);
        let mut server = Self {
            port,
            maildir,
            child,
        };
        server.wait_until_listening().await;
        server
    }

    async fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the SMTP server exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP server did not listen on {} in time: {}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.maildir.path().join("server.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        smtp_url(self.port)
    }

    /// Stops this server and starts another on the same port with the same
    /// mailbox, answering as `reply` says.
    pub async fn restart(&mut self, reply: Reply) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpListener::bind(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "port {} stays taken", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = spawn(self.port, self.maildir.path(), reply);
        self.wait_until_listening().await;
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything accepted so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        let dir = self.maildir.path().join("received");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = entries
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|json| {
                let parsed: Value = serde_json::from_str(
                    &std::fs::read_to_string(&json).expect("read parsed message"),
                )
                .expect("JSON");
                let raw = std::fs::read(json.with_extension("eml")).expect("read message");
                let text = |key: &str| parsed[key].as_str().unwrap_or_default().to_owned();
                Received {
                    rcpt_tos: parsed["rcpt_tos"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.as_str().map(str::to_owned))
                        .collect(),
                    headers: parsed["headers"].clone(),
                    content_type: text("content_type"),
                    text: text("text"),
                    html: text("html"),
                    raw: String::from_utf8_lossy(&raw).into_owned(),
                }
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.kill();
    }
}
