//! `handler setup`: declares the seed's topology through the management API
//! with the settings the server uses, so the exchange the handler publishes
//! to surely routes to a durable queue. Idempotent: existing identical
//! objects are left alone.

use std::time::Duration;

use crate::broker::management::{Declared, ManagementApi, ManagementError};
use crate::broker::topology::{self, Declaration, QueueOptions};
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
        "queue {queue:?} already exists with different settings ({reason}). RabbitMQ cannot change a queue's arguments: run setup with the options it was made with (--ttl-days, --quorum, --dead-letter, --single-active-consumer), pick another queue with --queue NAME, or delete the queue (its messages are lost) and run setup again"
    )]
    QueueDiffers {
        /// The queue.
        queue: String,
        /// The broker's words: which argument, what it has, what was asked.
        reason: String,
    },
    /// The exchange exists with another type or durability.
    #[error(
        "exchange {exchange:?} already exists with different settings ({reason}). Publish to another exchange (AmqpExchange, or the exchange in AmqpEndpoint), or delete it (its bindings go with it) and run setup again"
    )]
    ExchangeDiffers {
        /// The exchange.
        exchange: String,
        /// The broker's words.
        reason: String,
    },
}

/// Reads the settings and declares the topology, printing one line per object.
pub async fn run(args: SetupArgs) -> Result<(), SetupError> {
    super::warn_about_mistyped_settings();
    let settings = Settings::from_env()?;
    let options = QueueOptions {
        queue: args.queue,
        ttl_days: args.ttl_days,
        quorum: args.quorum,
        dead_letter: args.dead_letter,
        single_active_consumer: args.single_active_consumer,
    };
    setup(&settings.broker, settings.limits.attempt_timeout, &options).await
}

/// Declares what [`topology::plan`] lists for `broker`'s exchange and routing key.
pub async fn setup(broker: &BrokerSettings, timeout: Duration, options: &QueueOptions) -> Result<(), SetupError> {
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
    for declaration in topology::plan(&broker.endpoint.exchange, &broker.routing_key, options) {
        let (declared, what) = match &declaration {
            Declaration::Exchange(exchange) => {
                let declared = api.declare_exchange(exchange).await.map_err(|e| match e {
                    ManagementError::Inequivalent { reason } => SetupError::ExchangeDiffers {
                        exchange: exchange.name.clone(),
                        reason,
                    },
                    e => e.into(),
                })?;
                let what = format!("exchange {:?} ({}, durable)", exchange.name, exchange.kind.as_str());
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
