//! `Deferred::on_close`: an application waiting with nothing to send (a long
//! poll, an event stream) learns that its request ended unanswered — the
//! client reset the connection, the answer timeout answered for it, shutdown
//! cut it — once, on the worker; never for an answered request, nor for a
//! client that only half-closed (it still reads its answer; unless
//! `Config::client_fin_ends_request`, see `client_fin.rs`).

mod util;

use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use util::*;
use warpcore::{Deferred, Payload, Request, RespondError, Response};

/// A handler that defers every request, asks to hear of its close (counted in
/// `closes`, announced on `told`) unless its path starts with `/plain`, and
/// hands the handle to `tx`.
fn watching(tx: mpsc::Sender<Deferred>, closes: Arc<AtomicUsize>, told: mpsc::Sender<()>) -> impl warpcore::Handler {
    let tx = Mutex::new(tx);
    let told = Mutex::new(told);
    move |req: &Request<'_>, res: &mut Response<'_>| {
        let mut d = res.defer().expect("defer");
        let (closes, told) = (closes.clone(), told.lock().unwrap().clone());
        if !req.path.starts_with(b"/plain") {
            d.on_close(move || {
                closes.fetch_add(1, Ordering::SeqCst);
                let _ = told.send(());
            })
            .expect("on_close on an open request");
        }
        let _ = tx.lock().unwrap().send(d);
    }
}

struct Watched {
    s: TestServer,
    handles: mpsc::Receiver<Deferred>,
    closes: Arc<AtomicUsize>,
    told: mpsc::Receiver<()>,
}

fn start_watched(tune: impl FnOnce(&mut warpcore::Config)) -> Watched {
    let (tx, handles) = mpsc::channel();
    let (told_tx, told) = mpsc::channel();
    let closes = Arc::new(AtomicUsize::new(0));
    let s = start_with(watching(tx, closes.clone(), told_tx), tune);
    Watched { s, handles, closes, told }
}

fn reset(c: Client) {
    socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(c);
}

fn no_headers<'a>() -> std::iter::Empty<(&'a [u8], &'a [u8])> {
    std::iter::empty()
}

#[test]
fn a_client_that_resets_runs_the_hook_once() {
    let w = start_watched(|_| {});
    let mut c = w.s.connect();
    c.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut d = w.handles.recv_timeout(IO_TIMEOUT).expect("the handle");
    assert_eq!(w.closes.load(Ordering::SeqCst), 0);
    reset(c);
    w.told.recv_timeout(IO_TIMEOUT).expect("the close hook runs");
    assert_eq!(d.respond(200, no_headers(), Payload::from(b"late".to_vec())), Err(RespondError::Closed));
    assert_eq!(d.on_close(|| {}), Err(RespondError::AlreadyAnswered));
    assert_eq!(w.closes.load(Ordering::SeqCst), 1);
}

#[test]
fn an_answered_request_never_runs_its_hook() {
    let w = start_watched(|_| {});
    let mut c = w.s.connect();
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut d = w.handles.recv_timeout(IO_TIMEOUT).expect("the handle");
    d.respond(200, no_headers(), Payload::from(b"answered".to_vec())).unwrap();
    assert_eq!(c.read_response(false).text(), "answered");
    // The same connection's next request is deferred without a hook (it
    // reuses the first one's state); its client leaves: the answered
    // request's hook, left in that state, must not run.
    c.send(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n");
    let _d2 = w.handles.recv_timeout(IO_TIMEOUT).expect("the second handle");
    reset(c);
    assert!(wait_until(IO_TIMEOUT, || w.s.server.stats().connections_active == 0));
    assert_eq!(w.closes.load(Ordering::SeqCst), 0, "the answered request's hook never ran");
}

#[test]
fn a_client_that_only_half_closed_gets_its_answer_and_no_hook() {
    let w = start_watched(|_| {});
    let mut c = w.s.connect();
    c.send(b"GET /half HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut d = w.handles.recv_timeout(IO_TIMEOUT).expect("the handle");
    c.stream.shutdown(Shutdown::Write).unwrap();
    // Give the worker a round to see the FIN before the answer goes (a
    // request on another connection, answered): the answer still goes.
    let mut other = w.s.connect();
    other.send(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut d2 = w.handles.recv_timeout(IO_TIMEOUT).expect("the other handle");
    d2.respond(200, no_headers(), Payload::from(b"other".to_vec())).unwrap();
    assert_eq!(other.read_response(false).text(), "other");
    d.respond(200, no_headers(), Payload::from(b"still read".to_vec())).unwrap();
    assert_eq!(c.read_response(false).text(), "still read");
    assert!(c.closed_by_server());
    assert_eq!(w.closes.load(Ordering::SeqCst), 0);
}

#[test]
fn a_hook_set_after_the_client_left_is_refused() {
    let (tx, handles) = mpsc::channel();
    let s = start(move |_req: &Request<'_>, res: &mut Response<'_>| {
        let _ = tx.send(res.defer().expect("defer"));
    });
    let mut c = s.connect();
    c.send(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut d: Deferred = handles.recv_timeout(IO_TIMEOUT).expect("the handle");
    reset(c);
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().connections_active == 0));
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    assert_eq!(
        d.on_close(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }),
        Err(RespondError::Closed)
    );
    assert!(d.is_finished());
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a refused hook never runs");
}

#[test]
fn the_answer_timeout_and_shutdown_run_the_hook() {
    let w = start_watched(|c| c.answer_timeout = Duration::from_secs(1));
    let mut c = w.s.connect();
    c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut d = w.handles.recv_timeout(IO_TIMEOUT).expect("the handle");
    // The engine answers for it (and counts the timeout) before the hook runs.
    w.told.recv_timeout(IO_TIMEOUT).expect("the answer timeout runs the hook");
    let reply = c.read_response(false);
    assert!(reply.status >= 500, "the engine answered {}", reply.status);
    assert_eq!(d.respond(200, no_headers(), Payload::from(b"late".to_vec())), Err(RespondError::Closed));

    let mut c2 = w.s.connect();
    c2.send(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n");
    let _d2 = w.handles.recv_timeout(IO_TIMEOUT).expect("the second handle");
    w.s.server.shutdown(Duration::from_millis(200));
    w.told.recv_timeout(IO_TIMEOUT).expect("shutdown's deadline runs the hook");
    assert_eq!(w.closes.load(Ordering::SeqCst), 2);
}
