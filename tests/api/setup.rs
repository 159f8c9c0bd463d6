//! `handler setup` against the real broker: what it declares, that a second
//! run changes nothing, and how it fails.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    MANAGEMENT, OwnNames, assert_no_secret, get_messages, management_get, management_send, run_handler, with,
};

/// The exchange, queue and bindings under `names`, as the broker shows them.
async fn snapshot(names: &OwnNames) -> Value {
    let (_, exchange) = management_get(&format!("exchanges/%2F/{}", names.exchange)).await;
    let (_, queue) = management_get(&format!("queues/%2F/{}", names.queue)).await;
    let (_, bindings) = management_get(&format!("exchanges/%2F/{}/bindings/source", names.exchange)).await;
    json!({
        "exchange": [exchange["type"], exchange["durable"], exchange["auto_delete"], exchange["internal"]],
        "queue": [queue["durable"], queue["auto_delete"], queue["type"], queue["arguments"]],
        "bindings": bindings,
    })
}

async fn publish_directly(names: &OwnNames, payload: &str) {
    let body = json!({"properties": {"delivery_mode": 2}, "routing_key": "webhook", "payload": payload, "payload_encoding": "string"});
    let path = format!("exchanges/%2F/{}/publish", names.exchange);
    assert_eq!(management_send(Method::POST, &path, Some(&body)).await, 200);
}

#[tokio::test]
async fn setup_on_fresh_names_creates_exactly_the_seeds_topology() {
    let names = OwnNames::new();

    let run = run_handler(&["setup", "--queue", &names.queue], &names.settings(), "").await;

    assert!(run.status.success(), "{}", run.output());
    assert_eq!(
        snapshot(&names).await,
        json!({
            "exchange": ["direct", true, false, false],
            "queue": [true, false, "classic", {"x-message-ttl": 604_800_000}],
            "bindings": [{
                "source": names.exchange, "vhost": "/", "destination": names.queue,
                "destination_type": "queue", "routing_key": "webhook", "arguments": {},
                "properties_key": "webhook"
            }],
        })
    );
    let (status, _) = management_get(&format!("queues/%2F/{}", names.dead_letter())).await;
    assert_eq!(status, 404, "no dead-letter queue unless asked for");
    assert!(run.stdout.contains("3 created, 0 unchanged"), "{}", run.output());
}

#[tokio::test]
async fn a_second_setup_changes_nothing_and_exits_zero() {
    let names = OwnNames::new();
    let args = ["setup", "--queue", &names.queue, "--dead-letter"];
    assert!(run_handler(&args, &names.settings(), "").await.status.success());
    let before = snapshot(&names).await;
    publish_directly(&names, "kept across the second run").await;

    let again = run_handler(&args, &names.settings(), "").await;

    assert!(again.status.success(), "{}", again.output());
    assert!(again.stdout.contains("0 created, 6 unchanged"), "{}", again.output());
    assert!(!again.stdout.contains("created  "), "{}", again.output());
    assert_eq!(snapshot(&names).await, before);
    let kept = get_messages(&names.queue, 1, "ack_requeue_false").await;
    assert_eq!(kept[0]["payload"], "kept across the second run");
}

#[tokio::test]
async fn dead_letter_and_quorum_declare_the_documented_names() {
    let names = OwnNames::new();
    let dead_letter = names.dead_letter();

    let run = run_handler(
        &[
            "setup",
            "--queue",
            &names.queue,
            "--ttl-days",
            "1",
            "--quorum",
            "--dead-letter",
        ],
        &names.settings(),
        "",
    )
    .await;

    assert!(run.status.success(), "{}", run.output());
    let (_, main) = management_get(&format!("queues/%2F/{}", names.queue)).await;
    assert_eq!(main["type"], "quorum");
    assert_eq!(
        main["arguments"],
        json!({"x-queue-type": "quorum", "x-message-ttl": 86_400_000, "x-dead-letter-exchange": dead_letter})
    );
    let (_, exchange) = management_get(&format!("exchanges/%2F/{dead_letter}")).await;
    assert_eq!(
        (&exchange["type"], &exchange["durable"]),
        (&json!("fanout"), &json!(true))
    );
    let (_, queue) = management_get(&format!("queues/%2F/{dead_letter}")).await;
    assert_eq!((&queue["type"], &queue["durable"]), (&json!("quorum"), &json!(true)));
    // A rejected message really ends up in the dead-letter queue.
    publish_directly(&names, "rejected").await;
    assert_eq!(get_messages(&names.queue, 1, "reject_requeue_false").await.len(), 1);
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = get_messages(&dead_letter, 1, "ack_requeue_false").await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(dead[0]["payload"], "rejected");
}

