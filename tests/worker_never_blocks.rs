//! No worker thread ever waits on a stream's backpressure: a handler that
//! writes to another request's stream (publish/subscribe across connections)
//! gets `WouldBlock` over the high-water mark, on the stream's own worker and
//! on any other, and every worker goes on answering. Before, a write to a
//! full stream on another worker waited for good, and two workers writing to
//! each other's full streams deadlocked.

mod util;

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use util::workers::{connect_to_worker, shutdown_within, SHUTDOWN_LIMIT};
use util::*;
use warpcore::{Deferred, Payload, Request, RespondError, Response};

const HIGH_WATER: usize = 64 * 1024;
const CHUNK: usize = 64 * 1024;
/// A /pub handler gives up after this much without `WouldBlock` (a queue
/// without a bound would take it all).
const PUBLISH_LIMIT: usize = 64 << 20;
const HELLO: &[u8] = b"subscribed\n";

/// The subscribers' open streams, one per worker, by worker index.
#[derive(Default)]
struct Hub {
    subs: Mutex<HashMap<usize, Deferred>>,
}

impl Hub {
    fn has(&self, worker: usize) -> bool {
        self.subs.lock().unwrap().contains_key(&worker)
    }
}

/// `GET /whoami`: the worker's index. `GET /sub`: a chunked stream, started
/// in the call and kept in the hub under this worker. `GET /pub/N`: writes
/// 64 KiB chunks to worker N's subscriber until a write is refused and
/// answers `accepted=BYTES refused=RESULT`. `GET /end/N`: ends that stream.
fn pubsub(hub: Arc<Hub>) -> impl warpcore::Handler {
    move |req: &Request<'_>, res: &mut Response<'_>| {
        let path = String::from_utf8_lossy(req.path).into_owned();
        let _ = if path == "/whoami" {
            res.respond(200, std::iter::empty(), req.worker_index.to_string().as_bytes())
        } else if path == "/sub" {
            res.start(200, std::iter::empty(), None).unwrap();
            res.write(HELLO).unwrap();
            let d = res.defer().unwrap();
            hub.subs.lock().unwrap().insert(req.worker_index, d);
            Ok(())
        } else if let Some(n) = path.strip_prefix("/pub/") {
            // Out of the hub while writing: no lock is held if a write waits.
            let taken = hub.subs.lock().unwrap().remove(&n.parse::<usize>().unwrap());
            let Some(mut d) = taken else {
                let _ = res.respond(404, std::iter::empty(), b"no subscriber");
                return;
            };
            let mut accepted = 0;
            let refused = loop {
                if accepted >= PUBLISH_LIMIT {
                    break None;
                }
                match d.write(Payload::from(vec![b'p'; CHUNK])) {
                    Ok(()) => accepted += CHUNK,
                    Err(e) => break Some(e),
                }
            };
            // Refused, the stream goes on: the next write is refused the same way.
            let again = d.write(Payload::from(vec![b'q'; CHUNK])).err();
            hub.subs.lock().unwrap().insert(n.parse().unwrap(), d);
            let body = format!("accepted={accepted} refused={refused:?} again={again:?}");
            res.respond(200, std::iter::empty(), body.as_bytes())
        } else if let Some(n) = path.strip_prefix("/end/") {
            let taken = hub.subs.lock().unwrap().remove(&n.parse::<usize>().unwrap());
            let ended = taken.map(|mut d| d.end());
            res.respond(200, std::iter::empty(), format!("{ended:?}").as_bytes())
        } else {
            res.respond(404, std::iter::empty(), b"")
        };
    }
}

/// What a /pub answer says: the bytes accepted before the refusal, and
/// whether the write made after the refusal was taken. On the subscriber's
/// own worker nothing leaves during the handler call, so that write is
/// refused too; from another worker, the subscriber's worker may have
/// drained the queue under the mark in between, and then it is taken.
fn accepted_before_would_block(reply: &Reply, same_worker: bool) -> (usize, bool) {
    let text = reply.text();
    assert_eq!(reply.status, 200, "{text}");
    let fields: HashMap<&str, &str> = text.split(' ').filter_map(|f| f.split_once('=')).collect();
    assert_eq!(fields["refused"], "Some(WouldBlock)", "a write over the mark is refused at once: {text}");
    if same_worker {
        assert_eq!(fields["again"], "Some(WouldBlock)", "and the stream goes on: {text}");
    } else {
        assert!(matches!(fields["again"], "Some(WouldBlock)" | "None"), "and the stream goes on: {text}");
    }
    (fields["accepted"].parse().unwrap(), fields["again"] == "None")
}

