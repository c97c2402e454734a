//! `GET /api/v1/events`: Server-Sent Events. A task per client forwards the monitor's events
//! into a small bounded queue that the response body drains. Probing never waits for a client:
//! the monitor's broadcast ring and the queue only ever drop, and a client that fell behind gets
//! a `resync` with a fresh snapshot; one that stops reading altogether is dropped.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::{broadcast, mpsc};

use super::snapshots::fleet_snapshot;
use super::{views, Body, ServerState};
use crate::monitor::{Agent, Event};

/// Frames a client may have queued before it counts as behind.
const CLIENT_QUEUE: usize = 64;
/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a client that fell behind is checked for room for its resync.
const RESYNC_CHECK: Duration = Duration::from_millis(250);
/// A client whose queue stays full this long is not reading: it is dropped.
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// Reconnection delay advised to clients.
const RETRY_MS: u64 = 2000;

/// One frame queued for a client: its head (`id`, `event`, `data: `) and a body that may be
/// shared with other clients.
type Queued = (Bytes, Bytes);

/// Which events a client asked for.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    agents: HashSet<String>,
    agent_types: HashSet<String>,
    probes: bool,
    /// `canary` events too (`?canaries=true`).
    canaries: bool,
}

impl Filter {
    pub(super) fn from_query(query: Option<&str>) -> Filter {
        let mut filter = Filter::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "agent" => {
                    filter.agents.insert(value.into_owned());
                }
                "agent_type" => {
                    filter.agent_types.insert(value.into_owned());
                }
                "probes" => filter.probes = matches!(value.as_ref(), "true" | "1" | "yes"),
                "canaries" => filter.canaries = matches!(value.as_ref(), "true" | "1" | "yes"),
                _ => {}
            }
        }
        filter
    }

    /// True when every agent is wanted: such clients share one snapshot.
    pub(super) fn takes_every_agent(&self) -> bool {
        self.agents.is_empty() && self.agent_types.is_empty()
    }

    fn wants(&self, agent: &str, agent_type: &str) -> bool {
        (self.agents.is_empty() || self.agents.contains(agent))
            && (self.agent_types.is_empty() || self.agent_types.contains(agent_type))
    }

    pub(super) fn agents(&self, all: Vec<Arc<Agent>>) -> Vec<Arc<Agent>> {
        all.into_iter()
            .filter(|a| self.wants(&a.spec.name, &a.spec.agent_type))
            .collect()
    }
}

pub(super) fn stream(state: &Arc<ServerState>, query: Option<&str>) -> Response<Body> {
    let filter = Filter::from_query(query);
    // Subscribe before the snapshot, so no transition falls between the two.
    let events = state.monitor.subscribe(filter.probes);
    let (queue, frames) = mpsc::channel::<Queued>(CLIENT_QUEUE);
    let mut client = Client {
        state: state.clone(),
        filter,
        queue,
        next_id: 1,
    };
    tokio::spawn(async move {
        let first = format!("retry: {RETRY_MS}\n\n");
        let snapshot = client.snapshot_frame("snapshot").await;
        // The queue is empty and larger than two frames: these cannot fail.
        let _ = client.queue.try_send((Bytes::from(first), Bytes::new()));
        let _ = client.queue.try_send(snapshot);
        client.forward(events).await;
    });

    // Each queued frame goes out as its head, then its (possibly shared) body.
    let body = StreamBody::new(stream::unfold(
        (frames, None::<Bytes>),
        |(mut frames, pending)| async move {
            if let Some(rest) = pending {
                return Some((Ok::<_, Infallible>(Frame::data(rest)), (frames, None)));
            }
            let (head, rest) = frames.recv().await?;
            let pending = (!rest.is_empty()).then_some(rest);
            Some((Ok(Frame::data(head)), (frames, pending)))
        },
    ));
    let mut response = Response::new(body.boxed());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells buffering reverse proxies to pass events through at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    *response.status_mut() = StatusCode::OK;
    response
}

struct Client {
    state: Arc<ServerState>,
    filter: Filter,
    queue: mpsc::Sender<Queued>,
    next_id: u64,
}

impl Client {
    /// A `snapshot` or `resync` frame, built off the async workers (see `snapshots`).
    async fn snapshot_frame(&mut self, event: &str) -> Queued {
        let body = fleet_snapshot(&self.state, &self.filter).await;
        (self.head(event), body)
    }

    fn head(&mut self, event: &str) -> Bytes {
        let id = self.next_id;
        self.next_id += 1;
        Bytes::from(format!("id: {id}\nevent: {event}\ndata: "))
    }

    fn frame(&mut self, event: &str, data: &impl serde::Serialize) -> Queued {
        let head = self.head(event);
        // serde_json never writes a raw newline, so the data fits on one `data:` line.
        let mut data = serde_json::to_vec(data).unwrap_or_else(|_| b"null".to_vec());
        data.extend_from_slice(b"\n\n");
        (head, Bytes::from(data))
    }

