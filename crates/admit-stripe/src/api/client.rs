//! The HTTP side of the client: configuration, authentication, the rate
//! limit, retries and the one debug line per request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::StripeError;
use super::form::Form;
use super::limiter::RateLimiter;

/// How the client reaches Stripe. `Debug` shows the key as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// A secret (`sk_…`) or restricted (`rk_…`) key, sent as a bearer token.
    pub api_key: SecretString,
    /// Without a trailing slash; tests point it at a local server.
    pub base_url: String,
    /// Requests started per second, across all clones of one client.
    /// Stripe allows 25/s in test mode and 100/s live; staying below leaves
    /// room for the dashboard and other integrations on the same account.
    pub max_requests_per_sec: u32,
    /// Retries after the first attempt, for 429, 5xx and network failures.
    pub max_retries: u32,
    /// For one attempt, from sending the request to reading the whole body.
    pub timeout: Duration,
}

impl ClientConfig {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.stripe.com";

    pub fn new(api_key: SecretString) -> Self {
        Self {
            api_key,
            base_url: Self::DEFAULT_BASE_URL.to_owned(),
            max_requests_per_sec: 20,
            max_retries: 4,
            timeout: Duration::from_secs(20),
        }
    }
}

/// A Stripe API client. Cheap to clone; clones share one connection pool and
/// one rate limit.
#[derive(Clone)]
pub struct StripeClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    api_key: SecretString,
    base_url: String,
    max_retries: u32,
    max_requests_per_sec: u32,
    timeout: Duration,
    limiter: RateLimiter,
}

impl fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("StripeClient")
            .field("base_url", &inner.base_url)
            .field("max_requests_per_sec", &inner.max_requests_per_sec)
            .field("max_retries", &inner.max_retries)
            .field("timeout", &inner.timeout)
            .finish_non_exhaustive()
    }
}

/// The first retry waits half a second; each further one twice as long as
/// the last, up to [`BACKOFF_CAP`].
const BACKOFF_CAP: Duration = Duration::from_secs(8);
const BACKOFF: admit_core::Backoff =
    admit_core::Backoff::new(Duration::from_millis(500), BACKOFF_CAP);
/// A `Retry-After` beyond this is read as this: a caller waiting longer than
/// a minute on one call is better served by an error it can act on.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// The wait before a retry, `retry` retries having been made before it.
fn backoff(retry: u32) -> Duration {
    BACKOFF.delay(retry.saturating_add(1))
}

/// One attempt that did not produce a result.
struct Failure {
    error: StripeError,
    retry: Retry,
}

enum Retry {
    No,
    Backoff,
    /// Stripe said how long to wait (a 429 or 503 with `Retry-After`).
    After(Duration),
}

impl StripeClient {
    pub fn new(config: ClientConfig) -> Result<Self, StripeError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let url_is_usable = reqwest::Url::parse(&base_url)
            .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host());
        if config.api_key.expose_secret().trim().is_empty()
            || !url_is_usable
            || config.max_requests_per_sec == 0
        {
            return Err(StripeError::NotConfigured);
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            // Stripe's API never redirects; following one could only send
            // the request somewhere it was not meant to go.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("admit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StripeError::Transport(e.without_url()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                api_key: config.api_key,
                base_url,
                max_retries: config.max_retries,
                max_requests_per_sec: config.max_requests_per_sec,
                timeout: config.timeout,
                limiter: RateLimiter::per_second(config.max_requests_per_sec),
            }),
        })
    }

    pub(crate) async fn get(&self, path: &str, query: &Form) -> Result<Value, StripeError> {
        self.execute(Method::GET, path, query, None).await
    }

    /// Every POST carries the caller's idempotency key, and every retry of it
    /// the same key: that is what makes retrying a create safe.
    pub(crate) async fn post(
        &self,
        path: &str,
        form: &Form,
        idempotency_key: &str,
    ) -> Result<Value, StripeError> {
        self.execute(
            Method::POST,
            path,
            &Form::new(),
            Some((form.encode(), idempotency_key)),
        )
        .await
    }

    async fn execute(
        &self,
        method: Method,
        path: &str,
        query: &Form,
        body: Option<(String, &str)>,
    ) -> Result<Value, StripeError> {
        let inner = &*self.inner;
        let mut url = format!("{}{path}", inner.base_url);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.encode());
        }
        let mut retries = 0;
        loop {
            inner.limiter.acquire().await;
            let mut request = inner
                .http
                .request(method.clone(), &url)
                .bearer_auth(inner.api_key.expose_secret());
            if let Some((form, idempotency_key)) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header("Idempotency-Key", *idempotency_key)
                    .body(form.clone());
            }
            let failure = match attempt(request, &method, path, retries).await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let wait = match failure.retry {
                _ if retries >= inner.max_retries => None,
                Retry::No => None,
                Retry::Backoff => Some(backoff(retries)),
                Retry::After(wait) => Some(wait),
            };
            let Some(wait) = wait else {
                return Err(match failure.error {
                    StripeError::Api { status: 429, .. } => StripeError::RateLimited { retries },
                    error => error,
                });
            };
            tokio::time::sleep(wait).await;
            retries += 1;
        }
    }
}

/// Sends one request and reads its answer. `path` is logged without the
/// query, which may hold an email address.
async fn attempt(
    request: reqwest::RequestBuilder,
    method: &Method,
    path: &str,
    attempt: u32,
) -> Result<Value, Failure> {
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%method, path, attempt, error = %error_kind(&error), "stripe request failed");
            return Err(transport(error));
        }
    };
    let status = response.status();
    tracing::debug!(%method, path, status = status.as_u16(), attempt, "stripe request");
    let retry_after = retry_after(status, response.headers());
    let body = response.bytes().await.map_err(transport)?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|error| Failure {
            error: StripeError::Decode(error),
            retry: Retry::No,
        });
    }
    let retry = if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        retry_after.map_or(Retry::Backoff, Retry::After)
    } else {
        Retry::No
    };
    Err(Failure {
        error: StripeError::from_response(status.as_u16(), &body),
        retry,
    })
}

/// Failures before a complete answer arrived are retried: the request either
/// never reached Stripe or, for a POST, will be answered from Stripe's
/// idempotency cache. A reset of a pooled keep-alive connection shows up as
/// a request error, not a connect error, and is the most common of them.
fn transport(error: reqwest::Error) -> Failure {
    let retry = if error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
    {
        Retry::Backoff
    } else {
        Retry::No
    };
    Failure {
        error: StripeError::Transport(error.without_url()),
        retry,
    }
}

fn error_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() {
        "body"
    } else {
        "request"
    }
}

/// `Retry-After: <seconds>` on a 429 or 503. The HTTP-date form is not used
/// by Stripe and falls back to the backoff.
fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(RETRY_AFTER_CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_eight() {
        let waits: Vec<u64> = (0..7)
            .map(|retry| u64::try_from(backoff(retry).as_millis()).unwrap_or(u64::MAX))
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn retry_after_is_read_on_429_and_503_only_and_capped() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("3"));
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &headers),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(StatusCode::INTERNAL_SERVER_ERROR, &headers),
            None
        );
        headers.insert(
            RETRY_AFTER,
            reqwest::header::HeaderValue::from_static("3600"),
        );
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &headers),
            Some(RETRY_AFTER_CAP)
        );
        headers.insert(
            RETRY_AFTER,
            reqwest::header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(StatusCode::TOO_MANY_REQUESTS, &headers), None);
    }
}
