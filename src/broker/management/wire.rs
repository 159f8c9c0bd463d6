//! The management API's JSON: what setup sends to declare, and the parts of
//! the answers that check reads. Unknown fields are ignored.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::broker::topology::{Binding, Exchange, Queue};

/// `GET /api/whoami`.
#[derive(Debug, Clone, Deserialize)]
pub struct WhoAmI {
    /// The user name.
    pub name: String,
    /// `["administrator"]` on 3.9+, `"administrator"` on older brokers.
    #[serde(default)]
    pub tags: Value,
}

impl WhoAmI {
    /// The tags as one comma-separated line, whichever form the broker sent.
    pub fn tags(&self) -> String {
        match &self.tags {
            Value::Array(tags) => tags.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
            Value::String(tags) => tags.clone(),
            _ => String::new(),
        }
    }
}

/// `GET /api/exchanges/{vhost}/{name}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ExchangeInfo {
    /// `direct`, `fanout`, `topic`, `headers`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last binding goes.
    #[serde(default)]
    pub auto_delete: bool,
    /// Internal exchanges take no publishes.
    #[serde(default)]
    pub internal: bool,
    /// Its arguments (`alternate-exchange`).
    #[serde(default)]
    pub arguments: Map<String, Value>,
}

impl ExchangeInfo {
    /// Where messages no binding matches go, if anywhere.
    pub fn alternate_exchange(&self) -> Option<&str> {
        self.arguments.get("alternate-exchange").and_then(Value::as_str)
    }
}

/// `GET /api/queues/{vhost}/{name}`.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueInfo {
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last consumer goes.
    #[serde(default)]
    pub auto_delete: bool,
    /// Belongs to one connection and goes with it.
    #[serde(default)]
    pub exclusive: bool,
    /// `classic`, `quorum` or `stream`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The `x-` arguments it was declared with.
    #[serde(default)]
    pub arguments: Map<String, Value>,
    /// The policy keys in force on it (an object, or `[]` when none).
    #[serde(default)]
    pub effective_policy_definition: Value,
    /// The `timestamp` property of its oldest ready message: a classic
    /// queue's, when it holds one (null when empty); a quorum queue has none.
    #[serde(default)]
    pub head_message_timestamp: Value,
    /// The nodes a quorum queue is replicated on (none for a classic queue).
    #[serde(default)]
    pub members: Vec<String>,
}

impl QueueInfo {
    /// Whether RabbitMQ 4.x's default delivery limit applies: a quorum
    /// queue with neither an `x-delivery-limit` argument nor a
    /// `delivery-limit` policy drops (or dead-letters) a message that was
    /// returned to it 20 times.
    pub fn has_default_delivery_limit(&self) -> bool {
        let quorum = self.kind.as_deref() == Some("quorum")
            || self.arguments.get("x-queue-type").and_then(Value::as_str) == Some("quorum");
        quorum
            && !self.arguments.contains_key("x-delivery-limit")
            && self.effective_policy_definition.get("delivery-limit").is_none()
    }

    /// How long a message may wait in it before the broker drops it (or
    /// dead-letters it): the `x-message-ttl` argument or the `message-ttl`
    /// policy key, the shorter when both are set, as RabbitMQ applies them.
    pub fn message_ttl(&self) -> Option<Duration> {
        let argument = self.arguments.get("x-message-ttl").and_then(Value::as_u64);
        let policy = self
            .effective_policy_definition
            .get("message-ttl")
            .and_then(Value::as_u64);
        argument.into_iter().chain(policy).min().map(Duration::from_millis)
    }

    /// The `timestamp` (seconds since the Unix epoch) of its oldest ready
    /// message, when the broker tells it.
    pub fn oldest_message_timestamp(&self) -> Option<u64> {
        self.head_message_timestamp.as_u64()
    }

    /// Whether a persistent message in it survives a restart and waits for a
    /// consumer: durable, and not tied to a connection or a consumer.
    pub fn keeps_messages(&self) -> bool {
        self.durable && !self.auto_delete && !self.exclusive
    }
}

/// One entry of `GET /api/exchanges/{vhost}/{name}/bindings/source`.
#[derive(Debug, Clone, Deserialize)]
pub struct BindingInfo {
    /// The queue or exchange bound.
    pub destination: String,
    /// `queue` or `exchange`.
    pub destination_type: String,
    /// The binding's routing key.
    pub routing_key: String,
}

/// The body of `PUT /api/exchanges/{vhost}/{name}`.
#[derive(Debug, Serialize)]
pub struct DeclareExchange {
    #[serde(rename = "type")]
    kind: &'static str,
    durable: bool,
    auto_delete: bool,
    internal: bool,
    arguments: Map<String, Value>,
}

impl From<&Exchange> for DeclareExchange {
    fn from(exchange: &Exchange) -> Self {
        Self {
            kind: exchange.kind.as_str(),
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: exchange
                .alternate
                .iter()
                .map(|alternate| ("alternate-exchange".to_owned(), Value::from(alternate.as_str())))
                .collect(),
        }
    }
}

/// The body of `PUT /api/queues/{vhost}/{name}`.
#[derive(Debug, Serialize)]
pub struct DeclareQueue<'a> {
    durable: bool,
    auto_delete: bool,
    arguments: &'a Map<String, Value>,
}