    /// Turns a monitor event into a frame, if this client wants it.
    fn encode(&mut self, event: &Event) -> Option<Queued> {
        match event {
            Event::Status(t) if self.filter.wants(&t.agent, &t.agent_type) => {
                Some(self.frame("status", &views::transition(t)))
            }
            Event::Probe {
                agent,
                agent_type,
                result,
                status,
                heartbeat_deadline,
            } if self.filter.probes && self.filter.wants(agent, agent_type) => Some(self.frame(
                "probe",
                &views::probe_event(agent, agent_type, *status, result, *heartbeat_deadline),
            )),
            Event::Canary {
                agent,
                agent_type,
                result,
                status,
            } if self.filter.canaries && self.filter.wants(agent, agent_type) => Some(self.frame(
                "canary",
                &views::canary_event(agent, agent_type, *status, result),
            )),
            // Agents came or went: `forward` sends a fresh snapshot.
            _ => None,
        }
    }

    async fn forward(mut self, mut events: broadcast::Receiver<Event>) {
        let mut shutdown = self.state.shutdown.subscribe();
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.tick().await;
        let mut resync_check = tokio::time::interval(RESYNC_CHECK);
        // Set when events were lost for this client; cleared once its resync is queued.
        let mut behind = false;
        let mut stalled_since: Option<tokio::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                received = events.recv() => match received {
                    // Agents came or went: a fresh snapshot is the simplest correct update.
                    Ok(Event::FleetChanged) if !behind => {
                        let frame = self.snapshot_frame("resync").await;
                        behind = !self.offer(frame, &mut stalled_since);
                    }
                    Ok(event) if !behind => {
                        if let Some(frame) = self.encode(&event) {
                            behind = !self.offer(frame, &mut stalled_since);
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => behind = true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = resync_check.tick(), if behind => {
                    if self.queue.capacity() > 0 {
                        let frame = self.snapshot_frame("resync").await;
                        behind = !self.offer(frame, &mut stalled_since);
                    }
                }
                _ = keep_alive.tick() => {
                    let _ = self.offer((Bytes::from_static(b": keep-alive\n\n"), Bytes::new()), &mut stalled_since);
                }
                _ = self.queue.closed() => return,
                _ = shutdown.changed() => return,
            }
            if stalled_since.is_some_and(|since| since.elapsed() >= STALL_LIMIT) {
                tracing::debug!("dropping an event-stream client that stopped reading");
                return;
            }
        }
    }

    /// Queues a frame without waiting; false when the queue is full (the client is behind).
    fn offer(&self, frame: Queued, stalled_since: &mut Option<tokio::time::Instant>) -> bool {
        match self.queue.try_send(frame) {
            Ok(()) => {
                *stalled_since = None;
                true
            }
            Err(_) => {
                stalled_since.get_or_insert_with(tokio::time::Instant::now);
                false
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config;
    use crate::metrics::{ExporterMetrics, Metrics};
    use crate::monitor::Monitor;
    use crate::probe::{Outcome, Phases, ProbeResult};
    use std::path::Path;
    use std::sync::atomic::AtomicBool;
    use std::time::SystemTime;

    pub(in crate::server) fn fixture() -> (Arc<ServerState>, Arc<Agent>) {
        let yaml = "agents:\n  - name: a\n    type: t\n    url: http://127.0.0.1:1/\n";
        let config = config::parse(yaml, "t.yaml", Path::new(".")).expect("valid");
        let monitor = Arc::new(Monitor::new(10));
        let agent = monitor.insert(&config.agents[0]);
        let exporter = Arc::new(ExporterMetrics::default());
        let metrics = Arc::new(Metrics::new(monitor.clone(), exporter, crate::app::BUILD));
        let state = Arc::new(ServerState {
            monitor,
            metrics,
            reloader: None,
            scheduler: None,
            telemetry_path: "/metrics".into(),
            status_page: Bytes::new(),
            ready: AtomicBool::new(true),
            shutdown: tokio::sync::watch::channel(false).0,
            snapshots: Default::default(),
            heavy: Default::default(),
            scrapes: crate::server::ScrapeCache::new(
                crate::server::DEFAULT_MAX_REQUESTS,
                Default::default(),
                crate::server::WRITE_TIMEOUT,
            ),
            endpoints: Default::default(),
            forwarder: None,
        });
        (state, agent)
    }

    pub(in crate::server) fn probe_result() -> ProbeResult {
        ProbeResult {
            ended_at: SystemTime::now(),
            duration: Duration::from_millis(3),
            phases: Phases::default(),
            http_status: Some(200),
            cert_expiry: None,
            protocol: Default::default(),
            outcome: Outcome::Healthy,
        }
    }

    fn joined(frame: &Queued) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&frame.0),
            String::from_utf8_lossy(&frame.1)
        )
    }

    fn client(state: &Arc<ServerState>, capacity: usize) -> (Client, mpsc::Receiver<Queued>) {
        let (queue, frames) = mpsc::channel(capacity);
        let client = Client {
            state: state.clone(),
            filter: Filter::from_query(Some("probes=true")),
            queue,
            next_id: 1,
        };
        (client, frames)
    }

    #[tokio::test]
    async fn client_that_fell_behind_gets_a_resync_then_live_events_again() {
        let (state, agent) = fixture();
        let (client, mut frames) = client(&state, 4);
        tokio::spawn(client.forward(state.monitor.subscribe(true)));
        tokio::task::yield_now().await;
        for _ in 0..20 {
            state.monitor.record(&agent, probe_result());
            tokio::task::yield_now().await;
        }
        // The client reads again: the queued frames, then a resync, then live events.
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !seen.iter().any(|f: &String| f.contains("event: resync")) {
            let frame = tokio::time::timeout_at(deadline, frames.recv())
                .await
                .expect("a resync within 2 s")
                .expect("stream open");
            seen.push(joined(&frame));
        }
        assert!(
            seen.len() <= 5,
            "at most the queue, then the resync: {seen:?}"
        );
        state.monitor.record(&agent, probe_result());
        let next = tokio::time::timeout(Duration::from_secs(2), frames.recv())
            .await
            .expect("a live event")
            .expect("open");
        assert!(joined(&next).contains("event: probe"));
    }

    /// Splits one frame into its fields; panics on anything that is not `name: value` lines
    /// ended by one blank line, which is what a browser's EventSource would misread.
    fn parse_frame(frame: &[u8]) -> Vec<(String, String)> {
        let text = std::str::from_utf8(frame).expect("frames are UTF-8");
        let body = text
            .strip_suffix("\n\n")
            .expect("a frame ends with a blank line");
        assert!(
            !body.contains('\r'),
            "a raw CR would end a line early: {body:?}"
        );
        body.split('\n')
            .map(|line| {
                let (name, value) = line.split_once(": ").expect("name: value");
                (name.to_owned(), value.to_owned())
            })
            .collect()
    }

    fn transition_with(agent: &str, agent_type: &str, error: &str) -> crate::monitor::Transition {
        crate::monitor::Transition {
            agent: agent.into(),
            agent_type: agent_type.into(),
            from: crate::monitor::Status::Healthy,
            to: crate::monitor::Status::Unhealthy,
            at: SystemTime::now(),
            reason: Some(crate::probe::FailureReason::Protocol),
            canary_reason: None,
            error: Some(error.to_owned()),
            consecutive_failures: 1,
            heartbeat_deadline: None,
        }
    }

    fn assert_round_trip(agent: &str, agent_type: &str, error: &str) {
        let (state, _) = fixture();
        let (mut client, _frames) = client(&state, 4);
        client.filter = Filter::default();
        let event = Event::Status(transition_with(agent, agent_type, error));
        let frame = client.encode(&event).expect("a status frame");
        let fields = parse_frame(joined(&frame).as_bytes());
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["id", "event", "data"], "{fields:?}");
        let data: serde_json::Value = serde_json::from_str(&fields[2].1).expect("data is JSON");
        assert_eq!(data["agent"], agent);
        assert_eq!(data["type"], agent_type);
        assert_eq!(data["error"], error);
    }

