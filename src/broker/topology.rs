//! The queue topology the seed clicks together by hand, as data: which
//! exchanges, queues and bindings `handler setup` declares, in order.
//!
//! The names are a contract: consumers (and the relay) rely on them.
//! Everything is durable and never auto-deleted, so it survives a restart.

use serde_json::{Map, Value, json};

/// The seed's queue name, used when `--queue` is not given.
pub const DEFAULT_QUEUE: &str = "e-conomic-webhooks";
/// The seed's message TTL: a webhook nobody took within 7 days is dropped.
pub const DEFAULT_TTL_DAYS: u32 = 7;
/// Largest `--ttl-days` accepted (ten years); 0 means no TTL.
pub const MAX_TTL_DAYS: u32 = 3650;

const MILLIS_PER_DAY: u64 = 24 * 60 * 60 * 1000;

/// `x-delivery-limit` of the quorum queues setup declares: as good as none.
/// RabbitMQ 4.x gives quorum queues a delivery limit of 20 by default and
/// drops (or dead-letters) a message returned to the queue that often: a
/// relay restarted 20 times during an outage would lose it. `-1` turns the
/// limit off on 4.x but makes 3.10 drop a message at its first return (both
/// seen here with 3.10.8 and 4.0.5); the largest limit both take keeps
/// messages on both.
pub const QUORUM_DELIVERY_LIMIT: i64 = 2_147_483_647;

/// The queue argument that lets one consumer at a time take messages, the
/// others standing by until it goes: a standby relay.
pub const SINGLE_ACTIVE_CONSUMER: &str = "x-single-active-consumer";

/// Whether a queue's arguments ask for a single active consumer.
pub fn has_single_active_consumer(arguments: &Map<String, Value>) -> bool {
    arguments.get(SINGLE_ACTIVE_CONSUMER).and_then(Value::as_bool) == Some(true)
}

/// The dead-letter exchange and queue of `queue`: both `<queue>.dead-letter`.
pub fn dead_letter_name(queue: &str) -> String {
    format!("{queue}.dead-letter")
}

/// The alternate exchange of `exchange`, and its queue: both
/// `<exchange>.unrouted`. Webhooks whose key no binding matches go there.
pub fn unrouted_name(exchange: &str) -> String {
    format!("{exchange}.unrouted")
}

/// How the webhook exchange routes, and which keys the queue takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The exchange's type: direct (exact keys) or topic (patterns).
    pub kind: ExchangeKind,
    /// The keys (topic: patterns) the queue is bound with.
    pub binding_keys: Vec<String>,
    /// Unroutable webhooks go to `<exchange>.unrouted` instead of back to
    /// the sender as a 5xx.
    pub alternate_exchange: bool,
}

impl Routing {
    /// The seed's: a direct exchange, one binding with `key`, no alternate exchange.
    pub fn direct(key: &str) -> Self {
        Self {
            kind: ExchangeKind::Direct,
            binding_keys: vec![key.to_owned()],
            alternate_exchange: false,
        }
    }
}

/// What `handler setup` is asked for besides the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// The queue webhooks land in.
    pub queue: String,
    /// Message TTL in days; 0 keeps messages until they are consumed.
    pub ttl_days: u32,
    /// A replicated quorum queue instead of a classic one.
    pub quorum: bool,
    /// Expired or rejected messages go to `<queue>.dead-letter`.
    pub dead_letter: bool,
    /// One consumer at a time gets messages; others stand by
    /// (`x-single-active-consumer`).
    pub single_active_consumer: bool,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            queue: DEFAULT_QUEUE.to_owned(),
            ttl_days: DEFAULT_TTL_DAYS,
            quorum: false,
            dead_letter: false,
            single_active_consumer: false,
        }
    }
}

/// The exchange types setup declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Routes by exact routing key: the webhook exchange, as the seed has it.
    Direct,
    /// Routes by pattern (`webhook.*`, `webhook.#`): a webhook exchange too.
    Topic,
    /// Routes everything: the dead-letter and alternate exchanges, whatever
    /// key a message had.
    Fanout,
}

impl ExchangeKind {
    /// The name RabbitMQ uses for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Topic => "topic",
            Self::Fanout => "fanout",
        }
    }
}

/// A durable exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: ExchangeKind,
    /// Where messages no binding matches go (`alternate-exchange`, fixed
    /// at declaration like the type).
    pub alternate: Option<String>,
}

