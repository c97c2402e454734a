//! Where an agent's bytes go: the size of each per-agent structure, and the heap each stage of
//! an agent's life adds, counted by a global allocator that keeps a tally of the live bytes.
//! The stages follow the exporter's own path: the config file loaded through the reloader
//! (specs, monitor, schedule, discovery's copy of the static agents), then real probes of agents
//! that refuse connections recorded by the monitor, then the history ring filled.
//!
//! cargo run --release --example agent_memory -- 3000            # static agents
//! cargo run --release --example agent_memory -- 3000 --file-sd  # the same agents discovered
//!
//! Heap figures are what the program asked for plus glibc's per-chunk cost (8 bytes of header,
//! rounded up to 16, at least 32), which is what RSS pays for a live allocation; RSS also pays
//! for freed memory the allocator keeps (see BENCHMARKS.md, "Memory per agent").

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_health_exporter::config::{
    AgentSpec, DegradedSpec, ExpectSpec, HttpSpec, ResolvedAgent, Target,
};
use agent_health_exporter::metrics::ExporterMetrics;
use agent_health_exporter::monitor::{Agent, AgentState, HistoryEntry, Monitor, NativeBuckets};
use agent_health_exporter::probe::ProbeResult;
use agent_health_exporter::reload::Reloader;
use agent_health_exporter::scheduler::Scheduler;

/// The system allocator, counting live bytes (requested, and as glibc's chunks) and blocks.
struct Counting;

static REQUESTED: AtomicIsize = AtomicIsize::new(0);
static CHUNKS: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

/// What glibc's malloc takes for `size` bytes: a chunk of size + 8, rounded up to 16, at least 32.
fn chunk(size: usize) -> isize {
    ((size + 8).div_ceil(16) * 16).max(32) as isize
}

