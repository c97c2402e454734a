use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::BodyExt;
use prometheus_client::metrics::gauge::Gauge;

use super::*;

const PIECE: usize = 64 * 1024;

fn cache(max_requests: usize, budget: usize, stalled: Duration) -> (Arc<ScrapeCache>, Gauges) {
    let gauges = Gauges::default();
    let limits = Limits { budget, stalled };
    let cache = ScrapeCache::with_limits(max_requests, Counter::default(), gauges.clone(), limits);
    (Arc::new(cache), gauges)
}

/// Counts what the encodings did.
#[derive(Default, Clone)]
struct Tally {
    made: Arc<AtomicUsize>,
    written: Arc<AtomicUsize>,
}

impl Tally {
    /// An encoding of `count` pieces of `PIECE` bytes after `delay`; stops when told to.
    fn encoding(&self, delay: Duration, count: usize) -> Encode {
        let tally = self.clone();
        Box::new(move |sink| {
            std::thread::sleep(delay);
            tally.made.fetch_add(1, Ordering::SeqCst);
            for _ in 0..count {
                tally.written.fetch_add(1, Ordering::SeqCst);
                if !sink(vec![b'x'; PIECE]) {
                    break;
                }
            }
            Ok(())
        })
    }
}

/// Every byte of an answer, or the error that ended it.
async fn read_all(mut answer: Answer) -> Result<usize, StreamError> {
    let mut read = 0;
    while let Some(frame) = answer.frame().await {
        if let Ok(data) = frame?.into_data() {
            read += data.len();
        }
    }
    Ok(read)
}

