//! Sharding the fleet over several exporters: which agents this exporter probes. Applied to the
//! resolved agent list before it reaches the scheduler, so agents of other shards are never
//! probed, exposed or listed. The assignment is Prometheus' `hashmod` relabel action on the
//! agent name, so an operator can reproduce it with a relabel rule.

use md5::{Digest, Md5};

/// Prometheus' `hashmod`: md5 of the value, its last 8 bytes read as a big-endian u64, modulo
/// `modulus`. Relabeling reuses it for its `hashmod` action. `modulus` must not be 0 (Prometheus
/// rejects such a rule when loading it; here 0 is treated as 1 rather than dividing by zero).
pub fn hashmod(value: &str, modulus: u64) -> u64 {
    let digest = Md5::digest(value.as_bytes());
    let mut low = [0u8; 8];
    low.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(low) % modulus.max(1)
}

/// `--shard.index`: a number, or `auto` for the trailing ordinal of the host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardIndex {
    Fixed(u64),
    /// The trailing `-N` of the host name, as a Kubernetes StatefulSet names its pods.
    Auto,
}

impl std::str::FromStr for ShardIndex {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(ShardIndex::Auto);
        }
        s.parse()
            .map(ShardIndex::Fixed)
            .map_err(|_| format!("`{s}` is neither a shard number (0, 1, …) nor `auto`"))
    }
}

/// Why the shard flags cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    #[error("--shard.count must be at least 1, not 0")]
    ZeroCount,
    #[error("--shard.index {index} is out of range for --shard.count {count} (fix: use 0 to {last})", last = count - 1)]
    OutOfRange { index: u64, count: u64 },
    #[error("--shard.index=auto: the host name `{host}` does not end in `-N` (fix: run as a StatefulSet pod, e.g. agent-health-exporter-2, or give the index as a number)")]
    NoOrdinal { host: String },
    #[error("--shard.index=auto: the host name `{host}` gives shard {index}, out of range for --shard.count {count} (fix: set --shard.count to the number of replicas)")]
    OrdinalOutOfRange {
        host: String,
        index: u64,
        count: u64,
    },
    #[error("--shard.index=auto: cannot read the host name: {0}")]
    HostName(String),
}

/// This exporter's part of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: u64,
}

impl Default for Shard {
    /// One shard: the whole fleet, as without the flags.
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    pub fn new(index: u64, count: u64) -> Result<Shard, ShardError> {
        if count == 0 {
            return Err(ShardError::ZeroCount);
        }
        if index >= count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }

    /// The shard the flags name; `host` is asked for only with `auto`.
    pub fn from_flags(
        index: ShardIndex,
        count: u64,
        host: impl FnOnce() -> Result<String, ShardError>,
    ) -> Result<Shard, ShardError> {
        if count == 0 {
            return Err(ShardError::ZeroCount);
        }
        match index {
            ShardIndex::Fixed(index) => Shard::new(index, count),
            ShardIndex::Auto => {
                let host = host()?;
                let index = host_ordinal(&host)
                    .ok_or_else(|| ShardError::NoOrdinal { host: host.clone() })?;
                Shard::new(index, count).map_err(|_| ShardError::OrdinalOutOfRange {
                    host,
                    index,
                    count,
                })
            }
        }
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether the agent called `name` is probed by this exporter.
    pub fn owns(&self, name: &str) -> bool {
        self.count == 1 || hashmod(name, self.count) == self.index
    }
}

/// The trailing ordinal of a host name: `agent-health-exporter-2` → 2. A fully qualified name
/// is cut at its first dot first.
pub fn host_ordinal(host: &str) -> Option<u64> {
    let short = host.split('.').next().unwrap_or(host);
    let (_, digits) = short.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The host name as the kernel has it (a Kubernetes pod's is its pod name), else `$HOSTNAME`.
pub fn host_name() -> Result<String, ShardError> {
    match std::fs::read_to_string("/proc/sys/kernel/hostname") {
        Ok(name) if !name.trim().is_empty() => Ok(name.trim().to_owned()),
        Ok(_) => std::env::var("HOSTNAME").map_err(|e| ShardError::HostName(e.to_string())),
        Err(read) => std::env::var("HOSTNAME")
            .map_err(|_| ShardError::HostName(format!("/proc/sys/kernel/hostname: {read}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values computed independently (Python's hashlib md5, bytes 8..16 as a
    /// big-endian integer, modulo), the arithmetic of Prometheus' relabel `hashmod`.
    #[test]
    fn hashmod_matches_prometheus_relabel() {
        // md5("planner") = 0273b494d66af726 729c3817b9e194e3
        assert_eq!(hashmod("planner", 3), 0);
        assert_eq!(hashmod("planner", 1000), 979);
        assert_eq!(hashmod("agent-0", 3), 2);
        assert_eq!(hashmod("agent-0", 1000), 371);
        assert_eq!(hashmod("researcher", 3), 1);
        assert_eq!(hashmod("researcher", 1000), 760);
        assert_eq!(hashmod("anything", 1), 0);
    }

    #[test]
    fn every_agent_falls_in_exactly_one_shard() {
        let names: Vec<String> = (0..500).map(|i| format!("agent-{i}")).collect();
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
        let mut sizes = [0usize; 3];
        for name in &names {
            let owners: Vec<u64> = shards
                .iter()
                .filter(|s| s.owns(name))
                .map(|s| s.index())
                .collect();
            assert_eq!(owners.len(), 1, "{name} owned by {owners:?}");
            sizes[owners[0] as usize] += 1;
        }
        // md5 spreads names evenly: each shard gets a fair part of 500.
        assert!(sizes.iter().all(|&n| n > 120), "uneven shards {sizes:?}");
    }

    #[test]
    fn auto_index_is_the_trailing_ordinal_of_the_host_name() {
        let shard = Shard::from_flags(ShardIndex::Auto, 3, || Ok("agent-health-exporter-2".into()));
        assert_eq!(shard, Ok(Shard { index: 2, count: 3 }));
        assert_eq!(host_ordinal("exporter-10.svc.cluster.local"), Some(10));
        assert_eq!(host_ordinal("exporter"), None);
        assert_eq!(host_ordinal("exporter-"), None);
        assert_eq!(host_ordinal("exporter-2a"), None);
    }

    #[test]
    fn auto_index_without_ordinal_or_beyond_count_is_a_clear_error() {
        let none = Shard::from_flags(ShardIndex::Auto, 2, || Ok("laptop".into()));
        assert!(matches!(none, Err(ShardError::NoOrdinal { .. })));
        let beyond = Shard::from_flags(ShardIndex::Auto, 2, || Ok("exporter-2".into()))
            .unwrap_err()
            .to_string();
        assert!(
            beyond.contains("exporter-2") && beyond.contains("--shard.count 2"),
            "{beyond}"
        );
    }

    #[test]
    fn index_must_be_below_count_and_count_above_zero() {
        assert_eq!(
            Shard::new(3, 3),
            Err(ShardError::OutOfRange { index: 3, count: 3 })
        );
        assert_eq!(Shard::new(0, 0), Err(ShardError::ZeroCount));
        assert_eq!("auto".parse(), Ok(ShardIndex::Auto));
        assert_eq!("4".parse(), Ok(ShardIndex::Fixed(4)));
        assert!("x".parse::<ShardIndex>().is_err());
    }
}
