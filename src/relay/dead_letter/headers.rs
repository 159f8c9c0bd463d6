//! What a dead letter carries besides the original message (which it keeps
//! whole: body, properties, message id), and reading it back for
//! `handler dead-letter list`. Pure functions, unit-tested without a broker.
//!
//! The relay adds the `x-relay-*` headers below. A message the broker itself
//! dead-lettered (one a consumer rejected, or one whose TTL ran out) carries
//! the broker's `x-death` header instead; it is read too.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use serde::Serialize;

use crate::broker::message::{Original, text_header};

/// Header stating why the last attempt failed, in words.
pub const FAILURE_HEADER: &str = "x-relay-failure";
/// Header holding the target's HTTP status in the last answer, if it answered.
pub const STATUS_HEADER: &str = "x-relay-status";
/// Header stating how many attempts counted against the message.
pub const ATTEMPTS_HEADER: &str = "x-relay-attempts";
/// Header naming the queue the message was taken from.
pub const QUEUE_HEADER: &str = "x-relay-queue";
/// Header holding when the relay dead-lettered it (AMQP timestamp, seconds).
pub const DEAD_LETTERED_AT_HEADER: &str = "x-relay-dead-lettered-at";
/// Header counting how often `handler dead-letter replay` put it back.
pub const REPLAYS_HEADER: &str = "x-relay-replays";
/// Header listing the message's ordering keys (`--order-by`), when it had any.
pub const ORDER_KEYS_HEADER: &str = "x-relay-order-keys";
/// The broker's own dead-lettering record.
const X_DEATH: &str = "x-death";

/// One dead letter, as `handler dead-letter list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The message id (what `replay --message-id` takes).
    pub message_id: Option<String>,
    /// When it was dead-lettered, seconds since the Unix epoch.
    pub dead_lettered_at: Option<u64>,
    /// Attempts that counted against it (the relay's dead letters only).
    pub attempts: Option<u64>,
    /// The last reason: the HTTP status (`422`), or the error in words, or
    /// the broker's reason (`rejected`, `expired`).
    pub reason: Option<String>,
    /// The original request's method.
    pub method: String,
    /// The original request's query string.
    pub query: String,
    /// The original request's `Content-Type`.
    pub content_type: Option<String>,
    /// The body's size in bytes.
    pub body_bytes: usize,
    /// How often it was replayed before.
    pub replays: u32,
}

impl Entry {
    /// Reads a dead letter's properties (and its body's size).
    pub fn read(properties: &BasicProperties, body_bytes: usize) -> Self {
        let original = Original::from_properties(properties);
        let empty = FieldTable::default();
        let headers = properties.headers().as_ref().unwrap_or(&empty);
        let death = first_death(headers);
        let reason = number_header(headers, STATUS_HEADER)
            .map(|status| status.to_string())
            .or_else(|| text_header(headers, FAILURE_HEADER))
            .or_else(|| death.and_then(|d| text_header(d, "reason")));
        Self {
            message_id: original.message_id,
            dead_lettered_at: number_header(headers, DEAD_LETTERED_AT_HEADER)
                .or_else(|| death.and_then(|d| number_header(d, "time"))),
            attempts: number_header(headers, ATTEMPTS_HEADER),
            reason,
            method: original.method,
            query: original.query,
            content_type: original.content_type,
            body_bytes,
            replays: replays(properties),
        }
    }
}

