//! `handler check`: verifies a configuration end to end without publishing,
//! along the path the settings select: the settings parse, the credentials
//! work, the vhost and the exchange exist, and a durable queue is bound for
//! the routing key. With `PublishTransport=amqp` it first connects over AMQP
//! exactly as the transport does ([`amqp`]); the binding is read from the
//! management API either way, as AMQP cannot list bindings. Prints a
//! checklist; succeeds only when a publish would be routed and persisted.

mod amqp;

use std::path::{Path, PathBuf};

use crate::broker::management::ManagementApi;
use crate::broker::management::wire::{BindingInfo, ExchangeInfo};
use crate::broker::topology::{ExchangeKind, describe_queue, has_single_active_consumer};
use crate::cli::CheckArgs;
use crate::intake::host::mode::{HostMode, find_host_json};
use crate::settings::names;
use crate::settings::{BrokerSettings, PublishTransport, Settings};

/// The check found a problem; the checklist above says which and what to do.
#[derive(Debug, thiserror::Error)]
#[error("check failed: {0}")]
pub struct CheckFailed(String);

/// Prints each item as it is decided, so a slow answer shows where it waits.
#[derive(Default)]
pub(super) struct Checklist {
    failures: usize,
}

impl Checklist {
    pub(super) fn pass(&mut self, text: &str) {
        println!("[ok]   {text}");
    }

    pub(super) fn warn(&mut self, text: &str) {
        println!("[warn] {text}");
    }

    pub(super) fn fail(&mut self, text: &str) {
        self.failures += 1;
        println!("[FAIL] {text}");
    }
}

/// What the management API says about routing.
enum Routing {
    /// These durable queues are bound for the routing key.
    Durable(Vec<String>),
    /// The management API did not answer (AMQP transport only): whether a
    /// queue is bound could not be seen.
    Unverified(String),
    /// A check failed; the checklist says which.
    Failed,
}

/// Runs the checklist against the settings in the environment.
pub async fn run(args: CheckArgs) -> Result<(), CheckFailed> {
    let mut list = Checklist::default();
    for lookalike in names::lookalikes_in_env() {
        list.warn(&lookalike.to_string());
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            list.fail(&format!("settings: {e}"));
            return Err(CheckFailed("the settings do not parse".to_owned()));
        }
    };
    check_host_mode(&mut list, &settings);
    let broker = &settings.broker;
    let path = match &broker.transport {
        PublishTransport::Http => format!("through the HTTP publish endpoint {}", broker.endpoint.url),
        PublishTransport::Amqp { url, .. } => format!("over AMQP at {url}"),
    };
    list.pass(&format!(
        "settings parse: publishing to exchange {:?} in vhost {:?} with routing key {:?} {path}",
        broker.endpoint.exchange, broker.endpoint.vhost, broker.routing_key
    ));
    if let PublishTransport::Amqp { url, connection_name } = &broker.transport
        && !amqp::check(&mut list, url, connection_name, broker).await
    {
        return Err(CheckFailed(
            "the AMQP connection or the exchange failed; a publish would not be queued".to_owned(),
        ));
    }
    let api = match ManagementApi::new(&broker.endpoint, &broker.credentials, settings.limits.attempt_timeout) {
        Ok(api) => api,
        Err(e) => {
            list.fail(&e.to_string());
            return Err(CheckFailed("the HTTP client could not be built".to_owned()));
        }
    };
    // Over AMQP the management API is not on the publish path: when it does
    // not answer, what only it can show is reported as not verified.
    let api_needed = matches!(broker.transport, PublishTransport::Http);
    let routing = check_broker(&mut list, &api, broker, args.queue.as_deref(), api_needed).await;
    match routing {
        Routing::Durable(queues) if list.failures == 0 => {
            println!(
                "check passed: a publish would be routed to {} and persisted (messages are sent with delivery_mode 2)",
                queues.join(", ")
            );
            Ok(())
        }
        Routing::Unverified(why) if list.failures == 0 => Err(CheckFailed(format!(
            "check incomplete: the AMQP connection and the exchange are fine, but whether a durable queue is bound \
             to exchange {:?} with routing key {:?} could NOT be verified, because the management API did not answer \
             ({why}); see the queue's bindings in the management UI, or run `handler check` where the API answers",
            broker.endpoint.exchange, broker.routing_key
        ))),
        _ => Err(CheckFailed(format!(
            "{} problem(s) above; a publish would not be routed to a durable queue",
            list.failures.max(1)
        ))),
    }
}

