//! Webhooks that carry an ordering key, and checks that the relay kept their
//! order per key: what the tests of `--order-by` and of the standby share.
//!
//! Each message's body is `id=KEY&seq=N` (form-encoded, as e-conomic's are),
//! so the relay orders them with `--order-by '{form.id}'` ([`TEMPLATE`]).

use std::collections::HashMap;

use crate::broker::TestMessage;
use crate::target::Seen;

/// The template that gives these messages their keys.
pub const TEMPLATE: &str = "{form.id}";

/// `per_key` messages for each of `keys` keys, interleaved (key 0, 1, …,
/// then the next of each), in publishing order.
pub fn interleaved(keys: usize, per_key: usize) -> Vec<TestMessage> {
    (0..per_key)
        .flat_map(|seq| (0..keys).map(move |key| TestMessage::post(format!("id=k{key}&seq={seq}"))))
        .collect()
}

/// The key and the sequence number of a request the relay made.
pub fn key_and_seq(seen: &Seen) -> (String, usize) {
    let body = String::from_utf8_lossy(&seen.body);
    let field = |name: &str| {
        body.split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {body:?}"))
            .to_owned()
    };
    (field("id"), field("seq").parse().expect("a number"))
}

/// Asserts the strict rule: within a key, no request for a message started
/// before the previous message of that key was accepted (its 2xx answered).
pub fn assert_each_key_waited_for_the_one_before(seen: &[Seen]) {
    let mut by_key: HashMap<String, Vec<(usize, &Seen)>> = HashMap::new();
    for request in seen {
        let (key, seq) = key_and_seq(request);
        by_key.entry(key).or_default().push((seq, request));
    }
    for (key, requests) in by_key {
        let last_seq = requests.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
        for seq in 1..=last_seq {
            let accepted_before = requests
                .iter()
                .filter(|(s, r)| *s == seq - 1 && r.accepted())
                .map(|(_, r)| r.answered)
                .min()
                .unwrap_or_else(|| panic!("{key} #{} was never accepted", seq - 1));
            for (_, request) in requests.iter().filter(|(s, _)| *s == seq) {
                assert!(
                    request.arrived >= accepted_before,
                    "{key} #{seq} was sent before {key} #{} was accepted",
                    seq - 1
                );
            }
        }
    }
}

/// Asserts the at-least-once form of the rule, for a takeover: per key, the
/// accepted sequence numbers, in the order the target accepted them, never go
/// back (a message in flight when a relay died may come twice in a row), and
/// none is missing.
pub fn assert_accepted_in_order_per_key(seen: &[Seen], keys: usize, per_key: usize) {
    let mut accepted = seen.iter().filter(|s| s.accepted()).collect::<Vec<_>>();
    accepted.sort_by_key(|s| s.answered);
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for request in accepted {
        let (key, seq) = key_and_seq(request);
        by_key.entry(key).or_default().push(seq);
    }
    assert_eq!(by_key.len(), keys, "keys delivered");
    let out_of_order: Vec<String> = by_key
        .iter()
        .filter(|(_, seqs)| seqs.windows(2).any(|w| w[1] < w[0]))
        .map(|(key, seqs)| format!("{key}: {seqs:?}"))
        .collect();
    assert!(out_of_order.is_empty(), "out of order:\n{}", out_of_order.join("\n"));
    for (key, seqs) in &by_key {
        let mut distinct = seqs.clone();
        distinct.dedup();
        assert_eq!(distinct, (0..per_key).collect::<Vec<_>>(), "{key}");
    }
}
