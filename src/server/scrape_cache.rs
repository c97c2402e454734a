//! Scrapes in bounded memory, whatever the fleet and however slowly clients read. Each scrape
//! is answered while it is encoded, piece by piece (`scrape_stream`); scrapes of one format and
//! compression that arrive before the encoding under way has freed its first piece share it; at
//! most `--web.max-requests` scrapes wait for room at once (503 beyond, at once); at most
//! `LIVE_ENCODINGS` encodings are in flight, each holding at most `PIECE_BUDGET` bytes of
//! pieces. So every answer in flight holds at most `LIVE_ENCODINGS × PIECE_BUDGET` (32 MiB),
//! at 1,000 agents as at 100,000.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;

use super::scrape_stream::Stream;
pub use super::scrape_stream::{Answer, Gauges, Limits, StreamError};
use crate::metrics::{EncodeError, Format};

/// Encodings in flight at once: each one costs its pieces (at most `PIECE_BUDGET`) and its copy
/// of the fleet's state while it runs.
pub const LIVE_ENCODINGS: usize = 4;
/// Bytes of pieces one encoding holds at most: the encoder waits for its slowest answer beyond.
pub const PIECE_BUDGET: usize = 8 << 20;
/// An answer that had something to take and took nothing this long is stalled: it is cut off
/// when its encoding waits for room while another answer still reads, or when a new scrape
/// needs the room; answers that read go on.
/// Prometheus reads an answer as fast as it comes; a client that stops for this long is not
/// scraping.
pub const STALLED: Duration = Duration::from_secs(2);
/// How long a scrape waits for room for a new encoding before it is refused.
const WAIT_FOR_ROOM: Duration = Duration::from_secs(1);
/// How often a scrape waiting for room looks for an encoding to give up.
const ROOM_POLL: Duration = Duration::from_millis(50);

/// Why a scrape was refused (503, the client's to retry).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScrapeError {
    #[error(
        "{0} scrapes are already waiting to be answered (--web.max-requests); try again shortly"
    )]
    Busy(usize),
    #[error(
        "no room for another encoding: {LIVE_ENCODINGS} are being sent to clients; try again shortly"
    )]
    NoRoom,
}

/// What makes one encoding: hands each piece to the sink as it is written, and stops when the
/// sink says false (nobody wants the rest).
pub type Encode =
    Box<dyn FnOnce(&mut dyn FnMut(Vec<u8>) -> bool) -> Result<(), EncodeError> + Send>;

/// The encodings in flight, one joinable per format and compression.
pub struct ScrapeCache {
    max_requests: usize,
    requests: Arc<Semaphore>,
    room: Arc<Semaphore>,
    /// The latest encoding of each (format, gzip), which new scrapes try to join.
    slots: [Mutex<Weak<Stream>>; 6],
    /// Every encoding that may still hold room, to give up a stalled one when room is needed.
    live: Mutex<Vec<Weak<Stream>>>,
    refused: Counter,
    limits: Limits,
    gauges: Gauges,
}

impl ScrapeCache {
    /// `refused` counts the scrapes answered 503; `gauges` the pieces held and the answers cut
    /// off.
    pub fn new(max_requests: usize, refused: Counter, gauges: Gauges) -> Self {
        let limits = Limits {
            budget: PIECE_BUDGET,
            stalled: STALLED,
        };
        Self::with_limits(max_requests, refused, gauges, limits)
    }

    pub fn with_limits(
        max_requests: usize,
        refused: Counter,
        gauges: Gauges,
        limits: Limits,
    ) -> Self {
        let max_requests = max_requests.max(1);
        ScrapeCache {
            max_requests,
            requests: Arc::new(Semaphore::new(max_requests)),
            room: Arc::new(Semaphore::new(LIVE_ENCODINGS)),
            slots: Default::default(),
            live: Mutex::default(),
            refused,
            limits,
            gauges,
        }
    }

    /// An answer for a scrape: a place in the encoding under way when nothing of it has been
    /// freed yet, or in a new one that `encode` makes on the blocking pool.
    pub async fn get(
        &self,
        format: Format,
        gzip: bool,
        encode: Encode,
    ) -> Result<Answer, ScrapeError> {
        let Ok(_request) = self.requests.clone().try_acquire_owned() else {
            self.refused.inc();
            return Err(ScrapeError::Busy(self.max_requests));
        };
        let slot = &self.slots[slot_index(format, gzip)];
        if let Some(answer) = join(slot) {
            return Ok(answer);
        }
        let Some(room) = self.wait_for_room().await else {
            self.refused.inc();
            return Err(ScrapeError::NoRoom);
        };
        let mut latest = slot.lock().unwrap_or_else(PoisonError::into_inner);
        // Another scrape may have started one while this one waited.
        if let Some(answer) = latest.upgrade().and_then(|s| s.join()) {
            return Ok(answer);
        }
        let (stream, answer) = Stream::start(self.limits, self.gauges.clone(), room);
        *latest = Arc::downgrade(&stream);
        drop(latest);
        {
            let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            live.retain(|s| s.strong_count() > 0);
            live.push(Arc::downgrade(&stream));
        }
        // The encoding runs on while any answer wants it; a scraper that hangs up does not
        // cancel it for the others, and the last one that goes stops it.
        tokio::task::spawn_blocking(move || {
            let result = encode(&mut |piece| stream.push(Bytes::from(piece)));
            if let Err(e) = &result {
                tracing::error!(error = %e, "encoding metrics failed");
            }
            stream.finish(result.map_err(|e| e.to_string()));
        });
        Ok(answer)
    }

    /// Room for a new encoding: at once, or once an encoding ends or a stalled one is given up,
    /// within `WAIT_FOR_ROOM`.
    async fn wait_for_room(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let until = tokio::time::Instant::now() + WAIT_FOR_ROOM;
        loop {
            if let Ok(room) = self.room.clone().try_acquire_owned() {
                return Some(room);
            }
            self.evict_one();
            let now = tokio::time::Instant::now();
            if now >= until {
                return None;
            }
            let wait = ROOM_POLL.min(until - now);
            if let Ok(Ok(room)) =
                tokio::time::timeout(wait, self.room.clone().acquire_owned()).await
            {
                return Some(room);
            }
        }
    }

    /// Cuts the stalled answers of encodings that wait or have ended, until one encoding is
    /// left with no answer that reads and is given up.
    fn evict_one(&self) {
        let live: Vec<Arc<Stream>> = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for stream in live {
            if stream.evict_if_stalled() {
                return;
            }
        }
    }
}

fn join(slot: &Mutex<Weak<Stream>>) -> Option<Answer> {
    let latest = slot
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .upgrade();
    latest.and_then(|s| s.join())
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
mod tests;
