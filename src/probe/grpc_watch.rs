//! gRPC health Watch (`grpc: {watch: true}`): one Health/Watch stream per agent, kept open
//! between the scheduled Check probes. A pushed status other than SERVING is handed to `on_push`
//! (the scheduler turns it into an immediate `unhealthy`); SERVING is left to the next probe.
//! HTTP/2 PINGs tell a stream whose peer vanished silently from a quiet one; `on_up` follows
//! whether the stream is open (`agent_grpc_watch_up`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Code;
use tonic_health::pb::health_client::HealthClient;

use super::grpc::{health_request, judge_serving};
use super::grpc_conn::{drive, open, KeepAlive, Setup, SharedTap, Tap};
use super::Failure;
use super::FailureReason;
use crate::config::{AgentSpec, GrpcTarget};

/// Waits after a broken stream: doubles from the first to the cap; a stream that lasted longer
/// than the cap starts over from the first.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Each wait is spread by up to this share either way, so that the streams of a fleet that
/// broke together (a server restart) do not all come back in the same instant.
const JITTER: f64 = 0.2;

/// PINGs on the stream's connection. gRPC servers (grpc-core, grpc-go) accept a PING on a
/// connection without data at most every 5 minutes by default and close it with GOAWAY
/// `too_many_pings` after two earlier ones: 30 s made a quiet Watch stream flap every couple of
/// minutes against grpcio. So the time is the servers' floor; a silently dead stream is noticed
/// within about 5 minutes, while the agent's scheduled Check probes keep its health current.
const KEEP_ALIVE: KeepAlive = KeepAlive {
    time: Duration::from_secs(300),
    timeout: Duration::from_secs(20),
};

/// Debug builds only: `<time>,<timeout>` (e.g. `300ms,300ms`) replaces `KEEP_ALIVE`, so that the
/// tests see a silent peer noticed in a second. A release binary does not read it.
#[cfg(debug_assertions)]
pub const TEST_KEEP_ALIVE_VAR: &str = "AHE_TEST_GRPC_KEEPALIVE";

/// Why a stream ended, which says when to try again.
enum Ended {
    /// Broken or refused: again after the backoff.
    Broken(Failure),
    /// The server has no Watch (UNIMPLEMENTED): again after a probe interval, not a backoff;
    /// the scheduled Check probes go on meanwhile.
    Unimplemented(Failure),
}

/// Keeps a Watch stream open to the agent until the task is aborted (agent removed or changed).
/// Never more than one stream at a time: each is closed before the next is opened.
pub async fn watch(
    spec: Arc<AgentSpec>,
    on_push: impl Fn(FailureReason, String),
    on_up: impl Fn(bool),
) {
    let crate::config::Target::Grpc(grpc) = &spec.target else {
        return;
    };
    let keep_alive = keep_alive();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let opened = Instant::now();
        let ended = stream(&spec, grpc, keep_alive, &on_push, &on_up).await;
        on_up(false);
        let wait = match ended {
            Ended::Broken(failure) => {
                tracing::debug!(agent = %spec.name, error = %failure.error, "gRPC Watch stream ended");
                if opened.elapsed() > MAX_BACKOFF {
                    backoff = FIRST_BACKOFF;
                }
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
            Ended::Unimplemented(failure) => {
                tracing::debug!(
                    agent = %spec.name,
                    error = %failure.error,
                    "gRPC Watch is not implemented by the server; trying again after an interval"
                );
                backoff = FIRST_BACKOFF;
                spec.interval
            }
        };
        tokio::time::sleep(jittered(wait)).await;
    }
}