fn gauge(g: &Gauge) -> usize {
    usize::try_from(g.get()).unwrap_or(usize::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_that_arrive_before_the_first_piece_share_the_encoding() {
    let (cache, gauges) = cache(40, PIECE_BUDGET, STALLED);
    let tally = Tally::default();
    let mut answers = Vec::new();
    for _ in 0..30 {
        let cache = cache.clone();
        let job = tally.encoding(Duration::from_millis(200), 10);
        answers.push(tokio::spawn(async move {
            let answer = cache.get(Format::Text, false, job).await.expect("answered");
            read_all(answer).await.expect("whole")
        }));
    }
    for answer in answers {
        assert_eq!(answer.await.expect("task"), 10 * PIECE);
    }
    let made = tally.made.load(Ordering::SeqCst);
    assert!(made <= 2, "30 scrapes at once made {made} encodings");
    assert_eq!(gauge(&gauges.buffered), 0, "every piece freed once sent");
}

/// Four encodings that fill their budget and are never read, one per room.
async fn fill_every_room(cache: &ScrapeCache, tally: &Tally) -> Vec<Answer> {
    let mut held = Vec::new();
    for (format, gzip) in [
        (Format::Text, false),
        (Format::Text, true),
        (Format::OpenMetrics, false),
        (Format::OpenMetrics, true),
    ] {
        let job = tally.encoding(Duration::ZERO, 10_000);
        held.push(cache.get(format, gzip, job).await.expect("room"));
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_beyond_max_requests_are_refused_at_once_and_counted() {
    let refused = Counter::default();
    let limits = Limits {
        budget: 4 * PIECE,
        stalled: Duration::from_secs(30),
    };
    let cache = Arc::new(ScrapeCache::with_limits(
        2,
        refused.clone(),
        Gauges::default(),
        limits,
    ));
    let tally = Tally::default();
    let _held = fill_every_room(&cache, &tally).await;
    // Two scrapes wait for room that does not come.
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let cache = cache.clone();
        let job = tally.encoding(Duration::ZERO, 1);
        waiting.push(tokio::spawn(async move {
            cache.get(Format::Protobuf, false, job).await.err()
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let third = cache
        .get(Format::Protobuf, true, tally.encoding(Duration::ZERO, 1))
        .await;
    assert!(matches!(third, Err(ScrapeError::Busy(2))));
    assert!(started.elapsed() < Duration::from_millis(100), "at once");
    for w in waiting {
        assert!(matches!(w.await.expect("task"), Some(ScrapeError::NoRoom)));
    }
    assert_eq!(refused.get(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_are_never_read_hold_at_most_the_budget_of_each_encoding() {
    let budget = 16 * PIECE;
    let (cache, gauges) = cache(40, budget, Duration::from_secs(30));
    let tally = Tally::default();
    // 60 scrapes of 64 MiB each in four formats and compressions, none read: whole, four
    // encodings would hold 256 MiB.
    let mut held = Vec::new();
    for i in 0..60 {
        let format = [Format::Text, Format::OpenMetrics][i % 2];
        let job = tally.encoding(Duration::ZERO, 1024);
        let answer = cache.get(format, i % 4 < 2, job).await.expect("room");
        held.push(answer);
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let buffered = gauge(&gauges.buffered);
    let bound = LIVE_ENCODINGS * budget;
    assert!(buffered > 0, "the encodings wrote nothing");
    assert!(buffered <= bound, "{buffered} bytes held, bound {bound}");
    let written = tally.written.load(Ordering::SeqCst) * PIECE;
    assert!(
        written <= bound + 2 * LIVE_ENCODINGS * PIECE,
        "the encoders went on: {written} bytes written"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gauge(&gauges.buffered), 0, "answers gone, pieces freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_falls_behind_is_cut_off_and_the_others_finish() {
    let (cache, gauges) = cache(40, 4 * PIECE, Duration::from_millis(200));
    let tally = Tally::default();
    let job = tally.encoding(Duration::from_millis(100), 100);
    let reading = cache.get(Format::Text, false, job).await.expect("room");
    let stalled = cache
        .get(Format::Text, false, tally.encoding(Duration::ZERO, 1))
        .await
        .expect("joined");
    assert_eq!(read_all(reading).await.expect("whole"), 100 * PIECE);
    assert_eq!(tally.made.load(Ordering::SeqCst), 1, "shared");
    assert_eq!(gauges.cut.get(), 1);
    assert!(matches!(read_all(stalled).await, Err(StreamError::Cut(_))));
    assert_eq!(gauge(&gauges.buffered), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoding_whose_answers_all_hang_up_stops_and_frees_its_room() {
    let (cache, gauges) = cache(40, 4 * PIECE, STALLED);
    let tally = Tally::default();
    let mut answer = cache
        .get(
            Format::Protobuf,
            false,
            tally.encoding(Duration::ZERO, 10_000),
        )
        .await
        .expect("room");
    let first = answer.frame().await.expect("a piece").expect("data");
    // The start of the first piece (answers hand it over in slices).
    let first = first.into_data().map(|d| d.len()).unwrap_or(0);
    assert!(first > 0 && first <= PIECE, "{first} bytes");
    drop(answer);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = tally.written.load(Ordering::SeqCst);
    assert!(written < 20, "the encoding went on: {written} pieces");
    assert_eq!(gauge(&gauges.buffered), 0);
    // Every room is free again.
    let held = fill_every_room(&cache, &tally).await;
    assert_eq!(held.len(), LIVE_ENCODINGS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_encoding_is_given_up_when_a_new_scrape_needs_its_room() {
    let (cache, gauges) = cache(40, 4 * PIECE, Duration::from_millis(300));
    let tally = Tally::default();
    let held = fill_every_room(&cache, &tally).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fresh = cache
        .get(Format::Protobuf, false, tally.encoding(Duration::ZERO, 10))
        .await
        .expect("room made by giving up a stalled encoding");
    assert_eq!(read_all(fresh).await.expect("whole"), 10 * PIECE);
    assert!(gauges.cut.get() >= 1);
    let mut failed = 0;
    for mut answer in held {
        if matches!(answer.frame().await, Some(Err(StreamError::Cut(_)))) {
            failed += 1;
        }
    }
    assert_eq!(failed, 1, "one stalled encoding given up");
}

/// Every byte of an answer, read at about `per_piece` for each `PIECE` bytes, or the error
/// that ended it.
async fn read_steadily(mut answer: Answer, per_piece: Duration) -> Result<usize, StreamError> {
    let mut read = 0;
    while let Some(frame) = answer.frame().await {
        if let Ok(data) = frame?.into_data() {
            read += data.len();
            tokio::time::sleep(per_piece.mul_f64(data.len() as f64 / PIECE as f64)).await;
        }
    }
    Ok(read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_that_needs_room_cuts_only_stalled_answers_and_spares_a_steady_reader() {
    let stalled = Duration::from_millis(300);
    let (cache, gauges) = cache(40, 16 * PIECE, stalled);
    let tally = Tally::default();
    // A text encoding that ends at once, within the budget: a client that never reads and one
    // that reads steadily, a piece every 150 ms, share it.
    let steady = cache
        .get(Format::Text, false, tally.encoding(Duration::ZERO, 10))
        .await
        .expect("room");
    let never = cache
        .get(Format::Text, false, tally.encoding(Duration::ZERO, 1))
        .await
        .expect("joined");
    let steady = tokio::spawn(read_steadily(steady, Duration::from_millis(150)));
    // The other rooms are held by encodings nobody reads.
    let mut held = Vec::new();
    for (format, gzip) in [
        (Format::Text, true),
        (Format::OpenMetrics, false),
        (Format::OpenMetrics, true),
    ] {
        let job = tally.encoding(Duration::ZERO, 10_000);
        held.push(cache.get(format, gzip, job).await.expect("room"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh = cache
        .get(Format::Protobuf, false, tally.encoding(Duration::ZERO, 3))
        .await
        .expect("room made by giving up a stalled encoding");
    assert_eq!(read_all(fresh).await.expect("whole"), 3 * PIECE);
    assert_eq!(
        steady
            .await
            .expect("task")
            .expect("the steady reader is not cut"),
        10 * PIECE
    );
    assert!(matches!(read_all(never).await, Err(StreamError::Cut(_))));
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gauge(&gauges.buffered), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_reader_behind_a_faster_one_is_not_cut_while_the_encoder_waits() {
    let stalled = Duration::from_millis(300);
    let (cache, gauges) = cache(40, 4 * PIECE, stalled);
    let tally = Tally::default();
    // Three answers of one encoding larger than the budget: one never reads, one reads fast,
    // one reads steadily but a whole piece only every 400 ms, longer than the stall time.
    let fast = cache
        .get(
            Format::Text,
            false,
            tally.encoding(Duration::from_millis(50), 8),
        )
        .await
        .expect("room");
    let never = cache
        .get(Format::Text, false, tally.encoding(Duration::ZERO, 1))
        .await
        .expect("joined");
    let slow = cache
        .get(Format::Text, false, tally.encoding(Duration::ZERO, 1))
        .await
        .expect("joined");
    let fast = tokio::spawn(read_all(fast));
    let slow = tokio::spawn(read_steadily(slow, Duration::from_millis(400)));
    assert_eq!(
        slow.await
            .expect("task")
            .expect("the slow reader is not cut"),
        8 * PIECE
    );
    assert_eq!(fast.await.expect("task").expect("whole"), 8 * PIECE);
    assert!(matches!(read_all(never).await, Err(StreamError::Cut(_))));
    assert_eq!(gauges.cut.get(), 1, "only the answer that never read");
    assert_eq!(gauge(&gauges.buffered), 0);
}
