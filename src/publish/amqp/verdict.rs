//! What the broker's answer to one publish means: the AMQP counterpart of
//! the HTTP transport's `judge`. Only a `basic.ack` with no `basic.return`
//! before it is success; the failures are the same [`PublishError`]s the
//! HTTP transport gives for the same situations, so they log alike.

use lapin::Confirmation;

use crate::broker::AmqpUrl;
use crate::publish::PublishError;

/// Where publishes go, for the failures' texts.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The broker.
    pub url: AmqpUrl,
    /// The exchange (setting `AmqpExchange`).
    pub exchange: String,
}

/// Success only for an ack of a message that was not returned. `returned`
/// says whether a return of this message came back (the client may pair
/// the return with another publish's confirm: see [`super::pipeline`]);
/// `routing_key` is the key it was published with.
pub fn judge(
    confirmation: &Confirmation,
    returned: bool,
    to: &Destination,
    routing_key: &str,
) -> Result<(), PublishError> {
    match confirmation {
        // Returned: routed to no queue, exactly what HTTP calls routed:false.
        Confirmation::Ack(_) | Confirmation::Nack(_) if returned => Err(PublishError::NotRouted {
            exchange: to.exchange.clone(),
            vhost: to.url.vhost().to_owned(),
            routing_key: routing_key.to_owned(),
        }),
        Confirmation::Ack(_) => Ok(()),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
        // Cannot happen on a channel in confirm mode; never a success.
        Confirmation::NotRequested => Err(PublishError::NotConnected(
            "the channel was not in confirm mode".to_owned(),
        )),
    }
}

/// A publish or its confirm failed: the broker closed the channel (an AMQP
/// error code) or the connection broke.
pub fn failure(error: &lapin::Error, to: &Destination) -> PublishError {
    let lapin::ErrorKind::ProtocolError(amqp) = error.kind() else {
        return PublishError::NotConnected(to.url.redact(&error.to_string()));
    };
    let reason = to.url.redact(amqp.get_message().as_str());
    match amqp.get_id() {
        // Transient, as over HTTP, where a restarted broker was seen not to
        // know its exchanges until it had recovered its definitions.
        404 => PublishError::NotFound {
            exchange: to.exchange.clone(),
            vhost: to.url.vhost().to_owned(),
            reason,
            setting: "AmqpExchange",
        },
        // The broker refused this publish itself: no permission to write to
        // the exchange (403), a precondition (406), an oversized message
        // (311), a locked resource (405).
        status @ (311 | 403 | 405 | 406) => PublishError::Rejected { status, reason },
        // Connection-level: forced closure (a broker stopping), internal
        // errors; the connection is reopened and the publish retried.
        _ => PublishError::NotConnected(to.url.redact(&error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};

    use super::*;

    fn destination() -> Destination {
        Destination {
            url: AmqpUrl::parse("amqp://u:s3cret@h/vh").unwrap(),
            exchange: "e-conomic.direct".to_owned(),
        }
    }

    fn amqp_error(kind: AMQPErrorKind, text: &str) -> lapin::Error {
        lapin::ErrorKind::ProtocolError(AMQPError::new(kind, text.into())).into()
    }

    #[test]
    fn only_an_ack_without_a_return_is_success() {
        assert!(judge(&Confirmation::Ack(None), false, &destination(), "webhook").is_ok());
        assert!(matches!(
            judge(&Confirmation::Ack(None), true, &destination(), "webhook"),
            Err(PublishError::NotRouted { .. })
        ));
        assert!(matches!(
            judge(&Confirmation::Nack(None), false, &destination(), "webhook"),
            Err(PublishError::Nacked)
        ));
        assert!(matches!(
            judge(&Confirmation::Nack(None), true, &destination(), "webhook"),
            Err(PublishError::NotRouted { .. })
        ));
        assert!(judge(&Confirmation::NotRequested, false, &destination(), "webhook").is_err());
    }

    // A returned message (`Ack(Some(..))`) cannot be built outside the AMQP
    // client; tests/api/amqp_transport.rs has the broker return some.

    #[test]
    fn a_missing_exchange_is_not_found_and_transient() {
        let error = amqp_error(
            AMQPSoftError::NOTFOUND.into(),
            "NOT_FOUND - no exchange 'x' in vhost 'vh'",
        );
        let err = failure(&error, &destination());
        assert!(matches!(err, PublishError::NotFound { .. }), "{err:?}");
        assert!(err.is_transient());
        assert!(err.to_string().contains("no exchange 'x'"), "{err}");
    }

    #[test]
    fn a_refused_publish_is_rejected_and_a_forced_close_is_retried() {
        let error = amqp_error(AMQPSoftError::ACCESSREFUSED.into(), "ACCESS_REFUSED - write access");
        let err = failure(&error, &destination());
        assert!(matches!(err, PublishError::Rejected { status: 403, .. }), "{err:?}");
        assert!(!err.is_transient());
        let error = amqp_error(AMQPHardError::CONNECTIONFORCED.into(), "CONNECTION_FORCED - shutdown");
        assert!(failure(&error, &destination()).is_transient());
        let io: lapin::Error = std::io::Error::other("reset by peer s3cret").into();
        let err = failure(&io, &destination());
        assert!(err.is_transient());
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
