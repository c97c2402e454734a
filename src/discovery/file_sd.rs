//! `file_sd`: target groups from JSON or YAML files named by globs. The files are looked at once
//! a second (path, size, modification time and inode of every match), which sees both an atomic
//! rename and an in-place write without a platform watcher; a file is read when it changed, and
//! every file every `refresh_interval`. Each file keeps its last good targets, as Prometheus'
//! file_sd does: one that does not parse (caught half-written) keeps them and fails the refresh
//! while the other files are followed, and is read again only when it changes or at
//! `refresh_interval`. Looking and reading run on the blocking pool, off the runtime's threads.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::target::{expand_groups, parse_groups, Discovered};
use super::{bounds, Refresh, Sink};
use crate::config::{SourceKind, SourceSpec};

/// How often the files are looked at for a change.
pub const POLL: Duration = Duration::from_secs(1);

/// A file larger than this is not read (its last good targets stay): about 500,000 targets of
/// the format, five times the default `max_targets`.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// What a change of a matched file shows in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// One matched file: how it looked when last read, and what it gave.
#[derive(Default)]
struct File {
    stamp: Option<Stamp>,
    /// Its targets from its last good read.
    good: Option<Vec<Discovered>>,
    /// Why its last read failed, while it does.
    error: Option<String>,
    /// Found empty while it had targets: an in-place writer truncates before it writes, so
    /// the file is read again at the next look, and its targets go only if it was left
    /// untouched and empty in between.
    emptied: bool,
}

/// The files of one source, by path, so that the target order is stable.
struct Files {
    files: BTreeMap<PathBuf, File>,
    last_full: Option<Instant>,
    /// A file listing more targets fails before its targets are expanded.
    max_targets: usize,
}

/// What a look found, when anything changed.
enum Found {
    /// Every file was read well.
    Good(Vec<Discovered>),
    /// Some files failed: the others' targets and the failed ones' last good targets.
    Partial(Vec<Discovered>, String),
    /// A file failed that has no last good targets: the source keeps all of its own.
    Failed(String),
}

/// Runs the source until its task is aborted.
pub async fn run(spec: Arc<SourceSpec>, sink: Sink) {
    let SourceKind::File { patterns } = &spec.kind else {
        return;
    };
    let patterns = Arc::new(patterns.clone());
    let refresh = spec.refresh_interval;
    let mut files = Files::new(spec.max_targets);
    loop {
        let patterns = patterns.clone();
        let looked = tokio::task::spawn_blocking(move || {
            let found = files.look(&patterns, refresh);
            (files, found)
        })
        .await;
        let found;
        (files, found) = match looked {
            Ok(looked) => looked,
            Err(error) => {
                tracing::error!(source = %spec.id, error = %error, "file_sd stopped: looking at its files failed");
                return;
            }
        };
        let go_on = match found {
            None => true,
            Some(Found::Good(targets)) => sink.send(bounds::check(targets, spec.max_targets)),
            Some(Found::Partial(targets, error)) => {
                match bounds::check(targets, spec.max_targets) {
                    Ok(targets) => sink.send_partial(targets, error),
                    Err(beyond) => sink.send(Err(beyond)),
                }
            }
            Some(Found::Failed(error)) => sink.send(Err(error)),
        };
        if !go_on {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

impl Files {
    fn new(max_targets: usize) -> Files {
        Files {
            files: BTreeMap::new(),
            last_full: None,
            max_targets,
        }
    }

    /// Looks at the files and reads those that changed, or all of them once `refresh` has
    /// passed since they were last all read; None when nothing changed.
    fn look(&mut self, patterns: &[PathBuf], refresh: Duration) -> Option<Found> {
        let full = self.last_full.is_none_or(|t| t.elapsed() >= refresh);
        if full {
            self.last_full = Some(Instant::now());
        }
        let paths = matches(patterns);
        let before = self.files.len();
        self.files
            .retain(|path, _| paths.binary_search(path).is_ok());
        let mut changed = full || self.files.len() != before;
        for path in paths {
            let stamp = stamp(&path);
            let file = self.files.entry(path.clone()).or_default();
            let same = file.stamp.is_some() && file.stamp == stamp;
            if !full && !file.emptied && same {
                continue;
            }
            file.stamp = stamp;
            changed |= file.read(&path, same, self.max_targets);
        }
        changed.then(|| self.found())
    }

    /// Every file's targets, the last good ones of those that fail.
    fn found(&self) -> Found {
        let mut targets = Vec::new();
        let mut errors = Vec::new();
        let mut lost = false;
        for file in self.files.values() {
            if let Some(error) = &file.error {
                errors.push(error.as_str());
                lost |= file.good.is_none();
            }
            if let Some(good) = &file.good {
                targets.extend(good.iter().cloned());
            }
        }
        if errors.is_empty() {
            Found::Good(targets)
        } else if lost {
            Found::Failed(errors.join("; "))
        } else {
            Found::Partial(targets, errors.join("; "))
        }
    }
}

impl File {
    /// Reads the file, `unchanged` since the last look or not; answers whether what it gives
    /// may have changed.
    fn read(&mut self, path: &Path, unchanged: bool, max_targets: usize) -> bool {
        let bytes = match read_bounded(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.emptied = false;
                self.error = Some(error);
                return true;
            }
        };
        let had_targets = self.good.as_ref().is_some_and(|g| !g.is_empty());
        if bytes.is_empty() && had_targets && !(self.emptied && unchanged) {
            self.emptied = true;
            return false;
        }
        self.emptied = false;
        match parse_file(path, &bytes, max_targets) {
            Ok(targets) => {
                self.good = Some(targets);
                self.error = None;
            }
            Err(error) => self.error = Some(error),
        }
        true
    }
}

/// The files the patterns match now, sorted.
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

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: inode(&meta),
    })
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// Reads every matched file once (`--config.check`); one unreadable or invalid file fails it.
pub fn read(patterns: &[PathBuf], max_targets: usize) -> Refresh {
    let mut out = Vec::new();
    for path in matches(patterns) {
        let bytes = read_bounded(&path)?;
        out.extend(parse_file(&path, &bytes, max_targets)?);
    }
    Ok(out)
}

