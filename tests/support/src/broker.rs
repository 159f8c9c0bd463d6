//! The real local RabbitMQ: a topology of each test's own (unique names,
//! deleted when the test ends, passed or failed), messages published and
//! read back over AMQP, and the management API.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use serde_json::{Map, Value, json};

use crate::AppSettings;

// ---- which local broker ----------------------------------------------------------
// The test command runs the black-box suite twice: against the machine's
// RabbitMQ 3.10.8 (5672/15672, the defaults) and against 4.x from
// scripts/broker4-up (TEST_RABBITMQ_AMQP_PORT=5673 and
// TEST_RABBITMQ_MANAGEMENT_PORT=15673). Everything here that names the broker
// goes through these functions.

/// The broker's AMQP port: `TEST_RABBITMQ_AMQP_PORT`, default 5672.
pub fn amqp_port() -> u16 {
    port_from_env("TEST_RABBITMQ_AMQP_PORT", 5672)
}

/// The broker's management API port: `TEST_RABBITMQ_MANAGEMENT_PORT`, default 15672.
pub fn management_port() -> u16 {
    port_from_env("TEST_RABBITMQ_MANAGEMENT_PORT", 15672)
}

/// The local broker's management API (the test command enables it): `http://127.0.0.1:<port>`.
pub fn management_url() -> String {
    format!("http://127.0.0.1:{}", management_port())
}

/// The local broker over AMQP, as `guest`, default vhost.
pub fn amqp_url() -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2F", amqp_port())
}

/// `amqp://<user>:<password>@127.0.0.1/` for the broker under test (its
/// AMQP port written out when it is not 5672), percent-encoding both.
pub fn broker_url(user: &str, password: &str) -> String {
    format!(
        "amqp://{}:{}@127.0.0.1{}/",
        encoded(user),
        encoded(password),
        port_suffix()
    )
}

/// [`broker_url`] as the handler prints it, the password hidden.
pub fn broker_url_shown(user: &str) -> String {
    format!("amqp://{}:***@127.0.0.1{}/", encoded(user), port_suffix())
}

fn port_suffix() -> String {
    if amqp_port() == 5672 {
        String::new()
    } else {
        format!(":{}", amqp_port())
    }
}

/// `AmqpUrl` set to `url` (written for the default ports, e.g.
/// `amqp://user:password@127.0.0.1/`), moved to the broker under test: its
/// AMQP port put in, and `AmqpManagementUrl` set when the API is not on 15672.
/// A URL that does not parse (a test of bad input) is passed on as it is.
pub fn amqp_url_settings_for(url: &str) -> AppSettings {
    let mut settings = AppSettings::new();
    if management_port() != 15672 {
        settings = settings.with("AmqpManagementUrl", management_url());
    }
    let moved = url::Url::parse(url).ok().and_then(|mut parsed| {
        (amqp_port() != 5672 && parsed.set_port(Some(amqp_port())).is_ok()).then(|| parsed.to_string())
    });
    settings.with("AmqpUrl", moved.unwrap_or_else(|| url.to_owned()))
}

/// [`amqp_url`] as the product prints it, the password replaced by `***`.
pub fn amqp_url_shown() -> String {
    format!("amqp://guest:***@127.0.0.1:{}/%2F", amqp_port())
}

/// The `rabbitmqctl` command of the broker under test: `TEST_RABBITMQCTL`
/// (split at spaces, e.g. `/path/scripts/broker4-up ctl`), default `rabbitmqctl`.
pub fn rabbitmqctl_command() -> Vec<String> {
    std::env::var("TEST_RABBITMQCTL")
        .ok()
        .filter(|command| !command.trim().is_empty())
        .map_or_else(
            || vec!["rabbitmqctl".to_owned()],
            |command| command.split_whitespace().map(str::to_owned).collect(),
        )
}

fn port_from_env(name: &str, default: u16) -> u16 {
    match std::env::var(name) {
        Ok(port) => port
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={port:?} is not a port number")),
        Err(_) => default,
    }
}
/// `AmqpAuthHeader` of the local broker's `guest` user: base64 of `guest:guest`.
pub const GUEST_AUTH: &str = "Z3Vlc3Q6Z3Vlc3Q=";

