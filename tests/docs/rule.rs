//! The rule's checks themselves: what fails, and what the runner moves.

use std::path::Path;

use test_support::docs::page::{Mark, Page, Status};
use test_support::docs::run::{Sandbox, run_page};
use test_support::process::handler_binary;

fn page(text: &str) -> Page {
    Page::parse(Path::new("example.md"), text.to_owned())
}

async fn sandbox() -> Sandbox {
    let handler = handler_binary();
    Sandbox::create(
        "rule",
        Path::new(env!("CARGO_MANIFEST_DIR")),
        handler.parent().expect("a directory"),
    )
    .await
}

#[test]
fn a_shell_block_neither_run_nor_marked_breaks_the_rule() {
    let breaches = page("Deploy:\n\n```sh\naz group create --name RG\n```\n").rule_breaches();

    assert_eq!(breaches.len(), 1, "{breaches:?}");
    assert!(
        breaches[0].starts_with("example.md:3: a ```sh block is neither run nor marked"),
        "{breaches:?}"
    );
}

#[test]
fn a_marked_block_passes_and_a_mark_needs_its_reason() {
    let marked = page("<!-- docs-test: not run here: the Azure CLI -->\n```sh\naz login\n```\n");
    assert_eq!(marked.rule_breaches(), Vec::<String>::new());
    assert_eq!(
        marked.blocks[0].mark,
        Some(Mark::NotRunHere("the Azure CLI".to_owned()))
    );

    let bare = page("<!-- docs-test: not run here: -->\n```sh\naz login\n```\n").rule_breaches();
    assert!(bare[0].contains("needs the reason"), "{bare:?}");
    let misspelt = page("<!-- docs-test: skip -->\n```sh\naz login\n```\n").rule_breaches();
    assert!(misspelt[0].contains("unknown mark"), "{misspelt:?}");
    let missing = page("<!-- docs-test: run by tests/docs/nothing.rs -->\n```sh\nx\n```\n").rule_breaches();
    assert!(missing[0].contains("no such file"), "{missing:?}");
}

#[test]
fn a_command_outside_a_console_block_breaks_the_rule() {
    let breaches = page("```\n$ handler check\n[ok] ...\n```\n").rule_breaches();

    assert!(breaches[0].contains("make it ```console"), "{breaches:?}");
    assert_eq!(
        page("```text\n[ok] a log line\n```\n").rule_breaches(),
        Vec::<String>::new()
    );
}

#[test]
fn a_console_block_gives_commands_statuses_and_outputs() {
    let text = "  ```console\n  $ handler check \\\n      --queue q\n  ? 1\n  first\n\n  last\n  $ true\n  ```\n";
    let page = page(text);

    let examples = page.blocks[0].examples().unwrap();

    assert_eq!(examples.len(), 2);
    assert_eq!(examples[0].line, 2);
    assert_eq!(examples[0].command, "handler check \\\n    --queue q");
    assert_eq!(examples[0].status, Status::Code(1));
    assert_eq!(examples[0].expected, "first\n\nlast");
    assert_eq!(&text[examples[0].expected_range.clone()], "first\n\n  last");
    assert_eq!(
        (examples[1].status, examples[1].expected.as_str()),
        (Status::Success, "")
    );
}

#[tokio::test]
async fn the_runner_moves_the_default_vhost_to_its_own_and_shows_it_back() {
    let sandbox = sandbox().await;
    let vhost = sandbox.vhost().to_owned();

    assert_eq!(
        sandbox.command_as_run("AmqpUrl=amqp://guest:guest@127.0.0.1/ handler check"),
        format!("AmqpUrl=amqp://guest:guest@127.0.0.1/{vhost} handler check")
    );
    assert_eq!(
        sandbox.command_as_run("rabbitmqctl list_queues name messages"),
        format!("rabbitmqctl list_queues -p {vhost} name messages")
    );
    assert_eq!(
        sandbox.command_as_run("curl http://127.0.0.1:15672/api/queues/%2F/q/get"),
        format!("curl http://127.0.0.1:15672/api/queues/{vhost}/q/get")
    );
    let printed = format!("vhost \"{vhost}\" at amqp://guest:***@127.0.0.1/{vhost} and /api/exchanges/{vhost}/x");
    assert_eq!(
        sandbox.output_as_shown(&printed),
        "vhost \"/\" at amqp://guest:***@127.0.0.1/ and /api/exchanges/%2F/x"
    );
}

#[tokio::test]
async fn an_export_holds_for_the_pages_later_commands_moved_to_the_vhost() {
    let mut sandbox = sandbox().await;
    let text = "```console\n$ export AmqpUrl=amqp://guest:guest@127.0.0.1/\n$ echo $AmqpUrl\namqp://guest:guest@127.0.0.1/\n```\n";

    let drifts = run_page(&page(text), &mut sandbox).await;

    assert!(drifts.is_empty(), "{drifts:#?}");
}

#[tokio::test]
async fn an_example_that_drifted_is_caught_and_one_that_did_not_passes() {
    let mut sandbox = sandbox().await;
    let text = "```console\n$ echo hello; echo there >&2\nhello\nthere\n$ echo id 3f2a0000-0000-4000-8000-000000000000\nid [UUID]\n$ exit 3\n? 3\n$ echo drifted\nas written\n$ false\n```\n";

    let drifts = run_page(&page(text), &mut sandbox).await;

    assert_eq!(drifts.len(), 2, "{drifts:#?}");
    assert!(
        drifts[0].report.starts_with("example.md:9: `$ echo drifted`"),
        "{}",
        drifts[0].report
    );
    assert_eq!(drifts[0].shown, "drifted");
    assert!(drifts[1].report.contains("exit code Some(1)"), "{}", drifts[1].report);
}