impl<'a> From<&'a Queue> for DeclareQueue<'a> {
    fn from(queue: &'a Queue) -> Self {
        Self {
            durable: true,
            auto_delete: false,
            arguments: &queue.arguments,
        }
    }
}

/// The body of `POST /api/bindings/{vhost}/e/{exchange}/q/{queue}`.
#[derive(Debug, Serialize)]
pub struct DeclareBinding<'a> {
    routing_key: &'a str,
    arguments: Map<String, Value>,
}

impl<'a> From<&'a Binding> for DeclareBinding<'a> {
    fn from(binding: &'a Binding) -> Self {
        Self {
            routing_key: &binding.routing_key,
            arguments: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::broker::topology::ExchangeKind;

    #[test]
    fn declare_bodies_are_the_documented_ones() {
        let exchange = Exchange {
            name: "x".into(),
            kind: ExchangeKind::Direct,
            alternate: None,
        };
        assert_eq!(
            serde_json::to_value(DeclareExchange::from(&exchange)).unwrap(),
            json!({"type":"direct","durable":true,"auto_delete":false,"internal":false,"arguments":{}})
        );
        let with_alternate = Exchange {
            kind: ExchangeKind::Topic,
            alternate: Some("x.unrouted".into()),
            ..exchange
        };
        assert_eq!(
            serde_json::to_value(DeclareExchange::from(&with_alternate)).unwrap(),
            json!({"type":"topic","durable":true,"auto_delete":false,"internal":false,
                   "arguments":{"alternate-exchange":"x.unrouted"}})
        );
        let queue = Queue {
            name: "q".into(),
            arguments: json!({"x-message-ttl": 604_800_000}).as_object().unwrap().clone(),
        };
        assert_eq!(
            serde_json::to_value(DeclareQueue::from(&queue)).unwrap(),
            json!({"durable":true,"auto_delete":false,"arguments":{"x-message-ttl":604_800_000}})
        );
    }

    #[test]
    fn only_a_quorum_queue_without_a_limit_has_the_default_delivery_limit() {
        let queue = |value: Value| serde_json::from_value::<QueueInfo>(value).unwrap();
        assert!(
            queue(json!({"durable": true, "type": "quorum", "effective_policy_definition": []}))
                .has_default_delivery_limit()
        );
        assert!(!queue(json!({"durable": true, "type": "classic"})).has_default_delivery_limit());
        assert!(
            !queue(json!({"durable": true, "type": "quorum", "arguments": {"x-delivery-limit": 5}}))
                .has_default_delivery_limit()
        );
        assert!(
            !queue(json!({"durable": true, "type": "quorum", "effective_policy_definition": {"delivery-limit": -1}}))
                .has_default_delivery_limit()
        );
    }

    #[test]
    fn the_message_ttl_is_the_argument_or_the_policy_whichever_is_shorter() {
        let queue = |value: Value| serde_json::from_value::<QueueInfo>(value).unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(queue(json!({"durable": true})).message_ttl(), None);
        assert_eq!(
            queue(
                json!({"durable": true, "arguments": {"x-message-ttl": 86_400_000}, "effective_policy_definition": []})
            )
            .message_ttl(),
            Some(day)
        );
        assert_eq!(
            queue(json!({"durable": true, "effective_policy_definition": {"message-ttl": 86_400_000}})).message_ttl(),
            Some(day)
        );
        assert_eq!(
            queue(json!({"durable": true, "arguments": {"x-message-ttl": 604_800_000},
                         "effective_policy_definition": {"message-ttl": 86_400_000}}))
            .message_ttl(),
            Some(day)
        );
    }

    #[test]
    fn the_oldest_message_timestamp_is_read_when_the_broker_gives_one() {
        let queue = |value: Value| serde_json::from_value::<QueueInfo>(value).unwrap();
        let classic = queue(json!({"durable": true, "type": "classic", "head_message_timestamp": 1_700_000_000}));
        assert_eq!(classic.oldest_message_timestamp(), Some(1_700_000_000));
        // Empty classic queues say null; quorum queues leave the field out.
        let empty = queue(json!({"durable": true, "type": "classic", "head_message_timestamp": null}));
        assert_eq!(empty.oldest_message_timestamp(), None);
        assert_eq!(
            queue(json!({"durable": true, "type": "quorum"})).oldest_message_timestamp(),
            None
        );
    }

    #[test]
    fn tags_read_in_both_forms() {
        let new: WhoAmI = serde_json::from_value(json!({"name":"guest","tags":["administrator","x"]})).unwrap();
        assert_eq!(new.tags(), "administrator,x");
        let old: WhoAmI = serde_json::from_value(json!({"name":"guest","tags":"administrator"})).unwrap();
        assert_eq!(old.tags(), "administrator");
    }

    #[test]
    fn only_durable_queues_not_tied_to_a_connection_keep_messages() {
        let queue = |durable, auto_delete, exclusive| QueueInfo {
            durable,
            auto_delete,
            exclusive,
            kind: None,
            arguments: Map::new(),
            effective_policy_definition: Value::Null,
            head_message_timestamp: Value::Null,
            members: Vec::new(),
        };
        assert!(queue(true, false, false).keeps_messages());
        assert!(!queue(false, false, false).keeps_messages());
        assert!(!queue(true, true, false).keeps_messages());
        assert!(!queue(true, false, true).keeps_messages());
    }
}