const UNREACHABLE: &str =
    "RabbitMQ with its management API on 127.0.0.1: run the README's test command, which starts it";

// ---- the management API -------------------------------------------------------

fn management() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain HTTP client builds")
}

/// `GET /api/{path}` as guest: the status and the JSON (null if none).
pub async fn api_get(path: &str) -> (u16, Value) {
    let response = management()
        .get(format!("{}/api/{path}", management_url()))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect(UNREACHABLE);
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `{method} /api/{path}` as guest, with a JSON body if given: the status.
pub async fn api_send(method: reqwest::Method, path: &str, body: Option<&Value>) -> u16 {
    let mut request = management()
        .request(method, format!("{}/api/{path}", management_url()))
        .basic_auth("guest", Some("guest"));
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect(UNREACHABLE).status().as_u16()
}

/// Like [`api_send`], asserting a 2xx.
async fn api_ok(method: reqwest::Method, path: &str, body: &Value) {
    let status = api_send(method, path, Some(body)).await;
    assert!((200..300).contains(&status), "{path}: {status}");
}

/// Deletes `paths` (under `/api/`) as guest and waits until done. For `Drop`,
/// which cannot await: it runs on a thread with a runtime of its own.
pub fn delete_now(paths: Vec<String>) {
    let cleanup = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime builds");
        runtime.block_on(async {
            for path in paths {
                let _ = api_send(reqwest::Method::DELETE, &path, None).await;
            }
        });
    });
    let _ = cleanup.join();
}

