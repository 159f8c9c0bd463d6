//! `handler check` against the real broker: it passes on what setup made,
//! fails naming what is missing, and never publishes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::Method;
use serde_json::json;

use test_support::assert_no_secret;
use test_support::broker::{TestUser, Topology, api_send, broker_url, broker_url_shown};
use test_support::process::{Finished, run_to_end};

async fn set_up(names: &Topology) {
    let run = run_to_end(&["setup", "--queue", &names.queue], &names.settings(), "").await;
    assert!(run.status.success(), "{}", run.output());
}

#[tokio::test]
async fn check_passes_after_setup_and_publishes_nothing() {
    let names = Topology::names();
    set_up(&names).await;

    let run = run_to_end(&["check"], &names.settings(), "").await;

    assert!(run.status.success(), "{}", run.output());
    assert!(!run.stdout.contains("[FAIL]"), "{}", run.output());
    assert!(
        run.stdout.contains(&format!(
            "[ok]   queue \"{}\" is bound with routing key \"webhook\": durable, classic, message TTL 7 days",
            names.queue
        )),
        "{}",
        run.output()
    );
    assert!(run.stdout.contains("check passed"), "{}", run.output());
    let taken = names.take_all().await;
    assert!(taken.is_empty(), "check published: {taken:?}");
}

#[tokio::test]
async fn check_fails_naming_the_missing_binding_after_it_is_removed() {
    let names = Topology::names();
    set_up(&names).await;
    let binding = format!("bindings/%2F/e/{}/q/{}/webhook", names.exchange, names.queue);
    assert_eq!(api_send(Method::DELETE, &binding, None).await, 204);

    let run = run_to_end(&["check"], &names.settings(), "").await;

    assert!(!run.status.success(), "{}", run.output());
    assert!(
        run.stdout.contains(&format!(
            "[FAIL] no queue is bound to exchange \"{}\" with routing key \"webhook\"",
            names.exchange
        )),
        "{}",
        run.output()
    );
    assert!(run.stderr.contains("error: check failed"), "{}", run.output());
}

#[tokio::test]
async fn check_of_a_named_queue_fails_when_that_queue_is_not_bound() {
    let names = Topology::names();
    set_up(&names).await;
    let other = names.dead_letter();

    let run = run_to_end(&["check", "--queue", &other], &names.settings(), "").await;

    assert!(!run.status.success(), "{}", run.output());
    assert!(
        run.stdout.contains(&format!(
            "[FAIL] queue \"{other}\" is not bound to exchange \"{}\" with routing key \"webhook\"",
            names.exchange
        )),
        "{}",
        run.output()
    );
}

#[tokio::test]
async fn check_fails_when_only_a_non_durable_queue_is_bound() {
    let names = Topology::names();
    let exchange = json!({"type": "direct", "durable": true});
    let queue = json!({"durable": false, "arguments": {"x-expires": 600_000}});
    let binding = json!({"routing_key": "webhook"});
    assert_eq!(
        api_send(
            Method::PUT,
            &format!("exchanges/%2F/{}", names.exchange),
            Some(&exchange)
        )
        .await,
        201
    );
    assert_eq!(
        api_send(Method::PUT, &format!("queues/%2F/{}", names.queue), Some(&queue)).await,
        201
    );
    let bind = format!("bindings/%2F/e/{}/q/{}", names.exchange, names.queue);
    assert_eq!(api_send(Method::POST, &bind, Some(&binding)).await, 201);

    let run = run_to_end(&["check"], &names.settings(), "").await;

    assert!(!run.status.success(), "{}", run.output());
    assert!(
        run.stdout.contains(&format!(
            "[FAIL] queue \"{}\" is bound with routing key \"webhook\" but is not durable",
            names.queue
        )),
        "{}",
        run.output()
    );
}

#[tokio::test]
async fn check_fails_when_the_exchange_does_not_exist() {
    let names = Topology::names();

    let run = run_to_end(&["check"], &names.settings(), "").await;

    assert!(!run.status.success(), "{}", run.output());
    assert!(
        run.stdout.contains(&format!(
            "[FAIL] exchange \"{}\" does not exist in vhost \"/\"",
            names.exchange
        )),
        "{}",
        run.output()
    );
}