/// The file's bytes, unless it is larger than `MAX_FILE_BYTES` (also one that grows while it
/// is read).
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let too_large = || {
        format!(
            "{}: larger than {MAX_FILE_BYTES} bytes; split it into several files",
            path.display()
        )
    };
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

fn parse_file(path: &Path, bytes: &[u8], max_targets: usize) -> Result<Vec<Discovered>, String> {
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    );
    let groups = parse_groups(bytes, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
    let shown = path.display().to_string();
    expand_groups(
        groups,
        &[("__meta_filepath", &shown)],
        &format!("file={shown}"),
        max_targets,
    )
    .map_err(|e| format!("{shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_size_bound_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.json");
        let file = std::fs::File::create(&path).unwrap();
        // Sparse: the bound is checked before a byte is read.
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let error = read_bounded(&path).unwrap_err();
        assert!(error.contains("larger than 67108864 bytes"), "{error}");
        assert!(read(&[path], usize::MAX).is_err());
    }

    #[test]
    fn a_failing_file_keeps_its_last_good_targets_and_one_never_good_keeps_the_sources() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        std::fs::write(&a, r#"[{"targets": ["h:1"]}]"#).unwrap();
        std::fs::write(&b, "[").unwrap();
        let patterns = [dir.path().join("*.json")];
        let mut files = Files::new(usize::MAX);
        assert!(matches!(
            files.look(&patterns, Duration::from_secs(3600)),
            Some(Found::Failed(_))
        ));
        std::fs::write(&b, r#"[{"targets": ["h:2"]}]"#).unwrap();
        files.files.values_mut().for_each(|f| f.stamp = None);
        assert!(matches!(
            files.look(&patterns, Duration::from_secs(3600)),
            Some(Found::Good(t)) if t.len() == 2
        ));
        std::fs::write(&b, "[{").unwrap();
        files.files.values_mut().for_each(|f| f.stamp = None);
        match files.look(&patterns, Duration::from_secs(3600)) {
            Some(Found::Partial(targets, error)) => {
                assert_eq!(targets.len(), 2);
                assert!(error.contains("b.json"), "{error}");
            }
            _ => panic!("expected the last good targets with the failure"),
        }
        // Unchanged since: not read again before refresh_interval.
        assert!(files.look(&patterns, Duration::from_secs(3600)).is_none());
    }
}
