//! The agent fleet of the benchmark (`bench/run.sh`): answers `GET /health` with 200 "ok" and
//! closes the connection, on several loopback addresses and ports at once, so that clients with a
//! fresh connection per request spread their sockets over many address pairs.
//!
//! It is kept as cheap as possible, since it competes for the same cores as the prober being
//! measured: one thread by default, no routing, a fixed answer. It counts the requests it served;
//! `GET /count` on any listener answers that count (the benchmark reads it instead of scraping the
//! prober, which would cost the prober CPU inside the measured window).

use std::convert::Infallible;
use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

const HELP: &str = "\
bench_target: the agent fleet of the benchmark, on loopback

USAGE:
    bench_target [--addresses K] [--ports P] [--threads T] [--lifetime SECONDS]

Listens on 127.0.0.2 .. 127.0.0.(K+1), P ports each (chosen by the kernel), prints one
line `listen ADDR:PORT` per listener, then `ready`. Every path but /count answers
200 \"ok\" and closes the connection; GET /count answers the number of requests served.
Exits by itself after --lifetime seconds, so a broken benchmark never leaves it behind.

OPTIONS:
    --addresses K     loopback addresses to listen on [default: 8]
    --ports P         ports per address [default: 4]
    --threads T       worker threads [default: 1]
    --lifetime S      exit after S seconds [default: 900]
";

struct Options {
    addresses: u8,
    ports: u16,
    threads: usize,
    lifetime: Duration,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        addresses: 8,
        ports: 4,
        threads: 1,
        lifetime: Duration::from_secs(900),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            print!("{HELP}");
            std::process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--addresses" => options.addresses = value.parse().map_err(|e| bad(&e))?,
            "--ports" => options.ports = value.parse().map_err(|e| bad(&e))?,
            "--threads" => options.threads = value.parse().map_err(|e| bad(&e))?,
            "--lifetime" => {
                options.lifetime = Duration::from_secs(value.parse().map_err(|e| bad(&e))?)
            }
            _ => return Err(format!("unknown flag {flag}\n\n{HELP}")),
        }
    }
    if options.addresses == 0 || options.addresses > 250 || options.ports == 0 {
        return Err("--addresses must be in 1..=250 and --ports at least 1".into());
    }
    Ok(options)
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = parse()?;
    let runtime = if options.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(options))
}

async fn serve(options: Options) -> Result<(), Box<dyn Error>> {
    let served = Arc::new(AtomicU64::new(0));
    let mut listeners = Vec::new();
    for a in 0..options.addresses {
        let ip = Ipv4Addr::new(127, 0, 0, 2 + a);
        for _ in 0..options.ports {
            let listener = TcpListener::bind(SocketAddr::from((ip, 0))).await?;
            println!("listen {}", listener.local_addr()?);
            listeners.push(listener);
        }
    }
    println!("ready");
    for listener in listeners {
        tokio::spawn(accept_loop(listener, served.clone()));
    }
    tokio::time::sleep(options.lifetime).await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, served: Arc<AtomicU64>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors or a similar passing condition: try again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let served = served.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let served = served.clone();
                async move {
                    let body = if req.uri().path() == "/count" {
                        Bytes::from(served.load(Ordering::Relaxed).to_string())
                    } else {
                        served.fetch_add(1, Ordering::Relaxed);
                        Bytes::from_static(b"ok\n")
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                }
            });
            let _ = http1::Builder::new()
                .keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
