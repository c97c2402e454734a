//! Every key of the config file, described once: its type, default, where it may be written and
//! how it merges. `--config.schema` (schema.rs) and docs/configuration.md (markdown.rs) are both
//! rendered from this table, and tests hold it equal to the parser's own key lists (tests.rs),
//! so the reference cannot drift from what the parser accepts. A new section is one `Section`
//! here and one `Key` naming it (e.g. `canary`: add `Key` `canary` to `CHECK_KEYS` with
//! `Ty::Section(&CANARY)` and `CANARY`'s keys).

mod markdown;
mod schema;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use markdown::markdown;
pub use schema::schema;

use super::canary::{
    DEFAULT_CANARY_INTERVAL, DEFAULT_CANARY_TIMEOUT, DEFAULT_CHAT_PATH, DEFAULT_MAX_TOKENS,
};
use super::discovery::{
    DEFAULT_DNS_REFRESH, DEFAULT_FILE_REFRESH, DEFAULT_HTTP_REFRESH, DEFAULT_MAX_TARGETS,
    DEFAULT_SD_MAX_BYTES, DEFAULT_SD_TIMEOUT,
};
use super::http::DEFAULT_MAX_BODY_BYTES;
use super::resolve::{DEFAULT_INTERVAL, DEFAULT_TIMEOUT};
use crate::relabel::{DEFAULT_ACTION, DEFAULT_REGEX, DEFAULT_REPLACEMENT, DEFAULT_SEPARATOR};

/// Where a key may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `defaults:`
    Defaults,
    /// An entry of `checks:`
    Check,
    /// An entry of `agents:`
    Agent,
    /// An entry of `discovery:`
    Source,
}

impl Place {
    pub fn name(self) -> &'static str {
        match self {
            Place::Defaults => "defaults",
            Place::Check => "check",
            Place::Agent => "agent",
            Place::Source => "discovery source",
        }
    }
}

/// How a key written in several layers (agent over check over defaults) combines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The upper layer's value replaces the lower's.
    Replace,
    /// A map: entries merge name by name, the upper layer's entry winning.
    ByKey,
    /// A section: its keys merge one by one, each by its own rule.
    Keys,
    /// A group replaced as a whole (credentials, a TLS setup).
    Whole,
    /// Written in one place only: no layering.
    Single,
}

impl Merge {
    pub fn text(self) -> &'static str {
        match self {
            Merge::Replace => "replace",
            Merge::ByKey => "merge by key",
            Merge::Keys => "per key",
            Merge::Whole => "replace as a whole",
            Merge::Single => "-",
        }
    }
}