#[tokio::test]
async fn wrong_credentials_fail_clearly_without_printing_the_password() {
    let names = OwnNames::new();
    let wrong = BASE64.encode("guest:wr0ng-pa55word");
    let settings = with(names.settings(), &[("AmqpAuthHeader", wrong.as_str())]);

    let run = run_handler(&["setup", "--queue", &names.queue], &settings, "").await;

    assert!(!run.status.success());
    assert!(
        run.stderr
            .contains("the broker refused the credentials of user \"guest\" (401 Login failed)"),
        "{}",
        run.output()
    );
    assert_no_secret(&run.output(), &["wr0ng-pa55word", &wrong]);
    let (status, _) = management_get(&format!("exchanges/%2F/{}", names.exchange)).await;
    assert_eq!(status, 404, "nothing declared");
}

#[tokio::test]
async fn wrong_credentials_in_amqp_url_are_not_printed_either() {
    let names = OwnNames::new();
    let settings = vec![
        (
            "AmqpUrl".to_owned(),
            "amqp://guest:wr0ng-pa55word@127.0.0.1/".to_owned(),
        ),
        ("AmqpExchange".to_owned(), names.exchange.clone()),
    ];

    let run = run_handler(&["setup", "--queue", &names.queue], &settings, "").await;

    assert!(!run.status.success());
    assert!(run.stderr.contains("401 Login failed"), "{}", run.output());
    assert_no_secret(
        &run.output(),
        &["wr0ng-pa55word", &BASE64.encode("guest:wr0ng-pa55word")],
    );
}

#[tokio::test]
async fn an_unknown_vhost_is_named() {
    let names = OwnNames::new();
    let vhost = format!("no-such-vhost-{}", names.queue);
    let endpoint = format!("{MANAGEMENT}/api/exchanges/{vhost}/{}/publish", names.exchange);
    let settings = with(names.settings(), &[("AmqpEndpoint", &endpoint)]);

    let run = run_handler(&["setup", "--queue", &names.queue], &settings, "").await;

    assert!(!run.status.success());
    assert!(
        run.stderr
            .contains(&format!("vhost \"{vhost}\" does not exist on this broker (404)")),
        "{}",
        run.output()
    );
}

#[tokio::test]
async fn a_queue_with_other_arguments_is_named_with_what_to_do() {
    let names = OwnNames::new();
    assert!(
        run_handler(&["setup", "--queue", &names.queue], &names.settings(), "")
            .await
            .status
            .success()
    );

    let run = run_handler(
        &["setup", "--queue", &names.queue, "--ttl-days", "1"],
        &names.settings(),
        "",
    )
    .await;

    assert!(!run.status.success());
    let expected = format!(
        "queue \"{}\" already exists with different settings (inequivalent arg 'x-message-ttl'",
        names.queue
    );
    assert!(run.stderr.contains(&expected), "{}", run.output());
    assert!(
        run.stderr.contains("received '86400000' but current is '604800000'"),
        "{}",
        run.output()
    );
    assert!(run.stderr.contains("--ttl-days"), "{}", run.output());
    assert!(
        run.stderr.contains("delete the queue (its messages are lost)"),
        "{}",
        run.output()
    );
    let (_, queue) = management_get(&format!("queues/%2F/{}", names.queue)).await;
    assert_eq!(
        queue["arguments"]["x-message-ttl"], 604_800_000,
        "the queue is left as it was"
    );
}

#[tokio::test]
async fn an_exchange_of_another_type_is_named_with_what_to_do() {
    let names = OwnNames::new();
    let body = json!({"type": "fanout", "durable": true});
    let path = format!("exchanges/%2F/{}", names.exchange);
    assert_eq!(management_send(Method::PUT, &path, Some(&body)).await, 201);

    let run = run_handler(&["setup", "--queue", &names.queue], &names.settings(), "").await;

    assert!(!run.status.success());
    assert!(
        run.stderr.contains(&format!(
            "exchange \"{}\" already exists with different settings (inequivalent arg 'type'",
            names.exchange
        )),
        "{}",
        run.output()
    );
}
