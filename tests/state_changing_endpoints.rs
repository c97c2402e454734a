//! The endpoints that change state: `POST /-/reload` and the on-demand probe are off unless
//! their flags turn them on; on-demand probes of one agent are at least a second apart (429 with
//! `Retry-After` inside it); a scheduled slot taken by an on-demand probe counts as missed
//! instead of starting late.

mod harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::{get, metric, request, Binary};
use harness::{Behaviour, MockAgent};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// POSTs to `path` on one kept-alive connection for `seconds`; (status, Retry-After) of each.
async fn keep_alive_posts(addr: SocketAddr, path: &str, seconds: u64) -> Vec<(u16, Option<u64>)> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut answers = Vec::new();
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        let req = http::Request::post(path)
            .header("host", "test")
            .header("content-length", "0")
            .body(Empty::<Bytes>::new())
            .expect("request");
        sender.ready().await.expect("connection kept alive");
        let res = sender.send_request(req).await.expect("answer");
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let status = res.status().as_u16();
        let _ = res.into_body().collect().await;
        answers.push((status, retry_after));
    }
    answers
}

fn probes_total(text: &str, agent: &str) -> f64 {
    ["success", "failure"]
        .iter()
        .map(|r| {
            metric(
                text,
                &format!("agent_probes_total{{agent=\"{agent}\",agent_type=\"t\",result=\"{r}\"}}"),
            )
            .unwrap_or(0.0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_on_the_probe_endpoint_for_3s_probes_the_agent_at_most_4_times() {
    let agent = MockAgent::start(Behaviour::ok("ok")).await;
    // A long interval: the scheduled probe (at most one) stays out of the count.
    let yaml = format!(
        "agents:\n  - {{name: busy, type: t, url: '{}', interval: 1h}}\n",
        agent.url("/health")
    );
    let exporter =
        tokio::task::spawn_blocking(move || Binary::start(&yaml, &["--web.enable-probe-api"]))
            .await
            .expect("start");
    let answers = keep_alive_posts(exporter.addr, "/api/v1/agents/busy/probe", 3).await;
    let probed = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert!((1..=4).contains(&probed), "{probed} probes in 3 s");
    assert_eq!(probed + refused.len(), answers.len(), "only 200 and 429");
    assert!(
        refused.len() > 10,
        "the loop ran: {} refusals",
        refused.len()
    );
    assert!(
        refused.iter().all(|(_, r)| *r == Some(1)),
        "429 says when to come back"
    );
    let text = get(exporter.addr, "/metrics").expect("scrape").text();
    let total = probes_total(&text, "busy");
    assert!(
        total >= probed as f64 && total <= probed as f64 + 1.0,
        "agent_probes_total says {total}, {probed} on demand"
    );
    assert!(
        agent.requests().len() <= probed + 1,
        "the agent saw {} requests",
        agent.requests().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_taken_by_an_on_demand_probe_counts_as_missed_and_never_starts_late() {
    // A hanging agent: every probe lasts its whole timeout, so an on-demand probe that starts
    // between two scheduled ones still runs when the next slot comes.
    let agent = MockAgent::start(Behaviour::Hang).await;
    let yaml = format!(
        "agents:\n  - {{name: slow, type: t, url: '{}', interval: 500ms, timeout: 400ms}}\n",
        agent.url("/health")
    );
    let exporter =
        tokio::task::spawn_blocking(move || Binary::start(&yaml, &["--web.enable-probe-api"]))
            .await
            .expect("start");
    let answers = keep_alive_posts(exporter.addr, "/api/v1/agents/slow/probe", 4).await;
    let on_demand = answers.iter().filter(|(s, _)| *s == 200).count();
    assert!(on_demand >= 1, "no on-demand probe got in: {answers:?}");
    let text = get(exporter.addr, "/metrics").expect("scrape").text();
    let missed = metric(&text, "agent_exporter_probe_slots_missed_total").expect("the counter");
    // Each on-demand probe holds the agent across the next slot unless the probing thread woke
    // after it ended (a loaded machine): at least one slot must have been counted.
    assert!(
        missed >= 1.0,
        "{on_demand} on-demand probes, {missed} slots counted missed"
    );
    // Every probe is accounted for: the scheduled ones (each measured its start delay once)
    // plus the on-demand ones; one scheduled probe may still be running at the scrape.
    let scheduled = metric(&text, "agent_exporter_probe_start_delay_seconds_count").expect("count");
    let total = probes_total(&text, "slow");
    let expected = scheduled + on_demand as f64;
    assert!(
        (expected - 1.0..=expected).contains(&total),
        "{total} probes recorded, {scheduled} scheduled + {on_demand} on demand"
    );
}

const ONE_AGENT: &str =
    "agents:\n  - {name: self, type: t, url: 'http://127.0.0.1:{PORT}/-/healthy', interval: 1h}\n";

#[test]
fn reload_and_probe_endpoints_are_off_by_default_and_say_which_flag_turns_them_on() {
    let exporter = Binary::start(ONE_AGENT, &[]);
    let reload = request(exporter.addr, "POST", "/-/reload", &[]).expect("reload");
    assert_eq!(reload.status, 403, "{}", reload.text());
    assert!(
        reload.text().contains("--web.enable-lifecycle"),
        "{}",
        reload.text()
    );
    let probe = request(exporter.addr, "POST", "/api/v1/agents/self/probe", &[]).expect("probe");
    assert_eq!(probe.status, 403, "{}", probe.text());
    assert!(
        probe.text().contains("--web.enable-probe-api"),
        "{}",
        probe.text()
    );
    // The status page and the read-only API work either way.
    assert_eq!(get(exporter.addr, "/").expect("page").status, 200);
    assert_eq!(
        get(exporter.addr, "/api/v1/agents/self")
            .expect("api")
            .status,
        200
    );
    // SIGHUP always reloads.
    std::fs::write(exporter.config_path(), "agents: []\n").expect("rewrite");
    exporter.signal("HUP");
    let gone = harness::wait_for(Duration::from_secs(10), || {
        (get(exporter.addr, "/api/v1/agents/self").ok()?.status == 404).then_some(())
    });
    assert!(
        gone.is_some(),
        "SIGHUP did not reload:\n{}",
        exporter.logs()
    );
}

#[test]
fn flags_turn_reload_and_probe_endpoints_on() {
    let exporter = Binary::start(
        ONE_AGENT,
        &["--web.enable-lifecycle", "--web.enable-probe-api"],
    );
    let probe = request(exporter.addr, "POST", "/api/v1/agents/self/probe", &[]).expect("probe");
    assert_eq!(probe.status, 200, "{}", probe.text());
    let reload = request(exporter.addr, "POST", "/-/reload", &[]).expect("reload");
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert!(
        reload.text().contains("Config reloaded"),
        "{}",
        reload.text()
    );
}
