//! Where the keys go: the durable queues a routing key reaches through the
//! exchange's bindings (exact keys, or topic patterns), or else through
//! its alternate exchange. A plain `AmqpRoutingKey` is followed once; a
//! template once per webhook type (`--type`), rendered as for a webhook
//! whose query is `type=NAME`, as the forwarder would render it.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::broker::management::ManagementApi;
use crate::broker::management::wire::{BindingInfo, ExchangeInfo, QueueInfo};
use crate::broker::message::WebhookParts;
use crate::broker::routing::binding_matches;
use crate::broker::routing_key::{self, RoutingKey};
use crate::broker::topology::{describe_queue, has_single_active_consumer};

use super::Checklist;

/// The types `handler check` follows when no `--type` is given: e-conomic's
/// webhook types (docs/routing.md lists them), as `?type=` names.
pub const DEFAULT_TYPES: &[&str] = &[
    "invoice",
    "daybook",
    "customer",
    "product",
    "project",
    "order",
    "quotation",
    "cashbook",
];

/// An exchange that routes by key, read once: its bindings and those of its
/// alternate exchange, and every queue looked at so far.
pub(super) struct Exchange<'a> {
    api: &'a ManagementApi,
    name: &'a str,
    kind: String,
    bindings: Vec<BindingInfo>,
    alternate: Option<Alternate>,
    queues: HashMap<String, Queue>,
    /// Queues already said to have no single active consumer: once is enough.
    shared_told: HashSet<String>,
}

/// The alternate exchange, when it exists.
struct Alternate {
    name: String,
    kind: String,
    bindings: Vec<BindingInfo>,
}

/// What a queue is, as far as keeping webhooks goes.
#[derive(Clone)]
enum Queue {
    /// Keeps them: its description in words, and whether 4.x's default
    /// delivery limit applies to it.
    Durable {
        description: String,
        default_limit: bool,
        single_active: bool,
    },
    /// Not durable, or auto-delete, or exclusive.
    Lossy,
    /// Bound, but not there.
    Missing,
    /// The management API failed: why.
    Unreadable(String),
}

impl Queue {
    /// Why webhooks in the queue, reached as `how` says, are not safe.
    fn problem(&self, how: &str) -> Option<String> {
        match self {
            Self::Durable { .. } => None,
            Self::Lossy => Some(format!(
                "{how} but is not durable, or is auto-delete or exclusive: what it holds can be lost"
            )),
            Self::Missing => Some(format!("{how} but could not be found")),
            Self::Unreadable(why) => Some(format!("{how} but could not be read: {why}")),
        }
    }
}

/// Where one key goes.
struct Reach {
    /// The queues bound for it, each with the binding key that matched.
    bound: Vec<(String, String)>,
    /// The alternate exchange's queues, when nothing is bound for it.
    unrouted: Vec<String>,
}

impl<'a> Exchange<'a> {
    /// Reads the bindings of `name` (described by `info`) and of its
    /// alternate exchange; a failure is on the checklist and gives `None`.
    pub(super) async fn read(
        list: &mut Checklist,
        api: &'a ManagementApi,
        name: &'a str,
        info: &ExchangeInfo,
    ) -> Option<Self> {
        let bindings = match api.bindings_from(name).await {
            Ok(bindings) => bindings,
            Err(e) => {
                list.fail(&e.to_string());
                return None;
            }
        };
        let alternate = match info.alternate_exchange() {
            Some(alternate) => read_alternate(list, api, name, alternate).await,
            None => None,
        };
        Some(Self {
            api,
            name,
            kind: info.kind.clone(),
            bindings,
            alternate,
            queues: HashMap::new(),
            shared_told: HashSet::new(),
        })
    }

    /// Follows a plain key: the queues it reaches, or `None` when it
    /// reaches no durable one (the checklist says why).
    pub(super) async fn follow_key(
        &mut self,
        list: &mut Checklist,
        key: &str,
        wanted_queue: Option<&str>,
    ) -> Option<Vec<String>> {
        self.follow(list, key, "", wanted_queue).await
    }

    /// Follows the template's key for each type; `None` when one of them
    /// reaches no durable queue.
    pub(super) async fn follow_types(
        &mut self,
        list: &mut Checklist,
        routing_key: &RoutingKey,
        types: &[String],
        wanted_queue: Option<&str>,
    ) -> Option<Vec<String>> {
        if !routing_key.reads_query("type") {
            list.warn(&format!(
                "setting AmqpRoutingKey {:?} does not read {{query.type}}: each type below is rendered as a webhook whose query is type=NAME, so its placeholders render as their defaults",
                routing_key.as_str()
            ));
        }
        let mut reached = BTreeSet::new();
        let mut all_reach = true;
        for name in types {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("type", name)
                .finish();
            let rendered = routing_key.render(WebhookParts {
                method: "POST",
                query: &query,
                content_type: Some("application/x-www-form-urlencoded"),
                body: b"",
            });
            let mut label = format!("type {name:?}: ");
            if !rendered.replaced.is_empty() {
                label = format!("type {name:?} ({}): ", routing_key::describe(&rendered.replaced));
            }
            match self.follow(list, &rendered.key, &label, wanted_queue).await {
                Some(queues) => reached.extend(queues),
                None => all_reach = false,
            }
        }
        all_reach.then(|| reached.into_iter().collect())
    }

