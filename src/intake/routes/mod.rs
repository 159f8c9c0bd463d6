//! The HTTP surface: which request goes to which handler. Rejections are used
//! for routing only; every handler answers for itself.

mod body;
mod forwarding;
mod payload;
mod reply;

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;
use warp::path::FullPath;
use warp::{Filter, Rejection, Reply};

pub use reply::CallerReply;

use crate::intake::forward::Forwarder;

/// Where the host posts invocations in payload mode: `/{FunctionName}`.
pub const PAYLOAD_PATH: &str = "/WebhookForwarder";
/// Where callers' requests arrive in forwarding mode and standalone:
/// `/{routePrefix}/{FunctionName}`.
pub const FORWARDING_PATH: &str = "/api/WebhookForwarder";

/// Every route of the handler.
pub fn routes(forwarder: Arc<Forwarder>) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    health()
        .or(payload_mode(forwarder.clone()))
        .or(forwarding_mode(forwarder))
        .recover(unmatched)
}

/// `GET /`: the host's readiness and health ping, answered at once.
fn health() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path::end()
        .and(warp::get().or(warp::head()).unify())
        .map(|| warp::reply::json(&json!({ "status": "ok" })))
}

/// `POST /WebhookForwarder`: an invocation from the host in payload mode.
fn payload_mode(forwarder: Arc<Forwarder>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    path_is(PAYLOAD_PATH)
        .and(warp::post())
        .and(warp::any().map(move || forwarder.clone()))
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(payload::invoke)
}

/// `/api/WebhookForwarder`: the caller's own request (forwarding mode, standalone).
fn forwarding_mode(forwarder: Arc<Forwarder>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    path_is(FORWARDING_PATH)
        .and(warp::any().map(move || forwarder.clone()))
        .and(warp::method())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<crate::intake::server::PeerAddr>())
        .and(warp::body::stream())
        .then(forwarding::forward)
}

/// Matches the whole path case-insensitively, as Azure's routing does (a
/// caller may type `/api/webhookforwarder` and forwarding mode passes it on).
fn path_is(expected: &'static str) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(move |path: FullPath| async move {
            if path.as_str().trim_end_matches('/').eq_ignore_ascii_case(expected) {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// The raw query string as sent (empty when there is none).
fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

async fn unmatched(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    let (status, error) = if rejection.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            format!("no such path; webhooks go to {FORWARDING_PATH}"),
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed".to_owned())
    } else {
        (StatusCode::BAD_REQUEST, "bad request".to_owned())
    };
    Ok(CallerReply::json(status, json!({ "error": error })).into_response())
}
