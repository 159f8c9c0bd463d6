//! Requests shaped exactly as the Functions host sends them to a custom
//! handler (../shared/reference/azure-functions-custom-handler.md and
//! docs/host-modes.md, read from azure-functions-host and YARP), and the
//! client that sends them. Each starts from a [`CallerRequest`]: e-conomic's
//! request as it reaches the host, after App Service's front end added its
//! headers ([`front_end_headers`]).
//!
//! - Proxying mode ([`HostClient::proxy`], the shipped host.json): the
//!   caller's request streamed through YARP.
//! - Payload mode ([`HostClient::invoke`] with [`host_envelope`]):
//!   `POST /WebhookForwarder` with the invocation JSON, chunked.
//! - Legacy forwarding mode ([`HostClient::forward_legacy`]): the caller's
//!   request rebuilt by the host, body only when it had a Content-Length.
//! - [`HostClient::forward`]: a caller's chunked request with the host's
//!   invocation headers, for standalone use and the generic route tests.
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
/// The app's host name on Azure.
pub const APP_HOST: &str = "my-forwarder.azurewebsites.net";
/// The TCP peer of the host's Kestrel on App Service Linux (the front end's
/// hop into the container, as a header dump there shows): what YARP puts in
/// `X-Forwarded-For` in proxying mode.
pub const HOST_PEER: &str = "169.254.129.1";

/// e-conomic's request as it reaches the Functions host.
#[derive(Debug, Clone)]
pub struct CallerRequest {
    /// `POST` (e-conomic's legacy webhooks may also `GET`).
    pub method: reqwest::Method,
    /// The original path and raw query, the function key `code` included.
    pub path_and_query: String,
    /// Its `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Its body, byte for byte.
    pub body: Vec<u8>,
    /// Sent with `Transfer-Encoding: chunked` (no `Content-Length`).
    pub chunked: bool,
}

impl CallerRequest {
    /// A POST with a `Content-Length`, as e-conomic sends its webhooks.
    pub fn post(path_and_query: &str, content_type: &str, body: &[u8]) -> Self {
        Self {
            method: reqwest::Method::POST,
            path_and_query: path_and_query.to_owned(),
            content_type: Some(content_type.to_owned()),
            body: body.to_vec(),
            chunked: false,
        }
    }

    /// The same request, sent chunked.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }
}

