//! Read-ahead: pipelined requests behind a deferred answer are handled at
//! once, each with its own handle; answers complete in any order and leave in
//! request order; reading ahead stops where the issue says it must (a body
//! not whole, `Connection: close`, HTTP/1.0, an upgrade), and at its bounds.

mod util;

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use util::*;
use warpcore::{Deferred, Payload, Request, Response};

fn no_headers<'a>() -> std::iter::Empty<(&'a [u8], &'a [u8])> {
    std::iter::empty()
}

/// Handles kept by the test, by request path, in the order handlers ran.
#[derive(Default)]
struct Kept {
    handles: Mutex<VecDeque<(String, Deferred)>>,
    calls: AtomicUsize,
}

impl Kept {
    fn take(&self, path: &str) -> Deferred {
        let mut h = self.handles.lock().unwrap();
        let i = h.iter().position(|(p, _)| p == path).unwrap_or_else(|| panic!("no handle for {path}"));
        h.remove(i).unwrap().1
    }

    fn paths(&self) -> Vec<String> {
        self.handles.lock().unwrap().iter().map(|(p, _)| p.clone()).collect()
    }
}

/// Defers `/d...` requests (kept for the test to answer); answers `/i...`
/// inside the call with the path as body.
fn keeping(kept: Arc<Kept>) -> impl Fn(&Request<'_>, &mut Response<'_>) + Send + Sync {
    move |req: &Request<'_>, res: &mut Response<'_>| {
        kept.calls.fetch_add(1, Ordering::SeqCst);
        let path = String::from_utf8_lossy(req.path).into_owned();
        if path.starts_with("/i") {
            res.respond(200, no_headers(), path.as_bytes()).unwrap();
        } else {
            let d = res.defer().unwrap();
            kept.handles.lock().unwrap().push_back((path, d));
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

#[test]
fn deferred_answers_completed_in_any_order_leave_in_request_order() {
    let kept = Arc::new(Kept::default());
    let s = start(keeping(kept.clone()));
    let mut c = s.connect();
    let paths = ["/d1", "/i2", "/d3", "/i4", "/d5", "/d6"];
    c.send(paths.iter().map(|p| get(p)).collect::<String>().as_bytes());
    // Every handler ran while the first answer was still pending.
    assert!(wait_until(IO_TIMEOUT, || kept.calls.load(Ordering::SeqCst) == paths.len()), "read ahead");
    assert_eq!(kept.paths(), ["/d1", "/d3", "/d5", "/d6"]);
    // Answered last to first: nothing leaves before the first.
    for p in ["/d6", "/d5", "/d3"] {
        kept.take(p).respond_bytes(200, no_headers(), p.as_bytes()).unwrap();
    }
    assert!(c.read_once(Duration::from_millis(200)).is_none(), "nothing before the first answer");
    kept.take("/d1").respond_bytes(200, no_headers(), b"/d1").unwrap();
    for p in paths {
        let r = c.read_response(false);
        assert_eq!((r.status, r.text()), (200, p.to_string()), "in request order");
    }
    // The connection goes on as usual.
    assert_eq!(c.get("/i7").text(), "/i7");
    assert_eq!(s.server.stats().responses[1], 7);
}

#[test]
fn a_held_stream_is_kept_and_goes_on_once_it_is_the_front() {
    let kept = Arc::new(Kept::default());
    let s = start(keeping(kept.clone()));
    let mut c = s.connect();
    c.send(format!("{}{}{}", get("/d1"), get("/d2"), get("/i3")).as_bytes());
    assert!(wait_until(IO_TIMEOUT, || kept.calls.load(Ordering::SeqCst) == 3));
    // The second answer streams while the first is pending.
    let mut second = kept.take("/d2");
    second.start(200, no_headers(), None).unwrap();
    second.write(Payload::from(b"held ".to_vec())).unwrap();
    second.write(Payload::from(b"bytes".to_vec())).unwrap();
    assert!(c.read_once(Duration::from_millis(200)).is_none(), "held behind the first");
    kept.take("/d1").respond_bytes(200, no_headers(), b"first").unwrap();
    assert_eq!(c.read_response(false).text(), "first");
    // Now the front: it goes on live.
    second.write(Payload::from(b" live".to_vec())).unwrap();
    second.end().unwrap();
    let r = c.read_response(false);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "held bytes live");
    assert_eq!(c.read_response(false).text(), "/i3");
}

#[test]
fn reading_ahead_stops_at_requests_that_must_wait_for_the_front() {
    let cases: [(&str, &str); 5] = [
        ("Connection: close", "GET /i2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        ("HTTP/1.0", "GET /i2 HTTP/1.0\r\n\r\n"),
        ("a chunked body", "POST /i2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"),
        ("100-continue", "POST /i2 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab"),
        ("an upgrade", "GET /i2 HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n"),
    ];
    for (what, second) in cases {
        let kept = Arc::new(Kept::default());
        let s = start(keeping(kept.clone()));
        let mut c = s.connect();
        c.send(format!("{}{second}{}", get("/d1"), get("/i3")).as_bytes());
        assert!(wait_until(IO_TIMEOUT, || kept.calls.load(Ordering::SeqCst) >= 1));
        // The front is pending and the second request is not handled ahead:
        // its handler runs only after the answer (checked after it, below).
        assert!(c.read_once(Duration::from_millis(100)).is_none());
        assert_eq!(kept.calls.load(Ordering::SeqCst), 1, "{what}: not handled ahead");
        kept.take("/d1").respond_bytes(200, no_headers(), b"first").unwrap();
        assert_eq!(c.read_response(false).text(), "first", "{what}");
        let r = c.read_response(false);
        assert_eq!(r.text(), "/i2", "{what}: handled once at the front");
    }
}

#[test]
fn nothing_after_a_request_that_may_switch_protocols_is_read_as_http() {
    // The front asks to upgrade and is deferred: the bytes after it are the
    // new protocol's, never requests handled ahead.
    let kept = Arc::new(Kept::default());
    let s = start(keeping(kept.clone()));
    let mut c = s.connect();
    c.send(b"GET /d1 HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nGET /i2 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(wait_until(IO_TIMEOUT, || kept.calls.load(Ordering::SeqCst) >= 1));
    assert!(c.read_once(Duration::from_millis(100)).is_none());
    assert_eq!(kept.calls.load(Ordering::SeqCst), 1);
    let up = kept.take("/d1").upgrade([(&b"Upgrade"[..], &b"echo"[..])], None).unwrap();
    let mut got = vec![0u8; 64];
    let n = up.read(&mut got).unwrap();
    assert!(got[..n].starts_with(b"GET /i2"), "the bytes after it are the upgraded connection's");
}

#[test]
fn reading_ahead_is_bounded_in_requests_and_held_bytes() {
    let kept = Arc::new(Kept::default());
    let s = start(keeping(kept.clone()));
    // 40 deferred requests behind a pending one: at most 16 are handled ahead.
    let mut c = s.connect();
    c.send((0..41).map(|i| get(&format!("/d{i}"))).collect::<String>().as_bytes());
    assert!(wait_until(IO_TIMEOUT, || kept.calls.load(Ordering::SeqCst) == 17));
    assert!(c.read_once(Duration::from_millis(100)).is_none());
    assert_eq!(kept.calls.load(Ordering::SeqCst), 17, "the front and 16 ahead");
    // Answering the front lets the next ones in, in turn, until all are done.
    for i in 0..41 {
        let path = format!("/d{i}");
        assert!(wait_until(IO_TIMEOUT, || kept.paths().contains(&path)), "{path} handled");
        kept.take(&path).respond_bytes(200, no_headers(), path.as_bytes()).unwrap();
        assert_eq!(c.read_response(false).text(), path);
    }
    // In-call answers of 20 KB behind a pending one: held up to 64 KiB.
    let big = Arc::new(AtomicUsize::new(0));
    let (k2, b2) = (Arc::new(Kept::default()), big.clone());
    let k = k2.clone();
    let s2 = start(move |req: &Request<'_>, res: &mut Response<'_>| {
        if req.path == b"/d" {
            k.handles.lock().unwrap().push_back(("/d".into(), res.defer().unwrap()));
        } else {
            b2.fetch_add(1, Ordering::SeqCst);
            res.respond(200, no_headers(), &[b'x'; 20_000]).unwrap();
        }
    });
    let mut c = s2.connect();
    c.send(format!("{}{}", get("/d"), (0..10).map(|_| get("/big")).collect::<String>()).as_bytes());
    assert!(wait_until(IO_TIMEOUT, || big.load(Ordering::SeqCst) >= 4));
    assert!(c.read_once(Duration::from_millis(100)).is_none());
    assert_eq!(big.load(Ordering::SeqCst), 4, "held answers stop at 64 KiB (4 of 20 KB)");
    k2.take("/d").respond_bytes(200, no_headers(), b"first").unwrap();
    assert_eq!(c.read_response(false).text(), "first");
    for _ in 0..10 {
        assert_eq!(c.read_response(false).body.len(), 20_000);
    }
}

#[test]
fn requests_handled_ahead_learn_it_when_the_front_closes_the_connection() {
    let kept = Arc::new(Kept::default());
    let s = start(keeping(kept.clone()));
    let mut c = s.connect();
    c.send(format!("{}{}{}", get("/d1"), get("/d2"), get("/i3")).as_bytes());
    assert!(wait_until(IO_TIMEOUT, || kept.calls.load(Ordering::SeqCst) == 3));
    let mut second = kept.take("/d2");
    kept.take("/d1").abort().unwrap();
    let all = c.read_to_eof();
    let (replies, rest) = parse_responses(&all, &[false]);
    assert_eq!(replies[0].status, 500);
    assert!(rest.is_empty(), "nothing after the answer that closed: {}", String::from_utf8_lossy(&rest));
    assert_eq!(second.respond_bytes(200, no_headers(), b"late"), Err(warpcore::RespondError::Closed));
    assert_eq!(s.server.stats().responses[1], 0, "held answers that never left are not counted");
}

#[test]
fn requests_handled_ahead_do_not_extend_the_front_answers_deadline() {
    let kept = Arc::new(Kept::default());
    let s = start_with(keeping(kept.clone()), |c| c.answer_timeout = Duration::from_secs(1));
    let mut c = s.connect();
    c.send(get("/d1").as_bytes());
    assert!(wait_until(IO_TIMEOUT, || kept.calls.load(Ordering::SeqCst) == 1));
    // More requests keep arriving, each handled ahead of the pending one.
    let started = std::time::Instant::now();
    let mut writer = c.stream.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        // Six seconds of them: re-armed by each, the deadline would not pass before.
        for i in 0..30 {
            if writer.write_all(get(&format!("/i{i}")).as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let r = c.read_response(false);
    assert_eq!(r.status, 503, "the front answer timed out");
    // Due 1-3 s after the request (deadlines are kept in whole seconds).
    assert!(started.elapsed() < Duration::from_secs(5), "not extended: {:?}", started.elapsed());
    feeder.join().unwrap();
}
