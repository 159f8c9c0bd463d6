//! The docs as tests: every fenced block of README.md and docs/ is run,
//! marked as not runnable here, or not a command (the rule is at the top of
//! tests/docs/main.rs). [`page`] reads a page's blocks; [`run`] runs its
//! `console` examples on a vhost of their own and compares what they print.

pub mod page;
pub mod run;

use std::path::{Path, PathBuf};

/// README.md and every Markdown file under docs/, in a stable order.
pub fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![root.join("README.md")];
    let mut stack = vec![root.join("docs")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages.sort();
    pages
}
