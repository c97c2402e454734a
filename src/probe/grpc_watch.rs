//! gRPC health Watch (`grpc: {watch: true}`): one Health/Watch stream per agent, kept open
//! between the scheduled Check probes. A pushed status other than SERVING is handed to `on_push`
//! (the scheduler turns it into an immediate `unhealthy`); SERVING is left to the next probe.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic_health::pb::health_client::HealthClient;

use super::grpc::{health_request, judge_serving};
use super::grpc_conn::{drive, open, Setup, SharedTap, Tap};
use super::Failure;
use super::FailureReason;
use crate::config::{AgentSpec, GrpcTarget};

/// Waits after a broken stream: doubles from the first to the cap; a stream that lasted longer
/// than the cap starts over from the first.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Keeps a Watch stream open to the agent until the task is aborted (agent removed or changed).
/// Never more than one stream at a time: each is closed before the next is opened.
pub async fn watch(spec: Arc<AgentSpec>, on_push: impl Fn(FailureReason, String)) {
    let crate::config::Target::Grpc(grpc) = &spec.target else {
        return;
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        let opened = Instant::now();
        let ended = stream(&spec, grpc, &on_push).await;
        tracing::debug!(agent = %spec.name, error = %ended.error, "gRPC Watch stream ended");
        if opened.elapsed() > MAX_BACKOFF {
            backoff = FIRST_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One stream, from connecting to its end; answers why it ended.
async fn stream(
    spec: &AgentSpec,
    grpc: &GrpcTarget,
    on_push: &impl Fn(FailureReason, String),
) -> Failure {
    let tap: SharedTap = Arc::new(Mutex::new(Tap::default()));
    let mut setup = Setup::default();
    // Setting up is bounded like a probe; the open stream then has no deadline.
    let opening = tokio::time::timeout(spec.timeout, async {
        let (service, mut driver) = open(spec, grpc, &mut setup, &tap).await?;
        let mut client = HealthClient::with_origin(service.clone(), service.origin());
        let call = drive(&mut driver, &tap, client.watch(health_request(grpc))).await;
        match call {
            Ok(response) => Ok((response.into_inner(), driver)),
            Err(status) => Err(super::grpc::status_failure(&status, grpc)),
        }
    })
    .await;
    let (mut messages, mut driver) = match opening {
        Ok(Ok(open)) => open,
        Ok(Err(failure)) => return failure,
        Err(_) => {
            return Failure::new(FailureReason::Timeout, "opening the Watch stream timed out")
        }
    };
    loop {
        match drive(&mut driver, &tap, messages.message()).await {
            Ok(Some(update)) => {
                if let Err(failure) = judge_serving(update.status, &grpc.service) {
                    on_push(
                        failure.reason,
                        format!("{} (pushed on Watch)", failure.error),
                    );
                }
            }
            Ok(None) => {
                return Failure::new(FailureReason::Protocol, "the server ended the stream")
            }
            Err(status) => return super::grpc::status_failure(&status, grpc),
        }
    }
}
