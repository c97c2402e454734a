//! `--config.schema`: the JSON Schema (draft 2020-12) of the config file, rendered from the key
//! table, for editors (YAML language server) and validators. It accepts what the parser
//! accepts (YAML scalars taken as text where the parser takes them so, numbers and booleans
//! written as text where it reads them, nulls where a key may be left empty) and refuses
//! unknown keys, as the parser does.

use serde_json::{json, Map, Value};

use super::{sections, Key, Section, Ty, ROOT};

/// A duration as humantime reads it: terms such as `1m`, `30s`, `1.5h`, spaces allowed.
const DURATION: &str = "^\\s*([0-9]+(\\.[0-9]+)?\\s*(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)\\s*)+$";
/// A size as `parse_size` reads it: `1024`, `64KiB`, `1 MB`, `2m`; units in any case.
const SIZE: &str = "^\\s*[0-9]+\\s*([bB]|[kKmMgG]([iI]?[bB])?)?\\s*$";
/// A positive size: some digit other than 0.
const POSITIVE_SIZE: &str = "^\\s*[0-9]*[1-9][0-9]*\\s*([bB]|[kKmMgG]([iI]?[bB])?)?\\s*$";
/// An unsigned integer written as text, as the YAML parser reads one into a number: padded by
/// blanks, an optional `+`, decimal without a leading zero, or `0x`, `0o`, `0b` digits, with
/// single `_` between digits.
const INTEGER: &str = "^[ \\t\\r\\n]*\\+?([1-9](_?[0-9])*|0|0[xX][0-9a-fA-F](_?[0-9a-fA-F])*|0[oO][0-7](_?[0-7])*|0[bB][01](_?[01])*)[ \\t\\r\\n]*$";
/// Zero written as text, in any of the spellings of `INTEGER`.
const ZERO: &str = "^[ \\t\\r\\n]*\\+?(0|0[xXoObB]0(_?0)*)[ \\t\\r\\n]*$";
/// A boolean written as text, as the YAML parser reads one: YAML 1.1's words in any case
/// (`true`, `yes`, `y`, `on` and `false`, `no`, `n`, `off`), padded by blanks.
const BOOLEAN: &str = "^[ \\t\\r\\n]*([tT][rR][uU][eE]|[yY]([eE][sS])?|[oO][nN]|[fF][aA][lL][sS][eE]|[nN][oO]?|[oO][fF][fF])[ \\t\\r\\n]*$";

/// An HTTP status code or class as `parse_status` reads it.
const STATUS: &str = "^\\s*([1-5][0-9][0-9]|[1-5][xX][xX])\\s*$";

/// The schema as a JSON value.
pub fn schema() -> Value {
    let mut defs = Map::new();
    for section in sections() {
        if section.id != ROOT.id {
            defs.insert(section.id.to_owned(), Value::Object(object(section)));
        }
    }
    let mut root = object(&ROOT);
    // An empty file is a valid config; YAML reads it as null.
    root.insert("type".into(), json!(["object", "null"]));
    let mut out = Map::new();
    out.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    out.insert("title".into(), json!("agent-health-exporter configuration"));
    out.insert(
        "description".into(),
        json!(
            "As the exporter's parser reads it: numbers may be written as text (\"3\", \"0x10\"), \
             booleans as YAML 1.1 words in any case (yes/no, on/off, y/n, true/false), quoted or not."
        ),
    );
    out.extend(root);
    out.insert("$defs".into(), Value::Object(defs));
    Value::Object(out)
}

/// A section as a closed object.
fn object(section: &Section) -> Map<String, Value> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for key in section.all_keys() {
        properties.insert(key.name.to_owned(), property(key));
        if key.required {
            required.push(key.name);
        }
    }
    let mut out = Map::new();
    out.insert("type".into(), json!("object"));
    out.insert("description".into(), json!(section.doc));
    out.insert("additionalProperties".into(), json!(false));
    out.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        out.insert("required".into(), json!(required));
    }
    out.extend(rules(section));
    out
}

