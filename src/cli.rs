//! Command-line flags, in the dotted style of Prometheus exporters.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Probes the agents listed in a YAML file on its own schedule and exposes their health to
/// Prometheus at /metrics.
#[derive(Debug, Parser)]
#[command(name = "agent-health-exporter", disable_version_flag = true)]
pub struct Cli {
    /// The YAML file that lists the agents.
    #[arg(long = "config.file", default_value = "agent-health-exporter.yaml")]
    pub config_file: PathBuf,

    /// Validate the config file, print a summary or every error, and exit 0 or 1.
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// With --config.check: also print each agent's resolved settings as one JSON line
    /// (secrets shown as <secret>), as GET /api/v1/agents/{name}/config answers them.
    #[arg(long = "verbose", requires = "config_check")]
    pub verbose: bool,

    /// Print the JSON Schema (draft 2020-12) of the config file and exit.
    #[arg(long = "config.schema")]
    pub config_schema: bool,

    /// Check the config file and the files it names on this interval and reload the config
    /// when one changed (as Prometheus 3); `0s` never.
    #[arg(long = "config.auto-reload-interval", default_value = "0s", value_parser = parse_interval)]
    pub auto_reload_interval: Duration,

    /// Address to serve on; `:10056` means every interface.
    #[arg(long = "web.listen-address", default_value = ":10056", global = true)]
    pub listen_address: String,

    /// Path under which the metrics are served.
    #[arg(long = "web.telemetry-path", default_value = "/metrics")]
    pub telemetry_path: String,

    /// exporter-toolkit web config (TLS, basic auth, response headers) for every endpoint.
    #[arg(long = "web.config.file", global = true)]
    pub web_config_file: Option<PathBuf>,

    /// Connections served at once; further clients wait until one closes.
    #[arg(long = "web.max-connections", default_value_t = crate::server::DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(usize))]
    pub max_connections: usize,

    /// Scrapes of the metrics path answered at once; beyond it a scrape is answered 503 at
    /// once (and counted in agent_exporter_scrapes_refused_total), as node_exporter does.
    #[arg(long = "web.max-requests", default_value_t = crate::server::DEFAULT_MAX_REQUESTS)]
    pub max_requests: usize,

    /// Enable POST /-/reload (SIGHUP always reloads), as Prometheus does.
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,

    /// Enable POST /api/v1/agents/{name}/probe (probe an agent now, outside its schedule).
    #[arg(long = "web.enable-probe-api")]
    pub enable_probe_api: bool,

    /// Only log messages at this level or above.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Format of log lines.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt)]
    pub log_format: LogFormat,

    /// Probe results kept per agent for the API.
    #[arg(long = "history.limit", default_value_t = 100)]
    pub history_limit: usize,

    /// Number of shards the fleet is split into; each exporter probes one of them.
    #[arg(long = "shard.count", default_value_t = 1)]
    pub shard_count: u64,

    /// This exporter's shard, 0 to count-1, or `auto`: the trailing ordinal of the host name
    /// (a StatefulSet pod `agent-health-exporter-2` is shard 2).
    #[arg(long = "shard.index", default_value = "0")]
    pub shard_index: crate::shard::ShardIndex,

    /// Where heartbeat reports for agents owned elsewhere (or also by peer replicas) are
    /// forwarded: a URL template with `{shard}` per replica set, e.g.
    /// http://agent-health-exporter-{shard}.agent-health-exporter:10056. Repeatable.
    #[arg(long = "heartbeat.peers", value_name = "URL_TEMPLATE")]
    pub heartbeat_peers: Vec<String>,

    /// Print the version, git revision and rustc version, then exit.
    #[arg(long = "version")]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exit 0 when the exporter at --web.listen-address (dialed on loopback) answers
    /// /-/healthy with 200 within 3 s, else 1 with the reason on stderr; give it the
    /// exporter's --web.config.file for TLS and basic auth. For images without a shell.
    Healthcheck,
}

/// A duration as Prometheus writes it (`30s`, `1m`, `0s`).
fn parse_interval(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e} (write a duration such as 30s or 1m; 0s turns it off)"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}
