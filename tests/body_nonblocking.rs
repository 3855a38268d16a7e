//! Non-blocking reads of a streamed request body (`BodyStream::try_read` and
//! `on_readable`): one event loop of the application's reads many bodies
//! without a thread each — every body whole and in order, stalled uploads
//! holding up no other, a client that leaves mid-body told through the hook,
//! and the hook never running after the reader was dropped.

mod util;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use util::*;
use warpcore::{BodyError, BodyStream, Deferred, Payload, Request, Response};

fn no_headers<'a>() -> std::iter::Empty<(&'a [u8], &'a [u8])> {
    std::iter::empty()
}

enum Event {
    New(BodyStream, Deferred),
    Ready(usize),
}

/// A server whose handler hands each streamed body to one loop thread, which
/// reads every body with `try_read` only, told by the hook when to read on,
/// and answers each with its length and a checksum (or 400 when it failed).
struct LoopReader {
    s: TestServer,
    /// Hooks run.
    hooks: Arc<AtomicUsize>,
    /// Body bytes the loop read.
    read_total: Arc<AtomicUsize>,
    /// Bodies that failed (the loop answered 400).
    failed: Arc<AtomicUsize>,
}

fn start_loop_reader(tune: impl FnOnce(&mut warpcore::Config)) -> LoopReader {
    let (tx, rx) = mpsc::channel::<Event>();
    let hooks = Arc::new(AtomicUsize::new(0));
    let read_total = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (total, failures) = (read_total.clone(), failed.clone());
    let handler_tx = Mutex::new(tx.clone());
    let s = start_with(
        move |req: &Request<'_>, res: &mut Response<'_>| {
            let Some(body) = res.body() else {
                let _ = res.respond(200, no_headers(), format!("{} whole", req.body.len()).as_bytes());
                return;
            };
            let d = res.defer().expect("defer");
            let _ = handler_tx.lock().unwrap().send(Event::New(body, d));
        },
        tune,
    );
    let counted = hooks.clone();
    std::thread::spawn(move || {
        let mut bodies: HashMap<usize, (BodyStream, Deferred, usize, u64)> = HashMap::new();
        let mut next = 0;
        let mut chunk = vec![0u8; 16 * 1024];
        while let Ok(event) = rx.recv() {
            let id = match event {
                Event::New(body, d) => {
                    let id = next;
                    next += 1;
                    let (tx, counted) = (Mutex::new(tx.clone()), counted.clone());
                    body.on_readable(move || {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let _ = tx.lock().unwrap().send(Event::Ready(id));
                    });
                    bodies.insert(id, (body, d, 0, 0));
                    id
                }
                Event::Ready(id) => id,
            };
            let Some((body, _, len, sum)) = bodies.get_mut(&id) else { continue };
            let done = loop {
                match body.try_read(&mut chunk) {
                    Ok(0) => break Some(Ok(())),
                    Ok(n) => {
                        *len += n;
                        total.fetch_add(n, Ordering::SeqCst);
                        for &b in &chunk[..n] {
                            *sum = sum.wrapping_mul(31).wrapping_add(b as u64);
                        }
                    }
                    Err(BodyError::WouldBlock) => break None,
                    Err(e) => break Some(Err(e)),
                }
            };
            if let Some(result) = done {
                let (_body, mut d, len, sum) = bodies.remove(&id).unwrap();
                let _ = match result {
                    Ok(()) => d.respond(200, no_headers(), Payload::from(format!("{len} {sum}").into_bytes())),
                    Err(e) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                        d.respond(400, no_headers(), Payload::from(format!("{e:?}").into_bytes()))
                    }
                };
            }
        }
    });
    LoopReader { s, hooks, read_total, failed }
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |sum, &b| sum.wrapping_mul(31).wrapping_add(b as u64))
}

