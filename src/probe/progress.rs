//! What an HTTP-based probe (http, mcp, a2a) has learnt so far, and the result it becomes.
//! It lives outside the timed future, so a probe cut short by its timeout still reports the
//! phases it completed, the last status it saw and the certificate it was served.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::time::error::Elapsed;

use super::{timed_out, Failure, Outcome, Phases, ProbeResult, ProtocolInfo, ProtocolReport};

#[derive(Debug, Default)]
pub(super) struct Progress {
    pub phases: Phases,
    /// The phase under way, named when the timeout cuts it short.
    pub stage: &'static str,
    pub http_status: Option<u16>,
    /// Earliest `notAfter` served by the agent's own host, over its hops, whether or not
    /// the certificate was then accepted.
    pub cert_expiry: Option<SystemTime>,
    /// What an mcp or a2a agent said about itself, kept when a later step fails.
    pub info: Option<ProtocolInfo>,
}

impl Progress {
    /// The probe's result once its exchange, run under `timeout` since `started`, ended with
    /// `attempt`; `judge` turns what a completed exchange returned into the outcome.
    pub fn finish<T>(
        self,
        started: Instant,
        timeout: Duration,
        attempt: Result<Result<T, Failure>, Elapsed>,
        judge: impl FnOnce(T, Duration) -> Outcome,
    ) -> ProbeResult {
        let duration = started.elapsed();
        let outcome = match attempt {
            Ok(Ok(answer)) => judge(answer, duration),
            Ok(Err(failure)) => failure.into_outcome(),
            Err(_) => timed_out(timeout, self.stage),
        };
        ProbeResult {
            ended_at: SystemTime::now(),
            duration,
            phases: self.phases,
            http_status: self.http_status,
            cert_expiry: self.cert_expiry,
            protocol: ProtocolReport {
                grpc_status: None,
                info: self.info.map(Arc::new),
            },
            outcome,
        }
    }
}
