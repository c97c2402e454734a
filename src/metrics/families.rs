//! Every series the fleet exposes, described once: name, help, type, unit, extra label and how to
//! read one agent's values from its row. `walk` drives every encoder (Prometheus text,
//! OpenMetrics, protobuf) and the test reference from this table, so a new metric is one entry
//! here.

use crate::config::Target;
use crate::monitor::{
    unix_seconds, CanaryHistogram, NativeBuckets, Status, AGENT_LABEL_NAMES, CANARY_BUCKETS,
    DURATION_BUCKETS,
};
use crate::probe::{CanaryReason, FailureReason, Phases, NO_GRPC_STATUS};

use super::walk::{Fleet, Row};

/// One family of series.
#[derive(Debug, Clone, Copy)]
pub(super) struct Family {
    /// Without the unit and without `_total`: the encoders add them as each format wants.
    pub(super) name: &'static str,
    /// A constant without backslashes or newlines: nothing to escape.
    pub(super) help: &'static str,
    /// Appended to the name as `_unit` and, in OpenMetrics and protobuf, declared.
    pub(super) unit: Option<&'static str>,
    /// The label a family adds after the agent's, with its values; the n-th sample an agent's
    /// row gives goes with the n-th value.
    pub(super) extra: Option<Extra>,
    pub(super) values: Values,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Extra {
    pub(super) key: &'static str,
    pub(super) values: fn() -> Vec<&'static str>,
}

/// Where a family's samples come from, which also says its type.
#[derive(Debug, Clone, Copy)]
pub(super) enum Values {
    /// One series for the whole fleet, without labels.
    FleetGauge(fn(&Fleet) -> u64),
    /// An agent's samples, in the order of the extra label's values; none when the agent has no
    /// such series (yet).
    Gauge(fn(&Row, &mut Samples)),
    Counter(fn(&Row, &mut Samples)),
    /// An info series: value 1 under `labels` with values the agent reported (escaped by the
    /// encoders), or none when the agent has no such series.
    Info {
        labels: [&'static str; INFO_LABELS],
        values: for<'a> fn(&'a Row) -> Option<[&'a str; INFO_LABELS]>,
    },
    /// One histogram per agent over `bounds` (the `+Inf` bucket comes on top).
    Histogram {
        bounds: &'static [f64],
        /// None when the agent has no such histogram.
        value: for<'a> fn(&'a Row) -> Option<HistogramSample<'a>>,
    },
}

/// The type of a family, as every format names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Gauge,
    Counter,
    Histogram,
}

impl Family {
    pub(super) fn kind(&self) -> Kind {
        match self.values {
            Values::FleetGauge(_) | Values::Gauge(_) | Values::Info { .. } => Kind::Gauge,
            Values::Counter(_) => Kind::Counter,
            Values::Histogram { .. } => Kind::Histogram,
        }
    }

    /// The label names this family's series carry after the agent's own labels: its extra
    /// label, its info labels, `le` for a histogram's buckets.
    pub(super) fn label_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.extra.iter().map(|e| e.key).collect();
        match self.values {
            Values::Info { labels, .. } => names.extend(labels),
            Values::Histogram { .. } => names.push("le"),
            Values::FleetGauge(_) | Values::Gauge(_) | Values::Counter(_) => {}
        }
        names
    }
}

/// Every label name the exporter writes on an agent's series, sorted: the agent's `agent` and
/// `agent_type`, then each family's own. An agent label of one of these names would give a
/// series the name twice, and Prometheus rejects the whole scrape for it.
pub(super) fn reserved_label_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = AGENT_LABEL_NAMES.to_vec();
    for family in FAMILIES {
        names.extend(family.label_names());
    }
    names.sort_unstable();
    names.dedup();
    names
}

/// How many labels `agent_protocol_info` has after the agent's.
pub(super) const INFO_LABELS: usize = 4;

