//! What a connection waits for, and for how long: a client that half-closes
//! still gets its deferred answer; the header deadline starts with each
//! request head; a deferred answer that never comes is bounded by the answer
//! timeout.

mod util;

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use util::*;
use warpcore::{Deferred, Payload, Request, RespondError, Response};

fn no_headers<'a>() -> std::iter::Empty<(&'a [u8], &'a [u8])> {
    std::iter::empty()
}

/// Answers `/now` at once and defers everything else, sending the handle to `tx`.
fn now_or_deferred(tx: mpsc::Sender<(String, Deferred)>) -> impl warpcore::Handler {
    let tx = Mutex::new(tx);
    move |req: &Request<'_>, res: &mut Response<'_>| {
        if req.path == b"/now" {
            let _ = res.respond(200, no_headers(), b"now");
            return;
        }
        let d = res.defer().expect("defer");
        let _ = tx.lock().unwrap().send((String::from_utf8_lossy(req.path).into_owned(), d));
    }
}

#[test]
fn a_client_that_half_closes_still_gets_its_deferred_answer() {
    let (tx, rx) = mpsc::channel();
    let s = start_with(now_or_deferred(tx), |c| c.workers = 1);
    let mut a = s.connect();
    a.send(b"GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    a.shutdown_write();
    let (path, mut d) = rx.recv_timeout(IO_TIMEOUT).expect("the handler deferred");
    assert_eq!(path, "/later");
    // The one worker has polled since the FIN was queued once it answers a
    // request that came after it.
    assert_eq!(s.connect().get("/now").text(), "now");
    d.respond(200, no_headers(), Payload::from(b"for a half-closed client".to_vec()))
        .expect("a FIN is not a client that left");
    let reply = a.read_response(false);
    assert_eq!((reply.status, reply.text().as_str()), (200, "for a half-closed client"));
    assert!(a.closed_by_server(), "after the answer the connection closes (the client sends no more)");
}

#[test]
fn a_client_that_resets_is_gone_and_its_handle_learns_it() {
    let (tx, rx) = mpsc::channel();
    let s = start_with(now_or_deferred(tx), |c| c.workers = 1);
    let mut a = s.connect();
    a.send(b"GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    let (_, mut d) = rx.recv_timeout(IO_TIMEOUT).expect("the handler deferred");
    // SO_LINGER 0: close sends a reset.
    socket2::SockRef::from(&a.stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(a);
    // The server closes the reset connection (the only one left open).
    let closed = wait_until(IO_TIMEOUT, || s.server.stats().connections_active == 0);
    assert!(closed, "the reset connection is closed");
    let r = d.respond(200, no_headers(), Payload::from(b"x".to_vec()));
    assert!(matches!(r, Err(RespondError::Closed)), "the handle of a reset connection gets Closed: {r:?}");
}

#[test]
fn the_header_deadline_starts_with_each_request_head() {
    let s = start_with(demo_handler, |c| c.header_timeout = Duration::from_secs(1));
    let mut c = s.connect();
    // Every write completes one request and starts the next, so every read
    // ends mid-head, for three times the header timeout.
    c.send(b"GET / HT");
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
        c.send(b"TP/1.1\r\nHost: t\r\n\r\nGET / HT");
        let r = c.read_response(false);
        assert_eq!(r.status, 200, "request {answered}");
        answered += 1;
    }
    assert!(answered >= 10, "only {answered} answered");
    // The head in progress is still bounded by its own deadline.
    assert!(c.closed_by_server(), "a head that never completes is still cut");
}

#[test]
fn a_deferred_answer_that_never_comes_gets_503_at_the_answer_timeout() {
    let (tx, rx) = mpsc::channel();
    let s = start_with(now_or_deferred(tx), |c| c.answer_timeout = Duration::from_secs(1));
    let mut c = s.connect();
    c.send(b"GET /never HTTP/1.1\r\nHost: t\r\n\r\n");
    let (_, mut d) = rx.recv_timeout(IO_TIMEOUT).expect("the handler deferred");
    let started = Instant::now();
    let reply = c.read_response(false);
    assert_eq!(reply.status, 503);
    assert!(started.elapsed() < Duration::from_secs(4), "503 after {:?}", started.elapsed());
    assert!(c.closed_by_server(), "the connection closes after the 503");
    assert!(matches!(d.respond(200, no_headers(), Payload::from(b"late".to_vec())), Err(RespondError::Closed)));
    assert_eq!(s.server.stats().connections_timed_out, 1);
}

#[test]
fn a_stream_that_has_begun_is_not_cut_by_the_answer_timeout() {
    let (tx, rx) = mpsc::channel();
    let s = start_with(now_or_deferred(tx), |c| c.answer_timeout = Duration::from_secs(1));
    let mut c = s.connect();
    c.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    let (_, mut d) = rx.recv_timeout(IO_TIMEOUT).expect("the handler deferred");
    d.start(200, no_headers(), None).unwrap();
    d.write(Payload::from(b"first".to_vec())).unwrap();
    // A negative check: past two answer timeouts (deadlines are swept once
    // a second, so one expires within two), the stream must still be open.
    std::thread::sleep(Duration::from_millis(3500));
    d.write(Payload::from(b"second".to_vec())).expect("the stream is still open");
    d.end().unwrap();
    let reply = c.read_response(false);
    assert_eq!((reply.status, reply.text().as_str()), (200, "firstsecond"));
    assert_eq!(s.server.stats().connections_timed_out, 0);
}

#[test]
fn a_client_that_pipelines_then_half_closes_gets_every_deferred_answer() {
    let (tx, rx) = mpsc::channel();
    let s = start_with(now_or_deferred(tx), |c| c.workers = 1);
    let mut a = s.connect();
    a.send(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\n");
    a.shutdown_write();
    for expected in ["/first", "/second"] {
        let (path, mut d) = rx.recv_timeout(IO_TIMEOUT).expect("the handler deferred");
        assert_eq!(path, expected);
        d.respond(200, no_headers(), Payload::from(path.into_bytes())).expect("answered");
    }
    assert_eq!(a.read_response(false).text(), "/first");
    assert_eq!(a.read_response(false).text(), "/second");
    assert!(a.closed_by_server(), "then the connection closes");
}
