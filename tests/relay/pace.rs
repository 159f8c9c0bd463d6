//! `--rate` and `--concurrency`: a fragile target sees a steady flow.

use std::time::{Duration, Instant};

use test_support::broker::{TestMessage, Topology};
use test_support::process::Handler;
use test_support::target::{Seen, TestTarget};

/// How late a request may reach the target after its slot (timer overshoot,
/// a busy 2-core machine, the network stack) before the checks below call it
/// a burst. Generous on purpose: no load makes an unpaced relay fit in it.
const LATENESS: Duration = Duration::from_millis(500);

/// The relay spaces request starts `1/rate` apart. A one-second window at the
/// target can hold the `rate` starts whose slots fall in it, plus the one on
/// its edge, plus those whose slots were in the `LATENESS` before it and that
/// arrived late: at most `rate * (1 s + LATENESS) + 1`. A relay ignoring the
/// rate sends as fast as the target answers, far above that.
pub fn assert_rate_respected(seen: &[Seen], rate: usize) {
    let window = Duration::from_secs(1);
    let bound = (rate as f64 * (window + LATENESS).as_secs_f64()).floor() as usize + 1;
    let busiest = busiest_window(seen, window);
    assert!(
        busiest <= bound,
        "{busiest} requests within one second at a rate of {rate}/s (bound {bound})"
    );
}

/// The most requests that arrived within any `window`.
fn busiest_window(seen: &[Seen], window: Duration) -> usize {
    let mut arrivals: Vec<Instant> = seen.iter().map(|s| s.arrived).collect();
    arrivals.sort_unstable();
    let mut start = 0;
    let mut busiest = 0;
    for end in 0..arrivals.len() {
        while arrivals[end] - arrivals[start] >= window {
            start += 1;
        }
        busiest = busiest.max(end - start + 1);
    }
    busiest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_spaces_requests_evenly_and_no_faster_than_set() {
    const COUNT: usize = 150;
    const RATE: usize = 50;
    let queue = Topology::with_dead_letter().await;
    queue.publish(&TestMessage::many(COUNT, "paced")).await;
    let target = TestTarget::accepting().await;

    let began = Instant::now();
    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &["--rate", &RATE.to_string(), "--concurrency", "8"],
    );
    target
        .wait_until(Duration::from_secs(60), "all deliveries", |seen| seen.len() >= COUNT)
        .await;
    let took = began.elapsed();
    relay.stop().await;

    // The first slot is at the earliest when the relay starts and each later
    // one a period after the previous: 149 periods of 20 ms. Load only ever
    // makes it slower.
    let least = Duration::from_secs_f64((COUNT - 1) as f64 / RATE as f64);
    assert!(
        took >= least,
        "{COUNT} requests at {RATE}/s took {took:?}, less than {least:?}"
    );
    let seen = target.seen();
    assert_eq!(seen.len(), COUNT);
    assert_rate_respected(&seen, RATE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_the_concurrency_is_in_flight_and_all_of_it_is_used() {
    const CONCURRENCY: usize = 3;
    let queue = Topology::with_dead_letter().await;
    queue.publish(&TestMessage::many(60, "concurrent")).await;
    // Slow answers keep requests in flight long enough to overlap.
    let target = TestTarget::start(|_| (Duration::from_millis(50), 200)).await;

    let mut relay = Handler::relay(
        &queue,
        &target.url("/hook.php"),
        &["--concurrency", &CONCURRENCY.to_string()],
    );
    target
        .wait_until(Duration::from_secs(60), "60 deliveries", |seen| seen.len() >= 60)
        .await;
    relay.stop().await;

    assert_eq!(target.max_in_flight(), CONCURRENCY);
    assert_eq!(target.count(), 60);
}

#[test]
fn the_busiest_window_counts_arrivals_less_than_a_window_apart() {
    let start = Instant::now();
    let at = |ms: u64| Seen {
        method: warp::http::Method::POST,
        path_and_query: String::new(),
        headers: warp::http::HeaderMap::new(),
        body: bytes::Bytes::new(),
        arrived: start + Duration::from_millis(ms),
        answered: start + Duration::from_millis(ms),
        status: 200,
    };
    let seen: Vec<Seen> = [0, 100, 999, 1000, 1500, 1600, 1700].into_iter().map(at).collect();
    // 999..1700 holds five; 0..999 only three.
    assert_eq!(busiest_window(&seen, Duration::from_secs(1)), 5);
}
