//! The probing runtime and what runs on it besides the slots: gRPC Watch streams. An agent with
//! `grpc.watch: true` keeps a Health/Watch stream open from the reload that adds it until the one
//! that replaces or removes it; a pushed non-SERVING status reaches the monitor at once
//! (`Monitor::record_push`).

use std::sync::{Arc, PoisonError};

use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use super::Scheduler;
use crate::monitor::Agent;
use crate::probe;

/// A thread running a single-threaded runtime until the returned sender is dropped; dropping
/// the runtime then drops every task left on it.
pub(super) fn probing_thread() -> std::io::Result<(Handle, tokio::sync::oneshot::Sender<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("probes".to_owned())
        .spawn(move || {
            // Ends when the sender is dropped, or sends.
            let _ = runtime.block_on(stopped);
        })?;
    Ok((handle, stop))
}

impl Scheduler {
    /// Opens the agent's Watch stream, when it wants one, on the probing runtime.
    pub(super) fn start_watch(&self, agent: &Arc<Agent>) -> Option<AbortHandle> {
        if !probe::wants_watch(&agent.spec) {
            return None;
        }
        let probing = self.probing.lock().unwrap_or_else(PoisonError::into_inner);
        let handle = probing.as_ref()?.handle.clone();
        let (monitor, pushed, watched) =
            (self.shared.monitor.clone(), agent.clone(), agent.clone());
        let task = probe::grpc_watch(
            agent.spec.clone(),
            move |reason, error| {
                monitor.record_push(&pushed, reason, error);
            },
            move |up| watched.state().grpc_watch_up = up,
        );
        Some(handle.spawn(task).abort_handle())
    }
}

/// Ends an agent's Watch stream, if it has one.
pub(super) fn stop_watch(watch: Option<&AbortHandle>) {
    if let Some(watch) = watch {
        watch.abort();
    }
}