/// One stream, from connecting to its end; answers why it ended.
async fn stream(
    spec: &AgentSpec,
    grpc: &GrpcTarget,
    keep_alive: KeepAlive,
    on_push: &impl Fn(FailureReason, String),
    on_up: &impl Fn(bool),
) -> Ended {
    let tap: SharedTap = Arc::new(Mutex::new(Tap::default()));
    let mut setup = Setup::default();
    // Setting up is bounded like a probe; the open stream is then watched by PINGs.
    let opening = tokio::time::timeout(spec.timeout, async {
        let (service, mut driver) = open(spec, grpc, &mut setup, &tap, Some(keep_alive))
            .await
            .map_err(Ended::Broken)?;
        let mut client = HealthClient::with_origin(service.clone(), service.origin());
        let call = drive(&mut driver, &tap, client.watch(health_request(grpc))).await;
        match call {
            // The sender is kept with the stream: hyper ends a connection whose senders are
            // all gone, open streams or not.
            Ok(response) => Ok((response.into_inner(), driver, client)),
            Err(status) => Err(ended_by(&status, grpc)),
        }
    })
    .await;
    let (mut messages, mut driver, _client) = match opening {
        Ok(Ok(open)) => open,
        Ok(Err(ended)) => return ended,
        Err(_) => {
            return Ended::Broken(Failure::new(
                FailureReason::Timeout,
                "opening the Watch stream timed out",
            ))
        }
    };
    on_up(true);
    loop {
        tokio::select! {
            message = messages.message() => match message {
                Ok(Some(update)) => {
                    if let Err(failure) = judge_serving(update.status, &grpc.service) {
                        on_push(
                            failure.reason,
                            format!("{} (pushed on Watch)", failure.error),
                        );
                    }
                }
                Ok(None) => {
                    return Ended::Broken(Failure::new(
                        FailureReason::Protocol,
                        "the server ended the stream",
                    ))
                }
                Err(status) => return ended_by(&status, grpc),
            },
            // The connection ended: a PING went unanswered, or the peer closed it. hyper says
            // no more than that (its connection future ends without an error either way), and
            // the stream's own end may not have reached it yet.
            _ = driver.as_mut() => {
                return Ended::Broken(Failure::new(
                    FailureReason::Protocol,
                    format!(
                        "the connection ended: closed by the server, or an HTTP/2 PING not \
                         answered within {}",
                        humantime::format_duration(keep_alive.timeout)
                    ),
                ));
            }
        }
    }
}

fn ended_by(status: &tonic::Status, grpc: &GrpcTarget) -> Ended {
    let failure = super::grpc::status_failure(status, grpc);
    if status.code() == Code::Unimplemented {
        Ended::Unimplemented(failure)
    } else {
        Ended::Broken(failure)
    }
}

/// The PINGs' times: `KEEP_ALIVE`, or in debug builds what `TEST_KEEP_ALIVE_VAR` says.
fn keep_alive() -> KeepAlive {
    #[cfg(debug_assertions)]
    if let Ok(text) = std::env::var(TEST_KEEP_ALIVE_VAR) {
        let parsed = text.split_once(',').and_then(|(time, timeout)| {
            Some(KeepAlive {
                time: humantime::parse_duration(time.trim()).ok()?,
                timeout: humantime::parse_duration(timeout.trim()).ok()?,
            })
        });
        match parsed {
            Some(keep_alive) => return keep_alive,
            None => tracing::warn!(
                value = %text,
                "{TEST_KEEP_ALIVE_VAR} is not `<time>,<timeout>` (e.g. `300ms,300ms`); using 30s,10s"
            ),
        }
    }
    KEEP_ALIVE
}

/// `wait` spread by up to `JITTER` either way.
fn jittered(wait: Duration) -> Duration {
    use std::hash::BuildHasher;
    // A fresh `RandomState` is randomly keyed: enough spread for a retry, without a dependency.
    let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
    wait.mul_f64(1.0 + JITTER * (2.0 * unit - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_spread_by_up_to_a_fifth_either_way() {
        let wait = Duration::from_secs(10);
        let waits: Vec<Duration> = (0..200).map(|_| jittered(wait)).collect();
        for w in &waits {
            assert!(
                (Duration::from_secs(8)..=Duration::from_secs(12)).contains(w),
                "{w:?}"
            );
        }
        let below = waits.iter().filter(|w| **w < Duration::from_millis(9500));
        let above = waits.iter().filter(|w| **w > Duration::from_millis(10500));
        assert!(below.count() > 10 && above.count() > 10, "{waits:?}");
    }
}
