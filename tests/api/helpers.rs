//! Test harness: start the real `handler` binary as the Functions host does,
//! talk to it as the host does, and read what reached the real RabbitMQ.

// Shared by the `api` and `broker_restart` test binaries; each uses a part.
#![allow(dead_code)]

#[path = "../common/mod.rs"]
mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::stream;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The local broker's management API (the test command enables it).
pub const MANAGEMENT: &str = "http://127.0.0.1:15672";
/// `Basic` credentials of the local broker's `guest` user, base64 of `guest:guest`.
pub const GUEST_AUTH: &str = "Z3Vlc3Q6Z3Vlc3Q=";
/// A function key as the host passes it in `Url`, `Query` and the query string.
pub const FUNCTION_KEY: &str = "fnKEY-must-never-leak-7f3a";

fn management() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// An exchange, queue and binding of the test's own, named uniquely.
pub struct Topology {
    /// The exchange webhooks are published to.
    pub exchange: String,
    /// The queue bound to it (maybe not bound: see [`Topology::unbound`]).
    pub queue: String,
    /// The routing key of the binding.
    pub routing_key: String,
}

impl Topology {
    /// Declares a durable direct exchange and a durable queue bound with `webhook`.
    pub async fn declare() -> Self {
        Self::bind(Self::unbound().await).await
    }

    /// Like [`Topology::declare`], but as the seed declares it: nothing
    /// auto-deleted or expiring, so it survives a broker restart exactly as a
    /// user's would. Call [`Topology::delete`] when done.
    pub async fn declare_permanent() -> Self {
        Self::bind(Self::create(false).await).await
    }

    /// Deletes the exchange and the queue.
    pub async fn delete(&self) {
        for path in [
            format!("exchanges/%2F/{}", self.exchange),
            format!("queues/%2F/{}", self.queue),
        ] {
            let _ = management()
                .delete(format!("{MANAGEMENT}/api/{path}"))
                .basic_auth("guest", Some("guest"))
                .send()
                .await;
        }
    }

    async fn bind(topology: Self) -> Self {
        let url = format!(
            "{MANAGEMENT}/api/bindings/%2F/e/{}/q/{}",
            topology.exchange, topology.queue
        );
        let response = management()
            .post(url)
            .basic_auth("guest", Some("guest"))
            .json(&json!({ "routing_key": topology.routing_key }))
            .send()
            .await
            .expect("management API reachable: run the README's test command, which enables it");
        assert!(response.status().is_success(), "binding: {}", response.status());
        topology
    }

    /// Declares the exchange and the queue but no binding: publishes are not routed.
    pub async fn unbound() -> Self {
        Self::create(true).await
    }

    async fn create(temporary: bool) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let topology = Self {
            exchange: format!("test-{id}.direct"),
            queue: format!("test-{id}"),
            routing_key: "webhook".to_owned(),
        };
        let client = management();
        // auto_delete and x-expires clean up after the test without a teardown.
        let exchange = client
            .put(format!("{MANAGEMENT}/api/exchanges/%2F/{}", topology.exchange))
            .basic_auth("guest", Some("guest"))
            .json(&json!({ "type": "direct", "durable": true, "auto_delete": temporary }))
            .send()
            .await
            .expect("management API reachable: run the README's test command, which enables it");
        assert!(exchange.status().is_success(), "exchange: {}", exchange.status());
        let queue = client
            .put(format!("{MANAGEMENT}/api/queues/%2F/{}", topology.queue))
            .basic_auth("guest", Some("guest"))
            .json(&if temporary {
                json!({ "durable": true, "arguments": { "x-expires": 600_000 } })
            } else {
                json!({ "durable": true })
            })
            .send()
            .await
            .unwrap();
        assert!(queue.status().is_success(), "queue: {}", queue.status());
        topology
    }

    /// The publish endpoint of this exchange.
    pub fn endpoint(&self) -> String {
        format!("{MANAGEMENT}/api/exchanges/%2F/{}/publish", self.exchange)
    }

    /// Takes up to `count` messages off the queue (acknowledging them),
    /// polling briefly until that many are there.
    pub async fn take(&self, count: usize) -> Vec<QueuedMessage> {
        let mut taken = Vec::new();
        for _ in 0..100 {
            taken.extend(self.get(count - taken.len()).await);
            if taken.len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        taken
    }

    /// Takes whatever is on the queue now, without waiting.
    pub async fn take_all_now(&self) -> Vec<QueuedMessage> {
        self.get(10_000).await
    }

    async fn get(&self, count: usize) -> Vec<QueuedMessage> {
        let response = management()
            .post(format!("{MANAGEMENT}/api/queues/%2F/{}/get", self.queue))
            .basic_auth("guest", Some("guest"))
            .json(&json!({ "count": count, "ackmode": "ack_requeue_false", "encoding": "base64" }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "get: {}", response.status());
        let messages: Vec<Value> = response.json().await.unwrap();
        messages.into_iter().map(QueuedMessage::from_management).collect()
    }
}

/// A message read back off the queue.
#[derive(Debug)]
pub struct QueuedMessage {
    /// The payload, decoded to its bytes.
    pub payload: Vec<u8>,
    /// The AMQP properties as the management API shows them.
    pub properties: Value,
    /// The routing key it was published with.
    pub routing_key: String,
}

impl QueuedMessage {
    fn from_management(message: Value) -> Self {
        assert_eq!(message["payload_encoding"], "base64");
        Self {
            payload: BASE64.decode(message["payload"].as_str().unwrap()).unwrap(),
            properties: message["properties"].clone(),
            routing_key: message["routing_key"].as_str().unwrap().to_owned(),
        }
    }

    /// One header of the message.
    pub fn header(&self, name: &str) -> &Value {
        &self.properties["headers"][name]
    }
}

/// The handler process, started as the Functions host starts it.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    output: Arc<Mutex<String>>,
    client: reqwest::Client,
}

