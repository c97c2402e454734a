//! The `canary:` section: a small real task sent to the agent on a cadence of its own (an A2A
//! message, an MCP tool call or an OpenAI-compatible chat completion), and what its answer must
//! show. Layers merge as the rest of a check does: `interval`, `timeout`, `on_failure` and
//! `failure_threshold` key by key, the task (`a2a`, `mcp` or `openai`) as a whole. `defaults`
//! may set the cadence only: a task there would be sent to every agent of every kind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::layer::Placed;
use super::resolve::Resolver;
use super::secret::Pattern;
use super::spec::{JsonMatch, Target};

/// A canary runs this often unless its section says otherwise.
pub const DEFAULT_CANARY_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Upper bound of one canary task unless its section says otherwise.
pub const DEFAULT_CANARY_TIMEOUT: Duration = Duration::from_secs(60);
/// `openai.max_tokens` unless set: enough for a short answer, cheap on any model.
pub const DEFAULT_MAX_TOKENS: u32 = 16;
/// `openai.path` unless set.
pub const DEFAULT_CHAT_PATH: &str = "/v1/chat/completions";

/// `canary:` as written.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawCanary {
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub on_failure: Option<Spanned<String>>,
    pub failure_threshold: Option<Spanned<u32>>,
    pub a2a: Option<Spanned<RawA2aTask>>,
    pub mcp: Option<Spanned<RawMcpTask>>,
    pub openai: Option<Spanned<RawOpenAiTask>>,
}

/// `defaults.canary`: the cadence every canary starts from; no task, since every agent of every
/// kind inherits `defaults`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawCanaryCadence {
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub on_failure: Option<Spanned<String>>,
    pub failure_threshold: Option<Spanned<u32>>,
}

impl From<RawCanaryCadence> for RawCanary {
    fn from(raw: RawCanaryCadence) -> Self {
        RawCanary {
            interval: raw.interval,
            timeout: raw.timeout,
            on_failure: raw.on_failure,
            failure_threshold: raw.failure_threshold,
            a2a: None,
            mcp: None,
            openai: None,
        }
    }
}

/// `canary.a2a`: one message to the agent.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawA2aTask {
    pub text: Spanned<String>,
    pub expect: Option<Spanned<RawCanaryExpect>>,
}

/// `canary.mcp`: one tool call.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawMcpTask {
    pub tool: Spanned<String>,
    pub arguments: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    pub expect: Option<Spanned<RawCanaryExpect>>,
}

/// `canary.openai`: one chat completion.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawOpenAiTask {
    pub model: Spanned<String>,
    pub prompt: Spanned<String>,
    pub max_tokens: Option<Spanned<u32>>,
    pub path: Option<Spanned<String>>,
    pub stream: Option<bool>,
    pub expect: Option<Spanned<RawCanaryExpect>>,
}

/// `expect:` of a canary task; all must hold.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawCanaryExpect {
    pub contains: Option<Spanned<String>>,
    pub regex: Option<Spanned<String>>,
    pub json: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    pub max_latency: Option<Spanned<String>>,
}

/// What a failed canary does to the agent's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    #[default]
    Degraded,
    Unhealthy,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Degraded => "degraded",
            OnFailure::Unhealthy => "unhealthy",
        }
    }
}

/// One agent's canary, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct CanarySpec {
    /// Least time between the starts of two canary tasks.
    pub interval: Duration,
    /// Upper bound of one task, always below `interval`.
    pub timeout: Duration,
    pub on_failure: OnFailure,
    /// Failed canaries in a row before `on_failure` applies.
    pub failure_threshold: u32,
    pub task: CanaryTask,
    pub expect: CanaryExpect,
}

/// The task a canary sends.
#[derive(Debug, Clone, PartialEq)]
pub enum CanaryTask {
    /// A message to an A2A agent (`protocol: a2a`).
    A2a { text: String },
    /// `tools/call` on an MCP agent (`protocol: mcp`).
    Mcp {
        tool: String,
        arguments: serde_json::Map<String, serde_json::Value>,
    },
    /// A chat completion at `url`: the agent's origin and `path`.
    OpenAi {
        model: String,
        prompt: String,
        max_tokens: u32,
        url: url::Url,
        stream: bool,
    },
}