    #[test]
    fn names_and_errors_with_line_breaks_stay_inside_one_data_line() {
        // Kept as regressions: every kind of line break a browser honours, and a NUL.
        for nasty in [
            "a\nb",
            "a\rb",
            "a\r\nb",
            "\n\ndata: forged",
            "\u{2028}\u{2029}",
            "\0",
            "",
        ] {
            assert_round_trip(nasty, nasty, nasty);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 256,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        #[test]
        fn any_agent_name_and_error_frames_as_one_data_line_and_parses_back(
            agent in "\\PC{0,40}|[\n\r\t :]{0,10}",
            agent_type in "\\PC{0,20}",
            error in proptest::prelude::any::<String>(),
        ) {
            assert_round_trip(&agent, &agent_type, &error);
        }
    }

    #[test]
    fn filter_takes_repeated_agents_types_and_probes() {
        let f = Filter::from_query(Some("agent=a&agent=b%20c&agent_type=worker&probes=true"));
        assert!(f.probes);
        assert!(f.wants("a", "worker"));
        assert!(f.wants("b c", "worker"));
        assert!(!f.wants("a", "orchestrator"));
        assert!(!f.wants("d", "worker"));
        let all = Filter::from_query(None);
        assert!(all.wants("anything", "any") && !all.probes && !all.canaries);
        assert!(Filter::from_query(Some("canaries=true")).canaries);
    }
}
