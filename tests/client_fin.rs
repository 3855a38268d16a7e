//! `Config::client_fin_ends_request`: a client that half-closes (FIN) while
//! its answer is deferred left, as nginx (499) and ASGI servers
//! (`http.disconnect`) take it — its pending requests end as for a reset
//! (close hooks, `Closed` handles, nothing more written). Off, the default,
//! a FIN only means the client sends no more (RFC 9112 §9.6). Complete
//! requests still to handle, bodies streaming in and upgraded connections
//! keep today's behaviour either way.

mod util;

use std::io::Read;
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use util::*;
use warpcore::{BodyError, BodyStream, Config, Deferred, Payload, Request, RespondError, Response};

fn no_headers<'a>() -> std::iter::Empty<(&'a [u8], &'a [u8])> {
    std::iter::empty()
}

/// The size of `/now-big`'s answer: more than a 4 KiB receive window and
/// the server's first send buffer take, less than the output a connection
/// may hold (so the requests behind it are still handled).
const BIG: usize = 60_000;

/// A client with a 4 KiB receive window and a 536-byte MSS: the server's
/// send buffer stays small (Linux sizes it from the MSS), so an answer of
/// `BIG` bytes does not all fit in the kernel and waits in the server.
fn small_client(port: u16) -> Client {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.set_mss(536).expect("TCP_MAXSEG");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    socket.connect_timeout(&addr.into(), IO_TIMEOUT).expect("connect");
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    Client::over(stream)
}

fn ends(c: &mut Config) {
    c.client_fin_ends_request = true;
}

/// Answers `/now…` in the call; defers anything else, asking to hear of its
/// close (counted in `closes`, announced on `told`), and hands the handle
/// (with a streamed body's reader, if any) to `tx`.
fn watching(
    tx: mpsc::Sender<(Deferred, Option<BodyStream>)>,
    closes: Arc<AtomicUsize>,
    told: mpsc::Sender<String>,
) -> impl warpcore::Handler {
    let (tx, told) = (Mutex::new(tx), Mutex::new(told));
    move |req: &Request<'_>, res: &mut Response<'_>| {
        if req.path == b"/now-big" {
            let _ = res.respond(200, no_headers(), &[b'b'; BIG]);
            return;
        }
        if req.path.starts_with(b"/now") {
            let _ = res.respond(200, no_headers(), b"now");
            return;
        }
        let body = res.body();
        let mut d = res.defer().expect("defer");
        let (closes, told) = (closes.clone(), told.lock().unwrap().clone());
        let path = String::from_utf8_lossy(req.path).into_owned();
        d.on_close(move || {
            closes.fetch_add(1, Ordering::SeqCst);
            let _ = told.send(path);
        })
        .expect("on_close on an open request");
        let _ = tx.lock().unwrap().send((d, body));
    }
}

struct Watched {
    s: TestServer,
    handles: mpsc::Receiver<(Deferred, Option<BodyStream>)>,
    closes: Arc<AtomicUsize>,
    told: mpsc::Receiver<String>,
}

impl Watched {
    fn handle(&self) -> Deferred {
        self.handles.recv_timeout(IO_TIMEOUT).expect("the handle").0
    }

