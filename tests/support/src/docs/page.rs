//! A Markdown page's fenced code blocks, the mark before each, and the
//! command examples of its `console` blocks. Pure: no process, no broker.

use std::ops::Range;
use std::path::{Path, PathBuf};

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag};

/// The languages of blocks that hold commands to type.
const SHELL: &[&str] = &["sh", "bash", "shell", "zsh"];
/// The language of a tested example: commands after `$ `, then what they print.
pub const CONSOLE: &str = "console";
/// What a mark starts with: `<!-- docs-test: ... -->` right before a block.
const MARK: &str = "docs-test:";

/// A page of the docs, read whole.
#[derive(Debug)]
pub struct Page {
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
    /// Its fenced code blocks, in order.
    pub blocks: Vec<Block>,
}

/// A fenced code block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The line of its opening fence (1-based).
    pub line: usize,
    /// The first word of the info string (`console`, `sh`, `text`, ...); empty when none.
    pub lang: String,
    /// Its lines between the fences, each with its byte range in the page,
    /// the indentation of the fence (a block in a list item) taken off.
    pub lines: Vec<(String, Range<usize>)>,
    /// The `<!-- docs-test: ... -->` comment right before it, if any.
    pub mark: Option<Mark>,
}

/// What the comment before a block says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// `not run here: <why>`: the block cannot run on this machine (the
    /// Azure CLI, systemd, a container runtime) and is not run.
    NotRunHere(String),
    /// `run by <file>`: a test of its own runs the block (the quick start).
    RunBy(String),
    /// Anything else: an error, so a misspelt mark cannot silence a block.
    Unknown(String),
}

/// One command of a `console` block and what it should print.
#[derive(Debug, Clone)]
pub struct Example {
    /// The line of its `$ ` (1-based).
    pub line: usize,
    /// The command as typed, `\` continuations joined by newlines.
    pub command: String,
    /// The exit status it should have.
    pub status: Status,
    /// What it should print, stdout and stderr together, with snapbox's
    /// placeholders (`[..]`, `...`, `[UUID]`, `[TIMESTAMP]`).
    pub expected: String,
    /// The byte range of the expected lines in the page (empty, at the
    /// place they would go, when it shows none).
    pub expected_range: Range<usize>,
}

/// The exit status an example shows: `? 1`, `? failed` below the command; none means 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Success,
    /// Any exit but 0 (`? failed`).
    Failed,
    /// Exactly this code.
    Code(i32),
}

impl Status {
    /// Whether `code` (None: killed by a signal) is what the example shows.
    pub fn admits(self, code: Option<i32>) -> bool {
        match self {
            Self::Success => code == Some(0),
            Self::Failed => code != Some(0),
            Self::Code(expected) => code == Some(expected),
        }
    }
}

impl Page {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self::parse(path, text)
    }

    /// Parses `text` as the page `path`.
    pub fn parse(path: &Path, text: String) -> Self {
        let mut blocks = Vec::new();
        for (event, range) in Parser::new(&text).into_offset_iter() {
            if let Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) = event {
                blocks.push(Block {
                    line: line_of(&text, range.start),
                    lang: info.split([' ', ',', '{']).next().unwrap_or("").to_owned(),
                    lines: inner_lines(&text, range.clone()),
                    mark: mark_before(&text, range.start),
                });
            }
        }
        Self {
            path: path.to_owned(),
            text,
            blocks,
        }
    }

    /// `file:line` for messages.
    pub fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.path.display())
    }

    /// What is wrong with the page's blocks under the rule (see
    /// tests/docs/main.rs): shell blocks neither tested nor marked, marks
    /// without a reason, commands in blocks that are not `console`.
    pub fn rule_breaches(&self) -> Vec<String> {
        let mut breaches = Vec::new();
        for block in &self.blocks {
            let at = self.at(block.line);
            match &block.mark {
                Some(Mark::Unknown(text)) => breaches.push(format!(
                    "{at}: unknown mark {text:?}: write `docs-test: not run here: <why>` or `docs-test: run by <test file>`"
                )),
                Some(Mark::NotRunHere(why)) if why.trim().is_empty() => {
                    breaches.push(format!("{at}: `not run here` needs the reason after the colon"))
                }
                Some(Mark::RunBy(file)) if !Path::new(file).is_file() => {
                    breaches.push(format!("{at}: `run by {file}`: no such file"))
                }
                Some(_) => {}
                None if SHELL.contains(&block.lang.as_str()) => breaches.push(format!(
                    "{at}: a ```{} block is neither run nor marked: show what it prints in a ```console block, \
                     or put `<!-- docs-test: not run here: <why> -->` right before it",
                    block.lang
                )),
                None if block.lang != CONSOLE && block.lines.first().is_some_and(|(l, _)| l.starts_with("$ ")) => {
                    breaches.push(format!(
                        "{at}: a command with `$ ` in a block that is not ```console: make it ```console so it is run"
                    ))
                }
                None => {}
            }
            if block.lang == CONSOLE
                && block.mark.is_none()
                && let Err(problem) = block.examples()
            {
                breaches.push(format!("{at}: {problem}"));
            }
        }
        breaches
    }

    /// The blocks to run: `console` blocks without a mark.
    pub fn tested_blocks(&self) -> impl Iterator<Item = &Block> {
        self.blocks.iter().filter(|b| b.lang == CONSOLE && b.mark.is_none())
    }
}

