//! How a message leaves: over SMTP (lettre), or into a folder as one `.eml`
//! file per message for development. Also builds the MIME message itself,
//! with a `Message-ID` derived from the outbox row's idempotency key, so a
//! message sent again after a crash carries the same id and receivers can
//! drop the copy.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lettre::address::AddressError;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use admit_core::Timestamp;

use crate::config::{MailConfig, MailTransport};
use crate::mail::render::Rendered;

/// Per SMTP command; a send is several commands.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole send, start to finish (connect, greeting, every command, the
/// data): a server that accepts and never answers costs this, not more.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Folder(PathBuf),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The SMTP side holds credentials: name the kind only.
        match self {
            Transport::Smtp(_) => f.write_str("Smtp"),
            Transport::Folder(path) => write!(f, "Folder({})", path.display()),
        }
    }
}

/// The transport configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TransportConfigError {
    #[error("{url} is not a usable SMTP URL")]
    SmtpUrl {
        /// Redacted.
        url: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
}

/// A failed send. `is_permanent` says whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A 5xx reply: the server will not take this message, ever.
    #[error("the SMTP server rejected the message")]
    Rejected(#[source] lettre::transport::smtp::Error),
    /// A 4xx reply, a refused or dropped connection, a timeout, TLS trouble.
    #[error("the SMTP server did not take the message")]
    Smtp(#[source] lettre::transport::smtp::Error),
    #[error("the SMTP exchange took longer than {0:?}")]
    TimedOut(Duration),
    #[error("cannot write the message into {}", path.display())]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TransportError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, TransportError::Rejected(_))
    }

    fn smtp(error: lettre::transport::smtp::Error) -> Self {
        if error.is_permanent() {
            TransportError::Rejected(error)
        } else {
            TransportError::Smtp(error)
        }
    }
}

/// A message could not be built from what was rendered.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The address itself is not shown: it is personal data.
    #[error("the recipient is not a usable email address")]
    Recipient(#[source] AddressError),
    #[error("cannot build the message")]
    Build(#[source] lettre::error::Error),
}

impl Transport {
    pub fn from_config(config: &MailConfig) -> Result<Self, TransportConfigError> {
        match &config.transport {
            MailTransport::Smtp(url) => {
                let url = url.expose_secret();
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|source| TransportConfigError::SmtpUrl {
                        url: crate::config::redact_url(url),
                        source,
                    })?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build();
                Ok(Transport::Smtp(transport))
            }
            MailTransport::Folder(path) => Ok(Transport::Folder(path.clone())),
        }
    }

    /// Whether messages can be handed over now: the SMTP server answers
    /// (connect and EHLO, within 10 s), or the folder takes a file. Says
    /// what it found either way, without the URL's password.
    pub async fn check(&self) -> Result<String, String> {
        match self {
            Transport::Smtp(smtp) => {
                match tokio::time::timeout(SMTP_TIMEOUT, smtp.test_connection()).await {
                    Ok(Ok(true)) => Ok("the SMTP server accepts connections".to_owned()),
                    Ok(Ok(false)) => Err("the SMTP server refused the connection".to_owned()),
                    Ok(Err(e)) => Err(format!("cannot reach the SMTP server: {e}")),
                    Err(_) => Err("the SMTP server did not answer within 10 s".to_owned()),
                }
            }
            Transport::Folder(folder) => {
                let folder = folder.clone();
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&folder)?;
                    let probe = folder.join(".admit-readiness-probe");
                    std::fs::write(&probe, b"")?;
                    std::fs::remove_file(&probe)?;
                    Ok::<_, std::io::Error>(folder)
                })
                .await
                .map_err(|e| e.to_string())?
                .map(|folder| format!("the mail folder {} is writable", folder.display()))
                .map_err(|e| format!("cannot write to the mail folder: {e}"))
            }
        }
    }

    /// Hands the message over. `Ok` means the server (or the disk) has it.
    pub async fn send(&self, message: &Message) -> Result<(), TransportError> {
        match self {
            Transport::Smtp(smtp) => {
                let raw = message.formatted();
                match tokio::time::timeout(SEND_TIMEOUT, smtp.send_raw(message.envelope(), &raw))
                    .await
                {
                    Ok(sent) => sent.map(|_| ()).map_err(TransportError::smtp),
                    Err(_) => Err(TransportError::TimedOut(SEND_TIMEOUT)),
                }
            }
            Transport::Folder(folder) => {
                let folder = folder.clone();
                let name = file_name(message);
                let raw = message.formatted();
                let target = folder.join(&name);
                tokio::task::spawn_blocking(move || write_atomically(&folder, &name, &raw))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|written| written)
                    .map_err(|source| TransportError::Folder {
                        path: target,
                        source,
                    })
            }
        }
    }
}

