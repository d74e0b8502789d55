//! Configuration: the embedded, commented defaults (`config/admit.default.toml`),
//! then an optional TOML file, then `ADMIT_*` environment variables (a
//! secret either directly or from the file its `_FILE` twin names, never
//! both). Validated once, at start-up, with messages that name the setting as
//! the user wrote it and say how to fix the problem; the kind of value each
//! key takes, and the warning for an unknown `ADMIT_*` variable, are in
//! `keys`.
//!
//! The plan catalog (`[plans.<key>]` tables) is the one exception to merging:
//! a file that defines `[plans]` replaces the embedded demo catalog whole, so
//! a deployment can drop a demo plan instead of only adding to it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use admit_core::provisioning::UnmatchedPolicy;
use admit_core::{Catalog, CatalogError, Email, Entitlements, Plan, PlanKey};
use figment::Figment;
use figment::providers::{Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod keys;
pub mod mail;
pub mod stripe;

pub use keys::{Setting, UnknownVariable};
pub use mail::{MailConfig, MailTransport};

pub const DEFAULTS: &str = include_str!("../../config/admit.default.toml");

/// Why start-up stops. Every message is whole: the setting, what is wrong
/// and the fix, quoting its cause; no variant also hands that cause out as
/// its `source()`, so the CLI's one-line chain prints it once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// What the checks before extraction do not catch: a TOML file that does
    /// not parse or cannot be read, a malformed `[plans]` table.
    #[error("cannot read configuration: {}", describe(.0))]
    Load(Box<figment::Error>),
    #[error(
        "cannot read {var} ({}): {error}. Fix: make the file readable by admit, or unset {var}",
        path.display()
    )]
    SecretFile {
        var: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// A value of the wrong type (or an unparsable log filter), named as the
    /// user set it: the variable, or the key and its file.
    #[error("invalid configuration {setting}: {problem}. Fix: {fix}")]
    Setting {
        setting: Setting,
        problem: String,
        fix: String,
    },
    #[error(
        "{variable} and {file_variable} are both set. Fix: unset one of them: {file_variable} to use {variable}, or {variable} to read the secret from the file"
    )]
    SecretTwice {
        variable: String,
        file_variable: String,
    },
    #[error("invalid configuration `{key}`: {problem}. Fix: {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: &'static str,
    },
    #[error("invalid configuration `plans`: {problem}. Fix: {fix}")]
    Catalog {
        problem: CatalogError,
        fix: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The file-and-environment shape, before validation.
#[derive(Deserialize)]
struct Raw {
    listen: String,
    database_url: String,
    #[serde(default, deserialize_with = "optional_string")]
    database_password: Option<String>,
    #[serde(default)]
    database_pool_size: Option<u32>,
    migrate_on_start: bool,
    #[serde(deserialize_with = "string_or_list")]
    webhook_secrets: Vec<String>,
    webhook_tolerance_secs: u64,
    #[serde(default, deserialize_with = "optional_string")]
    app_token: Option<String>,
    #[serde(default, deserialize_with = "optional_string")]
    metrics_token: Option<String>,
    log_format: LogFormat,
    log: String,
    grace_period_days: i64,
    unmatched_purchase: String,
    outbox_settle_secs: u64,
    shutdown_grace_secs: u64,
    header_timeout_secs: u64,
    max_connections: u32,
    public_rate_per_minute: u32,
    process_in_background: bool,
    #[serde(default, deserialize_with = "optional_string")]
    support_email: Option<String>,
}

/// The `[plans]` table, read from one layer only (an error's key is then
/// `plans.<key>.<field>`, which `extract_inner` would turn round).
#[derive(Deserialize)]
struct RawPlans {
    #[serde(default)]
    plans: BTreeMap<String, RawPlan>,
}

/// One `[plans.<key>]` table, before the catalog checks it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: String,
    #[serde(default)]
    prices: Vec<String>,
    #[serde(default)]
    features: BTreeSet<String>,
    #[serde(default)]
    limits: BTreeMap<String, i64>,
    #[serde(default)]
    free_tier: bool,
    /// Which plan wins when one subscription carries prices of several.
    #[serde(default)]
    rank: i64,
}

/// A value whose origin matters for the start-up message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    Configured,
    GeneratedForDevelopment,
}

/// Validated configuration. Its `Debug` never shows a secret.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// `ADMIT_DATABASE_PASSWORD` or `_FILE`: kept out of the URL (and so
    /// out of every place a URL is shown).
    pub database_password: Option<SecretString>,
    /// Connections each instance holds (`ADMIT_DATABASE_POOL_SIZE`).
    pub database_pool_size: Option<u32>,
    pub migrate_on_start: bool,
    pub webhook_secrets: Vec<SecretString>,
    pub webhook_secrets_provenance: Provenance,
    pub webhook_tolerance_secs: u64,
    pub app_token: SecretString,
    pub app_token_provenance: Provenance,
    /// The bearer token a scraper presents on `/metrics`
    /// (`ADMIT_METRICS_TOKEN` or `_FILE`), if one is set.
    pub metrics_token: Option<SecretString>,
    pub log_format: LogFormat,
    pub log: String,
    /// Plans, their Stripe prices and entitlements (`[plans.<key>]`).
    pub catalog: Catalog,
    /// How long `past_due` keeps the paid plan (from `grace_period_days`).
    pub grace_period_secs: i64,
    /// What happens to a paid purchase no rule binds to a workspace.
    pub unmatched_purchase: UnmatchedPolicy,
    /// How long a freshly derived email waits before it may be sent.
    pub outbox_settle_secs: u64,
    /// On SIGTERM, how long in-flight work may take before it is cut short
    /// and its leases given back.
    pub shutdown_grace_secs: u64,
    /// The longest a client may take to send a request's headers.
    pub header_timeout_secs: u64,
    /// Connections served at once.
    pub max_connections: u32,
    /// Requests per minute per client address to the public routes; 0: no limit.
    pub public_rate_per_minute: u32,
    /// Run the inbox processor inside `serve`.
    pub process_in_background: bool,
    /// The address customers are told to write to; unset by default.
    pub support_email: Option<Email>,
    /// Email transport, sender, product name and links.
    pub mail: mail::MailConfig,
    /// The Stripe API (optional).
    pub stripe: stripe::StripeConfig,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field(
                "database_password",
                &self.database_password.as_ref().map(|_| "<redacted>"),
            )
            .field("database_pool_size", &self.database_pool_size)
            .field("migrate_on_start", &self.migrate_on_start)
            .field(
                "webhook_secrets",
                &format_args!("[{} redacted]", self.webhook_secrets.len()),
            )
            .field("webhook_tolerance_secs", &self.webhook_tolerance_secs)
            .field("app_token", &"<redacted>")
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("log_format", &self.log_format)
            .field(
                "catalog",
                &self
                    .catalog
                    .plans()
                    .map(|p| p.key.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("grace_period_secs", &self.grace_period_secs)
            .field("unmatched_purchase", &self.unmatched_purchase)
            .field("outbox_settle_secs", &self.outbox_settle_secs)
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .field("header_timeout_secs", &self.header_timeout_secs)
            .field("max_connections", &self.max_connections)
            .field("public_rate_per_minute", &self.public_rate_per_minute)
            .field("process_in_background", &self.process_in_background)
            .field("support_email", &self.support_email)
            .field("mail", &self.mail)
            .field("stripe", &self.stripe)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// What the store needs beyond the URL.
    pub fn database_options(&self) -> admit_store::DatabaseOptions {
        use secrecy::ExposeSecret;
        admit_store::DatabaseOptions {
            password: self
                .database_password
                .as_ref()
                .map(|p| p.expose_secret().to_owned()),
            pool_size: self.database_pool_size,
        }
    }
}

/// Hides a password in `scheme://user:password@host/db`, and one given as
/// a `password=` query parameter (PostgreSQL URLs accept both).
pub fn redact_url(url: &str) -> String {
    let (address, query) = match url.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (url, None),
    };
    let mut redacted = match (address.find("://"), address.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            match address[scheme_end + 3..at].split_once(':') {
                Some((user, _)) => format!(
                    "{}{user}:<redacted>{}",
                    &address[..scheme_end + 3],
                    &address[at..]
                ),
                None => address.to_owned(),
            }
        }
        _ => address.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                    format!("{key}=<redacted>")
                }
                _ => pair.to_owned(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&pairs.join("&"));
    }
    redacted
}

