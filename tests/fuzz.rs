//! Property tests on stable Rust (proptest), bounded so that they run in seconds: the config
//! and web config parsers on arbitrary and mutated input, and the JSON expectations on
//! arbitrary bodies and pointers. No panic, no hang, and every config error has a place.
//! (The SSE framing is fuzzed beside its code, in `src/server/events.rs`.) Inputs that once
//! failed are kept below as plain regression tests.

use std::path::Path;
use std::time::{Duration, Instant};

use agent_health_exporter::config::{self, AgentSpec, ConfigError, JsonMatch};
use agent_health_exporter::probe::{check_expectations, FailureReason, Outcome};
use agent_health_exporter::server::web_config::{self, WebConfigError};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

fn bounded(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn example() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml"))
        .expect("the example config")
}

/// Parses `text` as a config; an error must name a place (line 1 or more) in the file.
fn parse_config(text: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let start = Instant::now();
    let outcome = config::parse(text, "fuzz.yaml", dir);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "parsing took {:?}",
        start.elapsed()
    );
    match outcome {
        Ok(_) => {}
        Err(ConfigError::Invalid(issues)) => {
            assert!(!issues.is_empty());
            for issue in issues {
                assert!(
                    issue.line >= 1,
                    "an error without a place: {issue} in {text:?}"
                );
                assert!(!issue.message.is_empty());
            }
        }
        Err(other) => panic!("parse never reads the config file itself: {other}"),
    }
}

fn parse_web_config(text: &str) {
    match web_config::parse(text, "web.yml", Path::new("/nonexistent")) {
        Ok(_) => {}
        Err(WebConfigError::Invalid(issues)) => {
            for issue in issues {
                assert!(
                    issue.line >= 1,
                    "an error without a place: {issue} in {text:?}"
                );
            }
        }
        Err(other) => panic!("parse never reads the web config file itself: {other}"),
    }
}

/// One edit of a text that was valid: what a typo, a bad paste or a cut file does.
#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let snippet = prop_oneof![
        Just(": ".to_owned()),
        Just("\n  - ".to_owned()),
        Just("{".to_owned()),
        Just("]".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("<<: *a\n".to_owned()),
        Just("!!binary ".to_owned()),
        Just("\t".to_owned()),
        Just("'".to_owned()),
        Just("\"\\u".to_owned()),
        Just("0s".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("-1".to_owned()),
        "\\PC{0,12}",
    ];
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), snippet).prop_map(|(at, text)| Mutation::Insert { at, text }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, mutation: &Mutation) -> String {
    match mutation {
        Mutation::Delete { at, len } => {
            let start = boundary(text, *at);
            let end = boundary(text, start + len);
            let end = end.max(start);
            format!("{}{}", &text[..start], &text[end..])
        }
        Mutation::Insert { at, text: snippet } => {
            let at = boundary(text, *at);
            format!("{}{snippet}{}", &text[..at], &text[at..])
        }
        Mutation::DuplicateLine { line } => {
            let mut lines: Vec<&str> = text.lines().collect();
            let i = line % lines.len().max(1);
            if let Some(l) = lines.get(i).copied() {
                lines.insert(i, l);
            }
            lines.join("\n")
        }
        Mutation::SwapLines { a, b } => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let n = lines.len();
                lines.swap(a % n, b % n);
            }
            lines.join("\n")
        }
        Mutation::Truncate { at } => text[..boundary(text, *at)].to_owned(),
    }
}

proptest! {
    #![proptest_config(bounded(300))]

    #[test]
    fn config_parser_takes_any_text_without_panicking(text in "\\PC{0,200}|[a-z:\\-\\n {}\\[\\],'\"&*!#|>]{0,200}") {
        parse_config(&text);
    }

    #[test]
    fn config_parser_takes_mutations_of_the_example_without_panicking(
        mutations in proptest::collection::vec(mutation(), 1..4)
    ) {
        let mut text = example();
        for m in &mutations {
            text = apply(&text, m);
        }
        parse_config(&text);
    }

    #[test]
    fn web_config_parser_takes_any_text_without_panicking(
        text in "\\PC{0,200}|(tls_server_config|basic_auth_users|http_server_config|headers|cert_file|:|\\n|  |\\{|\\}|-)*"
    ) {
        parse_web_config(&text);
    }
}

fn spec_with(expect: Vec<JsonMatch>, degraded: Vec<JsonMatch>) -> AgentSpec {
    let config = config::parse(
        "agents:\n  - name: a\n    type: t\n    url: http://127.0.0.1:1/\n",
        "t.yaml",
        Path::new("."),
    )
    .expect("valid");
    let mut spec = (*config.agents[0].spec).clone();
    spec.expect.json = expect;
    spec.degraded.json = degraded;
    spec
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z~/]{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// RFC 6901 pointers, well- and ill-formed (`~2`, a lone `~`).
fn pointer() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9~/]{0,4}|~0|~1|~|~2|-|[0-9]{1,3}", 0..5)
        .prop_map(|parts| parts.iter().map(|p| format!("/{p}")).collect())
}

