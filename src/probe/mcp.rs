//! The MCP probe (`protocol: mcp`) over the streamable-HTTP transport, in either era: the
//! stateless 2026-07-28 one (`server/discover`, then `tools/list` when tools are expected) is
//! tried first; a server that answers as one of the handshake era does is probed with the
//! legacy lifecycle (`mcp_legacy`). The era found is remembered per agent and tried first
//! next time. Answers may be JSON or SSE-framed; phases are summed over both attempts.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

use super::expect::succeeded;
use super::mcp_legacy::{self, HANDSHAKE_VERSIONS};
use super::mcp_transport::{
    Discovery, RpcError, Transport, HEADER_MISMATCH, METHOD_NOT_FOUND, MODERN_VERSION,
    UNSUPPORTED_VERSION,
};
use super::progress::Progress;
use super::{Failure, FailureReason, ProbeResult, ProtocolInfo};
use crate::config::{AgentSpec, McpTarget};

/// Pages of tools/list followed at most.
const MAX_PAGES: usize = 20;
/// Agents remembered as of the handshake era, at most: above the default `max_targets` of a
/// source; past it one entry makes room for the next (it costs one `server/discover` more).
const MAX_REMEMBERED: usize = 262_144;

/// Hashes of the agents (name and URL) last found to be of the handshake era. Per agent, not
/// per URL: two agents of one gateway URL may reach different servers through their headers.
/// The stateless era is the default and needs no entry: 8-byte hashes keep the memory small.
static LEGACY: Mutex<Option<HashSet<u64>>> = Mutex::new(None);

/// The two eras of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Era {
    Modern,
    Legacy,
}

/// How an attempt in one era ended short of success.
#[derive(Debug)]
pub(super) enum Attempt {
    /// The server refused this era's version: the other era is worth trying.
    VersionRefused(Failure),
    Failed(Failure),
}

impl From<Failure> for Attempt {
    fn from(failure: Failure) -> Self {
        Attempt::Failed(failure)
    }
}

pub(super) async fn probe(spec: &AgentSpec, mcp: &McpTarget) -> ProbeResult {
    let started = Instant::now();
    let mut progress = Progress::default();
    // Outside the timed exchange: the session it opened is ended whatever became of it.
    let mut talk = Transport::new(&spec.http, &mcp.url);
    let key = agent_key(&spec.name, &mcp.url);
    let mut found = None;
    let exchange = exchange(&mut talk, mcp, remembered(key), &mut found, &mut progress);
    let attempt = tokio::time::timeout(spec.timeout, exchange).await;
    if let Some(era) = found {
        remember(key, era);
    }
    // No document to read JSON rules on (the config refuses `degraded.json` here): latency only.
    let result = progress.finish(started, spec.timeout, attempt, |(), duration| {
        succeeded(&spec.degraded, duration, None)
    });
    talk.end();
    result
}

/// The versions we speak, for errors.
pub(super) fn spoken() -> String {
    let mut all = vec![MODERN_VERSION];
    all.extend(HANDSHAKE_VERSIONS);
    all.join(", ")
}

/// One era, then the other when the server refused the first one's version. `found` is the
/// era the server turned out to speak, set as soon as it is known.
async fn exchange(
    talk: &mut Transport,
    mcp: &McpTarget,
    first: Era,
    found: &mut Option<Era>,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let second = match first {
        Era::Modern => Era::Legacy,
        Era::Legacy => Era::Modern,
    };
    let refused = match attempt(talk, mcp, first, found, progress).await {
        Ok(()) => return Ok(()),
        Err(Attempt::Failed(failure)) => return Err(failure),
        Err(Attempt::VersionRefused(failure)) => failure,
    };
    match attempt(talk, mcp, second, found, progress).await {
        Ok(()) => Ok(()),
        Err(Attempt::Failed(failure)) => Err(failure),
        // Both eras refused: the last word says which versions the server speaks.
        Err(Attempt::VersionRefused(last)) => Err(refused_by_both(&refused, &last)),
    }
}

