//! The docs hang together: every relative link of the README and docs/ reaches a file (and a
//! heading, when it names one), and every page of docs/ is one click from the README.

mod docs_md;

use std::path::{Path, PathBuf};

use docs_md::{doc_files, repo};

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut fence = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
        } else if !fence && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// Every `](target)` of a Markdown text outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut fence = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                found.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    found
}

#[test]
fn every_relative_link_in_the_docs_reaches_its_file_and_heading() {
    let mut broken = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(repo().join(&file)).expect("doc file");
        let folder = file.parent().map(Path::to_path_buf).unwrap_or_default();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, heading) = link.split_once('#').unwrap_or((&link, ""));
            let target: PathBuf = if path.is_empty() {
                file.clone()
            } else {
                normalize(&folder.join(path))
            };
            let full = repo().join(&target);
            if !full.exists() {
                broken.push(format!(
                    "{}: {link} (no {})",
                    file.display(),
                    target.display()
                ));
                continue;
            }
            if !heading.is_empty()
                && full.extension().is_some_and(|x| x == "md")
                && !anchors(&full).iter().any(|a| a == heading)
            {
                broken.push(format!(
                    "{}: {link} (no heading #{heading} in {})",
                    file.display(),
                    target.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn every_page_of_docs_is_one_click_from_the_readme() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let linked = links(&readme);
    let missing: Vec<String> = doc_files()
        .into_iter()
        .filter(|f| f != Path::new("README.md"))
        .map(|f| f.display().to_string())
        .filter(|f| {
            !linked
                .iter()
                .any(|l| l.split('#').next() == Some(f.as_str()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "pages the README does not link: {missing:?}"
    );
}

#[test]
fn readme_stays_short_and_keeps_its_two_commands() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; move detail to docs/"
    );
    assert!(readme.starts_with("# agent-health-exporter\n\n![")); // the screenshot comes first
    assert!(
        repo().join("docs/images/status-page.png").exists(),
        "the README's screenshot"
    );
    for command in [
        "cargo run --release -- --config.file=config.example.yaml",
        "cargo test",
    ] {
        assert!(
            readme.lines().any(|l| l.trim() == command),
            "the README must keep the command `{command}` (.ci/run and the walkthrough rely on it)"
        );
    }
}
