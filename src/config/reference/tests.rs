//! The reference against the parser: the same keys in every section (the parser's own lists,
//! read from its refusal of an unknown key), a value of each documented type accepted where the
//! reference puts it, empty keys accepted where it says so, and the defaults the resolved
//! config shows.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::super::raw::RawConfig;
use super::{Def, Key, Section, Ty, ROOT};

/// A key no section has, to make the parser list the keys it expects.
const PROBE_KEY: &str = "zz_not_a_key";

/// One step from a mapping into a key's value.
#[derive(Clone, Copy)]
enum Step {
    /// Into a nested section.
    Into,
    /// Into an item of a list of sections.
    Item,
    /// Into an entry of a map of sections.
    Entry,
}

/// The path to a section: each level's section, the key taken and how it nests.
type Trail = Vec<(&'static Section, &'static Key, Step)>;

/// Parses YAML as the parser's schema; the serde error message when it refuses it.
fn refusal(yaml: &str) -> Option<String> {
    serde_saphyr::from_str::<RawConfig>(yaml)
        .err()
        .map(|e| e.to_string())
}

/// A value of `ty` the parser takes.
fn sample(ty: Ty) -> String {
    match ty {
        Ty::Duration => "30s".into(),
        Ty::Size { .. } => "1MiB".into(),
        Ty::Integer { min, .. } => min.max(1).to_string(),
        Ty::Bool => "true".into(),
        Ty::Text | Ty::File | Ty::SecretFile => "x".into(),
        Ty::Enum { values, .. } => values[0].into(),
        Ty::TextList => "[x]".into(),
        Ty::TextMap | Ty::SecretFileMap => "{a: b}".into(),
        Ty::JsonMap => "{\"/a\": 1}".into(),
        Ty::AnyMap => "{a: 1}".into(),
        Ty::Status => "[200, \"2xx\"]".into(),
        Ty::Section(s) => section_yaml(s, None),
        Ty::List(s) => format!("[{}]", section_yaml(s, None)),
        Ty::Map(s) => format!("{{c: {}}}", section_yaml(s, None)),
    }
}

/// A mapping of `section` with its required keys, and `extra` (a `key: value` text) if given.
fn section_yaml(section: &Section, extra: Option<&str>) -> String {
    let mut parts: Vec<String> = section
        .all_keys()
        .filter(|k| k.required && extra.is_none_or(|e| !e.starts_with(&format!("{}:", k.name))))
        .map(|k| format!("{}: {}", k.name, sample(k.ty)))
        .collect();
    parts.extend(extra.map(str::to_owned));
    format!("{{{}}}", parts.join(", "))
}

/// The YAML of the whole file with `inner` (a `key: value` text) written in the innermost
/// section of `path`.
fn nest(path: &Trail, inner: &str) -> String {
    let mut text = inner.to_owned();
    for (index, (_, key, step)) in path.iter().enumerate().rev() {
        let child = match path.get(index + 1) {
            Some((section, _, _)) => *section,
            None => match key.ty {
                Ty::Section(s) | Ty::List(s) | Ty::Map(s) => s,
                _ => unreachable!("a path step leads into a section"),
            },
        };
        let value = section_yaml(child, Some(&text));
        let value = match step {
            Step::Into => value,
            Step::Item => format!("[{value}]"),
            Step::Entry => format!("{{c: {value}}}"),
        };
        text = format!("{}: {value}", key.name);
    }
    format!("{{{text}}}")
}

/// The keys the parser expects where `path` leads.
fn parser_keys(path: &Trail) -> BTreeSet<String> {
    let yaml = nest(path, &format!("{PROBE_KEY}: 1"));
    let message = refusal(&yaml).unwrap_or_else(|| panic!("{yaml} was accepted"));
    let unknown = format!("unknown field `{PROBE_KEY}`, expected ");
    let list = message
        .split_once(&unknown)
        .unwrap_or_else(|| panic!("{yaml}: {message}"))
        .1
        .lines()
        .next()
        .unwrap_or_default();
    let list = list.strip_prefix("one of ").unwrap_or(list);
    list.split(", ")
        .flat_map(|part| part.split(" or "))
        .map(|key| key.trim().trim_matches('`').to_owned())
        .filter(|key| !key.is_empty())
        .collect()
}