impl Block {
    /// The commands of a `console` block and their expected output.
    pub fn examples(&self) -> Result<Vec<Example>, String> {
        let mut examples: Vec<Example> = Vec::new();
        // Per example: its output lines and where the first one starts.
        let mut shown: Vec<(Vec<&str>, Option<usize>)> = Vec::new();
        let mut lines = self.lines.iter().enumerate().peekable();
        while let Some((index, (line, range))) = lines.next() {
            if let Some(command) = line.strip_prefix("$ ") {
                let mut command = command.to_owned();
                while command.ends_with('\\') {
                    let Some((_, (next, _))) = lines.next() else {
                        return Err("the block ends inside a command continued with `\\`".to_owned());
                    };
                    command.push('\n');
                    command.push_str(next);
                }
                let mut status = Status::Success;
                if let Some((_, (next, _))) = lines.peek()
                    && let Some(code) = next.strip_prefix("? ")
                {
                    status = match code.trim() {
                        "failed" => Status::Failed,
                        code => Status::Code(code.parse().map_err(|_| format!("`? {code}`: not an exit code"))?),
                    };
                    lines.next();
                }
                let next_start = lines.peek().map_or(self.end(), |(_, (_, r))| r.start);
                examples.push(Example {
                    line: self.line + 1 + index,
                    command,
                    status,
                    expected: String::new(),
                    expected_range: next_start..next_start,
                });
                shown.push((Vec::new(), None));
            } else {
                let (Some(example), Some((output, first))) = (examples.last_mut(), shown.last_mut()) else {
                    return Err(format!("line {line:?} comes before any `$ ` command"));
                };
                output.push(line);
                let first = *first.get_or_insert(range.start);
                example.expected_range = first..range.end;
            }
        }
        for (example, (output, _)) in examples.iter_mut().zip(shown) {
            example.expected = output.join("\n");
        }
        if examples.is_empty() {
            return Err("a ```console block without a `$ ` command".to_owned());
        }
        Ok(examples)
    }

    /// Where the closing fence starts.
    fn end(&self) -> usize {
        self.lines.last().map_or(0, |(_, r)| r.end + 1)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// The lines between the fences of the block at `range`, each with its
/// range (without the newline), the fence's indentation taken off.
fn inner_lines(text: &str, range: Range<usize>) -> Vec<(String, Range<usize>)> {
    let line_start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
    let indent = range.start - line_start + text[range.start..].len() - text[range.start..].trim_start().len();
    let mut lines = Vec::new();
    let mut offset = line_start;
    for line in text[line_start..range.end].split_inclusive('\n') {
        let content = line.strip_suffix('\n').unwrap_or(line);
        let cut = content.len() - content.trim_start_matches(' ').len();
        let cut = cut.min(indent);
        lines.push((content[cut..].to_owned(), offset + cut..offset + content.len()));
        offset += line.len();
    }
    // The first line is the opening fence; the last, unless the page ends
    // inside the block, the closing one.
    lines.remove(0);
    if lines
        .last()
        .is_some_and(|(l, _)| l.trim_start().starts_with("```") || l.trim_start().starts_with("~~~"))
    {
        lines.pop();
    }
    lines
}

/// The `<!-- docs-test: ... -->` comment that ends right before `start`
/// (only white space between).
fn mark_before(text: &str, start: usize) -> Option<Mark> {
    let before = text[..start].trim_end();
    let comment = before.strip_suffix("-->")?;
    let open = comment.rfind("<!--")?;
    let body = comment[open + 4..].trim();
    let said = body.strip_prefix(MARK)?.trim();
    Some(if let Some(why) = said.strip_prefix("not run here:") {
        Mark::NotRunHere(why.trim().to_owned())
    } else if let Some(file) = said.strip_prefix("run by ") {
        Mark::RunBy(file.trim().to_owned())
    } else {
        Mark::Unknown(said.to_owned())
    })
}
