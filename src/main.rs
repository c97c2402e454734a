#![forbid(unsafe_code)]
//! The binary: parse flags, set up logging, hand over to the library.

use std::process::ExitCode;

use agent_health_exporter::app::{self, Options, BUILD};
use agent_health_exporter::cli::{Cli, Command};
use agent_health_exporter::shard::{self, Shard};
use agent_health_exporter::{config, discovery, healthcheck, logging};
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    if cli.version {
        println!(
            "agent-health-exporter, version {} (revision: {}, rustc: {})",
            BUILD.version, BUILD.revision, BUILD.rustc
        );
        return ExitCode::SUCCESS;
    }
    if cli.config_schema {
        return match serde_json::to_string_pretty(&config::reference::schema()) {
            Ok(schema) => {
                println!("{schema}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot encode the schema: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Healthcheck) = cli.command {
        return match healthcheck::run(&cli.listen_address, cli.web_config_file.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("healthcheck: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let shard = match Shard::from_flags(cli.shard_index, cli.shard_count, shard::host_name) {
        Ok(shard) => shard,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.config_check {
        return check_config(&cli, shard);
    }
    logging::init(cli.log_level, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = Options {
        config_file: cli.config_file,
        listen_address: cli.listen_address,
        telemetry_path: cli.telemetry_path,
        history_limit: cli.history_limit,
        web_config_file: cli.web_config_file,
        limits: agent_health_exporter::server::Limits {
            max_connections: cli.max_connections.max(1),
            max_requests: cli.max_requests.max(1),
            ..Default::default()
        },
        shard,
        endpoints: agent_health_exporter::server::Endpoints {
            lifecycle: cli.enable_lifecycle,
            probe_api: cli.enable_probe_api,
        },
        auto_reload_interval: cli.auto_reload_interval,
        heartbeat_peers: cli.heartbeat_peers,
    };
    match runtime.block_on(app::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "agent-health-exporter cannot start");
            ExitCode::FAILURE
        }
    }
}

/// `--config.check`: a summary line per agent, or every error; never a secret.
fn check_config(cli: &Cli, shard: Shard) -> ExitCode {
    if let Some(web) = &cli.web_config_file {
        match agent_health_exporter::server::web_config::load(web) {
            Ok(loaded) => println!("{}: web config is valid ({loaded:?})", web.display()),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match config::load(&cli.config_file) {
        Ok(config) => {
            let lines: Vec<String> = config
                .agents
                .iter()
                .filter(|a| shard.owns(&a.spec.name))
                .map(|a| {
                    let mut line = config::summary_line(a);
                    if cli.verbose {
                        line.push('\n');
                        line.push_str(&effective_line(a, "static"));
                    }
                    line
                })
                .collect();
            for line in &lines {
                println!("{line}");
            }
            let (found, mine) = print_discovered(&config, shard, cli.verbose);
            let total = config.agents.len() + found;
            let owned = lines.len() + mine;
            if shard.count() == 1 {
                println!(
                    "{}: config is valid, {total} agents",
                    cli.config_file.display()
                );
            } else {
                println!(
                    "{}: config is valid, {total} agents; shard {} of {} probes {} of them",
                    cli.config_file.display(),
                    shard.index(),
                    shard.count(),
                    owned
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            for issue in e.issues() {
                eprintln!("{issue}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Asks every discovery source once and prints the agents it adds (with their origin, those of
/// `shard` only), what it dropped and why, or why it failed. Answers how many agents the
/// sources add, and how many of them `shard` probes.
fn print_discovered(config: &config::Config, shard: Shard, verbose: bool) -> (usize, usize) {
    if config.discovery.is_empty() {
        return (0, 0);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            println!("discovery sources not asked: {e}");
            return (0, 0);
        }
    };
    let checks = runtime.block_on(discovery::check::check_sources(config));
    let (mut found, mut mine) = (0, 0);
    for check in checks {
        let source = &check.source;
        let found_here = match check.found {
            Ok(found) => found,
            Err(error) => {
                println!("source={source} failed: {error}");
                continue;
            }
        };
        for (agent, origin) in &found_here.agents {
            if shard.owns(&agent.spec.name) {
                println!("{} origin={origin:?}", config::summary_line(agent));
                if verbose {
                    println!("{}", effective_line(agent, origin));
                }
                mine += 1;
            }
        }
        for invalid in &found_here.invalid {
            println!("source={source} invalid target: {invalid}");
        }
        let dropped: Vec<String> = found_here
            .dropped
            .iter()
            .map(|(reason, n)| format!(" dropped_{reason}={n}"))
            .collect();
        println!(
            "source={source} targets={} agents={}{}",
            found_here.targets,
            found_here.agents.len(),
            dropped.concat()
        );
        found += found_here.agents.len();
    }
    (found, mine)
}

/// `--verbose`: the agent's resolved settings, one JSON line, secrets redacted.
fn effective_line(agent: &config::ResolvedAgent, origin: &str) -> String {
    config::effective(&agent.spec, agent.check.as_deref(), Some(origin)).to_string()
}

/// A command line clap refused (or `--help`). Clap exits 2 on a usage error, which Docker
/// reserves in a `HEALTHCHECK` ("do not use"): `healthcheck` exits 1 instead, as on any failure.
fn usage_error(e: clap::Error) -> ExitCode {
    let healthcheck = std::env::args_os().skip(1).any(|arg| arg == "healthcheck");
    if !healthcheck || !e.use_stderr() {
        e.exit();
    }
    let _ = e.print();
    ExitCode::FAILURE
}