/// How often the message was replayed (0 for one never dead-lettered).
pub fn replays(properties: &BasicProperties) -> u32 {
    properties
        .headers()
        .as_ref()
        .and_then(|h| number_header(h, REPLAYS_HEADER))
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// The properties of a replayed copy: the same, with the replay count one up.
pub fn replayed(properties: &BasicProperties) -> BasicProperties {
    let mut headers = properties
        .headers()
        .as_ref()
        .map(|h| h.inner().clone())
        .unwrap_or_default();
    let count = replays(properties).saturating_add(1);
    headers.insert(REPLAYS_HEADER.into(), AMQPValue::LongLongInt(i64::from(count)));
    properties.clone().with_headers(FieldTable::from(headers))
}

/// The most recent entry of the broker's `x-death` list.
fn first_death(headers: &FieldTable) -> Option<&FieldTable> {
    match headers.inner().get(X_DEATH)? {
        AMQPValue::FieldArray(deaths) => match deaths.as_slice().first()? {
            AMQPValue::FieldTable(death) => Some(death),
            _ => None,
        },
        _ => None,
    }
}

/// A header holding a non-negative whole number, whichever AMQP type carries it.
fn number_header(headers: &FieldTable, name: &str) -> Option<u64> {
    let value = match headers.inner().get(name)? {
        AMQPValue::ShortShortUInt(n) => u64::from(*n),
        AMQPValue::ShortUInt(n) => u64::from(*n),
        AMQPValue::LongUInt(n) => u64::from(*n),
        AMQPValue::Timestamp(n) => *n,
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok()?,
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok()?,
        AMQPValue::LongInt(n) => u64::try_from(*n).ok()?,
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok()?,
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).trim().parse().ok()?,
        _ => return None,
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use lapin::types::{FieldArray, LongString};

    use super::*;

    fn text(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s))
    }

    fn properties(headers: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert((*name).into(), value.clone());
        }
        BasicProperties::default()
            .with_message_id("m-1".into())
            .with_content_type("application/json".into())
            .with_headers(table)
    }

    #[test]
    fn a_relay_dead_letter_reads_with_its_status_time_and_attempts() {
        let properties = properties(&[
            ("x-http-method", text("PUT")),
            ("x-http-query", text("type=order")),
            (
                FAILURE_HEADER,
                text("the target answered HTTP 422 Unprocessable Entity"),
            ),
            (STATUS_HEADER, AMQPValue::ShortUInt(422)),
            (ATTEMPTS_HEADER, AMQPValue::LongLongInt(3)),
            (DEAD_LETTERED_AT_HEADER, AMQPValue::Timestamp(1_700_000_000)),
        ]);
        assert_eq!(
            Entry::read(&properties, 15),
            Entry {
                message_id: Some("m-1".to_owned()),
                dead_lettered_at: Some(1_700_000_000),
                attempts: Some(3),
                reason: Some("422".to_owned()),
                method: "PUT".to_owned(),
                query: "type=order".to_owned(),
                content_type: Some("application/json".to_owned()),
                body_bytes: 15,
                replays: 0,
            }
        );
    }

    #[test]
    fn without_a_status_the_reason_is_the_error_in_words() {
        let properties = properties(&[(FAILURE_HEADER, text("the request failed: connection refused"))]);
        let entry = Entry::read(&properties, 0);
        assert_eq!(entry.reason.as_deref(), Some("the request failed: connection refused"));
        assert_eq!(entry.method, "POST");
    }

    #[test]
    fn a_broker_dead_letter_reads_from_x_death() {
        let mut death = FieldTable::default();
        death.insert("reason".into(), text("rejected"));
        death.insert("time".into(), AMQPValue::Timestamp(1_600_000_000));
        let deaths = FieldArray::from(vec![AMQPValue::FieldTable(death)]);
        let entry = Entry::read(&properties(&[("x-death", AMQPValue::FieldArray(deaths))]), 3);
        assert_eq!(entry.reason.as_deref(), Some("rejected"));
        assert_eq!(entry.dead_lettered_at, Some(1_600_000_000));
        assert_eq!(entry.attempts, None);
    }

    #[test]
    fn a_replayed_copy_keeps_everything_and_counts_one_more_replay() {
        let original = properties(&[("x-http-query", text("a=1"))]).with_delivery_mode(2);
        let once = replayed(&original);
        assert_eq!(replays(&original), 0);
        assert_eq!(replays(&once), 1);
        assert_eq!(replays(&replayed(&once)), 2);
        assert_eq!(once.message_id(), original.message_id());
        assert_eq!(once.delivery_mode(), &Some(2));
        assert_eq!(Original::from_properties(&once).query, "a=1");
    }
}
