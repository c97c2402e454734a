//! The TCP probe (`tcp://host:port`): healthy when a connection is accepted in time.
//! Resolving and connecting are `net`'s; this only judges the time it took.

use std::time::{Instant, SystemTime};

use super::expect::degraded_by;
use super::net::open;
use super::{timed_out, Outcome, Phases, ProbeResult};
use crate::config::AgentSpec;

pub(super) async fn probe(spec: &AgentSpec, host: &str, port: u16) -> ProbeResult {
    let started = Instant::now();
    let mut phases = Phases::default();
    let mut stage = "dns";
    let attempt =
        tokio::time::timeout(spec.timeout, open(host, port, &mut phases, &mut stage)).await;
    let duration = started.elapsed();
    let outcome = match attempt {
        Ok(Ok(_connection)) => match degraded_by(&spec.degraded, duration, None) {
            Some(why) => Outcome::Degraded(why),
            None => Outcome::Healthy,
        },
        Ok(Err(failure)) => failure.into_outcome(),
        Err(_) => timed_out(spec.timeout, stage),
    };
    ProbeResult {
        ended_at: SystemTime::now(),
        duration,
        phases,
        http_status: None,
        cert_expiry: None,
        protocol: Default::default(),
        outcome,
    }
}
