//! The AMQP part of `handler check`: connect exactly as the AMQP transport
//! does ([`crate::broker::amqp::connect`], the same heartbeat and limits),
//! report the heartbeat and channel limit the broker agreed to, and see that
//! the exchange exists.

use lapin::options::ExchangeDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};

use super::Checklist;
use crate::broker::AmqpUrl;
use crate::broker::amqp::{self, ConnectError};
use crate::settings::BrokerSettings;

/// Runs the AMQP items; false when one failed (nothing would be queued).
pub(super) async fn check(list: &mut Checklist, url: &AmqpUrl, connection_name: &str, broker: &BrokerSettings) -> bool {
    let name = format!("{connection_name} (handler check)");
    let connection = match amqp::connect(url, &name).await {
        Ok(connection) => connection,
        Err(e) => {
            list.fail(&format!("{e}: {}", hint(&e)));
            return false;
        }
    };
    let configuration = connection.configuration();
    list.pass(&format!(
        "connected over AMQP to {url} as user {:?} (heartbeat {} s, up to {} channels)",
        url.user(),
        configuration.heartbeat(),
        configuration.channel_max()
    ));
    let exchange_found = exchange_exists(list, &connection, url, &broker.endpoint.exchange).await;
    let _ = connection.close(200, "check done".into()).await;
    exchange_found
}

/// A passive declare: it succeeds only when the exchange exists, and
/// changes nothing.
async fn exchange_exists(list: &mut Checklist, connection: &Connection, url: &AmqpUrl, exchange: &str) -> bool {
    let declared = async {
        let channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
    };
    match declared.await {
        Ok(()) => {
            list.pass(&format!(
                "exchange {exchange:?} exists in vhost {:?} (seen over AMQP)",
                url.vhost()
            ));
            true
        }
        Err(e) => {
            let text = match e.kind() {
                lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404 => format!(
                    "exchange {exchange:?} does not exist in vhost {:?}: run `handler setup` (setting AmqpExchange names it)",
                    url.vhost()
                ),
                _ => format!(
                    "could not look for exchange {exchange:?} over AMQP: {}",
                    url.redact(&e.to_string())
                ),
            };
            list.fail(&text);
            false
        }
    }
}

/// What to do about a connection that failed.
fn hint(error: &ConnectError) -> &'static str {
    match error {
        ConnectError::Refused { .. } => "fix the user name or password in setting AmqpUrl",
        ConnectError::VhostNotAllowed { .. } => {
            "fix the vhost in setting AmqpUrl (on CloudAMQP it is your user name; amqp://host/ means the vhost /), \
             give the user permissions on it, or free a connection if its connection limit is reached"
        }
        ConnectError::Timeout { .. } | ConnectError::Failed { .. } => {
            "check the host and port in setting AmqpUrl (amqps:// uses 5671, amqp:// 5672) and that the broker runs"
        }
    }
}