#[tokio::test]
async fn check_with_wrong_credentials_fails_without_printing_the_password() {
    let names = Topology::names();
    let wrong = BASE64.encode("guest:wr0ng-pa55word");
    let settings = names.settings().with("AmqpAuthHeader", wrong.as_str());

    let run = run_to_end(&["check"], &settings, "").await;

    assert!(!run.status.success());
    assert!(
        run.stdout
            .contains("[FAIL] the broker refused the credentials of user \"guest\" (401 "),
        "{}",
        run.output()
    );
    assert_no_secret(&run.output(), &["wr0ng-pa55word", &wrong]);
}

#[tokio::test]
async fn check_reports_settings_that_do_not_parse() {
    let run = run_to_end(&["check"], &test_support::AppSettings::new(), "").await;

    assert!(!run.status.success());
    assert!(
        run.stdout.contains("[FAIL] settings: setting AmqpUrl is missing"),
        "{}",
        run.output()
    );
}

/// A directory holding only `host_json` as host.json, removed at the end.
struct AppRoot(std::path::PathBuf);

impl AppRoot {
    fn with_host_json(host_json: &serde_json::Value) -> Self {
        let dir = std::env::temp_dir().join(format!("app-root-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("host.json"), host_json.to_string()).unwrap();
        Self(dir)
    }
}

impl Drop for AppRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn check_warns_that_the_allow_list_in_proxying_mode_rests_on_an_unverified_header() {
    let names = Topology::names();
    set_up(&names).await;
    let root = AppRoot::with_host_json(&json!({"customHandler": {"enableProxyingHttpRequest": true}}));
    let settings = names
        .settings()
        .with("AllowedSourceNetworks", "e-conomic")
        .with("FUNCTIONS_APP_ROOT_PATH", root.0.display().to_string());

    let run = run_to_end(&["check"], &settings, "").await;

    assert!(
        run.status.success(),
        "warnings do not fail the check:\n{}",
        run.output()
    );
    assert!(
        run.stdout.contains("[ok]   ") && run.stdout.contains("proxying mode (enableProxyingHttpRequest)"),
        "{}",
        run.output()
    );
    assert!(
        run.stdout
            .contains("[warn] AllowedSourceNetworks in proxying mode: X-Forwarded-For holds only the host's own peer"),
        "{}",
        run.output()
    );
}

#[tokio::test]
async fn check_warns_about_a_host_json_in_payload_mode() {
    let names = Topology::names();
    set_up(&names).await;
    let root = AppRoot::with_host_json(&json!({"version": "2.0", "customHandler": {"description": {}}}));
    let settings = names
        .settings()
        .with("FUNCTIONS_APP_ROOT_PATH", root.0.display().to_string());

    let run = run_to_end(&["check"], &settings, "").await;

    assert!(run.status.success(), "{}", run.output());
    assert!(
        run.stdout.contains("payload mode") && run.stdout.contains("decodes text bodies as UTF-8"),
        "{}",
        run.output()
    );
    assert!(!run.stdout.contains("AllowedSourceNetworks"), "{}", run.output());
}

// ---- PublishTransport=amqp: the AMQP path, then the management API ------------

/// Asserts that the checklist (stdout) has `line`.
fn assert_listed(run: &Finished, line: &str) {
    assert!(run.stdout.contains(line), "no {line:?} in:\n{}", run.output());
}

#[tokio::test]
async fn check_over_amqp_connects_as_the_transport_does_and_passes_after_setup() {
    let names = Topology::names();
    set_up(&names).await;

    let run = run_to_end(&["check"], &names.amqp_transport_settings(), "").await;

    assert!(run.status.success(), "{}", run.output());
    for line in [
        format!("over AMQP at {}", broker_url_shown("guest")),
        format!(
            "[ok]   connected over AMQP to {} as user \"guest\" (heartbeat 30 s",
            broker_url_shown("guest")
        ),
        format!(
            "[ok]   exchange \"{}\" exists in vhost \"/\" (seen over AMQP)",
            names.exchange
        ),
        format!("[ok]   queue \"{}\" is bound with routing key \"webhook\"", names.queue),
        "check passed".to_owned(),
    ] {
        assert_listed(&run, &line);
    }
    assert!(names.take_all().await.is_empty(), "check published");
}

#[tokio::test]
async fn check_over_amqp_fails_when_the_exchange_does_not_exist() {
    let names = Topology::names();

    let run = run_to_end(&["check"], &names.amqp_transport_settings(), "").await;

    assert!(!run.status.success(), "{}", run.output());
    let missing = format!(
        "[FAIL] exchange \"{}\" does not exist in vhost \"/\": run `handler setup`",
        names.exchange
    );
    assert_listed(&run, &missing);
}

#[tokio::test]
async fn check_over_amqp_with_a_wrong_password_fails_without_printing_it() {
    let names = Topology::names();
    let settings = names
        .amqp_transport_settings()
        .with("AmqpUrl", broker_url("guest", "wr0ng-amqp-pa55"));

    let run = run_to_end(&["check"], &settings, "").await;

    assert!(!run.status.success());
    assert_listed(
        &run,
        &format!(
            "[FAIL] the broker at {} refused the credentials of user \"guest\" (ACCESS_REFUSED): fix the user name or password in setting AmqpUrl",
            broker_url_shown("guest")
        ),
    );
    assert_no_secret(&run.output(), &["wr0ng-amqp-pa55"]);
}

#[tokio::test]
async fn check_over_amqp_says_what_it_could_not_verify_when_the_management_api_refuses() {
    // A user AMQP accepts but the management API does not (no management tag).
    let names = Topology::names();
    set_up(&names).await;
    let user = TestUser::create("").await;
    let settings = names.amqp_transport_settings().with("AmqpUrl", user.amqp_url());

    let run = run_to_end(&["check"], &settings, "").await;

    assert!(!run.status.success(), "not verified is not passed:\n{}", run.output());
    assert_listed(&run, "[ok]   connected over AMQP");
    assert_listed(&run, "[warn] NOT VERIFIED: the bindings and queues");
    assert!(
        run.stderr.contains(
            "check incomplete: the AMQP connection and the exchange are fine, but whether a durable queue is bound"
        ),
        "{}",
        run.output()
    );
    assert_no_secret(&run.output(), &[&user.password]);
}

#[tokio::test]
async fn check_warns_about_a_quorum_queue_left_with_the_brokers_default_delivery_limit() {
    let names = Topology::names();
    let exchange = json!({"type": "direct", "durable": true});
    let queue = json!({"durable": true, "arguments": {"x-queue-type": "quorum"}});
    let binding = json!({"routing_key": "webhook"});
    let exchange_path = format!("exchanges/%2F/{}", names.exchange);
    assert_eq!(api_send(Method::PUT, &exchange_path, Some(&exchange)).await, 201);
    let queue_path = format!("queues/%2F/{}", names.queue);
    assert_eq!(api_send(Method::PUT, &queue_path, Some(&queue)).await, 201);
    let bind = format!("bindings/%2F/e/{}/q/{}", names.exchange, names.queue);
    assert_eq!(api_send(Method::POST, &bind, Some(&binding)).await, 201);

    let run = run_to_end(&["check"], &names.settings(), "").await;

    assert!(
        run.status.success(),
        "a warning does not fail the check:\n{}",
        run.output()
    );
    assert!(
        run.stdout.contains(&format!(
            "[warn] queue \"{}\" is a quorum queue without a delivery limit of its own",
            names.queue
        )),
        "{}",
        run.output()
    );
}

#[tokio::test]
async fn check_reports_whether_the_queue_has_a_single_active_consumer() {
    let standby = Topology::names();
    let run = run_to_end(
        &["setup", "--queue", &standby.queue, "--single-active-consumer"],
        &standby.settings(),
        "",
    )
    .await;
    assert!(run.status.success(), "{}", run.output());
    assert!(
        run.stdout.contains(&format!(
            "created   queue \"{0}\" (durable, classic, message TTL 7 days, dead letters to \"{0}.dead-letter\", single active consumer)",
            standby.queue
        )),
        "{}",
        run.output()
    );
    let (_, queue) = test_support::broker::api_get(&format!("queues/%2F/{}", standby.queue)).await;
    assert_eq!(queue["arguments"]["x-single-active-consumer"], true);
    let run = run_to_end(&["check", "--queue", &standby.queue], &standby.settings(), "").await;
    assert!(run.status.success(), "{}", run.output());
    assert_listed(
        &run,
        &format!(
            "[ok]   queue \"{0}\" is bound with routing key \"webhook\": durable, classic, message TTL 7 days, dead letters to \"{0}.dead-letter\", single active consumer",
            standby.queue
        ),
    );
    assert!(!run.stdout.contains("no single active consumer"), "{}", run.output());

    let shared = Topology::names();
    set_up(&shared).await;
    let run = run_to_end(&["check", "--queue", &shared.queue], &shared.settings(), "").await;
    assert!(
        run.status.success(),
        "warnings and notes do not fail the check:\n{}",
        run.output()
    );
    assert_listed(
        &run,
        &format!(
            "[ok]   queue \"{}\" has no single active consumer: relays on it share its messages",
            shared.queue
        ),
    );
}