/// The labels of an info series after the agent's, as the encoders take them.
pub(super) type InfoLabels<'a> = [(&'static str, &'a str); INFO_LABELS];

impl Values {
    /// `labels` paired with the values an info series reported.
    pub(super) fn info_pairs<'a>(
        labels: [&'static str; INFO_LABELS],
        values: [&'a str; INFO_LABELS],
    ) -> InfoLabels<'a> {
        std::array::from_fn(|i| (labels[i], values[i]))
    }
}

/// A sample's value: integers and floats are written differently in text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Sample {
    Int(u64),
    Float(f64),
}

impl Sample {
    pub(super) fn as_f64(self) -> f64 {
        match self {
            Sample::Int(v) => v as f64,
            Sample::Float(v) => v,
        }
    }
}

/// The samples one agent gives for one family; reused across rows.
#[derive(Debug, Default)]
pub(super) struct Samples(pub(super) Vec<Sample>);

impl Samples {
    pub(super) fn int(&mut self, value: impl Into<u64>) {
        self.0.push(Sample::Int(value.into()));
    }

    pub(super) fn float(&mut self, value: f64) {
        self.0.push(Sample::Float(value));
    }
}

/// One agent's histogram.
#[derive(Debug, Clone, Copy)]
pub(super) struct HistogramSample<'a> {
    pub(super) sum: f64,
    pub(super) count: u64,
    /// Per bucket, not cumulative, the last one above the largest bound.
    pub(super) buckets: &'a [u64],
    /// Only in protobuf scrapes: the text formats have no native histograms.
    pub(super) native: Option<&'a NativeBuckets>,
}