/// Every section of the reference with the path to it, from the top.
fn walk() -> Vec<(Trail, &'static Section)> {
    fn visit(
        path: &mut Trail,
        section: &'static Section,
        out: &mut Vec<(Trail, &'static Section)>,
    ) {
        out.push((path.clone(), section));
        for key in section.all_keys() {
            let (child, step) = match key.ty {
                Ty::Section(s) => (s, Step::Into),
                Ty::List(s) => (s, Step::Item),
                Ty::Map(s) => (s, Step::Entry),
                _ => continue,
            };
            path.push((section, key, step));
            visit(path, child, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    visit(&mut Vec::new(), &ROOT, &mut out);
    out
}

fn dotted(path: &Trail, key: &str) -> String {
    path.iter()
        .map(|(_, k, _)| k.name)
        .chain([key])
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
fn reference_lists_exactly_the_keys_the_parser_takes_in_every_section() {
    let sections = walk();
    // The walk must reach the deepest sections, or it proves little.
    let reached: BTreeSet<String> = sections
        .iter()
        .map(|(path, s)| dotted(path, s.id))
        .collect();
    for deep in [
        "agents.http.tls.tls",
        "discovery.http_sd.http.basic_auth.basic_auth",
    ] {
        assert!(reached.contains(deep), "{deep} not reached: {reached:?}");
    }
    let mut drift = Vec::new();
    for (path, section) in &sections {
        let documented: BTreeSet<String> = section.all_keys().map(|k| k.name.to_owned()).collect();
        let parsed = parser_keys(path);
        for missing in parsed.difference(&documented) {
            drift.push(format!(
                "the parser takes {} but the reference lacks it",
                dotted(path, missing)
            ));
        }
        for extra in documented.difference(&parsed) {
            drift.push(format!(
                "the reference lists {} but the parser refuses it",
                dotted(path, extra)
            ));
        }
    }
    assert!(drift.is_empty(), "{drift:#?}");
}

#[test]
fn every_key_takes_a_value_of_its_documented_type() {
    let mut refused = Vec::new();
    for (path, section) in walk() {
        for key in section.all_keys() {
            let yaml = nest(&path, &format!("{}: {}", key.name, sample(key.ty)));
            if let Some(e) = refusal(&yaml) {
                refused.push(format!("{}: {yaml}: {e}", dotted(&path, key.name)));
            }
            // The schema takes YAML numbers and booleans as text where the parser does.
            if let Ty::Text | Ty::File | Ty::SecretFile = key.ty {
                for scalar in ["7", "true"] {
                    let yaml = nest(&path, &format!("{}: {scalar}", key.name));
                    if let Some(e) = refusal(&yaml) {
                        refused.push(format!("{}: {yaml}: {e}", dotted(&path, key.name)));
                    }
                }
            }
        }
    }
    assert!(refused.is_empty(), "{refused:#?}");
}

#[test]
fn empty_keys_are_accepted_exactly_where_the_reference_says() {
    let mut wrong = Vec::new();
    for (path, section) in walk() {
        // A required key's emptiness is refused with its other faults (resolve.rs).
        for key in section.all_keys().filter(|k| !k.required) {
            let yaml = nest(&path, &format!("{}: ~", key.name));
            let accepted = refusal(&yaml).is_none();
            if accepted != key.nullable {
                wrong.push(format!(
                    "{}: the parser {} it empty",
                    dotted(&path, key.name),
                    if accepted { "accepts" } else { "refuses" }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The effective settings of the one agent of `yaml`.
fn effective_of(yaml: &str, dir: &Path) -> Value {
    let config = super::super::parse(yaml, "t.yaml", dir).unwrap_or_else(|e| panic!("{e}"));
    let agent = &config.agents[0];
    super::super::effective(&agent.spec, agent.check.as_deref(), None)
}

#[test]
fn reference_defaults_are_what_an_agent_gets_without_the_key() {
    let dir = std::env::temp_dir();
    let agents = [
        (
            "",
            effective_of(
                "agents: [{name: a, type: t, url: \"https://127.0.0.1:1/\", \
                 canary: {openai: {model: m, prompt: p}}}]",
                &dir,
            ),
        ),
        (
            "grpc",
            effective_of(
                "agents: [{name: a, type: t, url: \"grpcs://127.0.0.1:1\"}]",
                &dir,
            ),
        ),
    ];
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (path, section) in walk() {
        // Agent keys only; discovery's defaults are checked below.
        if path.first().is_some_and(|(_, k, _)| k.name != "agents") || path.is_empty() {
            continue;
        }
        for key in section.all_keys() {
            let Some(default) = key.default.json() else {
                continue;
            };
            let steps: Vec<&str> = path[1..]
                .iter()
                .map(|(_, k, _)| k.name)
                .chain([key.name])
                .collect();
            let agent = if steps[0] == "grpc" {
                &agents[1].1
            } else {
                &agents[0].1
            };
            let shown = steps.iter().try_fold(agent, |v, step| v.get(step));
            let matches = match shown {
                Some(Value::Array(items)) => items.len() == 1 && items[0] == default,
                Some(v) => *v == default,
                None => false,
            };
            checked += 1;
            if !matches {
                wrong.push(format!(
                    "{}: reference {default}, agent {shown:?}",
                    steps.join(".")
                ));
            }
        }
    }
    assert!(checked >= 10, "only {checked} defaults checked");
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The default the reference gives `key` of `section`.
fn default_of(section: &Section, key: &str) -> Def {
    section
        .all_keys()
        .find(|k| k.name == key)
        .unwrap_or_else(|| panic!("{} has no key {key}", section.id))
        .default
}

#[test]
fn reference_defaults_are_what_a_discovery_source_gets_without_the_key() {
    use super::super::SourceKind;
    use super::{DNS_SD, FILE_SD, HTTP_SD, SD_HTTP, SOURCE};
    let yaml = "discovery:\n  - file_sd: {files: [a.json]}\n  - http_sd: {url: \"http://127.0.0.1:1/sd\"}\n  - dns_sd: {names: [a.test]}\n";
    let config =
        super::super::parse(yaml, "t.yaml", Path::new("/")).unwrap_or_else(|e| panic!("{e}"));
    let duration = |d: Def| match d {
        Def::Duration(d) => d,
        other => panic!("not a duration: {other:?}"),
    };
    let [file, http, dns] = &config.discovery[..] else {
        panic!("three sources");
    };
    assert_eq!(
        file.refresh_interval,
        duration(default_of(&FILE_SD, "refresh_interval"))
    );
    assert_eq!(
        http.refresh_interval,
        duration(default_of(&HTTP_SD, "refresh_interval"))
    );
    assert_eq!(
        dns.refresh_interval,
        duration(default_of(&DNS_SD, "refresh_interval"))
    );
    let Def::Integer(max) = default_of(&SOURCE, "max_targets") else {
        panic!("max_targets has a number as default");
    };
    assert_eq!(file.max_targets as u64, max);
    let SourceKind::Http {
        http: spec,
        timeout,
        max_bytes,
        ..
    } = &http.kind
    else {
        panic!("http_sd");
    };
    assert_eq!(*timeout, duration(default_of(&HTTP_SD, "timeout")));
    let Def::Bytes(bytes) = default_of(&HTTP_SD, "max_response_bytes") else {
        panic!("a size");
    };
    assert_eq!(*max_bytes, bytes);
    assert_eq!(
        Some(Value::from(spec.method.as_str())),
        default_of(&SD_HTTP, "method").json()
    );
    assert_eq!(
        Some(Value::from(spec.follow_redirects)),
        default_of(&SD_HTTP, "follow_redirects").json()
    );
    let SourceKind::Dns { record, .. } = &dns.kind else {
        panic!("dns_sd");
    };
    assert_eq!(
        Some(Value::from(format!("{record:?}").to_uppercase())),
        default_of(&DNS_SD, "record_type").json()
    );
}

/// The number before ` % ` in `text` (a default the reference states as a rule).
fn percent_in(text: &str) -> f64 {
    let before = text
        .split(" % ")
        .next()
        .filter(|b| b.len() < text.len())
        .unwrap_or_else(|| panic!("no percentage in {text:?}"));
    let number: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    number
        .parse()
        .unwrap_or_else(|_| panic!("no number before % in {text:?}"))
}

#[test]
fn short_interval_gets_the_share_of_its_interval_the_reference_states() {
    let timeout = super::CHECK_KEYS
        .iter()
        .find(|k| k.name == "timeout")
        .expect("timeout key");
    let share = percent_in(timeout.doc) / 100.0;
    let dir = std::env::temp_dir();
    for interval in [2u64, 5] {
        let agent = effective_of(
            &format!("agents: [{{name: a, type: t, url: \"http://127.0.0.1:1/\", interval: {interval}s}}]"),
            &dir,
        );
        let expected = std::time::Duration::from_secs(interval).mul_f64(share);
        assert_eq!(
            agent["timeout"],
            humantime::format_duration(expected).to_string(),
            "interval {interval}s: the reference says {:?}",
            timeout.doc
        );
    }
}

#[test]
fn heartbeat_grace_default_is_the_rule_the_reference_states() {
    use super::HEARTBEAT;
    let Def::Rule(rule) = default_of(&HEARTBEAT, "grace") else {
        panic!("grace's default is a rule");
    };
    let share = percent_in(rule) / 100.0;
    let least = rule
        .split("at least ")
        .nth(1)
        .and_then(|d| humantime::parse_duration(d.trim()).ok())
        .unwrap_or_else(|| panic!("no least grace in {rule:?}"));
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("hb"), "token\n").expect("writable");
    for period in ["1m", "2s"] {
        let agent = effective_of(
            &format!(
                "agents: [{{name: a, type: t, heartbeat: {{period: {period}, token_file: hb}}}}]"
            ),
            dir.path(),
        );
        let period = humantime::parse_duration(period).expect("a duration");
        let expected = period.mul_f64(share).max(least);
        assert_eq!(
            agent["heartbeat"]["grace"],
            humantime::format_duration(expected).to_string(),
            "period {period:?}: the reference says {rule:?}"
        );
    }
}

#[test]
fn relabel_rule_without_action_acts_as_the_documented_default() {
    use super::RELABEL;
    use crate::relabel::{RawRelabel, Rule};
    let Def::Text(action) = default_of(&RELABEL, "action") else {
        panic!("action's default is a word");
    };
    let raw = RawRelabel {
        source_labels: Some(vec!["zone".into()]),
        target_label: Some("region".into()),
        ..RawRelabel::default()
    };
    let implicit = Rule::compile(&raw).expect("a rule");
    let explicit = Rule::compile(&RawRelabel {
        action: Some(action.into()),
        ..raw
    })
    .expect("a rule");
    assert_eq!(format!("{implicit:?}"), format!("{explicit:?}"));
}

#[test]
fn reference_names_every_header_whose_value_the_effective_config_shows() {
    use super::HTTP;
    let headers = HTTP
        .all_keys()
        .find(|k| k.name == "headers")
        .expect("headers key");
    let api = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md"))
        .expect("docs/api.md");
    for name in super::super::PLAIN_HEADERS {
        assert!(
            headers.doc.contains(name),
            "http.headers does not name {name}"
        );
        assert!(api.contains(name), "docs/api.md does not name {name}");
    }
}
