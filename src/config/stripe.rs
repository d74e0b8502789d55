//! Talking to Stripe's API: optional. Without a key admit runs on webhooks
//! alone; with one it also creates checkouts, syncs the welcome page,
//! reconciles and backfills.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;

#[derive(Deserialize)]
pub(super) struct RawStripe {
    #[serde(default, deserialize_with = "super::optional_string")]
    pub stripe_api_key: Option<String>,
    pub stripe_api_base: String,
    pub stripe_max_requests_per_sec: u32,
    pub reconcile_interval_secs: u64,
}

#[derive(Clone)]
pub struct StripeConfig {
    pub api_key: Option<SecretString>,
    pub api_base: String,
    pub max_requests_per_sec: u32,
    /// 0 = no periodic reconciliation inside `serve`.
    pub reconcile_interval_secs: u64,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_base", &self.api_base)
            .field("max_requests_per_sec", &self.max_requests_per_sec)
            .field("reconcile_interval_secs", &self.reconcile_interval_secs)
            .finish()
    }
}

impl StripeConfig {
    pub(super) fn validate(
        raw: RawStripe,
        key_override: Option<String>,
    ) -> Result<Self, ConfigError> {
        let api_key = key_override
            .or(raw.stripe_api_key)
            .filter(|k| !k.trim().is_empty());
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
        Ok(Self {
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
