//! The gRPC health probe (`grpc://`, `grpcs://`): one fresh HTTP/2 connection per probe
//! (grpc_conn.rs), over which tonic-health's generated client calls
//! `grpc.health.v1.Health/Check`; the answer becomes the probe's outcome and status code.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::expect::degraded_by;
use super::grpc_conn::{drive, open, Setup, SharedTap, Tap, CLIENT_CERT_HINT};
use super::{timed_out, Failure};
use super::{FailureReason, Outcome, ProbeResult, ProtocolReport};
use crate::config::{AgentSpec, GrpcTarget};

/// gRPC status codes are small; -1 is what `agent_grpc_status_code` shows when none came.
pub const NO_STATUS: i32 = -1;

pub(super) async fn probe(spec: &AgentSpec, grpc: &GrpcTarget) -> ProbeResult {
    let started = Instant::now();
    let mut setup = Setup::default();
    let mut grpc_status = None;
    let attempt = tokio::time::timeout(
        spec.timeout,
        check(spec, grpc, &mut setup, &mut grpc_status),
    )
    .await;
    let duration = started.elapsed();
    let outcome = match attempt {
        Ok(Ok(())) => match degraded_by(&spec.degraded, duration, None) {
            Some(why) => Outcome::Degraded(why),
            None => Outcome::Healthy,
        },
        Ok(Err(failure)) => failure.into_outcome(),
        Err(_) => timed_out(spec.timeout, setup.stage),
    };
    ProbeResult {
        ended_at: SystemTime::now(),
        duration,
        phases: setup.phases,
        http_status: None,
        cert_expiry: setup.cert_expiry,
        protocol: ProtocolReport {
            grpc_status: Some(grpc_status.unwrap_or(NO_STATUS)),
            info: None,
        },
        outcome,
    }
}

/// Connects and calls Check; Ok when the answer is SERVING.
async fn check(
    spec: &AgentSpec,
    grpc: &GrpcTarget,
    setup: &mut Setup,
    grpc_status: &mut Option<i32>,
) -> Result<(), Failure> {
    let tap: SharedTap = Arc::new(Mutex::new(Tap::default()));
    let (service, mut driver) = open(spec, grpc, setup, &tap, None).await?;
    setup.stage = "first_byte";
    let sent = Instant::now();
    let mut client = HealthClient::with_origin(service.clone(), service.origin());
    let answer = drive(&mut driver, &tap, client.check(health_request(grpc))).await;
    let ended = Instant::now();
    let (headers_at, transport, closed) = match tap.lock() {
        Ok(mut tap) => (tap.headers_at, tap.transport.take(), tap.closed_by_peer),
        Err(_) => (None, None, false),
    };
    let first_byte_at = headers_at.unwrap_or(ended);
    setup.phases.first_byte += first_byte_at.saturating_duration_since(sent);
    setup.phases.transfer += ended.saturating_duration_since(first_byte_at);
    match answer {
        Ok(response) => {
            *grpc_status = Some(Code::Ok as i32);
            judge_serving(response.into_inner().status, &grpc.service)
        }
        // The exchange broke below gRPC: the status tonic made up from it is not the server's.
        Err(_) if transport.is_some() => {
            let failure = transport
                .unwrap_or_else(|| Failure::new(FailureReason::Protocol, "HTTP/2 exchange failed"));
            if grpc.secure && closed && headers_at.is_none() {
                Err(closed_after_handshake(spec))
            } else {
                Err(failure)
            }
        }
        Err(status) => {
            *grpc_status = Some(status.code() as i32);
            Err(status_failure(&status, grpc))
        }
    }
}

/// A TLS server that refuses the client's certificate (or its absence) may close the connection
/// without an alert once the handshake is over from our side (TLS 1.3): grpcio does so.
fn closed_after_handshake(spec: &AgentSpec) -> Failure {
    let has_cert = spec
        .http
        .tls
        .as_ref()
        .is_some_and(|tls| tls.config().client_auth_cert_resolver.has_certs());
    let why = if has_cert {
        " (the server may not accept our client certificate)"
    } else {
        CLIENT_CERT_HINT
    };
    Failure::new(
        FailureReason::Tls,
        format!("the server closed the connection right after the TLS handshake{why}"),
    )
}

