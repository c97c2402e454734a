//! One encoding of `/metrics` in flight, shared by every answer that sends it: the encoder
//! appends pieces as it writes them, each answer sends them in order, and a piece is freed as
//! soon as every answer sharing it has taken it. The encoder waits while the pieces held reach
//! the budget, so an encoding never holds more than about the budget, however large the fleet.
//!
//! An answer whose client reads nothing holds its pieces only so long: when the budget is full
//! and it has taken nothing for `Limits::stalled` while another answer of the same encoding is
//! ahead of it, it is cut off (its connection fails, counted), and the encoder goes on for the
//! others. When every answer has gone, the encoding stops.

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

/// The bounds of one encoding in flight.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of pieces an encoding holds at most (plus the one piece being added).
    pub budget: usize,
    /// How long an answer may take nothing while the budget is full before it is cut off (when
    /// another answer is ahead of it) or its encoding is given up (when a new scrape needs the
    /// room).
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
}

/// One answer's place in the encoding.
struct Place {
    /// Sequence number of the next piece it sends.
    next: u64,
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
    /// When a piece was last added or freed.
    progress: Instant,
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
                progress: Instant::now(),
                room: Some(room),
            }),
            freed: Condvar::new(),
            limits,
            gauges,
        });
        let mut shared = stream.lock();
        shared.live = 1;
        shared.places.push(Some(Place {
            next: 0,
            waker: None,
            cut: false,
        }));
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
        shared.places.push(Some(Place {
            next: 0,
            waker: None,
            cut: false,
        }));
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
        // Since when the slowest answers were last looked at: `progress`, or the last look that
        // found nobody ahead of them.
        let mut looked = shared.progress;
        while shared.held >= self.limits.budget && shared.live > 0 && !shared.abandoned {
            shared.blocked = true;
            looked = looked.max(shared.progress);
            let waited = looked.elapsed();
            if waited >= self.limits.stalled {
                // Everyone at the same place cuts nobody: only the encoder waits for them, and
                // the write deadline, or a scrape that needs the room, drops them.
                self.cut_slowest(&mut shared);
                looked = Instant::now();
                continue;
            }
            shared = self
                .freed
                .wait_timeout(shared, self.limits.stalled - waited)
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
        shared.pieces.push_back(Piece { bytes, left });
        shared.held += len;
        shared.progress = Instant::now();
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

    /// Gives the encoding up when its answers have taken nothing for `Limits::stalled` while
    /// it waits for room or has ended: every answer is cut off and its room freed. True when
    /// it was given up.
    pub fn evict_if_stalled(&self) -> bool {
        let mut shared = self.lock();
        let waiting = shared.blocked || shared.finished.is_some();
        if shared.live == 0 || !waiting || shared.progress.elapsed() < self.limits.stalled {
            return false;
        }
        for id in 0..shared.places.len() {
            self.cut(&mut shared, id);
        }
        shared.abandoned = true;
        free_taken(&mut shared, &self.gauges);
        settle(&mut shared);
        self.freed.notify_all();
        true
    }

    /// Cuts off the answers that hold the oldest piece, when another answer is ahead of them.
    fn cut_slowest(&self, shared: &mut Shared) {
        let nexts = shared
            .places
            .iter()
            .flatten()
            .filter(|p| !p.cut)
            .map(|p| p.next);
        let (Some(slowest), Some(fastest)) = (nexts.clone().min(), nexts.max()) else {
            return;
        };
        if slowest == fastest {
            return;
        }
        for id in 0..shared.places.len() {
            if shared.places[id]
                .as_ref()
                .is_some_and(|p| !p.cut && p.next == slowest)
            {
                self.cut(shared, id);
            }
        }
        free_taken(shared, &self.gauges);
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
            place.next += 1;
            let index = (next - first) as usize;
            let piece = &mut shared.pieces[index];
            piece.left -= 1;
            let bytes = piece.bytes.clone();
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
        shared.progress = Instant::now();
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
