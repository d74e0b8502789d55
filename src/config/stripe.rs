//! Talking to Stripe's API: optional. Without a key admit runs on webhooks
//! alone; with one it also creates checkouts, syncs the welcome page,
//! reconciles and backfills.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;

/// The Stripe keys as read, before validation (extracted on their own, so
/// figment reads numbers in the environment as numbers).
#[derive(Deserialize)]
pub(super) struct RawStripe {
    #[serde(default, deserialize_with = "super::optional_string")]
    pub stripe_api_key: Option<String>,
    pub stripe_api_base: String,
    pub stripe_max_requests_per_sec: u32,
    pub reconcile_interval_secs: u64,
    pub stripe_mode: String,
}

/// Which Stripe events provision: live-mode ones, test-mode ones, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeMode {
    Any,
    Live,
    Test,
}

impl StripeMode {
    pub fn accepts(self, livemode: bool) -> bool {
        match self {
            StripeMode::Any => true,
            StripeMode::Live => livemode,
            StripeMode::Test => !livemode,
        }
    }
}

#[derive(Clone)]
pub struct StripeConfig {
    pub api_key: Option<SecretString>,
    pub api_base: String,
    pub max_requests_per_sec: u32,
    /// 0 = no periodic reconciliation inside `serve`.
    pub reconcile_interval_secs: u64,
    /// Events of the other mode are recorded but never provision: a test
    /// card must not unlock a live workspace.
    pub mode: StripeMode,
}

/// Whether a Stripe key is a live one (`sk_live_`, `rk_live_`), a test one
/// (`sk_test_`, `rk_test_`), or neither that admit can tell.
fn key_is_live(key: &str) -> Option<bool> {
    if key.starts_with("sk_live_") || key.starts_with("rk_live_") {
        Some(true)
    } else if key.starts_with("sk_test_") || key.starts_with("rk_test_") {
        Some(false)
    } else {
        None
    }
}

impl StripeConfig {
    /// The configured key's mode; `None` without a key or for one of no known prefix.
    pub fn key_is_live(&self) -> Option<bool> {
        self.api_key
            .as_ref()
            .and_then(|key| key_is_live(key.expose_secret()))
    }
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_base", &self.api_base)
            .field("max_requests_per_sec", &self.max_requests_per_sec)
            .field("reconcile_interval_secs", &self.reconcile_interval_secs)
            .field("mode", &self.mode)
            .finish()
    }
}

impl StripeConfig {
    pub(super) fn validate(raw: RawStripe) -> Result<Self, ConfigError> {
        let api_key = raw.stripe_api_key.filter(|k| !k.trim().is_empty());
        if let Some(key) = &api_key
            && !(key.starts_with("sk_") || key.starts_with("rk_"))
        {
            return Err(ConfigError::Invalid {
                key: "stripe_api_key",
                // Never echo the value: it is a secret even when it is the wrong one.
                problem: "the key is not a Stripe secret or restricted key (sk_… / rk_…)".into(),
                fix: "set ADMIT_STRIPE_API_KEY to a secret key (sk_test_… / sk_live_…) or a restricted key (rk_…), or unset it to run on webhooks alone",
            });
        }
        let api_base = raw.stripe_api_base.trim().trim_end_matches('/').to_owned();
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                key: "stripe_api_base",
                problem: format!("{api_base:?} is not an http(s) URL"),
                fix: "set ADMIT_STRIPE_API_BASE to https://api.stripe.com (the default) or a test server's URL",
            });
        }
        if !(1..=100).contains(&raw.stripe_max_requests_per_sec) {
            return Err(ConfigError::Invalid {
                key: "stripe_max_requests_per_sec",
                problem: format!("{} is out of range", raw.stripe_max_requests_per_sec),
                fix: "set ADMIT_STRIPE_MAX_REQUESTS_PER_SEC between 1 and 100 (Stripe allows 100 in live mode, 25 in test mode; the default is 20)",
            });
        }
        let mode = match raw.stripe_mode.trim() {
            "live" => StripeMode::Live,
            "test" => StripeMode::Test,
            "any" => StripeMode::Any,
            // From the key: a live key means a live deployment.
            "auto" => match api_key.as_deref().and_then(key_is_live) {
                Some(true) => StripeMode::Live,
                Some(false) => StripeMode::Test,
                None => StripeMode::Any,
            },
            other => {
                return Err(ConfigError::Invalid {
                    key: "stripe_mode",
                    problem: format!("{other:?} is not a mode"),
                    fix: "set ADMIT_STRIPE_MODE to auto (from the API key), live, test or any",
                });
            }
        };
        Ok(Self {
            mode,
            api_key: api_key.map(SecretString::from),
            api_base,
            max_requests_per_sec: raw.stripe_max_requests_per_sec,
            reconcile_interval_secs: raw.reconcile_interval_secs,
        })
    }

    pub fn key(&self) -> Option<&str> {
        self.api_key.as_ref().map(ExposeSecret::expose_secret)
    }
}