/// A durable queue and its `x-` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// Its name.
    pub name: String,
    /// Arguments fixed at declaration (RabbitMQ cannot change them later).
    pub arguments: Map<String, Value>,
}

/// A binding from an exchange to a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The source exchange.
    pub exchange: String,
    /// The destination queue.
    pub queue: String,
    /// The routing key (ignored by fanout exchanges, so empty there).
    pub routing_key: String,
}

/// One declaration, in the order setup makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declaration {
    /// Declare an exchange.
    Exchange(Exchange),
    /// Declare a queue.
    Queue(Queue),
    /// Bind a queue to an exchange.
    Binding(Binding),
}

/// Everything to declare for webhooks published to `exchange`, routed as
/// `routing` says: the dead-letter and alternate parts first, so what the
/// main queue and exchange name exists the moment they do.
pub fn plan(exchange: &str, routing: &Routing, options: &QueueOptions) -> Vec<Declaration> {
    let mut declarations = Vec::new();
    let mut arguments = Map::new();
    if options.quorum {
        arguments.insert("x-queue-type".to_owned(), json!("quorum"));
        arguments.insert("x-delivery-limit".to_owned(), json!(QUORUM_DELIVERY_LIMIT));
    }
    // Same type as the main queue; no TTL: dead letters wait for a person.
    let type_only = arguments.clone();
    if options.dead_letter {
        let dead_letter = dead_letter_name(&options.queue);
        declarations.extend(fanout_pair(&dead_letter, &type_only));
        arguments.insert("x-dead-letter-exchange".to_owned(), json!(dead_letter));
    }
    let alternate = routing.alternate_exchange.then(|| unrouted_name(exchange));
    if let Some(unrouted) = &alternate {
        // The same queue serves every setup of the exchange, whatever its
        // --ttl-days: no TTL, and no dead-letter argument (which a later
        // setup without --dead-letter would find different). A relay
        // draining it sets poison messages aside in its own dead-letter
        // pair, which --dead-letter declares beside it.
        if options.dead_letter {
            declarations.extend(fanout_pair(&dead_letter_name(unrouted), &type_only));
        }
        declarations.extend(fanout_pair(unrouted, &type_only));
    }
    if options.single_active_consumer {
        arguments.insert(SINGLE_ACTIVE_CONSUMER.to_owned(), json!(true));
    }
    if options.ttl_days > 0 {
        arguments.insert(
            "x-message-ttl".to_owned(),
            json!(u64::from(options.ttl_days) * MILLIS_PER_DAY),
        );
    }
    declarations.extend([
        Declaration::Exchange(Exchange {
            name: exchange.to_owned(),
            kind: routing.kind,
            alternate,
        }),
        Declaration::Queue(Queue {
            name: options.queue.clone(),
            arguments,
        }),
    ]);
    declarations.extend(routing.binding_keys.iter().map(|key| {
        Declaration::Binding(Binding {
            exchange: exchange.to_owned(),
            queue: options.queue.clone(),
            routing_key: key.clone(),
        })
    }));
    declarations
}

/// A fanout exchange and a durable queue, both `name`, the one bound to
/// the other: where every message sent to the exchange waits (the
/// dead-letter and alternate exchanges).
fn fanout_pair(name: &str, arguments: &Map<String, Value>) -> [Declaration; 3] {
    [
        Declaration::Exchange(Exchange {
            name: name.to_owned(),
            kind: ExchangeKind::Fanout,
            alternate: None,
        }),
        Declaration::Queue(Queue {
            name: name.to_owned(),
            arguments: arguments.clone(),
        }),
        Declaration::Binding(Binding {
            exchange: name.to_owned(),
            queue: name.to_owned(),
            routing_key: String::new(),
        }),
    ]
}