/// Every pointer that leads to a value in `value`, with that value.
fn pointers_into(value: &Value, at: String, out: &mut Vec<(String, Value)>) {
    out.push((at.clone(), value.clone()));
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers_into(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers_into(item, format!("{at}/{escaped}"), out);
            }
        }
        _ => {}
    }
}

fn error_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed { error, .. } => error.clone(),
        Outcome::Degraded(why) => why.clone(),
        Outcome::Healthy => String::new(),
    }
}

proptest! {
    #![proptest_config(bounded(300))]

    #[test]
    fn json_expectations_take_any_body_and_pointer_and_quote_little(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        pointer in pointer(),
        expected in json_value(),
    ) {
        let spec = spec_with(
            vec![JsonMatch { pointer: pointer.clone(), value: expected.clone() }],
            vec![JsonMatch { pointer, value: expected }],
        );
        let outcome = check_expectations(&spec, 200, &body, Duration::from_millis(1));
        prop_assert!(error_text(&outcome).len() < 1024, "{outcome:?}");
    }

    #[test]
    fn a_pointer_into_the_body_finds_the_value_it_points_at(
        body in json_value(),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut targets = Vec::new();
        pointers_into(&body, String::new(), &mut targets);
        let (pointer, value) = targets[pick.index(targets.len())].clone();
        if pointer.is_empty() {
            // The whole document: not a pointer the config accepts.
            return Ok(());
        }
        let text = serde_json::to_vec(&body).unwrap();
        let spec = spec_with(vec![JsonMatch { pointer: pointer.clone(), value: value.clone() }], vec![]);
        let outcome = check_expectations(&spec, 200, &text, Duration::from_millis(1));
        prop_assert_eq!(&outcome, &Outcome::Healthy, "{} should find {}", pointer, value);
        let spec = spec_with(vec![JsonMatch { pointer, value: serde_json::json!({"surely": "different"}) }], vec![]);
        let outcome = check_expectations(&spec, 200, &text, Duration::from_millis(1));
        let is_mismatch = matches!(outcome, Outcome::Failed { reason: FailureReason::BodyMismatch, .. });
        prop_assert!(is_mismatch);
    }
}

#[test]
fn empty_and_whitespace_configs_are_valid_and_empty() {
    for text in ["", "\n", "   \n\t\n"] {
        let config = config::parse(text, "fuzz.yaml", Path::new("."))
            .unwrap_or_else(|e| panic!("{text:?} was refused: {e}"));
        assert!(config.agents.is_empty(), "{text:?}");
    }
}

#[test]
fn deeply_nested_yaml_is_refused_without_a_stack_overflow() {
    // A flow sequence nested 10,000 deep: a recursive parser without a depth bound overflows.
    let text = format!("agents: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    parse_config(&text);
    assert!(
        matches!(
            config::parse(&text, "fuzz.yaml", Path::new(".")),
            Err(ConfigError::Invalid(_))
        ),
        "nested sequences are not agents"
    );
    let text = format!(
        "basic_auth_users: {}{}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    parse_web_config(&text);
    assert!(
        matches!(
            web_config::parse(&text, "web.yml", Path::new("/nonexistent")),
            Err(WebConfigError::Invalid(_))
        ),
        "nested sequences are not users"
    );
}

#[test]
fn alias_bomb_is_parsed_quickly_or_refused() {
    // The "billion laughs": each level doubles the previous nine times.
    let mut text = String::from("defaults:\n  labels: &a0 {x: y}\nq:\n");
    for i in 1..12 {
        let refs = (0..9)
            .map(|_| format!("*a{}", i - 1))
            .collect::<Vec<_>>()
            .join(", ");
        text.push_str(&format!("  - &a{i} [{refs}]\n"));
    }
    parse_config(&text);
}

#[test]
fn a_float_in_the_body_equals_the_same_float_in_the_config() {
    // Found by the property above: without correctly rounded float parsing, the body's
    // -7.485928525756312e+146 was read as ...311e+146 and a right answer failed its check.
    let value = serde_json::json!(-7.485928525756312e+146);
    let spec = spec_with(
        vec![JsonMatch {
            pointer: "/0".into(),
            value: value.clone(),
        }],
        vec![],
    );
    let body = serde_json::to_vec(&serde_json::json!([value, null])).unwrap();
    let outcome = check_expectations(&spec, 200, &body, Duration::from_millis(1));
    assert_eq!(outcome, Outcome::Healthy);
}
