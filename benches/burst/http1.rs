//! The load generator's HTTP client: one keep-alive HTTP/1.1 connection per
//! load worker, made with hyper's connection API and driven inside the
//! worker's own task. A pooled client (reqwest) hands every request to a
//! connection task and back, with a pool checkout and a URL parse per
//! request; on this 2-core machine that work competes with the broker and
//! the handler for the same cores, and it is no part of the product (in
//! Azure the host and e-conomic run elsewhere), so the load generator does
//! as little as it can.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1;
use hyper::header::{CONNECTION, HOST, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// A request body: sized (sent with `Content-Length`) or chunked.
pub type Body = BoxBody<Bytes, Infallible>;

/// A hung request counts as failed after this long.
const TIMEOUT: Duration = Duration::from_secs(120);

/// `bytes` sent with `Content-Length`.
pub fn sized(bytes: Bytes) -> Body {
    Full::new(bytes).boxed()
}

/// `bytes` sent in one chunk, without `Content-Length`, as the Functions
/// host sends its invocations.
pub fn chunked(bytes: Bytes) -> Body {
    StreamBody::new(stream::iter([Ok(Frame::data(bytes))])).boxed()
}

/// What came back: the status, the headers and the whole body.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// One load worker's connection to `authority` (`host:port`), opened on
/// first use and again after a failure.
pub struct Client {
    authority: String,
    host: HeaderValue,
    open: Option<Open>,
}

/// hyper's side of one connection: the future that reads and writes it.
type Connection = Pin<Box<http1::Connection<TokioIo<TcpStream>, Body>>>;

struct Open {
    sender: http1::SendRequest<Body>,
    /// Driven beside each exchange; `None` once the server closed it.
    connection: Option<Connection>,
}

impl Client {
    /// A client for `authority`; connects on the first send.
    pub fn new(authority: &str) -> Self {
        Self {
            authority: authority.to_owned(),
            host: HeaderValue::from_str(authority).expect("an authority is a valid Host header"),
            open: None,
        }
    }

    /// Sends `request` (its `Host` is set here) and reads the whole
    /// response; `None` when the connection failed or the answer took
    /// longer than two minutes. A failed connection is reopened next time.
    pub async fn send(&mut self, mut request: Request<Body>) -> Option<Response> {
        request.headers_mut().insert(HOST, self.host.clone());
        let Ok(response) = tokio::time::timeout(TIMEOUT, self.exchange(request)).await else {
            self.open = None;
            return None;
        };
        response
    }

    async fn exchange(&mut self, request: Request<Body>) -> Option<Response> {
        if self.open.is_none() {
            self.open = Some(Self::connect(&self.authority).await?);
        }
        let open = self.open.as_mut()?;
        let response = open.exchange(request).await;
        // The next request gets a new connection after a failure, after the
        // server closed this one, or when it says it will close it after
        // this response (RabbitMQ's management API does after every 1,000th).
        let reusable = open.connection.is_some() && response.as_ref().is_some_and(|r| !closes(&r.headers));
        if !reusable {
            self.open = None;
        }
        response
    }

    async fn connect(authority: &str) -> Option<Open> {
        let stream = TcpStream::connect(authority).await.ok()?;
        stream.set_nodelay(true).ok()?;
        let (sender, connection) = http1::handshake::<_, Body>(TokioIo::new(stream)).await.ok()?;
        Some(Open {
            sender,
            connection: Some(Box::pin(connection)),
        })
    }
}

impl Open {
    async fn exchange(&mut self, request: Request<Body>) -> Option<Response> {
        let Self { sender, connection } = self;
        let mut exchange = std::pin::pin!(async {
            sender.ready().await.ok()?;
            let response = sender.send_request(request).await.ok()?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.ok()?.to_bytes();
            Some(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        });
        // The connection makes progress only while polled: poll it beside
        // the exchange.
        let running = connection.as_mut()?;
        tokio::select! {
            biased;
            response = &mut exchange => return response,
            _ = running.as_mut() => {}
        }
        // The server closed the connection, possibly in the same poll that
        // read this response. Dropping it hands the exchange that response,
        // or fails a request it never sent instead of leaving it waiting.
        *connection = None;
        exchange.await
    }
}

/// Whether a response says the server closes the connection after it.
fn closes(headers: &HeaderMap) -> bool {
    headers
        .get(CONNECTION)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"))
}

/// A client per load worker, all to one authority: worker `w` only ever
/// uses `for_worker(w)`, so its lock is never contended.
pub struct Clients(Vec<Arc<Mutex<Client>>>);

impl Clients {
    /// `workers` clients for `authority`.
    pub fn new(authority: &str, workers: usize) -> Self {
        Self(
            (0..workers)
                .map(|_| Arc::new(Mutex::new(Client::new(authority))))
                .collect(),
        )
    }

    /// Worker `worker`'s client.
    pub fn for_worker(&self, worker: usize) -> Arc<Mutex<Client>> {
        self.0[worker].clone()
    }
}
