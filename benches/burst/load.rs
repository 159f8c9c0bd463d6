//! Fires requests at a fixed concurrency and records what each got back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What one request got.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Which request (its index).
    pub index: usize,
    /// The status, or `None` when the request failed or timed out.
    pub status: Option<u16>,
    /// Whether a 503 carried `Retry-After`.
    pub retry_after: bool,
    /// From sending to the end of the answer.
    pub latency: Duration,
}

/// Builds request `index` on `client`.
pub type MakeRequest = dyn Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync;

/// Sends `count` requests from `concurrency` workers, each worker sending one
/// request after another on keep-alive connections; returns the samples and
/// the wall-clock time of the whole burst.
pub async fn burst(
    client: &reqwest::Client,
    count: usize,
    concurrency: usize,
    make: Arc<MakeRequest>,
) -> (Vec<Sample>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, make) = (client.clone(), next.clone(), make.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        return samples;
                    }
                    let sent = Instant::now();
                    let result = make(&client, index).send().await;
                    let sample = match result {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let retry_after = response.headers().contains_key("retry-after");
                            let complete = response.bytes().await.is_ok();
                            Sample {
                                index,
                                status: complete.then_some(status),
                                retry_after,
                                latency: sent.elapsed(),
                            }
                        }
                        Err(_) => Sample {
                            index,
                            status: None,
                            retry_after: false,
                            latency: sent.elapsed(),
                        },
                    };
                    samples.push(sample);
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