#[test]
fn one_loop_reads_many_bodies_sent_in_pieces() {
    let LoopReader { s, hooks, .. } = start_loop_reader(|c| c.whole_body_max = 1024);
    let bodies: Vec<Vec<u8>> = (0..8).map(|k| (0..300_000u32).map(|i| (i * 7 + k) as u8).collect()).collect();
    let mut clients: Vec<Client> = bodies
        .iter()
        .map(|b| {
            let mut c = s.connect();
            c.send(format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes());
            c
        })
        .collect();
    // Interleaved pieces: each body arrives over many rounds.
    for piece in 0..30 {
        for (c, b) in clients.iter_mut().zip(&bodies) {
            c.stream.write_all(&b[piece * 10_000..(piece + 1) * 10_000]).unwrap();
        }
    }
    for (c, b) in clients.iter_mut().zip(&bodies) {
        let reply = c.read_response(false);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), format!("{} {}", b.len(), checksum(b)));
    }
    assert!(hooks.load(Ordering::SeqCst) >= 8, "the loop was told to read on");
}

#[test]
fn stalled_uploads_hold_up_no_other_upload() {
    let LoopReader { s, .. } = start_loop_reader(|c| c.whole_body_max = 1024);
    let stalled: Vec<Client> = (0..64)
        .map(|_| {
            let mut c = s.connect();
            c.send(b"POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
            c
        })
        .collect();
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().requests >= 64));
    let body = vec![b'p'; 5000];
    let mut c = s.connect();
    // Its head alone first, so that its body streams too.
    c.send(b"POST /go HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().requests >= 65));
    c.send(&body);
    // Bounded by the client's own read timeout: with a thread per pending
    // read, the loop would be stuck in one of the stalled bodies for good.
    let reply = c.read_response(false);
    assert_eq!(reply.text(), format!("5000 {}", checksum(&body)));
    drop(stalled);
}

#[test]
fn a_client_that_leaves_mid_body_is_told() {
    let LoopReader { s, read_total, failed, .. } = start_loop_reader(|c| c.whole_body_max = 1024);
    let mut c = s.connect();
    c.send(b"POST /leave HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    c.send(&[b'x'; 3000]);
    assert!(wait_until(IO_TIMEOUT, || read_total.load(Ordering::SeqCst) >= 3000));
    socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(c);
    // The loop learns it (from its hook, or its next try_read): it does not
    // wait for good on a body that cannot come.
    assert!(wait_until(IO_TIMEOUT, || failed.load(Ordering::SeqCst) == 1));
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().connections_active == 0));
}

#[test]
fn a_dropped_reader_waits_for_its_running_hook_and_is_never_told_again() {
    // The hook sleeps while the reader is dropped on another thread: the drop
    // returns only after the hook did. A call was owed again when it was
    // dropped (a read said WouldBlock): the bytes that come after the drop
    // do not bring it.
    let (tx, rx) = mpsc::channel::<BodyStream>();
    let tx = Mutex::new(tx);
    let s = start_with(
        move |req: &Request<'_>, res: &mut Response<'_>| {
            if let Some(body) = res.body() {
                let _ = tx.lock().unwrap().send(body);
            }
            let _ = res.respond(200, no_headers(), req.path);
        },
        |c| c.whole_body_max = 1024,
    );
    let mut c = s.connect();
    c.send(b"POST /r HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n");
    let body = rx.recv_timeout(IO_TIMEOUT).expect("the reader");
    let state = Arc::new(Mutex::new((0usize, false))); // (hooks begun, hook running)
    let (entered_tx, entered) = mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let in_hook = state.clone();
    body.on_readable(move || {
        in_hook.lock().unwrap().0 += 1;
        in_hook.lock().unwrap().1 = true;
        let _ = entered_tx.lock().unwrap().send(());
        std::thread::sleep(Duration::from_millis(200));
        in_hook.lock().unwrap().1 = false;
    });
    let mut buf = [0u8; 4096];
    assert_eq!(body.try_read(&mut buf), Err(BodyError::WouldBlock));
    c.send(&[b'y'; 100]);
    entered.recv_timeout(IO_TIMEOUT).expect("the hook runs");
    // While it runs: read what came, until a call is owed again.
    while body.try_read(&mut buf).is_ok() {}
    let t0 = Instant::now();
    drop(body);
    assert!(!state.lock().unwrap().1, "the drop returned while the hook ran ({:?} after it began)", t0.elapsed());
    // The rest of the body (discarded now), then a request behind it: its
    // answer says the worker took those bytes.
    c.send(&[b'z'; 1900]);
    c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response(false).text(), "/r");
    assert_eq!(c.read_response(false).text(), "/after");
    assert_eq!(state.lock().unwrap().0, 1, "a dropped reader's hook ran again");
}
