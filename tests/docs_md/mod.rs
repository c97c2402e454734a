//! The documentation as the docs tests read it: which Markdown files count as docs, and their
//! fenced blocks with the info string that says what each block is.
#![allow(dead_code)] // each test file uses its own part

mod kind;

use std::path::{Path, PathBuf};

#[allow(unused_imports)] // each test file uses its own part, as above
pub use kind::{kind, Kind};

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, every .md under docs/ (nested folders too) and the READMEs that sit beside what
/// they describe.
pub fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![
        PathBuf::from("README.md"),
        PathBuf::from("dashboards/README.md"),
        PathBuf::from("deploy/kubernetes/README.md"),
    ];
    let mut docs = Vec::new();
    markdown_under(&repo().join("docs"), &mut docs);
    docs.sort();
    files.extend(docs);
    files
}

fn markdown_under(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            markdown_under(&path, found);
        } else if path.extension().is_some_and(|x| x == "md") {
            let relative = path.strip_prefix(repo()).expect("under the repository");
            found.push(relative.to_path_buf());
        }
    }
}

/// One fenced block: where it starts, its info string split into words, and its text with the
/// fence's own indentation removed.
pub struct Block {
    pub file: PathBuf,
    pub line: usize,
    pub info: Vec<String>,
    pub text: String,
}

impl Block {
    pub fn place(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
    pub fn lang(&self) -> &str {
        self.info.first().map_or("", String::as_str)
    }
    pub fn has(&self, word: &str) -> bool {
        self.info.iter().skip(1).any(|w| w == word)
    }
}

/// Every fenced block of one Markdown file (``` fences, indented ones included).
pub fn blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(repo().join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut found = Vec::new();
    let mut open: Option<(usize, usize, Vec<String>, Vec<String>)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match open.as_mut() {
            None if trimmed.starts_with("```") => {
                let info = trimmed[3..]
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                open = Some((n + 1, indent, info, Vec::new()));
            }
            None => {}
            Some(_) if trimmed == "```" => {
                let (line, _, info, body) = open.take().expect("open block");
                found.push(Block {
                    file: file.to_path_buf(),
                    line,
                    info,
                    text: body.join("\n") + "\n",
                });
            }
            Some((_, fence_indent, _, body)) => {
                let cut = line
                    .char_indices()
                    .take_while(|(i, c)| *i < *fence_indent && *c == ' ')
                    .count();
                body.push(line[cut..].to_string());
            }
        }
    }
    assert!(
        open.is_none(),
        "{}: a fenced block is never closed",
        file.display()
    );
    found
}