/// Where configuration comes from; `env` is injected so tests need no
/// process-wide environment.
#[derive(Debug, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The process environment and the file it or the CLI names.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        Self {
            file,
            env: std::env::vars()
                .filter(|(k, _)| k.starts_with("ADMIT_"))
                .collect(),
        }
    }

    /// The `ADMIT_*` variables by upper-case name; the last of a name wins,
    /// as it does when they are merged.
    fn variables(&self) -> BTreeMap<String, &str> {
        self.env
            .iter()
            .filter_map(|(name, value)| {
                let rest = name.strip_prefix("ADMIT_")?;
                Some((
                    format!("ADMIT_{}", rest.to_ascii_uppercase()),
                    value.as_str(),
                ))
            })
            .collect()
    }

    /// `ADMIT_*` variables admit has no use for (a typo, most likely), each
    /// with the closest known variable. `ADMIT_TEST_*` belong to the tests.
    pub fn unknown_variables(&self) -> Vec<UnknownVariable> {
        self.variables()
            .into_keys()
            .filter(|name| !keys::is_known(name))
            .map(|name| keys::unknown(&name))
            .collect()
    }
}

/// A number setting outside `range` stops start-up with the variable's fix.
fn in_range(
    key: &'static str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
    fix: &'static str,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key,
        problem: format!("{value} is out of range"),
        fix,
    })
}

impl Config {
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let variables = sources.variables();
        if variables.contains_key("ADMIT_PLANS") {
            return Err(ConfigError::Invalid {
                key: "plans",
                problem: "the plan catalog cannot be set from the environment (ADMIT_PLANS)".into(),
                fix: "unset ADMIT_PLANS and define the catalog as [plans.<key>] tables in the TOML file named by --config or ADMIT_CONFIG",
            });
        }
        for key in keys::KEYS {
            let Some(file_variable) = key.file_variable() else {
                continue;
            };
            let variable = key.variable();
            if variables.get(&variable).is_some_and(|v| !v.is_empty())
                && variables.contains_key(&file_variable)
            {
                return Err(ConfigError::SecretTwice {
                    variable,
                    file_variable,
                });
            }
        }
        for key in keys::KEYS {
            let variable = key.variable();
            if let Some(text) = variables.get(&variable) {
                keys::check_variable(key, &variable, text).map_err(|p| ConfigError::Setting {
                    setting: Setting::Variable(variable.clone()),
                    problem: p.problem,
                    fix: p.fix,
                })?;
            }
        }

        let defaults = Figment::from(Toml::string(DEFAULTS));
        let file = sources
            .file
            .as_ref()
            .map(|path| (path, Figment::from(Toml::file_exact(path))));
        // What the environment overrides is not checked: it is not used.
        let from_file = |key: &keys::Key| -> Option<(&PathBuf, figment::value::Value)> {
            let overridden = std::iter::once(key.variable())
                .chain(key.file_variable())
                .any(|v| variables.contains_key(&v));
            let (path, file) = file.as_ref().filter(|_| !overridden)?;
            // A file that cannot be read fails extraction below, with figment's reason.
            Some((*path, file.find_value(key.name).ok()?))
        };
        for key in keys::KEYS {
            if let Some((path, value)) = from_file(key) {
                keys::check_file_value(key, path, &value).map_err(|p| ConfigError::Setting {
                    setting: Setting::File {
                        key: key.name,
                        path: path.display().to_string(),
                    },
                    problem: p.problem,
                    fix: p.fix,
                })?;
            }
        }

        let mut figment = defaults.clone();
        if let Some((_, file)) = &file {
            figment = figment.merge(file.clone());
        }
        // Environment values are merged as strings (a token like `1234` stays
        // text); `extract_lossy` turns them into numbers or booleans only
        // where a field asks for one.
        for key in keys::KEYS {
            if let Some(value) = variables.get(&key.variable()) {
                figment = figment.merge((key.name, *value));
            }
        }
        let load = |e| ConfigError::Load(Box::new(e));
        let mut raw: Raw = figment.extract_lossy().map_err(load)?;
        let mut raw_mail: mail::RawMail = figment.extract_lossy().map_err(load)?;
        let mut raw_stripe: stripe::RawStripe = figment.extract_lossy().map_err(load)?;
        // Not merged: a file's `[plans]` replaces the defaults' catalog whole.
        let plans_layer = match &file {
            Some((_, file)) if file.contains("plans") => file,
            _ => &defaults,
        };
        let plans = plans_layer.extract::<RawPlans>().map_err(load)?.plans;