/// What App Service's front end adds to every request (header dumps of
/// App Service apps; Azure/app-service-linux-docs, headers.md: `Client-IP` and
/// `X-Client-IP` are written over any value the caller sent). `Host` and
/// `X-Forwarded-*` are listed too: the front end sets them.
pub fn front_end_headers(path_and_query: &str) -> Vec<(&'static str, String)> {
    let (ip, port) = E_CONOMIC_PEER.split_once(':').expect("address:port");
    vec![
        ("Host", APP_HOST.to_owned()),
        ("Max-Forwards", "10".to_owned()),
        ("X-Forwarded-For", E_CONOMIC_PEER.to_owned()),
        ("X-Forwarded-Proto", "https".to_owned()),
        ("X-Client-IP", ip.to_owned()),
        ("X-Client-Port", port.to_owned()),
        ("Client-IP", E_CONOMIC_PEER.to_owned()),
        ("DISGUISED-HOST", APP_HOST.to_owned()),
        ("WAS-DEFAULT-HOSTNAME", APP_HOST.to_owned()),
        ("X-SITE-DEPLOYMENT-ID", "my-forwarder".to_owned()),
        ("X-ARR-LOG-ID", "0f8fad5b-d9cb-469f-a165-70867728950e".to_owned()),
        ("X-Original-URL", path_and_query.to_owned()),
        ("X-WAWS-Unencoded-URL", path_and_query.to_owned()),
    ]
}

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

    /// Proxying mode (`enableProxyingHttpRequest`), as DefaultHttpWorkerService,
    /// DefaultHttpProxyService and YARP's default transforms send it: the
    /// original method, path and raw query (`code` included); `Host` is the
    /// worker's `127.0.0.1:port`; `X-Forwarded-For` (the host's own peer),
    /// `-Proto` and `-Host` set; `x-ms-invocation-id` and
    /// `X-Azure-Functions-InvocationId` (one id) and the host version added;
    /// hop-by-hop headers dropped, every other header passed on;
    /// `Content-Length` kept, a chunked original re-chunked.
    pub async fn proxy(&self, caller: &CallerRequest, invocation_id: &str) -> reqwest::Response {
        let mut request = self
            .client
            .request(caller.method.clone(), self.url(&caller.path_and_query));
        for (name, value) in front_end_headers(&caller.path_and_query) {
            // YARP: Host becomes the destination's, X-Forwarded-* are set below.
            if name != "Host" && !name.starts_with("X-Forwarded-") {
                request = request.header(name, value);
            }
        }
        if let Some(content_type) = &caller.content_type {
            request = request.header("Content-Type", content_type);
        }
        request = request
            .header("X-Forwarded-For", HOST_PEER)
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", APP_HOST)
            .header("x-ms-invocation-id", invocation_id)
            .header("X-Azure-Functions-InvocationId", invocation_id)
            .header("X-Azure-Functions-HostVersion", HOST_VERSION);
        let body = if caller.chunked {
            chunked(caller.body.clone())
        } else {
            reqwest::Body::from(caller.body.clone())
        };
        request.body(body).send().await.expect("the handler answers")
    }

    /// Legacy forwarding mode (`enableForwardingHttpRequest`), as
    /// HttpRequestExtensions.ToHttpRequestMessage builds it: the original
    /// path, the query rebuilt from the parsed pairs (re-encoded, repeated
    /// keys comma-joined, `code` kept), every header copied (`Host` too), the
    /// invocation id, host version and user agent added, and the body only
    /// when the original had a `Content-Length` over 0: a chunked original
    /// arrives empty.
    pub async fn forward_legacy(&self, caller: &CallerRequest, invocation_id: &str) -> reqwest::Response {
        let (path, query) = caller
            .path_and_query
            .split_once('?')
            .unwrap_or((&caller.path_and_query, ""));
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match pairs.iter_mut().find(|(k, _)| *k == key) {
                Some((_, joined)) => {
                    joined.push(',');
                    joined.push_str(&value);
                }
                None => pairs.push((key.into_owned(), value.into_owned())),
            }
        }
        // QueryHelpers.AddQueryString escapes with UrlEncoder: all but the
        // unreserved characters, so a space is %20 and a comma %2C.
        let query: Vec<String> = pairs
            .iter()
            .map(|(key, value)| format!("{}={}", escape_data(key), escape_data(value)))
            .collect();
        let mut url = self.url(path);
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let mut request = self.client.request(caller.method.clone(), url);
        for (name, value) in front_end_headers(&caller.path_and_query) {
            request = request.header(name, value);
        }
        request = request
            .header("X-Azure-Functions-InvocationId", invocation_id)
            .header("X-Azure-Functions-HostVersion", HOST_VERSION)
            .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"));
        if !caller.chunked && !caller.body.is_empty() {
            if let Some(content_type) = &caller.content_type {
                request = request.header("Content-Type", content_type);
            }
            request = request.body(caller.body.clone());
        }
        request.send().await.expect("the handler answers")
    }

    /// A caller's request with the host's invocation headers and an
    /// `X-Forwarded-For`, body chunked: what a standalone handler gets
    /// behind a proxy, and the generic request of the route tests.
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

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn escape_data(text: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

/// A text body as payload mode's `Body` carries it: the host reads it with
/// .NET's `StreamReader(UTF8, detectEncodingFromByteOrderMarks: true)`
/// (azure-webjobs-sdk-extensions, HttpRequestExtensions.ReadAsStringAsync),
/// so a UTF-8 byte-order mark is dropped and bytes that are not UTF-8 become
/// U+FFFD, whatever charset the Content-Type names.
pub fn as_payload_mode_text(body: &[u8]) -> String {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    String::from_utf8_lossy(body).into_owned()
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
    let url = format!("https://{APP_HOST}/api/WebhookForwarder?{query}");
    let query_object: serde_json::Map<String, Value> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let path_and_query = format!("/api/WebhookForwarder?{query}");
    let mut headers: serde_json::Map<String, Value> = front_end_headers(&path_and_query)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), json!([value])))
        .collect();
    let mut req = json!({
        "Url": url,
        "Method": method,
        "Query": query_object,
        "Params": {},
        "Identities": [{ "AuthenticationType": "WebJobsAuthLevel", "IsAuthenticated": true, "Claims": [] }],
    });
    if let Some(content_type) = content_type {
        headers.insert("Content-Type".to_owned(), json!([content_type]));
    }
    if !body.is_empty() {
        headers.insert("Content-Length".to_owned(), json!([body.len().to_string()]));
        let binary =
            content_type.is_some_and(|ct| ct.starts_with("application/octet-stream") || ct.starts_with("multipart/"));
        req["Body"] = if binary {
            Value::String(BASE64.encode(body))
        } else {
            Value::String(as_payload_mode_text(body))
        };
    }
    req["Headers"] = Value::Object(headers);
    json!({
        "Data": { "req": req },
        "Metadata": {
            "Query": query_object,
            "Headers": { "Host": APP_HOST },
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
    /// Its `Retry-After`, if any.
    pub retry_after: Option<String>,
    /// When it was sent.
    pub started: Instant,
    /// From sending to the answer.
    pub latency: Duration,
}

impl Sent {
    /// When the answer came.
    pub fn answered(&self) -> Instant {
        self.started + self.latency
    }
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
                        let retry_after = response
                            .headers()
                            .get("retry-after")
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                        sent.push(Sent {
                            index,
                            body,
                            status: response.status().as_u16(),
                            retry_after,
                            started,
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
