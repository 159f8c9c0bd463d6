//! Payload mode (neither `enableProxyingHttpRequest` nor
//! `enableForwardingHttpRequest`; also what a host too old for proxying falls
//! back to with the shipped host.json): the host POSTs `/WebhookForwarder`
//! with the invocation JSON, usually chunked, and always expects HTTP 200
//! with the caller's status inside.

use std::sync::Arc;

use bytes::Buf;
use futures_util::Stream;
use warp::Reply;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::body::{closing_connection, read_limited};
use super::reply::CallerReply;
use crate::intake::admission::{Caller, SECRET_HEADER};
use crate::intake::error::ForwardError;
use crate::intake::forward::Forwarder;
use crate::intake::host::invocation::InvocationRequest;
use crate::intake::host::{FRONT_END_CLIENT_HEADERS, INVOCATION_ID_HEADER};

/// Handles one invocation from the host.
pub async fn invoke<S, B>(forwarder: Arc<Forwarder>, headers: HeaderMap, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let invocation_id = headers.get(INVOCATION_ID_HEADER).and_then(|v| v.to_str().ok());
    let json = match read_limited(body, forwarder.max_invocation_bytes()).await {
        Ok(json) => json,
        Err(ForwardError::BodyTooLarge { .. }) => {
            let too_large = ForwardError::BodyTooLarge {
                limit: forwarder.max_body_bytes(),
            };
            return closing_connection(answer_host(StatusCode::OK, &too_large, invocation_id));
        }
        Err(unreadable) => {
            return closing_connection(answer_host(StatusCode::BAD_REQUEST, &unreadable, invocation_id));
        }
    };
    let parsed = InvocationRequest::parse(&json).and_then(|request| {
        let request = request.data.req;
        // Read before the request is consumed: the source checks need them.
        let forwarded_for = request.header("x-forwarded-for").map(str::to_owned);
        let front_end_client = FRONT_END_CLIENT_HEADERS
            .into_iter()
            .find_map(|name| request.header(name))
            .map(str::to_owned);
        let secret_header = request.header(SECRET_HEADER).map(str::to_owned);
        let seen = Seen {
            forwarded_for,
            front_end_client,
            secret_header,
        };
        Ok((request.into_webhook(invocation_id)?, seen))
    });
    let (webhook, seen) = match parsed {
        Ok(parsed) => parsed,
        Err(malformed) => {
            let malformed = ForwardError::BadInvocation(malformed.0);
            return answer_host(StatusCode::BAD_REQUEST, &malformed, invocation_id);
        }
    };
    let caller = Caller {
        forwarded_for: seen.forwarded_for.as_deref(),
        front_end_client: seen.front_end_client.as_deref(),
        proxied: false,
        // The TCP peer is the host itself; the sender is in the headers it copied.
        peer: None,
        secret_header: seen.secret_header.as_deref(),
        query: &webhook.query,
    };
    let outcome = forwarder.forward(&webhook, &caller).await;
    let reply = match &outcome.result {
        Ok(_) => CallerReply::queued(&webhook.message_id),
        Err(failure) => CallerReply::failed(failure, Some(&webhook.message_id)),
    };
    host_response(StatusCode::OK, reply, vec![outcome.to_string()])
}

/// A failure before there is a webhook. A request the host could never have
/// sent (malformed JSON) gets HTTP 400 so it is plainly an error, still in the
/// invocation-response shape; a caller's oversized body is the caller's 413
/// inside a normal HTTP 200.
fn answer_host(http_status: StatusCode, failure: &ForwardError, invocation_id: Option<&str>) -> Response {
    let line = match invocation_id {
        Some(id) => format!("invocation {id} rejected: {failure}"),
        None => format!("invocation rejected: {failure}"),
    };
    tracing::warn!(invocation_id, status = failure.status().as_u16(), error = %failure, "invocation rejected");
    host_response(http_status, CallerReply::failed(failure, None), vec![line])
}

fn host_response(http_status: StatusCode, reply: CallerReply, logs: Vec<String>) -> Response {
    let invocation = reply.into_invocation(logs);
    warp::reply::with_status(warp::reply::json(&invocation), http_status).into_response()
}

/// The caller's headers the source checks need, read before the request is consumed.
struct Seen {
    forwarded_for: Option<String>,
    front_end_client: Option<String>,
    secret_header: Option<String>,
}