/// Which mode the app's host.json selects, and what that means for the
/// bytes and for `AllowedSourceNetworks`. Warnings only: check is often run
/// where no host.json is.
fn check_host_mode(list: &mut Checklist, settings: &Settings) {
    let app_root = std::env::var_os("FUNCTIONS_APP_ROOT_PATH").map(PathBuf::from);
    let working_dir = std::env::current_dir().ok();
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let Some(path) = find_host_json(app_root.as_deref(), working_dir.as_deref(), exe_dir.as_deref()) else {
        list.warn("no host.json in FUNCTIONS_APP_ROOT_PATH, the working directory or beside handler: the host's mode is unknown here (the package ships proxying mode)");
        return;
    };
    let mode = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| HostMode::from_host_json(&text))
    {
        Ok(mode) => mode,
        Err(problem) => {
            list.warn(&format!("{} cannot be read as a host.json: {problem}", path.display()));
            return;
        }
    };
    let shown = path.display();
    match mode {
        HostMode::Proxying => list.pass(&format!("{shown}: {mode}: bodies reach the handler byte for byte")),
        HostMode::Payload => list.warn(&format!(
            "{shown}: {mode}: the host decodes text bodies as UTF-8 and drops chunked ones before the handler sees them; set \"enableProxyingHttpRequest\": true (docs/host-modes.md)"
        )),
        HostMode::LegacyForwarding => list.warn(&format!(
            "{shown}: {mode}: the host drops chunked bodies and re-encodes the query; set \"enableProxyingHttpRequest\": true instead (docs/host-modes.md)"
        )),
    }
    if settings.source_checks.allowed_networks.is_some() && mode == HostMode::Proxying {
        list.warn(
            "AllowedSourceNetworks in proxying mode: X-Forwarded-For holds only the host's own peer, so the handler checks the X-Client-IP header App Service's front end sets; that this header reaches Flex and Linux Consumption apps was not verified: send one webhook and look for \"no client address\" in the logs (docs/host-modes.md). The function key is the check that always holds.",
        );
    }
}