/// The fleet's families, in the order of the exposition.
pub(super) const FAMILIES: &[Family] = &[
    Family {
        name: "agent_exporter_agents",
        help: "Agents in the loaded config.",
        unit: None,
        extra: None,
        values: Values::FleetGauge(|fleet| fleet.agents as u64),
    },
    Family {
        name: "agent_exporter_event_subscribers",
        help: "Clients connected to the event stream.",
        unit: None,
        extra: None,
        values: Values::FleetGauge(|fleet| fleet.subscribers as u64),
    },
    Family {
        name: "agent_up",
        help: "1 when the agent's last probe succeeded, else 0.",
        unit: None,
        extra: None,
        values: Values::Gauge(|row, out| {
            if let Some(last) = &row.state.last {
                out.int(last.outcome.is_success());
            }
        }),
    },
    Family {
        name: "agent_health_status",
        help: "1 for the agent's current status, 0 for the others.",
        unit: None,
        extra: Some(Extra {
            key: "status",
            values: || Status::ALL.map(Status::as_str).to_vec(),
        }),
        values: Values::Gauge(|row, out| {
            for status in Status::ALL {
                out.int(row.state.status == status);
            }
        }),
    },
    Family {
        name: "agent_probe_duration_seconds",
        help: "Duration of every probe, failed ones included.",
        unit: None,
        extra: None,
        values: Values::Histogram {
            bounds: &DURATION_BUCKETS,
            value: |row| {
                Some(HistogramSample {
                    sum: row.state.duration_sum,
                    count: row.state.duration_buckets.iter().sum(),
                    buckets: &row.state.duration_buckets,
                    native: Some(&row.state.duration_native),
                })
            },
        },
    },
    Family {
        name: "agent_probe_phase_seconds",
        help: "Time spent in each phase of the agent's last probe.",
        unit: None,
        extra: Some(Extra {
            key: "phase",
            values: || Phases::default().named().map(|(phase, _)| phase).to_vec(),
        }),
        values: Values::Gauge(|row, out| {
            if let Some(last) = &row.state.last {
                for (_, value) in last.phases.named() {
                    out.float(value.as_secs_f64());
                }
            }
        }),
    },
    Family {
        name: "agent_probes",
        help: "Probes by result.",
        unit: None,
        extra: Some(Extra {
            key: "result",
            values: || vec!["success", "failure"],
        }),
        values: Values::Counter(|row, out| {
            out.int(row.state.probes_success);
            out.int(row.state.probes_failure);
        }),
    },
    Family {
        name: "agent_probe_failures",
        help: "Failed probes by reason.",
        unit: None,
        extra: Some(Extra {
            key: "reason",
            values: || FailureReason::ALL.map(FailureReason::as_str).to_vec(),
        }),
        values: Values::Counter(|row, out| {
            for count in row.state.failures_by_reason {
                out.int(count);
            }
        }),
    },
    Family {
        name: "agent_consecutive_failures",
        help: "Failed probes in a row, up to the last one.",
        unit: None,
        extra: None,
        values: Values::Gauge(|row, out| out.int(row.state.consecutive_failures)),
    },
    Family {
        name: "agent_status_changes",
        help: "Transitions between known statuses.",
        unit: None,
        extra: None,
        values: Values::Counter(|row, out| out.int(row.state.status_changes)),
    },
    Family {
        name: "agent_last_probe_timestamp_seconds",
        help: "End of the agent's last probe.",
        unit: None,
        extra: None,
        values: Values::Gauge(|row, out| {
            if let Some(last) = &row.state.last {
                out.float(unix_seconds(last.ended_at));
            }
        }),
    },
    Family {
        name: "agent_last_success_timestamp_seconds",
        help: "End of the agent's last successful probe.",
        unit: None,
        extra: None,
        values: Values::Gauge(|row, out| {
            if let Some(at) = row.state.last_success {
                out.float(unix_seconds(at));
            }
        }),
    },
    Family {
        name: "agent_http_status_code",
        help: "HTTP status of the agent's last probe, 0 when none was received.",
        unit: None,
        extra: None,
        values: Values::Gauge(|row, out| {
            if let Some(last) = &row.state.last {
                out.int(last.http_status.unwrap_or(0));
            }
        }),
    },
    Family {
        name: "agent_tls_cert_expiry_timestamp_seconds",
        help: "Earliest expiry among the certificates the agent served.",
        unit: None,
        extra: None,
        values: Values::Gauge(|row, out| {
            if let Some(expiry) = row.state.last.as_ref().and_then(|last| last.cert_expiry) {
                out.float(unix_seconds(expiry));
            }
        }),
    },
    Family {
        name: "agent_grpc_status_code",
        help: "gRPC status code of the agent's last health call, -1 when the call got none.",
        unit: None,
        extra: None,
        values: Values::Gauge(|row, out| {
            if matches!(row.agent.spec.target, Target::Grpc(_)) {
                let last = row.state.last.as_ref().and_then(|r| r.protocol.grpc_status);
                out.float(f64::from(last.unwrap_or(NO_GRPC_STATUS)));
            }
        }),
    },
    Family {
        name: "agent_grpc_watch_up",
        help: "1 while the gRPC agent's Health/Watch stream is open, else 0.",
        unit: None,
        extra: None,
        values: Values::Gauge(|row, out| {
            if crate::probe::wants_watch(&row.agent.spec) {
                out.int(row.state.grpc_watch_up);
            }
        }),
    },
    Family {
        name: "agent_protocol_info",
        help: "What a grpc, mcp or a2a agent reports of itself; value 1.",
        unit: None,
        extra: None,
        values: Values::Info {
            labels: [
                "protocol",
                "server_name",
                "server_version",
                "protocol_version",
            ],
            values: |row| {
                let protocol = match &row.agent.spec.target {
                    Target::Grpc(_) => "grpc",
                    Target::Mcp(_) => "mcp",
                    Target::A2a(_) => "a2a",
                    _ => return None,
                };
                // Before the agent said anything, only the protocol is known; after, what it
                // said last, also while it fails: the series tells what the agent runs.
                let info = row.state.protocol_info.as_deref();
                let (name, version, protocol_version) = info.map_or(("", "", ""), |i| {
                    (
                        i.server_name.as_str(),
                        i.server_version.as_str(),
                        i.protocol_version.as_str(),
                    )
                });
                Some([protocol, name, version, protocol_version])
            },
        },
    },
    Family {
        name: "agent_heartbeat_deadline_timestamp_seconds",
        help: "When a heartbeat agent's silence will count as missed, or its open run time out.",
        unit: None,
        extra: None,
        values: Values::Gauge(|row, out| {
            if let Some(deadline) = row.state.heartbeat_deadline {
                out.float(unix_seconds(deadline));
            }
        }),
    },
    Family {
        name: "agent_probe_interval_seconds",
        help: "Configured time between two probes of the agent.",
        unit: None,
        extra: None,
        values: Values::Gauge(|row, out| out.float(row.agent.spec.interval.as_secs_f64())),
    },
    Family {
        name: "agent_probe_timeout_seconds",
        help: "Configured upper bound of one probe of the agent.",
        unit: None,
        extra: None,
        values: Values::Gauge(|row, out| out.float(row.agent.spec.timeout.as_secs_f64())),
    },
    Family {
        name: "agent_canary_duration_seconds",
        help: "Duration of each canary task, failed ones included.",
        unit: None,
        extra: None,
        values: Values::Histogram {
            bounds: &CANARY_BUCKETS,
            value: |row| {
                row.state
                    .canary
                    .as_ref()
                    .map(|c| canary_histogram(&c.duration))
            },
        },
    },
    Family {
        name: "agent_canary_first_token_seconds",
        help: "Streaming chat completion canaries: time to the first token.",
        unit: None,
        extra: None,
        values: Values::Histogram {
            bounds: &CANARY_BUCKETS,
            value: |row| {
                let canary = row.state.canary.as_ref()?;
                canary.first_token.as_ref().map(canary_histogram)
            },
        },
    },
    Family {
        name: "agent_canary_runs",
        help: "Canary tasks run, by result.",
        unit: None,
        extra: Some(Extra {
            key: "result",
            values: || vec!["success", "failure"],
        }),
        values: Values::Counter(|row, out| {
            if let Some(canary) = &row.state.canary {
                out.int(canary.runs_success);
                out.int(canary.runs_failure);
            }
        }),
    },
    Family {
        name: "agent_canary_failures",
        help: "Failed canary tasks by reason.",
        unit: None,
        extra: Some(Extra {
            key: "reason",
            values: || CanaryReason::ALL.map(CanaryReason::as_str).to_vec(),
        }),
        values: Values::Counter(|row, out| {
            if let Some(canary) = &row.state.canary {
                for count in canary.failures_by_reason {
                    out.int(count);
                }
            }
        }),
    },
    Family {
        name: "agent_canary_last_success_timestamp_seconds",
        help: "End of the agent's last successful canary task.",
        unit: None,
        extra: None,
        values: Values::Gauge(|row, out| {
            if let Some(at) = row.state.canary.as_ref().and_then(|c| c.last_success) {
                out.float(unix_seconds(at));
            }
        }),
    },
    Family {
        name: "agent_canary_tokens",
        help: "Tokens the canary's answers reported as used, by kind.",
        unit: None,
        extra: Some(Extra {
            key: "kind",
            values: || vec!["prompt", "completion"],
        }),
        values: Values::Counter(|row, out| {
            if let Some(canary) = &row.state.canary {
                out.int(canary.tokens_prompt);
                out.int(canary.tokens_completion);
            }
        }),
    },
];

/// A canary histogram as the encoders take it.
fn canary_histogram(h: &CanaryHistogram) -> HistogramSample<'_> {
    HistogramSample {
        sum: h.sum,
        count: h.count(),
        buckets: &h.buckets,
        native: Some(&h.native),
    }
}
