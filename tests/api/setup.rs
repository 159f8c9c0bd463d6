//! `handler setup` against the real broker: what it declares, that a second
//! run changes nothing, and how it fails.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::Method;
use serde_json::{Value, json};

use test_support::assert_no_secret;
use test_support::broker::{Topology, api_get, api_send, management_url, reject_one, return_to_queue};
use test_support::process::run_to_end;

/// The exchange, queue and bindings under `names`, as the broker shows them.
async fn snapshot(names: &Topology) -> Value {
    let (_, exchange) = api_get(&format!("exchanges/%2F/{}", names.exchange)).await;
    let (_, mut queue) = api_get(&format!("queues/%2F/{}", names.queue)).await;
    // RabbitMQ 4 lists the queue type it defaulted to among the arguments
    // ("x-queue-type": "classic"); 3.10 does not. The type is compared anyway.
    let kind = queue["type"].clone();
    if let Some(arguments) = queue["arguments"].as_object_mut()
        && arguments.get("x-queue-type") == Some(&kind)
    {
        arguments.remove("x-queue-type");
    }
    let (_, bindings) = api_get(&format!("exchanges/%2F/{}/bindings/source", names.exchange)).await;
    json!({
        "exchange": [exchange["type"], exchange["durable"], exchange["auto_delete"], exchange["internal"]],
        "queue": [queue["durable"], queue["auto_delete"], queue["type"], queue["arguments"]],
        "bindings": bindings,
    })
}

async fn publish_directly(names: &Topology, payload: &str) {
    let body = json!({"properties": {"delivery_mode": 2}, "routing_key": "webhook", "payload": payload, "payload_encoding": "string"});
    let path = format!("exchanges/%2F/{}/publish", names.exchange);
    assert_eq!(api_send(Method::POST, &path, Some(&body)).await, 200);
}

#[tokio::test]
async fn setup_declares_the_dead_letter_queue_by_default_as_run_local_does() {
    let names = Topology::names();
    let dead_letter = names.dead_letter();

    let run = run_to_end(&["setup", "--queue", &names.queue], &names.settings(), "").await;

    assert!(run.status.success(), "{}", run.output());
    assert!(run.stdout.contains("6 created, 0 unchanged"), "{}", run.output());
    // RabbitMQ 4 also lists the "x-queue-type" it defaulted to.
    let (_, main) = api_get(&format!("queues/%2F/{}", names.queue)).await;
    assert_eq!(main["arguments"]["x-message-ttl"], 604_800_000);
    assert_eq!(main["arguments"]["x-dead-letter-exchange"], json!(dead_letter));
    let (status, _) = api_get(&format!("queues/%2F/{dead_letter}")).await;
    assert_eq!(status, 200, "the dead-letter queue is declared");
    // run-local's own words for it (`--dead-letter`) change nothing after it.
    let explicit = ["setup", "--queue", &names.queue, "--dead-letter"];
    let again = run_to_end(&explicit, &names.settings(), "").await;
    assert!(again.stdout.contains("0 created, 6 unchanged"), "{}", again.output());
}

#[tokio::test]
async fn setup_without_dead_letter_creates_exactly_the_seeds_topology() {
    let names = Topology::names();

    let args = ["setup", "--queue", &names.queue, "--no-dead-letter"];
    let run = run_to_end(&args, &names.settings(), "").await;

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
    let (status, _) = api_get(&format!("queues/%2F/{}", names.dead_letter())).await;
    assert_eq!(status, 404, "no dead-letter queue with --no-dead-letter");
    assert!(run.stdout.contains("3 created, 0 unchanged"), "{}", run.output());
}

#[tokio::test]
async fn a_second_setup_changes_nothing_and_exits_zero() {
    let names = Topology::names();
    let args = ["setup", "--queue", &names.queue, "--dead-letter"];
    assert!(run_to_end(&args, &names.settings(), "").await.status.success());
    let before = snapshot(&names).await;
    publish_directly(&names, "kept across the second run").await;

    let again = run_to_end(&args, &names.settings(), "").await;

    assert!(again.status.success(), "{}", again.output());
    assert!(again.stdout.contains("0 created, 6 unchanged"), "{}", again.output());
    assert!(!again.stdout.contains("created  "), "{}", again.output());
    assert_eq!(snapshot(&names).await, before);
    let kept = names.take(1).await;
    assert_eq!(kept[0].body, b"kept across the second run");
}