impl CanaryTask {
    /// The kind, as the config, the API and the logs name it.
    pub fn kind(&self) -> &'static str {
        match self {
            CanaryTask::A2a { .. } => "a2a",
            CanaryTask::Mcp { .. } => "mcp",
            CanaryTask::OpenAi { .. } => "openai",
        }
    }
}

/// What the reply must show; all must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CanaryExpect {
    pub contains: Option<String>,
    pub regex: Option<Pattern>,
    /// On the reply read as JSON.
    pub json: Vec<JsonMatch>,
    /// The whole task must end within this.
    pub max_latency: Option<Duration>,
}

/// A task as written in one layer, before the agent's URL is known.
#[derive(Debug, Clone)]
pub(super) enum TaskLayer {
    A2a {
        text: String,
    },
    Mcp {
        tool: String,
        arguments: serde_json::Map<String, serde_json::Value>,
    },
    OpenAi {
        model: String,
        prompt: String,
        max_tokens: u32,
        path: String,
        stream: bool,
    },
}

/// `canary:` of one layer; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(super) struct CanaryLayer {
    pub interval: Option<Placed<Duration>>,
    pub timeout: Option<Placed<Duration>>,
    pub on_failure: Option<OnFailure>,
    pub failure_threshold: Option<u32>,
    pub task: Option<Placed<(TaskLayer, CanaryExpect)>>,
    /// Where a check or an agent wrote its `canary:`, to report one that ends without a task.
    pub written_at: Option<Location>,
}

impl CanaryLayer {
    pub(super) fn over(self, lower: &CanaryLayer) -> CanaryLayer {
        CanaryLayer {
            interval: self.interval.or_else(|| lower.interval.clone()),
            timeout: self.timeout.or_else(|| lower.timeout.clone()),
            on_failure: self.on_failure.or(lower.on_failure),
            failure_threshold: self.failure_threshold.or(lower.failure_threshold),
            task: self.task.or_else(|| lower.task.clone()),
            written_at: self.written_at.or(lower.written_at),
        }
    }
}

