//! Every page's examples, run and compared; every page's blocks under the rule.

use std::path::Path;

use test_support::docs::page::Page;
use test_support::docs::pages;
use test_support::docs::run::{Sandbox, overwrite, run_page};
use test_support::process::handler_binary;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What is wrong with one page: its blocks under the rule, then its
/// examples' drifts (each page on a vhost of its own, the pages at once).
async fn check(path: &Path) -> Vec<String> {
    let page = Page::read(path);
    let mut problems = page.rule_breaches();
    if page.tested_blocks().next().is_none() {
        return problems;
    }
    let label = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("page")
        .to_lowercase();
    let handler = handler_binary();
    let mut sandbox = Sandbox::create(&label, root(), handler.parent().expect("a directory")).await;
    let drifts = run_page(&page, &mut sandbox).await;
    if !drifts.is_empty() && std::env::var("DOCS_EXAMPLES").as_deref() == Ok("overwrite") {
        overwrite(&page, &drifts);
    }
    problems.extend(drifts.into_iter().map(|drift| drift.report));
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_example_in_the_docs_prints_what_its_page_shows() {
    let checks = pages(root())
        .into_iter()
        .map(|path| tokio::spawn(async move { check(&path).await }));
    let mut problems = Vec::new();
    for check in checks.collect::<Vec<_>>() {
        problems.extend(check.await.expect("a page's check ran"));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in the docs (the rule is at the top of tests/docs/main.rs):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}
