//! Which running source a reloaded config's source is. A source is known by its settings, not
//! by its place in the file: inserting a source before another leaves the other running, and a
//! source whose settings changed restarts with the old one's targets (its agents keep state).

use crate::config::SourceSpec;

/// What becomes of the old source paired with a new one (by its index among the old).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// Its task asks the same, as often: it goes on, its targets read through the new settings.
    Keep(usize),
    /// Its task changed (URL, files, refresh interval, …): a new task starts, seeded with the
    /// old one's last good targets, read through the new settings.
    Seed(usize),
    /// No old source is this one.
    New,
}

/// Whether an old source and a new one match in one pass of `pair`.
type Same = fn(&SourceSpec, &SourceSpec) -> bool;

/// Pairs every new source with at most one old one, in passes from the closest match to the
/// loosest: every setting the same; the same task; the same files, URL or DNS names. Within a
/// pass, the first unpaired old source in config order. Never by place alone (`http_sd/0`):
/// the targets of another URL, seeded into a source whose `check:` carries credentials, would
/// get those credentials, which their own source never gave them.
pub fn pair(old: &[&SourceSpec], new: &[SourceSpec]) -> Vec<Pairing> {
    let mut taken = vec![false; old.len()];
    let mut out = vec![Pairing::New; new.len()];
    // Each pass: how a pair matches, and whether the new source needs a new task.
    let passes: [(Same, bool); 3] = [
        (|a, b| a.settings == b.settings, false),
        (|a, b| a.fingerprint == b.fingerprint, false),
        (|a, b| a.locator() == b.locator(), true),
    ];
    for (same, restart) in passes {
        for (j, spec) in new.iter().enumerate() {
            if out[j] != Pairing::New {
                continue;
            }
            let found = old
                .iter()
                .enumerate()
                .find(|(i, was)| !taken[*i] && same(was, spec));
            if let Some((i, _)) = found {
                taken[i] = true;
                out[j] = if restart {
                    Pairing::Seed(i)
                } else {
                    Pairing::Keep(i)
                };
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::path::Path;

    fn sources(yaml: &str) -> Vec<SourceSpec> {
        config::parse(yaml, "t.yaml", Path::new("/nonexistent-dir"))
            .unwrap_or_else(|e| panic!("{e}"))
            .discovery
    }

    fn pairs(old: &str, new: &str) -> Vec<Pairing> {
        let old = sources(old);
        let refs: Vec<&SourceSpec> = old.iter().collect();
        pair(&refs, &sources(new))
    }

    const A: &str = "  - http_sd: {url: 'http://127.0.0.1:1/a'}\n";
    const B: &str = "  - http_sd: {url: 'http://127.0.0.1:1/b'}\n";

    #[test]
    fn a_source_inserted_before_another_leaves_the_other_running() {
        let old = format!("discovery:\n{A}");
        let new = format!("discovery:\n{B}{A}");
        assert_eq!(pairs(&old, &new), [Pairing::New, Pairing::Keep(0)]);
    }

    #[test]
    fn changed_reading_keeps_the_task_and_a_changed_task_is_seeded() {
        let old = format!("discovery:\n{A}    type: w\n{B}");
        let new = "discovery:\n  - http_sd: {url: 'http://127.0.0.1:1/a'}\n    type: v\n  - http_sd: {url: 'http://127.0.0.1:1/c'}\n";
        // Another URL at the second place is another source.
        assert_eq!(pairs(&old, new), [Pairing::Keep(0), Pairing::New]);
        let new = "discovery:\n  - http_sd: {url: 'http://127.0.0.1:1/a', refresh_interval: 1m}\n";
        assert_eq!(pairs(&old, new), [Pairing::Seed(0)]);
    }

    #[test]
    fn a_source_at_the_place_of_another_url_starts_empty_and_never_takes_its_targets() {
        // The old source's targets, read through a new first source that carries the billing
        // check, would send billing's credentials to hosts that source never listed.
        let old = "checks:\n  billing: {}\ndiscovery:\n  - http_sd: {url: 'http://127.0.0.1:1/untrusted'}\n    type: w\n";
        let new = "checks:\n  billing: {}\ndiscovery:\n  - http_sd: {url: 'http://127.0.0.1:1/billing'}\n    check: billing\n  - http_sd: {url: 'http://127.0.0.1:1/untrusted2'}\n";
        assert_eq!(pairs(old, new), [Pairing::New, Pairing::New]);
    }

    #[test]
    fn sources_of_another_kind_are_new() {
        let old = format!("discovery:\n{A}");
        let new = "discovery:\n  - file_sd: {files: [a.json]}\n";
        assert_eq!(pairs(&old, new), [Pairing::New]);
    }
}
