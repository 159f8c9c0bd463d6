//! Start-up: bind first, serve later. `bind` returns the bound address and a
//! server future that runs until the shutdown signal, so tests pass port 0
//! and production passes the host's port and SIGTERM/Ctrl-C.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{info, warn};

use super::admission::Admission;
use super::forward::Forwarder;
use super::routes;
use super::server;
use crate::publish::{Publisher, PublisherBuildError};
use crate::settings::Settings;

/// Why the handler could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listen address could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address tried.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The publisher could not be built.
    #[error(transparent)]
    Publisher(#[from] PublisherBuildError),
}

/// Binds the listener and builds the publisher; returns the bound address and
/// the server, which stops accepting when `shutdown` resolves and then gives
/// in-flight requests up to `settings.shutdown_grace` to finish.
pub async fn bind(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = ()>), StartupError> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartupError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartupError::Bind {
        addr: settings.listen,
        source,
    })?;
    let publisher = Publisher::new(settings.broker.clone(), settings.limits.clone())?;
    info!(
        %addr,
        routing_key = %settings.broker.routing_key,
        "listening on http://{addr}; publishing to {}",
        publisher.transport().describe()
    );
    let forwarder = Arc::new(Forwarder::new(
        publisher,
        settings.limits.max_body_bytes.get(),
        Admission::new(settings.source_checks.clone()),
    ));
    let routes = routes::routes(forwarder.clone());
    let server = serve(
        listener,
        routes,
        settings.header_read_timeout,
        shutdown,
        settings.shutdown_grace,
    );
    Ok((addr, async move {
        server.await;
        // No request is in flight any more: the broker connection can go.
        forwarder.publisher().transport().close().await;
    }))
}

async fn serve<F, R>(
    listener: TcpListener,
    routes: F,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) where
    F: warp::Filter<Extract = (R,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    R: warp::Reply,
{
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel();
    let signal = async move {
        shutdown.await;
        info!("shutting down: no new requests; waiting up to {grace:?} for in-flight ones");
        let _ = stopping_tx.send(());
    };
    let server = server::serve(listener, routes, header_read_timeout, signal);
    let mut server = std::pin::pin!(server);
    tokio::select! {
        // Shutdown first when both are ready, so the outcome is always logged.
        biased;
        _ = stopping_rx => {}
        () = &mut server => return,
    }
    // The server waits for every open connection; bound that so a hung request
    // cannot keep the process alive past the host's patience.
    if tokio::time::timeout(grace, server).await.is_err() {
        warn!("in-flight requests did not finish within {grace:?}; exiting anyway");
    } else {
        info!("all in-flight requests finished");
    }
}

/// Resolves on SIGTERM (the host, a container runtime) or SIGINT (Ctrl-C).
/// A signal whose handler cannot be installed never fires (it must not
/// count as a shutdown: that would exit 0 at once, see `commands::serve`).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!("cannot listen for Ctrl-C ({e}); SIGTERM still stops the handler");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
