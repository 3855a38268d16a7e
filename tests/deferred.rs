//! Deferred and streaming responses over real sockets: answers from other
//! threads in any order, pipelined order kept, streams in every framing,
//! backpressure, clients that leave, answers after shutdown, and every
//! zero-copy buffer released exactly once.

mod util;

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use util::*;
use warpcore::{Deferred, Payload, Request, RespondError, Response};

/// A handler that defers every request and sends (path, body, handle) to `tx`.
fn deferring(tx: mpsc::Sender<(String, Vec<u8>, Deferred)>) -> impl warpcore::Handler {
    let tx = Mutex::new(tx);
    move |req: &Request<'_>, res: &mut Response<'_>| {
        let d = res.defer().expect("defer");
        let path = String::from_utf8_lossy(req.path).into_owned();
        let _ = tx.lock().unwrap().send((path, req.body.to_vec(), d));
    }
}

fn no_headers<'a>() -> std::iter::Empty<(&'a [u8], &'a [u8])> {
    std::iter::empty()
}

#[test]
fn answer_from_another_thread() {
    let (tx, rx) = mpsc::channel();
    let s = start(deferring(tx));
    let answerer = std::thread::spawn(move || {
        for (path, _, mut d) in rx.iter().take(1) {
            d.respond(200, no_headers(), Payload::from(format!("late {path}").into_bytes())).unwrap();
        }
    });
    let mut c = s.connect();
    assert_eq!(c.get("/x").text(), "late /x");
    answerer.join().unwrap();
}

/// A handle the handler deferred, with its request's path and body.
type Held = (String, Vec<u8>, Deferred);

