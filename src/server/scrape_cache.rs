//! Encoded scrapes, shared and bounded: the memory `/metrics` answers hold does not grow with
//! the number of clients, however slowly they read. Scrapes that arrive while an encoding of the
//! same format runs share its pieces; at most `--web.max-requests` scrapes wait or encode at once
//! (503 beyond, at once); at most `LIVE_ENCODINGS` encodings are alive (being built, or held by
//! answers still being sent).

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::metrics::{EncodeError, Format};

/// Encodings alive at once. At 10,000 agents a text encoding is about 37 MB: three bound the
/// memory of every answer in flight to about 110 MB, whatever the number of clients.
pub const LIVE_ENCODINGS: usize = 3;
/// When no room is left for a new encoding, an existing one at most this much older than the
/// write deadline is answered instead. A stalled client holds its encoding until the write
/// deadline drops it, so while every room is held, the newest encoding is younger than this:
/// scrapes keep being answered, with values at most this old, and an encoding that stalled
/// clients keep sharing soon becomes too old to share, which frees the rooms.
const SHARE_BEYOND_DEADLINE: Duration = Duration::from_secs(5);
/// How long a scrape waits for room for a new encoding before it is refused.
const WAIT_FOR_ROOM: Duration = Duration::from_secs(1);

/// One finished encoding, shared by every answer that sends it. Holding it holds its room.
pub struct Encoded {
    pub pieces: Vec<Bytes>,
    finished: Instant,
    _room: OwnedSemaphorePermit,
}

/// Why a scrape was not answered with metrics.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScrapeError {
    #[error("{0} scrapes are already being answered (--web.max-requests); try again shortly")]
    Busy(usize),
    #[error(
        "no room for another encoding: {LIVE_ENCODINGS} are still held by clients that read slowly; try again shortly"
    )]
    NoRoom,
    #[error("{0}")]
    Failed(String),
}

impl ScrapeError {
    /// Refusals are the client's to retry; the rest are the exporter's failures.
    pub fn is_refusal(&self) -> bool {
        matches!(self, ScrapeError::Busy(_) | ScrapeError::NoRoom)
    }
}

/// What every scrape waiting for one encoding receives.
type Outcome = Option<Result<Arc<Encoded>, ScrapeError>>;

/// One (format, gzip): the encoding being made, if any, and the latest one, weak, so that it
/// is freed as soon as no answer sends it any more.
#[derive(Default)]
struct Slot {
    running: Option<watch::Receiver<Outcome>>,
    latest: Weak<Encoded>,
}

/// The shared encodings, one slot per format and compression.
pub struct ScrapeCache {
    max_requests: usize,
    requests: Arc<Semaphore>,
    room: Arc<Semaphore>,
    slots: Arc<[Mutex<Slot>; 6]>,
    refused: Counter,
    /// Age up to which an encoding is shared when no room is left.
    share_under_pressure: Duration,
}

impl ScrapeCache {
    /// `refused` counts the scrapes answered 503; `write_timeout` is the server's write
    /// deadline, which bounds how long a stalled client holds an encoding.
    pub fn new(max_requests: usize, refused: Counter, write_timeout: Duration) -> Self {
        let max_requests = max_requests.max(1);
        ScrapeCache {
            max_requests,
            requests: Arc::new(Semaphore::new(max_requests)),
            room: Arc::new(Semaphore::new(LIVE_ENCODINGS)),
            slots: Default::default(),
            refused,
            share_under_pressure: write_timeout + SHARE_BEYOND_DEADLINE,
        }
    }

    /// The encoding to answer a scrape with: the one under way when the scrape arrives, or a
    /// new one made by `encode` on the blocking pool.
    pub async fn get(
        &self,
        format: Format,
        gzip: bool,
        encode: impl FnOnce() -> Result<Vec<Bytes>, EncodeError> + Send + 'static,
    ) -> Result<Arc<Encoded>, ScrapeError> {
        let Ok(_request) = self.requests.clone().try_acquire_owned() else {
            self.refused.inc();
            return Err(ScrapeError::Busy(self.max_requests));
        };
        let index = slot_index(format, gzip);
        let mut outcome = {
            let mut slot = self.slots[index]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match &slot.running {
                Some(running) => running.clone(),
                None => {
                    let (done, running) = watch::channel(None);
                    slot.running = Some(running.clone());
                    // A task of its own: a scraper that hangs up does not cancel the encoding
                    // that others wait for.
                    tokio::spawn(make(
                        self.slots.clone(),
                        index,
                        self.room.clone(),
                        self.share_under_pressure,
                        encode,
                        done,
                    ));
                    running
                }
            }
        };
        let answer = match outcome.wait_for(Option::is_some).await {
            Ok(ready) => ready.clone().unwrap_or(Err(ScrapeError::NoRoom)),
            Err(_) => Err(ScrapeError::Failed(
                "encoding metrics did not finish".into(),
            )),
        };
        if matches!(answer, Err(ScrapeError::NoRoom)) {
            self.refused.inc();
        }
        answer
    }
}

