//! The local broker through its management API: a fresh topology per phase,
//! and the readback of every message that reached the queue.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

const API: &str = "http://127.0.0.1:15672/api";

/// An exchange bound to a durable queue, both named for one bench phase.
pub struct BenchTopology {
    /// The exchange.
    pub exchange: String,
    /// The queue.
    pub queue: String,
    client: reqwest::Client,
}

impl BenchTopology {
    /// Declares the seed's topology under unique names.
    pub async fn declare(label: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let topology = Self {
            exchange: format!("bench-{label}-{id}.direct"),
            queue: format!("bench-{label}-{id}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(300))
                .build()
                .expect("client"),
        };
        topology
            .call(
                reqwest::Method::PUT,
                &format!("exchanges/%2F/{}", topology.exchange),
                json!({ "type": "direct", "durable": true }),
            )
            .await;
        // x-expires: an interrupted run's queue (and its messages) goes away within the hour.
        topology
            .call(
                reqwest::Method::PUT,
                &format!("queues/%2F/{}", topology.queue),
                json!({ "durable": true, "arguments": { "x-expires": 3_600_000 } }),
            )
            .await;
        topology
            .call(
                reqwest::Method::POST,
                &format!("bindings/%2F/e/{}/q/{}", topology.exchange, topology.queue),
                json!({ "routing_key": "webhook" }),
            )
            .await;
        topology
    }

    /// The publish endpoint.
    pub fn endpoint(&self) -> String {
        format!("{API}/exchanges/%2F/{}/publish", self.exchange)
    }

    /// Takes every message off the queue and returns the payloads.
    pub async fn drain(&self) -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        loop {
            let answer = self
                .call(
                    reqwest::Method::POST,
                    &format!("queues/%2F/{}/get", self.queue),
                    json!({ "count": 5000, "ackmode": "ack_requeue_false", "encoding": "base64" }),
                )
                .await;
            let messages = answer.as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                return payloads;
            }
            for message in messages {
                let payload = message["payload"].as_str().unwrap_or_default();
                payloads.push(BASE64.decode(payload).expect("the broker sends base64"));
            }
        }
    }

    /// Deletes the queue and the exchange.
    pub async fn delete(self) {
        for path in [
            format!("queues/%2F/{}", self.queue),
            format!("exchanges/%2F/{}", self.exchange),
        ] {
            let _ = self
                .client
                .delete(format!("{API}/{path}"))
                .basic_auth("guest", Some("guest"))
                .send()
                .await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .client
            .request(method, format!("{API}/{path}"))
            .basic_auth("guest", Some("guest"))
            .json(&body)
            .send()
            .await
            .expect("the management API answers: run scripts/broker-up");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap_or(Value::Null)
    }
}