/// `<hex>.eml` from the `Message-ID` (its part before `@`), so sending the
/// same message again replaces its file and no other.
fn file_name(message: &Message) -> String {
    let id = message
        .headers()
        .get_raw("Message-ID")
        .map(|id| {
            let id = id.trim().trim_start_matches('<').trim_end_matches('>');
            id.split('@').next().unwrap_or(id).to_owned()
        })
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| hex::encode(Sha256::digest(message.formatted())));
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.eml", safe.trim_start_matches('.'))
}

/// A reader of the folder sees the old file or the new one, never half of one.
fn write_atomically(folder: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| std::io::Error::other(e.to_string()))?;
    let temp = folder.join(format!(".{name}.{}.tmp", hex::encode(suffix)));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, folder.join(name))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// `<{first 32 hex digits of sha256(key)}@{domain}>`: the same key gives the same id.
pub fn message_id(idempotency_key: &str, domain: &str) -> String {
    let digest = hex::encode(Sha256::digest(idempotency_key.as_bytes()));
    format!("<{}@{domain}>", &digest[..32])
}

/// `to` as the mailer addresses it: the one parser both the API's edge (an
/// address admit will mail) and the sender use.
pub fn recipient(to: &str) -> Result<Mailbox, AddressError> {
    to.parse::<Mailbox>()
}

