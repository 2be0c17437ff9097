//! The HTTP server's connections: accepted up to `MAX_CONNECTIONS` at once (further clients wait
//! in the kernel's backlog until one closes), each served by hyper with its request headers due
//! within `HEADER_READ_TIMEOUT` (a client that never finishes them is dropped, instead of holding
//! a connection and its memory for ever), and all of them shut down gracefully. axum's own
//! `serve` offers neither limit, hence this loop in its place.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo, http::Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

/// The bounds on clients that `serve` enforces.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (each request of a kept-alive connection).
    pub header_read_timeout: Duration,
}

/// Serves `router` on `listener` until `until` is cancelled, then stops accepting and waits for
/// the open connections to finish their responses (open event streams end on their own when
/// the app closes them).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    until: CancellationToken,
) {
    // HTTP/1.1 only, as nginx and browsers speak it to us: no protocol sniffing first, which
    // would wait for a silent client before any timeout applies.
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        // A slot first: at the bound, new clients wait in the backlog, not in our memory.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = until.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = until.cancelled() => break,
        };
        // Small writes (a token event) go out at once instead of waiting for the previous ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY: {e}");
        }
        let service = TowerToHyperService::new(WithConnectInfo {
            router: router.clone(),
            remote,
        });
        let (http, watcher) = (http.clone(), graceful.watcher());
        tokio::spawn(async move {
            let connection = http.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!("connection from {remote} ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The router for one connection's requests, which know the client's address (`ConnectInfo`,
/// as axum's `into_make_service_with_connect_info` gives it).
#[derive(Clone)]
struct WithConnectInfo {
    router: Router,
    remote: SocketAddr,
}

impl tower_service::Service<Request<Incoming>> for WithConnectInfo {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<Request<Body>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.remote));
        tower_service::Service::call(&mut self.router, request)
    }
}