/// Makes one encoding for every scrape waiting on `done`: with room for it, or, when every
/// room is held by answers still being sent, shares a recent one, or gives up after
/// `WAIT_FOR_ROOM`.
async fn make(
    slots: Arc<[Mutex<Slot>; 6]>,
    index: usize,
    room: Arc<Semaphore>,
    share_under_pressure: Duration,
    encode: impl FnOnce() -> Result<Vec<Bytes>, EncodeError> + Send + 'static,
    done: watch::Sender<Outcome>,
) {
    // Ends this encoding's turn: later scrapes start the next one.
    let finish = |made: Option<&Arc<Encoded>>| {
        let mut slot = slots[index].lock().unwrap_or_else(PoisonError::into_inner);
        slot.running = None;
        if let Some(made) = made {
            slot.latest = Arc::downgrade(made);
        }
    };
    let latest = slots[index]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .latest
        .upgrade();
    let room = match room.clone().try_acquire_owned() {
        Ok(room) => {
            // Not needed, and holding it would hold its room while the new one is made.
            drop(latest);
            Some(room)
        }
        Err(_) => match latest.filter(|e| e.finished.elapsed() < share_under_pressure) {
            Some(recent) => {
                finish(None);
                done.send_replace(Some(Ok(recent)));
                return;
            }
            None => tokio::time::timeout(WAIT_FOR_ROOM, room.acquire_owned())
                .await
                .ok()
                .and_then(Result::ok),
        },
    };
    let Some(room) = room else {
        finish(None);
        done.send_replace(Some(Err(ScrapeError::NoRoom)));
        return;
    };
    let outcome = match tokio::task::spawn_blocking(encode).await {
        Ok(Ok(pieces)) => Ok(Arc::new(Encoded {
            pieces,
            finished: Instant::now(),
            _room: room,
        })),
        Ok(Err(e)) => Err(ScrapeError::Failed(e.to_string())),
        Err(e) => Err(ScrapeError::Failed(format!(
            "encoding metrics did not finish: {e}"
        ))),
    };
    finish(outcome.as_ref().ok());
    done.send_replace(Some(outcome));
}

fn slot_index(format: Format, gzip: bool) -> usize {
    let format = match format {
        Format::Text => 0,
        Format::OpenMetrics => 1,
        Format::Protobuf => 2,
    };
    format * 2 + usize::from(gzip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting(
        encodings: &Arc<AtomicUsize>,
        delay: Duration,
    ) -> impl FnOnce() -> Result<Vec<Bytes>, EncodeError> + Send + 'static {
        let encodings = encodings.clone();
        move || {
            std::thread::sleep(delay);
            let n = encodings.fetch_add(1, Ordering::SeqCst);
            Ok(vec![
                Bytes::from(vec![b'x'; 1024]),
                Bytes::from(n.to_string()),
            ])
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scrapes_that_arrive_during_an_encoding_share_it() {
        let cache = Arc::new(ScrapeCache::new(
            40,
            Counter::default(),
            Duration::from_secs(30),
        ));
        let encodings = Arc::new(AtomicUsize::new(0));
        let mut answers = Vec::new();
        for _ in 0..30 {
            let cache = cache.clone();
            let job = counting(&encodings, Duration::from_millis(200));
            answers.push(tokio::spawn(async move {
                cache
                    .get(Format::Text, false, job)
                    .await
                    .map(|e| e.pieces.len())
            }));
        }
        for answer in answers {
            assert_eq!(answer.await.expect("task").expect("answered"), 2);
        }
        let made = encodings.load(Ordering::SeqCst);
        assert!(made <= 2, "30 scrapes at once made {made} encodings");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scrapes_beyond_max_requests_are_refused_at_once_and_counted() {
        let refused = Counter::default();
        let cache = Arc::new(ScrapeCache::new(
            2,
            refused.clone(),
            Duration::from_secs(30),
        ));
        let encodings = Arc::new(AtomicUsize::new(0));
        let mut slow = Vec::new();
        for _ in 0..2 {
            let cache = cache.clone();
            let job = counting(&encodings, Duration::from_millis(500));
            slow.push(tokio::spawn(async move {
                cache.get(Format::Text, false, job).await.is_ok()
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        let third = cache
            .get(Format::Text, false, counting(&encodings, Duration::ZERO))
            .await;
        assert!(matches!(third, Err(ScrapeError::Busy(2))));
        assert!(started.elapsed() < Duration::from_millis(100), "at once");
        assert_eq!(refused.get(), 1);
        for s in slow {
            assert!(s.await.expect("task"));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_in_flight_hold_at_most_the_live_encodings() {
        let cache = ScrapeCache::new(40, Counter::default(), Duration::from_secs(30));
        let encodings = Arc::new(AtomicUsize::new(0));
        // Answers that are never sent (clients that never read) keep their encodings.
        let mut held = Vec::new();
        for _ in 0..50 {
            match cache
                .get(Format::Text, false, counting(&encodings, Duration::ZERO))
                .await
            {
                Ok(encoded) => held.push(encoded),
                Err(e) => assert!(e.is_refusal(), "{e}"),
            }
        }
        let distinct: std::collections::HashSet<*const Encoded> =
            held.iter().map(Arc::as_ptr).collect();
        assert!(distinct.len() <= LIVE_ENCODINGS, "{} alive", distinct.len());
        assert_eq!(held.len(), 50, "recent encodings are shared, not refused");
        assert_eq!(encodings.load(Ordering::SeqCst), LIVE_ENCODINGS);
        // Once the answers are gone, a new scrape gets a new encoding.
        drop(held);
        let fresh = cache
            .get(Format::Text, false, counting(&encodings, Duration::ZERO))
            .await
            .expect("room again");
        assert_eq!(fresh.pieces[1], Bytes::from(LIVE_ENCODINGS.to_string()));
    }
}