/// What a key holds.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// A duration with a unit: `30s`, `1m30s`, `500ms` (humantime).
    Duration,
    /// A byte count or a size such as `64KiB`, `1MiB`, `2MB`; `positive` when the parser
    /// refuses 0.
    Size {
        positive: bool,
    },
    /// A whole number in a range.
    Integer {
        min: u64,
        max: u64,
    },
    Bool,
    /// Free text; YAML numbers and booleans are taken as their text.
    Text,
    /// A file name; relative ones start at the config file's folder.
    File,
    /// A file whose contents are a secret: never printed.
    SecretFile,
    /// One of a few words; `any_case` when the parser ignores case.
    Enum {
        values: &'static [&'static str],
        any_case: bool,
        trimmed: bool,
    },
    /// A list of texts.
    TextList,
    /// A map of names to texts.
    TextMap,
    /// A map of names to files holding secret values.
    SecretFileMap,
    /// A map of JSON Pointers to any JSON value.
    JsonMap,
    /// A map of names to any values.
    AnyMap,
    /// One status (`200`, `"2xx"`) or a list of them.
    Status,
    /// A nested section.
    Section(&'static Section),
    /// A list of sections.
    List(&'static Section),
    /// A map of names to sections.
    Map(&'static Section),
}

impl Ty {
    /// How the type reads in the reference.
    pub fn text(self) -> String {
        match self {
            Ty::Duration => "duration".into(),
            Ty::Size { positive: false } => "size".into(),
            Ty::Size { positive: true } => "size > 0".into(),
            Ty::Integer { min, max } if max == u64::MAX => format!("integer ≥ {min}"),
            Ty::Integer { min, max } => format!("integer {min}-{max}"),
            Ty::Bool => "boolean".into(),
            Ty::Text => "string".into(),
            Ty::File => "file".into(),
            Ty::SecretFile => "secret file".into(),
            Ty::Enum { values, .. } => values.join(" \\| "),
            Ty::TextList => "list of strings".into(),
            Ty::TextMap => "map of strings".into(),
            Ty::SecretFileMap => "map of secret files".into(),
            Ty::JsonMap => "map of JSON Pointer to value".into(),
            Ty::AnyMap => "map of any values".into(),
            Ty::Status => "status or list of statuses".into(),
            Ty::Section(s) => format!("[section](#{})", s.anchor()),
            Ty::List(s) => format!("list of [{}](#{})", s.title, s.anchor()),
            Ty::Map(s) => format!("map of [{}](#{})", s.title, s.anchor()),
        }
    }
}

/// A default as the code applies it.
#[derive(Debug, Clone, Copy)]
pub enum Def {
    /// Nothing is applied: the key's absence has its own meaning (said in the description).
    None,
    Duration(Duration),
    Bytes(u64),
    Integer(u64),
    Bool(bool),
    Text(&'static str),
    /// A default that depends on other keys, described.
    Rule(&'static str),
}

impl Def {
    /// The default as the reference shows it.
    pub fn text(self) -> String {
        match self {
            Def::None => String::new(),
            Def::Duration(d) => format!("`{}`", humantime::format_duration(d)),
            Def::Bytes(b) => format!("`{b}` ({})", binary_size(b)),
            Def::Integer(n) => format!("`{n}`"),
            Def::Bool(b) => format!("`{b}`"),
            Def::Text("") => "`\"\"`".into(),
            Def::Text(t) => format!("`{t}`"),
            Def::Rule(r) => r.into(),
        }
    }

    /// The default as a JSON value (the schema's `default`, the effective config's value), when
    /// it is one value.
    pub fn json(self) -> Option<serde_json::Value> {
        match self {
            Def::None | Def::Rule(_) => None,
            Def::Duration(d) => Some(humantime::format_duration(d).to_string().into()),
            Def::Bytes(b) | Def::Integer(b) => Some(b.into()),
            Def::Bool(b) => Some(b.into()),
            Def::Text(t) => Some(t.into()),
        }
    }
}

fn binary_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

/// One key of a section.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub ty: Ty,
    pub default: Def,
    /// Where it may be written; empty for keys inside a section, which go where it goes.
    pub places: &'static [Place],
    pub merge: Merge,
    pub required: bool,
    /// Whether `key:` with no value (YAML null) is taken as unset.
    pub nullable: bool,
    pub doc: &'static str,
}

/// A mapping of the config: its keys, in the order the reference lists them.
#[derive(Debug)]
pub struct Section {
    /// The schema's `$defs` name.
    pub id: &'static str,
    /// How the reference titles it, which is also how a user writes its path.
    pub title: &'static str,
    pub doc: &'static str,
    /// Where the section may be written (for the reference's "where allowed").
    pub places: &'static [Place],
    pub keys: &'static [Key],
    /// Keys shared with another section that follow its own (an agent's: those of a check).
    pub inherits: &'static [Key],
    /// Only the keys allowed here (`defaults` takes part of a check's keys).
    pub only: Option<Place>,
}

impl Section {
    /// The markdown anchor of its heading.
    pub fn anchor(&self) -> String {
        self.title
            .chars()
            .filter_map(|c| match c {
                'a'..='z' | '0'..='9' | '_' | '-' => Some(c),
                'A'..='Z' => Some(c.to_ascii_lowercase()),
                ' ' => Some('-'),
                _ => None,
            })
            .collect()
    }

    /// Every key the section takes, in the reference's order.
    pub fn all_keys(&self) -> impl Iterator<Item = &'static Key> + '_ {
        let only = self.only;
        self.keys
            .iter()
            .chain(self.inherits.iter())
            .filter(move |k| match only {
                Some(place) => k.places.contains(&place),
                None => true,
            })
    }
}

const fn key(name: &'static str, ty: Ty, default: Def, doc: &'static str) -> Key {
    Key {
        name,
        ty,
        default,
        places: &[],
        merge: Merge::Replace,
        required: false,
        nullable: true,
        doc,
    }
}

/// A key the parser refuses to find empty (`key:` with no value).
const fn not_null(key: Key) -> Key {
    Key {
        nullable: false,
        ..key
    }
}

const fn required(name: &'static str, ty: Ty, doc: &'static str) -> Key {
    Key {
        required: true,
        nullable: false,
        ..key(name, ty, Def::None, doc)
    }
}

const COUNT: Ty = Ty::Integer {
    min: 1,
    max: u32::MAX as u64,
};
const LAYERS: &[Place] = &[Place::Defaults, Place::Check, Place::Agent];
const CHECK_AND_AGENT: &[Place] = &[Place::Check, Place::Agent];
const AGENT: &[Place] = &[Place::Agent];
const SOURCE_PLACE: &[Place] = &[Place::Source];
/// Sections an agent's `http` shares with an http_sd source's.
const WITH_SOURCE: &[Place] = &[Place::Check, Place::Agent, Place::Source];

const fn layered(key: Key, places: &'static [Place], merge: Merge) -> Key {
    Key {
        places,
        merge,
        ..key
    }
}

/// The whole file.
pub static ROOT: Section = Section {
    id: "config",
    places: &[],
    inherits: &[],
    only: None,
    title: "Top level",
    doc: "Every section is optional; an empty file is a valid config without agents.",
    keys: &[
        not_null(key(
            "defaults",
            Ty::Section(&DEFAULTS),
            Def::None,
            "Settings every agent inherits unless its check or itself sets them.",
        )),
        not_null(key(
            "checks",
            Ty::Map(&CHECK),
            Def::None,
            "Named checks: how agents of a type (or that name one with `check:`) are probed.",
        )),
        not_null(key(
            "agents",
            Ty::List(&AGENT_SECTION),
            Def::None,
            "The fleet.",
        )),
        not_null(key(
            "discovery",
            Ty::List(&SOURCE),
            Def::None,
            "Sources of further agents: file_sd, http_sd, dns_sd.",
        )),
    ],
};

/// The keys of a check, which an agent may also set (over its check's) and `defaults` in part.
pub static CHECK_KEYS: &[Key] = &[
    layered(
        key(
            "interval",
            Ty::Duration,
            Def::Duration(DEFAULT_INTERVAL),
            "Time between two probes (at most 24h). A heartbeat agent's is its `heartbeat.period`.",
        ),
        LAYERS,
        Merge::Replace,
    ),
    layered(
        key(
            "timeout",
            Ty::Duration,
            Def::Duration(DEFAULT_TIMEOUT),
            "Upper bound of one probe; must be shorter than `interval`. Without one, an agent \
             whose interval is 5s or less gets 80 % of its interval. A heartbeat agent's is its \
             `heartbeat.grace`.",
        ),
        LAYERS,
        Merge::Replace,
    ),
    layered(
        key(
            "failure_threshold",
            COUNT,
            Def::Integer(1),
            "Consecutive failed probes before the agent is `unhealthy`.",
        ),
        LAYERS,
        Merge::Replace,
    ),
    layered(
        key(
            "success_threshold",
            COUNT,
            Def::Integer(1),
            "Consecutive successful probes before it is `healthy` again.",
        ),
        LAYERS,
        Merge::Replace,
    ),
    layered(
        key(
            "labels",
            Ty::TextMap,
            Def::None,
            "Extra labels on every series of the agent. Names the exporter sets itself \
             (`agent`, `agent_type`, `status`, `reason`, ...) are refused.",
        ),
        LAYERS,
        Merge::ByKey,
    ),
    layered(
        key(
            "protocol",
            Ty::Enum {
                values: &["http", "mcp", "a2a"],
                any_case: false,
                trimmed: true,
            },
            Def::Text("http"),
            "How an http(s) URL is spoken to; grpc and tcp come from the URL scheme.",
        ),
        CHECK_AND_AGENT,
        Merge::Replace,
    ),
    layered(
        key(
            "http",
            Ty::Section(&HTTP),
            Def::None,
            "Request options of http(s), mcp and a2a agents.",
        ),
        CHECK_AND_AGENT,
        Merge::Keys,
    ),
    layered(
        key(
            "expect",
            Ty::Section(&EXPECT),
            Def::None,
            "What an http(s) answer must show to count as success; all conditions must hold.",
        ),
        CHECK_AND_AGENT,
        Merge::Keys,
    ),
    layered(
        key(
            "degraded",
            Ty::Section(&DEGRADED),
            Def::None,
            "When a successful probe counts as `degraded`; any condition suffices.",
        ),
        CHECK_AND_AGENT,
        Merge::Keys,
    ),
    layered(
        key(
            "heartbeat",
            Ty::Section(&HEARTBEAT),
            Def::None,
            "For an agent that reports in instead of being probed; instead of `url`.",
        ),
        CHECK_AND_AGENT,
        Merge::Keys,
    ),
    layered(
        key(
            "grpc",
            Ty::Section(&GRPC),
            Def::None,
            "Options of grpc:// and grpcs:// agents.",
        ),
        CHECK_AND_AGENT,
        Merge::Keys,
    ),
    layered(
        key(
            "mcp",
            Ty::Section(&MCP),
            Def::None,
            "Options of agents with `protocol: mcp`.",
        ),
        CHECK_AND_AGENT,
        Merge::Keys,
    ),
    layered(
        key(
            "a2a",
            Ty::Section(&A2A),
            Def::None,
            "Options of agents with `protocol: a2a`.",
        ),
        CHECK_AND_AGENT,
        Merge::Keys,
    ),
    layered(
        key(
            "canary",
            Ty::Section(&CANARY_CADENCE),
            Def::None,
            "The cadence every canary starts from; no task here, since every agent of every \
             kind inherits `defaults`.",
        ),
        &[Place::Defaults],
        Merge::Keys,
    ),
    layered(
        key(
            "canary",
            Ty::Section(&CANARY),
            Def::None,
            "A small real task sent on its own cadence: its answer is measured and checked \
             (docs/canaries.md). The cadence keys merge one by one over `defaults.canary`; the \
             task comes whole from the highest layer that sets one.",
        ),
        CHECK_AND_AGENT,
        Merge::Keys,
    ),
];

/// Who an agent is: keys of an agent only.
static AGENT_KEYS: &[Key] = &[
    layered(
        required(
            "name",
            Ty::Text,
            "Unique name; the `agent` label. No surrounding whitespace.",
        ),
        AGENT,
        Merge::Single,
    ),
    layered(
        required(
            "type",
            Ty::Text,
            "The `agent_type` label; also picks the check named like it.",
        ),
        AGENT,
        Merge::Single,
    ),
    layered(
        key(
            "url",
            Ty::Text,
            Def::None,
            "What to probe: http://, https://, tcp://host:port, grpc://host:port or \
             grpcs://host:port. Required unless the agent has `heartbeat`. Credentials in an \
             http(s) URL are used as basic auth and never shown.",
        ),
        AGENT,
        Merge::Single,
    ),
    layered(
        key(
            "check",
            Ty::Text,
            Def::Rule("the check named like `type`, if any"),
            "The check to use.",
        ),
        AGENT,
        Merge::Single,
    ),
];

pub static DEFAULTS: Section = Section {
    id: "defaults",
    places: &[],
    inherits: &[],
    only: Some(Place::Defaults),
    title: "defaults",
    doc: "Settings every agent inherits: the keys marked `defaults` in [agents](#agents).",
    keys: CHECK_KEYS,
};

pub static CHECK: Section = Section {
    id: "check",
    places: &[],
    inherits: &[],
    only: Some(Place::Check),
    title: "checks",
    doc: "Each entry names a check; agents of the type of that name use it, others name it \
          with `check:`. It takes the keys marked `check` in [agents](#agents), over `defaults`.",
    keys: CHECK_KEYS,
};

/// An agent: who it is, then every key of a check.
pub static AGENT_SECTION: Section = Section {
    id: "agent",
    places: &[],
    inherits: CHECK_KEYS,
    // An agent takes a check's keys, not those only `defaults` takes (`defaults.canary`).
    only: Some(Place::Agent),
    title: "agents",
    doc: "Who the agent is, and any key of a check, which then overrides its check's. \
          Precedence: the agent's own keys, then its check, then `defaults`.",
    keys: AGENT_KEYS,
};

/// A key of a group that an upper layer replaces as a whole: it never merges on its own.
const fn part(key: Key) -> Key {
    Key {
        merge: Merge::Single,
        ..key
    }
}

const TLS_KEYS: &[Key] = &[
    part(key(
        "ca_file",
        Ty::File,
        Def::Rule("the system's trust store"),
        "PEM certificates to trust instead of the system's.",
    )),
    part(key(
        "cert_file",
        Ty::File,
        Def::None,
        "PEM client certificate chain; with `key_file`.",
    )),
    part(key(
        "key_file",
        Ty::SecretFile,
        Def::None,
        "PEM private key of the client certificate.",
    )),
    part(key(
        "server_name",
        Ty::Text,
        Def::Rule("the URL's host"),
        "SNI and certificate name to check.",
    )),
    part(not_null(key(
        "insecure_skip_verify",
        Ty::Bool,
        Def::Bool(false),
        "Accept any server certificate.",
    ))),
];

pub static TLS: Section = Section {
    id: "tls",
    places: WITH_SOURCE,
    inherits: &[],
    only: None,
    title: "http.tls",
    doc: "TLS of https:// (and, as `grpc.tls`, grpcs://) agents. Replaced as a whole by an \
          upper layer's `tls`.",
    keys: TLS_KEYS,
};

pub static BASIC_AUTH: Section = Section {
    id: "basic_auth",
    places: WITH_SOURCE,
    inherits: &[],
    only: None,
    title: "http.basic_auth",
    doc: "Basic authentication; the password only ever comes from a file.",
    keys: &[
        part(required("username", Ty::Text, "The user name.")),
        part(key(
            "password_file",
            Ty::SecretFile,
            Def::Rule("empty password"),
            "File holding the password; a trailing newline is dropped.",
        )),
    ],
};

/// The keys of `http:` that an http_sd source's `http:` shares.
macro_rules! http_keys {
    ($($extra:expr),*) => {
        &[
            key(
                "method",
                Ty::Text,
                Def::Text("GET"),
                "HTTP method of the probe, any case.",
            ),
            Key {
                merge: Merge::ByKey,
                ..key(
                    "headers",
                    Ty::TextMap,
                    Def::None,
                    "Extra request headers; names compare without case. The effective config shows the \
                     values of accept, accept-charset, accept-encoding, accept-language, \
                     cache-control, connection, content-type, host, pragma, te and user-agent, \
                     every other value as `<secret>`.",
                )
            },
            Key {
                merge: Merge::Whole,
                ..key(
                    "bearer_token_file",
                    Ty::SecretFile,
                    Def::None,
                    "File holding a token sent as `Authorization: Bearer`; one way to \
                     authenticate, with `basic_auth` and URL credentials.",
                )
            },
            Key {
                merge: Merge::Whole,
                ..key(
                    "basic_auth",
                    Ty::Section(&BASIC_AUTH),
                    Def::None,
                    "Basic authentication.",
                )
            },
            Key {
                merge: Merge::Whole,
                ..key("tls", Ty::Section(&TLS), Def::None, "TLS of an https:// URL.")
            },
            key(
                "follow_redirects",
                Ty::Bool,
                Def::Bool(true),
                "Follow redirects, at most 10 hops.",
            ),
            $($extra),*
        ]
    };
}

pub static HTTP: Section = Section {
    id: "http",
    places: CHECK_AND_AGENT,
    inherits: &[],
    only: None,
    title: "http",
    doc: "Applies to http(s), mcp and a2a agents.",
    keys: http_keys!(key(
        "max_body_bytes",
        Ty::Size { positive: true },
        Def::Bytes(DEFAULT_MAX_BODY_BYTES),
        "The body is never read past this size."
    )),
};

pub static EXPECT: Section = Section {
    id: "expect",
    places: CHECK_AND_AGENT,
    inherits: &[],
    only: None,
    title: "expect",
    doc: "Conditions on an http(s) answer; all must hold for success.",
    keys: &[
        key(
            "status",
            Ty::Status,
            Def::Text("2xx"),
            "Accepted statuses: codes such as `200` and classes such as `\"2xx\"`.",
        ),
        key(
            "body_contains",
            Ty::Text,
            Def::None,
            "Text the body must contain.",
        ),
        key(
            "body_regex",
            Ty::Text,
            Def::None,
            "Regular expression (Rust syntax) the body must match.",
        ),
        Key {
            merge: Merge::ByKey,
            ..key(
                "json",
                Ty::JsonMap,
                Def::None,
                "JSON Pointer (RFC 6901) to the value expected there.",
            )
        },
    ],
};

pub static DEGRADED: Section = Section {
    id: "degraded",
    places: CHECK_AND_AGENT,
    inherits: &[],
    only: None,
    title: "degraded",
    doc: "Any condition makes a successful probe `degraded`.",
    keys: &[
        key(
            "latency_above",
            Ty::Duration,
            Def::None,
            "A probe slower than this is degraded.",
        ),
        Key {
            merge: Merge::ByKey,
            ..key(
                "json",
                Ty::JsonMap,
                Def::None,
                "JSON Pointer to a value that means degraded (not for mcp).",
            )
        },
    ],
};

pub static HEARTBEAT: Section = Section {
    id: "heartbeat",
    places: CHECK_AND_AGENT,
    inherits: &[],
    only: None,
    title: "heartbeat",
    doc: "The agent reports in at /api/v1/agents/{name}/heartbeat; it needs `period` and \
          `token_file` from some layer.",
    keys: &[
        key(
            "period",
            Ty::Duration,
            Def::None,
            "Expected time between two heartbeats (required).",
        ),
        key(
            "grace",
            Ty::Duration,
            Def::Rule("20 % of `period`, at least 1s"),
            "Extra time before a heartbeat counts as missed.",
        ),
        key(
            "token_file",
            Ty::SecretFile,
            Def::None,
            "File holding the token the agent sends as `Authorization: Bearer` (required).",
        ),
        key(
            "max_run_time",
            Ty::Duration,
            Def::None,
            "A started run must end within it, else `timeout`.",
        ),
    ],
};

pub static GRPC: Section = Section {
    id: "grpc",
    places: CHECK_AND_AGENT,
    inherits: &[],
    only: None,
    title: "grpc",
    doc: "grpc.health.v1.Health/Check (and Watch) of a grpc:// or grpcs:// agent.",
    keys: &[
        key(
            "service",
            Ty::Text,
            Def::Text(""),
            "The `service` of the health request; empty asks about the whole server.",
        ),
        Key {
            merge: Merge::ByKey,
            ..key(
                "metadata",
                Ty::TextMap,
                Def::None,
                "Metadata sent with every call; no `grpc-*` or `*-bin` keys. The effective config \
                 shows every value as `<secret>` except those of the names `http.headers` lists.",
            )
        },
        Key {
            merge: Merge::ByKey,
            ..key(
                "metadata_files",
                Ty::SecretFileMap,
                Def::None,
                "Metadata whose values are secrets: key to the file holding the value.",
            )
        },
        Key {
            merge: Merge::Whole,
            ..key(
                "tls",
                Ty::Section(&TLS),
                Def::None,
                "TLS of a grpcs:// URL.",
            )
        },
        key(
            "authority",
            Ty::Text,
            Def::Rule("`host:port` of the URL"),
            "`:authority` to send.",
        ),
        key(
            "watch",
            Ty::Bool,
            Def::Bool(false),
            "Keep a Health/Watch stream open between probes.",
        ),
    ],
};

pub static MCP: Section = Section {
    id: "mcp",
    places: CHECK_AND_AGENT,
    inherits: &[],
    only: None,
    title: "mcp",
    doc: "A streamable-HTTP MCP endpoint (`protocol: mcp`).",
    keys: &[key(
        "expect_tools",
        Ty::TextList,
        Def::None,
        "Tools `tools/list` must name; without it `tools/list` is not called.",
    )],
};

pub static A2A: Section = Section {
    id: "a2a",
    places: CHECK_AND_AGENT,
    inherits: &[],
    only: None,
    title: "a2a",
    doc: "An A2A agent card (`protocol: a2a`).",
    keys: &[key(
        "expect_skills",
        Ty::TextList,
        Def::None,
        "Skill ids the agent card must list.",
    )],
};

pub static SOURCE: Section = Section {
    id: "source",
    places: SOURCE_PLACE,
    inherits: &[],
    only: None,
    title: "discovery",
    doc: "Each entry has exactly one of `file_sd`, `http_sd`, `dns_sd`, plus what applies to \
          its targets. A target becomes an agent after `relabel_configs` and is then resolved \
          as an agent of the file (check, then defaults).",
    keys: &[
        key(
            "file_sd",
            Ty::Section(&FILE_SD),
            Def::None,
            "Targets from JSON or YAML files.",
        ),
        key(
            "http_sd",
            Ty::Section(&HTTP_SD),
            Def::None,
            "Targets from an HTTP endpoint (Prometheus' HTTP SD format).",
        ),
        key(
            "dns_sd",
            Ty::Section(&DNS_SD),
            Def::None,
            "Targets from DNS records.",
        ),
        key(
            "type",
            Ty::Text,
            Def::None,
            "`agent_type` of targets that do not set one.",
        ),
        key(
            "check",
            Ty::Text,
            Def::Rule("the check named like the target's type"),
            "Check of targets that do not set `__check__`.",
        ),
        not_null(key(
            "allowed_checks",
            Ty::TextList,
            Def::None,
            "Further checks a target may ask for with `__check__`.",
        )),
        not_null(key(
            "relabel_configs",
            Ty::List(&RELABEL),
            Def::None,
            "Prometheus relabeling of each target.",
        )),
        key(
            "max_targets",
            Ty::Integer {
                min: 1,
                max: u64::MAX,
            },
            Def::Integer(DEFAULT_MAX_TARGETS as u64),
            "Targets one refresh may list; beyond, the refresh fails and the last good targets stay.",
        ),
    ],
};

pub static FILE_SD: Section = Section {
    id: "file_sd",
    places: SOURCE_PLACE,
    inherits: &[],
    only: None,
    title: "discovery.file_sd",
    doc: "Files in Prometheus' file_sd format; a file that cannot be parsed keeps its last good targets.",
    keys: &[
        required(
            "files",
            Ty::TextList,
            "File names or globs, relative to the config file's folder.",
        ),
        key(
            "refresh_interval",
            Ty::Duration,
            Def::Duration(DEFAULT_FILE_REFRESH),
            "How often the files are read again.",
        ),
    ],
};

pub static HTTP_SD: Section = Section {
    id: "http_sd",
    places: SOURCE_PLACE,
    inherits: &[],
    only: None,
    title: "discovery.http_sd",
    doc: "An endpoint answering a JSON list of target groups.",
    keys: &[
        required("url", Ty::Text, "http:// or https:// URL of the endpoint."),
        key(
            "refresh_interval",
            Ty::Duration,
            Def::Duration(DEFAULT_HTTP_REFRESH),
            "How often it is asked.",
        ),
        key(
            "timeout",
            Ty::Duration,
            Def::Duration(DEFAULT_SD_TIMEOUT),
            "Upper bound of one request; at most `refresh_interval` by default.",
        ),
        key(
            "max_response_bytes",
            Ty::Size { positive: false },
            Def::Bytes(DEFAULT_SD_MAX_BYTES),
            "A longer answer fails the refresh.",
        ),
        key(
            "http",
            Ty::Section(&SD_HTTP),
            Def::None,
            "Request options, as an agent's `http` without `max_body_bytes`.",
        ),
    ],
};

pub static SD_HTTP: Section = Section {
    id: "sd_http",
    places: SOURCE_PLACE,
    inherits: &[],
    only: None,
    title: "discovery.http_sd.http",
    doc: "As an agent's `http`, without `max_body_bytes` (`max_response_bytes` bounds the answer).",
    keys: http_keys!(),
};

pub static DNS_SD: Section = Section {
    id: "dns_sd",
    places: SOURCE_PLACE,
    inherits: &[],
    only: None,
    title: "discovery.dns_sd",
    doc: "SRV, A or AAAA records.",
    keys: &[
        required("names", Ty::TextList, "DNS names to look up."),
        key(
            "record_type",
            Ty::Enum {
                values: &["SRV", "A", "AAAA"],
                any_case: true,
                trimmed: false,
            },
            Def::Text("SRV"),
            "Record type, any case.",
        ),
        key(
            "port",
            Ty::Integer {
                min: 0,
                max: u16::MAX as u64,
            },
            Def::None,
            "Port of every address; required for A and AAAA.",
        ),
        key(
            "refresh_interval",
            Ty::Duration,
            Def::Duration(DEFAULT_DNS_REFRESH),
            "How often the names are looked up.",
        ),
        key(
            "nameservers",
            Ty::TextList,
            Def::Rule("those of /etc/resolv.conf"),
            "`ip:port` of name servers to ask.",
        ),
    ],
};

pub static RELABEL: Section = Section {
    id: "relabel",
    places: SOURCE_PLACE,
    inherits: &[],
    only: None,
    title: "discovery.relabel_configs",
    doc: "Prometheus semantics: anchored RE2 regexes, `$1`/`${name}` expansion. `agent` becomes \
          the name, `agent_type` the type, `__check__` the check, `__scheme__`, `__address__` \
          and `__path__` the URL; other labels not starting with `__` the agent's labels.",
    keys: &[
        key(
            "source_labels",
            Ty::TextList,
            Def::None,
            "Labels whose values are joined and matched.",
        ),
        key(
            "separator",
            Ty::Text,
            Def::Text(DEFAULT_SEPARATOR),
            "Joins the source labels' values.",
        ),
        key(
            "regex",
            Ty::Text,
            Def::Text(DEFAULT_REGEX),
            "Matched against the whole joined value.",
        ),
        key(
            "modulus",
            Ty::Integer {
                min: 0,
                max: u64::MAX,
            },
            Def::None,
            "For `hashmod`: the modulus (required there).",
        ),
        key(
            "target_label",
            Ty::Text,
            Def::None,
            "Label written by replace, hashmod, lowercase and uppercase.",
        ),
        key(
            "replacement",
            Ty::Text,
            Def::Text(DEFAULT_REPLACEMENT),
            "Value written, with `$1` and `${name}` expanded.",
        ),
        key(
            "action",
            Ty::Enum {
                values: &[
                    "replace",
                    "keep",
                    "drop",
                    "labelmap",
                    "labeldrop",
                    "labelkeep",
                    "hashmod",
                    "lowercase",
                    "uppercase",
                ],
                any_case: true,
                trimmed: false,
            },
            Def::Text(DEFAULT_ACTION),
            "What the rule does.",
        ),
    ],
};

/// The keys of a canary's cadence, in `defaults.canary` and in a canary.
const CANARY_CADENCE_KEYS: &[Key] = &[
    key(
        "interval",
        Ty::Duration,
        Def::Duration(DEFAULT_CANARY_INTERVAL),
        "Time between two canaries, independent of the probe interval.",
    ),
    key(
        "timeout",
        Ty::Duration,
        Def::Duration(DEFAULT_CANARY_TIMEOUT),
        "Upper bound of one canary; must be shorter than `interval`. Without one, a canary \
         whose interval is not longer than the default timeout gets 80 % of its interval.",
    ),
    key(
        "on_failure",
        Ty::Enum {
            values: &["degraded", "unhealthy"],
            any_case: false,
            trimmed: true,
        },
        Def::Text("degraded"),
        "What failing canaries make of the agent's status.",
    ),
    key(
        "failure_threshold",
        COUNT,
        Def::Integer(1),
        "Consecutive failed canaries before `on_failure` applies.",
    ),
];

pub static CANARY_CADENCE: Section = Section {
    id: "canary_cadence",
    places: &[Place::Defaults],
    inherits: &[],
    only: None,
    title: "defaults.canary",
    doc: "The cadence of every canary, unless its check or agent sets it.",
    keys: CANARY_CADENCE_KEYS,
};

pub static CANARY: Section = Section {
    id: "canary",
    places: CHECK_AND_AGENT,
    inherits: &[],
    only: None,
    title: "canary",
    doc: "A canary task: the cadence keys and exactly one of `a2a`, `mcp`, `openai`.",
    keys: &[
        CANARY_CADENCE_KEYS[0],
        CANARY_CADENCE_KEYS[1],
        CANARY_CADENCE_KEYS[2],
        CANARY_CADENCE_KEYS[3],
        key(
            "a2a",
            Ty::Section(&CANARY_A2A),
            Def::None,
            "Send one message to an agent with `protocol: a2a`.",
        ),
        key(
            "mcp",
            Ty::Section(&CANARY_MCP),
            Def::None,
            "Call one tool of an agent with `protocol: mcp`.",
        ),
        key(
            "openai",
            Ty::Section(&CANARY_OPENAI),
            Def::None,
            "Ask for one chat completion on the agent's origin (any http(s) agent).",
        ),
    ],
};

pub static CANARY_A2A: Section = Section {
    id: "canary_a2a",
    places: CHECK_AND_AGENT,
    inherits: &[],
    only: None,
    title: "canary.a2a",
    doc: "`message/send` (A2A 0.3) or `SendMessage` (A2A 1.0), as the agent card says.",
    keys: &[
        required("text", Ty::Text, "The message's text."),
        key(
            "expect",
            Ty::Section(&CANARY_EXPECT),
            Def::None,
            "What the reply must show.",
        ),
    ],
};

pub static CANARY_MCP: Section = Section {
    id: "canary_mcp",
    places: CHECK_AND_AGENT,
    inherits: &[],
    only: None,
    title: "canary.mcp",
    doc: "`tools/call` in the agent's MCP era.",
    keys: &[
        required("tool", Ty::Text, "The tool's name."),
        key(
            "arguments",
            Ty::AnyMap,
            Def::None,
            "The call's arguments, as the tool's input schema wants them.",
        ),
        key(
            "expect",
            Ty::Section(&CANARY_EXPECT),
            Def::None,
            "What the result must show.",
        ),
    ],
};

pub static CANARY_OPENAI: Section = Section {
    id: "canary_openai",
    places: CHECK_AND_AGENT,
    inherits: &[],
    only: None,
    title: "canary.openai",
    doc: "An OpenAI-compatible chat completion, with the agent's `http` auth and TLS.",
    keys: &[
        required("model", Ty::Text, "The model to ask."),
        required("prompt", Ty::Text, "The user message."),
        key(
            "max_tokens",
            COUNT,
            Def::Integer(DEFAULT_MAX_TOKENS as u64),
            "Upper bound of the answer's tokens.",
        ),
        key(
            "path",
            Ty::Text,
            Def::Text(DEFAULT_CHAT_PATH),
            "Path on the agent's origin (scheme, host and port of its URL).",
        ),
        key(
            "stream",
            Ty::Bool,
            Def::Bool(false),
            "Stream the answer and measure the time to its first token.",
        ),
        key(
            "expect",
            Ty::Section(&CANARY_EXPECT),
            Def::None,
            "What the answer must show.",
        ),
    ],
};

pub static CANARY_EXPECT: Section = Section {
    id: "canary_expect",
    places: CHECK_AND_AGENT,
    inherits: &[],
    only: None,
    title: "canary expect",
    doc: "Conditions on a canary's reply text; all must hold.",
    keys: &[
        key(
            "contains",
            Ty::Text,
            Def::None,
            "Text the reply must contain.",
        ),
        key(
            "regex",
            Ty::Text,
            Def::None,
            "Regular expression (Rust syntax) the reply must match.",
        ),
        key(
            "json",
            Ty::JsonMap,
            Def::None,
            "JSON Pointer (RFC 6901) to the value expected there, on a JSON reply.",
        ),
        key(
            "max_latency",
            Ty::Duration,
            Def::None,
            "A slower canary fails with `timeout`.",
        ),
    ],
};

/// Every section, in the order the reference lists them.
pub fn sections() -> [&'static Section; 25] {
    [
        &ROOT,
        &AGENT_SECTION,
        &DEFAULTS,
        &CHECK,
        &HTTP,
        &BASIC_AUTH,
        &TLS,
        &EXPECT,
        &DEGRADED,
        &HEARTBEAT,
        &GRPC,
        &MCP,
        &A2A,
        &CANARY_CADENCE,
        &CANARY,
        &CANARY_A2A,
        &CANARY_MCP,
        &CANARY_OPENAI,
        &CANARY_EXPECT,
        &SOURCE,
        &FILE_SD,
        &HTTP_SD,
        &SD_HTTP,
        &DNS_SD,
        &RELABEL,
    ]
}