/// The management API part of the checklist: the durable queues a publish
/// would reach, or why that is not known.
async fn check_broker(
    list: &mut Checklist,
    api: &ManagementApi,
    broker: &BrokerSettings,
    wanted_queue: Option<&str>,
    api_needed: bool,
) -> Routing {
    let exchange = &broker.endpoint.exchange;
    let vhost = api.vhost();
    match api.whoami().await {
        Ok(me) => list.pass(&format!(
            "credentials accepted: user {:?} (tags: {})",
            me.name,
            me.tags()
        )),
        Err(e) if !api_needed => {
            let why = e.to_string();
            list.warn(&format!(
                "NOT VERIFIED: the bindings and queues, because the management API at {} did not answer: {why}",
                api.base()
            ));
            return Routing::Unverified(why);
        }
        Err(e) => return fail(list, &e.to_string()),
    }
    match api.require_vhost().await {
        Ok(()) => list.pass(&format!("vhost {vhost:?} exists and user {:?} may use it", api.user())),
        Err(e) => return fail(list, &e.to_string()),
    }
    match api.exchange(exchange).await {
        Ok(Some(info)) => check_exchange(list, exchange, &info),
        Ok(None) => {
            return fail(
                list,
                &format!("exchange {exchange:?} does not exist in vhost {vhost:?}: run `handler setup`"),
            );
        }
        Err(e) => return fail(list, &e.to_string()),
    }
    let bindings = match api.bindings_from(exchange).await {
        Ok(bindings) => bindings,
        Err(e) => return fail(list, &e.to_string()),
    };
    let key = &broker.routing_key;
    let bound: Vec<&BindingInfo> = bindings
        .iter()
        .filter(|b| b.destination_type == "queue" && &b.routing_key == key)
        .filter(|b| wanted_queue.is_none_or(|q| b.destination == q))
        .collect();
    if bound.is_empty() {
        let text = match wanted_queue {
            Some(queue) => format!(
                "queue {queue:?} is not bound to exchange {exchange:?} with routing key {key:?}: a publish would not reach it; run `handler setup --queue {queue}`"
            ),
            None => format!(
                "no queue is bound to exchange {exchange:?} with routing key {key:?}: every publish would be dropped (routed:false); run `handler setup`"
            ),
        };
        return fail(list, &text);
    }

    let (mut durable, mut lossy) = (Vec::new(), Vec::new());
    for binding in bound {
        let queue = &binding.destination;
        match api.queue(queue).await {
            Ok(Some(info)) if info.keeps_messages() => {
                let description = describe_queue(info.kind.as_deref(), &info.arguments);
                list.pass(&format!(
                    "queue {queue:?} is bound with routing key {key:?}: durable, {description}"
                ));
                if info.has_default_delivery_limit() {
                    list.warn(&format!(
                        "queue {queue:?} is a quorum queue without a delivery limit of its own: RabbitMQ 4.x drops (or dead-letters) a message returned to it 20 times, as a relay stopped 20 times while it holds one would; set a policy with \"delivery-limit\": 2147483647 (queues `handler setup --quorum` declares have that argument; -1 would make RabbitMQ 3.x drop messages)"
                    ));
                }
                if !has_single_active_consumer(&info.arguments) {
                    list.pass(&format!(
                        "queue {queue:?} has no single active consumer: relays on it share its messages, so a second `handler relay --order-by` breaks the order; for a standby relay declare a queue with `handler setup --single-active-consumer` (docs/relay.md)"
                    ));
                }
                durable.push(format!("{queue:?}"));
            }
            Ok(Some(_)) => lossy.push(format!(
                "queue {queue:?} is bound with routing key {key:?} but is not durable, or is auto-delete or exclusive: what it holds can be lost"
            )),
            Ok(None) => lossy.push(format!("queue {queue:?} is bound but could not be found")),
            Err(e) => lossy.push(e.to_string()),
        }
    }
    // A lossy queue beside a durable one only loses its own copy.
    for text in &lossy {
        if durable.is_empty() {
            list.fail(&format!("{text}; bind a durable queue (`handler setup`)"));
        } else {
            list.warn(text);
        }
    }
    if durable.is_empty() {
        return Routing::Failed;
    }
    Routing::Durable(durable)
}

fn fail(list: &mut Checklist, text: &str) -> Routing {
    list.fail(text);
    Routing::Failed
}

/// The exchange must take publishes, route by key, and outlive a restart.
fn check_exchange(list: &mut Checklist, name: &str, info: &ExchangeInfo) {
    let expected = ExchangeKind::Direct.as_str();
    if info.kind != expected {
        list.fail(&format!(
            "exchange {name:?} is of type {:?}, not {expected:?}: routing by key is not what setup made; use another exchange or recreate it with `handler setup`",
            info.kind
        ));
    } else if !info.durable || info.auto_delete {
        list.fail(&format!(
            "exchange {name:?} is not durable or is auto-delete: it and its bindings can vanish; recreate it with `handler setup`"
        ));
    } else if info.internal {
        list.fail(&format!("exchange {name:?} is internal: it takes no publishes"));
    } else {
        list.pass(&format!("exchange {name:?} exists: {expected}, durable"));
    }
}
