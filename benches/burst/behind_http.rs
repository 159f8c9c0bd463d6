//! The floor of any forwarder fed over HTTP: the direct AMQP publisher
//! behind a bare HTTP/1.1 server, in a process of its own as the handler
//! is, sent the very requests the handler is sent. Each request's body is
//! published as the direct publisher publishes it (the product's message,
//! `mandatory`, one channel, its own confirm awaited:
//! [`direct::publish_confirmed`]) and answered 200 on a plain ack, 502
//! otherwise. No settings, no checks, no retries, no logs, no
//! telling one `basic.return` from another: what is left is receiving a
//! webhook over HTTP and answering it, which the forwarder cannot skip. Its
//! ratio to the direct publisher is what HTTP alone costs here, beside the
//! forwarder's in the same run.
//!
//! The benchmark runs its own executable again with [`SERVE_FLAG`] for it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lapin::Channel;
use lapin::options::ConfirmSelectOptions;
use test_support::broker::Topology;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use webhook_forwarder::broker::message;
use webhook_forwarder::webhook::Webhook;

use crate::{direct, webhooks};

/// The first argument that makes the benchmark's executable this server;
/// the exchange and the routing key follow it.
pub const SERVE_FLAG: &str = "--serve-behind-http";

/// The server's process.
pub struct BehindHttp {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl BehindHttp {
    /// Starts the server publishing to `topology`; returns once it listens
    /// with its channel open.
    pub async fn start(topology: &Topology) -> Self {
        let exe = std::env::current_exe().expect("the benchmark knows its own path");
        let mut child = Command::new(exe)
            .args([SERVE_FLAG, &topology.exchange, &topology.routing_key])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the benchmark can run itself");
        let stdout = child.stdout.take().expect("piped");
        let first = tokio::time::timeout(Duration::from_secs(30), BufReader::new(stdout).lines().next_line())
            .await
            .expect("the server starts within 30 s")
            .expect("its stdout is readable")
            .expect("it prints where it listens");
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("not an address line: {first}"));
        Self { child, addr }
    }

    /// Its process id, for the CPU and switch columns.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// Ends the process.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The server's own `main`: the same runtime as the handler's (Tokio's
/// default, a worker per core), until it is killed.
pub fn serve(exchange: String, routing_key: String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let connection = test_support::broker::connect().await;
        let channel = connection.create_channel().await.expect("a channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        let target = Arc::new(Target {
            channel,
            exchange,
            routing_key,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        println!("listening on {}", listener.local_addr().expect("bound"));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let target = target.clone();
            let service = hyper::service::service_fn(move |request| {
                let target = target.clone();
                async move { Ok::<_, Infallible>(target.publish(request).await) }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
}

struct Target {
    channel: Channel,
    exchange: String,
    routing_key: String,
}

impl Target {
    /// Publishes the request's body as the direct publisher does.
    async fn publish(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (message_id, content_type) = (header("x-azure-functions-invocationid"), header("content-type"));
        let Ok(body) = request.into_body().collect().await else {
            return status(StatusCode::BAD_REQUEST);
        };
        let webhook = Webhook {
            message_id: message_id.unwrap_or_default(),
            method: "POST".to_owned(),
            content_type,
            query: String::new(),
            body: body.to_bytes(),
        };
        let properties = message::amqp_properties(&webhook, webhooks::envelope());
        let confirmed = direct::publish_confirmed(
            &self.channel,
            &self.exchange,
            &self.routing_key,
            &webhook.body,
            properties,
        )
        .await;
        match confirmed {
            Some(200) => status(StatusCode::OK),
            _ => status(StatusCode::BAD_GATEWAY),
        }
    }
}

fn status(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
