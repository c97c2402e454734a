//! Probes every agent of a YAML config once and prints one JSON line per agent: `agent`,
//! `verdict` (healthy, degraded, unhealthy), `reason`, `error` and what the agent reported
//! (`protocol_version`, `server_name`, `server_version`). With `--watch`, gRPC agents with
//! `watch: true` are also watched for the probe's timeout: `watch` is `serving` (the stream
//! opened and pushed nothing else), the reason of the first status pushed, or `down` (the
//! stream never opened). For `tests/realworld/protocol_matrix.py`, which runs it per cell.
//!
//! Usage: probe_once CONFIG.yaml [--watch]

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use agent_health_exporter::config::{self, AgentSpec};
use agent_health_exporter::probe::{self, Outcome};
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("usage: probe_once CONFIG.yaml [--watch]");
        return ExitCode::FAILURE;
    };
    let watch = args.iter().any(|a| a == "--watch");
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = Path::new(path).parent().unwrap_or(Path::new("."));
    let config = match config::parse(&text, path, dir) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        for agent in &config.agents {
            let spec = Arc::clone(&agent.spec);
            let watched = watch && probe::wants_watch(&spec);
            let (result, watched) = tokio::join!(probe::run(&spec), async {
                if watched {
                    Some(watch_once(Arc::clone(&spec)).await)
                } else {
                    None
                }
            });
            let (verdict, reason, error) = match &result.outcome {
                Outcome::Healthy => ("healthy", String::new(), String::new()),
                Outcome::Degraded(why) => ("degraded", String::new(), why.clone()),
                Outcome::Failed { reason, error } => {
                    ("unhealthy", reason.to_string(), error.clone())
                }
            };
            let info = result.protocol.info.as_deref();
            let text = |f: fn(&probe::ProtocolInfo) -> &str| info.map(f).unwrap_or_default();
            let line = json!({
                "agent": spec.name,
                "verdict": verdict,
                "reason": reason,
                "error": error,
                "protocol_version": text(|i| &i.protocol_version),
                "server_name": text(|i| &i.server_name),
                "server_version": text(|i| &i.server_version),
                "watch": watched,
            });
            println!("{line}");
        }
    });
    ExitCode::SUCCESS
}

/// The Watch stream's word within the agent's timeout.
async fn watch_once(spec: Arc<AgentSpec>) -> String {
    let pushed: Arc<Mutex<Option<String>>> = Arc::default();
    let up = Arc::new(Mutex::new(false));
    let (on_push, on_up) = (Arc::clone(&pushed), Arc::clone(&up));
    let timeout = spec.timeout;
    let stream = probe::grpc_watch(
        spec,
        move |reason, _| {
            let mut first = on_push.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| reason.to_string());
        },
        move |is_up| {
            if is_up {
                *on_up.lock().unwrap_or_else(|p| p.into_inner()) = true;
            }
        },
    );
    let _ = tokio::time::timeout(timeout, stream).await;
    let first = pushed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match first {
        Some(reason) => reason,
        None if *up.lock().unwrap_or_else(|p| p.into_inner()) => "serving".to_owned(),
        None => "down".to_owned(),
    }
}
