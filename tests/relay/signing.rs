//! Signed deliveries (`RelaySigningSecret`), checked on the relay's real
//! requests with the Standard Webhooks reference library for Rust (the
//! `standardwebhooks` crate, published by the specification's authors), not
//! with the relay's own code: form and JSON bodies, a retry, a replayed dead
//! letter, two secrets while rotating, and a wrong secret that fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use standardwebhooks::{Webhook, WebhookError};
use test_support::broker::{TestMessage, Topology, amqp_url};
use test_support::process::{Handler, run_to_end};
use test_support::target::{Answer, Seen, TestTarget, wait_until_drained};
use test_support::{AppSettings, assert_no_secret};

use crate::credentials::fails_at_start;

/// A secret no relay here signs with.
const WRONG_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A fresh secret from the real binary, as a user makes one.
async fn new_secret() -> String {
    let made = run_to_end(&["relay-secret", "new"], &AppSettings::new(), "").await;
    assert!(made.status.success(), "{}", made.output());
    assert_eq!(made.stderr, "", "stdout is not a terminal: nothing but the secret");
    made.stdout.trim_end().to_owned()
}

/// What the reference library says of a request the relay sent.
fn verify(seen: &Seen, secret: &str) -> Result<(), WebhookError> {
    Webhook::new(secret)
        .expect("the reference library reads the secret")
        .verify(&seen.body, &seen.headers)
}

fn signing(secret: &str) -> AppSettings {
    AppSettings::new().with("RelaySigningSecret", secret)
}

fn timestamp(seen: &Seen) -> u64 {
    seen.header("webhook-timestamp").unwrap().parse().unwrap()
}

#[tokio::test]
async fn relay_secret_new_prints_a_fresh_secret_the_reference_library_reads() {
    let (one, two) = (new_secret().await, new_secret().await);
    assert_ne!(one, two);
    for secret in [&one, &two] {
        let base64 = secret.strip_prefix("whsec_").expect("whsec_ prefix");
        assert_eq!(base64.len(), 44, "32 bytes in base64: {secret}");
        assert!(!base64.contains(char::is_whitespace));
        Webhook::new(secret).unwrap();
    }
}

