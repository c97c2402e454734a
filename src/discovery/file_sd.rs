//! `file_sd`: target groups from JSON or YAML files named by globs. The files are polled once a
//! second (path, size, modification time and inode of every match), which sees both an atomic
//! rename and an in-place write without a platform watcher; every `refresh_interval` they are
//! read again regardless.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::target::{expand_groups, parse_groups, Discovered};
use super::{Refresh, Sink};
use crate::config::{SourceKind, SourceSpec};

/// How often the files are looked at for a change.
pub const POLL: Duration = Duration::from_secs(1);

/// What a change of a matched file shows in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// Runs the source until its task is aborted.
pub async fn run(spec: Arc<SourceSpec>, sink: Sink) {
    let SourceKind::File { patterns } = &spec.kind else {
        return;
    };
    let mut last: Option<Vec<Stamp>> = None;
    let mut last_read = Instant::now();
    loop {
        let now = stamps(patterns);
        let due = last_read.elapsed() >= spec.refresh_interval;
        if due || last.as_ref() != Some(&now) {
            last_read = Instant::now();
            let refresh = read(patterns);
            // A failed read is retried at the next poll, not only at the next change.
            last = refresh.is_ok().then_some(now);
            if !sink.send(refresh) {
                return;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The files the patterns match now, sorted, so the target order is stable.
fn matches(patterns: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for pattern in patterns {
        let Some(text) = pattern.to_str() else {
            continue;
        };
        if let Ok(paths) = glob::glob(text) {
            files.extend(paths.flatten().filter(|p| p.is_file()));
        }
    }
    files.sort();
    files.dedup();
    files
}

fn stamps(patterns: &[PathBuf]) -> Vec<Stamp> {
    matches(patterns)
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            Stamp {
                len: meta.as_ref().map_or(0, |m| m.len()),
                modified: meta.as_ref().and_then(|m| m.modified().ok()),
                inode: meta.as_ref().map_or(0, inode),
                path,
            }
        })
        .collect()
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// Reads every matched file; one unreadable or invalid file fails the refresh, so that a file
/// caught half-written never removes its agents.
pub fn read(patterns: &[PathBuf]) -> Refresh {
    let mut out = Vec::new();
    for path in matches(patterns) {
        out.extend(read_file(&path)?);
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Vec<Discovered>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    );
    let groups = parse_groups(&bytes, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
    let shown = path.display().to_string();
    Ok(expand_groups(
        groups,
        &[("__meta_filepath", &shown)],
        &format!("file={shown}"),
    ))
}
