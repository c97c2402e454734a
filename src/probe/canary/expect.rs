//! Judges a canary's reply against its `expect`: degenerate output first (chat completions
//! only), then latency, text and JSON. Pure functions, unit-tested here.

use std::time::Duration;

use serde_json::Value;

use super::{CanaryReason, Reply};
use crate::config::CanaryExpect;
use crate::probe::agent_text;

/// Longest reply excerpt kept for the API, in characters.
pub const REPLY_EXCERPT_CHARS: usize = 256;
/// Longest piece of a value quoted in a failure message.
const QUOTED_CHARS: usize = 64;

/// Ok when the reply shows everything `expect` asks; else the reason and what was missing.
pub(super) fn judge(
    expect: &CanaryExpect,
    reply: &Reply,
    duration: Duration,
    degenerate_check: bool,
) -> Result<(), (CanaryReason, String)> {
    let mismatch = |error: String| (CanaryReason::ContentMismatch, error);
    if degenerate_check {
        if let Some(why) = degenerate(&reply.text) {
            return Err(mismatch(why));
        }
    }
    if let Some(max) = expect.max_latency {
        if duration > max {
            return Err((
                CanaryReason::Timeout,
                format!(
                    "the task took {:.3}s, more than max_latency {}",
                    duration.as_secs_f64(),
                    humantime::format_duration(max)
                ),
            ));
        }
    }
    if let Some(needle) = &expect.contains {
        if !reply.text.contains(needle.as_str()) {
            return Err(mismatch(format!(
                "the reply does not contain {:?}",
                quoted(needle)
            )));
        }
    }
    if let Some(pattern) = &expect.regex {
        if !pattern.is_match(&reply.text) {
            return Err(mismatch(format!(
                "the reply does not match /{}/",
                quoted(pattern.as_str())
            )));
        }
    }
    if !expect.json.is_empty() {
        let parsed;
        let document = match &reply.json {
            Some(json) => json,
            None => {
                parsed = serde_json::from_str::<Value>(reply.text.trim())
                    .map_err(|e| mismatch(format!("the reply is not JSON ({e})")))?;
                &parsed
            }
        };
        for m in &expect.json {
            match document.pointer(&m.pointer) {
                Some(found) if *found == m.value => {}
                // The value found is the agent's: named by its type only, never quoted.
                Some(found) => {
                    return Err(mismatch(format!(
                        "JSON at {} is not the expected value (found {})",
                        m.pointer,
                        json_type(found)
                    )))
                }
                None => return Err(mismatch(format!("JSON at {} is missing", m.pointer))),
            }
        }
    }
    Ok(())
}

/// How often one letter or digit must repeat, alone, for a reply to be degenerate: "11" and
/// "22" are real answers, "aaaaaaaa" is a model stuck on one token.
const REPEATED_ALPHANUMERIC: usize = 8;

/// Why `text` is no answer at all: empty, only whitespace, one punctuation or symbol character
/// repeated (a model that emits `////` or `....` is broken, however healthy its server says it
/// is), or one letter or digit repeated `REPEATED_ALPHANUMERIC` times or more. Whitespace
/// between the characters does not count. A single character is a real answer ("4"). The
/// message never quotes the reply: it goes to the info log and to every event subscriber.
pub fn degenerate(text: &str) -> Option<String> {
    let mut visible = text.chars().filter(|c| !c.is_whitespace());
    let Some(first) = visible.next() else {
        return Some(if text.is_empty() {
            "the reply is empty".to_owned()
        } else {
            "the reply is only whitespace".to_owned()
        });
    };
    let mut count = 1usize;
    for c in visible {
        if c != first {
            return None;
        }
        count += 1;
    }
    if first.is_alphanumeric() {
        (count >= REPEATED_ALPHANUMERIC)
            .then(|| format!("the reply is one letter or digit repeated {count} times"))
    } else {
        (count >= 2).then(|| format!("the reply is one symbol repeated {count} times"))
    }
}

/// The start of a reply as the API shows it: at most `REPLY_EXCERPT_CHARS` characters, line
/// breaks and tabs turned into spaces, other control and invisible format characters removed.
pub fn reply_excerpt(text: &str) -> String {
    agent_text::clean(text, REPLY_EXCERPT_CHARS)
}

