//! `handler dead-letter list | replay | purge`: the operator's side of the
//! dead-letter queue. The AMQP work is in [`crate::relay::dead_letter`];
//! here the broker is read from `AmqpUrl` (as the relay reads it) and the
//! results are printed.

use std::time::{Duration, UNIX_EPOCH};

use crate::cli::{DeadLetterCommand, DeadLetterListArgs, DeadLetterPurgeArgs, DeadLetterReplayArgs};
use crate::relay::RelayError;
use crate::relay::dead_letter::inspect::{self, Listing};
use crate::relay::dead_letter::replay::{self, Selection};
use crate::relay::options;
use crate::settings::SettingsError;

/// Why a dead-letter command failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterCommandError {
    /// `AmqpUrl` is missing or malformed.
    #[error(transparent)]
    AmqpUrl(#[from] SettingsError),
    /// The broker refused, or a queue is missing.
    #[error(transparent)]
    Broker(#[from] RelayError),
    /// `purge` without `--yes`.
    #[error(
        "purge deletes the {count} dead letter(s) of queue {queue:?} for good: run it again with --yes (`handler dead-letter list` shows them; `replay` puts them back instead)"
    )]
    NotConfirmed {
        /// Dead letters that would go.
        count: u32,
        /// The main queue.
        queue: String,
    },
}

/// Runs one dead-letter subcommand.
pub async fn run(command: DeadLetterCommand) -> Result<(), DeadLetterCommandError> {
    super::warn_about_mistyped_settings();
    let url = options::amqp_url(|name| std::env::var(name).ok())?;
    match command {
        DeadLetterCommand::List(DeadLetterListArgs { queue, limit, json }) => {
            let listing = inspect::list(&url, &queue, limit as usize).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&listing).unwrap_or_default());
            } else {
                print!("{}", table(&listing));
            }
        }
        DeadLetterCommand::Replay(DeadLetterReplayArgs {
            queue,
            limit,
            message_id,
        }) => {
            let selection = Selection {
                limit: limit.map(|n| n as usize),
                message_id,
            };
            let moved = replay::replay(&url, &queue, &selection).await?;
            println!("replayed {moved} message(s) from \"{queue}.dead-letter\" to queue \"{queue}\"");
        }
        DeadLetterCommand::Purge(DeadLetterPurgeArgs { queue, yes }) => {
            if !yes {
                // Refused only when there is something to lose: with none,
                // the queue already is as a purge would leave it.
                let count = inspect::count(&url, &queue).await?;
                if count > 0 {
                    return Err(DeadLetterCommandError::NotConfirmed { count, queue });
                }
                println!("no dead letters in \"{queue}.dead-letter\": nothing to purge");
                return Ok(());
            }
            let purged = replay::purge(&url, &queue).await?;
            println!("purged {purged} dead letter(s) from \"{queue}.dead-letter\"");
        }
    }
    Ok(())
}

/// The listing as a table for a terminal, a header line first.
fn table(listing: &Listing) -> String {
    let mut out = format!("{} dead letter(s) in \"{}\"", listing.count, listing.queue);
    let shown = listing.messages.len();
    if (shown as u64) < u64::from(listing.count) {
        out.push_str(&format!(", the first {shown} shown (--limit shows more)"));
    }
    out.push('\n');
    if shown == 0 {
        return out;
    }
    let header = [
        "MESSAGE ID",
        "DEAD-LETTERED",
        "ATTEMPTS",
        "REASON",
        "METHOD",
        "QUERY",
        "CONTENT TYPE",
        "BYTES",
    ];
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    let rows: Vec<[String; 8]> =
        listing
            .messages
            .iter()
            .map(|entry| {
                [
                    or_dash(entry.message_id.clone()),
                    or_dash(entry.dead_lettered_at.map(|secs| {
                        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
                    })),
                    or_dash(entry.attempts.map(|n| n.to_string())),
                    or_dash(entry.reason.clone()),
                    entry.method.clone(),
                    if entry.query.is_empty() {
                        "-".to_owned()
                    } else {
                        entry.query.clone()
                    },
                    or_dash(entry.content_type.clone()),
                    entry.body_bytes.to_string(),
                ]
            })
            .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    out.push_str(&line(&header));
    for row in &rows {
        out.push_str(&line(&row.each_ref().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::dead_letter::headers::Entry;

    #[test]
    fn the_table_shows_each_dead_letter_in_aligned_columns() {
        let listing = Listing {
            queue: "q.dead-letter".to_owned(),
            count: 3,
            messages: vec![
                Entry {
                    message_id: Some("m-1".to_owned()),
                    dead_lettered_at: Some(1_700_000_000),
                    attempts: Some(3),
                    reason: Some("422".to_owned()),
                    method: "POST".to_owned(),
                    query: "type=product".to_owned(),
                    content_type: Some("application/x-www-form-urlencoded".to_owned()),
                    body_bytes: 15,
                    replays: 0,
                },
                Entry {
                    message_id: None,
                    dead_lettered_at: None,
                    attempts: None,
                    reason: Some("rejected".to_owned()),
                    method: "GET".to_owned(),
                    query: String::new(),
                    content_type: None,
                    body_bytes: 0,
                    replays: 1,
                },
            ],
        };
        assert_eq!(
            table(&listing),
            "3 dead letter(s) in \"q.dead-letter\", the first 2 shown (--limit shows more)\n\
             MESSAGE ID  DEAD-LETTERED         ATTEMPTS  REASON    METHOD  QUERY         CONTENT TYPE                       BYTES\n\
             m-1         2023-11-14T22:13:20Z  3         422       POST    type=product  application/x-www-form-urlencoded  15\n\
             -           -                     -         rejected  GET     -             -                                  0\n"
        );
    }

    #[test]
    fn an_empty_dead_letter_queue_says_so() {
        let listing = Listing {
            queue: "q.dead-letter".to_owned(),
            count: 0,
            messages: Vec::new(),
        };
        assert_eq!(table(&listing), "0 dead letter(s) in \"q.dead-letter\"\n");
    }
}