        let secret_file = |var: &'static str| {
            variables
                .get(var)
                .map(|path| read_secret_file(var, Path::new(path)))
                .transpose()
        };
        if let Some(text) = secret_file("ADMIT_WEBHOOK_SECRETS_FILE")? {
            raw.webhook_secrets = split_list(&text);
        }
        if let Some(text) = secret_file("ADMIT_DATABASE_PASSWORD_FILE")? {
            raw.database_password = Some(text);
        }
        if let Some(text) = secret_file("ADMIT_APP_TOKEN_FILE")? {
            raw.app_token = Some(text);
        }
        if let Some(text) = secret_file("ADMIT_METRICS_TOKEN_FILE")? {
            raw.metrics_token = Some(text);
        }
        if let Some(text) = secret_file("ADMIT_MAIL_URL_FILE")? {
            raw_mail.mail_url = text;
        }
        if let Some(text) = secret_file("ADMIT_STRIPE_API_KEY_FILE")? {
            raw_stripe.stripe_api_key = Some(text);
        }

        // The filter `telemetry::init` will use: refused here, not replaced
        // by a default there.
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&raw.log) {
            let setting = match from_file(keys::for_variable("ADMIT_LOG").expect("a key")) {
                Some((path, _)) => Setting::File {
                    key: "log",
                    path: path.display().to_string(),
                },
                None => Setting::Variable("ADMIT_LOG".into()),
            };
            return Err(ConfigError::Setting {
                fix: format!(
                    "set {setting} to a level (error, warn, info, debug or trace) or to comma-separated directives such as info or admit=debug,sqlx=warn"
                ),
                setting,
                problem: format!("{:?} is not a log filter ({error})", raw.log),
            });
        }
        Self::validate(raw, raw_mail, raw_stripe, plans)
    }

    fn validate(
        raw: Raw,
        raw_mail: mail::RawMail,
        raw_stripe: stripe::RawStripe,
        plans: BTreeMap<String, RawPlan>,
    ) -> Result<Self, ConfigError> {
        let listen = raw.listen.parse().map_err(|_| ConfigError::Invalid {
            key: "listen",
            problem: format!("{:?} is not an address:port", raw.listen),
            fix: "set ADMIT_LISTEN to an address and port, e.g. 127.0.0.1:8080 or 0.0.0.0:8080",
        })?;
        if !["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|scheme| raw.database_url.starts_with(scheme))
        {
            return Err(ConfigError::Invalid {
                key: "database_url",
                problem: format!(
                    "{} is not a supported database URL",
                    redact_url(&raw.database_url)
                ),
                fix: "set ADMIT_DATABASE_URL to sqlite://path/to/admit.db or postgres://user@host:5432/admit?sslmode=require",
            });
        }
        if raw
            .database_pool_size
            .is_some_and(|n| !(1..=1000).contains(&n))
        {
            return Err(ConfigError::Invalid {
                key: "database_pool_size",
                problem: "the pool size must be between 1 and 1000".into(),
                fix: "set ADMIT_DATABASE_POOL_SIZE to the connections one instance may hold, e.g. 10",
            });
        }
        let (webhook_secrets, webhook_secrets_provenance) = if raw.webhook_secrets.is_empty() {
            (
                vec![generate_secret("whsec_dev_")],
                Provenance::GeneratedForDevelopment,
            )
        } else {
            if let Some(bad) = raw
                .webhook_secrets
                .iter()
                .find(|s| !valid_webhook_secret(s))
            {
                return Err(ConfigError::Invalid {
                    key: "webhook_secrets",
                    problem: format!(
                        "a secret starting {:?} is not a Stripe signing secret",
                        bad.chars().take(6).collect::<String>()
                    ),
                    fix: "copy the endpoint's signing secret (whsec_…) from the Stripe dashboard or `stripe listen` into ADMIT_WEBHOOK_SECRETS; separate several with commas",
                });
            }
            (raw.webhook_secrets, Provenance::Configured)
        };
        if !(1..=86_400).contains(&raw.webhook_tolerance_secs) {
            return Err(ConfigError::Invalid {
                key: "webhook_tolerance_secs",
                problem: format!("{} is out of range", raw.webhook_tolerance_secs),
                fix: "set ADMIT_WEBHOOK_TOLERANCE_SECS between 1 and 86400 (Stripe's SDKs use 300)",
            });
        }
        let (app_token, app_token_provenance) = match raw.app_token.filter(|t| !t.is_empty()) {
            None => (
                generate_secret("admit_dev_"),
                Provenance::GeneratedForDevelopment,
            ),
            Some(token) if !valid_token(&token) => {
                return Err(ConfigError::Invalid {
                    key: "app_token",
                    problem: "the token is shorter than 16 characters or contains whitespace"
                        .into(),
                    fix: "set ADMIT_APP_TOKEN to a long random string, e.g. `openssl rand -hex 32`",
                });
            }
            Some(token) => (token, Provenance::Configured),
        };
        let metrics_token = match raw.metrics_token.filter(|t| !t.is_empty()) {
            Some(token) if !valid_token(&token) => {
                return Err(ConfigError::Invalid {
                    key: "metrics_token",
                    problem: "the token is shorter than 16 characters or contains whitespace"
                        .into(),
                    fix: "set ADMIT_METRICS_TOKEN to a long random string, e.g. `openssl rand -hex 32`, or unset it",
                });
            }
            token => token.map(SecretString::from),
        };
        let catalog = catalog(plans)?;
        if !(0..=90).contains(&raw.grace_period_days) {
            return Err(ConfigError::Invalid {
                key: "grace_period_days",
                problem: format!("{} is out of range", raw.grace_period_days),
                fix: "set ADMIT_GRACE_PERIOD_DAYS between 0 and 90 (days a past_due workspace keeps its plan; 0 drops it at once)",
            });
        }
        let unmatched_purchase = match raw.unmatched_purchase.as_str() {
            "hold" => UnmatchedPolicy::Hold,
            "create_workspace" => UnmatchedPolicy::CreateWorkspace,
            other => {
                return Err(ConfigError::Invalid {
                    key: "unmatched_purchase",
                    problem: format!("{other:?} is not a policy"),
                    fix: "set ADMIT_UNMATCHED_PURCHASE to \"hold\" (an operator resolves the case) or \"create_workspace\" (admit creates a workspace for the purchaser)",
                });
            }
        };
        in_range(
            "outbox_settle_secs",
            raw.outbox_settle_secs,
            0..=3600,
            "set ADMIT_OUTBOX_SETTLE_SECS between 0 and 3600 (5 is the default)",
        )?;
        in_range(
            "shutdown_grace_secs",
            raw.shutdown_grace_secs,
            0..=600,
            "set ADMIT_SHUTDOWN_GRACE_SECS between 0 and 600 (10 is the default)",
        )?;
        in_range(
            "header_timeout_secs",
            raw.header_timeout_secs,
            1..=300,
            "set ADMIT_HEADER_TIMEOUT_SECS between 1 and 300 (10 is the default)",
        )?;
        in_range(
            "max_connections",
            raw.max_connections.into(),
            1..=100_000,
            "set ADMIT_MAX_CONNECTIONS between 1 and 100000 (1024 is the default)",
        )?;
        in_range(
            "public_rate_per_minute",
            raw.public_rate_per_minute.into(),
            0..=100_000,
            "set ADMIT_PUBLIC_RATE_PER_MINUTE between 0 (no limit) and 100000 (120 is the default)",
        )?;
        let support_email = match raw.support_email.filter(|e| !e.trim().is_empty()) {
            None => None,
            // The address itself stays out of the message, like every address.
            Some(raw) => Some(Email::parse(&raw).map_err(|e| ConfigError::Invalid {
                key: "support_email",
                problem: e.to_string(),
                fix: "set ADMIT_SUPPORT_EMAIL to the address customers should write to, e.g. support@example.com, or leave it unset",
            })?),
        };
        let mail = mail::MailConfig::validate(raw_mail)?;
        let stripe = stripe::StripeConfig::validate(raw_stripe)?;
        Ok(Self {
            listen,
            database_url: raw.database_url,
            database_password: raw.database_password.map(SecretString::from),
            database_pool_size: raw.database_pool_size,
            migrate_on_start: raw.migrate_on_start,
            webhook_secrets: webhook_secrets
                .into_iter()
                .map(SecretString::from)
                .collect(),
            webhook_secrets_provenance,
            webhook_tolerance_secs: raw.webhook_tolerance_secs,
            app_token: SecretString::from(app_token),
            app_token_provenance,
            metrics_token,
            log_format: raw.log_format,
            log: raw.log,
            catalog,
            grace_period_secs: raw.grace_period_days * 86_400,
            unmatched_purchase,
            outbox_settle_secs: raw.outbox_settle_secs,
            shutdown_grace_secs: raw.shutdown_grace_secs,
            header_timeout_secs: raw.header_timeout_secs,
            max_connections: raw.max_connections,
            public_rate_per_minute: raw.public_rate_per_minute,
            process_in_background: raw.process_in_background,
            support_email,
            mail,
            stripe,
        })
    }

    /// What `serve` prints when it made secrets up, so a developer can use them.
    /// Goes to the terminal, never to the log.
    pub fn development_notice(&self) -> Option<String> {
        let mut lines = Vec::new();
        if self.webhook_secrets_provenance == Provenance::GeneratedForDevelopment {
            let secret = self
                .webhook_secrets
                .first()
                .map(ExposeSecret::expose_secret)
                .unwrap_or_default();
            lines.push(format!(
                "  webhook secret (ADMIT_WEBHOOK_SECRETS): {secret}"
            ));
        }
        if self.app_token_provenance == Provenance::GeneratedForDevelopment {
            lines.push(format!(
                "  app token      (ADMIT_APP_TOKEN):       {}",
                self.app_token.expose_secret()
            ));
        }
        (!lines.is_empty()).then(|| {
            format!(
                "admit: DEVELOPMENT ONLY - no secret was configured, so these were generated for this run:\n{}\n  They change at every start. Set the variables above for anything but local development.",
                lines.join("\n")
            )
        })
    }
}

