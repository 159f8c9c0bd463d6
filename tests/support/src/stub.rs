//! A stub publish endpoint for faults a real broker will not produce on
//! demand: 500s, 429s, hangs, dropped connections, slow confirms.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::AppSettings;
use crate::broker::GUEST_AUTH;

/// What the stub does with one publish request.
#[derive(Debug, Clone, Copy)]
pub enum Act {
    /// Answer with this status and JSON body.
    Answer(u16, &'static str),
    /// Answer after a delay.
    AnswerAfter(Duration, u16, &'static str),
    /// Never answer.
    Hang,
    /// Close the connection without answering.
    Drop,
}

/// `{"routed":true}`: what the broker says on success.
pub const ROUTED: Act = Act::Answer(200, r#"{"routed":true}"#);

/// A running stub; the acts are used in order, then `then` for the rest.
pub struct StubBroker {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
    confirmed: Arc<Mutex<Vec<Value>>>,
}

/// What the stub's connections share.
#[derive(Clone)]
struct Shared {
    script: Arc<Mutex<VecDeque<Act>>>,
    then: Act,
    /// When set, the script repeats forever instead of falling through to `then`.
    cycle: bool,
    received: Arc<Mutex<Vec<Value>>>,
    confirmed: Arc<Mutex<Vec<Value>>>,
}

impl Shared {
    fn next_act(&self) -> Act {
        let mut script = self.script.lock().unwrap();
        match script.pop_front() {
            Some(act) if self.cycle => {
                script.push_back(act);
                act
            }
            Some(act) => act,
            None => self.then,
        }
    }
}

impl StubBroker {
    /// Starts the stub on a free port: `acts` in order, then always `then`.
    pub async fn start(acts: Vec<Act>, then: Act) -> Self {
        Self::launch(acts, then, false).await
    }

    /// Starts the stub repeating `acts` over and over.
    pub async fn cycling(acts: Vec<Act>) -> Self {
        Self::launch(acts, ROUTED, true).await
    }

    async fn launch(acts: Vec<Act>, then: Act, cycle: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            script: Arc::new(Mutex::new(VecDeque::from(acts))),
            then,
            cycle,
            received: Arc::new(Mutex::new(Vec::new())),
            confirmed: Arc::new(Mutex::new(Vec::new())),
        };
        let (received, confirmed) = (shared.received.clone(), shared.confirmed.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Self {
            addr,
            received,
            confirmed,
        }
    }

    /// The publish URL to give the handler.
    pub fn endpoint(&self) -> String {
        format!("http://{}/api/exchanges/%2F/stub.direct/publish", self.addr)
    }

    /// The seed's two settings, pointing the handler at this stub.
    pub fn settings(&self) -> AppSettings {
        AppSettings::new()
            .with("AmqpEndpoint", self.endpoint())
            .with("AmqpAuthHeader", GUEST_AUTH)
    }

    /// The publish bodies received so far, in order.
    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// The publish bodies the stub answered `{"routed":true}`.
    pub fn confirmed(&self) -> Vec<Value> {
        self.confirmed.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, shared: Shared) {
    loop {
        let Some(body) = read_request(&mut stream).await else {
            return;
        };
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        shared.received.lock().unwrap().push(body.clone());
        let act = shared.next_act();
        let (status, answer) = match act {
            Act::Answer(status, answer) => (status, answer),
            Act::AnswerAfter(delay, status, answer) => {
                tokio::time::sleep(delay).await;
                (status, answer)
            }
            Act::Hang => {
                // Hold the connection open until the client gives up.
                let _ = stream.read(&mut [0u8; 1]).await;
                return;
            }
            Act::Drop => return,
        };
        let response = format!(
            "HTTP/1.1 {status} Stub\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        if status == 200 && answer == r#"{"routed":true}"# {
            shared.confirmed.lock().unwrap().push(body);
        }
    }
}

/// Reads one request (head and `Content-Length` body); `None` at end of stream.
async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Some(buffer[head_end..head_end + length].to_vec())
}
