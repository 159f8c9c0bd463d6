//! The caller's own request at `/api/WebhookForwarder`, and our response
//! back to it as it is: the host's proxying mode (`enableProxyingHttpRequest`,
//! the shipped host.json), its legacy forwarding mode
//! (`enableForwardingHttpRequest`), and standalone use.

use std::sync::Arc;

use bytes::Buf;
use futures_util::Stream;
use warp::http::{HeaderMap, Method, header};
use warp::reply::Response;

use super::body::{closing_connection, read_limited};
use super::reply::CallerReply;
use crate::intake::admission::{Caller, SECRET_HEADER};
use crate::intake::error::ForwardError;
use crate::intake::forward::Forwarder;
use crate::intake::host::{FRONT_END_CLIENT_HEADERS, INVOCATION_ID_HEADER, PROXY_INVOCATION_ID_HEADER};
use crate::intake::server::PeerAddr;
use crate::webhook::{self, Webhook};

/// Methods e-conomic uses (the function.json allows the same two).
const ALLOWED_METHODS: &str = "GET, POST";

/// Handles one webhook request.
pub async fn forward<S, B>(
    forwarder: Arc<Forwarder>,
    method: Method,
    raw_query: String,
    headers: HeaderMap,
    peer: Option<PeerAddr>,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if method != Method::GET && method != Method::POST {
        let failure = ForwardError::MethodNotAllowed {
            method: method.to_string(),
            allowed: ALLOWED_METHODS,
        };
        return CallerReply::failed(&failure, None).into_response();
    }
    let message_id = webhook::message_id(headers.get(INVOCATION_ID_HEADER).and_then(|v| v.to_str().ok()));
    let body = match read_limited(body, forwarder.max_body_bytes()).await {
        Ok(body) => body,
        Err(failure) => {
            tracing::warn!(message_id, status = failure.status().as_u16(), error = %failure, "not queued");
            return closing_connection(CallerReply::failed(&failure, Some(&message_id)).into_response());
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let webhook = Webhook {
        message_id,
        method: method.to_string(),
        content_type,
        query: webhook::strip_function_key(&raw_query),
        body,
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let caller = Caller {
        forwarded_for: header("x-forwarded-for"),
        front_end_client: FRONT_END_CLIENT_HEADERS.into_iter().find_map(header),
        proxied: headers.contains_key(PROXY_INVOCATION_ID_HEADER),
        peer: peer.map(|PeerAddr(addr)| addr.ip()),
        secret_header: header(SECRET_HEADER),
        query: &webhook.query,
    };
    match forwarder.forward(&webhook, &caller).await.result {
        Ok(_) => CallerReply::queued(&webhook.message_id),
        Err(failure) => CallerReply::failed(&failure, Some(&webhook.message_id)),
    }
    .into_response()
}
