//! The docs, tested: every command example in README.md and docs/ runs, and
//! CI fails when what it prints drifts from what the page shows.
//!
//! THE RULE, for whoever writes a page (docs/README.md says the same):
//!
//! 1. A command whose output you show goes in a ```console block: `$ ` before
//!    the command (a trailing `\` continues it on the next line), what it
//!    prints below (stdout and stderr together), and `? 1` (or `? failed`)
//!    right below the command when it exits non-zero. It runs in CI.
//!    - Values that change each run are placeholders: `[..]` for any text
//!      within a line, `...` alone on a line for any lines, `[UUID]` for a
//!      uuid (a message id), `[TIMESTAMP]` for an RFC 3339 time.
//!    - Write the local broker as a user types it (`amqp://guest:guest@127.0.0.1/`,
//!      vhost `/`, `%2F`, `rabbitmqctl list_queues`). Each page runs on a vhost
//!      of its own, made and deleted by the test, so nobody's tests change what
//!      it prints: the runner moves each command there and shows the vhost
//!      back as `/` (tests/support/src/docs/run.rs).
//!    - A page's commands run in order (later ones may rely on earlier ones),
//!      with bash, in the repository's root, `handler` on PATH and no app
//!      setting in the environment: set on the command's line what it needs
//!      (`AmqpUrl=amqp://guest:guest@127.0.0.1/ handler check`). A command
//!      must end by itself (no `&`, no server in the foreground).
//! 2. A command that cannot run here (the Azure CLI, Core Tools, systemd,
//!    docker, CloudAMQP) goes in a ```sh block with
//!    `<!-- docs-test: not run here: <why> -->` on the line right before it.
//! 3. A block run by a test of its own (the README's quick start: servers in
//!    several terminals) has `<!-- docs-test: run by <that test's file> -->`.
//! 4. Anything else (diagrams, config files, code, a log line) is a block
//!    without `$ ` lines, best with its language (```text, ```ini, ```php);
//!    it is not run.
//!
//! A ```sh (bash, shell) block with neither mark fails, as does a `$ ` line
//! outside a ```console block. `DOCS_EXAMPLES=overwrite cargo test --test docs`
//! writes what the commands printed into the pages, placeholders kept where
//! they matched: review the diff and put placeholders where values change.

mod examples;
mod quick_start;
mod rule;
