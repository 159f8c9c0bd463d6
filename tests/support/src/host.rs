//! Requests shaped exactly as the Functions host sends them to a custom
//! handler (../shared/reference/azure-functions-custom-handler.md), and the
//! client that sends them.
//!
//! - Payload mode: `POST /WebhookForwarder` with the invocation JSON, chunked.
//! - Forwarding mode (legacy): the caller's own request with the original
//!   path and query, the invocation id headers added.
//!
//! [`Burst`] sends many at once, for load and fault tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::stream;
use serde_json::{Value, json};

/// The host version our requests claim, as a real host sends it.
pub const HOST_VERSION: &str = "4.1040.300.0";
/// The address e-conomic sends from, as Azure's front end reports it.
pub const E_CONOMIC_PEER: &str = "54.72.52.167:51234";

/// Sends host-shaped requests to one handler.
#[derive(Debug, Clone)]
pub struct HostClient {
    /// Where the handler listens.
    pub addr: SocketAddr,
    client: reqwest::Client,
}

impl HostClient {
    /// A client of the handler at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a plain HTTP client builds");
        Self { addr, client }
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Polls `GET /` every 25 ms, as the host does, until any answer (10 s at most).
    pub async fn wait_until_ready(&self) {
        for _ in 0..400 {
            if self.client.get(self.url("/")).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the handler at {} did not answer GET / within 10 s", self.addr);
    }

    /// Payload mode: POSTs the invocation JSON to `/WebhookForwarder` with
    /// the host's headers, chunked as the host sends it.
    pub async fn invoke(&self, invocation_id: &str, envelope: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/WebhookForwarder"))
            .header("X-Azure-Functions-InvocationId", invocation_id)
            .header("X-Azure-Functions-HostVersion", HOST_VERSION)
            .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
            .header("Content-Type", "application/json; charset=utf-8")
            .body(chunked(envelope.to_string().into_bytes()))
            .send()
            .await
            .expect("the handler answers")
    }

    /// Forwarding mode: the caller's own request, as the host passes it on
    /// (original path and query, invocation id added), body chunked.
    pub async fn forward(&self, path_and_query: &str, content_type: &str, body: &[u8]) -> reqwest::Response {
        self.client
            .post(self.url(path_and_query))
            .header("Content-Type", content_type)
            .header("X-Azure-Functions-InvocationId", uuid::Uuid::new_v4().to_string())
            .header("X-Azure-Functions-HostVersion", HOST_VERSION)
            .header("X-Forwarded-For", E_CONOMIC_PEER)
            .body(chunked(body.to_vec()))
            .send()
            .await
            .expect("the handler answers")
    }

    /// A plain request of any method (for routing tests and standalone use).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }
}

/// A body sent with `Transfer-Encoding: chunked` and no `Content-Length`, in
/// three pieces, as the host sends invocation bodies.
pub fn chunked(bytes: Vec<u8>) -> reqwest::Body {
    let third = bytes.len() / 3;
    let bytes = Bytes::from(bytes);
    let pieces = vec![
        bytes.slice(..third),
        bytes.slice(third..2 * third),
        bytes.slice(2 * third..),
    ];
    reqwest::Body::wrap_stream(stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>)))
}

