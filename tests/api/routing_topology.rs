//! The topology for per-type routing against the real broker: `handler
//! setup --binding-key`, `--exchange-type` and `--alternate-exchange`, the
//! errors for an exchange RabbitMQ cannot change, and `handler check
//! --type` following each type's key to its queue.

use reqwest::Method;
use serde_json::json;

use test_support::AppSettings;
use test_support::broker::{Topology, api_get, api_send};
use test_support::process::{Finished, run_to_end};

const TEMPLATE: &str = "webhook.{query.type|other}";

async fn setup(topology: &Topology, args: &[&str]) -> Finished {
    setup_with(&topology.settings(), args).await
}

async fn setup_with(settings: &AppSettings, args: &[&str]) -> Finished {
    let mut line = vec!["setup"];
    line.extend_from_slice(args);
    run_to_end(&line, settings, "").await
}

async fn check(topology: &Topology, args: &[&str]) -> Finished {
    let mut line = vec!["check"];
    line.extend_from_slice(args);
    run_to_end(&line, &topology.settings().with("AmqpRoutingKey", TEMPLATE), "").await
}

#[tokio::test]
async fn setup_binds_each_key_on_a_topic_exchange_with_an_alternate_exchange() {
    let topology = Topology::names();
    let queue = topology.other_queue("invoices");
    let args = [
        "--queue",
        &queue,
        "--exchange-type",
        "topic",
        "--binding-key",
        "webhook.invoice",
        "--binding-key",
        "webhook.invoice.#",
        "--alternate-exchange",
        "--dead-letter",
    ];

    let run = setup(&topology, &args).await;

    assert!(run.status.success(), "{}", run.output());
    let unrouted = topology.unrouted();
    let (_, exchange) = api_get(&format!("exchanges/%2F/{}", topology.exchange)).await;
    assert_eq!(exchange["type"], "topic");
    assert_eq!(exchange["durable"], true);
    assert_eq!(exchange["arguments"], json!({ "alternate-exchange": unrouted }));
    let (_, alternate) = api_get(&format!("exchanges/%2F/{unrouted}")).await;
    assert_eq!(
        (&alternate["type"], &alternate["durable"]),
        (&json!("fanout"), &json!(true))
    );
    let (_, unrouted_queue) = api_get(&format!("queues/%2F/{unrouted}")).await;
    assert_eq!(unrouted_queue["durable"], true);
    assert_eq!(
        unrouted_queue["arguments"].get("x-message-ttl"),
        None,
        "unrouted webhooks wait"
    );
    let (_, bindings) = api_get(&format!("exchanges/%2F/{}/bindings/source", topology.exchange)).await;
    let mut keys: Vec<&str> = bindings
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["routing_key"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["webhook.invoice", "webhook.invoice.#"]);
    let (_, bindings) = api_get(&format!("exchanges/%2F/{unrouted}/bindings/source")).await;
    assert_eq!(bindings[0]["destination"], unrouted.as_str());
    // For a relay draining the unrouted queue to set poison messages aside.
    let (status, _) = api_get(&format!("queues/%2F/{unrouted}.dead-letter")).await;
    assert_eq!(status, 200);
    assert!(
        run.stdout.contains(&format!(
            "created   exchange \"{}\" (topic, durable, unroutable messages to \"{unrouted}\")",
            topology.exchange
        )),
        "{}",
        run.output()
    );
    assert!(run.stdout.contains("13 created, 0 unchanged"), "{}", run.output());

    let again = setup(&topology, &args).await;
    assert!(again.status.success(), "{}", again.output());
    assert!(again.stdout.contains("0 created, 13 unchanged"), "{}", again.output());
}

#[tokio::test]
async fn an_exchanges_type_cannot_change_and_the_error_says_what_to_do() {
    let topology = Topology::names();
    let first = setup(&topology, &["--queue", &topology.other_queue("a")]).await;
    assert!(first.status.success(), "{}", first.output());

    let run = setup(
        &topology,
        &[
            "--queue",
            &topology.other_queue("b"),
            "--exchange-type",
            "topic",
            "--binding-key",
            "webhook.#",
        ],
    )
    .await;

    assert!(!run.status.success());
    assert!(
        run.stderr.contains(&format!(
            "exchange \"{}\" already exists with different settings (inequivalent arg 'type'",
            topology.exchange
        )),
        "{}",
        run.output()
    );
    assert!(
        run.stderr.contains(
            "It is a direct exchange, and RabbitMQ cannot change an exchange's type: run setup with --exchange-type direct, or publish to a new exchange instead (set AmqpExchange"
        ),
        "{}",
        run.output()
    );
    let (_, exchange) = api_get(&format!("exchanges/%2F/{}", topology.exchange)).await;
    assert_eq!(exchange["type"], "direct", "left as it was");
}

#[tokio::test]
async fn an_alternate_exchange_cannot_be_added_to_an_existing_exchange_nor_left_out() {
    let topology = Topology::names();
    let queue = topology.other_queue("a");
    assert!(setup(&topology, &["--queue", &queue]).await.status.success());

    let added = setup(&topology, &["--queue", &queue, "--alternate-exchange"]).await;

    assert!(!added.status.success());
    assert!(
        added
            .stderr
            .contains("It has no alternate exchange, and RabbitMQ cannot add one to an existing exchange"),
        "{}",
        added.output()
    );

    let other = Topology::names();
    let queue = other.other_queue("a");
    assert!(
        setup(&other, &["--queue", &queue, "--alternate-exchange"])
            .await
            .status
            .success()
    );
    let left_out = setup(&other, &["--queue", &queue]).await;
    assert!(!left_out.status.success());
    assert!(
        left_out.stderr.contains(&format!(
            "It sends unroutable messages to \"{}\", and RabbitMQ cannot change that: run setup with --alternate-exchange",
            other.unrouted()
        )),
        "{}",
        left_out.output()
    );
}