async fn attempt(
    talk: &mut Transport,
    mcp: &McpTarget,
    era: Era,
    found: &mut Option<Era>,
    progress: &mut Progress,
) -> Result<(), Attempt> {
    let result = match era {
        Era::Modern => modern(talk, mcp, found, progress).await,
        Era::Legacy => mcp_legacy::exchange(talk, mcp, progress).await,
    };
    if era == Era::Legacy && !matches!(result, Err(Attempt::VersionRefused(_))) {
        // initialize was answered: a server of the handshake era.
        if progress.info.is_some() {
            *found = Some(Era::Legacy);
        }
    }
    result
}

fn refused_by_both(first: &Failure, last: &Failure) -> Failure {
    // Neither era's request reached an MCP endpoint (a wrong path, a proxy's 404): the HTTP
    // status is the answer, not a version mismatch.
    if first.reason == FailureReason::HttpStatus && last.reason == FailureReason::HttpStatus {
        return Failure::new(
            FailureReason::HttpStatus,
            format!("{}; {}", first.error, last.error),
        );
    }
    Failure::new(
        FailureReason::Protocol,
        format!(
            "no protocol version in common (we speak {}): {}; {}",
            spoken(),
            first.error,
            last.error
        ),
    )
}

/// The stateless era: `server/discover`, then `tools/list` when tools are expected.
async fn modern(
    talk: &mut Transport,
    mcp: &McpTarget,
    found: &mut Option<Era>,
    progress: &mut Progress,
) -> Result<(), Attempt> {
    talk.modern = true;
    let result = match talk.discover(1, progress).await? {
        Discovery::Result(result) => result,
        Discovery::Error(error, status) => return Err(discover_error(&error, status)),
        Discovery::Refused(status) => {
            let failure = Failure::new(
                FailureReason::HttpStatus,
                format!("server/discover: HTTP status {status}"),
            );
            // The spec's rule for a client of both eras: a 400 without a modern error (and
            // 404 or 405, as the older transport answers an unknown POST) is a server of the
            // handshake era. Any other status (401, 403, 5xx …) is the answer.
            return Err(if matches!(status, 400 | 404 | 405) {
                Attempt::VersionRefused(failure)
            } else {
                Attempt::Failed(failure)
            });
        }
    };
    let versions = string_list(result.get("supportedVersions"));
    if !versions.iter().any(|v| v == MODERN_VERSION) {
        return Err(Attempt::VersionRefused(Failure::new(
            FailureReason::Protocol,
            format!("server/discover: the server speaks {}", listed(&versions)),
        )));
    }
    let info = result
        .get("_meta")
        .and_then(|m| m.get("io.modelcontextprotocol/serverInfo"));
    progress.info = Some(server_info(info, MODERN_VERSION));
    *found = Some(Era::Modern);
    if !mcp.expect_tools.is_empty() {
        check_tools(talk, mcp, progress).await?;
    }
    Ok(())
}

/// A JSON-RPC error to `server/discover`, carried by an answer of HTTP `status`. A server of the
/// handshake era refuses the sessionless request in a 4xx (its error is none of this era's), or
/// answers "method not found": then the handshake is worth trying. -32022 naming only versions
/// we do not speak is the server's last word. Any other error comes from a server of this era
/// that is not serving: `not_serving`, as the Contract says of an MCP JSON-RPC error.
fn discover_error(error: &RpcError, status: u16) -> Attempt {
    let failure = Failure::new(
        FailureReason::Protocol,
        format!(
            "server/discover: JSON-RPC error {}: {}",
            error.code,
            error.message.chars().take(200).collect::<String>()
        ),
    );
    if error.code != UNSUPPORTED_VERSION {
        let refused_as_legacy = matches!(status, 400 | 404 | 405) && error.code != HEADER_MISMATCH;
        return if error.code == METHOD_NOT_FOUND || refused_as_legacy {
            Attempt::VersionRefused(failure)
        } else if (400..500).contains(&status) {
            // Credentials refused, a rate limit …: the answer, whatever the era.
            let rpc = error.failure("server/discover");
            Attempt::Failed(Failure::new(
                FailureReason::HttpStatus,
                format!("server/discover: HTTP status {status}: {}", rpc.error),
            ))
        } else {
            Attempt::Failed(error.failure("server/discover"))
        };
    }
    let supported = string_list(error.data.as_ref().and_then(|d| d.get("supported")));
    if supported.is_empty()
        || supported
            .iter()
            .any(|v| HANDSHAKE_VERSIONS.contains(&v.as_str()))
    {
        return Attempt::VersionRefused(failure);
    }
    Attempt::Failed(Failure::new(
        FailureReason::Protocol,
        format!(
            "server/discover: the server speaks {}, we speak {}",
            listed(&supported),
            spoken()
        ),
    ))
}

