//! `handler setup`: declares the seed's topology through the management API
//! with the settings the server uses, so the exchange the handler publishes
//! to surely routes to a durable queue. Idempotent: existing identical
//! objects are left alone.

use std::time::Duration;

use crate::broker::management::wire::ExchangeInfo;
use crate::broker::management::{Declared, ManagementApi, ManagementError};
use crate::broker::topology::{self, Declaration, Exchange, ExchangeKind, QueueOptions, Routing};
use crate::cli::SetupArgs;
use crate::settings::{BrokerSettings, Settings, SettingsError};

/// Why setup stopped. Objects declared before the failure stay; running
/// setup again after the fix finishes the job.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A setting is missing or malformed.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The broker refused or could not be reached.
    #[error(transparent)]
    Management(#[from] ManagementError),
    /// The queue exists with other arguments, which RabbitMQ cannot change.
    #[error(
        "queue {queue:?} already exists with different settings ({reason}). RabbitMQ cannot change a queue's arguments: run setup with the options it was made with (--ttl-days, --quorum, --no-dead-letter, --single-active-consumer), pick another queue with --queue NAME, or delete the queue (its messages are lost) and run setup again"
    )]
    QueueDiffers {
        /// The queue.
        queue: String,
        /// The broker's words: which argument, what it has, what was asked.
        reason: String,
    },
    /// The exchange exists with another type, alternate exchange or durability.
    #[error("exchange {exchange:?} already exists with different settings ({reason}). {fix}")]
    ExchangeDiffers {
        /// The exchange.
        exchange: String,
        /// The broker's words.
        reason: String,
        /// What to do, from what the exchange has ([`exchange_fix`]).
        fix: String,
    },
    /// `AmqpRoutingKey` is a template and no `--binding-key` says what the queue takes.
    #[error(
        "setting AmqpRoutingKey is the template {template:?}, so setup cannot tell which keys queue {queue:?} takes: give them with --binding-key KEY (repeatable), e.g. --binding-key webhook.invoice (docs/routing.md)"
    )]
    BindingKeyNeeded {
        /// The template.
        template: String,
        /// The queue.
        queue: String,
    },
    /// A wildcard binding key on a direct exchange, which matches it literally.
    #[error(
        "--binding-key {key:?} is a pattern, but a direct exchange matches keys exactly (only a message with the key {key:?} would reach the queue): add --exchange-type topic (docs/routing.md)"
    )]
    PatternOnDirect {
        /// The key.
        key: String,
    },
}

/// Reads the settings and declares the topology, printing one line per object.
pub async fn run(args: SetupArgs) -> Result<(), SetupError> {
    super::warn_about_mistyped_settings();
    let settings = Settings::from_env()?;
    let routing = routing(&args, &settings.broker)?;
    let options = QueueOptions {
        queue: args.queue,
        ttl_days: args.ttl_days,
        quorum: args.quorum,
        // What scripts/run-local declares: the dead-letter pair unless left out.
        dead_letter: !args.no_dead_letter,
        single_active_consumer: args.single_active_consumer,
    };
    setup(&settings.broker, settings.limits.attempt_timeout, &routing, &options).await
}

/// The routing asked for: the exchange type, the alternate exchange, and
/// the keys (`AmqpRoutingKey` itself when none is given and it is plain).
fn routing(args: &SetupArgs, broker: &BrokerSettings) -> Result<Routing, SetupError> {
    let binding_keys = match (&args.binding_keys[..], broker.routing_key.plain()) {
        ([], Some(plain)) => vec![plain.to_owned()],
        ([], None) => {
            return Err(SetupError::BindingKeyNeeded {
                template: broker.routing_key.to_string(),
                queue: args.queue.clone(),
            });
        }
        (keys, _) => keys.to_vec(),
    };
    if args.exchange_type == ExchangeKind::Direct
        && let Some(pattern) = binding_keys.iter().find(|key| key.contains(['*', '#']))
    {
        return Err(SetupError::PatternOnDirect { key: pattern.clone() });
    }
    Ok(Routing {
        kind: args.exchange_type,
        binding_keys,
        alternate_exchange: args.alternate_exchange,
    })
}