    /// A request on another connection of the (single) worker, answered:
    /// once its answer is read, the worker has seen what was sent before it.
    fn round(&self) {
        let mut other = self.s.connect();
        other.send(b"GET /now-round HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(other.read_response(false).text(), "now");
    }
}

fn start_watched(tune: impl FnOnce(&mut Config)) -> Watched {
    let (tx, handles) = mpsc::channel();
    let (told_tx, told) = mpsc::channel();
    let closes = Arc::new(AtomicUsize::new(0));
    let s = start_with(watching(tx, closes.clone(), told_tx), tune);
    Watched { s, handles, closes, told }
}

#[test]
fn off_by_default() {
    assert!(!Config::default().client_fin_ends_request);
}

#[test]
fn a_fin_ends_a_deferred_request() {
    let w = start_watched(ends);
    let mut c = w.s.connect();
    c.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut d = w.handle();
    c.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(w.told.recv_timeout(IO_TIMEOUT).expect("the close hook runs"), "/poll");
    assert_eq!(d.respond(200, no_headers(), Payload::from(b"late".to_vec())), Err(RespondError::Closed));
    assert!(d.is_finished());
    assert_eq!(c.read_to_eof(), b"", "nothing is written");
    assert!(wait_until(IO_TIMEOUT, || w.s.server.stats().connections_active == 0));
    assert_eq!(w.closes.load(Ordering::SeqCst), 1);
}

#[test]
fn a_fin_with_the_request_ends_it_when_not_answered_in_the_grace() {
    // The request and its FIN arrive together (`printf … | nc -N`), and
    // the answer does not come: let go when the grace ends.
    let w = start_watched(ends);
    let mut c = w.s.connect();
    c.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n");
    c.stream.shutdown(Shutdown::Write).unwrap();
    let mut d = w.handle();
    assert_eq!(w.told.recv_timeout(IO_TIMEOUT).expect("the close hook runs"), "/poll");
    assert_eq!(d.respond(200, no_headers(), Payload::from(b"late".to_vec())), Err(RespondError::Closed));
    assert_eq!(c.read_to_eof(), b"");
}

#[test]
fn an_answer_given_soon_after_a_fin_that_came_with_the_request_goes_out() {
    // `printf … | nc -N`: the client sent its request and half-closed at
    // once, and waits; an answer given within the grace reaches it.
    let w = start_watched(ends);
    let mut c = w.s.connect();
    c.send(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n");
    c.stream.shutdown(Shutdown::Write).unwrap();
    let mut d = w.handle();
    d.respond(200, no_headers(), Payload::from(b"answered".to_vec())).unwrap();
    let r = c.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "answered"));
    assert_eq!(c.read_to_eof(), b"", "then the connection closes");
    assert_eq!(w.closes.load(Ordering::SeqCst), 0, "completed: the hook never runs");
}

