//! `handler check`: verifies a configuration end to end without publishing,
//! along the path the settings select: the settings parse, the credentials
//! work, the vhost and the exchange exist, and a durable queue is bound for
//! the routing key ([`routing`]: for a template, the key of each webhook
//! type). With `PublishTransport=amqp` it first connects over AMQP
//! exactly as the transport does ([`amqp`]); the binding is read from the
//! management API either way, as AMQP cannot list bindings. Prints a
//! checklist; succeeds only when a publish would be routed and persisted.

mod amqp;
pub mod routing;

use std::path::{Path, PathBuf};

use crate::broker::management::ManagementApi;
use crate::broker::management::wire::ExchangeInfo;
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
        broker.endpoint.exchange,
        broker.endpoint.vhost,
        broker.routing_key.as_str()
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
    let types: Vec<String> = if args.types.is_empty() {
        routing::DEFAULT_TYPES.iter().map(|t| (*t).to_owned()).collect()
    } else {
        args.types
    };
    let routing = check_broker(&mut list, &api, broker, args.queue.as_deref(), &types, api_needed).await;
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
            broker.endpoint.exchange,
            broker.routing_key.as_str()
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
    types: &[String],
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
    let info = match api.exchange(exchange).await {
        Ok(Some(info)) => info,
        Ok(None) => {
            return fail(
                list,
                &format!("exchange {exchange:?} does not exist in vhost {vhost:?}: run `handler setup`"),
            );
        }
        Err(e) => return fail(list, &e.to_string()),
    };
    if !check_exchange(list, exchange, &info) {
        return Routing::Failed;
    }
    let Some(mut routes) = routing::Exchange::read(list, api, exchange, &info).await else {
        return Routing::Failed;
    };
    let reached = match broker.routing_key.plain() {
        Some(key) => routes.follow_key(list, key, wanted_queue).await,
        None => {
            routes
                .follow_types(list, &broker.routing_key, types, wanted_queue)
                .await
        }
    };
    reached.map_or(Routing::Failed, Routing::Durable)
}

fn fail(list: &mut Checklist, text: &str) -> Routing {
    list.fail(text);
    Routing::Failed
}

/// The exchange must take publishes, route by key, and outlive a restart;
/// false when it does not route by key (its bindings then mean nothing).
fn check_exchange(list: &mut Checklist, name: &str, info: &ExchangeInfo) -> bool {
    let kind = info.kind.as_str();
    if !matches!(kind, "direct" | "topic") {
        list.fail(&format!(
            "exchange {name:?} is of type {kind:?}, not \"direct\" or \"topic\": routing by key is not what setup made; use another exchange or recreate it with `handler setup`"
        ));
        return false;
    }
    if !info.durable || info.auto_delete {
        list.fail(&format!(
            "exchange {name:?} is not durable or is auto-delete: it and its bindings can vanish; recreate it with `handler setup`"
        ));
    } else if info.internal {
        list.fail(&format!("exchange {name:?} is internal: it takes no publishes"));
    } else {
        let alternate = info
            .alternate_exchange()
            .map(|alternate| format!(", unroutable webhooks to {alternate:?}"))
            .unwrap_or_default();
        list.pass(&format!("exchange {name:?} exists: {kind}, durable{alternate}"));
    }
    true
}