fn count(size: usize, sign: isize) {
    REQUESTED.fetch_add(sign * size as isize, Ordering::Relaxed);
    CHUNKS.fetch_add(sign * chunk(size), Ordering::Relaxed);
    BLOCKS.fetch_add(sign, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated around it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap at one moment.
#[derive(Clone, Copy)]
struct Live {
    requested: isize,
    chunks: isize,
    blocks: isize,
}

fn live() -> Live {
    Live {
        requested: REQUESTED.load(Ordering::Relaxed),
        chunks: CHUNKS.load(Ordering::Relaxed),
        blocks: BLOCKS.load(Ordering::Relaxed),
    }
}

/// Prints what a stage added per agent, from `before` to now.
fn stage(name: &str, before: Live, agents: usize) -> Live {
    let now = live();
    let n = agents.max(1) as f64;
    println!(
        "| {name} | {:.0} | {:.0} | {:.2} |",
        (now.requested - before.requested) as f64 / n,
        (now.chunks - before.chunks) as f64 / n,
        (now.blocks - before.blocks) as f64 / n,
    );
    now
}

fn sizes() {
    println!("| structure | size_of (bytes) |\n|---|---|");
    let rows: [(&str, usize); 12] = [
        (
            "Agent (monitor, one Arc each)",
            std::mem::size_of::<Agent>(),
        ),
        (
            "AgentState (inside Agent)",
            std::mem::size_of::<AgentState>(),
        ),
        (
            "ProbeResult (AgentState::last)",
            std::mem::size_of::<ProbeResult>(),
        ),
        (
            "NativeBuckets (inside AgentState)",
            std::mem::size_of::<NativeBuckets>(),
        ),
        (
            "HistoryEntry (per ring slot)",
            std::mem::size_of::<HistoryEntry>(),
        ),
        ("AgentSpec (one Arc each)", std::mem::size_of::<AgentSpec>()),
        ("Target (inside AgentSpec)", std::mem::size_of::<Target>()),
        ("url::Url (inside Target)", std::mem::size_of::<url::Url>()),
        (
            "HttpSpec (inside AgentSpec)",
            std::mem::size_of::<HttpSpec>(),
        ),
        (
            "ExpectSpec (inside AgentSpec)",
            std::mem::size_of::<ExpectSpec>(),
        ),
        (
            "DegradedSpec (inside AgentSpec)",
            std::mem::size_of::<DegradedSpec>(),
        ),
        (
            "ResolvedAgent (config, discovery)",
            std::mem::size_of::<ResolvedAgent>(),
        ),
    ];
    for (name, size) in rows {
        println!("| {name} | {size} |");
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let agents: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3000);
    let file_sd = args.iter().any(|a| a == "--file-sd");
    let history_limit = 100;
    sizes();

    let dir = match tempfile_dir() {
        Ok(dir) => dir,
        Err(e) => fail(&format!("cannot make a working folder: {e}")),
    };
    // A port nobody listens on: every probe is refused at once, as in the RSS benchmark.
    let refused = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr,
        Err(e) => fail(&format!("cannot find a free port: {e}")),
    };
    let config = dir.join("agents.yaml");
    if let Err(e) = write_config(&config, &dir, agents, refused, file_sd) {
        fail(&format!("cannot write the config: {e}"));
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => fail(&format!("cannot start a runtime: {e}")),
    };
    let workdir = dir.clone();
    runtime.block_on(async move {
        let dir = workdir;
        let monitor = Arc::new(Monitor::new(history_limit));
        let exporter = Arc::new(ExporterMetrics::default());
        let scheduler = Arc::new(Scheduler::new(monitor.clone(), exporter.clone()));
        let reloader = Reloader::new(config.clone(), scheduler.clone(), exporter);
        // Tokio, tracing and the TLS defaults allocate on first use: one throwaway agent first.
        let _ = agent_health_exporter::config::parse(
            "agents: [{name: warm, type: t, url: 'http://127.0.0.1:1/'}]",
            "warm.yaml",
            &dir,
        );
        let which = if file_sd {
            "discovered by file_sd"
        } else {
            "static"
        };
        println!(
            "{agents} {which} agents, `--history.limit` {history_limit}; heap added per agent:\n"
        );
        println!(
            "| stage | requested bytes | glibc chunks, bytes | allocations |\n|---|---|---|---|"
        );
        let start = live();
        if let Err(e) = reloader.reload() {
            fail(&format!("config: {e}"));
        }
        if file_sd {
            let deadline = Instant::now() + Duration::from_secs(60);
            while monitor.len() < agents && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if monitor.len() != agents {
            fail(&format!(
                "{} agents running, {agents} expected",
                monitor.len()
            ));
        }
        let loaded = stage(
            "config loaded, agents scheduled (no probe yet)",
            start,
            agents,
        );
        let fleet = monitor.agents();
        record_all(&monitor, &fleet).await;
        let first = stage("first probe recorded (refused)", loaded, agents);
        record_all(&monitor, &fleet).await;
        let second = stage("second probe recorded", first, agents);
        for _ in 2..history_limit {
            record_all(&monitor, &fleet).await;
        }
        stage(
            &format!("{} more probes: history ring full", history_limit - 2),
            second,
            agents,
        );
        stage("total", start, agents);
        drop(fleet);
        scheduler.stop();
    });
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::io::stdout().flush();
}

/// One real probe of each agent, recorded as the scheduler does.
async fn record_all(monitor: &Monitor, fleet: &[Arc<Agent>]) {
    for agent in fleet {
        let result = agent_health_exporter::probe::run(&agent.spec).await;
        monitor.record(agent, result);
    }
}

/// `agents` plain http agents on `refused`, every hour (so the schedule itself probes next to
/// nothing while the stages are counted), listed in the config or in a file_sd file.
fn write_config(
    path: &std::path::Path,
    dir: &std::path::Path,
    agents: usize,
    refused: std::net::SocketAddr,
    file_sd: bool,
) -> std::io::Result<()> {
    let mut out = String::from("defaults:\n  interval: 1h\n");
    if file_sd {
        let targets: Vec<String> = (0..agents)
            .map(|i| {
                format!(
                    "{{\"targets\":[\"{refused}\"],\"labels\":{{\"agent\":\"agent-{i:06}\",\"agent_type\":\"bench\"}}}}"
                )
            })
            .collect();
        std::fs::write(dir.join("targets.json"), format!("[{}]", targets.join(",")))?;
        out.push_str("agents: []\ndiscovery:\n  - file_sd: {files: [targets.json]}\n");
    } else {
        out.push_str("agents:\n");
        for i in 0..agents {
            out.push_str(&format!(
                "  - {{name: agent-{i:06}, type: bench, url: 'http://{refused}/health'}}\n"
            ));
        }
    }
    std::fs::write(path, out)
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("agent-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn fail(message: &str) -> ! {
    eprintln!("agent_memory: {message}");
    std::process::exit(1);
}