/// Percent-encodes a name for a management API path (`/` too).
pub fn encoded(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Closes, through the management API, every connection whose client named
/// it `connection_name`, as a network failure or an operator would; waits
/// (up to 30 s) for the broker's connection list to show one first.
pub async fn close_connections_named(connection_name: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let names = connections_named(connection_name).await;
        for name in &names {
            let response = management()
                .delete(format!("{}/api/connections/{}", management_url(), encoded(name)))
                .basic_auth("guest", Some("guest"))
                .header("X-Reason", "test: connection lost")
                .send()
                .await
                .expect(UNREACHABLE);
            assert!(response.status().is_success(), "closing {name}: {}", response.status());
        }
        if !names.is_empty() {
            return names.len();
        }
        assert!(Instant::now() < deadline, "no connection named {connection_name:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The broker's names of the connections whose client named them
/// `connection_name` (the broker's list lags a few seconds behind).
pub async fn connections_named(connection_name: &str) -> Vec<String> {
    let (_, listed) = api_get("connections?columns=name,user_provided_name").await;
    listed
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["user_provided_name"] == connection_name)
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (up to 30 s: the broker's list lags) until the broker lists
/// exactly one connection named `connection_name`; returns the broker's
/// name of it. Panics when it lists none or several.
pub async fn the_one_connection_named(connection_name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut listed = connections_named(connection_name).await;
        if listed.len() == 1 {
            return listed.remove(0);
        }
        assert!(
            Instant::now() < deadline,
            "connections named {connection_name:?}: {listed:?}, not exactly one"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How many channels the broker counts on the connection it calls
/// `broker_name` (a name from [`connections_named`]); 0 when it is gone.
pub async fn channels_of(broker_name: &str) -> u64 {
    let (_, connection) = api_get(&format!("connections/{}", encoded(broker_name))).await;
    connection["channels"].as_u64().unwrap_or(0)
}

/// A broker user of the test's own (unique name, permissions on `/`),
/// deleted when dropped: for credentials the management API refuses while
/// AMQP accepts them (a user without the management tag).
pub struct TestUser {
    /// The user name.
    pub name: String,
    /// The password.
    pub password: String,
}

impl TestUser {
    /// Creates the user with `tags` ("" for none) and full permissions on `/`.
    pub async fn create(tags: &str) -> Self {
        let user = Self {
            name: format!("test-user-{}", uuid::Uuid::new_v4().simple()),
            password: format!("pw-{}", uuid::Uuid::new_v4().simple()),
        };
        let path = format!("users/{}", encoded(&user.name));
        api_ok(
            reqwest::Method::PUT,
            &path,
            &json!({ "password": user.password, "tags": tags }),
        )
        .await;
        let permissions = json!({ "configure": ".*", "write": ".*", "read": ".*" });
        api_ok(
            reqwest::Method::PUT,
            &format!("permissions/%2F/{}", encoded(&user.name)),
            &permissions,
        )
        .await;
        user
    }

    /// `amqp://<user>:<password>@127.0.0.1/`.
    pub fn amqp_url(&self) -> String {
        broker_url(&self.name, &self.password)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        delete_now(vec![format!("users/{}", encoded(&self.name))]);
    }
}

// ---- an outage ----------------------------------------------------------------------

/// The local broker's application stopped (the Erlang node stays up, so
/// its data does) until [`BrokerOutage::end`], or until dropped, so a
/// failing test never leaves the machine without a broker. Tests that use
/// it live in a test binary of their own: cargo runs test binaries one
/// after another, so no other test sees the outage.
pub struct BrokerOutage {
    over: bool,
}

impl BrokerOutage {
    /// Stops the broker's application (`rabbitmqctl stop_app`).
    pub async fn begin() -> Self {
        tokio::task::spawn_blocking(|| rabbitmqctl("stop_app"))
            .await
            .expect("rabbitmqctl ran")
            .expect("rabbitmqctl stop_app");
        Self { over: false }
    }

    /// Starts it again and waits until its management API answers.
    pub async fn end(mut self) {
        self.over = true;
        tokio::task::spawn_blocking(|| rabbitmqctl("start_app"))
            .await
            .expect("rabbitmqctl ran")
            .expect("rabbitmqctl start_app");
        let deadline = Instant::now() + Duration::from_secs(60);
        while api_send(reqwest::Method::GET, "overview", None).await != 200 {
            assert!(Instant::now() < deadline, "the management API is not back after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        // No panic here: this may run while a failed assertion unwinds.
        if !self.over
            && let Err(e) = rabbitmqctl("start_app")
        {
            eprintln!("could not restart the broker's app: {e}; run `rabbitmqctl start_app`");
        }
    }
}

fn rabbitmqctl(command: &str) -> Result<(), String> {
    let program = rabbitmqctl_command();
    let status = std::process::Command::new(&program[0])
        .args(&program[1..])
        .args(["-q", command])
        .status()
        .map_err(|e| e.to_string())?;
    status.success().then_some(()).ok_or_else(|| format!("exit {status}"))
}

// ---- a topology of the test's own ----------------------------------------------

/// An exchange, a queue and maybe their dead-letter pair, other queues
/// and the exchange's alternate exchange, under names no other test uses;
/// everything under those names is deleted when this drops.
pub struct Topology {
    /// The exchange webhooks are published to.
    pub exchange: String,
    /// The queue bound to it.
    pub queue: String,
    /// The routing key of the binding.
    pub routing_key: String,
    /// The names [`Topology::other_queue`] gave out, to delete.
    others: std::sync::Mutex<Vec<String>>,
}

impl Topology {
    /// Fresh names; nothing declared yet (for tests of `handler setup`).
    pub fn names() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            exchange: format!("test-{id}.direct"),
            queue: format!("test-{id}"),
            routing_key: "webhook".to_owned(),
            others: std::sync::Mutex::default(),
        }
    }

    /// The name of another queue of this topology, `<queue>-<suffix>`,
    /// declared by no one yet (for `handler setup --queue`); deleted with
    /// the topology, as is its dead-letter pair.
    pub fn other_queue(&self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.queue);
        self.others.lock().expect("names lock").push(name.clone());
        name
    }

    /// `<exchange>.unrouted`: the alternate exchange and queue
    /// `handler setup --alternate-exchange` declares.
    pub fn unrouted(&self) -> String {
        format!("{}.unrouted", self.exchange)
    }

    /// Binds the queue to the exchange with one more routing key.
    pub async fn bind_key(&self, key: &str) {
        let path = format!("bindings/%2F/e/{}/q/{}", encoded(&self.exchange), encoded(&self.queue));
        api_ok(reqwest::Method::POST, &path, &json!({ "routing_key": key })).await;
    }

    /// The seed's topology: a durable direct exchange bound with `webhook` to
    /// a durable queue, nothing auto-deleted, as a user's would be.
    pub async fn declare() -> Self {
        let topology = Self::unbound().await;
        topology.bind().await;
        topology
    }

    /// Like [`Topology::declare`], with the queue's expired and rejected
    /// messages going to a fanout exchange and a queue, both
    /// `<queue>.dead-letter`, as `handler setup --dead-letter` declares them.
    pub async fn with_dead_letter() -> Self {
        let topology = Self::names();
        let dead_letter = topology.dead_letter();
        topology.declare_exchange(&dead_letter, "fanout").await;
        api_ok(
            reqwest::Method::PUT,
            &topology.queue_path(&dead_letter),
            &json!({ "durable": true }),
        )
        .await;
        let binding = format!("bindings/%2F/e/{0}/q/{0}", encoded(&dead_letter));
        api_ok(reqwest::Method::POST, &binding, &json!({ "routing_key": "" })).await;
        topology.declare_exchange(&topology.exchange, "direct").await;
        let arguments = json!({ "durable": true, "arguments": { "x-dead-letter-exchange": dead_letter } });
        api_ok(reqwest::Method::PUT, &topology.queue_path(&topology.queue), &arguments).await;
        topology.bind().await;
        topology
    }

    /// The exchange and the queue, but no binding: publishes are not routed.
    pub async fn unbound() -> Self {
        Self::unbound_with_queue_arguments(json!({})).await
    }

    /// Like [`Topology::declare`], the queue declared with `arguments`
    /// (`x-max-length`, `x-overflow`, `x-expires`, ...).
    pub async fn declare_with_queue_arguments(arguments: Value) -> Self {
        let topology = Self::unbound_with_queue_arguments(arguments).await;
        topology.bind().await;
        topology
    }

    async fn unbound_with_queue_arguments(arguments: Value) -> Self {
        let topology = Self::names();
        topology.declare_exchange(&topology.exchange, "direct").await;
        api_ok(
            reqwest::Method::PUT,
            &topology.queue_path(&topology.queue),
            &json!({ "durable": true, "arguments": arguments }),
        )
        .await;
        topology
    }

    async fn declare_exchange(&self, name: &str, kind: &str) {
        let body = json!({ "type": kind, "durable": true, "auto_delete": false });
        api_ok(reqwest::Method::PUT, &format!("exchanges/%2F/{}", encoded(name)), &body).await;
    }

    async fn bind(&self) {
        let path = format!("bindings/%2F/e/{}/q/{}", encoded(&self.exchange), encoded(&self.queue));
        api_ok(
            reqwest::Method::POST,
            &path,
            &json!({ "routing_key": self.routing_key }),
        )
        .await;
    }

    fn queue_path(&self, queue: &str) -> String {
        format!("queues/%2F/{}", encoded(queue))
    }

    /// `<queue>.dead-letter`, the name of the dead-letter exchange and queue.
    pub fn dead_letter(&self) -> String {
        format!("{}.dead-letter", self.queue)
    }

    /// The HTTP publish endpoint of the exchange.
    pub fn endpoint(&self) -> String {
        format!(
            "{}/api/exchanges/%2F/{}/publish",
            management_url(),
            encoded(&self.exchange)
        )
    }

    /// The seed's two settings for the local broker and this exchange.
    pub fn settings(&self) -> AppSettings {
        AppSettings::new()
            .with("AmqpEndpoint", self.endpoint())
            .with("AmqpAuthHeader", GUEST_AUTH)
    }

    /// `AmqpUrl` (written as the README writes it: no port, no vhost) and
    /// `AmqpExchange` for the local broker and this exchange; for a broker on
    /// other ports (4.x), the port and `AmqpManagementUrl` too.
    pub fn amqp_url_settings(&self) -> AppSettings {
        amqp_url_settings_for("amqp://guest:guest@127.0.0.1/").with("AmqpExchange", self.exchange.clone())
    }

    /// `PublishTransport=amqp` with [`Topology::amqp_url_settings`]: the
    /// forwarder publishes over AMQP to this exchange.
    pub fn amqp_transport_settings(&self) -> AppSettings {
        self.amqp_url_settings().with("PublishTransport", "amqp")
    }

    /// Publishes `messages` persistent straight to the queue, in order, and
    /// waits for the broker's confirms.
    pub async fn publish(&self, messages: &[TestMessage]) {
        let (connection, channel) = channel().await;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        for message in messages {
            channel
                .basic_publish(
                    "".into(),
                    self.queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &message.body,
                    message.properties(),
                )
                .await
                .expect("publish");
        }
        let returned = channel.wait_for_confirms().await.expect("confirms");
        assert!(returned.is_empty());
        let _ = connection.close(200, "done".into()).await;
    }

    /// Ready messages on the queue (not those a consumer holds unacknowledged).
    pub async fn depth(&self) -> u32 {
        depth_of(&self.queue).await
    }

    /// Ready messages on the dead-letter queue.
    pub async fn dead_letter_depth(&self) -> u32 {
        depth_of(&self.dead_letter()).await
    }

    /// Takes `count` messages off the queue, waiting up to 10 s for them;
    /// fewer if fewer came.
    pub async fn take(&self, count: usize) -> Vec<QueuedMessage> {
        take_from(&self.queue, count).await
    }

    /// Takes whatever is on the queue now, without waiting.
    pub async fn take_all(&self) -> Vec<QueuedMessage> {
        take_all(&self.queue, usize::MAX).await
    }

    /// Takes every message on the queue now, fast (a consumer with a large
    /// prefetch rather than one `basic.get` each), for bursts of thousands.
    /// Call it once nothing publishes any more.
    pub async fn drain(&self) -> Vec<QueuedMessage> {
        let (connection, channel) = channel().await;
        let count = channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await
            .expect("the queue exists")
            .message_count() as usize;
        let mut consumer = consume_no_ack(&channel, &self.queue, "drain").await;
        let mut taken = Vec::with_capacity(count);
        while taken.len() < count {
            let next = tokio::time::timeout(Duration::from_secs(30), consumer.next()).await;
            let Ok(Some(Ok(delivery))) = next else { break };
            taken.push(delivery.into());
        }
        let _ = connection.close(200, "done".into()).await;
        taken
    }

    /// Takes whatever is on the dead-letter queue now.
    pub async fn take_dead_letters(&self) -> Vec<QueuedMessage> {
        take_all(&self.dead_letter(), usize::MAX).await
    }

    /// The dead letters as the management UI's "Get messages" shows them
    /// (properties and payload as JSON), left in the queue.
    pub async fn peek_dead_letters(&self) -> Vec<Value> {
        let path = format!(
            "{}/api/queues/%2F/{}/get",
            management_url(),
            encoded(&self.dead_letter())
        );
        let body = json!({"count": 1000, "ackmode": "ack_requeue_true", "encoding": "auto"});
        let response = management()
            .post(path)
            .basic_auth("guest", Some("guest"))
            .json(&body)
            .send()
            .await
            .expect(UNREACHABLE);
        assert!(response.status().is_success(), "get messages: {}", response.status());
        response.json().await.expect("a JSON list of messages")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let dead_letter = encoded(&self.dead_letter());
        let unrouted = encoded(&self.unrouted());
        let unrouted_dead_letter = encoded(&format!("{}.dead-letter", self.unrouted()));
        let mut paths = vec![
            format!("queues/%2F/{unrouted_dead_letter}"),
            format!("exchanges/%2F/{unrouted_dead_letter}"),
            self.queue_path(&self.queue),
            format!("queues/%2F/{dead_letter}"),
            format!("exchanges/%2F/{}", encoded(&self.exchange)),
            format!("exchanges/%2F/{dead_letter}"),
            format!("queues/%2F/{unrouted}"),
            format!("exchanges/%2F/{unrouted}"),
        ];
        let others = std::mem::take(&mut *self.others.lock().unwrap_or_else(|e| e.into_inner()));
        for other in others {
            let dead_letter = encoded(&format!("{other}.dead-letter"));
            paths.extend([
                self.queue_path(&other),
                format!("queues/%2F/{dead_letter}"),
                format!("exchanges/%2F/{dead_letter}"),
            ]);
        }
        delete_now(paths);
    }
}

// ---- messages --------------------------------------------------------------------

/// A message as the forwarder publishes it, for relay tests to start from.
/// Written from the documented contract (docs/message-format.md), not from
/// the product's code, so a change to the format shows up here.
#[derive(Debug, Clone)]
pub struct TestMessage {
    /// `message_id`.
    pub id: String,
    /// `x-http-method`.
    pub method: String,
    /// `x-http-query`.
    pub query: String,
    /// `content_type`, or `x-http-content-type` when longer than 255 bytes.
    pub content_type: Option<String>,
    /// The payload.
    pub body: Vec<u8>,
}

impl TestMessage {
    /// A form-encoded POST like e-conomic's, with a fresh id.
    pub fn post(body: impl Into<Vec<u8>>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            method: "POST".to_owned(),
            query: "type=product".to_owned(),
            content_type: Some("application/x-www-form-urlencoded".to_owned()),
            body: body.into(),
        }
    }

    /// `count` POSTs whose bodies (text with a counter, then bytes that are
    /// not UTF-8) each differ.
    pub fn many(count: usize, label: &str) -> Vec<Self> {
        (0..count)
            .map(|i| {
                let mut body = format!("{label}={i}&old=101&new=102").into_bytes();
                body.extend_from_slice(&[0, 0xff, (i % 251) as u8]);
                Self::post(body)
            })
            .collect()
    }

    /// Its AMQP properties, as the contract describes them.
    pub fn properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        headers.insert("x-http-method".into(), text(&self.method));
        headers.insert("x-http-query".into(), text(&self.query));
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(self.id.as_str().into())
            .with_timestamp(timestamp)
            .with_app_id("e-conomic-webhook-forwarder".into());
        match self.content_type.as_deref() {
            Some(ct) if ct.len() > 255 => {
                headers.insert("x-http-content-type".into(), text(ct));
            }
            Some(ct) => properties = properties.with_content_type(ct.into()),
            None => {}
        }
        properties.with_headers(headers)
    }
}

/// A message read back off a queue, over AMQP.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// The payload, byte for byte.
    pub body: Vec<u8>,
    /// The properties as JSON, named as the management UI names them
    /// (`delivery_mode`, `content_type`, `headers`, ...); absent ones left out.
    pub properties: Value,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Whether the broker had delivered it before (a requeue).
    pub redelivered: bool,
}

impl QueuedMessage {
    /// `message_id`, or "" when it has none.
    pub fn id(&self) -> String {
        self.properties["message_id"].as_str().unwrap_or_default().to_owned()
    }

    /// One header as text (numbers written out), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        match &self.properties["headers"][name] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

impl From<lapin::message::Delivery> for QueuedMessage {
    fn from(delivery: lapin::message::Delivery) -> Self {
        Self {
            properties: properties_json(&delivery.properties),
            routing_key: delivery.routing_key.to_string(),
            redelivered: delivery.redelivered,
            body: delivery.data,
        }
    }
}

/// A consumer on `queue` that takes its messages off as they come (no
/// acknowledgements): for reading a queue back fast.
pub async fn consume_no_ack(channel: &Channel, queue: &str, tag: &str) -> Consumer {
    channel
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("basic.consume")
}

/// A fresh connection; tests open one per call so that a broker restart
/// never leaves them holding a dead one.
pub async fn connect() -> Connection {
    Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect(UNREACHABLE)
}

async fn channel() -> (Connection, Channel) {
    channel_in("/").await
}

async fn channel_in(vhost: &str) -> (Connection, Channel) {
    let url = format!("amqp://guest:guest@127.0.0.1:{}/{}", amqp_port(), encoded(vhost));
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect(UNREACHABLE);
    let channel = connection.create_channel().await.expect("a channel");
    (connection, channel)
}

async fn depth_of(queue: &str) -> u32 {
    let (connection, channel) = channel().await;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::default().passive(),
            FieldTable::default(),
        )
        .await
        .expect("the queue exists");
    let _ = connection.close(200, "done".into()).await;
    declared.message_count()
}

/// Takes the next ready message on `queue` and hands it back (`basic.nack`
/// with requeue), `times` times, as a consumer that is stopped or loses its
/// connection while holding it does.
pub async fn return_to_queue(queue: &str, times: usize) {
    let (connection, channel) = channel().await;
    for _ in 0..times {
        let message = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .expect("basic.get")
            .expect("a message to return");
        message
            .delivery
            .acker
            .nack(lapin::options::BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .expect("basic.nack");
    }
    let _ = connection.close(200, "done".into()).await;
}

/// Rejects the next ready message on `queue` without requeueing it, as a
/// consumer that can never handle it does: the broker dead-letters it.
pub async fn reject_one(queue: &str) {
    let (connection, channel) = channel().await;
    let message = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
        .expect("a message to reject");
    message
        .delivery
        .acker
        .reject(lapin::options::BasicRejectOptions { requeue: false })
        .await
        .expect("basic.reject");
    let _ = connection.close(200, "done".into()).await;
}

/// Takes `count` messages off `queue` in the default vhost, waiting up to
/// 10 s for them; fewer if fewer came.
pub async fn take_from(queue: &str, count: usize) -> Vec<QueuedMessage> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut taken = Vec::new();
    while taken.len() < count {
        taken.extend(take_all(queue, count - taken.len()).await);
        if taken.len() >= count || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    taken
}

/// Takes up to `limit` ready messages off `queue` in the default vhost,
/// acknowledging them.
pub async fn take_all(queue: &str, limit: usize) -> Vec<QueuedMessage> {
    take_all_in("/", queue, limit).await
}

/// Takes up to `limit` ready messages off `queue` in `vhost`, acknowledging them.
pub async fn take_all_in(vhost: &str, queue: &str, limit: usize) -> Vec<QueuedMessage> {
    let (connection, channel) = channel_in(vhost).await;
    let mut taken = Vec::new();
    let no_ack = BasicGetOptions { no_ack: true };
    while taken.len() < limit {
        let Some(message) = channel.basic_get(queue.into(), no_ack).await.expect("basic.get") else {
            break;
        };
        taken.push(message.delivery.into());
    }
    let _ = connection.close(200, "done".into()).await;
    taken
}

/// AMQP properties as the management API shows them.
pub fn properties_json(properties: &BasicProperties) -> Value {
    let mut json = Map::new();
    let mut text = |name: &str, value: &Option<lapin::types::ShortString>| {
        if let Some(value) = value {
            json.insert(name.to_owned(), Value::String(value.as_str().to_owned()));
        }
    };
    text("content_type", properties.content_type());
    text("content_encoding", properties.content_encoding());
    text("correlation_id", properties.correlation_id());
    text("reply_to", properties.reply_to());
    text("expiration", properties.expiration());
    text("message_id", properties.message_id());
    text("type", properties.kind());
    text("user_id", properties.user_id());
    text("app_id", properties.app_id());
    text("cluster_id", properties.cluster_id());
    if let Some(mode) = properties.delivery_mode() {
        json.insert("delivery_mode".to_owned(), json!(mode));
    }
    if let Some(priority) = properties.priority() {
        json.insert("priority".to_owned(), json!(priority));
    }
    if let Some(timestamp) = properties.timestamp() {
        json.insert("timestamp".to_owned(), json!(timestamp));
    }
    if let Some(headers) = properties.headers() {
        let table = headers
            .inner()
            .iter()
            .map(|(name, value)| (name.to_string(), value_json(value)))
            .collect();
        json.insert("headers".to_owned(), Value::Object(table));
    }
    Value::Object(json)
}

fn value_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Value::String(s.to_string()),
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Timestamp(n) => json!(n),
        AMQPValue::FieldArray(items) => Value::Array(items.as_slice().iter().map(value_json).collect()),
        AMQPValue::FieldTable(table) => Value::Object(
            table
                .inner()
                .iter()
                .map(|(name, value)| (name.to_string(), value_json(value)))
                .collect(),
        ),
        other => Value::String(format!("{other:?}")),
    }
}
