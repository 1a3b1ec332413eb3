//! Invariant 1 through the real binary: after `kill -9` and a restart on the same
//! data dir, every acknowledged span is queryable exactly once.
//!
//! Each scenario streams OTLP requests (one 4-span trace each, ids derived from the
//! request number), records which ones were acknowledged with 200, kills the server
//! with SIGKILL, restarts it and checks, by `span_id`:
//! * every span of every acknowledged request is there exactly once;
//! * no span id appears twice anywhere;
//! * nothing is there that was never sent (a request in flight at the kill may be
//!   there or not: it was never acknowledged).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::*;

const SPANS_PER_REQUEST: u64 = 4;
/// Concurrent senders in the mid-stream scenarios, so that the WAL's group commit
/// has several requests in flight when the kill comes.
const SENDERS: u64 = 4;
/// `--flush-max-age` of the partly-flushed scenario: flush partitions older than this.
const TINY_FLUSH_AGE: &str = "1s";

/// What a stream of requests got from the server.
#[derive(Debug, Default)]
struct Stream {
    /// Request numbers answered 200.
    acked: Vec<u64>,
    /// Request numbers sent and not acknowledged (killed in flight, or 429/503).
    unacked: Vec<u64>,
}

impl Stream {
    fn sent(&self) -> impl Iterator<Item = &u64> {
        self.acked.iter().chain(&self.unacked)
    }

    fn merge(mut self, other: Stream) -> Stream {
        self.acked.extend(other.acked);
        self.unacked.extend(other.unacked);
        self
    }
}

fn request(tag: u8, n: u64, start_ns: u64) -> (Vec<u8>, Vec<String>) {
    use prost::Message;
    let (request, ids) = trace_request("checkout", tag, n, SPANS_PER_REQUEST, start_ns);
    (request.encode_to_vec(), ids)
}

fn span_ids(tag: u8, requests: impl IntoIterator<Item = u64>) -> BTreeSet<String> {
    requests
        .into_iter()
        .flat_map(|n| request(tag, n, 0).1)
        .collect()
}

/// Sends the requests numbered `numbers` to `url` one after another until the first
/// transport error (the server is gone), pausing `pause` between requests. `acked`
/// counts the 200s as they come; `stop` ends the stream early.
fn send_stream(
    url: String,
    tag: u8,
    numbers: impl Iterator<Item = u64>,
    pause: Duration,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Stream {
    let agent = http_agent();
    let start_ns = now_ns();
    let mut stream = Stream::default();
    for n in numbers {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let (body, _) = request(tag, n, start_ns + n * 1_000);
        let headers = [("content-type", "application/x-protobuf")];
        match http_post(&agent, &format!("{url}/v1/traces"), &headers, &body) {
            Ok(response) if response.status == 200 => {
                stream.acked.push(n);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(response) if response.status == 429 || response.status == 503 => {
                stream.unacked.push(n);
            }
            Ok(response) => panic!(
                "request {n} answered {}: {}",
                response.status,
                response.text()
            ),
            Err(_) => {
                stream.unacked.push(n);
                break;
            }
        }
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
    stream
}

/// The checks of the module docs, on a running server.
fn assert_exactly_once(server: &TestServer, tag: u8, stream: &Stream) {
    let counts: BTreeMap<String, i64> = server.span_id_counts();
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        duplicated.is_empty(),
        "span ids stored more than once: {duplicated:?}"
    );
    let present: BTreeSet<String> = counts.into_keys().collect();
    let acked = span_ids(tag, stream.acked.iter().copied());
    let missing: Vec<_> = acked.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged spans (of {}) are missing after restart, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    let sent = span_ids(tag, stream.sent().copied());
    let unknown: Vec<_> = present.difference(&sent).collect();
    assert!(
        unknown.is_empty(),
        "spans that were never sent: {unknown:?}"
    );
    eprintln!(
        "{} requests acknowledged ({} spans), {} not acknowledged; {} spans present",
        stream.acked.len(),
        acked.len(),
        stream.unacked.len(),
        present.len()
    );
}

/// Streams to `server` from [`SENDERS`] threads until `ready` holds, kills it with
/// SIGKILL while the streams go on, and returns what they got.
fn kill_9_mid_stream(
    server: &mut TestServer,
    tag: u8,
    pause: Duration,
    mut ready: impl FnMut(usize) -> bool,
) -> Stream {
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|first| {
            let (url, acked, stop) = (server.url(), acked.clone(), stop.clone());
            let numbers = (first..1_000_000).step_by(SENDERS as usize);
            thread::spawn(move || send_stream(url, tag, numbers, pause, acked, stop))
        })
        .collect();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("the kill condition", Duration::from_secs(120), || {
            assert!(
                senders.iter().all(|sender| !sender.is_finished()),
                "a request stream ended early"
            );
            ready(acked.load(Ordering::SeqCst))
        })
    }));
    server.kill_9();
    stop.store(true, Ordering::SeqCst);
    let stream = senders
        .into_iter()
        .map(|sender| sender.join().expect("a sender thread panicked"))
        .fold(Stream::default(), Stream::merge);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(!stream.acked.is_empty(), "no request was acknowledged");
    stream
}

#[test]
fn acknowledged_spans_survive_kill_9_mid_stream() {
    let tag = 0xc1;
    let mut server = TestServer::start();
    let stream = kill_9_mid_stream(&mut server, tag, Duration::ZERO, |acked| acked >= 200);
    server.restart();
    assert_exactly_once(&server, tag, &stream);
}

#[test]
fn acknowledged_spans_survive_kill_9_right_after_the_last_ack_and_a_second_crash() {
    let tag = 0xc2;
    let mut server = TestServer::start();
    let stop = Arc::new(AtomicBool::new(false));
    let stream = send_stream(
        server.url(),
        tag,
        0..100,
        Duration::ZERO,
        Arc::new(AtomicUsize::new(0)),
        stop,
    );
    assert_eq!(
        stream.acked.len(),
        100,
        "every request is acknowledged: {stream:?}"
    );
    server.kill_9();

    server.restart();
    assert_exactly_once(&server, tag, &stream);
    // A crash right after recovery must not replay the WAL a second time.
    server.kill_9();
    server.restart();
    assert_exactly_once(&server, tag, &stream);
}

#[test]
fn acknowledged_spans_survive_kill_9_with_partly_flushed_data() {
    let tag = 0xc3;
    let mut server = TestServer::builder()
        .arg("--flush-max-age")
        .arg(TINY_FLUSH_AGE)
        .start();
    let spans_dir = server.data_dir().join("spans");
    // Kill once some data is in Parquet and more has been acknowledged since, so the
    // restart sees both flushed files and WAL-only spans.
    let mut acked_at_first_file = None;
    let stream = kill_9_mid_stream(&mut server, tag, Duration::from_millis(10), |acked| {
        match acked_at_first_file {
            None => {
                if !parquet_files(&spans_dir).is_empty() {
                    acked_at_first_file = Some(acked);
                }
                false
            }
            Some(at) => acked >= at + 20,
        }
    });
    assert!(!parquet_files(&spans_dir).is_empty());

    server.restart();
    assert_exactly_once(&server, tag, &stream);

    // And once everything is flushed by a clean shutdown.
    server.terminate();
    server.restart();
    assert_exactly_once(&server, tag, &stream);
}