#[tokio::test]
async fn form_and_json_bodies_arrive_signed_as_the_reference_library_checks() {
    let secret = new_secret().await;
    let queue = Topology::with_dead_letter().await;
    let form = TestMessage::post("old=101&new=102&name=Caf%C3%A9");
    let json = TestMessage {
        content_type: Some("application/json".to_owned()),
        ..TestMessage::post(r#"{"id":7,"type":"invoice.booked","text":"Café \"quoted\""}"#)
    };
    queue.publish(&[form.clone(), json.clone()]).await;
    let target = TestTarget::accepting().await;

    let mut relay = Handler::relay_with(&queue, &target.url("/hook.php"), &[], signing(&secret));
    target
        .wait_until(Duration::from_secs(30), "2 deliveries", |seen| seen.len() >= 2)
        .await;
    relay.stop().await;

    let seen = target.seen();
    assert_eq!(seen.len(), 2);
    for message in [&form, &json] {
        let request = seen.iter().find(|s| s.message_id() == message.id).unwrap();
        assert_eq!(request.header("content-type"), message.content_type.as_deref());
        assert_eq!(request.body, message.body);
        assert_eq!(request.header("webhook-id"), Some(message.id.as_str()));
        let signature = request.header("webhook-signature").unwrap();
        assert!(signature.starts_with("v1,") && !signature.contains(' '), "{signature}");
        verify(request, &secret).unwrap_or_else(|e| panic!("{}: {e}", message.id));
        assert!(
            matches!(verify(request, WRONG_SECRET), Err(WebhookError::InvalidSignature)),
            "a wrong secret fails"
        );
    }
    assert_no_secret(&relay.output(), &[secret.trim_start_matches("whsec_")]);
    assert!(
        relay.output().contains("signing every delivery (Standard Webhooks)"),
        "{}",
        relay.output()
    );
}

#[tokio::test]
async fn a_retried_message_keeps_its_webhook_id_and_is_signed_anew_with_a_later_timestamp() {
    let secret = new_secret().await;
    let queue = Topology::with_dead_letter().await;
    let message = TestMessage::post("old=101&new=102");
    queue.publish(std::slice::from_ref(&message)).await;
    // The first attempt is refused after 1.1 s, so the second starts at
    // least a second after it: a later whole second.
    let requests = Arc::new(AtomicUsize::new(0));
    let target = TestTarget::answering({
        let requests = requests.clone();
        move |_| match requests.fetch_add(1, Ordering::SeqCst) {
            0 => Answer {
                delay: Duration::from_millis(1100),
                ..Answer::status(422)
            },
            _ => Answer::status(200),
        }
    })
    .await;

    let mut relay = Handler::relay_with(
        &queue,
        &target.url("/hook.php"),
        &["--retry-delay", "20ms", "--max-attempts", "3"],
        signing(&secret),
    );
    target
        .wait_until(Duration::from_secs(30), "the retry accepted", |seen| {
            seen.iter().any(Seen::accepted)
        })
        .await;
    relay.stop().await;

    let seen = target.seen();
    assert_eq!(seen.len(), 2);
    let (first, second) = (&seen[0], &seen[1]);
    assert_eq!((first.attempt(), second.attempt()), (1, 2));
    assert_eq!(first.header("webhook-id"), Some(message.id.as_str()));
    assert_eq!(second.header("webhook-id"), Some(message.id.as_str()));
    assert!(
        timestamp(second) > timestamp(first),
        "{} then {}",
        timestamp(first),
        timestamp(second)
    );
    assert_ne!(first.header("webhook-signature"), second.header("webhook-signature"));
    for request in [first, second] {
        verify(request, &secret).unwrap();
    }
}

#[tokio::test]
async fn a_replayed_dead_letter_keeps_its_webhook_id_and_the_dead_letter_holds_no_signature() {
    let secret = new_secret().await;
    let queue = Topology::with_dead_letter().await;
    let message = TestMessage::post("refused=1&old=101&new=102");
    queue.publish(std::slice::from_ref(&message)).await;
    let refusing = Arc::new(AtomicBool::new(true));
    let target = TestTarget::answering({
        let refusing = refusing.clone();
        move |_| Answer::status(if refusing.load(Ordering::SeqCst) { 422 } else { 200 })
    })
    .await;

    let mut relay = Handler::relay_with(
        &queue,
        &target.url("/hook.php"),
        &["--max-attempts", "1"],
        signing(&secret),
    );
    relay.wait_for_output("dead-lettered=1", Duration::from_secs(30)).await;
    let dead = queue.peek_dead_letters().await;
    assert_eq!(dead.len(), 1);
    let stored = dead[0].to_string();
    assert!(stored.contains(&message.id), "{stored}");
    let headers = dead[0]["properties"]["headers"].as_object().unwrap();
    assert!(
        headers
            .keys()
            .all(|name| name.starts_with("x-http-") || name.starts_with("x-relay-")),
        "no signature header in the dead letter: {stored}"
    );
    assert!(!stored.contains("v1,"), "{stored}");
    assert_no_secret(&stored, &[secret.trim_start_matches("whsec_")]);

    refusing.store(false, Ordering::SeqCst);
    let settings = AppSettings::new().with("AmqpUrl", amqp_url());
    let replay = run_to_end(&["dead-letter", "replay", "--queue", &queue.queue], &settings, "").await;
    assert!(replay.status.success(), "{}", replay.output());
    wait_until_drained(&queue, &target, &relay, 1).await;
    relay.stop().await;

    let seen = target.seen();
    assert_eq!(seen.len(), 2, "refused once, then the replay delivered");
    let (refused, replayed) = (&seen[0], &seen[1]);
    assert!(!refused.accepted() && replayed.accepted());
    assert_eq!(replayed.body, message.body);
    assert_eq!(refused.header("webhook-id"), Some(message.id.as_str()));
    assert_eq!(replayed.header("webhook-id"), Some(message.id.as_str()));
    verify(replayed, &secret).unwrap();
    assert!(matches!(
        verify(replayed, WRONG_SECRET),
        Err(WebhookError::InvalidSignature)
    ));
}

#[tokio::test]
async fn while_rotating_two_secrets_sign_and_either_one_alone_verifies() {
    let (old, new) = (new_secret().await, new_secret().await);
    let queue = Topology::with_dead_letter().await;
    let messages = [TestMessage::post("old=1&new=2"), TestMessage::post("old=3&new=4")];
    queue.publish(&messages).await;
    let target = TestTarget::accepting().await;

    // Step 2 of rotating in docs/relay.md: the old secret and the new one.
    let both = format!("{old} {new}");
    let mut relay = Handler::relay_with(&queue, &target.url("/hook.php"), &[], signing(&both));
    target
        .wait_until(Duration::from_secs(30), "2 deliveries", |seen| seen.len() >= 2)
        .await;
    relay.stop().await;

    for request in target.seen() {
        let signatures: Vec<&str> = request.header("webhook-signature").unwrap().split(' ').collect();
        assert_eq!(signatures.len(), 2, "{signatures:?}");
        assert!(signatures.iter().all(|s| s.starts_with("v1,")));
        assert_ne!(signatures[0], signatures[1]);
        verify(&request, &old).unwrap();
        verify(&request, &new).unwrap();
        assert!(matches!(
            verify(&request, WRONG_SECRET),
            Err(WebhookError::InvalidSignature)
        ));
    }
}

#[tokio::test]
async fn without_the_setting_nothing_is_signed() {
    let queue = Topology::with_dead_letter().await;
    queue.publish(&[TestMessage::post("old=1&new=2")]).await;
    let target = TestTarget::accepting().await;

    let mut relay = Handler::relay(&queue, &target.url("/hook.php"), &[]);
    target
        .wait_until(Duration::from_secs(30), "a delivery", |seen| !seen.is_empty())
        .await;
    relay.stop().await;

    let request = &target.seen()[0];
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(request.header(name), None, "{name}");
    }
    assert!(matches!(
        verify(request, WRONG_SECRET),
        Err(WebhookError::MissingHeader(_))
    ));
}

#[tokio::test]
async fn a_malformed_signing_secret_stops_the_relay_at_start_naming_the_setting_not_the_value() {
    const MALFORMED: &str = "whsec_hunter2-is-not-base64";
    let queue = Topology::with_dead_letter().await;
    let args = ["relay", "--queue", &queue.queue, "--to", "http://127.0.0.1:9/"];
    let output = fails_at_start(&args, AppSettings::new().with("RelaySigningSecret", MALFORMED)).await;
    assert!(
        output
            .contains("stderr: error: setting RelaySigningSecret is invalid: the secret is not base64 after whsec_; "),
        "{output}"
    );
    assert_no_secret(&output, &["hunter2"]);
}
