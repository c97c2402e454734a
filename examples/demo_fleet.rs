//! A demo fleet of simulated agents for the exporter to probe.
//!
//! The compose stack, the real-world test tier and benchmarks need agents that
//! fail on demand: this program serves each simulated agent's `GET /health` on
//! its own port and lets a person or a script change how each one behaves over
//! a small control API. Run it with `--help` for the details.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

const HELP: &str = "\
demo_fleet: serve simulated agents for agent-health-exporter to probe

USAGE:
    demo_fleet [OPTIONS]

Each agent listens on its own TCP port and answers GET /health with
200 {\"status\":\"ok\"} while it is healthy. A control API changes how each
agent behaves at run time.

OPTIONS:
    --host ADDR          address to listen on [default: 127.0.0.1]
                         (a container needs 0.0.0.0 to be reachable)
    --base-port PORT     agent number i (from 0, in the order given) listens on
                         PORT+i; 0 gives every agent a free port chosen by the
                         kernel [default: 0]
    --control-port PORT  port of the control API; 0 for a free one [default: 0]
    --agent NAME[=B]     add an agent named NAME with behaviour B [default B:
                         healthy]; repeatable
    --agents N           add N healthy agents named agent-0001, agent-0002, ...
    --ports-file PATH    once every port listens, write the address map as
                         JSON: {\"control\":ADDR,\"agents\":{NAME:ADDR,...}}
    -h, --help           print this help

Without --agent and --agents the demo fleet of deploy/demo-fleet.yaml is served,
in this order (so --base-port 18081 gives planner 18081 ... gateway 18087):
    planner=healthy retriever=healthy summarizer=slow:1500ms indexer=flaky:0.25
    translator=degraded archiver=down gateway=healthy

On start the address map is printed to stdout, one line each:
    control ADDR
    agent NAME ADDR BEHAVIOUR

BEHAVIOURS:
    healthy          200 {\"status\":\"ok\"}
    flaky[:RATE]     500 with probability RATE in [0, 1], else healthy [0.5]
    slow[:DELAY]     healthy after DELAY, e.g. 1500ms, 2s, 0.5s [2s]
    degraded         200 {\"status\":\"degraded\"}
    down             500 {\"status\":\"error\"}
    refuse           the port stops listening: connection refused
    hang             accept the request and never answer (until the
                     behaviour changes, at most 10 minutes)

CONTROL API (on the control port):
    GET  /control                      every agent: name, address, behaviour
    GET  /control/NAME                 one agent
    POST /control/NAME/BEHAVIOUR       set the behaviour, e.g.
                                       curl -X POST 127.0.0.1:PORT/control/planner/refuse
    POST /control/_all/BEHAVIOUR       set it for every agent

The program runs until SIGINT or SIGTERM.
";

/// The fleet served when the command line names no agent; deploy/demo-fleet.yaml
/// probes exactly these, in this port order.
const DEMO_FLEET: &[(&str, &str)] = &[
    ("planner", "healthy"),
    ("retriever", "healthy"),
    ("summarizer", "slow:1500ms"),
    ("indexer", "flaky:0.25"),
    ("translator", "degraded"),
    ("archiver", "down"),
    ("gateway", "healthy"),
];

/// The name that addresses every agent at once in the control API.
const ALL_AGENTS: &str = "_all";

/// The longest a `hang` request is held, so that connections a prober gave up
/// on do not pile up forever.
const MAX_HANG: Duration = Duration::from_secs(600);

/// How a simulated agent answers its health endpoint.
#[derive(Clone, Debug, PartialEq)]
enum Behaviour {
    Healthy,
    Flaky { failure_rate: f64 },
    Slow { delay: Duration },
    Degraded,
    Down,
    Refuse,
    Hang,
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Behaviour::Healthy => f.write_str("healthy"),
            Behaviour::Flaky { failure_rate } => write!(f, "flaky:{failure_rate}"),
            Behaviour::Slow { delay } => write!(f, "slow:{}ms", delay.as_millis()),
            Behaviour::Degraded => f.write_str("degraded"),
            Behaviour::Down => f.write_str("down"),
            Behaviour::Refuse => f.write_str("refuse"),
            Behaviour::Hang => f.write_str("hang"),
        }
    }
}

impl FromStr for Behaviour {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (kind, param) = match spec.split_once(':') {
            Some((kind, param)) => (kind, Some(param)),
            None => (spec, None),
        };
        let behaviour = match (kind, param) {
            ("healthy", None) => Behaviour::Healthy,
            ("degraded", None) => Behaviour::Degraded,
            ("down", None) => Behaviour::Down,
            ("refuse", None) => Behaviour::Refuse,
            ("hang", None) => Behaviour::Hang,
            ("flaky", None) => Behaviour::Flaky { failure_rate: 0.5 },
            ("flaky", Some(rate)) => {
                let failure_rate: f64 = rate
                    .parse()
                    .map_err(|_| format!("flaky rate {rate:?} is not a number"))?;
                if !(0.0..=1.0).contains(&failure_rate) {
                    return Err(format!("flaky rate {rate} is outside [0, 1]"));
                }
                Behaviour::Flaky { failure_rate }
            }
            ("slow", None) => Behaviour::Slow {
                delay: Duration::from_secs(2),
            },
            ("slow", Some(delay)) => Behaviour::Slow {
                delay: parse_delay(delay)?,
            },
            _ => {
                return Err(format!(
                    "unknown behaviour {spec:?}; expected healthy, flaky[:RATE], \
                     slow[:DELAY], degraded, down, refuse or hang"
                ))
            }
        };
        Ok(behaviour)
    }
}

/// Parses `1500ms`, `2s` or `0.5s`; the demo needs nothing longer than an hour.
fn parse_delay(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        return Err(format!("delay {text:?} needs a unit: ms or s"));
    };
    let seconds = number
        .parse::<f64>()
        .map_err(|_| format!("delay {text:?} is not a number"))?
        * scale;
    if !(0.0..=3600.0).contains(&seconds) {
        return Err(format!("delay {text:?} is outside 0s..3600s"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// What the command line asked for.
struct Options {
    host: IpAddr,
    base_port: u16,
    control_port: u16,
    agents: Vec<(String, Behaviour)>,
    ports_file: Option<PathBuf>,
}

/// `Ok(None)` means `--help` was asked for.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        base_port: 0,
        control_port: 0,
        agents: Vec::new(),
        ports_file: None,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        // Accept both `--flag value` and `--flag=value`, as most CLIs do.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value)),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || -> Result<String, String> {
            match inline {
                Some(value) => Ok(value.to_string()),
                None => args.next().ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "--host" => {
                let text = value()?;
                options.host = text
                    .parse()
                    .map_err(|_| format!("--host {text:?} is not an IP address"))?;
            }
            "--base-port" => options.base_port = parse_port("--base-port", &value()?)?,
            "--control-port" => options.control_port = parse_port("--control-port", &value()?)?,
            "--ports-file" => options.ports_file = Some(PathBuf::from(value()?)),
            "--agents" => {
                let text = value()?;
                let count: usize = text
                    .parse()
                    .map_err(|_| format!("--agents {text:?} is not a count"))?;
                let first = options.agents.len() + 1;
                for number in first..first + count {
                    options
                        .agents
                        .push((format!("agent-{number:04}"), Behaviour::Healthy));
                }
            }
            "--agent" => {
                let text = value()?;
                let (name, behaviour) = match text.split_once('=') {
                    Some((name, spec)) => (name, spec.parse()?),
                    None => (text.as_str(), Behaviour::Healthy),
                };
                options.agents.push((name.to_string(), behaviour));
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if options.agents.is_empty() {
        for (name, spec) in DEMO_FLEET {
            options.agents.push((name.to_string(), spec.parse()?));
        }
    }
    let mut seen = HashSet::new();
    for (name, _) in &options.agents {
        let valid = !name.is_empty()
            && name != ALL_AGENTS
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(format!(
                "agent name {name:?} must be letters, digits, '-', '_' or '.' (and not {ALL_AGENTS})"
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("agent name {name:?} is given twice"));
        }
    }
    if options.base_port != 0 {
        let last = usize::from(options.base_port) + options.agents.len() - 1;
        if last > usize::from(u16::MAX) {
            return Err(format!(
                "--base-port {} leaves no room for {} agents",
                options.base_port,
                options.agents.len()
            ));
        }
    }
    Ok(Some(options))
}

fn parse_port(flag: &str, text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("{flag} {text:?} is not a port number"))
}

/// One simulated agent. Its behaviour lives in a watch channel so that the
/// accept loop learns at once when it must stop (or start again) listening.
struct Agent {
    name: String,
    /// Fixed after the first bind, so that `refuse` followed by another
    /// behaviour listens on the very port the exporter's config names.
    addr: SocketAddr,
    behaviour: watch::Sender<Behaviour>,
    /// splitmix64 state for `flaky`; good enough for a demo, no extra crate.
    rng: AtomicU64,
}

impl Agent {
    fn behaviour(&self) -> Behaviour {
        self.behaviour.borrow().clone()
    }

    /// A uniform draw from [0, 1).
    fn next_random(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn describe(&self) -> Value {
        json!({
            "name": self.name,
            "address": self.addr.to_string(),
            "behaviour": self.behaviour().to_string(),
        })
    }
}

/// SO_REUSEADDR lets a `refuse`d agent listen again on its port at once, even
/// while connections it served are still in TIME_WAIT.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn healthy_response() -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

fn failure_response() -> Response<Full<Bytes>> {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({"status": "error", "error": "simulated failure"}),
    )
}

async fn answer_health(
    agent: Arc<Agent>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/health" {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "only /health is served"}),
        ));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "use GET or HEAD"}),
        ));
    }
    let response = match agent.behaviour() {
        Behaviour::Healthy => healthy_response(),
        Behaviour::Flaky { failure_rate } => {
            if agent.next_random() < failure_rate {
                failure_response()
            } else {
                healthy_response()
            }
        }
        Behaviour::Slow { delay } => {
            tokio::time::sleep(delay).await;
            healthy_response()
        }
        Behaviour::Degraded => json_response(StatusCode::OK, &json!({"status": "degraded"})),
        Behaviour::Down => failure_response(),
        Behaviour::Refuse => {
            // Only a keep-alive connection opened before the switch gets here;
            // closing it makes the next request meet the refusing port.
            let mut response = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "error", "error": "agent is refusing connections"}),
            );
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            response
        }
        Behaviour::Hang => {
            let mut changes = agent.behaviour.subscribe();
            // Whatever the outcome (changed, sender gone, or MAX_HANG), the
            // request has hung long enough: answer as a failure.
            let _ =
                tokio::time::timeout(MAX_HANG, changes.wait_for(|b| *b != Behaviour::Hang)).await;
            failure_response()
        }
    };
    Ok(response)
}