#[tokio::test]
async fn dead_letter_and_quorum_declare_the_documented_names() {
    let names = Topology::names();
    let dead_letter = names.dead_letter();

    let run = run_to_end(
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
    let (_, main) = api_get(&format!("queues/%2F/{}", names.queue)).await;
    assert_eq!(main["type"], "quorum");
    assert_eq!(
        main["arguments"],
        json!({
            "x-queue-type": "quorum",
            "x-delivery-limit": 2_147_483_647,
            "x-message-ttl": 86_400_000,
            "x-dead-letter-exchange": dead_letter
        })
    );
    let (_, exchange) = api_get(&format!("exchanges/%2F/{dead_letter}")).await;
    assert_eq!(
        (&exchange["type"], &exchange["durable"]),
        (&json!("fanout"), &json!(true))
    );
    let (_, queue) = api_get(&format!("queues/%2F/{dead_letter}")).await;
    assert_eq!((&queue["type"], &queue["durable"]), (&json!("quorum"), &json!(true)));
    // A rejected message really ends up in the dead-letter queue.
    publish_directly(&names, "rejected").await;
    reject_one(&names.queue).await;
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = names.take_dead_letters().await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(dead[0].body, b"rejected");
}

#[tokio::test]
async fn wrong_credentials_fail_clearly_without_printing_the_password() {
    let names = Topology::names();
    let wrong = BASE64.encode("guest:wr0ng-pa55word");
    let settings = names.settings().with("AmqpAuthHeader", wrong.as_str());

    let run = run_to_end(&["setup", "--queue", &names.queue], &settings, "").await;

    assert!(!run.status.success());
    assert!(
        run.stderr
            .contains("the broker refused the credentials of user \"guest\" (401 "),
        "{}",
        run.output()
    );
    assert_no_secret(&run.output(), &["wr0ng-pa55word", &wrong]);
    let (status, _) = api_get(&format!("exchanges/%2F/{}", names.exchange)).await;
    assert_eq!(status, 404, "nothing declared");
}

#[tokio::test]
async fn wrong_credentials_in_amqp_url_are_not_printed_either() {
    let names = Topology::names();
    let settings = names
        .amqp_url_settings()
        .with("AmqpUrl", "amqp://guest:wr0ng-pa55word@127.0.0.1/");

    let run = run_to_end(&["setup", "--queue", &names.queue], &settings, "").await;

    assert!(!run.status.success());
    assert!(
        run.stderr.contains("the user name or password is wrong"),
        "{}",
        run.output()
    );
    assert!(
        run.stderr.contains("fix setting AmqpUrl"),
        "the message names the setting the password came from: {}",
        run.output()
    );
    assert_no_secret(
        &run.output(),
        &["wr0ng-pa55word", &BASE64.encode("guest:wr0ng-pa55word")],
    );
}

#[tokio::test]
async fn an_unknown_vhost_is_named() {
    let names = Topology::names();
    let vhost = format!("no-such-vhost-{}", names.queue);
    let endpoint = format!("{}/api/exchanges/{vhost}/{}/publish", management_url(), names.exchange);
    let settings = names.settings().with("AmqpEndpoint", endpoint);

    let run = run_to_end(&["setup", "--queue", &names.queue], &settings, "").await;

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
    let names = Topology::names();
    assert!(
        run_to_end(&["setup", "--queue", &names.queue], &names.settings(), "")
            .await
            .status
            .success()
    );

    let run = run_to_end(
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
    let (_, queue) = api_get(&format!("queues/%2F/{}", names.queue)).await;
    assert_eq!(
        queue["arguments"]["x-message-ttl"], 604_800_000,
        "the queue is left as it was"
    );
}

#[tokio::test]
async fn an_exchange_of_another_type_is_named_with_what_to_do() {
    let names = Topology::names();
    let body = json!({"type": "fanout", "durable": true});
    let path = format!("exchanges/%2F/{}", names.exchange);
    assert_eq!(api_send(Method::PUT, &path, Some(&body)).await, 201);

    let run = run_to_end(&["setup", "--queue", &names.queue], &names.settings(), "").await;

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

#[tokio::test]
async fn a_quorum_queue_keeps_a_message_however_often_it_comes_back() {
    // RabbitMQ 4.x drops a message returned 20 times to a quorum queue unless
    // the queue says otherwise; a relay stopped or cut off 20 times while it
    // held the message must not lose it.
    let names = Topology::names();
    let run = run_to_end(&["setup", "--queue", &names.queue, "--quorum"], &names.settings(), "").await;
    assert!(run.status.success(), "{}", run.output());
    publish_directly(&names, "returned often").await;

    return_to_queue(&names.queue, 25).await;

    let kept = names.take(1).await;
    assert_eq!(kept.len(), 1, "the message is gone after 25 returns");
    assert_eq!(kept[0].body, b"returned often");
}
