//! A per-client rate limit on the routes anyone can reach without a token:
//! the welcome page and the console's sign-in and setup forms. (Sign-in
//! redemption needs the app token and comes from the app's own servers, a
//! few addresses for every user: a per-address limit there would throttle
//! real sign-ins.) Keyed by the peer's address (behind a proxy, the proxy's:
//! set `ADMIT_PUBLIC_RATE_PER_MINUTE=0` there and limit at the proxy).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::http::header::RETRY_AFTER;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::AppState;
use super::error::ApiError;

/// The routes the limit covers.
const PUBLIC: &[&str] = &["/welcome", "/admin/login", "/admin/setup"];

/// Forget clients not seen for a while once this many are tracked.
const TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct PublicLimit {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl PublicLimit {
    /// `per_minute` requests a minute per client, in bursts of up to half
    /// that; 0 for no limit.
    pub fn new(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute).map(|rate| {
                let burst = NonZeroU32::new(per_minute.div_ceil(2)).unwrap_or(rate);
                RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
            }),
        }
    }

    /// `false` when `client` is over its limit.
    fn admit(&self, client: IpAddr) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        if limiter.len() > TRACKED {
            limiter.retain_recent();
        }
        limiter.check_key(&client).is_ok()
    }
}

pub async fn public_routes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if PUBLIC.contains(&path) {
        let client = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        if let Some(client) = client
            && !state.public_limit.admit(client)
        {
            tracing::warn!(
                route = path,
                "request refused: over the per-client rate limit"
            );
            let mut response = ApiError::RateLimited.into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("30"));
            return response;
        }
    }
    next.run(request).await
}
