//! The forwarder under load: the real release `handler`, started by the test
//! support as the Functions host starts it, publishing over either
//! transport, sent webhooks in either host mode.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Request;
use test_support::broker::Topology;
use test_support::process::Served;

use crate::http1::{self, Clients};
use crate::load::{self, Send};
use crate::webhooks;

/// How the handler publishes (`PublishTransport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The HTTP publish endpoint (`AmqpEndpoint` + `AmqpAuthHeader`, as the seed sets it up).
    Http,
    /// AMQP with publisher confirms (`AmqpUrl` + `AmqpExchange`).
    Amqp,
}

/// How the host hands webhooks to the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMode {
    /// The caller's own request (`enableForwardingHttpRequest`, and standalone).
    Forwarding,
    /// The host's invocation JSON, chunked (the host's default).
    Payload,
}

/// Starts the handler publishing to `topology` over `transport`, with
/// `AmqpRoutingKey` set to `routing_key` if given; over AMQP, waits until
/// its connection is up, so the burst does not time the connecting.
pub async fn start(topology: &Topology, transport: Transport, routing_key: Option<&str>) -> Served {
    let mut settings = match transport {
        Transport::Http => topology.settings(),
        Transport::Amqp => topology.amqp_transport_settings(),
    };
    if let Some(key) = routing_key {
        settings = settings.with("AmqpRoutingKey", key);
    }
    // Info: the start-up lines, and any failure; a queued webhook logs at debug.
    let served = Served::start_logging(&settings, "info").await;
    if transport == Transport::Amqp {
        served
            .process
            .wait_for_output("connected to amqp://", Duration::from_secs(30))
            .await;
    }
    served
}

/// Sends webhook `index` of `run` to the handler at `authority` (`host:port`)
/// in `mode`, from `workers` load workers; every request body is built
/// before the burst, so the load generator's own work per request is the
/// same small clone in every phase.
pub fn requests(mode: HostMode, authority: &str, workers: usize, run: &str, count: usize) -> Arc<Send> {
    let bodies: Vec<Bytes> = (0..count)
        .map(|index| {
            let body = webhooks::body(run, index);
            Bytes::from(match mode {
                HostMode::Forwarding => body,
                HostMode::Payload => webhooks::invocation(&body),
            })
        })
        .collect();
    let clients = Clients::new(authority, workers);
    let run = run.to_owned();
    let path = match mode {
        HostMode::Forwarding => webhooks::forwarding_path(),
        HostMode::Payload => "/WebhookForwarder".to_owned(),
    };
    Arc::new(move |worker, index| {
        let request = Request::post(&path).header("x-azure-functions-invocationid", format!("{run}-{index}"));
        let client = clients.for_worker(worker);
        match mode {
            HostMode::Forwarding => {
                let request = request
                    .header("content-type", webhooks::CONTENT_TYPE)
                    .body(http1::sized(bodies[index].clone()))
                    .expect("a valid request");
                Box::pin(load::http_answer(client, request))
            }
            HostMode::Payload => {
                // The host sends invocations chunked, without Content-Length.
                let request = request
                    .header("content-type", "application/json; charset=utf-8")
                    .body(http1::chunked(bodies[index].clone()))
                    .expect("a valid request");
                Box::pin(load::payload_answer(client, request))
            }
        }
    })
}