/// A multipart/alternative message (text and HTML) with a stable `Message-ID`.
/// `domain` is the sender's domain; `date` is the attempt's time.
pub fn build_message(
    from: &Mailbox,
    to: &str,
    rendered: &Rendered,
    idempotency_key: &str,
    domain: &str,
    date: Timestamp,
) -> Result<Message, MessageError> {
    let to = recipient(to).map_err(MessageError::Recipient)?;
    let date = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(date.unix()).unwrap_or_default());
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(rendered.subject.clone())
        .date(date)
        .message_id(Some(message_id(idempotency_key, domain)))
        .multipart(MultiPart::alternative_plain_html(
            rendered.text.clone(),
            rendered.html.clone(),
        ))
        .map_err(MessageError::Build)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> Rendered {
        Rendered {
            subject: "Your Pro plan for Acme Rockets is active".into(),
            text: "Welcome to Pro.".into(),
            html: "<p>Welcome to <b>Pro</b>.</p>".into(),
        }
    }

    fn from() -> Mailbox {
        "Admit <billing@acme.example>".parse().expect("mailbox")
    }

    fn message(key: &str) -> Message {
        build_message(
            &from(),
            "dana@acme.test",
            &rendered(),
            key,
            "acme.example",
            Timestamp::from_unix(1_795_000_000),
        )
        .expect("message builds")
    }

    #[test]
    fn the_message_id_is_stable_and_depends_only_on_the_key() {
        let id = message_id("onboarding:sub_1:dana@acme.test", "acme.example");
        assert_eq!(
            id,
            message_id("onboarding:sub_1:dana@acme.test", "acme.example")
        );
        assert_ne!(
            id,
            message_id("onboarding:sub_2:dana@acme.test", "acme.example")
        );
        let (local, domain) = id
            .trim_start_matches('<')
            .trim_end_matches('>')
            .split_once('@')
            .expect("an @");
        assert_eq!(domain, "acme.example");
        assert_eq!(local.len(), 32);
        assert!(local.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(
            !id.contains("dana"),
            "the address does not leak into the id"
        );
    }

    #[test]
    fn builds_multipart_alternative_with_headers() {
        let message = message("onboarding:sub_1:dana@acme.test");
        let raw = String::from_utf8(message.formatted()).expect("UTF-8");
        let id = message_id("onboarding:sub_1:dana@acme.test", "acme.example");
        assert!(raw.contains(&format!("Message-ID: {id}")), "{raw}");
        assert!(raw.contains("To: dana@acme.test"), "{raw}");
        assert!(raw.contains("From: Admit <billing@acme.example>"), "{raw}");
        assert!(raw.contains("Subject: Your Pro plan for Acme Rockets is active"));
        assert!(
            raw.contains("Date: Wed, 18 Nov 2026 11:06:40 +0000"),
            "{raw}"
        );
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain"));
        assert!(raw.contains("text/html"));
        assert_eq!(
            message
                .envelope()
                .to()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["dana@acme.test"]
        );
        // The same inputs give the same bytes (up to the MIME boundary).
        assert_eq!(
            file_name(&message),
            file_name(&self::message("onboarding:sub_1:dana@acme.test"))
        );
    }

    #[test]
    fn a_bad_recipient_is_an_error_that_does_not_show_it() {
        let error = build_message(
            &from(),
            "not-an-address",
            &rendered(),
            "k",
            "acme.example",
            Timestamp::from_unix(0),
        )
        .expect_err("no @");
        assert!(!error.to_string().contains("not-an-address"));
    }

    #[test]
    fn file_names_are_the_message_id_hash() {
        let message = message("onboarding:sub_1:dana@acme.test");
        let name = file_name(&message);
        let id = message_id("onboarding:sub_1:dana@acme.test", "acme.example");
        assert_eq!(name, format!("{}.eml", &id[1..33]));
    }

    #[tokio::test]
    async fn the_folder_transport_writes_one_file_per_message_and_replaces_it_on_resend() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("mail/nested");
        let transport = Transport::Folder(folder.clone());
        let first = message("onboarding:sub_1:dana@acme.test");
        let second = message("cancellation:sub_1:dana@acme.test");
        transport.send(&first).await.expect("written");
        transport.send(&second).await.expect("written");
        transport.send(&first).await.expect("written again");
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .expect("folder created")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut expected = vec![file_name(&first), file_name(&second)];
        expected.sort();
        assert_eq!(names, expected, "no temp files left, one file per message");
        let stored = std::fs::read(folder.join(file_name(&first))).expect("read");
        assert_eq!(stored, first.formatted());
    }

    #[tokio::test]
    async fn an_unwritable_folder_is_a_transient_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"not a folder").expect("write");
        let transport = Transport::Folder(blocker.join("mail"));
        let error = transport
            .send(&message("k"))
            .await
            .expect_err("a file is in the way");
        assert!(!error.is_permanent());
        assert!(error.to_string().contains("mail"), "{error}");
    }

    #[tokio::test]
    async fn nobody_listening_is_a_transient_smtp_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let transport = Transport::Smtp(
            AsyncSmtpTransport::<Tokio1Executor>::from_url(&format!("smtp://127.0.0.1:{port}"))
                .expect("url")
                .timeout(Some(Duration::from_secs(2)))
                .build(),
        );
        let error = transport
            .send(&message("k"))
            .await
            .expect_err("connection refused");
        assert!(!error.is_permanent(), "{error:?}");
        assert!(
            std::error::Error::source(&error).is_some(),
            "the cause is kept"
        );
    }
}