fn catalog(plans: BTreeMap<String, RawPlan>) -> Result<Catalog, ConfigError> {
    let mut checked = Vec::with_capacity(plans.len());
    for (key, plan) in plans {
        if let Some(bad) = plan
            .prices
            .iter()
            .find(|p| p.is_empty() || p.chars().any(char::is_whitespace))
        {
            return Err(ConfigError::Invalid {
                key: "plans",
                problem: format!("plan `{key}` lists {bad:?}, which is not a Stripe price id"),
                fix: "list the plan's price ids (price_…, or a legacy plan id) exactly as the Stripe dashboard shows them",
            });
        }
        checked.push(Plan {
            key: PlanKey::new(key),
            name: plan.name,
            prices: plan.prices,
            entitlements: Entitlements {
                features: plan.features,
                limits: plan.limits,
            },
            free_tier: plan.free_tier,
            rank: plan.rank,
        });
    }
    Catalog::new(checked).map_err(|problem| {
        let fix = match problem {
            CatalogError::FreeTier(_) => {
                "give exactly one [plans.<key>] table `free_tier = true`: the plan a workspace has when no paid subscription applies"
            }
            CatalogError::PriceInTwoPlans { .. } => {
                "list each Stripe price id under one plan only; remove it from one of the two [plans.<key>] tables"
            }
            CatalogError::NoPrices(_) => {
                "add the plan's Stripe price ids to its `prices` (price_…, or a legacy plan id), or remove the plan"
            }
            CatalogError::BadKey(_) => {
                "rename the table to [plans.<key>] with a key of lower-case letters, digits, `_` or `-`, e.g. [plans.pro]"
            }
        };
        ConfigError::Catalog { problem, fix }
    })
}

/// A bearer token: at least 16 characters, no whitespace.
fn valid_token(token: &str) -> bool {
    token.len() >= 16 && !token.chars().any(char::is_whitespace)
}

fn valid_webhook_secret(secret: &str) -> bool {
    secret.starts_with("whsec_")
        && secret.len() > "whsec_".len()
        && !secret.chars().any(char::is_whitespace)
}

fn split_list(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn read_secret_file(var: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|error| ConfigError::SecretFile {
            var,
            path: path.to_owned(),
            error,
        })
}

