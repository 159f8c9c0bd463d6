//! The real local RabbitMQ, over AMQP: queues of the test's own (unique names,
//! auto-expiring), messages published in the forwarder's format, and what is
//! left on a queue read back.

use std::time::{SystemTime, UNIX_EPOCH};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// The local broker as `guest`.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2F";

/// Unused test queues disappear after this long, even if a test panicked.
const EXPIRES_MS: i32 = 10 * 60 * 1000;

/// A fresh connection; the tests open one per call so that a broker restart
/// never leaves them holding a dead one.
pub async fn connect() -> Connection {
    Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672: run the README's test command, which starts it")
}

async fn channel() -> (Connection, Channel) {
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// A message as the forwarder publishes it.
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

    fn properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        headers.insert("x-http-method".into(), text(&self.method));
        headers.insert("x-http-query".into(), text(&self.query));
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(self.id.as_str().into())
            .with_timestamp(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs())
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

/// A message read back off a queue.
#[derive(Debug)]
pub struct Taken {
    /// Its properties.
    pub properties: BasicProperties,
    /// Its payload.
    pub body: Vec<u8>,
}

impl Taken {
    /// `message_id`.
    pub fn id(&self) -> String {
        self.properties.message_id().as_ref().unwrap().to_string()
    }

    /// One header, whatever its type, as the management UI would print it.
    pub fn header(&self, name: &str) -> Option<String> {
        let value = self.properties.headers().as_ref()?.inner().get(name)?;
        Some(match value {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.to_string(),
            AMQPValue::LongLongInt(n) => n.to_string(),
            AMQPValue::LongInt(n) => n.to_string(),
            other => format!("{other:?}"),
        })
    }
}

/// A durable queue of the test's own; with `handler setup --dead-letter`'s
/// topology (`Q.dead-letter` fanout exchange and queue) or without.
pub struct TestQueue {
    /// The queue's name.
    pub name: String,
}

impl TestQueue {
    /// A queue with its dead-letter exchange and queue.
    pub async fn with_dead_letter() -> Self {
        let queue = Self::named();
        let (connection, channel) = channel().await;
        let dead_letter = queue.dead_letter();
        channel
            .exchange_declare(
                dead_letter.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    // Goes when its queue expires and unbinds.
                    auto_delete: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        declare(&channel, &dead_letter, None).await;
        channel
            .queue_bind(
                dead_letter.as_str().into(),
                dead_letter.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        declare(&channel, &queue.name, Some(&dead_letter)).await;
        connection.close(200, "done".into()).await.unwrap();
        queue
    }

    /// A queue with no dead-letter exchange at all.
    pub async fn without_dead_letter() -> Self {
        let queue = Self::named();
        let (connection, channel) = channel().await;
        declare(&channel, &queue.name, None).await;
        connection.close(200, "done".into()).await.unwrap();
        queue
    }

    /// A fresh name; nothing declared.
    pub fn named() -> Self {
        Self {
            name: format!("test-relay-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// `Q.dead-letter`.
    pub fn dead_letter(&self) -> String {
        format!("{}.dead-letter", self.name)
    }

    /// Publishes `messages` persistent, in order, and waits for the broker's confirms.
    pub async fn publish(&self, messages: &[TestMessage]) {
        let (connection, channel) = channel().await;
        channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        for message in messages {
            channel
                .basic_publish(
                    "".into(),
                    self.name.as_str().into(),
                    BasicPublishOptions::default(),
                    &message.body,
                    message.properties(),
                )
                .await
                .unwrap();
        }
        let returned = channel.wait_for_confirms().await.unwrap();
        assert!(returned.is_empty());
        connection.close(200, "done".into()).await.unwrap();
    }

    /// Ready messages on the queue (not those a consumer holds unacknowledged).
    pub async fn depth(&self) -> u32 {
        depth_of(&self.name).await
    }

    /// Takes every ready message off the queue.
    pub async fn take_all(&self) -> Vec<Taken> {
        take_all(&self.name).await
    }

    /// Takes every message off the dead-letter queue.
    pub async fn take_dead_letters(&self) -> Vec<Taken> {
        take_all(&self.dead_letter()).await
    }
}

async fn declare(channel: &Channel, name: &str, dead_letter_exchange: Option<&str>) {
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(EXPIRES_MS));
    if let Some(exchange) = dead_letter_exchange {
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from(exchange)),
        );
    }
    channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .unwrap();
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
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
    declared.message_count()
}

async fn take_all(queue: &str) -> Vec<Taken> {
    let (connection, channel) = channel().await;
    let mut taken = Vec::new();
    let no_ack = BasicGetOptions { no_ack: true };
    while let Some(message) = channel.basic_get(queue.into(), no_ack).await.unwrap() {
        let delivery = message.delivery;
        taken.push(Taken {
            properties: delivery.properties,
            body: delivery.data,
        });
    }
    connection.close(200, "done".into()).await.unwrap();
    taken
}

/// Closes, through the management API, every connection whose client named
/// it `connection_name`, as a network failure or an operator would; waits
/// (up to 30 s) for the broker's connection list to show one first.
pub async fn close_connections_named(connection_name: &str) -> usize {
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let listed: Vec<serde_json::Value> = client
            .get("http://127.0.0.1:15672/api/connections?columns=name,user_provided_name")
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .expect("management API on 127.0.0.1:15672")
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = listed
            .iter()
            .filter(|c| c["user_provided_name"] == connection_name)
            .filter_map(|c| c["name"].as_str())
            .collect();
        for name in &names {
            let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
            let response = client
                .delete(format!("http://127.0.0.1:15672/api/connections/{encoded}"))
                .basic_auth("guest", Some("guest"))
                .header("X-Reason", "test: connection lost")
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "closing {name}: {}", response.status());
        }
        if !names.is_empty() {
            return names.len();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection named {connection_name:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Names for `handler setup` to declare (durable, never auto-deleted), and a
/// guard that deletes what it declared when the test ends, passed or not.
pub struct SetUpNames {
    /// The exchange the forwarder publishes to.
    pub exchange: String,
    /// The queue, as a [`TestQueue`] for reading it back.
    pub queue: TestQueue,
}

impl SetUpNames {
    /// Fresh names nobody else uses.
    pub fn new() -> Self {
        let queue = TestQueue::named();
        Self {
            exchange: format!("{}.direct", queue.name),
            queue,
        }
    }

    /// One `AmqpUrl` for every part (written as the README writes it: no
    /// port, no vhost), and the exchange the forwarder publishes to.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AmqpUrl", "amqp://guest:guest@127.0.0.1/".to_owned()),
            ("AmqpExchange", self.exchange.clone()),
        ]
    }
}

impl Drop for SetUpNames {
    fn drop(&mut self) {
        let dead_letter = self.queue.dead_letter();
        super::common::delete_now(vec![
            format!("queues/%2F/{}", self.queue.name),
            format!("queues/%2F/{dead_letter}"),
            format!("exchanges/%2F/{}", self.exchange),
            format!("exchanges/%2F/{dead_letter}"),
        ]);
    }
}