/// What the server said of itself (an `Implementation`: `name`, `version`), in either era.
pub(super) fn server_info(implementation: Option<&Value>, protocol_version: &str) -> ProtocolInfo {
    let text = |key: &str| {
        implementation
            .and_then(|s| s.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    ProtocolInfo::reported("mcp", text("name"), text("version"), protocol_version)
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|v| v.chars().take(32).collect())
                .take(16)
                .collect()
        })
        .unwrap_or_default()
}

fn listed(versions: &[String]) -> String {
    if versions.is_empty() {
        "no version it names".to_owned()
    } else {
        versions.join(", ")
    }
}

/// Fails with `body_mismatch` naming the expected tools `tools/list` lacks.
pub(super) async fn check_tools(
    talk: &mut Transport,
    mcp: &McpTarget,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let tools = tools(talk, progress).await?;
    let missing: Vec<&str> = mcp
        .expect_tools
        .iter()
        .filter(|t| !tools.contains(t))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            FailureReason::BodyMismatch,
            format!("tools/list lacks {}", missing.join(", ")),
        ))
    }
}

/// Every tool name, following `nextCursor`.
async fn tools(talk: &mut Transport, progress: &mut Progress) -> Result<Vec<String>, Failure> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let result = talk
            .call(3 + page as u64, "tools/list", params, progress)
            .await?
            .map_err(|e| e.failure("tools/list"))?;
        let tools = result
            .get("tools")
            .and_then(Value::as_array)
            .ok_or_else(|| Failure::new(FailureReason::Protocol, "tools/list: no tools array"))?;
        names.extend(
            tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .map(str::to_owned),
        );
        cursor = result
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    Ok(names)
}

fn agent_key(name: &str, url: &url::Url) -> u64 {
    let mut hasher = DefaultHasher::new();
    (name, url.as_str()).hash(&mut hasher);
    hasher.finish()
}

fn remembered(key: u64) -> Era {
    let legacy = LEGACY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match legacy.as_ref() {
        Some(set) if set.contains(&key) => Era::Legacy,
        _ => Era::Modern,
    }
}

fn remember(key: u64, era: Era) {
    let mut legacy = LEGACY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let set = legacy.get_or_insert_with(HashSet::new);
    match era {
        Era::Modern => {
            set.remove(&key);
        }
        Era::Legacy => {
            if set.len() >= MAX_REMEMBERED && !set.contains(&key) {
                if let Some(&old) = set.iter().next() {
                    set.remove(&old);
                }
            }
            set.insert(key);
        }
    }
}

/// Whether the agent was last found to be of the handshake era: its canary starts there.
pub(super) fn remembered_legacy(spec: &AgentSpec, mcp: &McpTarget) -> bool {
    remembered(agent_key(&spec.name, &mcp.url)) == Era::Legacy
}

/// Records the era the agent's canary found, as its probe does.
pub(super) fn remember_era(spec: &AgentSpec, mcp: &McpTarget, legacy: bool) {
    let era = if legacy { Era::Legacy } else { Era::Modern };
    remember(agent_key(&spec.name, &mcp.url), era);
}