/// Declares what [`topology::plan`] lists for `broker`'s exchange, routed as `routing` says.
pub async fn setup(
    broker: &BrokerSettings,
    timeout: Duration,
    routing: &Routing,
    options: &QueueOptions,
) -> Result<(), SetupError> {
    let api = ManagementApi::new(&broker.endpoint, &broker.credentials, timeout)?;
    println!(
        "setup: management API {} as user {:?}, vhost {:?}",
        api.base(),
        api.user(),
        api.vhost()
    );
    // Credentials and vhost first: their failures are clearer than a
    // refused declaration would be.
    api.whoami().await?;
    api.require_vhost().await?;

    let (mut created, mut unchanged) = (0, 0);
    for declaration in topology::plan(&broker.endpoint.exchange, routing, options) {
        let (declared, what) = match &declaration {
            Declaration::Exchange(exchange) => {
                let declared = match api.declare_exchange(exchange).await {
                    Err(ManagementError::Inequivalent { reason }) => {
                        let found = api.exchange(&exchange.name).await.ok().flatten();
                        return Err(SetupError::ExchangeDiffers {
                            exchange: exchange.name.clone(),
                            reason,
                            fix: exchange_fix(exchange, found.as_ref()),
                        });
                    }
                    declared => declared?,
                };
                let alternate = exchange
                    .alternate
                    .as_ref()
                    .map(|alternate| format!(", unroutable messages to {alternate:?}"))
                    .unwrap_or_default();
                let what = format!(
                    "exchange {:?} ({}, durable{alternate})",
                    exchange.name,
                    exchange.kind.as_str()
                );
                (declared, what)
            }
            Declaration::Queue(queue) => {
                let declared = api.declare_queue(queue).await.map_err(|e| match e {
                    ManagementError::Inequivalent { reason } => SetupError::QueueDiffers {
                        queue: queue.name.clone(),
                        reason,
                    },
                    e => e.into(),
                })?;
                let description = topology::describe_queue(None, &queue.arguments);
                (declared, format!("queue {:?} (durable, {description})", queue.name))
            }
            Declaration::Binding(binding) => {
                let declared = api.bind(binding).await?;
                let key = if binding.routing_key.is_empty() {
                    String::new()
                } else {
                    format!(" with routing key {:?}", binding.routing_key)
                };
                (
                    declared,
                    format!("binding {:?} -> {:?}{key}", binding.exchange, binding.queue),
                )
            }
        };
        match declared {
            Declared::Created => created += 1,
            Declared::Unchanged => unchanged += 1,
        }
        let verb = match declared {
            Declared::Created => "created  ",
            Declared::Unchanged => "unchanged",
        };
        println!("{verb} {what}");
    }
    println!("setup done: {created} created, {unchanged} unchanged; `handler check` verifies it any time");
    Ok(())
}

/// What to do about an exchange that exists with other settings than
/// `asked`, from what it has (`found`, if it could be read): RabbitMQ can
/// change neither its type nor its alternate exchange.
fn exchange_fix(asked: &Exchange, found: Option<&ExchangeInfo>) -> String {
    const ELSEWHERE: &str = "publish to a new exchange instead (set AmqpExchange, or the exchange in AmqpEndpoint, to a new name, run setup for it and bind your queues there: docs/routing.md), or delete it (its bindings go with it; webhooks get 5xx until setup runs again) and run setup again";
    let Some(found) = found else {
        return format!("Run setup with the options it was made with, or {ELSEWHERE}");
    };
    let webhook_exchange = asked.kind != ExchangeKind::Fanout;
    if found.kind != asked.kind.as_str() {
        let rerun = match found.kind.as_str() {
            "direct" | "topic" if webhook_exchange => format!("run setup with --exchange-type {}, or ", found.kind),
            _ => String::new(),
        };
        return format!(
            "It is a {} exchange, and RabbitMQ cannot change an exchange's type: {rerun}{ELSEWHERE}",
            found.kind
        );
    }
    match (found.alternate_exchange(), asked.alternate.as_deref()) {
        (Some(has), None) => format!(
            "It sends unroutable messages to {has:?}, and RabbitMQ cannot change that: run setup with --alternate-exchange, or {ELSEWHERE}"
        ),
        (None, Some(_)) => {
            format!("It has no alternate exchange, and RabbitMQ cannot add one to an existing exchange: {ELSEWHERE}")
        }
        (Some(has), Some(wanted)) if has != wanted => format!(
            "It sends unroutable messages to {has:?}, not to {wanted:?}, and RabbitMQ cannot change that: {ELSEWHERE}"
        ),
        _ => format!("Its durability differs: {ELSEWHERE}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn exchange(kind: ExchangeKind, alternate: Option<&str>) -> Exchange {
        Exchange {
            name: "x".to_owned(),
            kind,
            alternate: alternate.map(str::to_owned),
        }
    }

    fn found(kind: &str, alternate: Option<&str>) -> ExchangeInfo {
        let arguments = alternate.map_or(json!({}), |a| json!({ "alternate-exchange": a }));
        serde_json::from_value(json!({ "type": kind, "durable": true, "arguments": arguments })).unwrap()
    }

    #[test]
    fn another_type_says_which_and_how_to_keep_it() {
        let fix = exchange_fix(&exchange(ExchangeKind::Topic, None), Some(&found("direct", None)));
        assert!(
            fix.starts_with(
                "It is a direct exchange, and RabbitMQ cannot change an exchange's type: run setup with --exchange-type direct, or publish to a new exchange"
            ),
            "{fix}"
        );
        let fix = exchange_fix(&exchange(ExchangeKind::Direct, None), Some(&found("fanout", None)));
        assert!(
            fix.starts_with(
                "It is a fanout exchange, and RabbitMQ cannot change an exchange's type: publish to a new exchange"
            ),
            "{fix}"
        );
    }

    #[test]
    fn an_alternate_exchange_cannot_be_added_or_dropped() {
        let asked = exchange(ExchangeKind::Direct, Some("x.unrouted"));
        let fix = exchange_fix(&asked, Some(&found("direct", None)));
        assert!(fix.contains("cannot add one to an existing exchange"), "{fix}");
        let fix = exchange_fix(
            &exchange(ExchangeKind::Direct, None),
            Some(&found("direct", Some("x.unrouted"))),
        );
        assert!(fix.contains("run setup with --alternate-exchange"), "{fix}");
        let fix = exchange_fix(&asked, Some(&found("direct", Some("elsewhere"))));
        assert!(fix.contains("not to \"x.unrouted\""), "{fix}");
    }
}
