//! One encoding of `/metrics` in flight, shared by every answer that sends it: the encoder
//! appends pieces as it writes them, each answer sends them in order, and a piece is freed as
//! soon as every answer sharing it has taken it. The encoder waits while the pieces held reach
//! the budget, so an encoding never holds more than about the budget, however large the fleet.
//!
//! An answer whose client reads nothing holds its pieces only so long. Each answer keeps the
//! time it last took something; one that has had something to take and took nothing for
//! `Limits::stalled` is stalled, whatever the others do. When the budget is full and another
//! answer of the encoding still reads, the stalled ones are cut off (their connections fail,
//! counted) and the encoder goes on for the others; when a new scrape needs the room, the
//! stalled answers of an encoding that waits or has ended are cut, and the encoding is given up
//! only when no answer of it still reads. When every answer has gone, the encoding stops.
//!
//! Answers hand hyper a piece in slices of `SLICE_BYTES`, so a client reading slowly but
//! steadily takes something well within `Limits::stalled` even when a piece is large.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::OwnedSemaphorePermit;

/// The most an answer hands hyper at once: small enough that a client reading a few tens of
/// KiB a second is seen taking something every fraction of a second, large enough that a slice
/// costs nothing next to sending it.
const SLICE_BYTES: usize = 16 * 1024;

/// The bounds of one encoding in flight.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of pieces an encoding holds at most (plus the one piece being added).
    pub budget: usize,
    /// How long an answer that has something to take may take nothing before it is stalled:
    /// cut off when the budget is full and another answer still reads, or when a new scrape
    /// needs the room (its encoding given up when no answer of it still reads).
    pub stalled: Duration,
}

/// What every encoding reports to the exporter's own metrics.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Bytes of pieces held by all encodings in flight.
    pub buffered: Gauge,
    /// Answers cut off because their client stopped reading.
    pub cut: Counter,
}

/// Why an answer ended before its last piece; hyper then drops the connection, so the client
/// sees a failed scrape, never a short one.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the client read nothing for {0:?} while other answers waited; cut off")]
    Cut(Duration),
    #[error("encoding metrics failed: {0}")]
    Failed(String),
}

/// A piece and how many answers have still to take it.
struct Piece {
    bytes: Bytes,
    left: usize,
    /// When it was added: an answer waiting for it before then was not stalled.
    added: Instant,
}

/// One answer's place in the encoding.
struct Place {
    /// Sequence number of the next piece it sends.
    next: u64,
    /// Bytes of that piece already sent.
    offset: usize,
    /// When it last took something (or joined).
    advanced: Instant,
    waker: Option<Waker>,
    /// Cut off: it takes nothing more and holds nothing.
    cut: bool,
}

struct Shared {
    pieces: VecDeque<Piece>,
    /// Sequence number of `pieces[0]`.
    first: u64,
    held: usize,
    /// Every answer that joined, by id; cut and gone ones stay as `None` or `cut`.
    places: Vec<Option<Place>>,
    /// Answers still taking pieces.
    live: usize,
    /// The encoder's end: `Some(Ok)` after its last piece.
    finished: Option<Result<(), String>>,
    /// No answer wants the rest: the encoder stops at its next piece.
    abandoned: bool,
    /// The encoder waits for room.
    blocked: bool,
    /// The encoding's room in the cache, given back once it holds nothing and its encoder ended.
    room: Option<OwnedSemaphorePermit>,
}

/// One encoding in flight.
pub struct Stream {
    shared: Mutex<Shared>,
    /// The encoder waits here for room.
    freed: Condvar,
    limits: Limits,
    gauges: Gauges,
}

