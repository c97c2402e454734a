#![forbid(unsafe_code)]
//! agent-health-exporter: probes a fleet of agents on its own schedule and exposes their health
//! to Prometheus. Data flows one way: config → scheduler → probe → monitor → metrics, logs,
//! events → server.

pub mod app;
pub mod cli;
pub mod config;
pub mod config_watch;
pub mod discovery;
pub mod forward;
pub mod healthcheck;
pub mod heartbeat;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod probe;
pub mod relabel;
pub mod reload;
pub mod scheduler;
pub mod server;
pub mod shard;