    /// One key: a line per queue it reaches, or why it reaches none.
    async fn follow(
        &mut self,
        list: &mut Checklist,
        key: &str,
        label: &str,
        wanted_queue: Option<&str>,
    ) -> Option<Vec<String>> {
        let reach = self.reach(key);
        let bound: Vec<(String, String)> = reach
            .bound
            .into_iter()
            .filter(|(queue, _)| wanted_queue.is_none_or(|wanted| queue == wanted))
            .collect();
        if bound.is_empty() {
            return self.unrouted(list, key, label, wanted_queue, &reach.unrouted).await;
        }
        let (mut durable, mut lossy) = (Vec::new(), Vec::new());
        for (queue, binding_key) in bound {
            let how = if binding_key == key {
                format!("{label}queue {queue:?} is bound with routing key {key:?}")
            } else {
                format!("{label}queue {queue:?} is bound with {binding_key:?}, which takes routing key {key:?}")
            };
            let found = self.queue(&queue).await;
            match found {
                Queue::Durable {
                    description,
                    default_limit,
                    single_active,
                } => {
                    list.pass(&format!("{how}: durable, {description}"));
                    if default_limit {
                        list.warn(&format!(
                            "queue {queue:?} is a quorum queue without a delivery limit of its own: RabbitMQ 4.x drops (or dead-letters) a message returned to it 20 times, as a relay stopped 20 times while it holds one would; set a policy with \"delivery-limit\": 2147483647 (queues `handler setup --quorum` declares have that argument; -1 would make RabbitMQ 3.x drop messages)"
                        ));
                    }
                    if !single_active && self.shared_told.insert(queue.clone()) {
                        list.pass(&format!(
                            "queue {queue:?} has no single active consumer: relays on it share its messages, so a second `handler relay --order-by` breaks the order; for a standby relay declare a queue with `handler setup --single-active-consumer` (docs/relay.md)"
                        ));
                    }
                    durable.push(format!("{queue:?}"));
                }
                other => lossy.extend(other.problem(&how)),
            }
        }
        // A lossy queue beside a durable one only loses its own copy.
        for text in &lossy {
            if durable.is_empty() {
                list.fail(&format!("{text}; bind a durable queue (`handler setup`)"));
            } else {
                list.warn(text);
            }
        }
        (!durable.is_empty()).then_some(durable)
    }

    /// A key no (wanted) queue is bound for: its webhooks go to the
    /// alternate exchange's queues, or are refused.
    async fn unrouted(
        &mut self,
        list: &mut Checklist,
        key: &str,
        label: &str,
        wanted_queue: Option<&str>,
        unrouted: &[String],
    ) -> Option<Vec<String>> {
        let exchange = self.name;
        if let Some(queue) = wanted_queue {
            list.fail(&format!(
                "{label}queue {queue:?} is not bound to exchange {exchange:?} with routing key {key:?}: a publish would not reach it; run `handler setup --queue {queue}`"
            ));
            return None;
        }
        let alternate = self.alternate.as_ref().map(|a| a.name.clone());
        let (Some(alternate), false) = (alternate, unrouted.is_empty()) else {
            list.fail(&format!(
                "{label}no queue is bound to exchange {exchange:?} with routing key {key:?}: every publish would be dropped (routed:false) and answered 502 for the sender to retry; run `handler setup` (with --binding-key {key}), or give the exchange an alternate exchange (docs/routing.md)"
            ));
            return None;
        };
        let mut durable = Vec::new();
        for queue in unrouted {
            let how = format!("{label}queue {queue:?} is bound to the alternate exchange {alternate:?}");
            match self.queue(queue).await.problem(&how) {
                None => durable.push(queue.clone()),
                Some(problem) => list.warn(&problem),
            }
        }
        if durable.is_empty() {
            list.fail(&format!(
                "{label}no queue is bound to exchange {exchange:?} with routing key {key:?}, and no durable queue is bound to its alternate exchange {alternate:?}"
            ));
            return None;
        }
        let quoted: Vec<String> = durable.iter().map(|queue| format!("{queue:?}")).collect();
        list.warn(&format!(
            "{label}no queue is bound to exchange {exchange:?} with routing key {key:?}: such webhooks go to the alternate exchange {alternate:?} and wait in {} (durable); drain it with `handler relay --queue {}`, or bind a queue for the key",
            quoted.join(", "),
            durable[0]
        ));
        Some(quoted)
    }

    /// The queues bound for `key`, and the alternate exchange's queues.
    fn reach(&self, key: &str) -> Reach {
        let bound = matching_queues(&self.kind, &self.bindings, key);
        let unrouted = match &self.alternate {
            Some(alternate) if bound.is_empty() => matching_queues(&alternate.kind, &alternate.bindings, key)
                .into_iter()
                .map(|(queue, _)| queue)
                .collect(),
            _ => Vec::new(),
        };
        Reach { bound, unrouted }
    }

