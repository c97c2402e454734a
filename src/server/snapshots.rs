//! Fleet-sized JSON, built off the async workers: `/api/v1/agents` and the `snapshot`/`resync`
//! frames of event streams serialise every agent, which at 10,000 agents takes milliseconds.
//! That work runs on the blocking pool, `HEAVY_AT_ONCE` jobs at a time; the unfiltered event
//! snapshot is built once and shared.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::events::Filter;
use super::{views, ServerState};
use crate::monitor::Agent;

/// Fleet-sized jobs running at once; more wait (asynchronously) for their turn, so a burst of
/// requests cannot take every thread of the blocking pool or delay other answers.
const HEAVY_AT_ONCE: usize = 2;

/// The turns of fleet-sized jobs on the blocking pool.
pub struct HeavyWork {
    turns: Arc<Semaphore>,
}

impl Default for HeavyWork {
    fn default() -> Self {
        HeavyWork {
            turns: Arc::new(Semaphore::new(HEAVY_AT_ONCE)),
        }
    }
}

impl HeavyWork {
    /// Runs `job` on the blocking pool when a turn is free; `None` if it could not run.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let _turn = self.turns.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(job).await.ok()
    }
}

/// The `data:` payload (JSON and the blank line) of a snapshot for `filter`'s agents.
pub(super) async fn fleet_snapshot(state: &Arc<ServerState>, filter: &Filter) -> Bytes {
    let job_state = state.clone();
    let filter = filter.clone();
    let built = state
        .heavy
        .run(move || {
            if filter.takes_every_agent() {
                return job_state.snapshots.get(&job_state);
            }
            let view = fleet_view(&job_state, &filter.agents(job_state.monitor.agents()));
            let mut data = serde_json::to_vec(&view).unwrap_or_else(|_| b"null".to_vec());
            data.extend_from_slice(b"\n\n");
            Bytes::from(data)
        })
        .await;
    built.unwrap_or_else(|| Bytes::from_static(b"null\n\n"))
}

/// The body of `GET /api/v1/agents`; `None` when it could not be built.
pub(super) async fn fleet_json(state: &Arc<ServerState>) -> Option<serde_json::Result<Vec<u8>>> {
    let job_state = state.clone();
    state
        .heavy
        .run(move || serde_json::to_vec(&fleet_view(&job_state, &job_state.monitor.agents())))
        .await
}

/// `agents` as the API and the event snapshots show them, each with its origin (`static` or
/// its discovery source), so the status page can show where a discovered agent came from.
fn fleet_view(state: &ServerState, agents: &[Arc<Agent>]) -> views::FleetView {
    let mut view = views::fleet(agents);
    super::api::with_origins(state.reloader.as_deref(), &mut view.agents);
    view
}

/// How long a shared snapshot is served before it is built again even though no agent changed
/// status: its last-probe times and window statistics age, and a client connecting later should
/// not get them frozen.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(1);

/// The unfiltered fleet snapshot, serialised once and shared by every client that connects or
/// resyncs within a second and while no agent changed status. A thousand clients connecting at once (or falling
/// behind at once) otherwise build a thousand copies of a large JSON document, starve the
/// threads that forward live events, fall further behind and resync again: a meltdown that
/// the load test showed at 1,000 streams.
#[derive(Default)]
pub struct SnapshotCache {
    cached: Mutex<Option<(u64, tokio::time::Instant, Bytes)>>,
}

impl SnapshotCache {
    /// The `data:` payload and blank line of the whole fleet's snapshot, built again when an
    /// agent came, went or changed status since the cached one was made, or when it is older
    /// than `SNAPSHOT_MAX_AGE`.
    pub(super) fn get(&self, state: &ServerState) -> Bytes {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        // Taken before the snapshot is built, so a change in between only causes a rebuild.
        let key = fleet_key(&state.monitor.agents());
        let now = tokio::time::Instant::now();
        if let Some((made_for, made_at, json)) = cached.as_ref() {
            if *made_for == key && now.duration_since(*made_at) < SNAPSHOT_MAX_AGE {
                return json.clone();
            }
        }
        let mut json = serde_json::to_vec(&fleet_view(state, &state.monitor.agents()))
            .unwrap_or_else(|_| b"null".to_vec());
        json.extend_from_slice(b"\n\n");
        let json = Bytes::from(json);
        *cached = Some((key, now, json.clone()));
        json
    }
}

/// Changes whenever an agent is added, removed, changes status or runs its canary.
fn fleet_key(agents: &[Arc<Agent>]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    agents.len().hash(&mut hasher);
    for agent in agents {
        agent.spec.name.hash(&mut hasher);
        agent.revision.hash(&mut hasher);
        let state = agent.state();
        state.status.as_str().hash(&mut hasher);
        state.status_changes.hash(&mut hasher);
        // A canary's last run shows in the snapshot's agent view.
        let canary_runs = state
            .canary
            .as_ref()
            .map(|c| c.runs_success + c.runs_failure);
        canary_runs.hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::events::tests::{fixture, probe_result};

    #[test]
    fn unfiltered_snapshots_are_shared_until_an_agent_changes_status() {
        let (state, agent) = fixture();
        let first = state.snapshots.get(&state);
        let again = state.snapshots.get(&state);
        assert_eq!(first.as_ptr(), again.as_ptr(), "one copy for every client");
        state.monitor.record(&agent, probe_result());
        let after = state.snapshots.get(&state);
        assert_ne!(first.as_ptr(), after.as_ptr(), "rebuilt after a transition");
        assert!(String::from_utf8_lossy(&after).contains("\"status\":\"healthy\""));
    }

    #[tokio::test(start_paused = true)]
    async fn shared_snapshot_is_built_again_once_it_is_a_second_old() {
        let (state, _agent) = fixture();
        let first = state.snapshots.get(&state);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(first.as_ptr(), state.snapshots.get(&state).as_ptr());
        tokio::time::advance(SNAPSHOT_MAX_AGE).await;
        let later = state.snapshots.get(&state);
        assert_ne!(
            first.as_ptr(),
            later.as_ptr(),
            "a fresh snapshot, not a frozen one"
        );
    }

    /// While one agent's state is locked, building the fleet's JSON waits. On a runtime with a
    /// single worker, that wait must not stop the worker: other requests go on.
    #[test]
    // Holding the agent's lock across the awaits is the point: it stands for a slow build.
    #[allow(clippy::await_holding_lock)]
    fn fleet_json_is_built_off_the_async_workers() {
        let (state, agent) = fixture();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let held = agent.state();
                let list = tokio::spawn({
                    let state = state.clone();
                    async move { crate::server::api::list(&state).await.status() }
                });
                let filtered = tokio::spawn({
                    let state = state.clone();
                    async move {
                        let filter = Filter::from_query(Some("agent_type=t"));
                        fleet_snapshot(&state, &filter).await
                    }
                });
                // Both builds are stuck on the lock; this worker must still run timers.
                tokio::time::sleep(Duration::from_millis(200)).await;
                drop(held);
                let status = list.await.expect("list");
                let snapshot = filtered.await.expect("snapshot");
                let _ = done.send((status, snapshot));
            });
        });
        let (status, snapshot) = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the async worker was blocked by a fleet-sized build");
        assert_eq!(status, http::StatusCode::OK);
        assert!(String::from_utf8_lossy(&snapshot).contains("\"name\":\"a\""));
    }
}
