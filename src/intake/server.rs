//! The accept loop: serves the routes over HTTP/1.1 with a header read
//! timeout, which warp's own server does not set. Without it a client that
//! trickles its headers (slowloris) or idles forever holds a connection
//! and its memory for good.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower_service::Service;
use tracing::debug;
use warp::{Filter, Reply};

/// The TCP peer of a request, as a request extension (`warp::ext::optional`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Serves `routes` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for open connections to finish their requests.
pub async fn serve<F, R>(
    listener: TcpListener,
    routes: F,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Applies to the first request and to each next one on a kept-alive
        // connection, so idle connections are closed after it too.
        .header_read_timeout(header_read_timeout)
        // A client that shuts its write side after the request still gets
        // its answer instead of a dropped connection.
        .half_close(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, usually: pause instead of spinning.
                    debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let routes = warp::service(routes.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            routes.clone().call(request)
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!("connection ended with an error: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
