//! The load: `count` sends from `concurrency` workers, each worker sending
//! one after another, so exactly `concurrency` are in flight; what each
//! send got back is recorded. The same driver runs every phase, whether a
//! send is an HTTP request or an AMQP publish.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// Sends webhook `index`.
pub type Send = dyn Fn(usize) -> Pin<Box<dyn Future<Output = Answer> + std::marker::Send>> + std::marker::Send + Sync;

/// Runs the burst; returns the samples and the wall-clock time of the whole of it.
pub async fn burst(count: usize, concurrency: usize, send: Arc<Send>) -> (Vec<Sample>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, send) = (next.clone(), send.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        return samples;
                    }
                    let sent = Instant::now();
                    let answer = send(index).await;
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

/// A client for `concurrency` keep-alive connections, with a timeout that
/// marks a hung request as failed instead of waiting forever.
pub fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(120))
        .tcp_nodelay(true)
        .build()
        .expect("client builds")
}

/// Sends `request` and reads the whole answer: its status, and whether a
/// 503 carried `Retry-After`.
pub async fn http_answer(request: reqwest::RequestBuilder) -> Answer {
    let Ok(response) = request.send().await else {
        return Answer::default();
    };
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let complete = response.bytes().await.is_ok();
    Answer {
        status: complete.then_some(status),
        retry_after,
    }
}

/// A payload-mode answer: the host always gets HTTP 200, the caller's
/// status and headers are inside the JSON.
pub async fn payload_answer(request: reqwest::RequestBuilder) -> Answer {
    let Ok(response) = request.send().await else {
        return Answer::default();
    };
    let Ok(answer) = response.json::<serde_json::Value>().await else {
        return Answer::default();
    };
    let res = &answer["Outputs"]["res"];
    Answer {
        status: res["statusCode"].as_str().and_then(|s| s.parse().ok()),
        retry_after: res["headers"].get("Retry-After").is_some(),
    }
}