#[test]
fn answers_composed_before_the_ended_request_still_reach_a_slow_reader() {
    // Two requests pending, then the FIN; within the grace the first is
    // answered with more than the kernel's buffers take from a client that
    // reads nothing yet (so most of it waits in the server's output), the
    // second never is. At the grace's end the second is let go, and the
    // first answer still leaves whole, then the connection closes.
    const LARGE: usize = 4 << 20;
    let w = start_watched(ends);
    let mut c = small_client(w.s.port);
    c.send(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut first = w.handle();
    let mut second = w.handle();
    c.stream.shutdown(Shutdown::Write).unwrap();
    first.respond(200, no_headers(), Payload::from(vec![b'f'; LARGE])).unwrap();
    assert_eq!(w.told.recv_timeout(IO_TIMEOUT).expect("the close hook runs"), "/second");
    assert!(w.s.server.stats().bytes_out < LARGE as u64, "most of the answer was still the server's to send");
    assert_eq!(second.respond(200, no_headers(), Payload::from(b"late".to_vec())), Err(RespondError::Closed));
    let r = c.read_response(false);
    assert_eq!((r.status, r.body.len()), (200, LARGE));
    assert_eq!(c.read_to_eof(), b"", "nothing after it");
    assert_eq!(w.closes.load(Ordering::SeqCst), 1, "only the second was let go");
}

#[test]
fn a_fin_ends_the_front_and_the_requests_read_ahead() {
    let w = start_watched(ends);
    let mut c = w.s.connect();
    c.send(b"GET /front HTTP/1.1\r\nHost: x\r\n\r\nGET /ahead HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut front = w.handle();
    let mut ahead = w.handle();
    c.stream.shutdown(Shutdown::Write).unwrap();
    let mut told = [w.told.recv_timeout(IO_TIMEOUT).unwrap(), w.told.recv_timeout(IO_TIMEOUT).unwrap()];
    told.sort();
    assert_eq!(told, ["/ahead", "/front"], "both hooks run");
    assert_eq!(ahead.respond(200, no_headers(), Payload::from(b"b".to_vec())), Err(RespondError::Closed));
    assert_eq!(front.respond(200, no_headers(), Payload::from(b"a".to_vec())), Err(RespondError::Closed));
    assert_eq!(c.read_to_eof(), b"");
    assert_eq!(w.closes.load(Ordering::SeqCst), 2);
}

#[test]
fn a_fin_ends_a_stream_in_progress() {
    // An event stream whose tab closed: its writes fail from then on.
    let w = start_watched(ends);
    let mut c = w.s.connect();
    c.send(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut d = w.handle();
    d.start(200, [(&b"Content-Type"[..], &b"text/event-stream"[..])], None).unwrap();
    d.write(Payload::from(b"data: 1\n\n".to_vec())).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.windows(9).any(|w| w == b"data: 1\n\n") {
        let n = c.stream.read(&mut chunk).expect("the first event");
        assert!(n > 0, "closed before the first event");
        got.extend_from_slice(&chunk[..n]);
    }
    c.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(w.told.recv_timeout(IO_TIMEOUT).expect("the close hook runs"), "/events");
    assert_eq!(d.write(Payload::from(b"data: 2\n\n".to_vec())), Err(RespondError::Closed));
    assert_eq!(c.read_to_eof(), b"", "nothing after the FIN");
}

#[test]
fn a_stream_that_fills_the_output_is_let_go_within_the_grace_not_the_write_timeout() {
    // An event stream writing faster than a client that reads nothing: its
    // output always waits. The FIN still ends it after the grace (1-2 s),
    // not at the write timeout (30 s, past the wait below), which the
    // output's own deadline would otherwise be.
    let w = start_watched(ends);
    let mut c = small_client(w.s.port);
    c.send(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut d = w.handle();
    d.start(200, [(&b"Content-Type"[..], &b"text/event-stream"[..])], None).unwrap();
    let writer = std::thread::spawn(move || {
        // Until the connection lets it go (writes wait over the mark).
        let event = vec![b'e'; 16 * 1024];
        while d.write(Payload::from(event.clone())).is_ok() {}
    });
    c.stream.shutdown(Shutdown::Write).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(w.told.recv_timeout(IO_TIMEOUT).expect("let go before the write timeout"), "/flood");
    eprintln!("let go {:?} after the FIN", started.elapsed());
    writer.join().unwrap();
    assert_eq!(w.s.server.stats().connections_timed_out, 0, "a grace, not a timeout");
}

#[test]
fn off_a_fin_still_gets_its_answer() {
    let w = start_watched(|_| {});
    let mut c = w.s.connect();
    c.send(b"GET /half HTTP/1.1\r\nHost: x\r\n\r\nGET /half2 HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut d = w.handle();
    let mut d2 = w.handle();
    c.stream.shutdown(Shutdown::Write).unwrap();
    w.round();
    d2.respond(200, no_headers(), Payload::from(b"second".to_vec())).unwrap();
    d.respond(200, no_headers(), Payload::from(b"first".to_vec())).unwrap();
    assert_eq!(c.read_response(false).text(), "first");
    assert_eq!(c.read_response(false).text(), "second");
    assert!(c.closed_by_server());
    assert_eq!(w.closes.load(Ordering::SeqCst), 0);
}

#[test]
fn an_answer_given_in_the_call_still_goes_out() {
    let w = start_watched(ends);
    // Alone: nothing is pending, the FIN changes nothing.
    let mut c = w.s.connect();
    c.send(b"GET /now HTTP/1.1\r\nHost: x\r\n\r\n");
    c.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(c.read_response(false).text(), "now");
    assert!(c.closed_by_server());
    // Before a deferred one: its answer goes, the pending one ends.
    let mut c = w.s.connect();
    c.send(b"GET /now HTTP/1.1\r\nHost: x\r\n\r\nGET /poll HTTP/1.1\r\nHost: x\r\n\r\n");
    c.stream.shutdown(Shutdown::Write).unwrap();
    let mut d = w.handle();
    assert_eq!(w.told.recv_timeout(IO_TIMEOUT).expect("the close hook runs"), "/poll");
    assert_eq!(d.respond(200, no_headers(), Payload::from(b"late".to_vec())), Err(RespondError::Closed));
    assert_eq!(c.read_response(false).text(), "now");
    assert!(c.closed_by_server());
    assert_eq!(c.leftover(), b"");
}

#[test]
fn complete_requests_still_to_handle_keep_the_half_close() {
    // `/last` asks to close, so it is not read ahead: it waits, complete, in
    // the input behind the pending front. The client expects both answers.
    let w = start_watched(ends);
    let mut c = w.s.connect();
    c.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\nGET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut d = w.handle();
    c.stream.shutdown(Shutdown::Write).unwrap();
    w.round();
    d.respond(200, no_headers(), Payload::from(b"polled".to_vec())).unwrap();
    assert_eq!(c.read_response(false).text(), "polled");
    let mut last = w.handle();
    last.respond(200, no_headers(), Payload::from(b"last".to_vec())).unwrap();
    assert_eq!(c.read_response(false).text(), "last");
    assert!(c.closed_by_server());
    assert_eq!(w.closes.load(Ordering::SeqCst), 0);
}

#[test]
fn a_fin_mid_body_tells_the_reader_and_the_answer_still_goes() {
    let w = start_watched(|c| {
        ends(c);
        c.max_body_size = u64::MAX;
        c.whole_body_max = 64 * 1024;
    });
    let mut c = w.s.connect();
    c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
    let (mut d, body) = w.handles.recv_timeout(IO_TIMEOUT).expect("the handle");
    let mut body = body.expect("a streamed body");
    c.send(&[b'f'; 1000]);
    c.stream.shutdown(Shutdown::Write).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    let end = loop {
        match body.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got += n,
            Err(e) => break Err(e),
        }
    };
    assert_eq!((got, end), (1000, Err(BodyError::Closed)), "the reader learns the body cannot end whole");
    d.respond(400, no_headers(), Payload::from(b"short".to_vec())).unwrap();
    assert_eq!(c.read_response(false).text(), "short");
    assert!(c.closed_by_server());
    assert_eq!(w.closes.load(Ordering::SeqCst), 0);
}

#[test]
fn an_upgraded_connection_still_half_closes() {
    let s = start_with(
        |_req: &Request<'_>, res: &mut Response<'_>| {
            let mut d = res.defer().unwrap();
            std::thread::spawn(move || {
                let up = d.upgrade([(&b"Upgrade"[..], &b"echo"[..])], None).expect("upgrade");
                let mut buf = vec![0u8; 10_000];
                loop {
                    match up.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => up.write(Payload::from(buf[..n].to_vec())).unwrap(),
                        Err(e) => panic!("read failed: {e:?}"),
                    }
                }
                up.write(Payload::from(b"|bye".to_vec())).unwrap();
                up.shutdown_write().unwrap();
            });
        },
        ends,
    );
    let mut c = s.connect();
    c.send(b"GET /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello");
    c.stream.shutdown(Shutdown::Write).unwrap();
    let mut all = Vec::new();
    c.stream.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    assert!(text.ends_with("\r\n\r\nhello|bye"), "the echo reads to the end and answers: {text}");
}

#[test]
fn two_hundred_clients_that_leave_with_a_fin_release_everything() {
    let w = start_watched(ends);
    let mut handles = Vec::new();
    for _ in 0..4 {
        let mut clients = Vec::new();
        for _ in 0..50 {
            let mut c = w.s.connect();
            c.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n");
            clients.push(c);
        }
        for _ in 0..50 {
            handles.push(w.handle());
        }
        for c in &clients {
            c.stream.shutdown(Shutdown::Write).unwrap();
        }
        for mut c in clients {
            assert_eq!(c.read_to_eof(), b"");
        }
    }
    assert!(wait_until(IO_TIMEOUT, || w.closes.load(Ordering::SeqCst) == 200), "every hook runs");
    assert!(wait_until(IO_TIMEOUT, || w.s.server.stats().connections_active == 0));
    for mut d in handles {
        assert_eq!(d.respond(200, no_headers(), Payload::from(b"late".to_vec())), Err(RespondError::Closed));
    }
    // The server goes on.
    let mut c = w.s.connect();
    c.send(b"GET /now HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response(false).text(), "now");
}
