//! The accept loop: the server is a function of a bound listener, the app state and a shutdown
//! signal. It owns what axum's `serve` does not offer, so that no client can hold the server:
//!
//! - a connection cap (`server.max_connections`): past it a new connection is closed at once
//!   and counted (`llmrr_connections_refused_total`);
//! - HTTP/1.1 with a header-read timeout (`server.header_read_timeout_secs`): a connection
//!   must send a request's headers within it — which also closes connections that send
//!   nothing and idle keep-alive connections (the body has its own timeout, in the JSON
//!   extractor);
//! - each request sees its client's address (`ConnectInfo`), for per-client auth throttling;
//! - a shutdown bounded by `server.shutdown_grace_secs`: stop accepting; let calls and streams
//!   finish until shortly before the grace ends; then the gateway ends what is left (calls
//!   answer 503, streams get an error event), connections still open are closed, and the
//!   request log is flushed (at least one more second for it).

use crate::state::AppState;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

pub const CONNECTIONS_REFUSED: &str = "llmrr_connections_refused_total";

/// Serve until `shutdown` resolves; then drain within the configured grace and write the
/// request log.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = crate::app::router(state.clone());
    let slots = Arc::new(Semaphore::new(state.server.max_connections));
    let header_timeout = state.server.header_read_timeout;
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, never spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(CONNECTIONS_REFUSED).increment(1);
            drop(tcp);
            continue;
        };
        // Answers are small writes; do not let Nagle's algorithm hold them back.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = app
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let watcher = graceful.watcher();
        connections.spawn(async move {
            // HTTP/1.1 only: its header-read timer runs from the connection's first moment, so
            // silent, slow and idle keep-alive connections all end. (HTTP/2 with prior
            // knowledge, which clients of this API do not use, would have no such bound.)
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn =
                builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    drain(graceful, connections, &state).await;
    Ok(())
}

/// The bounded shutdown (see the module's doc).
async fn drain(graceful: GracefulShutdown, mut connections: JoinSet<()>, state: &AppState) {
    let grace = state.server.shutdown_grace;
    let deadline = Instant::now() + grace;
    // The last part of the grace is kept for ending what is left and writing its rows.
    let reserve = (grace / 4).min(Duration::from_secs(2));
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    if tokio::time::timeout_at(deadline - reserve, &mut drained)
        .await
        .is_err()
    {
        tracing::warn!("shutdown: ending the calls and streams still open");
        state.gateway.stop_in_flight();
        if tokio::time::timeout_at(deadline - reserve / 2, &mut drained)
            .await
            .is_err()
        {
            connections.abort_all();
        }
    }
    while connections.join_next().await.is_some() {}
    let left = deadline.saturating_duration_since(Instant::now());
    state.gateway.shutdown(left).await;
}