    /// The queue `name`, read once.
    async fn queue(&mut self, name: &str) -> Queue {
        if let Some(known) = self.queues.get(name) {
            return known.clone();
        }
        let queue = match self.api.queue(name).await {
            Ok(Some(info)) if info.keeps_messages() => Queue::Durable {
                description: describe_with_members(&info),
                default_limit: info.has_default_delivery_limit(),
                single_active: has_single_active_consumer(&info.arguments),
            },
            Ok(Some(_)) => Queue::Lossy,
            Ok(None) => Queue::Missing,
            Err(e) => Queue::Unreadable(e.to_string()),
        };
        self.queues.insert(name.to_owned(), queue.clone());
        queue
    }
}

/// The queue in words, with the nodes a quorum queue is replicated on: on a
/// cluster, how many copies a webhook has is what the queue type is for.
fn describe_with_members(info: &QueueInfo) -> String {
    let description = describe_queue(info.kind.as_deref(), &info.arguments);
    let mut members = info.members.clone();
    members.sort();
    match members.as_slice() {
        [] => description,
        [one] => format!("{description}; quorum queue with 1 member: {one}"),
        _ => format!(
            "{description}; quorum queue with {} members: {}",
            members.len(),
            members.join(", ")
        ),
    }
}

/// The alternate exchange `alternate` of `exchange`, read; a warning when
/// it cannot be used.
async fn read_alternate(
    list: &mut Checklist,
    api: &ManagementApi,
    exchange: &str,
    alternate: &str,
) -> Option<Alternate> {
    let info = match api.exchange(alternate).await {
        Ok(Some(info)) => info,
        Ok(None) => {
            list.warn(&format!(
                "exchange {exchange:?} names the alternate exchange {alternate:?}, which does not exist: a webhook no binding takes is answered 502; run `handler setup --alternate-exchange`"
            ));
            return None;
        }
        Err(e) => {
            list.warn(&format!("the alternate exchange {alternate:?} could not be read: {e}"));
            return None;
        }
    };
    match api.bindings_from(alternate).await {
        Ok(bindings) => Some(Alternate {
            name: alternate.to_owned(),
            kind: info.kind,
            bindings,
        }),
        Err(e) => {
            list.warn(&format!("the bindings of {alternate:?} could not be read: {e}"));
            None
        }
    }
}

/// The queues an exchange of type `kind` with `bindings` sends `key` to,
/// each once, with the binding key that took it.
fn matching_queues(kind: &str, bindings: &[BindingInfo], key: &str) -> Vec<(String, String)> {
    let mut queues: Vec<(String, String)> = Vec::new();
    for binding in bindings {
        let takes = binding_matches(kind, &binding.routing_key, key).unwrap_or(false);
        if binding.destination_type == "queue" && takes && !queues.iter().any(|(q, _)| *q == binding.destination) {
            queues.push((binding.destination.clone(), binding.routing_key.clone()));
        }
    }
    queues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_queue_is_described_with_its_members_and_a_classic_one_without() {
        let info = |members: &[&str]| -> QueueInfo {
            serde_json::from_value(serde_json::json!({
                "durable": true,
                "type": if members.is_empty() { "classic" } else { "quorum" },
                "members": members,
            }))
            .unwrap()
        };
        assert_eq!(
            describe_with_members(&info(&["rc2@localhost", "rc3@localhost", "rc1@localhost"])),
            "quorum, no message TTL; quorum queue with 3 members: rc1@localhost, rc2@localhost, rc3@localhost"
        );
        assert_eq!(
            describe_with_members(&info(&["rabbit@localhost"])),
            "quorum, no message TTL; quorum queue with 1 member: rabbit@localhost"
        );
        assert_eq!(describe_with_members(&info(&[])), "classic, no message TTL");
    }

    fn binding(queue: &str, key: &str) -> BindingInfo {
        BindingInfo {
            destination: queue.to_owned(),
            destination_type: "queue".to_owned(),
            routing_key: key.to_owned(),
        }
    }

    #[test]
    fn a_key_reaches_each_queue_bound_for_it_once() {
        let bindings = [
            binding("invoices", "webhook.invoice"),
            binding("everything", "webhook.#"),
            binding("everything", "webhook.*"),
            binding("orders", "webhook.order"),
        ];
        assert_eq!(
            matching_queues("topic", &bindings, "webhook.invoice"),
            [
                ("invoices".to_owned(), "webhook.invoice".to_owned()),
                ("everything".to_owned(), "webhook.#".to_owned())
            ]
        );
        assert_eq!(
            matching_queues("direct", &bindings, "webhook.invoice"),
            [("invoices".to_owned(), "webhook.invoice".to_owned())]
        );
        assert!(matching_queues("direct", &bindings, "webhook.other").is_empty());
        assert!(matching_queues("headers", &bindings, "webhook.invoice").is_empty());
    }

    #[test]
    fn exchange_to_exchange_bindings_are_not_queues() {
        let mut to_exchange = binding("other-exchange", "webhook");
        to_exchange.destination_type = "exchange".to_owned();
        assert!(matching_queues("direct", &[to_exchange], "webhook").is_empty());
    }
}
