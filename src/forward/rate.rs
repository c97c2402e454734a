//! The owner's per-agent rate limit, applied where a report comes in before it is forwarded:
//! a client looping on a non-owner is answered `429` there, as the owner would answer it, and
//! costs no forward.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::heartbeat::{RATE_BURST, RATE_PER_SECOND};

/// One token bucket per agent of another shard; only agents whose token was verified get one,
/// so the map is bounded by the fleet.
#[derive(Default)]
pub struct Limits {
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

struct Bucket {
    tokens: f64,
    counted: Instant,
}

impl Limits {
    /// Takes one report of `name`; `Err` with how long to wait when it is over the rate.
    pub fn take(&self, name: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(Arc::from(name)).or_insert(Bucket {
            tokens: RATE_BURST,
            counted: now,
        });
        let elapsed = now.saturating_duration_since(bucket.counted).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * RATE_PER_SECOND).min(RATE_BURST);
        bucket.counted = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / RATE_PER_SECOND,
            ))
        }
    }

    /// Forgets the agents no longer of another shard (after a reload).
    pub fn keep(&self, keep: impl Fn(&str) -> bool) {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| keep(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_the_owners_rate() {
        let limits = Limits::default();
        let now = Instant::now();
        for _ in 0..RATE_BURST as usize {
            assert!(limits.take("a", now).is_ok());
        }
        assert!(limits.take("a", now).is_err());
        assert!(limits.take("b", now).is_ok(), "per agent");
        let later = now + Duration::from_secs_f64(1.0 / RATE_PER_SECOND);
        assert!(limits.take("a", later).is_ok());
    }
}