/// Settings every test app gets unless it overrides them.
pub fn settings_for(endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("AmqpEndpoint".to_owned(), endpoint.to_owned()),
        ("AmqpAuthHeader".to_owned(), GUEST_AUTH.to_owned()),
    ]
}

impl TestApp {
    /// Starts the handler publishing to `topology`, with extra settings.
    pub async fn for_topology(topology: &Topology, extra: &[(&str, &str)]) -> Self {
        Self::start(&with(settings_for(&topology.endpoint()), extra)).await
    }

    /// Starts the handler with exactly these settings and waits until it is ready.
    pub async fn start(settings: &[(String, String)]) -> Self {
        match Self::try_start(settings).await {
            Ok(app) => app,
            Err((status, output)) => panic!("handler exited with {status} at start-up:\n{output}"),
        }
    }

    /// Starts the handler; on an early exit returns its status and output.
    pub async fn try_start(settings: &[(String, String)]) -> Result<Self, (ExitStatus, String)> {
        Self::try_start_with_args(&[], settings).await
    }

    /// Starts `handler <args>` as the host would; on an early exit returns its status and output.
    pub async fn try_start_with_args(
        args: &[&str],
        settings: &[(String, String)],
    ) -> Result<Self, (ExitStatus, String)> {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_handler"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // Debug logs: the secret checks must see everything the handler can print.
            .env("RUST_LOG", "debug")
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
            .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", uuid::Uuid::new_v4().to_string())
            .env("FUNCTIONS_APP_ROOT_PATH", env!("CARGO_MANIFEST_DIR"))
            .envs(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the handler binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        common::collect_lines(child.stdout.take().unwrap(), output.clone(), "");
        common::collect_lines(child.stderr.take().unwrap(), output.clone(), "stderr: ");
        let app = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            output,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        app.wait_until_ready().await
    }

    /// Polls `GET /` every 25 ms, as the host does, until any answer.
    async fn wait_until_ready(mut self) -> Result<Self, (ExitStatus, String)> {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the output readers drain.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err((status, self.output()));
            }
            if self.client.get(self.url("/")).send().await.is_ok() {
                return Ok(self);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("handler not ready after 10 s:\n{}", self.output());
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the handler printed so far, stdout and stderr.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Payload mode: POSTs the invocation JSON to `/WebhookForwarder` with the
    /// host's headers, chunked as the host sends it.
    pub async fn invoke(&self, invocation_id: &str, envelope: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/WebhookForwarder"))
            .header("X-Azure-Functions-InvocationId", invocation_id)
            .header("X-Azure-Functions-HostVersion", "4.1040.300.0")
            .header("User-Agent", "Azure-Functions-Host/4.1040.300.0")
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
            .header("X-Azure-Functions-HostVersion", "4.1040.300.0")
            .header("X-Forwarded-For", "54.72.52.167:51234")
            .body(chunked(body.to_vec()))
            .send()
            .await
            .expect("the handler answers")
    }

    /// A plain request of any method (for routing tests).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Peak resident memory of the process so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("still running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap();
        line.trim().trim_end_matches("kB").trim().parse().unwrap()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM, as the host or a container runtime does.
    pub fn terminate(&self) {
        common::terminate(&self.child);
    }

    /// Waits for the process to exit (at most 30 s) and returns its status.
    pub async fn wait_for_exit(&mut self) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the handler exits after SIGTERM")
            .unwrap()
    }
}

/// Settings plus overrides.
pub fn with(mut settings: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    for (key, value) in extra {
        settings.retain(|(k, _)| k != key);
        settings.push(((*key).to_owned(), (*value).to_owned()));
    }
    settings
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
        "X-Forwarded-For": ["54.72.52.167:51234"],
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
pub async fn caller_response(response: reqwest::Response) -> (u16, Value, Value) {
    assert_eq!(response.status(), 200, "the host always gets HTTP 200 in payload mode");
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await.unwrap();
    assert!(answer["ReturnValue"].is_null());
    assert!(answer["Logs"].as_array().is_some_and(|logs| !logs.is_empty()));
    let res = &answer["Outputs"]["res"];
    let status: u16 = res["statusCode"].as_str().unwrap().parse().unwrap();
    let body: Value = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
    (status, res["headers"].clone(), body)
}

/// Asserts that no secret appears in `text`: not the auth header, not the
/// decoded password, not the function key.
pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets.iter().chain([&FUNCTION_KEY, &GUEST_AUTH]) {
        assert!(!text.contains(secret), "secret {secret:?} found in:\n{text}");
    }
}

/// How a `handler` subcommand that ran to completion ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Finished {
    /// stdout and stderr together, for messages and secret checks.
    pub fn output(&self) -> String {
        format!("{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `handler <args>` to completion with exactly these settings, `stdin`
/// piped in, and debug logs on so the secret checks see everything.
pub async fn run_handler(args: &[&str], settings: &[(String, String)], stdin: &str) -> Finished {
    use tokio::io::AsyncWriteExt;

    let mut child = Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "debug")
        .envs(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the handler binary starts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the subcommand finishes within 60 s")
        .unwrap();
    Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Unique names for a test that lets `handler setup` declare its topology;
/// when dropped, deletes whatever setup may have made under them.
pub struct OwnNames {
    /// The exchange webhooks are published to.
    pub exchange: String,
    /// The queue setup is asked for.
    pub queue: String,
}

impl OwnNames {
    /// Fresh names nobody else uses.
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            exchange: format!("test-ops-{id}.direct"),
            queue: format!("test-ops-{id}"),
        }
    }

    /// `<queue>.dead-letter`, the name of the dead-letter exchange and queue.
    pub fn dead_letter(&self) -> String {
        format!("{}.dead-letter", self.queue)
    }

    /// AmqpEndpoint and AmqpAuthHeader for the local broker and this exchange.
    pub fn settings(&self) -> Vec<(String, String)> {
        settings_for(&format!("{MANAGEMENT}/api/exchanges/%2F/{}/publish", self.exchange))
    }
}

impl Drop for OwnNames {
    fn drop(&mut self) {
        common::delete_now(vec![
            format!("queues/%2F/{}", self.queue),
            format!("queues/%2F/{}", self.dead_letter()),
            format!("exchanges/%2F/{}", self.exchange),
            format!("exchanges/%2F/{}", self.dead_letter()),
        ]);
    }
}

/// `GET {MANAGEMENT}/api/{path}` as guest: the status and the JSON (null if none).
pub async fn management_get(path: &str) -> (u16, Value) {
    let response = management()
        .get(format!("{MANAGEMENT}/api/{path}"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect("management API reachable: run the README's test command, which enables it");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `{method} {MANAGEMENT}/api/{path}` as guest, with a JSON body if given; the status.
pub async fn management_send(method: reqwest::Method, path: &str, body: Option<&Value>) -> u16 {
    let mut request = management()
        .request(method, format!("{MANAGEMENT}/api/{path}"))
        .basic_auth("guest", Some("guest"));
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Gets up to `count` messages off `queue` (default vhost) with `ackmode`
/// (e.g. `ack_requeue_false`, `reject_requeue_false`), payloads as text.
pub async fn get_messages(queue: &str, count: usize, ackmode: &str) -> Vec<Value> {
    get_messages_in("%2F", queue, count, ackmode).await
}

/// [`get_messages`] in another (percent-encoded) vhost.
pub async fn get_messages_in(vhost: &str, queue: &str, count: usize, ackmode: &str) -> Vec<Value> {
    let response = management()
        .post(format!("{MANAGEMENT}/api/queues/{vhost}/{queue}/get"))
        .basic_auth("guest", Some("guest"))
        .json(&json!({ "count": count, "ackmode": ackmode, "encoding": "auto" }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "get: {}", response.status());
    response.json().await.unwrap()
}
