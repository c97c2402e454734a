//! `--config.auto-reload-interval`: on that interval the config file and the files it names
//! (secrets, TLS files: every `*_file` key) are read and hashed, and the config is reloaded when
//! any of them changed, as Prometheus 3 does with its flag of that name. The content is what
//! counts: a rewrite with the same bytes, or a Kubernetes ConfigMap swapping its symlinks to
//! identical files, is no change. A reload goes through the `Reloader`, so a config that fails
//! keeps the old one running exactly as on SIGHUP; the failed version is remembered, so it is
//! tried (and logged) once, and again only when a file changes again. `file_sd` files are not
//! this watch's business: discovery re-reads them itself.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config;
use crate::reload::Reloader;

/// One file's content digest (SHA-256); `None` when it cannot be read (missing, say), so that
/// its appearing is a change too.
type Digest = Option<Vec<u8>>;

/// Watches the files of one config and reloads it through the reloader on a change.
pub struct ConfigWatch {
    reloader: Arc<Reloader>,
    /// The files of the version last handed to the reloader, with their digests, and the
    /// scanner that finds them.
    known: Mutex<(Vec<(PathBuf, Digest)>, Scanner)>,
}

impl ConfigWatch {
    /// Takes the digests now. Call it before the first load, so that a change made while that
    /// load runs is seen by the first check (and costs at most one extra reload).
    pub fn new(reloader: Arc<Reloader>) -> ConfigWatch {
        let mut scanner = Scanner::default();
        let known = (scanner.snapshot(reloader.path()), scanner);
        ConfigWatch {
            reloader,
            known: Mutex::new(known),
        }
    }

    /// Reloads when a file changed since the last check; true when a reload was tried.
    /// Blocking (file reads, the reload itself); must be called inside a Tokio runtime.
    pub fn check(&self) -> bool {
        let mut guard = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let (known, scanner) = &mut *guard;
        // Digests are taken before the reload reads the files: a change in between is seen
        // by the next check, never lost.
        let now = scanner.snapshot(self.reloader.path());
        if now == *known {
            return false;
        }
        let changed: Vec<String> = now
            .iter()
            .filter(|entry| !known.contains(entry))
            .map(|(path, _)| path.display().to_string())
            .collect();
        tracing::info!(files = %changed.join(","), "config files changed; reloading");
        *known = now;
        // Success and failure are logged and recorded in the reload metrics by the reloader.
        let _ = self.reloader.reload();
        true
    }

    /// Checks every `every` until `stop` turns true or its sender is gone.
    pub fn spawn(
        self: Arc<Self>,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let watch = self.clone();
                        let handle = tokio::runtime::Handle::current();
                        let _ = tokio::task::spawn_blocking(move || {
                            let _runtime = handle.enter();
                            watch.check()
                        })
                        .await;
                    }
                    changed = stop.changed() => if changed.is_err() { return },
                }
                if *stop.borrow() {
                    return;
                }
            }
        })
    }
}

/// Finds the files a config names. The YAML is parsed only when the config file's digest
/// changed: an unchanged config names the same files, and a large one would cost a parse every
/// interval for nothing. The named files themselves are hashed every time.
#[derive(Default)]
struct Scanner {
    /// The config file's digest when it was last parsed, and the files it named.
    named: Option<(Digest, Vec<PathBuf>)>,
    /// How often the YAML was parsed (for tests).
    parses: u64,
}

impl Scanner {
    /// The config file and every file it names, each with its digest.
    fn snapshot(&mut self, path: &Path) -> Vec<(PathBuf, Digest)> {
        let text = std::fs::read(path).ok();
        let config_digest = text.as_deref().map(digest);
        let named = match &self.named {
            Some((seen, named)) if *seen == config_digest => named.clone(),
            _ => {
                self.parses += 1;
                let mut named = text
                    .as_deref()
                    .map(|bytes| named_files(bytes, &config::base_dir(path)))
                    .unwrap_or_default();
                named.sort();
                named.dedup();
                self.named = Some((config_digest.clone(), named.clone()));
                named
            }
        };
        let mut files = vec![(path.to_path_buf(), config_digest)];
        files.extend(named.into_iter().map(|file| {
            let content = std::fs::read(&file).ok();
            (file, content.as_deref().map(digest))
        }));
        files
    }
}

fn digest(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// The paths under every `*_file` key of the config (`bearer_token_file`, `password_file`,
/// `token_file`, `ca_file`, `cert_file`, `key_file`), relative ones anchored at the config's
/// folder as the loader does. Read from the YAML tree rather than the resolved config, so that
/// the files of a config that fails to resolve (a secret file missing) are watched too: its
/// appearing is a change. Text that is not YAML names no files.
fn named_files(text: &[u8], base_dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::str::from_utf8(text) else {
        return Vec::new();
    };
    let Ok(tree) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    collect(&tree, base_dir, &mut found);
    found
}

fn collect(value: &serde_json::Value, base_dir: &Path, found: &mut Vec<PathBuf>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(file) if key.ends_with("_file") => {
                        found.push(base_dir.join(file));
                    }
                    _ => collect(value, base_dir, found),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect(item, base_dir, found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_files_are_the_file_keys_at_any_depth_relative_to_the_config() {
        let yaml = b"defaults:\n  http: {tls: {ca_file: /abs/ca.pem}}\nagents:\n  - name: a\n    url: http://x/\n    http: {bearer_token_file: tok}\n  - name: b\n    heartbeat: {token_file: hb/b.token}\ndiscovery:\n  - file_sd: {files: [fleet/*.yaml]}\n";
        let mut files = named_files(yaml, Path::new("/etc/ahe"));
        files.sort();
        assert_eq!(
            files,
            vec![
                PathBuf::from("/abs/ca.pem"),
                PathBuf::from("/etc/ahe/hb/b.token"),
                PathBuf::from("/etc/ahe/tok"),
            ]
        );
    }

    #[test]
    fn files_named_through_an_anchor_are_watched() {
        let yaml = b"checks:\n  api:\n    http: &auth {bearer_token_file: /s/api}\nagents:\n  - name: a\n    url: http://x/\n    http: *auth\n";
        let files = named_files(yaml, Path::new("/"));
        assert_eq!(files, vec![PathBuf::from("/s/api"); 2]);
    }

    #[test]
    fn text_that_is_not_yaml_names_no_files() {
        assert!(named_files(b"agents: [", Path::new("/")).is_empty());
    }

    #[test]
    fn config_is_parsed_again_only_when_it_changed_and_named_files_are_hashed_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        let token = dir.path().join("tok");
        std::fs::write(&token, "one").unwrap();
        std::fs::write(
            &config,
            "agents:\n  - name: a\n    heartbeat: {token_file: tok}\n",
        )
        .unwrap();
        let mut scanner = Scanner::default();
        let first = scanner.snapshot(&config);
        assert_eq!(first.len(), 2);
        assert_eq!(scanner.snapshot(&config), first);
        assert_eq!(scanner.parses, 1, "an unchanged config was parsed again");
        std::fs::write(&token, "two").unwrap();
        let rotated = scanner.snapshot(&config);
        assert_ne!(rotated, first, "a named file's change was missed");
        assert_eq!(scanner.parses, 1);
        std::fs::write(&config, "agents: []\n").unwrap();
        assert_eq!(scanner.snapshot(&config).len(), 1);
        assert_eq!(scanner.parses, 2);
    }
}