/// A queue's kind and arguments in words: "classic, message TTL 7 days".
pub fn describe_queue(kind: Option<&str>, arguments: &Map<String, Value>) -> String {
    let kind = kind
        .or_else(|| arguments.get("x-queue-type").and_then(Value::as_str))
        .unwrap_or("classic");
    let mut words = vec![kind.to_owned()];
    match arguments.get("x-message-ttl").and_then(Value::as_u64) {
        Some(ms) if ms % MILLIS_PER_DAY == 0 => words.push(format!("message TTL {} days", ms / MILLIS_PER_DAY)),
        Some(ms) => words.push(format!("message TTL {ms} ms")),
        None => words.push("no message TTL".to_owned()),
    }
    if let Some(exchange) = arguments.get("x-dead-letter-exchange").and_then(Value::as_str) {
        words.push(format!("dead letters to {exchange:?}"));
    }
    if has_single_active_consumer(arguments) {
        words.push("single active consumer".to_owned());
    }
    words.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(declarations: &[Declaration], name: &str) -> Queue {
        declarations
            .iter()
            .find_map(|d| match d {
                Declaration::Queue(q) if q.name == name => Some(q.clone()),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn the_default_plan_is_the_seeds_topology() {
        let plan = plan(
            "e-conomic.direct",
            &Routing::direct("webhook"),
            &QueueOptions::default(),
        );
        assert_eq!(
            plan,
            vec![
                Declaration::Exchange(Exchange {
                    name: "e-conomic.direct".into(),
                    kind: ExchangeKind::Direct,
                    alternate: None,
                }),
                Declaration::Queue(Queue {
                    name: "e-conomic-webhooks".into(),
                    arguments: json!({"x-message-ttl": 604_800_000}).as_object().unwrap().clone(),
                }),
                Declaration::Binding(Binding {
                    exchange: "e-conomic.direct".into(),
                    queue: "e-conomic-webhooks".into(),
                    routing_key: "webhook".into()
                }),
            ]
        );
    }

    #[test]
    fn several_binding_keys_bind_the_queue_once_each_on_a_topic_exchange() {
        let routing = Routing {
            kind: ExchangeKind::Topic,
            binding_keys: vec!["webhook.invoice".into(), "webhook.order.#".into()],
            alternate_exchange: false,
        };
        let plan = plan("x", &routing, &QueueOptions::default());
        assert_eq!(
            plan[0],
            Declaration::Exchange(Exchange {
                name: "x".into(),
                kind: ExchangeKind::Topic,
                alternate: None,
            })
        );
        let keys: Vec<&str> = plan
            .iter()
            .filter_map(|d| match d {
                Declaration::Binding(b) if b.queue == DEFAULT_QUEUE => Some(b.routing_key.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(keys, ["webhook.invoice", "webhook.order.#"]);
    }

    #[test]
    fn the_alternate_exchange_is_a_fanout_pair_named_after_the_exchange_declared_first() {
        let routing = Routing {
            alternate_exchange: true,
            ..Routing::direct("webhook.invoice")
        };
        let options = QueueOptions {
            quorum: true,
            ..QueueOptions::default()
        };
        let plan = plan("x", &routing, &options);
        assert_eq!(
            plan[..3],
            [
                Declaration::Exchange(Exchange {
                    name: "x.unrouted".into(),
                    kind: ExchangeKind::Fanout,
                    alternate: None,
                }),
                Declaration::Queue(Queue {
                    name: "x.unrouted".into(),
                    arguments: json!({"x-queue-type": "quorum", "x-delivery-limit": QUORUM_DELIVERY_LIMIT})
                        .as_object()
                        .unwrap()
                        .clone(),
                }),
                Declaration::Binding(Binding {
                    exchange: "x.unrouted".into(),
                    queue: "x.unrouted".into(),
                    routing_key: String::new()
                }),
            ]
        );
        assert_eq!(
            plan[3],
            Declaration::Exchange(Exchange {
                name: "x".into(),
                kind: ExchangeKind::Direct,
                alternate: Some("x.unrouted".into()),
            })
        );
    }

    #[test]
    fn with_dead_letters_the_unrouted_queue_gets_a_dead_letter_pair_for_its_relay_but_no_argument() {
        let routing = Routing {
            alternate_exchange: true,
            ..Routing::direct("k")
        };
        let options = QueueOptions {
            dead_letter: true,
            ..QueueOptions::default()
        };
        let plan = plan("x", &routing, &options);
        let exchanges: Vec<&str> = plan
            .iter()
            .filter_map(|d| match d {
                Declaration::Exchange(e) => Some(e.name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            exchanges,
            [
                "e-conomic-webhooks.dead-letter",
                "x.unrouted.dead-letter",
                "x.unrouted",
                "x"
            ]
        );
        assert!(queue(&plan, "x.unrouted").arguments.is_empty());
    }

    #[test]
    fn ttl_zero_means_no_ttl_argument() {
        let options = QueueOptions {
            ttl_days: 0,
            ..QueueOptions::default()
        };
        assert!(
            queue(&plan("x", &Routing::direct("k"), &options), DEFAULT_QUEUE)
                .arguments
                .is_empty()
        );
    }

    #[test]
    fn dead_letter_adds_a_fanout_exchange_and_queue_named_after_the_queue() {
        let options = QueueOptions {
            queue: "q".into(),
            dead_letter: true,
            ..QueueOptions::default()
        };
        let plan = plan("x", &Routing::direct("k"), &options);
        assert_eq!(
            plan[..3],
            [
                Declaration::Exchange(Exchange {
                    name: "q.dead-letter".into(),
                    kind: ExchangeKind::Fanout,
                    alternate: None,
                }),
                Declaration::Queue(Queue {
                    name: "q.dead-letter".into(),
                    arguments: Map::new()
                }),
                Declaration::Binding(Binding {
                    exchange: "q.dead-letter".into(),
                    queue: "q.dead-letter".into(),
                    routing_key: String::new()
                }),
            ]
        );
        assert_eq!(queue(&plan, "q").arguments["x-dead-letter-exchange"], "q.dead-letter");
    }

    #[test]
    fn quorum_makes_both_queues_quorum_queues() {
        let options = QueueOptions {
            quorum: true,
            dead_letter: true,
            ..QueueOptions::default()
        };
        let plan = plan("x", &Routing::direct("k"), &options);
        assert_eq!(queue(&plan, DEFAULT_QUEUE).arguments["x-queue-type"], "quorum");
        for name in [DEFAULT_QUEUE.to_owned(), dead_letter_name(DEFAULT_QUEUE)] {
            assert_eq!(
                queue(&plan, &name).arguments["x-delivery-limit"],
                QUORUM_DELIVERY_LIMIT,
                "{name}: RabbitMQ 4.x's default limit of 20 returns would drop messages"
            );
        }
        assert_eq!(
            queue(&plan, &dead_letter_name(DEFAULT_QUEUE)).arguments["x-queue-type"],
            "quorum"
        );
    }

    #[test]
    fn queues_are_described_in_words() {
        let options = QueueOptions {
            dead_letter: true,
            ..QueueOptions::default()
        };
        let main = queue(&plan("x", &Routing::direct("k"), &options), DEFAULT_QUEUE);
        assert_eq!(
            describe_queue(None, &main.arguments),
            "classic, message TTL 7 days, dead letters to \"e-conomic-webhooks.dead-letter\""
        );
        let odd = json!({"x-message-ttl": 1500}).as_object().unwrap().clone();
        assert_eq!(describe_queue(Some("quorum"), &odd), "quorum, message TTL 1500 ms");
        assert_eq!(describe_queue(None, &Map::new()), "classic, no message TTL");
    }

    #[test]
    fn the_longest_ttl_fits_the_broker() {
        let options = QueueOptions {
            ttl_days: MAX_TTL_DAYS,
            ..QueueOptions::default()
        };
        // RabbitMQ 3.10 took 315360000000 ms and refused 2^63-1 as too large.
        assert_eq!(
            queue(&plan("x", &Routing::direct("k"), &options), DEFAULT_QUEUE).arguments["x-message-ttl"],
            315_360_000_000_u64
        );
    }

    #[test]
    fn single_active_consumer_is_a_queue_argument_and_described() {
        let options = QueueOptions {
            single_active_consumer: true,
            ..QueueOptions::default()
        };
        let queue = queue(&plan("x", &Routing::direct("k"), &options), DEFAULT_QUEUE);
        assert_eq!(queue.arguments[SINGLE_ACTIVE_CONSUMER], true);
        assert!(has_single_active_consumer(&queue.arguments));
        assert_eq!(
            describe_queue(None, &queue.arguments),
            "classic, message TTL 7 days, single active consumer"
        );
        let plain = queue_arguments_of_default();
        assert!(!has_single_active_consumer(&plain));
    }

    fn queue_arguments_of_default() -> Map<String, Value> {
        queue(
            &plan("x", &Routing::direct("k"), &QueueOptions::default()),
            DEFAULT_QUEUE,
        )
        .arguments
    }
}