/// The invocation JSON the host builds for a caller's request: `Url` and
/// `Query` with the function key, headers as arrays, `Body` only when the
/// request had one (base64 for octet-stream and multipart, else text).
pub fn host_envelope(method: &str, query: &str, content_type: Option<&str>, body: &[u8]) -> Value {
    let url = format!("https://my-forwarder.azurewebsites.net/api/WebhookForwarder?{query}");
    let query_object: serde_json::Map<String, Value> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let mut headers = json!({
        "Host": ["my-forwarder.azurewebsites.net"],
        "X-Forwarded-For": [E_CONOMIC_PEER],
        "Max-Forwards": ["10"],
    });
    let mut req = json!({
        "Url": url,
        "Method": method,
        "Query": query_object,
        "Params": {},
        "Identities": [{ "AuthenticationType": "WebJobsAuthLevel", "IsAuthenticated": true, "Claims": [] }],
    });
    if let Some(content_type) = content_type {
        headers["Content-Type"] = json!([content_type]);
    }
    if !body.is_empty() {
        headers["Content-Length"] = json!([body.len().to_string()]);
        let binary =
            content_type.is_some_and(|ct| ct.starts_with("application/octet-stream") || ct.starts_with("multipart/"));
        req["Body"] = if binary {
            Value::String(BASE64.encode(body))
        } else {
            Value::String(String::from_utf8(body.to_vec()).expect("the host decodes text bodies as UTF-8"))
        };
    }
    req["Headers"] = headers;
    json!({
        "Data": { "req": req },
        "Metadata": {
            "Query": query_object,
            "Headers": { "Host": "my-forwarder.azurewebsites.net" },
            "sys": { "MethodName": "WebhookForwarder", "UtcNow": "2026-11-29T10:00:00.1234567Z", "RandGuid": uuid::Uuid::new_v4().to_string() }
        }
    })
}

/// The caller's response inside a payload-mode answer: status, headers, body.
/// Asserts the answer has the shape the host requires.
pub async fn caller_response(response: reqwest::Response) -> (u16, Value, Value) {
    assert_eq!(response.status(), 200, "the host always gets HTTP 200 in payload mode");
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await.expect("the answer is JSON");
    assert!(answer["ReturnValue"].is_null());
    assert!(answer["Logs"].as_array().is_some_and(|logs| !logs.is_empty()));
    let res = &answer["Outputs"]["res"];
    let status: u16 = res["statusCode"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("statusCode is a number in a string");
    let body: Value = serde_json::from_str(res["body"].as_str().expect("body is a string")).expect("body is JSON");
    (status, res["headers"].clone(), body)
}

/// One webhook of a [`Burst`] and its answer.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Its index in the burst.
    pub index: usize,
    /// The body sent.
    pub body: String,
    /// The status answered.
    pub status: u16,
    /// From sending to the answer.
    pub latency: Duration,
}

/// Forwarding-mode webhooks sent by many senders at once, in the
/// background, each sender one webhook after another, so that exactly
/// `concurrency` are in flight until `total` were sent or [`Burst::stop`].
pub struct Burst {
    next: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
    total: usize,
    senders: Vec<tokio::task::JoinHandle<Vec<Sent>>>,
}

impl Burst {
    /// Starts sending webhook `i` with body `body(i)` and `content_type`.
    pub fn start(
        host: &HostClient,
        total: usize,
        concurrency: usize,
        content_type: &'static str,
        body: fn(usize) -> String,
    ) -> Self {
        let (next, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let stopped = Arc::new(AtomicBool::new(false));
        let senders = (0..concurrency)
            .map(|_| {
                let (host, next, answered, stopped) = (host.clone(), next.clone(), answered.clone(), stopped.clone());
                tokio::spawn(async move {
                    let mut sent = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= total || stopped.load(Ordering::Relaxed) {
                            return sent;
                        }
                        let body = body(index);
                        let started = Instant::now();
                        let response = host
                            .forward("/api/WebhookForwarder", content_type, body.as_bytes())
                            .await;
                        sent.push(Sent {
                            index,
                            body,
                            status: response.status().as_u16(),
                            latency: started.elapsed(),
                        });
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Self {
            next,
            answered,
            stopped,
            total,
            senders,
        }
    }

    /// How many webhooks were answered so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }

    /// How many were sent or are being sent.
    pub fn started(&self) -> usize {
        self.next.load(Ordering::Relaxed).min(self.total)
    }

    /// Sends no more: the senders finish the webhook each has in flight.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Waits for every sender; what each webhook got, in no particular order.
    pub async fn finish(self) -> Vec<Sent> {
        let mut sent = Vec::new();
        for sender in self.senders {
            sent.extend(sender.await.expect("a sender panicked"));
        }
        sent
    }
}
