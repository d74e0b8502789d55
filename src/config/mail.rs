//! Email and link settings: how messages leave (SMTP or a folder), who they
//! come from, what they call the product, and where their links point.

use std::path::PathBuf;

use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;

/// The mail and link keys as read, before validation (extracted on their
/// own, so figment reads numbers in the environment as numbers).
#[derive(Deserialize)]
pub(super) struct RawMail {
    pub mail_url: String,
    pub mail_from: String,
    pub mail_max_attempts: u32,
    pub product_name: String,
    pub public_url: String,
    pub app_url: String,
    pub app_home_url: String,
    pub signin_token_ttl_hours: i64,
}

/// Where messages go.
#[derive(Clone)]
pub enum MailTransport {
    /// `smtp://`, `smtps://` (TLS) or `smtp://…?tls=required` (STARTTLS), with
    /// optional `user:password@`; the whole URL is a secret.
    Smtp(SecretString),
    /// One `.eml` file per message in this folder.
    Folder(PathBuf),
}

impl std::fmt::Debug for MailTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailTransport::Smtp(url) => {
                write!(f, "Smtp({})", super::redact_url(url.expose_secret()))
            }
            MailTransport::Folder(path) => write!(f, "Folder({})", path.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    pub transport: MailTransport,
    pub from: Mailbox,
    /// After this many failed attempts a message is `dead`.
    pub max_attempts: u32,
    pub product_name: String,
    /// admit's own address as the outside sees it (welcome page, support links), no trailing `/`.
    pub public_url: String,
    /// The application's sign-in link, with `{workspace_id}` and `{token}`.
    pub app_url: String,
    /// The application's front door, for buttons that need no token.
    pub app_home_url: String,
    pub signin_token_ttl_secs: i64,
}

fn invalid(key: &'static str, problem: impl Into<String>, fix: &'static str) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
        fix,
    }
}

fn http_url(key: &'static str, value: &str, fix: &'static str) -> Result<String, ConfigError> {
    let trimmed = value.trim().trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://"))
        || trimmed.contains(char::is_whitespace)
    {
        return Err(invalid(
            key,
            format!("{value:?} is not an http(s) URL"),
            fix,
        ));
    }
    Ok(trimmed.to_owned())
}

impl MailConfig {
    pub(super) fn validate(raw: RawMail) -> Result<Self, ConfigError> {
        let url = raw.mail_url;
        let transport = if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(invalid(
                    "mail_url",
                    "file:// names no folder",
                    "set ADMIT_MAIL_URL to file:///absolute/folder or file://./relative/folder",
                ));
            }
            MailTransport::Folder(PathBuf::from(path))
        } else if url.starts_with("smtp://") || url.starts_with("smtps://") {
            // lettre parses it again when sending; checking here turns a typo into a start-up error.
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&url).map_err(|_| {
                invalid(
                    "mail_url",
                    format!("{} is not a usable SMTP URL", super::redact_url(&url)),
                    "set ADMIT_MAIL_URL to smtp://host:port, smtp://user:pass@host:587?tls=required (STARTTLS) or smtps://user:pass@host:465",
                )
            })?;
            MailTransport::Smtp(SecretString::from(url))
        } else {
            return Err(invalid(
                "mail_url",
                format!("{} has an unknown scheme", super::redact_url(&url)),
                "set ADMIT_MAIL_URL to smtp://…, smtps://… or file://folder",
            ));
        };
        let from = raw.mail_from.parse::<Mailbox>().map_err(|_| {
            invalid(
                "mail_from",
                "not an address (\"Name <address@example.com>\" or \"address@example.com\")",
                "set ADMIT_MAIL_FROM to the sender, e.g. \"Acme <billing@acme.example>\"",
            )
        })?;
        if !(1..=50).contains(&raw.mail_max_attempts) {
            return Err(invalid(
                "mail_max_attempts",
                format!("{} is out of range", raw.mail_max_attempts),
                "set ADMIT_MAIL_MAX_ATTEMPTS between 1 and 50 (8 is the default)",
            ));
        }
        let product_name = raw.product_name.trim().to_owned();
        if product_name.is_empty() || product_name.len() > 100 {
            return Err(invalid(
                "product_name",
                "must be 1 to 100 characters",
                "set ADMIT_PRODUCT_NAME to your product's name as customers know it",
            ));
        }
        let public_url = http_url(
            "public_url",
            &raw.public_url,
            "set ADMIT_PUBLIC_URL to where admit is reachable from outside, e.g. https://billing.example.com",
        )?;
        let app_url = raw.app_url.trim().to_owned();
        let app_fix = "set ADMIT_APP_URL to your app's sign-in link with {token} (and optionally {workspace_id}), e.g. https://app.example.com/signin?workspace={workspace_id}&token={token}";
        http_url("app_url", &app_url, app_fix)?;
        if !app_url.contains("{token}") {
            return Err(invalid(
                "app_url",
                "the link has no {token} placeholder",
                app_fix,
            ));
        }
        let app_home_url = http_url(
            "app_home_url",
            &raw.app_home_url,
            "set ADMIT_APP_HOME_URL to your app's address, e.g. https://app.example.com",
        )?;
        if !(1..=24 * 30).contains(&raw.signin_token_ttl_hours) {
            return Err(invalid(
                "signin_token_ttl_hours",
                format!("{} is out of range", raw.signin_token_ttl_hours),
                "set ADMIT_SIGNIN_TOKEN_TTL_HOURS between 1 and 720 (72 is the default)",
            ));
        }
        Ok(Self {
            transport,
            from,
            max_attempts: raw.mail_max_attempts,
            product_name,
            public_url,
            app_url,
            app_home_url,
            signin_token_ttl_secs: raw.signin_token_ttl_hours * 3600,
        })
    }

    /// The sign-in link for a workspace and a token.
    pub fn signin_link(&self, workspace_id: &str, token: &str) -> String {
        self.app_url
            .replace("{workspace_id}", workspace_id)
            .replace("{token}", token)
    }
}