fn serve_connection<F, Fut>(stream: TcpStream, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    tokio::spawn(async move {
        // Without a timer hyper silently disables its header-read timeout.
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service_fn(handler));
        // A prober that times out and drops its connection is normal here, not
        // worth a log line.
        let _ = connection.await;
    });
}

/// Accepts connections for one agent for as long as the program runs, closing
/// the listening socket while the agent `refuse`s.
async fn run_agent(agent: Arc<Agent>, first: TcpListener) {
    let mut changes = agent.behaviour.subscribe();
    let mut listener = Some(first);
    loop {
        let refusing = *changes.borrow_and_update() == Behaviour::Refuse;
        match (refusing, listener.take()) {
            (true, open) => {
                // Dropping the socket is what makes connects fail with
                // ECONNREFUSED, as for a crashed agent.
                drop(open);
                if changes.changed().await.is_err() {
                    return;
                }
            }
            (false, None) => match bind(agent.addr) {
                Ok(reopened) => listener = Some(reopened),
                Err(error) => {
                    eprintln!(
                        "agent {}: cannot listen on {} again: {error}; retrying",
                        agent.name, agent.addr
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            (false, Some(open)) => {
                tokio::select! {
                    accepted = open.accept() => match accepted {
                        Ok((stream, _)) => {
                            let agent = Arc::clone(&agent);
                            serve_connection(stream, move |request| {
                                answer_health(Arc::clone(&agent), request)
                            });
                        }
                        Err(error) => {
                            // Typically EMFILE under a benchmark's load: back
                            // off instead of spinning on the error.
                            eprintln!("agent {}: accept failed: {error}", agent.name);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
                listener = Some(open);
            }
        }
    }
}

async fn answer_control(
    fleet: Arc<Vec<Arc<Agent>>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let find = |name: &str| fleet.iter().find(|agent| agent.name == name);
    let not_found = |name: &str| {
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no agent named {name:?}")}),
        )
    };
    let response = match (request.method(), parts.as_slice()) {
        (&Method::GET, ["control"]) => {
            let agents: Vec<Value> = fleet.iter().map(|agent| agent.describe()).collect();
            json_response(StatusCode::OK, &json!({ "agents": agents }))
        }
        (&Method::GET, ["control", name]) => match find(name) {
            Some(agent) => json_response(StatusCode::OK, &agent.describe()),
            None => not_found(name),
        },
        (&Method::POST, ["control", name, spec]) => match spec.parse::<Behaviour>() {
            Err(error) => json_response(StatusCode::BAD_REQUEST, &json!({ "error": error })),
            Ok(behaviour) if *name == ALL_AGENTS => {
                for agent in fleet.iter() {
                    agent.behaviour.send_replace(behaviour.clone());
                }
                println!("control: every agent is now {behaviour}");
                let agents: Vec<Value> = fleet.iter().map(|agent| agent.describe()).collect();
                json_response(StatusCode::OK, &json!({ "agents": agents }))
            }
            Ok(behaviour) => match find(name) {
                Some(agent) => {
                    let previous = agent.behaviour.send_replace(behaviour);
                    println!(
                        "control: {} {previous} -> {}",
                        agent.name,
                        agent.behaviour()
                    );
                    let mut body = agent.describe();
                    body["previous"] = Value::from(previous.to_string());
                    json_response(StatusCode::OK, &body)
                }
                None => not_found(name),
            },
        },
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({
                "error": "try GET /control, GET /control/NAME or POST /control/NAME/BEHAVIOUR"
            }),
        ),
    };
    Ok(response)
}

async fn run_control(fleet: Arc<Vec<Arc<Agent>>>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let fleet = Arc::clone(&fleet);
                serve_connection(stream, move |request| {
                    answer_control(Arc::clone(&fleet), request)
                });
            }
            Err(error) => {
                eprintln!("control: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Written next to the target and renamed, so a script polling for the file
/// never reads half of it.
fn write_ports_file(path: &Path, control: SocketAddr, fleet: &[Arc<Agent>]) -> std::io::Result<()> {
    let agents: serde_json::Map<String, Value> = fleet
        .iter()
        .map(|agent| (agent.name.clone(), Value::from(agent.addr.to_string())))
        .collect();
    let body = json!({"control": control.to_string(), "agents": agents});
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, body.to_string())?;
    std::fs::rename(&partial, path)
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{HELP}");
            return Ok(());
        }
        Err(message) => {
            eprintln!("demo_fleet: {message}\nRun with --help for usage.");
            std::process::exit(2);
        }
    };

    // Bind everything before announcing anything, so that a printed or written
    // address map is always one that already accepts connections.
    let mut fleet = Vec::with_capacity(options.agents.len());
    let mut listeners = Vec::with_capacity(options.agents.len());
    for (index, (name, behaviour)) in options.agents.into_iter().enumerate() {
        let port = match options.base_port {
            0 => 0,
            base => u16::try_from(usize::from(base) + index)?,
        };
        let listener = bind(SocketAddr::new(options.host, port))
            .map_err(|error| format!("agent {name}: cannot listen on port {port}: {error}"))?;
        let seed = {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write(name.as_bytes());
            hasher.finish()
        };
        let (behaviour, _) = watch::channel(behaviour);
        fleet.push(Arc::new(Agent {
            name,
            addr: listener.local_addr()?,
            behaviour,
            rng: AtomicU64::new(seed),
        }));
        listeners.push(listener);
    }
    let control = bind(SocketAddr::new(options.host, options.control_port)).map_err(|error| {
        format!(
            "control API: cannot listen on port {}: {error}",
            options.control_port
        )
    })?;
    let control_addr = control.local_addr()?;
    let fleet = Arc::new(fleet);

    for (agent, listener) in fleet.iter().zip(listeners) {
        tokio::spawn(run_agent(Arc::clone(agent), listener));
    }
    tokio::spawn(run_control(Arc::clone(&fleet), control));

    let mut out = std::io::stdout().lock();
    writeln!(out, "control {control_addr}")?;
    for agent in fleet.iter() {
        writeln!(
            out,
            "agent {} {} {}",
            agent.name,
            agent.addr,
            agent.behaviour()
        )?;
    }
    out.flush()?;
    drop(out);
    if let Some(path) = &options.ports_file {
        write_ports_file(path, control_addr, &fleet)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }

    shutdown_signal().await?;
    Ok(())
}
