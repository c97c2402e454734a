//! The `heartbeat:` section: agents that cannot be probed report in instead. Parsed here into
//! a layer (so that a check template can hold the period and an agent its own token), then
//! into `Target::Heartbeat`, which the scheduler never probes and the heartbeat endpoints feed.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::layer::{Layer, Placed};
use super::resolve::{Head, Resolver};
use super::secret::Secret;
use super::spec::{Auth, Target};

/// `heartbeat:` as written; every key optional here so that a template and an agent can each
/// give part of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    pub period: Option<Spanned<String>>,
    pub grace: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub max_run_time: Option<Spanned<String>>,
}

/// One layer's `heartbeat:`; an upper layer's keys replace the lower's one by one.
#[derive(Debug, Clone, Default)]
pub(super) struct HeartbeatLayer {
    pub period: Option<Duration>,
    pub grace: Option<Duration>,
    pub token: Option<Secret>,
    pub max_run_time: Option<Duration>,
}

impl HeartbeatLayer {
    pub fn over(self, lower: &HeartbeatLayer) -> HeartbeatLayer {
        HeartbeatLayer {
            period: self.period.or(lower.period),
            grace: self.grace.or(lower.grace),
            token: self.token.or_else(|| lower.token.clone()),
            max_run_time: self.max_run_time.or(lower.max_run_time),
        }
    }
}

/// A heartbeat agent: how often it must report, and the token it reports with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatSpec {
    /// Expected time between two heartbeats.
    pub period: Duration,
    /// Extra time before a heartbeat counts as missed.
    pub grace: Duration,
    /// What the agent presents as `Authorization: Bearer`; swappable on reload.
    pub token: Secret,
    /// A started run must end (success or failure) within it.
    pub max_run_time: Option<Duration>,
}

impl HeartbeatSpec {
    /// Time from one heartbeat to the moment it counts as missed.
    pub fn allowed_silence(&self) -> Duration {
        self.period + self.grace
    }
}

/// The share of the period the default grace is (the reference states it; reference/tests.rs
/// holds the two equal).
pub const DEFAULT_GRACE_SHARE: f64 = 0.2;
/// The least default grace.
pub const MIN_DEFAULT_GRACE: Duration = Duration::from_secs(1);

/// The default grace: 20 % of the period, at least one second, so that a short period does not
/// count ordinary network jitter as a miss.
pub fn default_grace(period: Duration) -> Duration {
    period.mul_f64(DEFAULT_GRACE_SHARE).max(MIN_DEFAULT_GRACE)
}

impl Resolver {
    /// Validates one layer's `heartbeat:`; a key with a problem is reported and left unset.
    pub(super) fn heartbeat_layer(
        &mut self,
        raw: Spanned<RawHeartbeat>,
        what: &str,
    ) -> Placed<HeartbeatLayer> {
        let at = raw.referenced;
        let raw = raw.value;
        let layer = HeartbeatLayer {
            period: self
                .bounded_duration(raw.period.as_ref(), what, "heartbeat.period")
                .map(|p| p.value),
            grace: self
                .bounded_duration(raw.grace.as_ref(), what, "heartbeat.grace")
                .map(|p| p.value),
            token: raw
                .token_file
                .as_ref()
                .and_then(|file| self.read_secret(file, "heartbeat.token_file")),
            max_run_time: self
                .bounded_duration(raw.max_run_time.as_ref(), what, "heartbeat.max_run_time")
                .map(|p| p.value),
        };
        Placed::new(layer, at)
    }

    /// What the agent is watched by: its `url`, or its `heartbeat:` section; exactly one.
    /// The URL's credentials come back with the target, as from `target`.
    pub(super) fn url_or_heartbeat(
        &mut self,
        head: &Head,
        merged: &mut Layer,
        what: &str,
    ) -> Option<(Target, Option<Auth>)> {
        let heartbeat = merged.heartbeat.take();
        match (&head.url, heartbeat) {
            (Some(url), Some(heartbeat)) => {
                self.issue(
                    url.referenced,
                    format!(
                        "{what}: has both `url` and `heartbeat` (line {})",
                        heartbeat.at.line()
                    ),
                    "keep `url` for an agent the exporter probes, or `heartbeat` for one that \
                     reports in, not both",
                );
                None
            }
            (_, Some(heartbeat)) => self
                .heartbeat_spec(heartbeat, what)
                .map(|hb| (Target::Heartbeat(hb), None)),
            (None, None) => {
                self.issue(
                    head.at,
                    format!("{what}: missing required key `url` (or a `heartbeat` section)"),
                    "add `url: http://127.0.0.1:8081/health` for an agent the exporter probes, \
                     or `heartbeat: {period: 1m, token_file: <file>}` for one that reports in",
                );
                None
            }
            (Some(url), None) => {
                let text =
                    self.required_text(Some(url), head.at, what, "url", "url: http://host/health")?;
                self.target(&text, url.referenced, what)
            }
        }
    }

    fn heartbeat_spec(
        &mut self,
        heartbeat: Placed<HeartbeatLayer>,
        what: &str,
    ) -> Option<HeartbeatSpec> {
        let at = heartbeat.at;
        let layer = heartbeat.value;
        let Some(period) = layer.period else {
            self.issue(
                at,
                format!("{what}: `heartbeat` has no `period`"),
                "add the expected time between heartbeats, e.g. `period: 1m`",
            );
            return None;
        };
        let Some(token) = layer.token else {
            self.issue(
                at,
                format!("{what}: `heartbeat` has no `token_file`"),
                "add `token_file: <file holding the token the agent sends as Bearer>`",
            );
            return None;
        };
        Some(HeartbeatSpec {
            period,
            grace: layer.grace.unwrap_or_else(|| default_grace(period)),
            token,
            max_run_time: layer.max_run_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_grace_is_a_fifth_of_the_period_and_at_least_a_second() {
        assert_eq!(
            default_grace(Duration::from_secs(60)),
            Duration::from_secs(12)
        );
        assert_eq!(
            default_grace(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
    }
}
