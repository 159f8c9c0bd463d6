//! What the caller gets back, built once and rendered for either host mode:
//! as a plain HTTP response (forwarding mode, standalone) or inside the
//! host's invocation response (payload mode).

use std::collections::BTreeMap;

use serde_json::json;
use warp::http::{StatusCode, header};
use warp::reply::Response;

use crate::intake::error::ForwardError;
use crate::intake::host::response::InvocationResponse;

/// The caller's status, headers and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerReply {
    status: StatusCode,
    /// Canonical-case names: the host copies them to the caller as written.
    headers: BTreeMap<String, String>,
    body: String,
}

impl CallerReply {
    /// 200: the broker confirmed the message.
    pub fn queued(message_id: &str) -> Self {
        Self::json(StatusCode::OK, json!({ "queued": true, "message_id": message_id }))
    }

    /// The status and short reason for `error`, with `Retry-After` and
    /// `Allow` where they apply.
    pub fn failed(error: &ForwardError, message_id: Option<&str>) -> Self {
        let mut body = json!({ "queued": false, "error": error.reason() });
        if let Some(id) = message_id {
            body["message_id"] = id.into();
        }
        let mut reply = Self::json(error.status(), body);
        if let Some(seconds) = error.retry_after() {
            reply.headers.insert("Retry-After".to_owned(), seconds.to_string());
        }
        if let ForwardError::MethodNotAllowed { allowed, .. } = error {
            reply.headers.insert("Allow".to_owned(), (*allowed).to_owned());
        }
        reply
    }

    /// Any status with a JSON body.
    pub fn json(status: StatusCode, body: serde_json::Value) -> Self {
        let headers = BTreeMap::from([("Content-Type".to_owned(), "application/json".to_owned())]);
        Self {
            status,
            headers,
            body: body.to_string(),
        }
    }

    /// The caller's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// As a direct HTTP response.
    pub fn into_response(self) -> Response {
        let mut response = Response::new(self.body.into());
        *response.status_mut() = self.status;
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (name.parse::<header::HeaderName>(), value.parse()) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }

    /// Inside the host's invocation response, with this invocation's log lines.
    pub fn into_invocation(self, logs: Vec<String>) -> InvocationResponse {
        InvocationResponse::new(self.status.as_u16(), self.headers, self.body, logs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::PublishError;
    use std::time::Duration;

    #[test]
    fn overload_carries_retry_after() {
        let error = ForwardError::Publish(PublishError::Overloaded {
            concurrency: 1,
            waited: Duration::from_secs(1),
        });
        let response = CallerReply::failed(&error, Some("m1")).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn wrong_method_carries_allow() {
        let error = ForwardError::MethodNotAllowed {
            method: "DELETE".into(),
            allowed: "GET, POST",
        };
        let response = CallerReply::failed(&error, None).into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, POST");
    }

    #[test]
    fn invocation_form_keeps_status_and_headers() {
        let invocation = CallerReply::queued("m1").into_invocation(vec!["queued".into()]);
        let value = serde_json::to_value(&invocation).unwrap();
        assert_eq!(value["Outputs"]["res"]["statusCode"], "200");
        assert_eq!(value["Outputs"]["res"]["headers"]["Content-Type"], "application/json");
        let body: serde_json::Value = serde_json::from_str(value["Outputs"]["res"]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body, json!({ "queued": true, "message_id": "m1" }));
    }
}
