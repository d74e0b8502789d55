//! The HTTP/1 server loop, with the limits a service facing the internet
//! needs: a client gets a bounded time to send its headers, a bounded
//! number of connections is served at once (the rest get a 503 and are
//! closed, never left waiting), and a shutdown lets requests in flight end.
//! (`axum::serve` offers none of these knobs; this is its loop with them.)

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long and how many.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a connection's first byte (or its previous response) to the end
    /// of a request's headers; a client slower than this is disconnected.
    pub header_timeout: Duration,
    /// Connections served at once; one more gets a 503 and is closed.
    pub max_connections: usize,
}

/// Connections beyond the limit answered 503 at once; more are closed unanswered.
const REFUSALS_AT_ONCE: usize = 64;
/// How long a refused connection is given to send its request and read the 503.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// Serves `router` on `listener` until `stop` resolves, then stops
/// accepting and waits for the connections' requests in flight to end
/// (idle keep-alive connections are closed at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Refusals are bounded too: a flood beyond them is dropped unanswered.
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer): (_, std::net::SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a moment rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        () = &mut stop => break,
                    }
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let router = router.clone();
                let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                    // The console's sign-in limit counts attempts per client address.
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let mut router = router.clone();
                    async move { tower::Service::call(&mut router, request.map(Body::new)).await }
                });
                let connection = graceful.watch(http.serve_connection(io, service));
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
            Err(_) => {
                let Ok(refusal) = refusals.clone().try_acquire_owned() else {
                    // Already answering as many refusals as it may: close.
                    continue;
                };
                tracing::warn!(
                    max = limits.max_connections,
                    "connection refused with 503: too many open connections"
                );
                http.keep_alive(false).header_read_timeout(REFUSAL_TIME);
                let connection = http.serve_connection(io, hyper::service::service_fn(busy));
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REFUSAL_TIME, connection).await;
                    drop(refusal);
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What a connection over the limit is told.
async fn busy(_request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let mut response =
        axum::response::IntoResponse::into_response(crate::http::ApiError::TooManyConnections);
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    Ok(response)
}
