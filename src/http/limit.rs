//! A per-client rate limit on the routes anyone can reach without a token:
//! the welcome page and the console's sign-in and setup forms. (Sign-in
//! redemption needs the app token and comes from the app's own servers, a
//! few addresses for every user: a per-address limit there would throttle
//! real sign-ins.) Keyed by the peer's address, an IPv6 peer by its /64
//! (behind a proxy, the proxy's: set `ADMIT_PUBLIC_RATE_PER_MINUTE=0` there
//! and limit at the proxy).

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
        limiter.check_key(&client_key(client)).is_ok()
    }
}

/// Who a limit counts: an IPv4 address (also when it arrives IPv4-mapped),
/// or an IPv6 /64 — one subscriber's usual allocation, so a client cannot
/// step around its limit (or fill the limiter's table) by rotating the
/// low 64 bits it owns.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        let key = |s: &str| client_key(s.parse().expect("ip"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }

    #[test]
    fn a_client_rotating_addresses_inside_its_64_shares_one_budget() {
        let limit = PublicLimit::new(4);
        let admitted = (0..10u16)
            .filter(|n| limit.admit(format!("2001:db8::{n:x}").parse().expect("ip")))
            .count();
        assert_eq!(
            admitted, 2,
            "a burst of half the minute's rate, then refused"
        );
        assert!(
            limit.admit("2001:db8:0:1::1".parse().expect("ip")),
            "the next /64 is another client"
        );
    }
}
