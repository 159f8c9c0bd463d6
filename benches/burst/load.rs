//! The load: `count` sends from `concurrency` workers, each worker sending
//! one after another, so exactly `concurrency` are in flight; what each
//! send got back is recorded. The same driver runs every phase, whether a
//! send is an HTTP request or an AMQP publish.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::Request;
use tokio::sync::Mutex;

use crate::http1::{Body, Client};

/// What one send got back.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer {
    /// The status (for AMQP: 200 for an ack, 5xx otherwise), or `None`
    /// when the send failed or timed out.
    pub status: Option<u16>,
    /// Whether a 503 carried `Retry-After`.
    pub retry_after: bool,
}

/// What one send got, and when.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Which webhook (its index).
    pub index: usize,
    /// The answer.
    pub answer: Answer,
    /// From sending to the end of the answer.
    pub latency: Duration,
}

/// Sends webhook `index` (the second argument) from load worker `worker`
/// (the first, below the concurrency: each worker keeps its own connection).
pub type Send =
    dyn Fn(usize, usize) -> Pin<Box<dyn Future<Output = Answer> + std::marker::Send>> + std::marker::Send + Sync;

/// Runs the burst; returns the samples and the wall-clock time of the whole of it.
pub async fn burst(count: usize, concurrency: usize, send: Arc<Send>) -> (Vec<Sample>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (next, send) = (next.clone(), send.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        return samples;
                    }
                    let sent = Instant::now();
                    let answer = send(worker, index).await;
                    samples.push(Sample {
                        index,
                        answer,
                        latency: sent.elapsed(),
                    });
                }
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(count);
    for worker in workers {
        samples.extend(worker.await.expect("a load worker panicked"));
    }
    (samples, started.elapsed())
}

/// Sends `request` on `client` and reads the whole answer: its status, and
/// whether a 503 carried `Retry-After`.
pub async fn http_answer(client: Arc<Mutex<Client>>, request: Request<Body>) -> Answer {
    let Some(response) = client.lock().await.send(request).await else {
        return Answer::default();
    };
    Answer {
        status: Some(response.status.as_u16()),
        retry_after: response.headers.contains_key("retry-after"),
    }
}

/// A payload-mode answer: the host always gets HTTP 200, the caller's
/// status and headers are inside the JSON.
pub async fn payload_answer(client: Arc<Mutex<Client>>, request: Request<Body>) -> Answer {
    let Some(response) = client.lock().await.send(request).await else {
        return Answer::default();
    };
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&response.body) else {
        return Answer::default();
    };
    let res = &answer["Outputs"]["res"];
    Answer {
        status: res["statusCode"].as_str().and_then(|s| s.parse().ok()),
        retry_after: res["headers"].get("Retry-After").is_some(),
    }
}
