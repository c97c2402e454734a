//! placeholder
use super::*;
pub(super) async fn probe(_spec: &AgentSpec, host: &str, port: u16) -> ProbeResult {
    let start = std::time::Instant::now();
    let outcome = match tokio::net::TcpStream::connect((host, port)).await {
        Ok(_) => Outcome::Healthy,
        Err(e) => Outcome::Failed {
            reason: FailureReason::Connect,
            error: e.to_string(),
        },
    };
    ProbeResult {
        ended_at: SystemTime::now(),
        duration: start.elapsed(),
        phases: Phases::default(),
        http_status: None,
        cert_expiry: None,
        outcome,
    }
}