impl Resolver {
    /// Validates one layer's `canary:`. `what` names the layer in messages.
    pub(super) fn canary_layer(&mut self, raw: Spanned<RawCanary>, what: &str) -> CanaryLayer {
        let at = raw.referenced;
        let raw = raw.value;
        let mut layer = CanaryLayer {
            interval: self.bounded_duration(raw.interval.as_ref(), what, "canary.interval"),
            timeout: self.bounded_duration(raw.timeout.as_ref(), what, "canary.timeout"),
            failure_threshold: self
                .threshold(raw.failure_threshold.as_ref(), "canary.failure_threshold"),
            written_at: Some(at),
            ..CanaryLayer::default()
        };
        if let Some(on_failure) = &raw.on_failure {
            match on_failure.value.trim() {
                "degraded" => layer.on_failure = Some(OnFailure::Degraded),
                "unhealthy" => layer.on_failure = Some(OnFailure::Unhealthy),
                other => self.issue(
                    on_failure.referenced,
                    format!("{what}: `canary.on_failure` {other:?} is not known"),
                    "use `degraded` (the default) or `unhealthy`",
                ),
            }
        }
        let given: Vec<&str> = [
            raw.a2a.as_ref().map(|_| "a2a"),
            raw.mcp.as_ref().map(|_| "mcp"),
            raw.openai.as_ref().map(|_| "openai"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given.len() > 1 {
            self.issue(
                at,
                format!("{what}: `canary` names {} tasks", given.join(" and ")),
                "keep exactly one of `a2a`, `mcp` or `openai`",
            );
            return layer;
        }
        if let Some(a2a) = raw.a2a {
            let task_at = a2a.referenced;
            let text = self.task_text(&a2a.value.text, what, "canary.a2a.text");
            let expect = self.canary_expect(a2a.value.expect, what);
            if let Some(text) = text {
                layer.task = Some(Placed::new((TaskLayer::A2a { text }, expect), task_at));
            }
        }
        if let Some(mcp) = raw.mcp {
            let task_at = mcp.referenced;
            let tool = self.task_text(&mcp.value.tool, what, "canary.mcp.tool");
            let arguments = mcp
                .value
                .arguments
                .map(|a| a.value.into_iter().collect())
                .unwrap_or_default();
            let expect = self.canary_expect(mcp.value.expect, what);
            if let Some(tool) = tool {
                layer.task = Some(Placed::new(
                    (TaskLayer::Mcp { tool, arguments }, expect),
                    task_at,
                ));
            }
        }
        if let Some(openai) = raw.openai {
            let task_at = openai.referenced;
            let task = self.openai_task(openai.value, what);
            if let Some(task) = task {
                layer.task = Some(Placed::new(task, task_at));
            }
        }
        layer
    }

    fn openai_task(&mut self, raw: RawOpenAiTask, what: &str) -> Option<(TaskLayer, CanaryExpect)> {
        let model = self.task_text(&raw.model, what, "canary.openai.model");
        let prompt = self.task_text(&raw.prompt, what, "canary.openai.prompt");
        let max_tokens = match &raw.max_tokens {
            Some(m) if m.value == 0 => {
                self.issue(
                    m.referenced,
                    format!("{what}: `canary.openai.max_tokens` must be at least 1"),
                    format!("set it to a small number such as {DEFAULT_MAX_TOKENS}"),
                );
                None
            }
            Some(m) => Some(m.value),
            None => Some(DEFAULT_MAX_TOKENS),
        };
        let path = match &raw.path {
            Some(p) if !p.value.starts_with('/') || p.value.contains(char::is_whitespace) => {
                self.issue(
                    p.referenced,
                    format!(
                        "{what}: `canary.openai.path` {:?} is not an absolute path",
                        p.value
                    ),
                    format!("write a path on the agent's origin, such as {DEFAULT_CHAT_PATH}"),
                );
                None
            }
            Some(p) => Some(p.value.clone()),
            None => Some(DEFAULT_CHAT_PATH.to_owned()),
        };
        let expect = self.canary_expect(raw.expect, what);
        let task = TaskLayer::OpenAi {
            model: model?,
            prompt: prompt?,
            max_tokens: max_tokens?,
            path: path?,
            stream: raw.stream.unwrap_or(false),
        };
        Some((task, expect))
    }

    /// A required text of a task: not empty.
    fn task_text(&mut self, value: &Spanned<String>, what: &str, key: &str) -> Option<String> {
        if value.value.trim().is_empty() {
            self.issue(
                value.referenced,
                format!("{what}: `{key}` is empty"),
                format!("give `{key}` a value"),
            );
            return None;
        }
        Some(value.value.clone())
    }

    fn canary_expect(&mut self, raw: Option<Spanned<RawCanaryExpect>>, what: &str) -> CanaryExpect {
        let Some(raw) = raw else {
            return CanaryExpect::default();
        };
        let raw = raw.value;
        let mut expect = CanaryExpect {
            contains: raw.contains.map(|c| c.value),
            max_latency: self.duration(raw.max_latency.as_ref(), "canary expect.max_latency"),
            ..CanaryExpect::default()
        };
        if let Some(pattern) = &raw.regex {
            match regex::Regex::new(&pattern.value) {
                Ok(re) => expect.regex = Some(re.into()),
                Err(e) => self.issue(
                    pattern.referenced,
                    format!(
                        "{what}: canary expect.regex is not a valid regular expression: {}",
                        e.to_string().lines().last().unwrap_or_default().trim()
                    ),
                    "fix the pattern (Rust regex syntax; no look-around or backreferences)",
                ),
            }
        }
        let pointers = self.json_pointers(raw.json.as_ref(), "canary expect.json");
        expect.json = super::expect::json_matches(pointers);
        expect
    }

    /// The agent's canary from the merged layers, once its target is known; None without a
    /// task. A task that does not fit the target, or a timeout that does not fit the interval,
    /// is reported.
    pub(super) fn canary_spec(
        &mut self,
        layer: CanaryLayer,
        target: &Target,
        what: &str,
    ) -> Option<Arc<CanarySpec>> {
        let Some(task) = layer.task else {
            if let Some(at) = layer.written_at {
                self.issue(
                    at,
                    format!("{what}: `canary` has no task"),
                    "add one of `a2a: {text: ...}`, `mcp: {tool: ...}` or `openai: {model: ..., prompt: ...}`",
                );
            }
            return None;
        };
        let Placed {
            value: (task, expect),
            at: task_at,
        } = task;
        let interval = layer
            .interval
            .as_ref()
            .map_or(DEFAULT_CANARY_INTERVAL, |i| i.value);
        let timeout = match &layer.timeout {
            Some(t) => t.value,
            // A canary that only shortens its interval keeps a timeout that fits it.
            None if DEFAULT_CANARY_TIMEOUT >= interval => interval.mul_f64(0.8),
            None => DEFAULT_CANARY_TIMEOUT,
        };
        if timeout >= interval {
            let at = layer
                .timeout
                .as_ref()
                .or(layer.interval.as_ref())
                .map_or(task_at, |p| p.at);
            self.issue(
                at,
                format!(
                    "{what}: canary timeout {} is not shorter than canary interval {}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
                "set `canary.timeout` below `canary.interval`, so that a task ends before the next one is due",
            );
        }
        let base = match target {
            Target::Http(url) => url,
            Target::Mcp(mcp) => &mcp.url,
            Target::A2a(a2a) => &a2a.url,
            Target::Tcp { .. } | Target::Grpc(_) | Target::Heartbeat(_) => {
                self.issue(
                    task_at,
                    format!("{what}: `canary` applies only to http:// and https:// agents"),
                    "remove `canary`, or give the agent an http(s) URL",
                );
                return None;
            }
        };
        let task = match task {
            TaskLayer::A2a { text } => {
                if !matches!(target, Target::A2a(_)) {
                    self.issue(
                        task_at,
                        format!("{what}: `canary.a2a` needs `protocol: a2a`"),
                        "add `protocol: a2a` to the agent or its check, or use `canary.openai`",
                    );
                    return None;
                }
                CanaryTask::A2a { text }
            }
            TaskLayer::Mcp { tool, arguments } => {
                if !matches!(target, Target::Mcp(_)) {
                    self.issue(
                        task_at,
                        format!("{what}: `canary.mcp` needs `protocol: mcp`"),
                        "add `protocol: mcp` to the agent or its check, or use `canary.openai`",
                    );
                    return None;
                }
                CanaryTask::Mcp { tool, arguments }
            }
            TaskLayer::OpenAi {
                model,
                prompt,
                max_tokens,
                path,
                stream,
            } => {
                // The path replaces the URL's path and query: the agent's URL is its health
                // endpoint, the chat endpoint sits on the same origin.
                let url = match base.join(&path) {
                    Ok(url) => url,
                    Err(e) => {
                        self.issue(
                            task_at,
                            format!(
                                "{what}: `canary.openai.path` {path:?} does not make a URL ({e})"
                            ),
                            format!("write a path such as {DEFAULT_CHAT_PATH}"),
                        );
                        return None;
                    }
                };
                // `//host/x` and `/\\host` are paths to URL syntax but name another host: the
                // agent's credentials go only to the agent's own origin.
                if url.origin() != base.origin() {
                    self.issue(
                        task_at,
                        format!(
                            "{what}: `canary.openai.path` {path:?} leaves the agent's origin \
                             (it names {})",
                            url.origin().ascii_serialization()
                        ),
                        format!(
                            "write a path that starts with one `/` and has no `\\`, such as \
                             {DEFAULT_CHAT_PATH}: the canary posts to the agent's own scheme, \
                             host and port"
                        ),
                    );
                    return None;
                }
                CanaryTask::OpenAi {
                    model,
                    prompt,
                    max_tokens,
                    url,
                    stream,
                }
            }
        };
        Some(Arc::new(CanarySpec {
            interval,
            timeout,
            on_failure: layer.on_failure.unwrap_or_default(),
            failure_threshold: layer.failure_threshold.unwrap_or(1),
            task,
            expect,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::{parse, Config};

    fn load(yaml: &str) -> Result<Config, String> {
        parse(yaml, "t.yaml", Path::new(".")).map_err(|e| e.to_string())
    }

    fn canary_of(config: &Config, name: &str) -> Option<Arc<CanarySpec>> {
        let agent = config.agents.iter().find(|a| a.spec.name == name)?;
        agent.spec.canary.clone()
    }

    #[test]
    fn cadence_merges_key_by_key_and_the_task_comes_whole() {
        let config = load(
            "defaults:\n  canary: {interval: 10m, on_failure: unhealthy}\n\
             checks:\n  assistant:\n    protocol: a2a\n    canary:\n      timeout: 30s\n      \
             a2a: {text: \"What is 2+2?\", expect: {contains: \"4\", max_latency: 5s}}\n\
             agents:\n  - {name: a, type: assistant, url: \"http://127.0.0.1:1/\", canary: {failure_threshold: 2}}\n  \
             - {name: plain, type: other, url: \"http://127.0.0.1:1/health\"}\n",
        )
        .unwrap();
        let canary = canary_of(&config, "a").expect("a canary");
        assert_eq!(canary.interval, Duration::from_secs(600));
        assert_eq!(canary.timeout, Duration::from_secs(30));
        assert_eq!(canary.on_failure, OnFailure::Unhealthy);
        assert_eq!(canary.failure_threshold, 2);
        assert_eq!(
            canary.task,
            CanaryTask::A2a {
                text: "What is 2+2?".into()
            }
        );
        assert_eq!(canary.expect.contains.as_deref(), Some("4"));
        assert_eq!(canary.expect.max_latency, Some(Duration::from_secs(5)));
        assert!(
            canary_of(&config, "plain").is_none(),
            "a cadence in defaults is no canary"
        );
    }

    #[test]
    fn openai_defaults_and_the_path_on_the_agents_origin() {
        let config = load(
            "agents:\n  - name: llm\n    type: t\n    url: \"https://user:pw@10.0.0.5:8000/health?x=1\"\n    \
             canary: {openai: {model: small, prompt: \"Say pong.\"}}\n",
        )
        .unwrap();
        let canary = canary_of(&config, "llm").unwrap();
        assert_eq!(canary.interval, DEFAULT_CANARY_INTERVAL);
        assert_eq!(canary.timeout, DEFAULT_CANARY_TIMEOUT);
        assert_eq!(canary.on_failure, OnFailure::Degraded);
        let CanaryTask::OpenAi {
            max_tokens,
            url,
            stream,
            ..
        } = &canary.task
        else {
            panic!("not openai: {:?}", canary.task);
        };
        assert_eq!(*max_tokens, DEFAULT_MAX_TOKENS);
        assert!(!stream);
        assert_eq!(url.as_str(), "https://10.0.0.5:8000/v1/chat/completions");
    }

    #[test]
    fn a_short_interval_alone_gets_a_timeout_that_fits() {
        let config = load(
            "agents:\n  - name: a\n    type: t\n    url: http://127.0.0.1:1/\n    \
             canary: {interval: 10s, openai: {model: m, prompt: p}}\n",
        )
        .unwrap();
        let canary = canary_of(&config, "a").unwrap();
        assert_eq!(canary.timeout, Duration::from_secs(8));
    }

    #[test]
    fn tasks_that_do_not_fit_the_agent_are_reported_with_the_fix() {
        let a2a_on_http = load(
            "agents:\n  - name: a\n    type: t\n    url: http://127.0.0.1:1/\n    canary: {a2a: {text: hi}}\n",
        )
        .unwrap_err();
        assert!(
            a2a_on_http.contains("`canary.a2a` needs `protocol: a2a`"),
            "{a2a_on_http}"
        );
        let mcp_on_a2a = load(
            "agents:\n  - name: a\n    type: t\n    url: http://127.0.0.1:1/\n    protocol: a2a\n    \
             canary: {mcp: {tool: echo}}\n",
        )
        .unwrap_err();
        assert!(
            mcp_on_a2a.contains("`canary.mcp` needs `protocol: mcp`"),
            "{mcp_on_a2a}"
        );
        let on_tcp = load(
            "agents:\n  - name: a\n    type: t\n    url: tcp://127.0.0.1:1\n    \
             canary: {openai: {model: m, prompt: p}}\n",
        )
        .unwrap_err();
        assert!(
            on_tcp.contains("applies only to http:// and https:// agents"),
            "{on_tcp}"
        );
        let openai_on_mcp = load(
            "agents:\n  - name: a\n    type: t\n    url: http://127.0.0.1:1/mcp\n    protocol: mcp\n    \
             canary: {openai: {model: m, prompt: p}}\n",
        );
        assert!(openai_on_mcp.is_ok(), "{openai_on_mcp:?}");
    }

    #[test]
    fn malformed_canaries_are_reported_at_their_place() {
        let cases = [
            (
                "canary: {a2a: {text: a}, openai: {model: m, prompt: p}}",
                "names a2a and openai tasks",
            ),
            ("canary: {interval: 1m}", "`canary` has no task"),
            (
                "canary: {interval: 1m, timeout: 1m, openai: {model: m, prompt: p}}",
                "canary timeout 1m is not shorter than canary interval 1m",
            ),
            (
                "canary: {on_failure: down, openai: {model: m, prompt: p}}",
                "use `degraded` (the default) or `unhealthy`",
            ),
            (
                "canary: {openai: {model: m, prompt: p, expect: {regex: \"(\"}}}",
                "canary expect.regex is not a valid regular expression",
            ),
            (
                "canary: {openai: {model: m, prompt: p, path: v1/chat}}",
                "is not an absolute path",
            ),
            (
                "canary: {openai: {model: m, prompt: p, path: \"//evil.example:9/x\"}}",
                "leaves the agent's origin (it names http://evil.example:9)",
            ),
            (
                "canary: {openai: {model: m, prompt: p, path: \"/\\\\evil.example/x\"}}",
                "leaves the agent's origin (it names http://evil.example)",
            ),
            (
                "canary: {openai: {model: m, prompt: p, max_tokens: 0}}",
                "must be at least 1",
            ),
            (
                "canary: {openai: {model: m, prompt: \" \"}}",
                "`canary.openai.prompt` is empty",
            ),
            ("canary: {openai: {model: m}}", "prompt"),
            ("canary: {mcp: {tool: echo, argumnts: {}}}", "argumnts"),
        ];
        for (canary, expected) in cases {
            let yaml = format!(
                "agents:\n  - name: a\n    type: t\n    url: http://127.0.0.1:1/mcp\n    protocol: mcp\n    {canary}\n"
            );
            let error = load(&yaml).unwrap_err();
            assert!(error.contains(expected), "{canary}: {error}");
            assert!(error.contains("t.yaml:"), "{canary}: no place in {error}");
        }
    }

    #[test]
    fn a_task_in_defaults_is_refused() {
        let error = load(
            "defaults:\n  canary: {openai: {model: m, prompt: p}}\nagents:\n  - {name: a, type: t, url: \"http://127.0.0.1:1/\"}\n",
        )
        .unwrap_err();
        assert!(error.contains("unknown field `openai`"), "{error}");
        assert!(
            error.contains("failure_threshold"),
            "the keys it takes: {error}"
        );
    }

    #[test]
    fn a_changed_canary_changes_the_spec_and_an_unchanged_one_keeps_it() {
        let yaml = |prompt: &str| {
            format!(
                "agents:\n  - name: a\n    type: t\n    url: http://127.0.0.1:1/\n    \
                 canary: {{openai: {{model: m, prompt: {prompt}}}}}\n"
            )
        };
        let first = load(&yaml("one")).unwrap();
        let same = load(&yaml("one")).unwrap();
        let other = load(&yaml("two")).unwrap();
        assert_eq!(first.agents[0].spec, same.agents[0].spec);
        assert_ne!(first.agents[0].spec, other.agents[0].spec);
    }
}
