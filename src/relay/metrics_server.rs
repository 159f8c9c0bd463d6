//! `--metrics ADDR`: Prometheus text at `GET /metrics`, bound first (a bad
//! address is an error at start-up, naming the option), served for the life
//! of the relay.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use warp::Filter;
use warp::http::header::CONTENT_TYPE;

use super::RelayError;
use super::metrics::{CONTENT_TYPE as METRICS_TYPE, Metrics};

/// Binds `addr` (port 0 picks one) and returns the address bound and the
/// server, which runs until dropped.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<(SocketAddr, impl Future<Output = ()>), RelayError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| RelayError::MetricsAddress {
        addr,
        detail: e.to_string(),
    })?;
    let bound = listener.local_addr().map_err(|e| RelayError::MetricsAddress {
        addr,
        detail: e.to_string(),
    })?;
    Ok((bound, warp::serve(routes(metrics)).incoming(listener).run()))
}

/// `GET /metrics`; anything else is 404.
fn routes(metrics: Arc<Metrics>) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .and_then(move || {
            let metrics = metrics.clone();
            async move {
                let text = metrics.encode();
                Ok::<_, Infallible>(warp::reply::with_header(text, CONTENT_TYPE, METRICS_TYPE))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_are_served_as_prometheus_text_and_nothing_else_is() {
        let metrics = Arc::new(Metrics::new());
        metrics.set_queue_depth(3);
        let (addr, server) = bind("127.0.0.1:0".parse().unwrap(), metrics).await.unwrap();
        let _server = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(server));
        let client = reqwest::Client::new();
        let answer = client.get(format!("http://{addr}/metrics")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.headers()[CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = answer.text().await.unwrap();
        assert!(body.contains("relay_queue_depth 3\n"), "{body}");
        let other = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(other.status(), 404);
    }

    #[tokio::test]
    async fn an_address_in_use_names_the_option() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let Err(err) = bind(addr, Arc::new(Metrics::new())).await else {
            panic!("bound a port in use")
        };
        assert!(
            err.to_string()
                .starts_with(&format!("cannot serve metrics on {addr} (--metrics): ")),
            "{err}"
        );
    }
}