#[test]
fn thousand_deferred_requests_answered_by_eight_threads_in_random_order() {
    // Each answering thread owns its queue, and the handler deals the handles
    // out in turn: no thread waits on a lock another one holds while it waits.
    const THREADS: usize = 8;
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Held>()).unzip();
    let senders: Vec<Mutex<mpsc::Sender<Held>>> = senders.into_iter().map(Mutex::new).collect();
    let dealt = AtomicUsize::new(0);
    let dealing = move |req: &Request<'_>, res: &mut Response<'_>| {
        let d = res.defer().expect("defer");
        let path = String::from_utf8_lossy(req.path).into_owned();
        let to = dealt.fetch_add(1, Ordering::Relaxed) % THREADS;
        let _ = senders[to].lock().unwrap().send((path, req.body.to_vec(), d));
    };
    let s = start_with(dealing, |c| c.workers = 2);
    let answered = Arc::new(AtomicUsize::new(0));
    let total = 1000;
    let threads: Vec<_> = receivers
        .into_iter()
        .zip(1u32..)
        .map(|(rx, t)| {
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut seed = 0x9e37_79b9u32.wrapping_mul(t);
                let mut held: Vec<Held> = Vec::new();
                loop {
                    // Block only while holding nothing; otherwise take what has
                    // already arrived, and answer when nothing has.
                    let next = if held.is_empty() {
                        match rx.recv_timeout(IO_TIMEOUT) {
                            Ok(item) => Some(item),
                            // All answered, but the server still holds its handler.
                            Err(mpsc::RecvTimeoutError::Timeout) if answered.load(Ordering::SeqCst) >= total => return,
                            Err(mpsc::RecvTimeoutError::Timeout) => continue,
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    } else {
                        rx.try_recv().ok()
                    };
                    let quiet = next.is_none();
                    held.extend(next);
                    // Answer a random one of those held (at once when the queue
                    // is empty): the order is scrambled.
                    if held.len() >= 3 || quiet {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        let i = seed as usize % held.len();
                        let (path, body, mut d) = held.swap_remove(i);
                        let text = format!("{path}:{}", body.len());
                        // Counted before it is sent: a client that has its
                        // answer finds it counted.
                        answered.fetch_add(1, Ordering::SeqCst);
                        d.respond(200, no_headers(), Payload::from(text.into_bytes())).unwrap();
                    }
                }
            })
        })
        .collect();

    // 100 connections × 10 pipelined requests, some with bodies.
    let clients: Vec<_> = (0..100)
        .map(|conn| {
            let port = s.port;
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut batch = Vec::new();
                for i in 0..10 {
                    if i % 3 == 0 {
                        batch.extend_from_slice(
                            format!(
                                "POST /c{conn}/r{i} HTTP/1.1\r\nHost: t\r\nContent-Length: {i}\r\n\r\n{}",
                                "b".repeat(i)
                            )
                            .as_bytes(),
                        );
                    } else {
                        batch.extend_from_slice(format!("GET /c{conn}/r{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                    }
                }
                c.send(&batch);
                for i in 0..10 {
                    let r = c.read_response(false);
                    let len = if i % 3 == 0 { i } else { 0 };
                    assert_eq!(r.text(), format!("/c{conn}/r{i}:{len}"), "in order on each connection");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(answered.load(Ordering::SeqCst), total);
    drop(s);
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn streams_chunked_for_http11_and_until_close_for_http10() {
    let s = start(|_req: &Request<'_>, res: &mut Response<'_>| {
        let mut d = res.defer().unwrap();
        std::thread::spawn(move || {
            d.start(200, [(&b"Content-Type"[..], &b"text/plain"[..])], None).unwrap();
            for i in 0..50 {
                d.write(Payload::from(format!("line {i}\n").into_bytes())).unwrap();
            }
            d.end().unwrap();
        });
    });
    let expected: String = (0..50).map(|i| format!("line {i}\n")).collect();
    let mut c = s.connect();
    let r = c.get("/");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), expected);
    assert_eq!(c.get("/").text(), expected, "the connection is reused after a chunked stream");

    let mut c = s.connect();
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.text(), expected);
}

#[test]
fn streams_with_content_length_in_the_handler_and_after() {
    let s = start(|req: &Request<'_>, res: &mut Response<'_>| {
        res.start(200, no_headers(), Some(10)).unwrap();
        res.write(b"01234").unwrap();
        if req.path == b"/inline" {
            res.write(b"56789").unwrap();
            res.end().unwrap();
            return;
        }
        let mut d = res.defer().unwrap();
        std::thread::spawn(move || {
            d.write(Payload::from(b"56789".to_vec())).unwrap();
            d.end().unwrap();
        });
    });
    let mut c = s.connect();
    for path in ["/inline", "/deferred", "/inline"] {
        let r = c.get(path);
        assert_eq!(r.header("content-length"), Some("10"));
        assert_eq!(r.text(), "0123456789");
    }
}

#[test]
fn head_stream_sends_no_body() {
    let s = start(|_req: &Request<'_>, res: &mut Response<'_>| {
        res.start(200, no_headers(), None).unwrap();
        res.write(b"never on the wire").unwrap();
        res.end().unwrap();
    });
    let mut c = s.connect();
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response(true);
    assert_eq!(r.status, 200);
    let next = c.get("/");
    assert_eq!(next.text(), "never on the wire");
}

#[test]
fn a_stream_that_breaks_its_length_closes_the_connection() {
    let s = start(|req: &Request<'_>, res: &mut Response<'_>| {
        let mut d = res.defer().unwrap();
        let long = req.path == b"/long";
        std::thread::spawn(move || {
            d.start(200, no_headers(), Some(4)).unwrap();
            if long {
                assert_eq!(d.write(Payload::from(b"too long".to_vec())), Err(RespondError::LengthMismatch));
            } else {
                d.write(Payload::from(b"ab".to_vec())).unwrap();
                assert_eq!(d.end(), Err(RespondError::LengthMismatch));
            }
        });
    });
    for path in ["/long", "/short"] {
        let mut c = s.connect();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let mut all = Vec::new();
        let _ = c.stream.read_to_end(&mut all);
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(!text.contains("too long"));
        assert!(text.len() - text.find("\r\n\r\n").unwrap() - 4 < 4, "never a complete body: {text}");
    }
}

#[test]
fn client_leaving_mid_stream_is_reported_and_every_buffer_released() {
    let released = Arc::new(AtomicUsize::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = mpsc::channel();
    let done_tx = Mutex::new(done_tx);
    let (r2, m2) = (released.clone(), made.clone());
    let s = start(move |_req: &Request<'_>, res: &mut Response<'_>| {
        let mut d = res.defer().unwrap();
        let (released, made) = (r2.clone(), m2.clone());
        let done = done_tx.lock().unwrap().clone();
        std::thread::spawn(move || {
            d.start(200, no_headers(), None).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let result = loop {
                made.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = d.write(counted(vec![b'x'; 64 * 1024], &released)) {
                    break e;
                }
                if Instant::now() > deadline {
                    break RespondError::AlreadyAnswered;
                }
            };
            let _ = done.send(result);
        });
    });
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut first = [0u8; 4096];
    let _ = c.stream.read(&mut first).unwrap();
    drop(c);
    let result = done_rx.recv_timeout(Duration::from_secs(30)).expect("writer finished");
    assert_eq!(result, RespondError::Closed);
    drop(s);
    assert_eq!(released.load(Ordering::SeqCst), made.load(Ordering::SeqCst), "every buffer released exactly once");
}

#[test]
fn answers_after_shutdown_get_closed() {
    let (tx, rx) = mpsc::channel();
    let s = start(deferring(tx));
    let port = s.port;
    let client = std::thread::spawn(move || {
        let mut c = Client::connect(port);
        c.send(b"GET /pending HTTP/1.1\r\nHost: t\r\n\r\n");
        c.closed_by_server()
    });
    let (_, _, mut d) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    s.server.shutdown(Duration::from_millis(200));
    let released = Arc::new(AtomicUsize::new(0));
    assert_eq!(d.respond(200, no_headers(), counted(b"late".to_vec(), &released)), Err(RespondError::Closed));
    assert_eq!(released.load(Ordering::SeqCst), 1, "the refused body was released");
    assert!(client.join().unwrap(), "the unanswered connection was closed at the deadline");
}

#[test]
fn dropping_an_unanswered_handle_sends_500() {
    let s = start(|_req: &Request<'_>, res: &mut Response<'_>| {
        let d = res.defer().unwrap();
        std::thread::spawn(move || drop(d));
    });
    let mut c = s.connect();
    assert_eq!(c.get("/").status, 500);
}

static ABORT_MISTAKES: AtomicUsize = AtomicUsize::new(0);

/// Aborts: `/before` gives up before answering, `/chunked` and `/length` in
/// the middle of a stream, inside the handler call or (`?later`) from another
/// thread after it returned.
fn aborting(req: &Request<'_>, res: &mut Response<'_>) {
    let later = req.query == b"later";
    let path = req.path.to_vec();
    let run = move |mut answer: Box<dyn FnMut(Step) -> Result<(), RespondError>>| {
        match &path[..] {
            b"/before" => {}
            b"/chunked" => {
                let _ = answer(Step::Start(None)).and_then(|_| answer(Step::Write(b"partial ")));
            }
            _ => {
                let _ = answer(Step::Start(Some(100))).and_then(|_| answer(Step::Write(b"partial ")));
            }
        }
        let first = answer(Step::Abort);
        let second = answer(Step::Abort);
        // Handler panics are contained: a wrong result is counted instead.
        if first != Ok(()) || second != Err(RespondError::AlreadyAnswered) {
            eprintln!("abort gave {first:?} then {second:?}");
            ABORT_MISTAKES.fetch_add(1, Ordering::SeqCst);
        }
    };
    if later {
        let mut d = res.defer().unwrap();
        std::thread::spawn(move || {
            run(Box::new(move |step| match step {
                Step::Start(len) => d.start(200, no_headers(), len),
                Step::Write(b) => d.write(Payload::from(b.to_vec())),
                Step::Abort => d.abort(),
            }))
        });
    } else {
        // Inside the call the handle stays usable; a second abort is refused.
        let res = std::cell::RefCell::new(res);
        run(Box::new(|step| {
            let mut r = res.borrow_mut();
            match step {
                Step::Start(len) => r.start(200, no_headers(), len),
                Step::Write(b) => r.write(b),
                Step::Abort => r.abort(),
            }
        }));
    }
}

enum Step {
    Start(Option<u64>),
    Write(&'static [u8]),
    Abort,
}

#[test]
fn abort_before_an_answer_sends_500_and_closes() {
    let s = start(hello_or_aborting);
    for target in ["/before", "/before?later"] {
        let mut c = s.connect();
        c.send(format!("GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET {target} HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let all = c.read_to_eof();
        let (replies, rest) = parse_responses(&all, &[false, false]);
        assert_eq!(replies.len(), 2, "{target}: {}", String::from_utf8_lossy(&all));
        assert_eq!((replies[0].status, replies[1].status), (200, 500), "{target}");
        assert_eq!(replies[1].header("connection"), Some("close"), "{target}");
        assert!(rest.is_empty(), "{target}: nothing after the 500: {}", String::from_utf8_lossy(&rest));
    }
    assert_eq!(ABORT_MISTAKES.load(Ordering::SeqCst), 0, "abort results (see stderr)");
}

fn hello_or_aborting(req: &Request<'_>, res: &mut Response<'_>) {
    if req.path == b"/hello" {
        res.respond(200, no_headers(), b"hello").unwrap();
    } else {
        aborting(req, res)
    }
}

#[test]
fn abort_mid_stream_closes_without_the_end_after_earlier_answers() {
    let s = start(hello_or_aborting);
    for target in ["/chunked", "/chunked?later", "/length", "/length?later"] {
        let mut c = s.connect();
        c.send(format!("GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET {target} HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let all = c.read_to_eof();
        let (first, used) = parse_response(&all, false).unwrap_or_else(|| panic!("{target}: {all:?}"));
        assert_eq!(first.text(), "hello", "{target}: the earlier answer arrived whole");
        let rest = String::from_utf8_lossy(&all[used..]).into_owned();
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{target}: {rest}"));
        assert!(head.starts_with("HTTP/1.1 200"), "{target}: {head}");
        if target.starts_with("/chunked") {
            assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
            assert_eq!(body, "8\r\npartial \r\n", "{target}: what was written, no last chunk");
        } else {
            assert!(head.contains("Content-Length: 100"), "{head}");
            assert_eq!(body, "partial ", "{target}: fewer bytes than promised");
        }
    }
    let st = s.server.stats();
    assert_eq!(st.responses[1], 8, "the aborted streams are counted by their status: {st:?}");
    assert_eq!(ABORT_MISTAKES.load(Ordering::SeqCst), 0, "abort results (see stderr)");
}