#[tokio::test]
async fn a_template_key_needs_binding_keys_and_a_pattern_needs_a_topic_exchange() {
    let topology = Topology::names();
    let queue = topology.other_queue("a");
    let templated = topology.settings().with("AmqpRoutingKey", TEMPLATE);

    let run = setup_with(&templated, &["--queue", &queue]).await;
    assert!(!run.status.success());
    assert!(
        run.stderr.contains(
            "setting AmqpRoutingKey is the template \"webhook.{query.type|other}\", so setup cannot tell which keys queue"
        ),
        "{}",
        run.output()
    );
    assert!(run.stderr.contains("--binding-key webhook.invoice"), "{}", run.output());

    let run = setup_with(&templated, &["--queue", &queue, "--binding-key", "webhook.#"]).await;
    assert!(!run.status.success());
    assert!(
        run.stderr
            .contains("--binding-key \"webhook.#\" is a pattern, but a direct exchange matches keys exactly"),
        "{}",
        run.output()
    );
    let (status, _) = api_get(&format!("exchanges/%2F/{}", topology.exchange)).await;
    assert_eq!(status, 404, "nothing declared");
}

#[tokio::test]
async fn check_follows_each_type_to_its_queue_and_fails_a_type_nothing_binds() {
    let topology = Topology::names();
    for kind in ["invoice", "product"] {
        let queue = topology.other_queue(kind);
        let key = format!("webhook.{kind}");
        assert!(
            setup(&topology, &["--queue", &queue, "--binding-key", &key])
                .await
                .status
                .success()
        );
    }

    let run = check(
        &topology,
        &["--type", "invoice", "--type", "product", "--type", "order"],
    )
    .await;

    assert!(!run.status.success(), "{}", run.output());
    let invoices = topology.other_queue("invoice");
    assert!(
        run.stdout.contains(&format!(
            "[ok]   type \"invoice\": queue \"{invoices}\" is bound with routing key \"webhook.invoice\": durable, classic, message TTL 7 days"
        )),
        "{}",
        run.output()
    );
    assert!(
        run.stdout.contains(&format!(
            "[FAIL] type \"order\": no queue is bound to exchange \"{}\" with routing key \"webhook.order\"",
            topology.exchange
        )),
        "{}",
        run.output()
    );
    assert!(!run.stdout.contains("[FAIL] type \"product\""), "{}", run.output());
}

#[tokio::test]
async fn check_passes_with_an_alternate_exchange_and_says_where_unbound_types_go() {
    let topology = Topology::names();
    let invoices = topology.other_queue("invoice");
    let args = [
        "--queue",
        &invoices,
        "--binding-key",
        "webhook.invoice",
        "--alternate-exchange",
    ];
    assert!(setup(&topology, &args).await.status.success());

    let run = check(&topology, &["--type", "invoice", "--type", "order", "--type", "a#b"]).await;

    assert!(run.status.success(), "{}", run.output());
    let unrouted = topology.unrouted();
    assert!(
        run.stdout.contains(&format!(
            "[warn] type \"order\": no queue is bound to exchange \"{}\" with routing key \"webhook.order\": such webhooks go to the alternate exchange \"{unrouted}\" and wait in \"{unrouted}\" (durable); drain it with `handler relay --queue {unrouted}`",
            topology.exchange
        )),
        "{}",
        run.output()
    );
    assert!(
        run.stdout.contains(
            "type \"a#b\" ({query.type|other} held '#' (outside A-Z a-z 0-9 _ - .), used \"other\"): no queue is bound"
        ),
        "the replaced value is shown: {}",
        run.output()
    );
    assert!(run.stdout.contains("check passed"), "{}", run.output());
}

#[tokio::test]
async fn check_follows_e_conomics_types_by_default_through_a_topic_catch_all() {
    let topology = Topology::names();
    let everything = topology.other_queue("all");
    let args = [
        "--queue",
        &everything,
        "--exchange-type",
        "topic",
        "--binding-key",
        "webhook.#",
    ];
    assert!(setup(&topology, &args).await.status.success());
    // A queue for nothing the template renders: it must not be reported.
    let unrelated = json!({"routing_key": "orders.#"});
    let path = format!("bindings/%2F/e/{}/q/{everything}", topology.exchange);
    assert_eq!(api_send(Method::POST, &path, Some(&unrelated)).await, 201);

    let run = check(&topology, &[]).await;

    assert!(run.status.success(), "{}", run.output());
    for kind in [
        "invoice",
        "daybook",
        "customer",
        "product",
        "project",
        "order",
        "quotation",
        "cashbook",
    ] {
        assert!(
            run.stdout.contains(&format!(
                "[ok]   type \"{kind}\": queue \"{everything}\" is bound with \"webhook.#\", which takes routing key \"webhook.{kind}\""
            )),
            "{kind}: {}",
            run.output()
        );
    }
    assert!(
        run.stdout
            .contains(&format!("exchange \"{}\" exists: topic, durable", topology.exchange)),
        "{}",
        run.output()
    );
}