/// The JSON type of `value`, to say what was found without quoting it.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A piece of the canary's own configuration (never the reply), bounded for a message.
fn quoted(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(QUOTED_CHARS)
        .collect();
    if text.chars().count() > QUOTED_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JsonMatch;

    fn reply(text: &str) -> Reply {
        Reply {
            text: text.to_owned(),
            ..Reply::default()
        }
    }

    fn verdict(expect: &CanaryExpect, text: &str) -> Result<(), (CanaryReason, String)> {
        judge(expect, &reply(text), Duration::from_millis(10), true)
    }

    #[test]
    fn empty_whitespace_and_one_repeated_character_are_degenerate() {
        assert_eq!(degenerate("").as_deref(), Some("the reply is empty"));
        assert_eq!(
            degenerate(" \n\t").as_deref(),
            Some("the reply is only whitespace")
        );
        assert!(degenerate("////").is_some());
        assert!(degenerate("....").is_some());
        assert!(degenerate("! ! ! !").is_some());
        assert!(degenerate("aaaaaaaa").is_some());
        assert!(degenerate("1111 1111 1").is_some());
        assert_eq!(degenerate("4"), None, "one character is an answer");
        assert_eq!(degenerate("/"), None, "one character is an answer");
        assert_eq!(
            degenerate("11"),
            None,
            "a short repeated number is an answer"
        );
        assert_eq!(degenerate("22"), None);
        assert_eq!(degenerate("1111111"), None, "seven digits can be an answer");
        assert_eq!(degenerate("pong"), None);
        assert_eq!(degenerate("aab"), None);
    }

    #[test]
    fn degenerate_output_is_a_content_mismatch_only_where_checked() {
        let none = CanaryExpect::default();
        let (reason, _) = verdict(&none, "////").unwrap_err();
        assert_eq!(reason, CanaryReason::ContentMismatch);
        assert!(judge(&none, &reply(""), Duration::ZERO, false).is_ok());
    }

    #[test]
    fn contains_and_regex_must_both_hold() {
        let expect = CanaryExpect {
            contains: Some("4".into()),
            regex: Some(regex::Regex::new("(?i)^the answer").unwrap().into()),
            ..CanaryExpect::default()
        };
        assert!(verdict(&expect, "The answer is 4").is_ok());
        let (reason, error) = verdict(&expect, "The answer is five").unwrap_err();
        assert_eq!(reason, CanaryReason::ContentMismatch);
        assert!(error.contains("does not contain \"4\""), "{error}");
        let (_, error) = verdict(&expect, "It is 4").unwrap_err();
        assert!(error.contains("does not match"), "{error}");
    }

    #[test]
    fn json_pointers_read_the_structured_answer_or_the_text_as_json() {
        let expect = CanaryExpect {
            json: vec![JsonMatch {
                pointer: "/sum".into(),
                value: serde_json::json!(4),
            }],
            ..CanaryExpect::default()
        };
        assert!(verdict(&expect, " {\"sum\": 4} ").is_ok());
        let structured = Reply {
            text: "four".into(),
            json: Some(serde_json::json!({"sum": 4})),
            ..Reply::default()
        };
        assert!(judge(&expect, &structured, Duration::ZERO, false).is_ok());
        let (_, error) = verdict(&expect, "{\"sum\": 5}").unwrap_err();
        assert!(
            error.contains("JSON at /sum is not the expected value"),
            "{error}"
        );
        let (_, error) = verdict(&expect, "{}").unwrap_err();
        assert!(error.contains("JSON at /sum is missing"), "{error}");
        let (_, error) = verdict(&expect, "sum=4").unwrap_err();
        assert!(error.contains("not JSON"), "{error}");
    }

    #[test]
    fn failure_messages_never_quote_the_reply() {
        let expect = CanaryExpect {
            json: vec![JsonMatch {
                pointer: "/a".into(),
                value: serde_json::json!("expected"),
            }],
            ..CanaryExpect::default()
        };
        let (_, error) = verdict(&expect, r#"{"a": "secret-reply-value"}"#).unwrap_err();
        assert!(!error.contains("secret-reply-value"), "{error}");
        assert_eq!(
            error,
            "JSON at /a is not the expected value (found a string)"
        );
        let (_, error) = verdict(&CanaryExpect::default(), "%%%%").unwrap_err();
        assert!(!error.contains('%'), "{error}");
        let (_, error) = verdict(&CanaryExpect::default(), "zzzzzzzzz").unwrap_err();
        assert!(!error.contains('z'), "{error}");
    }

    #[test]
    fn a_reply_slower_than_max_latency_fails_as_timeout() {
        let expect = CanaryExpect {
            max_latency: Some(Duration::from_millis(100)),
            ..CanaryExpect::default()
        };
        let slow = judge(&expect, &reply("ok"), Duration::from_millis(150), true);
        assert_eq!(slow.unwrap_err().0, CanaryReason::Timeout);
        assert!(judge(&expect, &reply("ok"), Duration::from_millis(50), true).is_ok());
    }

    #[test]
    fn excerpt_is_bounded_and_free_of_control_characters() {
        assert_eq!(reply_excerpt("a\nb\u{1b}[31mc\0"), "a b[31mc");
        assert_eq!(
            reply_excerpt("ok\u{202E}\u{2066}\u{200B}\u{2028}\u{FEFF}!"),
            "ok!",
            "bidi, zero-width, separator and byte-order marks are dropped"
        );
        let long = "é".repeat(1000);
        assert_eq!(reply_excerpt(&long).chars().count(), REPLY_EXCERPT_CHARS);
    }
}