impl Stream {
    /// A new encoding holding `room`, with its first answer.
    pub fn start(
        limits: Limits,
        gauges: Gauges,
        room: OwnedSemaphorePermit,
    ) -> (Arc<Stream>, Answer) {
        let stream = Arc::new(Stream {
            shared: Mutex::new(Shared {
                pieces: VecDeque::new(),
                first: 0,
                held: 0,
                places: Vec::new(),
                live: 0,
                finished: None,
                abandoned: false,
                blocked: false,
                room: Some(room),
            }),
            freed: Condvar::new(),
            limits,
            gauges,
        });
        let mut shared = stream.lock();
        shared.live = 1;
        shared.places.push(Some(Place::new()));
        drop(shared);
        let answer = Answer {
            stream: stream.clone(),
            id: 0,
        };
        (stream, answer)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new answer from the first piece on, while no piece has been freed yet and the encoder
    /// still runs; `None` once the start is gone.
    pub fn join(self: &Arc<Self>) -> Option<Answer> {
        let mut shared = self.lock();
        if shared.first != 0 || shared.abandoned || shared.finished.is_some() {
            return None;
        }
        for piece in &mut shared.pieces {
            piece.left += 1;
        }
        shared.live += 1;
        shared.places.push(Some(Place::new()));
        Some(Answer {
            stream: self.clone(),
            id: shared.places.len() - 1,
        })
    }

    /// Adds the encoder's next piece, first waiting while the budget is full; false when no
    /// answer wants it, and the encoder should stop.
    pub fn push(&self, bytes: Bytes) -> bool {
        if bytes.is_empty() {
            return true;
        }
        let mut shared = self.lock();
        while shared.held >= self.limits.budget && shared.live > 0 && !shared.abandoned {
            shared.blocked = true;
            let survey = survey(&shared, self.limits.stalled);
            // Stalled answers are cut only for an answer that still reads: when every answer
            // is stalled, only the encoder waits for them, and the write deadline, or a scrape
            // that needs the room, drops them.
            if !survey.stalled.is_empty() && survey.reading {
                for id in survey.stalled {
                    self.cut(&mut shared, id);
                }
                free_taken(&mut shared, &self.gauges);
                continue;
            }
            let wait = survey
                .next_stall
                .map_or(self.limits.stalled, |at| {
                    at.saturating_duration_since(Instant::now())
                })
                .max(Duration::from_millis(1));
            shared = self
                .freed
                .wait_timeout(shared, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        shared.blocked = false;
        if shared.live == 0 || shared.abandoned {
            shared.abandoned = true;
            return false;
        }
        let len = bytes.len();
        let left = shared.live;
        shared.pieces.push_back(Piece {
            bytes,
            left,
            added: Instant::now(),
        });
        shared.held += len;
        self.gauges.buffered.inc_by(len as i64);
        wake_all(&mut shared);
        true
    }

    /// The encoder's end: after its last piece, or with the error that stopped it.
    pub fn finish(&self, result: Result<(), String>) {
        let mut shared = self.lock();
        shared.finished = Some(result);
        shared.blocked = false;
        wake_all(&mut shared);
        settle(&mut shared);
    }

    /// When a new scrape needs room: cuts off the stalled answers of this encoding while it
    /// waits for room or has ended, and gives the encoding up (freeing its room) when no
    /// answer of it still reads. True when it was given up.
    pub fn evict_if_stalled(&self) -> bool {
        let mut shared = self.lock();
        let waiting = shared.blocked || shared.finished.is_some();
        if shared.live == 0 || !waiting {
            return false;
        }
        let survey = survey(&shared, self.limits.stalled);
        if survey.stalled.is_empty() {
            return false;
        }
        for id in survey.stalled {
            self.cut(&mut shared, id);
        }
        let given_up = shared.live == 0;
        if given_up {
            shared.abandoned = true;
        }
        free_taken(&mut shared, &self.gauges);
        settle(&mut shared);
        self.freed.notify_all();
        given_up
    }

    /// Takes answer `id` out: it holds no piece any more and fails at its next poll.
    fn cut(&self, shared: &mut Shared, id: usize) {
        let Some(place) = shared.places[id].as_mut().filter(|p| !p.cut) else {
            return;
        };
        place.cut = true;
        let next = place.next;
        let waker = place.waker.take();
        release_from(shared, next);
        shared.live -= 1;
        self.gauges.cut.inc();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// One answer's side: sends the encoding's pieces in order, as hyper asks for them.
pub struct Answer {
    stream: Arc<Stream>,
    id: usize,
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let stream = &self.stream;
        let mut guard = stream.lock();
        let shared: &mut Shared = &mut guard;
        let first = shared.first;
        let available = shared.pieces.len() as u64;
        let Some(place) = shared.places[self.id].as_mut() else {
            return Poll::Ready(None);
        };
        if place.cut {
            return Poll::Ready(Some(Err(StreamError::Cut(stream.limits.stalled))));
        }
        let next = place.next;
        if next < first + available {
            let index = (next - first) as usize;
            let piece = &mut shared.pieces[index];
            let start = place.offset;
            let end = piece.bytes.len().min(start + SLICE_BYTES);
            let bytes = piece.bytes.slice(start..end);
            place.advanced = Instant::now();
            if end < piece.bytes.len() {
                place.offset = end;
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            place.next += 1;
            place.offset = 0;
            piece.left -= 1;
            if index == 0 && piece.left == 0 && free_taken(shared, &stream.gauges) {
                stream.freed.notify_all();
            }
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        match &shared.finished {
            Some(Ok(())) => Poll::Ready(None),
            Some(Err(e)) => Poll::Ready(Some(Err(StreamError::Failed(e.clone())))),
            None => {
                place.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        let stream = &self.stream;
        let mut shared = stream.lock();
        let Some(place) = shared.places[self.id].take() else {
            return;
        };
        if !place.cut {
            release_from(&mut shared, place.next);
            shared.live -= 1;
            if shared.live == 0 {
                shared.abandoned = true;
            }
        }
        free_taken(&mut shared, &stream.gauges);
        settle(&mut shared);
        stream.freed.notify_all();
    }
}

/// An answer that will take no more pieces from `next` on no longer holds them.
fn release_from(shared: &mut Shared, next: u64) {
    let skip = next.saturating_sub(shared.first) as usize;
    for piece in shared.pieces.iter_mut().skip(skip) {
        piece.left -= 1;
    }
}

/// Frees the oldest pieces that every answer has taken; true when any was freed.
fn free_taken(shared: &mut Shared, gauges: &Gauges) -> bool {
    let mut freed = 0;
    while shared.pieces.front().is_some_and(|p| p.left == 0) {
        if let Some(piece) = shared.pieces.pop_front() {
            freed += piece.bytes.len();
            shared.first += 1;
        }
    }
    if freed > 0 {
        shared.held -= freed;
        gauges.buffered.dec_by(freed as i64);
    }
    freed > 0
}

/// Gives the room back once the encoding holds nothing and will add nothing.
fn settle(shared: &mut Shared) {
    let ended = shared.finished.is_some();
    if shared.pieces.is_empty() && ended {
        shared.room = None;
    }
}

fn wake_all(shared: &mut Shared) {
    for place in shared.places.iter_mut().flatten() {
        if let Some(waker) = place.waker.take() {
            waker.wake();
        }
    }
}

impl Place {
    fn new() -> Self {
        Place {
            next: 0,
            offset: 0,
            advanced: Instant::now(),
            waker: None,
            cut: false,
        }
    }
}

/// Which answers are stalled, judged each by its own progress.
struct Survey {
    /// Answers that have had something to take for `stalled` and took nothing.
    stalled: Vec<usize>,
    /// Some answer is not stalled.
    reading: bool,
    /// When the next answer that is not stalled yet would be, if it takes nothing.
    next_stall: Option<Instant>,
}

fn survey(shared: &Shared, stalled: Duration) -> Survey {
    let now = Instant::now();
    let end = shared.first + shared.pieces.len() as u64;
    let mut survey = Survey {
        stalled: Vec::new(),
        reading: false,
        next_stall: None,
    };
    for (id, place) in shared.places.iter().enumerate() {
        let Some(place) = place.as_ref().filter(|p| !p.cut) else {
            continue;
        };
        // An answer that has sent everything there is waits for the encoder, not the reverse.
        if place.next >= end {
            survey.reading = true;
            continue;
        }
        let index = place.next.saturating_sub(shared.first) as usize;
        let waiting_since = shared
            .pieces
            .get(index)
            .map_or(place.advanced, |p| p.added.max(place.advanced));
        let stalls_at = waiting_since + stalled;
        if stalls_at <= now {
            survey.stalled.push(id);
        } else {
            survey.reading = true;
            survey.next_stall = Some(survey.next_stall.map_or(stalls_at, |at| at.min(stalls_at)));
        }
    }
    survey
}
