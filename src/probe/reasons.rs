//! Which failure reasons each kind of agent can produce: the `agent_probe_failures_total`
//! series an agent has from its start, so that `rate()` sees its first failure, without a
//! series per agent for reasons its probe never gives (an HTTP agent never misses a heartbeat).
//! A reason outside the set that happens anyway still gets its series (`metrics/families.rs`).
//!
//! The sets are read off the probes, one row per kind; every probe run in a debug build checks
//! its reason against its row (`probe::run`, and the heartbeat deadlines), so a probe that
//! learns a new reason fails the tests until the table says so. `docs/failure-reasons.md` is
//! this table for people; a test keeps the two equal.

use super::FailureReason::{self, *};
use crate::config::Target;

/// What an agent is probed with, as far as its failure reasons go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// `http://` and `https://` URLs probed by `probe/http.rs`.
    Http,
    Tcp,
    Grpc,
    Mcp,
    A2a,
    /// Agents that report in (`heartbeat.rs`), never probed.
    Heartbeat,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 6] = [
        ProbeKind::Http,
        ProbeKind::Tcp,
        ProbeKind::Grpc,
        ProbeKind::Mcp,
        ProbeKind::A2a,
        ProbeKind::Heartbeat,
    ];

    pub fn of(target: &Target) -> ProbeKind {
        match target {
            Target::Http(_) => ProbeKind::Http,
            Target::Tcp { .. } => ProbeKind::Tcp,
            Target::Grpc(_) => ProbeKind::Grpc,
            Target::Mcp(_) => ProbeKind::Mcp,
            Target::A2a(_) => ProbeKind::A2a,
            Target::Heartbeat(_) => ProbeKind::Heartbeat,
        }
    }

    /// The kind as `docs/failure-reasons.md` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Http => "http, https",
            ProbeKind::Tcp => "tcp",
            ProbeKind::Grpc => "grpc, grpcs",
            ProbeKind::Mcp => "mcp",
            ProbeKind::A2a => "a2a",
            ProbeKind::Heartbeat => "heartbeat",
        }
    }

    /// The reasons this kind's probe can end with.
    pub fn reasons(self) -> Reasons {
        match self {
            ProbeKind::Http => HTTP,
            ProbeKind::Tcp => TCP,
            ProbeKind::Grpc => GRPC,
            ProbeKind::Mcp => MCP,
            ProbeKind::A2a => A2A,
            ProbeKind::Heartbeat => HEARTBEAT,
        }
    }
}

// The table. Every probe can time out (`probe::timed_out`), and every probe that connects
// resolves and connects through `net.rs` (`dns`, `connect`).

/// `http.rs`: TLS through `tls.rs`, also for an http:// agent redirected to https://;
/// `http1.rs`, `request.rs`: `protocol`; its body limit: `body_too_large`; `expect.rs`:
/// `http_status`, `body_mismatch`; `redirect.rs`: `redirect`.
const HTTP: Reasons = Reasons::of(&[
    Timeout,
    Dns,
    Connect,
    Tls,
    HttpStatus,
    BodyMismatch,
    BodyTooLarge,
    Redirect,
    Protocol,
]);

/// `tcp.rs`: a connection accepted in time is all it asks.
const TCP: Reasons = Reasons::of(&[Timeout, Dns, Connect]);

/// `grpc.rs`, `grpc_conn.rs`: TLS and ALPN (`tls`), HTTP/2 and framing (`protocol`), a call
/// that ends without OK (`grpc_status`), a status other than SERVING (`not_serving`). No HTTP
/// status, body or redirect reaches a gRPC agent's verdict.
const GRPC: Reasons = Reasons::of(&[Timeout, Dns, Connect, Tls, Protocol, GrpcStatus, NotServing]);

/// `mcp.rs`, `mcp_transport.rs`, `mcp_legacy.rs` over `http_session.rs` (which follows no
/// redirect): status, body limit and framing as HTTP, a tool missing (`body_mismatch`), a
/// JSON-RPC error (`not_serving`).
const MCP: Reasons = Reasons::of(&[
    Timeout,
    Dns,
    Connect,
    Tls,
    HttpStatus,
    BodyMismatch,
    BodyTooLarge,
    Protocol,
    NotServing,
]);

/// `a2a.rs` over `http_session.rs`: the agent card's status, size and framing, and its
/// content (`body_mismatch`: not JSON, a field or skill missing).
const A2A: Reasons = Reasons::of(&[
    Timeout,
    Dns,
    Connect,
    Tls,
    HttpStatus,
    BodyMismatch,
    BodyTooLarge,
    Protocol,
]);

/// `heartbeat.rs`: silence (`missed`), a reported failure (`reported`), an open run past its
/// `max_run_time` (`timeout`).
const HEARTBEAT: Reasons = Reasons::of(&[Timeout, Missed, Reported]);

/// A set of failure reasons, one bit per `FailureReason::index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reasons(u32);

impl Reasons {
    const fn of(reasons: &[FailureReason]) -> Reasons {
        let mut bits = 0;
        let mut i = 0;
        while i < reasons.len() {
            bits |= 1 << reasons[i] as u32;
            i += 1;
        }
        Reasons(bits)
    }

    pub fn contains(self, reason: FailureReason) -> bool {
        self.0 & (1 << reason.index()) != 0
    }

    /// The reasons of the set, in label order.
    pub fn iter(self) -> impl Iterator<Item = FailureReason> {
        FailureReason::ALL
            .into_iter()
            .filter(move |r| self.contains(*r))
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Debug builds: a probe that ended with a reason its kind's row does not list is a table to
/// fix, not a series to leave out of the start.
pub(crate) fn debug_check(kind: ProbeKind, outcome: &super::Outcome) {
    if let Some(reason) = outcome.reason() {
        debug_assert!(
            kind.reasons().contains(reason),
            "a {kind:?} probe failed with `{reason}`, which src/probe/reasons.rs does not list for its kind"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_belongs_to_some_kind() {
        for reason in FailureReason::ALL {
            assert!(
                ProbeKind::ALL.iter().any(|k| k.reasons().contains(reason)),
                "{reason} is produced by no kind"
            );
        }
    }

    #[test]
    fn every_kind_can_time_out_and_only_heartbeats_miss_or_report() {
        for kind in ProbeKind::ALL {
            let reasons = kind.reasons();
            assert!(reasons.contains(Timeout), "{kind:?}");
            let heartbeat = kind == ProbeKind::Heartbeat;
            assert_eq!(reasons.contains(Missed), heartbeat, "{kind:?}");
            assert_eq!(reasons.contains(Reported), heartbeat, "{kind:?}");
        }
    }

    #[test]
    fn http_agents_have_nine_reasons_not_the_protocol_ones() {
        let http = ProbeKind::Http.reasons();
        assert_eq!(http.len(), 9);
        for other in [GrpcStatus, NotServing, Missed, Reported] {
            assert!(!http.contains(other), "{other}");
        }
    }

    /// `docs/failure-reasons.md` lists the same sets, in the same order, as this table.
    #[test]
    fn the_documented_table_is_this_table() {
        let doc = include_str!("../../docs/failure-reasons.md");
        for kind in ProbeKind::ALL {
            let listed: Vec<&str> = kind.reasons().iter().map(FailureReason::as_str).collect();
            let row = format!(
                "| {} | {} | {} |",
                kind.as_str(),
                listed.len(),
                listed
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            assert!(
                doc.lines().any(|line| line.trim() == row),
                "docs/failure-reasons.md lacks the row\n{row}"
            );
        }
    }
}