/// What the parser checks across the keys of a section, beyond each key's own type.
fn rules(section: &Section) -> Map<String, Value> {
    let mut out = Map::new();
    match section.id {
        // discovery.rs: "a discovery entry needs exactly one of file_sd, http_sd, dns_sd".
        "source" => {
            let one = |name: &str| json!({"required": [name]});
            out.insert(
                "oneOf".into(),
                json!([one("file_sd"), one("http_sd"), one("dns_sd")]),
            );
        }
        // relabel.rs: "hashmod requires a non-zero modulus"; other actions ignore it.
        "relabel" => {
            out.insert(
                "if".into(),
                json!({
                    "required": ["action"],
                    "properties": {"action": {"type": "string", "pattern": "^[hH][aA][sS][hH][mM][oO][dD]$"}}
                }),
            );
            out.insert(
                "then".into(),
                json!({
                    "required": ["modulus"],
                    "properties": {"modulus": {"not": {"anyOf": [
                        {"const": 0},
                        {"type": "string", "pattern": ZERO}
                    ]}}}
                }),
            );
        }
        _ => {}
    }
    out
}

fn property(key: &Key) -> Value {
    let mut out = match value(key.ty) {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    if key.nullable {
        // `key:` with nothing after it leaves the key unset, as the parser reads it.
        let inner = Value::Object(std::mem::take(&mut out));
        out.insert("anyOf".into(), json!([inner, {"type": "null"}]));
    }
    out.insert("description".into(), json!(key.doc));
    if let Some(default) = key.default.json() {
        out.insert("default".into(), default);
    }
    Value::Object(out)
}

/// Text where the parser reads a string: YAML numbers and booleans are taken as their text.
fn scalar() -> Value {
    json!({"type": ["string", "number", "boolean"]})
}

fn value(ty: Ty) -> Value {
    match ty {
        Ty::Duration => json!({"type": "string", "pattern": DURATION}),
        Ty::Size { positive } => json!({"anyOf": [
            {"type": "integer", "minimum": u8::from(positive)},
            {"type": "string", "pattern": if positive { POSITIVE_SIZE } else { SIZE }}
        ]}),
        Ty::Integer { min, max } => {
            let mut number = json!({"type": "integer", "minimum": min});
            if max != u64::MAX {
                number["maximum"] = json!(max);
            }
            // Text is checked for its spelling; its range only for 0 (a text's value is
            // beyond a pattern, and the parser names the range when it refuses one).
            let mut text = json!({"type": "string", "pattern": INTEGER});
            if min > 0 {
                text["not"] = json!({"pattern": ZERO});
            }
            json!({"anyOf": [number, text]})
        }
        Ty::Bool => json!({"anyOf": [
            {"type": "boolean"},
            {"type": "string", "pattern": BOOLEAN}
        ]}),
        Ty::Text | Ty::File | Ty::SecretFile => scalar(),
        Ty::Enum {
            values,
            any_case,
            trimmed,
        } => json!({"anyOf": [
            {"enum": values},
            {"type": "string", "pattern": word_pattern(values, any_case, trimmed)}
        ]}),
        Ty::TextList => json!({"type": "array", "items": scalar()}),
        Ty::TextMap | Ty::SecretFileMap => {
            json!({"type": "object", "additionalProperties": scalar()})
        }
        Ty::JsonMap | Ty::AnyMap => json!({"type": "object"}),
        Ty::Status => {
            let one = json!({"anyOf": [
                {"type": "integer", "minimum": 100, "maximum": 599},
                {"type": "string", "pattern": STATUS}
            ]});
            json!({"anyOf": [one.clone(), {"type": "array", "items": one}]})
        }
        Ty::Section(s) => reference(s),
        Ty::List(s) => json!({"type": "array", "items": reference(s)}),
        Ty::Map(s) => json!({"type": "object", "additionalProperties": reference(s)}),
    }
}

fn reference(section: &Section) -> Value {
    json!({"$ref": format!("#/$defs/{}", section.id)})
}

/// The words as the parser takes them: in any case where it ignores case, with surrounding
/// space where it trims.
fn word_pattern(values: &[&str], any_case: bool, trimmed: bool) -> String {
    let words: Vec<String> = values
        .iter()
        .map(|w| {
            if !any_case {
                return w.to_string();
            }
            w.chars()
                .map(|c| format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase()))
                .collect()
        })
        .collect();
    let space = if trimmed { "\\s*" } else { "" };
    format!("^{space}({}){space}$", words.join("|"))
}