/// Figment's errors without its internals (the profile, Rust type names):
/// the problem, the key, where it was set, and a fix.
fn describe(error: &figment::Error) -> String {
    use figment::error::Kind;
    error
        .clone()
        .into_iter()
        .map(|error| {
            let key = error.path.join(".");
            let origin = match error.metadata.as_ref().map(|m| (&m.source, &m.name)) {
                Some((Some(source), _)) => source.to_string(),
                // Environment variables are merged as `(key, value)` pairs.
                Some((None, _)) if !key.is_empty() => {
                    format!("ADMIT_{}", key.replace('.', "_").to_ascii_uppercase())
                }
                Some((None, name)) => name.to_string(),
                None => "the configuration".to_owned(),
            };
            let target = if key.is_empty() {
                origin.clone()
            } else {
                format!("`{key}` in {origin}")
            };
            let (problem, fix) = match &error.kind {
                Kind::UnknownField(found, expected) => (
                    format!("unknown key `{found}`"),
                    format!("use one of {}", expected.join(", ")),
                ),
                Kind::UnknownVariant(found, expected) => (
                    format!("{found:?} is not one of {}", expected.join(", ")),
                    format!("set {target} to one of {}", expected.join(", ")),
                ),
                Kind::MissingField(field) => (
                    format!("`{field}` is missing"),
                    format!("add `{field}` to {target}"),
                ),
                Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => (
                    error.kind.to_string(),
                    format!("set {target} to {expected}"),
                ),
                // A file that is missing, unreadable or not TOML.
                _ if key.is_empty() => (
                    error.kind.to_string().trim_end().to_owned(),
                    "check the file named by --config or ADMIT_CONFIG: it must exist, be readable and be valid TOML".to_owned(),
                ),
                _ => (
                    error.kind.to_string().trim_end().to_owned(),
                    format!("correct {target}"),
                ),
            };
            if key.is_empty() {
                format!("{problem} in {origin}. Fix: {fix}")
            } else {
                format!("{problem} for {target}. Fix: {fix}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn generate_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    // The OS RNG failing means the machine is unusable; there is nothing sensible to fall back to.
    getrandom::fill(&mut bytes)
        .unwrap_or_else(|e| panic!("the OS random number generator failed: {e}"));
    format!("{prefix}{}", hex::encode(bytes))
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(text) => split_list(&text),
        OneOrMany::Many(list) => list.iter().flat_map(|s| split_list(s)).collect(),
    })
}

pub(crate) fn optional_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            file: None,
            env: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn invalid_key(result: Result<Config, ConfigError>) -> &'static str {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid-configuration error, got {other:?}"),
        }
    }

    /// The setting a wrong-type error names (`ADMIT_X`, or "`key` in file").
    fn wrong_setting(result: Result<Config, ConfigError>) -> String {
        match result {
            Err(ConfigError::Setting { setting, .. }) => setting.to_string(),
            other => panic!("expected a wrong-type error, got {other:?}"),
        }
    }

    /// The message as the CLI prints it (`admit: ` and the cause chain).
    fn printed(error: ConfigError) -> String {
        let error = anyhow::Error::from(error);
        let chain = crate::telemetry::error_chain(error.as_ref());
        assert_eq!(
            chain,
            format!("{error:#}"),
            "the chain adds nothing to the message"
        );
        format!("admit: {chain}")
    }

    #[test]
    fn no_configuration_runs_with_development_secrets() {
        let config = Config::load(&env(&[])).expect("defaults are valid");
        assert_eq!(config.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(config.database_url, "sqlite://admit.db");
        assert_eq!(config.webhook_tolerance_secs, 300);
        assert_eq!(
            config.webhook_secrets_provenance,
            Provenance::GeneratedForDevelopment
        );
        assert_eq!(
            config.app_token_provenance,
            Provenance::GeneratedForDevelopment
        );
        let secret = config.webhook_secrets[0].expose_secret().to_owned();
        assert!(secret.starts_with("whsec_dev_"));
        let notice = config.development_notice().expect("a notice");
        assert!(notice.contains("DEVELOPMENT ONLY") && notice.contains(&secret));
        let other = Config::load(&env(&[])).expect("defaults are valid");
        assert_ne!(
            other.webhook_secrets[0].expose_secret(),
            secret,
            "generated per run"
        );
    }

    #[test]
    fn environment_overrides_and_lists_split_on_commas() {
        let config = Config::load(&env(&[
            ("ADMIT_LISTEN", "0.0.0.0:9000"),
            ("ADMIT_DATABASE_URL", "sqlite:///var/lib/admit/admit.db"),
            ("ADMIT_WEBHOOK_SECRETS", "whsec_one, whsec_two,,"),
            ("ADMIT_WEBHOOK_TOLERANCE_SECS", "120"),
            ("ADMIT_APP_TOKEN", "1234567890123456"),
            ("ADMIT_LOG_FORMAT", "json"),
        ]))
        .expect("valid");
        assert_eq!(config.listen.port(), 9000);
        let secrets: Vec<&str> = config
            .webhook_secrets
            .iter()
            .map(|s| s.expose_secret())
            .collect();
        assert_eq!(secrets, ["whsec_one", "whsec_two"]);
        assert_eq!(config.webhook_tolerance_secs, 120);
        assert_eq!(
            config.app_token.expose_secret(),
            "1234567890123456",
            "a numeric token stays text"
        );
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(config.development_notice().is_none());
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("admit.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\nwebhook_secrets = [\"whsec_from_file\"]\nwebhook_tolerance_secs = 60\n",
        )
        .expect("write");
        let sources = Sources {
            file: Some(file),
            env: vec![("ADMIT_WEBHOOK_TOLERANCE_SECS".into(), "90".into())],
        };
        let config = Config::load(&sources).expect("valid");
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.webhook_secrets[0].expose_secret(), "whsec_from_file");
        assert_eq!(
            config.webhook_tolerance_secs, 90,
            "environment beats the file"
        );
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().expect("dir");
        let secrets = dir.path().join("secrets");
        let token = dir.path().join("token");
        std::fs::write(&secrets, "whsec_a\nwhsec_b\n").expect("write");
        std::fs::write(&token, "token-from-a-file-0123\n").expect("write");
        let config = Config::load(&env(&[
            (
                "ADMIT_WEBHOOK_SECRETS_FILE",
                secrets.to_str().expect("utf8"),
            ),
            ("ADMIT_APP_TOKEN_FILE", token.to_str().expect("utf8")),
        ]))
        .expect("valid");
        assert_eq!(config.webhook_secrets.len(), 2);
        assert_eq!(config.app_token.expose_secret(), "token-from-a-file-0123");
        assert!(matches!(
            Config::load(&env(&[(
                "ADMIT_APP_TOKEN_FILE",
                "/nonexistent/admit-token"
            )])),
            Err(ConfigError::SecretFile {
                var: "ADMIT_APP_TOKEN_FILE",
                ..
            })
        ));
    }

    #[test]
    fn postgres_takes_its_password_from_the_environment_or_a_file_and_never_shows_it() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("db-password");
        std::fs::write(&file, "from-a-file-s3cret\n").expect("write");
        let config = Config::load(&env(&[
            (
                "ADMIT_DATABASE_URL",
                "postgresql://admit@db.internal:5432/admit?sslmode=verify-full",
            ),
            ("ADMIT_DATABASE_PASSWORD_FILE", file.to_str().expect("utf8")),
            ("ADMIT_DATABASE_POOL_SIZE", "24"),
        ]))
        .expect("valid");
        let options = config.database_options();
        assert_eq!(
            options.password.as_deref(),
            Some("from-a-file-s3cret"),
            "without its newline"
        );
        assert_eq!(options.pool_size, Some(24));
        let shown = format!("{config:?} {options:?}");
        assert!(!shown.contains("s3cret"), "{shown}");

        let from_env = Config::load(&env(&[
            ("ADMIT_DATABASE_URL", "postgres://admit@db/admit"),
            ("ADMIT_DATABASE_PASSWORD", "from-the-env-s3cret"),
        ]))
        .expect("valid");
        assert_eq!(
            from_env.database_options().password.as_deref(),
            Some("from-the-env-s3cret")
        );
        assert_eq!(from_env.database_options().pool_size, None);
        assert_eq!(
            invalid_key(Config::load(&env(&[
                ("ADMIT_DATABASE_URL", "postgres://admit@db/admit"),
                ("ADMIT_DATABASE_POOL_SIZE", "0"),
            ]))),
            "database_pool_size"
        );
    }

    #[test]
    fn invalid_values_name_the_key_and_the_fix() {
        assert_eq!(
            invalid_key(Config::load(&env(&[("ADMIT_LISTEN", "localhost")]))),
            "listen"
        );
        assert_eq!(
            invalid_key(Config::load(&env(&[("ADMIT_DATABASE_URL", "mysql://x")]))),
            "database_url"
        );
        assert_eq!(
            invalid_key(Config::load(&env(&[(
                "ADMIT_WEBHOOK_SECRETS",
                "sk_live_oops"
            )]))),
            "webhook_secrets"
        );
        assert_eq!(
            invalid_key(Config::load(&env(&[("ADMIT_WEBHOOK_TOLERANCE_SECS", "0")]))),
            "webhook_tolerance_secs"
        );
        assert_eq!(
            invalid_key(Config::load(&env(&[("ADMIT_APP_TOKEN", "short")]))),
            "app_token"
        );
        assert_eq!(
            wrong_setting(Config::load(&env(&[(
                "ADMIT_WEBHOOK_TOLERANCE_SECS",
                "soon"
            )]))),
            "ADMIT_WEBHOOK_TOLERANCE_SECS"
        );
        let message = Config::load(&env(&[("ADMIT_WEBHOOK_SECRETS", "sk_live_oops_and_more")]))
            .expect_err("invalid")
            .to_string();
        assert!(
            message.contains("Fix:") && !message.contains("sk_live_oops_and_more"),
            "{message}"
        );
    }

    fn with_file(toml: &str, pairs: &[(&str, &str)]) -> (tempfile::TempDir, Sources) {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("admit.toml");
        std::fs::write(&file, toml).expect("write");
        let mut sources = env(pairs);
        sources.file = Some(file);
        (dir, sources)
    }

    fn catalog_problem(result: Result<Config, ConfigError>) -> CatalogError {
        match result {
            Err(error @ ConfigError::Catalog { .. }) => {
                let message = error.to_string();
                assert!(
                    message.contains("`plans`") && message.contains("Fix:"),
                    "{message}"
                );
                match error {
                    ConfigError::Catalog { problem, .. } => problem,
                    _ => unreachable!(),
                }
            }
            other => panic!("expected a catalog error, got {other:?}"),
        }
    }

    fn plan_keys(config: &Config) -> Vec<&str> {
        config.catalog.plans().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn provisioning_defaults() {
        let config = Config::load(&env(&[])).expect("defaults are valid");
        assert_eq!(plan_keys(&config), ["free", "pro"]);
        assert_eq!(config.catalog.free_plan().key.as_str(), "free");
        assert_eq!(config.catalog.free_plan().entitlements.limits["seats"], 3);
        for price in [
            "price_1SiAbCB7WZ01zgkWq3Lm9NoP",
            "price_1SiAbDB7WZ01zgkWr4Mn0OpQ",
        ] {
            let pro = config.catalog.plan_for_price(price).expect("demo price");
            assert_eq!(pro.key.as_str(), "pro");
            assert_eq!(pro.name, "Pro");
            assert_eq!(
                pro.entitlements.features.iter().collect::<Vec<_>>(),
                ["audit_log", "sso"]
            );
            assert_eq!(pro.entitlements.limits["seats"], 25);
        }
        assert_eq!(config.grace_period_secs, 7 * 86_400);
        assert_eq!(config.unmatched_purchase, UnmatchedPolicy::Hold);
        assert_eq!(config.outbox_settle_secs, 5);
        assert!(config.process_in_background);
        assert_eq!(config.support_email, None);
    }

    #[test]
    fn provisioning_settings_from_the_environment() {
        let config = Config::load(&env(&[
            ("ADMIT_GRACE_PERIOD_DAYS", "0"),
            ("ADMIT_UNMATCHED_PURCHASE", "create_workspace"),
            ("ADMIT_OUTBOX_SETTLE_SECS", "3600"),
            ("ADMIT_PROCESS_IN_BACKGROUND", "false"),
            ("ADMIT_SUPPORT_EMAIL", " Help@ACME.test "),
        ]))
        .expect("valid");
        assert_eq!(config.grace_period_secs, 0);
        assert_eq!(config.unmatched_purchase, UnmatchedPolicy::CreateWorkspace);
        assert_eq!(config.outbox_settle_secs, 3600);
        assert!(!config.process_in_background);
        assert_eq!(
            config.support_email.as_ref().map(Email::as_str),
            Some("help@acme.test")
        );
        let config = Config::load(&env(&[
            ("ADMIT_GRACE_PERIOD_DAYS", "90"),
            ("ADMIT_SUPPORT_EMAIL", ""),
        ]))
        .expect("valid");
        assert_eq!(config.grace_period_secs, 90 * 86_400);
        assert_eq!(config.support_email, None, "empty means unset");
    }

    #[test]
    fn a_file_with_plans_replaces_the_whole_catalog() {
        // The issue's example: the demo's yearly price and its plans are gone.
        let (_dir, sources) = with_file(
            r#"
grace_period_days = 3

[plans.pro]
name = "Pro"
prices = ["price_1SiAbCB7WZ01zgkWq3Lm9NoP"]
features = ["sso", "audit_log"]
limits = { seats = 25 }

[plans.free]
name = "Free"
free_tier = true
features = []
limits = { seats = 3 }
"#,
            &[],
        );
        let config = Config::load(&sources).expect("valid");
        assert_eq!(config.grace_period_secs, 3 * 86_400);
        assert_eq!(plan_keys(&config), ["free", "pro"]);
        assert!(
            config
                .catalog
                .plan_for_price("price_1SiAbCB7WZ01zgkWr4Mn0OpQ")
                .is_none(),
            "a price only the defaults list is not merged in"
        );

        // Different keys: nothing of the demo catalog is left.
        let (_dir, sources) = with_file(
            "[plans.starter]\nname = \"Starter\"\nfree_tier = true\n\n[plans.team]\nname = \"Team\"\nprices = [\"plan_team_legacy\"]\n",
            &[],
        );
        let config = Config::load(&sources).expect("valid");
        assert_eq!(plan_keys(&config), ["starter", "team"]);
        assert_eq!(config.catalog.free_plan().key.as_str(), "starter");
        let team = config.catalog.get_str("team").expect("team");
        assert_eq!(team.entitlements, Entitlements::default(), "defaults empty");
        assert_eq!(
            config
                .catalog
                .plan_for_price("plan_team_legacy")
                .map(|p| p.key.as_str()),
            Some("team")
        );

        // A file without plans keeps the defaults' catalog.
        let (_dir, sources) = with_file("outbox_settle_secs = 30\n", &[]);
        let config = Config::load(&sources).expect("valid");
        assert_eq!(plan_keys(&config), ["free", "pro"]);
        assert_eq!(config.outbox_settle_secs, 30);
    }

    #[test]
    fn catalog_errors_name_the_problem_and_the_fix() {
        let two_free = "[plans.free]\nname = \"Free\"\nfree_tier = true\n[plans.basic]\nname = \"Basic\"\nfree_tier = true\n";
        let (_dir, sources) = with_file(two_free, &[]);
        assert_eq!(
            catalog_problem(Config::load(&sources)),
            CatalogError::FreeTier(2)
        );

        let no_free = "[plans.pro]\nname = \"Pro\"\nprices = [\"price_a\"]\n";
        let (_dir, sources) = with_file(no_free, &[]);
        assert_eq!(
            catalog_problem(Config::load(&sources)),
            CatalogError::FreeTier(0)
        );

        let shared_price = "[plans.free]\nname = \"Free\"\nfree_tier = true\n[plans.pro]\nname = \"Pro\"\nprices = [\"price_a\"]\n[plans.team]\nname = \"Team\"\nprices = [\"price_b\", \"price_a\"]\n";
        let (_dir, sources) = with_file(shared_price, &[]);
        assert_eq!(
            catalog_problem(Config::load(&sources)),
            CatalogError::PriceInTwoPlans {
                price: "price_a".into(),
                first: "pro".into(),
                second: "team".into(),
            }
        );

        let unpriced = "[plans.free]\nname = \"Free\"\nfree_tier = true\n[plans.pro]\nname = \"Pro\"\nfeatures = [\"sso\"]\n";
        let (_dir, sources) = with_file(unpriced, &[]);
        assert_eq!(
            catalog_problem(Config::load(&sources)),
            CatalogError::NoPrices("pro".into())
        );

        let bad_key = "[plans.Free]\nname = \"Free\"\nfree_tier = true\n";
        let (_dir, sources) = with_file(bad_key, &[]);
        assert_eq!(
            catalog_problem(Config::load(&sources)),
            CatalogError::BadKey("Free".into())
        );

        let blank_price = "[plans.free]\nname = \"Free\"\nfree_tier = true\n[plans.pro]\nname = \"Pro\"\nprices = [\"price a\"]\n";
        let (_dir, sources) = with_file(blank_price, &[]);
        assert_eq!(invalid_key(Config::load(&sources)), "plans");

        // A misspelt field would silently drop entitlements; it is refused.
        let typo = "[plans.free]\nname = \"Free\"\nfree_tier = true\nfeature = [\"sso\"]\n";
        let (_dir, sources) = with_file(typo, &[]);
        let err = Config::load(&sources).expect_err("unknown field");
        assert!(
            matches!(err, ConfigError::Load(_)) && err.to_string().contains("feature"),
            "{err}"
        );

        assert_eq!(
            invalid_key(Config::load(&env(&[("ADMIT_PLANS", "pro")]))),
            "plans"
        );
    }

    #[test]
    fn invalid_provisioning_settings_name_the_key_and_the_fix() {
        for days in ["91", "-1"] {
            assert_eq!(
                invalid_key(Config::load(&env(&[("ADMIT_GRACE_PERIOD_DAYS", days)]))),
                "grace_period_days"
            );
        }
        assert_eq!(
            invalid_key(Config::load(&env(&[("ADMIT_OUTBOX_SETTLE_SECS", "3601")]))),
            "outbox_settle_secs"
        );
        for policy in ["Hold", "create", ""] {
            let err = Config::load(&env(&[("ADMIT_UNMATCHED_PURCHASE", policy)]))
                .expect_err("not a policy");
            let message = err.to_string();
            assert!(
                message.contains("`unmatched_purchase`")
                    && message.contains("\"hold\"")
                    && message.contains("\"create_workspace\""),
                "{message}"
            );
        }
        let err = Config::load(&env(&[("ADMIT_SUPPORT_EMAIL", "helpdesk-at-acme")]))
            .expect_err("not an address");
        let message = err.to_string();
        assert!(
            message.contains("`support_email`")
                && message.contains("Fix:")
                && !message.contains("helpdesk-at-acme"),
            "{message}"
        );
        assert_eq!(
            wrong_setting(Config::load(&env(&[(
                "ADMIT_PROCESS_IN_BACKGROUND",
                "maybe"
            )]))),
            "ADMIT_PROCESS_IN_BACKGROUND"
        );
    }

    #[test]
    fn stripe_keys_are_checked_and_never_echoed() {
        let err = Config::load(&env(&[(
            "ADMIT_STRIPE_API_KEY",
            "pk_live_publishable_oops",
        )]))
        .expect_err("invalid");
        let message = err.to_string();
        assert!(
            message.contains("stripe_api_key") && !message.contains("pk_live_publishable_oops"),
            "{message}"
        );
        let config = Config::load(&env(&[
            ("ADMIT_STRIPE_API_KEY", "sk_test_secret_value"),
            ("ADMIT_STRIPE_API_BASE", "http://127.0.0.1:12111/"),
        ]))
        .expect("valid");
        assert_eq!(config.stripe.key(), Some("sk_test_secret_value"));
        assert_eq!(config.stripe.api_base, "http://127.0.0.1:12111");
        assert!(!format!("{config:?}").contains("sk_test_secret_value"));
        assert!(
            Config::load(&env(&[]))
                .expect("valid")
                .stripe
                .key()
                .is_none(),
            "optional"
        );
    }

    #[test]
    fn debug_redacts_every_secret() {
        let config = Config::load(&env(&[
            ("ADMIT_WEBHOOK_SECRETS", "whsec_topsecret"),
            ("ADMIT_APP_TOKEN", "app-token-topsecret"),
            ("ADMIT_SUPPORT_EMAIL", "topsecret@acme.test"),
        ]))
        .expect("valid");
        let debug = format!("{config:?}");
        assert!(!debug.contains("topsecret"), "{debug}");
        assert!(
            debug.contains("grace_period_secs") && debug.contains("\"pro\""),
            "{debug}"
        );
        assert_eq!(
            redact_url("postgres://admit:hunter2@db/admit"),
            "postgres://admit:<redacted>@db/admit"
        );
        assert_eq!(
            redact_url("postgres://admit@db/admit?sslmode=require&password=hunter2&user=x"),
            "postgres://admit@db/admit?sslmode=require&password=<redacted>&user=x"
        );
        assert_eq!(
            redact_url("postgresql://a:b@db/admit?PASSWORD=hunter2"),
            "postgresql://a:<redacted>@db/admit?PASSWORD=<redacted>"
        );
        assert_eq!(redact_url("sqlite://admit.db"), "sqlite://admit.db");
    }

    /// Issue 14, item 6: each wrong type stops start-up naming the variable
    /// as it was set, what is wrong and the fix, printed once.
    #[test]
    fn a_wrong_type_names_the_variable_the_problem_and_the_fix_once() {
        for (variable, value, problem, fix) in [
            (
                "ADMIT_GRACE_PERIOD_DAYS",
                "abc",
                "\"abc\" is not a whole number",
                "set ADMIT_GRACE_PERIOD_DAYS to a whole number between 0 and 90",
            ),
            (
                "ADMIT_LOG_FORMAT",
                "xml",
                "\"xml\" is not text or json",
                "set ADMIT_LOG_FORMAT to text or json",
            ),
            (
                "ADMIT_MIGRATE_ON_START",
                "maybe",
                "\"maybe\" is not true or false",
                "set ADMIT_MIGRATE_ON_START to true or false",
            ),
            (
                "ADMIT_OUTBOX_SETTLE_SECS",
                "-1",
                "\"-1\" is negative",
                "set ADMIT_OUTBOX_SETTLE_SECS to a whole number between 0 and 3600",
            ),
            (
                "ADMIT_DATABASE_POOL_SIZE",
                "ten",
                "\"ten\" is not a whole number",
                "set ADMIT_DATABASE_POOL_SIZE to a whole number between 1 and 1000",
            ),
            (
                "ADMIT_MAIL_MAX_ATTEMPTS",
                "1.5",
                "\"1.5\" is not a whole number",
                "set ADMIT_MAIL_MAX_ATTEMPTS to a whole number between 1 and 50",
            ),
            (
                "ADMIT_STRIPE_MAX_REQUESTS_PER_SEC",
                "fast",
                "\"fast\" is not a whole number",
                "set ADMIT_STRIPE_MAX_REQUESTS_PER_SEC to a whole number between 1 and 100",
            ),
        ] {
            let result = Config::load(&env(&[(variable, value)]));
            let message = printed(result.expect_err(variable));
            assert!(
                message.starts_with(&format!(
                    "admit: invalid configuration {variable}: {problem}. Fix: {fix}"
                )),
                "{message}"
            );
            assert_eq!(message.matches(problem).count(), 1, "{message}");
            assert!(
                !message.contains("global.") && !message.contains("alloc::"),
                "no internal key or type: {message}"
            );
        }
        assert_eq!(
            printed(Config::load(&env(&[("ADMIT_GRACE_PERIOD_DAYS", "abc")])).expect_err("abc")),
            "admit: invalid configuration ADMIT_GRACE_PERIOD_DAYS: \"abc\" is not a whole number. Fix: set ADMIT_GRACE_PERIOD_DAYS to a whole number between 0 and 90, e.g. 7"
        );
        // Lower-case names after the prefix are read, and named, upper-case.
        assert_eq!(
            wrong_setting(Config::load(&env(&[("ADMIT_grace_period_days", "abc")]))),
            "ADMIT_GRACE_PERIOD_DAYS"
        );
        // What figment's lossy reading accepts still is.
        let config = Config::load(&env(&[
            ("ADMIT_MIGRATE_ON_START", "no"),
            ("ADMIT_PROCESS_IN_BACKGROUND", "ON"),
            ("ADMIT_GRACE_PERIOD_DAYS", " 3 "),
        ]))
        .expect("valid");
        assert!(!config.migrate_on_start && config.process_in_background);
        assert_eq!(config.grace_period_secs, 3 * 86_400);
    }

    #[test]
    fn a_wrong_type_in_the_file_names_the_key_and_the_file() {
        let (dir, sources) = with_file("grace_period_days = \"abc\"\n", &[]);
        let path = dir.path().join("admit.toml");
        let message = printed(Config::load(&sources).expect_err("wrong type"));
        assert_eq!(
            message,
            format!(
                "admit: invalid configuration `grace_period_days` in {0}: \"abc\" is not a whole number. Fix: set `grace_period_days` in {0} to a whole number between 0 and 90, e.g. 7",
                path.display()
            )
        );
        // The environment overrides the file's value, which is then not used.
        let (_dir, sources) = with_file(
            "grace_period_days = \"abc\"\n",
            &[("ADMIT_GRACE_PERIOD_DAYS", "2")],
        );
        assert_eq!(
            Config::load(&sources).expect("valid").grace_period_secs,
            2 * 86_400
        );
        for (toml, problem) in [
            (
                "migrate_on_start = \"maybe\"\n",
                "\"maybe\" is not true or false",
            ),
            ("outbox_settle_secs = -1\n", "-1 is negative"),
            ("grace_period_days = 7.5\n", "7.5 is not a whole number"),
            ("listen = 8080\n", "found a number, expected text"),
            (
                "webhook_secrets = [1]\n",
                "found a list with items that are not text",
            ),
        ] {
            let (_dir, sources) = with_file(toml, &[]);
            let error = Config::load(&sources).expect_err(toml);
            let message = error.to_string();
            assert!(
                matches!(
                    &error,
                    ConfigError::Setting {
                        setting: Setting::File { .. },
                        ..
                    }
                ) && message.contains(problem)
                    && message.contains("admit.toml")
                    && message.contains("Fix: set `"),
                "{message}"
            );
        }
        // Numbers and booleans written as text in the file are read, as before.
        let (_dir, sources) = with_file(
            "grace_period_days = \"3\"\nmigrate_on_start = \"false\"\n",
            &[],
        );
        let config = Config::load(&sources).expect("valid");
        assert_eq!(config.grace_period_secs, 3 * 86_400);
        assert!(!config.migrate_on_start);
    }

    #[test]
    fn what_figment_refuses_is_named_without_its_internals_and_once() {
        let (_dir, sources) = with_file(
            "[plans.free]\nname = \"Free\"\nfree_tier = true\nfeature = [\"sso\"]\n",
            &[],
        );
        let message = printed(Config::load(&sources).expect_err("unknown field"));
        assert!(
            message.contains("unknown key `feature` for `plans.free.feature` in ")
                && message.contains("Fix: use one of name, prices, features")
                && message.matches("unknown key").count() == 1
                && !message.contains("default."),
            "{message}"
        );
        let (_dir, sources) = with_file("grace_period_days = \n", &[]);
        let message = printed(Config::load(&sources).expect_err("not TOML"));
        assert!(
            message.contains("TOML parse error")
                && message.contains("Fix: check the file named by --config or ADMIT_CONFIG")
                && message.matches("TOML parse error").count() == 1,
            "{message}"
        );
        let message = printed(
            Config::load(&env(&[(
                "ADMIT_APP_TOKEN_FILE",
                "/nonexistent/admit-token",
            )]))
            .expect_err("no file"),
        );
        assert_eq!(
            message.matches("No such file").count(),
            1,
            "the io error once: {message}"
        );
        assert!(message.contains("Fix: "), "{message}");
    }

    #[test]
    fn a_log_filter_that_does_not_parse_stops_start_up() {
        for filter in ["admit=verbose", "info,[", "=debug["] {
            let error = Config::load(&env(&[("ADMIT_LOG", filter)])).expect_err(filter);
            let message = printed(error);
            assert!(
                message.starts_with(&format!(
                    "admit: invalid configuration ADMIT_LOG: {filter:?} is not a log filter ("
                )) && message.contains("Fix: set ADMIT_LOG to a level")
                    && message.contains("admit=debug,sqlx=warn")
                    && message.matches("is not a log filter").count() == 1,
                "{message}"
            );
        }
        let (_dir, sources) = with_file("log = \"admit=loud\"\n", &[]);
        assert!(
            wrong_setting(Config::load(&sources)).starts_with("`log` in "),
            "named where it was set"
        );
        for filter in ["info", "warn,admit=debug", "admit=debug,sqlx=warn", "error"] {
            Config::load(&env(&[("ADMIT_LOG", filter)])).expect(filter);
        }
    }

    #[test]
    fn a_secret_given_directly_and_as_a_file_stops_start_up() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "whsec_from_a_file_0123456789\n").expect("write");
        let path = file.to_str().expect("utf8");
        for (variable, value) in [
            ("ADMIT_APP_TOKEN", "token-from-the-env-0123"),
            ("ADMIT_WEBHOOK_SECRETS", "whsec_from_the_env"),
            ("ADMIT_DATABASE_PASSWORD", "from-the-env"),
            ("ADMIT_MAIL_URL", "smtp://localhost:25"),
            ("ADMIT_STRIPE_API_KEY", "sk_test_from_the_env"),
            ("ADMIT_METRICS_TOKEN", "metrics-from-the-env-0123"),
        ] {
            let file_variable = format!("{variable}_FILE");
            let error = Config::load(&env(&[(variable, value), (&file_variable, path)]))
                .expect_err(variable);
            assert!(
                matches!(&error, ConfigError::SecretTwice { .. }),
                "{error:?}"
            );
            let message = printed(error);
            assert_eq!(
                message,
                format!(
                    "admit: {variable} and {file_variable} are both set. Fix: unset one of them: {file_variable} to use {variable}, or {variable} to read the secret from the file"
                )
            );
            assert!(!message.contains(value), "no secret shown: {message}");
        }
        // Set but empty counts as unset, as it does for the value itself.
        std::fs::write(&file, "token-from-a-file-0123456\n").expect("write");
        let config = Config::load(&env(&[
            ("ADMIT_APP_TOKEN", ""),
            ("ADMIT_APP_TOKEN_FILE", path),
        ]))
        .expect("valid");
        assert_eq!(
            config.app_token.expose_secret(),
            "token-from-a-file-0123456"
        );
    }

    #[test]
    fn unknown_admit_variables_are_reported_with_the_closest_known_one() {
        let sources = env(&[
            ("ADMIT_GRACE_PERIODS_DAYS", "3"),
            ("ADMIT_WEBHOOK_SECRET", "whsec_x"),
            ("ADMIT_SOMETHING_ELSE_ENTIRELY", "1"),
            ("ADMIT_TEST_DATABASE_URL", "postgres://x"),
            ("ADMIT_LISTEN", "127.0.0.1:9000"),
            ("ADMIT_APP_TOKEN_FILE", "/x"),
            ("ADMIT_METRICS_TOKEN", "x"),
            ("ADMIT_CONFIG", "/x"),
            ("ADMIT_listen", "127.0.0.1:9000"),
        ]);
        let unknown = sources.unknown_variables();
        let reported: Vec<(&str, Option<&str>)> = unknown
            .iter()
            .map(|u| (u.name.as_str(), u.suggestion.as_deref()))
            .collect();
        assert_eq!(
            reported,
            [
                ("ADMIT_GRACE_PERIODS_DAYS", Some("ADMIT_GRACE_PERIOD_DAYS")),
                ("ADMIT_SOMETHING_ELSE_ENTIRELY", None),
                ("ADMIT_WEBHOOK_SECRET", Some("ADMIT_WEBHOOK_SECRETS")),
            ]
        );
        assert_eq!(
            unknown[0].to_string(),
            "ADMIT_GRACE_PERIODS_DAYS is not an admit setting and is ignored; did you mean ADMIT_GRACE_PERIOD_DAYS? Fix: rename it to ADMIT_GRACE_PERIOD_DAYS"
        );
        assert!(unknown[1].to_string().contains("Fix: unset it"));
        // Ignored, not merged: the defaults stand.
        let config = Config::load(&env(&[("ADMIT_GRACE_PERIODS_DAYS", "3")])).expect("valid");
        assert_eq!(config.grace_period_secs, 7 * 86_400);
    }

    #[test]
    fn a_metrics_token_is_optional_long_and_secret() {
        assert!(
            Config::load(&env(&[]))
                .expect("valid")
                .metrics_token
                .is_none()
        );
        assert!(
            Config::load(&env(&[("ADMIT_METRICS_TOKEN", "")]))
                .expect("valid")
                .metrics_token
                .is_none(),
            "empty means unset"
        );
        let config = Config::load(&env(&[("ADMIT_METRICS_TOKEN", "metrics-topsecret-0123")]))
            .expect("valid");
        assert_eq!(
            config.metrics_token.as_ref().map(|t| t.expose_secret()),
            Some("metrics-topsecret-0123")
        );
        assert!(!format!("{config:?}").contains("topsecret"));
        for short in ["tiny", "has whitespace in it 0123"] {
            let error = Config::load(&env(&[("ADMIT_METRICS_TOKEN", short)])).expect_err(short);
            let message = error.to_string();
            assert!(
                message.contains("`metrics_token`")
                    && message.contains("Fix: set ADMIT_METRICS_TOKEN")
                    && !message.contains(short),
                "{message}"
            );
        }
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("metrics-token");
        std::fs::write(&file, "metrics-from-a-file-0123\n").expect("write");
        let config = Config::load(&env(&[(
            "ADMIT_METRICS_TOKEN_FILE",
            file.to_str().expect("utf8"),
        )]))
        .expect("valid");
        assert_eq!(
            config.metrics_token.as_ref().map(|t| t.expose_secret()),
            Some("metrics-from-a-file-0123")
        );
    }

    #[test]
    fn stripe_and_mail_numbers_are_read_from_the_environment() {
        let config = Config::load(&env(&[
            ("ADMIT_STRIPE_MAX_REQUESTS_PER_SEC", "5"),
            ("ADMIT_RECONCILE_INTERVAL_SECS", "60"),
            ("ADMIT_MAIL_MAX_ATTEMPTS", "3"),
            ("ADMIT_SIGNIN_TOKEN_TTL_HOURS", "1"),
        ]))
        .expect("valid");
        assert_eq!(config.stripe.max_requests_per_sec, 5);
        assert_eq!(config.stripe.reconcile_interval_secs, 60);
        assert_eq!(config.mail.max_attempts, 3);
        assert_eq!(config.mail.signin_token_ttl_secs, 3600);
    }

    /// The key table, the defaults file and `Config::validate` agree.
    #[test]
    fn every_key_is_listed_once_with_the_range_validate_accepts() {
        let defaults: figment::value::Dict = Figment::from(Toml::string(DEFAULTS))
            .extract()
            .expect("defaults");
        for name in defaults.keys().filter(|k| *k != "plans") {
            assert!(
                keys::KEYS.iter().any(|key| key.name == name),
                "{name} is in the defaults but not in keys::KEYS"
            );
        }
        for key in keys::KEYS {
            assert!(
                DEFAULTS.contains(&key.variable()),
                "{} is in keys::KEYS but not documented in the defaults",
                key.variable()
            );
            assert_eq!(
                keys::KEYS.iter().filter(|k| k.name == key.name).count(),
                1,
                "{}",
                key.name
            );
            let keys::Kind::Whole { hint, .. } = key.kind else {
                continue;
            };
            let Some(range) = hint.strip_prefix("between ") else {
                continue;
            };
            let (low, rest) = range.split_once(" and ").expect("between A and B");
            let high = rest.split(',').next().expect("B");
            let (low, high): (i64, i64) = (low.parse().expect("A"), high.parse().expect("B"));
            let variable = key.variable();
            for n in [low, high] {
                Config::load(&env(&[(&variable, &n.to_string())]))
                    .unwrap_or_else(|e| panic!("{variable}={n}: {e}"));
            }
            for n in [low - 1, high + 1] {
                assert!(
                    Config::load(&env(&[(&variable, &n.to_string())])).is_err(),
                    "{variable}={n} is outside {hint}"
                );
            }
        }
    }
}
