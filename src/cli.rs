//! The command line. With no arguments `handler` serves, because that is how
//! the Functions host starts it; the other subcommands are for operators.
//! Adding one is a variant here and an arm in `main.rs`.

use clap::{Args, Parser, Subcommand};

use crate::broker::topology::{DEFAULT_QUEUE, DEFAULT_TTL_DAYS, ExchangeKind, MAX_TTL_DAYS};

/// The app settings in brief; docs/settings.md has them in full.
const SETTINGS_HELP: &str = "\
App settings (environment variables; docs/settings.md has every one in full):
  PublishTransport        http (the management API's publish endpoint) or amqp (AMQP with
                          publisher confirms, one connection; needs AmqpUrl) [default: http]
  AmqpUrl                 amqps://<user>:<password>@<host>/<vhost> from the CloudAMQP details page
  AmqpExchange            exchange to publish to [default: e-conomic.direct]
  AmqpManagementUrl       the management API, when not where AmqpUrl implies (https://host/, http://host:15672/)
  AmqpEndpoint            the HTTP publish URL, instead of the one AmqpUrl gives (http only)
  AmqpAuthHeader          base64(\"<user>:<password>\") (`handler auth-header`), instead of AmqpUrl's (http only)
  AmqpRoutingKey          a key, or a template: webhook.{query.type|other} (docs/routing.md) [default: webhook]
  AmqpAppId               [default: e-conomic-webhook-forwarder]
  MaxBodyBytes            [default: 1048576]        PublishConcurrency  [default: 64]
  PublishSlotWait         [default: 5s]             PublishAttemptTimeout  [default: 10s]
  PublishDeadline         [default: 30s]            ShutdownGrace  [default: 10s]
  HeaderReadTimeout       [default: 2m]             ListenAddress  [default: 127.0.0.1:8080]
  AllowedSourceNetworks   e.g. e-conomic,10.0.0.0/8 [default: all]
  WebhookSecret           a shared secret callers must send [default: none]
  RelaySigningSecret      handler relay: sign every delivery (Standard Webhooks) with this whsec_ secret,
                          or several separated by spaces (`handler relay-secret new` makes one)
  RelayHeaders            handler relay: headers for every delivery, Name: value, several separated by |
A variable that looks like one of these but is not (PublishConcurency) gets a warning.";
use crate::relay::RelayArgs;
use crate::relay::options::parse_queue;

/// Queues every e-conomic webhook on RabbitMQ. Settings come from the
/// environment (Azure app settings): AmqpUrl, or AmqpEndpoint and AmqpAuthHeader.
#[derive(Debug, Parser)]
#[command(name = "handler", version, after_help = SETTINGS_HELP)]
pub struct Cli {
    /// What to do; serving when none is given.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve webhooks (the default, what the Functions host runs).
    Serve,
    /// Declare the exchange, queue and binding the settings publish to.
    ///
    /// A durable direct exchange (named in the settings; topic with
    /// --exchange-type), a durable queue and a binding with the routing key
    /// (or each --binding-key). Running it again changes nothing.
    Setup(SetupArgs),
    /// Verify the settings end to end without publishing; exit 0 only when a
    /// publish would be routed to a durable queue and persisted.
    Check(CheckArgs),
    /// Read a user name and a password (hidden when typed) from standard input
    /// and print the value for the AmqpAuthHeader setting.
    ///
    /// It prints base64("<user>:<password>") without the "Basic " prefix,
    /// which AmqpAuthHeader accepts with or without. When standard input is
    /// not a terminal it reads two lines: the user name, then the password.
    AuthHeader,
    /// Drain the queue into an HTTP endpoint at the pace it can take.
    ///
    /// Every queued webhook becomes a request to --to with its original
    /// method, body, Content-Type and query; a message is acknowledged only
    /// after a 2xx answer. When the endpoint seems down (no answer, 408, 429,
    /// 502-504, or 5xx for everything) the relay pauses and probes, counting
    /// no attempt; a message the endpoint refuses (4xx) while it takes the
    /// others is retried with backoff and moved to "<queue>.dead-letter"
    /// after --max-attempts. docs/relay.md has the whole rule.
    // Boxed: the options are far larger than the other variants.
    Relay(Box<RelayArgs>),
    /// Look at, put back or delete the messages the relay set aside because
    /// the target kept refusing them ("<queue>.dead-letter").
    ///
    /// The broker comes from the environment variable AmqpUrl, as for relay.
    #[command(subcommand)]
    DeadLetter(DeadLetterCommand),
    /// Make the secret the relay signs its deliveries with (the
    /// RelaySigningSecret setting; docs/relay.md says how your endpoint
    /// checks the signatures).
    #[command(subcommand)]
    RelaySecret(RelaySecretCommand),
}

/// `handler relay-secret ...`.
#[derive(Debug, Subcommand)]
pub enum RelaySecretCommand {
    /// Print a fresh random secret for RelaySigningSecret (whsec_ and the
    /// base64 of 32 random bytes) on stdout, nothing else. Give your endpoint
    /// the same secret to verify the signatures.
    New,
}

/// `handler dead-letter ...`.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// Show how many dead letters a queue has and, for each, its message id,
    /// when and why it was set aside, and the original request. Read-only:
    /// every message stays in the dead-letter queue.
    List(DeadLetterListArgs),
    /// Move dead letters back to their queue (straight to it, not through
    /// the exchange), for the relay to deliver again; prints how many moved.
    Replay(DeadLetterReplayArgs),
    /// Delete every dead letter of a queue, for good (asks for --yes).
    Purge(DeadLetterPurgeArgs),
}

/// Options of `handler dead-letter list`.
#[derive(Debug, Args)]
pub struct DeadLetterListArgs {
    /// The queue whose dead letters to show (not the dead-letter queue's name).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_QUEUE, value_parser = parse_queue)]
    pub queue: String,
    /// Show at most this many.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `handler dead-letter replay`.
#[derive(Debug, Args)]
pub struct DeadLetterReplayArgs {
    /// The queue whose dead letters to put back (not the dead-letter queue's name).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_QUEUE, value_parser = parse_queue)]
    pub queue: String,
    /// Move at most this many (the oldest first); all when absent.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Move only the dead letter with this message id.
    #[arg(long, value_name = "ID")]
    pub message_id: Option<String>,
}

/// Options of `handler dead-letter purge`.
#[derive(Debug, Args)]
pub struct DeadLetterPurgeArgs {
    /// The queue whose dead letters to delete (not the dead-letter queue's name).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_QUEUE, value_parser = parse_queue)]
    pub queue: String,
    /// Yes, delete them: without it nothing is deleted.
    #[arg(long)]
    pub yes: bool,
}

/// Options of `handler setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The queue webhooks land in.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_QUEUE)]
    pub queue: String,
    /// Days an unconsumed message is kept; 0 keeps messages until consumed.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TTL_DAYS,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_TTL_DAYS)))]
    pub ttl_days: u32,
    /// Declare replicated quorum queues (for clusters) instead of classic queues.
    #[arg(long)]
    pub quorum: bool,
    /// Declare the dead-letter exchange and queue, "<queue>.dead-letter"
    /// (the default; kept for scripts that say so).
    #[arg(long, conflicts_with = "no_dead_letter")]
    pub dead_letter: bool,
    /// Leave the dead-letter exchange and queue out: expired and rejected
    /// messages are dropped, and the relay cannot set a message aside.
    #[arg(long)]
    pub no_dead_letter: bool,
    /// A key the queue takes (repeatable; with a topic exchange, a pattern
    /// such as webhook.#) [default: AmqpRoutingKey when it is a plain key,
    /// so webhook].
    #[arg(long = "binding-key", value_name = "KEY", value_parser = parse_binding_key)]
    pub binding_keys: Vec<String>,
    /// The exchange's type: direct matches keys exactly (as e-conomic's
    /// article sets it up), topic matches patterns (webhook.* one word,
    /// webhook.# any). RabbitMQ cannot change it later.
    #[arg(long, value_name = "TYPE", default_value = "direct", value_parser = parse_exchange_type)]
    pub exchange_type: ExchangeKind,
    /// Queue webhooks that no binding takes in "<exchange>.unrouted" (a
    /// fanout alternate exchange and a durable queue) and answer them 2xx,
    /// instead of answering 5xx for the sender to retry.
    #[arg(long)]
    pub alternate_exchange: bool,
    /// Let one consumer at a time take the queue's messages
    /// (x-single-active-consumer): a second `handler relay` stands by and takes
    /// over, in order, when the first dies. Only for a new queue: RabbitMQ
    /// cannot add it to an existing one (docs/relay.md says how to move over).
    #[arg(long)]
    pub single_active_consumer: bool,
}

/// A binding key: what AMQP can carry (1 to 255 bytes).
fn parse_binding_key(raw: &str) -> Result<String, String> {
    match raw.len() {
        0 => Err("the key is empty".to_owned()),
        1..=255 => Ok(raw.to_owned()),
        n => Err(format!("the key is {n} bytes; AMQP allows 255")),
    }
}

/// The exchange types a webhook exchange may have.
fn parse_exchange_type(raw: &str) -> Result<ExchangeKind, String> {
    match raw {
        "direct" => Ok(ExchangeKind::Direct),
        "topic" => Ok(ExchangeKind::Topic),
        other => Err(format!("{other:?} is not direct or topic")),
    }
}

/// Options of `handler check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Require this queue to be the one bound (any durable bound queue will do otherwise).
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,
    /// With a routing-key template: the webhook type (the query parameter
    /// type) to render the key for and follow to its queue; repeatable
    /// [default: e-conomic's types, listed in docs/routing.md].
    #[arg(long = "type", value_name = "NAME")]
    pub types: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("handler").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_arguments_means_serve() {
        assert!(parse(&[]).unwrap().command.is_none());
    }

    #[test]
    fn setup_defaults_are_the_seeds() {
        let Some(Command::Setup(args)) = parse(&["setup"]).unwrap().command else {
            panic!("not setup")
        };
        assert_eq!(args.queue, "e-conomic-webhooks");
        assert_eq!(args.ttl_days, 7);
        assert!(!args.quorum && !args.no_dead_letter);
        assert!(args.binding_keys.is_empty(), "the settings' key is the default");
        assert_eq!(args.exchange_type, ExchangeKind::Direct);
        assert!(!args.alternate_exchange);
    }

    #[test]
    fn setup_takes_no_dead_letter_but_not_together_with_dead_letter() {
        let Some(Command::Setup(args)) = parse(&["setup", "--no-dead-letter"]).unwrap().command else {
            panic!("not setup")
        };
        assert!(args.no_dead_letter);
        assert!(parse(&["setup", "--dead-letter", "--no-dead-letter"]).is_err());
    }

    #[test]
    fn setup_takes_several_binding_keys_a_topic_exchange_and_an_alternate_exchange() {
        let line = [
            "setup",
            "--binding-key",
            "webhook.invoice",
            "--binding-key",
            "webhook.order.#",
            "--exchange-type",
            "topic",
            "--alternate-exchange",
        ];
        let Some(Command::Setup(args)) = parse(&line).unwrap().command else {
            panic!("not setup")
        };
        assert_eq!(args.binding_keys, ["webhook.invoice", "webhook.order.#"]);
        assert_eq!(args.exchange_type, ExchangeKind::Topic);
        assert!(args.alternate_exchange);
        let err = parse(&["setup", "--exchange-type", "fanout"]).unwrap_err().to_string();
        assert!(err.contains("\"fanout\" is not direct or topic"), "{err}");
        assert!(parse(&["setup", "--binding-key", ""]).is_err());
        assert!(parse(&["setup", "--binding-key", &"k".repeat(256)]).is_err());
    }

    #[test]
    fn setup_takes_every_option() {
        let cli = parse(&["setup", "--queue", "q", "--ttl-days", "0", "--quorum", "--dead-letter"]).unwrap();
        let Some(Command::Setup(args)) = cli.command else {
            panic!("not setup")
        };
        assert_eq!(
            (args.queue.as_str(), args.ttl_days, args.quorum, args.dead_letter),
            ("q", 0, true, true)
        );
    }

    #[test]
    fn a_ttl_beyond_ten_years_is_refused() {
        assert!(parse(&["setup", "--ttl-days", "3651"]).is_err());
        assert!(parse(&["setup", "--ttl-days", "-1"]).is_err());
    }

    #[test]
    fn relay_takes_its_options() {
        let cli = parse(&["relay", "--to", "http://127.0.0.1:8000/webhook.php", "--rate", "5"]).unwrap();
        let Some(Command::Relay(args)) = cli.command else {
            panic!("not relay")
        };
        assert_eq!(args.to.as_str(), "http://127.0.0.1:8000/webhook.php");
        assert_eq!(args.queue, "e-conomic-webhooks");
    }

    #[test]
    fn dead_letter_takes_its_subcommands_and_their_options() {
        let Some(Command::DeadLetter(DeadLetterCommand::List(list))) = parse(&["dead-letter", "list"]).unwrap().command
        else {
            panic!("not dead-letter list")
        };
        assert_eq!(
            (list.queue.as_str(), list.limit, list.json),
            ("e-conomic-webhooks", 20, false)
        );
        let line = [
            "dead-letter",
            "replay",
            "--queue",
            "q",
            "--limit",
            "3",
            "--message-id",
            "m-1",
        ];
        let Some(Command::DeadLetter(DeadLetterCommand::Replay(replay))) = parse(&line).unwrap().command else {
            panic!("not dead-letter replay")
        };
        assert_eq!(replay.queue, "q");
        assert_eq!((replay.limit, replay.message_id.as_deref()), (Some(3), Some("m-1")));
        let Some(Command::DeadLetter(DeadLetterCommand::Purge(purge))) =
            parse(&["dead-letter", "purge"]).unwrap().command
        else {
            panic!("not dead-letter purge")
        };
        assert!(!purge.yes);
        assert!(parse(&["dead-letter", "list", "--limit", "0"]).is_err());
        assert!(parse(&["dead-letter", "list", "--queue", ""]).is_err());
        assert!(parse(&["dead-letter"]).is_err(), "a subcommand is required");
    }

    #[test]
    fn relay_secret_new_is_a_subcommand() {
        let cli = parse(&["relay-secret", "new"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::RelaySecret(RelaySecretCommand::New))
        ));
        assert!(parse(&["relay-secret"]).is_err(), "a subcommand is required");
    }

    #[test]
    fn help_names_every_setting() {
        for name in crate::settings::names::KNOWN {
            assert!(SETTINGS_HELP.contains(name), "{name} is missing from handler --help");
        }
    }

    #[test]
    fn check_takes_a_queue() {
        let Some(Command::Check(args)) = parse(&["check", "--queue", "q"]).unwrap().command else {
            panic!("not check")
        };
        assert_eq!(args.queue.as_deref(), Some("q"));
    }

    #[test]
    fn check_takes_types() {
        let Some(Command::Check(args)) = parse(&["check", "--type", "invoice", "--type", "order"])
            .unwrap()
            .command
        else {
            panic!("not check")
        };
        assert_eq!(args.types, ["invoice", "order"]);
    }
}