/// A subscriber that never reads, found on `worker`.
fn subscribe(port: u16, hub: &Hub, worker: usize) -> Client {
    let mut sub = connect_to_worker(port, worker, Some(4096));
    sub.send(b"GET /sub HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(wait_until(IO_TIMEOUT, || hub.has(worker)), "worker {worker}'s subscriber is in the hub");
    sub
}

/// Ends worker `worker`'s subscription from `via` and checks that its
/// subscriber, reading at last, gets the greeting and exactly the accepted
/// bytes (`accepted` of the loop, then the write after the refusal if it was
/// taken: `(accepted, again_taken)` of `accepted_before_would_block`).
fn end_and_check(via: &mut Client, sub: &mut Client, worker: usize, (accepted, again_taken): (usize, bool)) {
    assert_eq!(via.get(&format!("/end/{worker}")).text(), "Some(Ok(()))");
    let r = sub.read_response(false);
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with(HELLO));
    let again = if again_taken { CHUNK } else { 0 };
    assert_eq!(
        r.body.len(),
        HELLO.len() + accepted + again,
        "worker {worker}'s subscriber got what was accepted, nothing refused"
    );
    let (loop_bytes, again_bytes) = r.body[HELLO.len()..].split_at(accepted);
    assert!(loop_bytes.iter().all(|&b| b == b'p'), "no refused byte was sent");
    assert!(again_bytes.iter().all(|&b| b == b'q'));
}

#[test]
fn a_publisher_on_the_subscribers_worker_is_refused_over_the_mark_and_the_worker_goes_on() {
    let hub = Arc::new(Hub::default());
    // Left running (leaked) if the test fails: a stuck worker cannot shut down.
    let s = ManuallyDrop::new(start_with(pubsub(hub.clone()), |c| {
        c.workers = 1;
        c.stream_high_water = HIGH_WATER;
    }));
    let mut sub = subscribe(s.port, &hub, 0);
    let mut publisher = s.connect();
    let reply = publisher.get("/pub/0");
    // Nothing leaves during the handler call (its worker is busy in it): the
    // queue passes the mark by one write at most.
    let accepted = accepted_before_would_block(&reply, true);
    assert!(accepted.0 <= HIGH_WATER + CHUNK, "accepted {} bytes past a mark of {HIGH_WATER}", accepted.0);
    assert_eq!(publisher.get("/whoami").text(), "0", "the publisher's connection is answered after");
    assert_eq!(s.connect().get("/whoami").text(), "0", "a new connection is answered after");
    end_and_check(&mut publisher, &mut sub, 0, accepted);
    let s = ManuallyDrop::into_inner(s);
    shutdown_within(s.server, Duration::from_secs(1), SHUTDOWN_LIMIT);
}

#[test]
fn publishers_on_two_workers_writing_to_each_others_full_streams_never_block() {
    let hub = Arc::new(Hub::default());
    let s = ManuallyDrop::new(start_with(pubsub(hub.clone()), |c| {
        c.workers = 2;
        c.stream_high_water = HIGH_WATER;
    }));
    let port = s.port;
    let mut subs = [subscribe(port, &hub, 0), subscribe(port, &hub, 1)];
    let mut pubs = [connect_to_worker(port, 0, None), connect_to_worker(port, 1, None)];
    // Both at once: worker 0 feeds worker 1's subscriber and worker 1 feeds
    // worker 0's, neither of whom reads.
    pubs[0].send(b"GET /pub/1 HTTP/1.1\r\nHost: t\r\n\r\n");
    pubs[1].send(b"GET /pub/0 HTTP/1.1\r\nHost: t\r\n\r\n");
    let accepted_by_1 = accepted_before_would_block(&pubs[0].read_response(false), false);
    let accepted_by_0 = accepted_before_would_block(&pubs[1].read_response(false), false);
    for (w, publisher) in pubs.iter_mut().enumerate() {
        for _ in 0..3 {
            assert_eq!(publisher.get("/whoami").text(), w.to_string(), "worker {w} goes on answering");
        }
        assert_eq!(connect_to_worker(port, w, None).get("/whoami").text(), w.to_string());
    }
    end_and_check(&mut pubs[0], &mut subs[1], 1, accepted_by_1);
    end_and_check(&mut pubs[1], &mut subs[0], 0, accepted_by_0);
    let s = ManuallyDrop::into_inner(s);
    shutdown_within(s.server, Duration::from_secs(1), SHUTDOWN_LIMIT);
}

/// The write that waits for backpressure still does so on a thread of the
/// application's: it returns once the client has read, never `WouldBlock`.
#[test]
fn a_writer_off_the_workers_still_waits_for_the_client() {
    let hub = Arc::new(Hub::default());
    let s = ManuallyDrop::new(start_with(pubsub(hub.clone()), |c| {
        c.workers = 1;
        c.stream_high_water = HIGH_WATER;
    }));
    let mut sub = subscribe(s.port, &hub, 0);
    let mut d = hub.subs.lock().unwrap().remove(&0).unwrap();
    let total = 8 << 20;
    let writer = std::thread::spawn(move || {
        let mut written = 0;
        while written < total {
            d.write(Payload::from(vec![b'p'; CHUNK]))?;
            written += CHUNK;
        }
        d.end()
    });
    let r = sub.read_response(false);
    assert_eq!(writer.join().unwrap(), Ok::<(), RespondError>(()));
    assert_eq!(r.body.len(), HELLO.len() + total);
    let s = ManuallyDrop::into_inner(s);
    shutdown_within(s.server, Duration::from_secs(1), SHUTDOWN_LIMIT);
}