/// A Check (or Watch) request with the configured service and metadata.
pub(super) fn health_request(grpc: &GrpcTarget) -> tonic::Request<HealthCheckRequest> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: grpc.service.clone(),
    });
    let headers = request.metadata_mut().as_mut();
    for (name, value) in &grpc.metadata {
        // A rotated secret that no longer fits a header was refused when read; skip it here.
        if let Some(value) = value.value() {
            headers.append(name.clone(), value);
        }
    }
    request
}

/// SERVING passes; every other serving status is `not_serving`, named in the error.
pub(super) fn judge_serving(status: i32, service: &str) -> Result<(), Failure> {
    let status = ServingStatus::try_from(status).unwrap_or(ServingStatus::Unknown);
    if status == ServingStatus::Serving {
        return Ok(());
    }
    let subject = if service.is_empty() {
        "the server".to_owned()
    } else {
        format!("service {service:?}")
    };
    Err(Failure::new(
        FailureReason::NotServing,
        format!("{subject} reports {}", status.as_str_name()),
    ))
}

/// A non-OK status: `grpc_status` with the code's name and a hint for the usual mistakes.
pub(super) fn status_failure(status: &tonic::Status, grpc: &GrpcTarget) -> Failure {
    let mut error = format!("Health/Check ended with {}", code_name(status.code()));
    let message = status.message();
    if !message.is_empty() {
        let cut: String = message.chars().take(200).collect();
        error.push_str(&format!(": {cut}"));
    }
    if grpc.service.contains('/') {
        error.push_str(
            " (`grpc.service` takes a service name such as \"pkg.Service\", not a method path)",
        );
    } else {
        match status.code() {
            Code::Unimplemented => error.push_str(" (the server offers no grpc.health.v1.Health)"),
            Code::NotFound => error.push_str(" (the server does not know this service name)"),
            Code::Unavailable if grpc.secure => error.push_str(
                " (a server that wants a client certificate answers so: set grpc.tls.cert_file and key_file)",
            ),
            _ => {}
        }
    }
    Failure::new(FailureReason::GrpcStatus, error)
}

/// The canonical name of a status code, as gRPC's own tools print it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(service: &str) -> GrpcTarget {
        GrpcTarget {
            host: "127.0.0.1".into(),
            port: 50051,
            secure: false,
            service: service.into(),
            metadata: Vec::new(),
            authority: None,
            watch: false,
        }
    }

    #[test]
    fn only_serving_passes_and_the_error_names_the_status() {
        assert!(judge_serving(ServingStatus::Serving as i32, "").is_ok());
        for status in [
            ServingStatus::NotServing,
            ServingStatus::Unknown,
            ServingStatus::ServiceUnknown,
        ] {
            let failure = judge_serving(status as i32, "billing.Ledger").unwrap_err();
            assert_eq!(failure.reason, FailureReason::NotServing);
            assert_eq!(
                failure.error,
                format!(
                    "service \"billing.Ledger\" reports {}",
                    status.as_str_name()
                )
            );
        }
    }

    #[test]
    fn a_method_path_in_service_gets_a_hint() {
        let status = tonic::Status::not_found("unknown service");
        let failure = status_failure(&status, &target("pkg.Svc/Check"));
        assert_eq!(failure.reason, FailureReason::GrpcStatus);
        assert!(failure
            .error
            .starts_with("Health/Check ended with NOT_FOUND: unknown service"));
        assert!(
            failure.error.contains("not a method path"),
            "{}",
            failure.error
        );
    }

    #[test]
    fn code_names_are_the_canonical_ones() {
        assert_eq!(code_name(Code::Unimplemented), "UNIMPLEMENTED");
        assert_eq!(code_name(Code::from_i32(14)), "UNAVAILABLE");
    }
}
