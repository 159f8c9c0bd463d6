//! The two ceilings: the load generator publishing straight to the broker,
//! with the very message the handler would publish (the product's own
//! message format), persistent, through each transport:
//!
//! - the HTTP publish endpoint, one POST per webhook on keep-alive
//!   connections: the most any forwarder using that endpoint can do here;
//! - AMQP with publisher confirms, a small lapin program: one connection,
//!   every publish `mandatory`, each waiting for its own confirm, so the
//!   same number are in flight as webhooks are sent to the handler. On one
//!   channel (the plain way), or on a channel per publish in flight (the
//!   forwarder's way of telling a `basic.return` exactly two versions ago;
//!   it now pipelines, see `src/publish/amqp/pipeline.rs`).

use std::sync::Arc;

use bytes::Bytes;
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use test_support::broker::{GUEST_AUTH, Topology};
use webhook_forwarder::broker::message;

use crate::http1::{self, Clients};
use crate::load::{self, Answer, Send};
use crate::webhooks;

/// Publishes webhook `index` of `run` through the HTTP publish endpoint,
/// from `workers` load workers.
pub fn http(topology: &Topology, workers: usize, run: &str, count: usize) -> Arc<Send> {
    let envelope = webhooks::envelope();
    let bodies: Vec<Bytes> = (0..count)
        .map(|index| Bytes::from(message::publish_body(&webhooks::webhook(run, index), envelope)))
        .collect();
    let endpoint = url::Url::parse(&topology.endpoint()).expect("the publish endpoint is a URL");
    let authority = format!(
        "{}:{}",
        endpoint.host_str().expect("the endpoint has a host"),
        endpoint.port_or_known_default().expect("the endpoint has a port")
    );
    let path = endpoint.path().to_owned();
    let authorization = HeaderValue::from_str(&format!("Basic {GUEST_AUTH}")).expect("a valid header");
    let clients = Clients::new(&authority, workers);
    Arc::new(move |worker, index| {
        let request = Request::post(&path)
            .header(AUTHORIZATION, authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(http1::sized(bodies[index].clone()))
            .expect("a valid request");
        Box::pin(load::http_answer(clients.for_worker(worker), request))
    })
}

/// How the AMQP publisher uses channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// Every publish on one channel.
    One,
    /// One channel per publish in flight, as the forwarder did two versions
    /// ago (before batches, then pipelines).
    PerPublish,
}

/// An AMQP publisher's connection (closed when the phase ends) and its sends.
pub struct AmqpPublisher {
    /// Sends webhook `index`.
    pub send: Arc<Send>,
    connection: Connection,
}

impl AmqpPublisher {
    /// Connects and opens `concurrency` channels (one for [`Channels::One`])
    /// in confirm mode, a channel per load worker; builds every message
    /// before the burst.
    pub async fn start(topology: &Topology, run: &str, count: usize, concurrency: usize, channels: Channels) -> Self {
        let connection = test_support::broker::connect().await;
        let mut opened = Vec::new();
        let count_of_channels = if channels == Channels::One { 1 } else { concurrency };
        for _ in 0..count_of_channels {
            let channel = connection.create_channel().await.expect("a channel");
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirm mode");
            opened.push(channel);
        }
        let envelope = webhooks::envelope();
        let messages: Vec<(Vec<u8>, BasicProperties)> = (0..count)
            .map(|index| {
                let webhook = webhooks::webhook(run, index);
                (webhook.body.to_vec(), message::amqp_properties(&webhook, envelope))
            })
            .collect();
        let shared = Arc::new(Shared {
            exchange: topology.exchange.clone(),
            routing_key: topology.routing_key.clone(),
            messages,
            channels: opened,
        });
        let send: Arc<Send> = Arc::new(move |worker, index| {
            let shared = shared.clone();
            Box::pin(async move { shared.publish(worker, index).await })
        });
        Self { send, connection }
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.connection.close(200, "bench phase done".into()).await;
    }
}

struct Shared {
    exchange: String,
    routing_key: String,
    messages: Vec<(Vec<u8>, BasicProperties)>,
    /// One channel every worker shares ([`Channels::One`]), or one per worker.
    channels: Vec<Channel>,
}

impl Shared {
    /// One mandatory publish from load worker `worker` and its confirm.
    async fn publish(&self, worker: usize, index: usize) -> Answer {
        let channel = &self.channels[worker % self.channels.len()];
        let (body, properties) = &self.messages[index];
        Answer {
            status: publish_confirmed(channel, &self.exchange, &self.routing_key, body, properties.clone()).await,
            retry_after: false,
        }
    }
}

/// One mandatory publish on `channel` and its confirm, as the direct
/// publisher sends it (also behind the floor's HTTP server): 200 for an ack
/// of a message that was not returned, 502 for any other answer, `None`
/// when the publish or its confirm failed.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Option<u16> {
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    let confirmed = match channel
        .basic_publish(exchange.into(), routing_key.into(), options, body, properties)
        .await
    {
        Ok(confirm) => confirm.await,
        Err(e) => Err(e),
    };
    match confirmed {
        Ok(Confirmation::Ack(None)) => Some(200),
        Ok(_) => Some(502),
        Err(_) => None,
    }
}
