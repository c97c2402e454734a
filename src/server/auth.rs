//! Basic auth in front of every endpoint, against the bcrypt hashes of a web config.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), so it runs on the blocking pool,
//! never on the async threads, and at most one verification per core runs at once: a flood of
//! wrong passwords queues up instead of starving DNS look-ups and reloads. An unknown user is
//! verified against a dummy hash of the same cost, so it takes as long as a wrong password and
//! the answer time does not tell which users exist. Successful verifications are remembered by
//! a SHA-256 digest of user, password and hash, never the password itself, so a scraper that
//! sends the same credentials every 15 s pays for bcrypt once.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock, PoisonError};

use base64::Engine;
use http::HeaderValue;
use tokio::sync::Semaphore;

/// Remembered successful verifications; past this the memory is cleared and refilled.
const CACHE_LIMIT: usize = 4096;

/// The users of a web config and what was learnt about them.
pub struct BasicAuth {
    /// User name → bcrypt hash.
    users: HashMap<String, String>,
    /// Cost of the most expensive configured hash, for the dummy.
    cost: u32,
    /// A hash of a random password at `cost`, verified for unknown users. Made on first use,
    /// on the blocking pool.
    dummy: OnceLock<String>,
    verified: Mutex<HashSet<[u8; 32]>>,
    gate: Semaphore,
}

impl BasicAuth {
    /// `users` pairs names with hashes already checked to be bcrypt.
    pub fn new(users: Vec<(String, String)>) -> BasicAuth {
        let cost = users
            .iter()
            .filter_map(|(_, h)| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        BasicAuth {
            users: users.into_iter().collect(),
            cost,
            dummy: OnceLock::new(),
            verified: Mutex::new(HashSet::new()),
            gate: Semaphore::new(cores),
        }
    }

    /// The configured user names, sorted.
    pub fn users(&self) -> Vec<String> {
        let mut names: Vec<String> = self.users.keys().cloned().collect();
        names.sort();
        names
    }

    /// True when `authorization` carries the credentials of a configured user.
    pub async fn allows(self: &std::sync::Arc<Self>, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        let stored = self.users.get(&user).cloned();
        let key = digest(&user, &password, stored.as_deref().unwrap_or_default());
        if stored.is_some() && self.lock().contains(&key) {
            return true;
        }
        let Ok(_permit) = self.gate.acquire().await else {
            return false;
        };
        let auth = self.clone();
        let known = stored.is_some();
        let verified = tokio::task::spawn_blocking(move || match stored {
            Some(hash) => bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false),
            None => {
                // Same work as a wrong password; the result is thrown away.
                let _ = bcrypt::verify(password.as_bytes(), auth.dummy());
                false
            }
        })
        .await
        .unwrap_or(false);
        if verified && known {
            let mut cache = self.lock();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key);
        }
        verified && known
    }

    fn dummy(&self) -> &str {
        self.dummy.get_or_init(|| {
            let mut random = [0u8; 18];
            let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
            // The cost comes from a valid hash, so hashing cannot fail; the default cost is a
            // fallback that keeps the dummy expensive all the same.
            bcrypt::hash(random, self.cost)
                .or_else(|_| bcrypt::hash(random, bcrypt::DEFAULT_COST))
                .unwrap_or_default()
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// User and password of a `Basic` Authorization header.
fn credentials(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The cache key: lengths are included so that no two (user, password) pairs collide by
/// shifting bytes between them.
fn digest(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, password, hash] {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part.as_bytes());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[tokio::test]
    async fn right_password_passes_and_is_remembered_wrong_one_and_unknown_user_fail() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = Arc::new(BasicAuth::new(vec![("alice".into(), hash)]));
        assert!(auth.allows(Some(&header("alice", "s3cret"))).await);
        assert_eq!(auth.lock().len(), 1);
        assert!(auth.allows(Some(&header("alice", "s3cret"))).await);
        assert!(!auth.allows(Some(&header("alice", "wrong"))).await);
        assert!(!auth.allows(Some(&header("bob", "s3cret"))).await);
        assert!(!auth.allows(None).await);
        assert!(
            !auth
                .allows(Some(&HeaderValue::from_static("Bearer x")))
                .await
        );
        assert_eq!(auth.lock().len(), 1, "only successes are remembered");
    }

    #[test]
    fn cache_key_never_holds_the_password_and_separates_fields() {
        let a = digest("ab", "c", "h");
        let b = digest("a", "bc", "h");
        assert_ne!(a, b);
        assert!(!a.windows(2).any(|w| w == b"bc"));
    }
}
