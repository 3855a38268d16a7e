//! Connections that switch protocols: the 101, bytes both ways through the
//! `Upgraded` handle from the worker's loop (events) and from other threads
//! (blocking calls), half-close, the idle timeout, backpressure both ways,
//! shutdown's notice, and requests that may not upgrade.

mod util;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use util::*;
use warpcore::upgrade::events;
use warpcore::{Payload, Request, RespondError, Response, UpgradeError, UpgradeEvents, Upgraded};

const UPGRADE_FIELDS: [(&[u8], &[u8]); 1] = [(b"Upgrade", b"echo")];

fn fields() -> impl Iterator<Item = (&'static [u8], &'static [u8])> + Clone {
    UPGRADE_FIELDS.iter().map(|(n, v)| (*n, *v))
}

/// An echo served from the worker's loop: every event first sends what a
/// full queue held back, then reads until `WouldBlock` and writes the bytes
/// back; a refused write keeps its bytes for the `WRITABLE` to come, and
/// reading stops meanwhile (so the peer is slowed by TCP). The events seen
/// are recorded.
struct LoopEcho {
    handle: Mutex<Option<Arc<Upgraded>>>,
    held: Mutex<Option<Vec<u8>>>,
    seen: AtomicU32,
    closed: AtomicUsize,
}

impl UpgradeEvents for LoopEcho {
    fn on_events(&self, ev: u32) {
        self.seen.fetch_or(ev, Ordering::SeqCst);
        if ev & events::CLOSED != 0 {
            self.closed.fetch_add(1, Ordering::SeqCst);
            self.handle.lock().unwrap().take();
            return;
        }
        let Some(up) = self.handle.lock().unwrap().clone() else { return };
        let mut held = self.held.lock().unwrap();
        if let Some(bytes) = held.take() {
            if let Err(UpgradeError::WouldBlock) = up.try_write(Payload::from(bytes.clone())) {
                *held = Some(bytes);
                return;
            }
        }
        let mut buf = [0u8; 8192];
        loop {
            match up.try_read(&mut buf) {
                Ok(0) => {
                    let _ = up.shutdown_write();
                    return;
                }
                Ok(n) => {
                    if let Err(UpgradeError::WouldBlock) = up.try_write(Payload::from(buf[..n].to_vec())) {
                        *held = Some(buf[..n].to_vec());
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

fn upgrade_request(extra: &str) -> String {
    format!("GET /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n{extra}\r\n")
}

/// Reads the 101 head and returns it with what followed it.
fn read_switch(c: &mut Client) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end + 4]).into_owned();
            return (head, got[end + 4..].to_vec());
        }
        let n = c.stream.read(&mut chunk).expect("read the 101");
        assert!(n > 0, "closed before the 101: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
}

fn read_exactly(c: &mut Client, mut have: Vec<u8>, len: usize) -> Vec<u8> {
    let mut chunk = vec![0u8; 65536];
    while have.len() < len {
        let n = c.stream.read(&mut chunk).expect("read echoed bytes");
        assert!(n > 0, "closed after {} of {len} bytes", have.len());
        have.extend_from_slice(&chunk[..n]);
    }
    have
}

fn loop_echo_server() -> (TestServer, Arc<LoopEcho>) {
    let echo = Arc::new(LoopEcho {
        handle: Mutex::new(None),
        held: Mutex::new(None),
        seen: AtomicU32::new(0),
        closed: AtomicUsize::new(0),
    });
    let e = echo.clone();
    let server = start(move |_req: &Request<'_>, res: &mut Response<'_>| {
        let events: Arc<dyn UpgradeEvents> = e.clone();
        match res.upgrade(fields(), Some(events)) {
            Ok(up) => *e.handle.lock().unwrap() = Some(Arc::new(up)),
            Err(_) => {
                let _ = res.respond(400, std::iter::empty(), b"no upgrade");
            }
        }
    });
    (server, echo)
}

#[test]
fn the_101_names_the_protocol_and_pipelined_bytes_are_read_first() {
    let (server, echo) = loop_echo_server();
    let mut c = server.connect();
    // The client's first bytes of the new protocol ride with the request.
    c.send(format!("{}early bytes|", upgrade_request("")).as_bytes());
    let (head, rest) = read_switch(&mut c);
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nupgrade: echo\r\n"), "{head}");
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(lower.contains("\r\ndate: "), "{head}");
    assert!(!lower.contains("content-length") && !lower.contains("transfer-encoding"), "{head}");
    let got = read_exactly(&mut c, rest, 12);
    assert_eq!(&got, b"early bytes|");
    // And the protocol goes on both ways, many times, in any sizes.
    let mut expected = Vec::new();
    for i in 0..50 {
        let piece = vec![b'a' + (i % 26) as u8; 1 + i * 997];
        c.send(&piece);
        expected.extend_from_slice(&piece);
    }
    let echoed = read_exactly(&mut c, Vec::new(), expected.len());
    assert_eq!(echoed, expected);
    assert_eq!(server.server.stats().upgrades, 1);
    assert_eq!(server.server.stats().responses[0], 1, "the 101 counts as a 1xx");
    // Half-close: the echo shuts its side when it reads the end.
    c.shutdown_write();
    assert!(c.closed_by_server(), "both sides done: the connection closes");
    assert!(wait_until(IO_TIMEOUT, || echo.closed.load(Ordering::SeqCst) == 1));
    assert!(echo.seen.load(Ordering::SeqCst) & events::READABLE != 0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(echo.closed.load(Ordering::SeqCst), 1, "CLOSED comes exactly once");
}

#[test]
fn a_deferred_upgrade_echoes_from_a_thread_with_blocking_calls_and_half_closes() {
    let server = start(|_req: &Request<'_>, res: &mut Response<'_>| {
        let mut d = res.defer().unwrap();
        std::thread::spawn(move || {
            let up = d.upgrade(fields(), None).expect("upgrade from another thread");
            // Written before anything is read: it follows the 101.
            up.write(Payload::from(b"hello|".to_vec())).unwrap();
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
            assert_eq!(up.write(Payload::from(b"late".to_vec())), Err(UpgradeError::Closed));
        });
    });
    let mut c = server.connect();
    c.send(upgrade_request("").as_bytes());
    let (head, rest) = read_switch(&mut c);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let mut w = c.stream.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        })
    };
    let mut all = rest;
    c.stream.read_to_end(&mut all).unwrap();
    writer.join().unwrap();
    let mut expected = b"hello|".to_vec();
    expected.extend_from_slice(&data);
    expected.extend_from_slice(b"|bye");
    assert_eq!(all.len(), expected.len());
    assert!(all == expected, "the echo arrives whole and in order");
}

#[test]
fn requests_that_did_not_ask_cannot_upgrade_and_a_101_must_name_its_protocol() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let server = start(move |req: &Request<'_>, res: &mut Response<'_>| {
        let result = if req.path == b"/nameless" {
            res.upgrade(std::iter::empty(), None).map(|_| ())
        } else {
            res.upgrade(fields(), None).map(|_| ())
        };
        tx.lock().unwrap().send(result).unwrap();
        if result.is_err() {
            let _ = res.respond(200, std::iter::empty(), b"plain");
        }
    });
    let cases: [(&str, Result<(), RespondError>); 5] = [
        ("GET / HTTP/1.1\r\nHost: t\r\n\r\n", Err(RespondError::NotUpgradable)),
        ("GET / HTTP/1.1\r\nHost: t\r\nUpgrade: echo\r\n\r\n", Err(RespondError::NotUpgradable)),
        ("GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\n\r\n", Err(RespondError::NotUpgradable)),
        ("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n", Err(RespondError::NotUpgradable)),
        (
            "GET /nameless HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
            Err(RespondError::NoUpgradeField),
        ),
    ];
    for (request, expected) in cases {
        let mut c = server.connect();
        c.send(request.as_bytes());
        let reply = c.read_response(false);
        assert_eq!(reply.status, 200, "{request:?} is answered as HTTP");
        assert_eq!(rx.recv_timeout(IO_TIMEOUT).unwrap(), expected, "{request:?}");
    }
    assert_eq!(server.server.stats().upgrades, 0);
}

#[test]
fn an_idle_upgraded_connection_is_closed_by_its_timeout_and_the_application_is_told() {
    let closed = Arc::new(AtomicUsize::new(0));
    struct Count(Arc<AtomicUsize>);
    impl UpgradeEvents for Count {
        fn on_events(&self, ev: u32) {
            if ev & events::CLOSED != 0 {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let keep = Arc::new(Mutex::new(Vec::new()));
    let (c2, k2) = (closed.clone(), keep.clone());
    let server = start(move |_req: &Request<'_>, res: &mut Response<'_>| {
        let up = res.upgrade(fields(), Some(Arc::new(Count(c2.clone())))).unwrap();
        up.set_idle_timeout(Some(Duration::from_secs(1))).unwrap();
        k2.lock().unwrap().push(up);
    });
    let mut c = server.connect();
    c.send(upgrade_request("").as_bytes());
    let _ = read_switch(&mut c);
    assert!(c.closed_by_server(), "closed after its idle timeout");
    assert!(wait_until(IO_TIMEOUT, || closed.load(Ordering::SeqCst) == 1));
    assert!(server.server.stats().connections_timed_out >= 1);
    let up = keep.lock().unwrap().pop().unwrap();
    assert_eq!(up.write(Payload::from(b"x".to_vec())), Err(UpgradeError::Closed));
    assert_eq!(up.read(&mut [0u8; 4]), Err(UpgradeError::Closed));
}

#[test]
fn a_peer_that_does_not_read_blocks_a_writer_thread_and_the_window_bounds_what_is_held() {
    let (tx, rx) = mpsc::channel::<Arc<Upgraded>>();
    let tx = Mutex::new(tx);
    let server = start_with(
        move |_req: &Request<'_>, res: &mut Response<'_>| {
            let up = res.upgrade(fields(), None).unwrap();
            tx.lock().unwrap().send(Arc::new(up)).unwrap();
        },
        |c| c.stream_high_water = 64 * 1024,
    );
    let mut c = Client::connect_with_rcvbuf(server.port, 4096);
    c.send(upgrade_request("").as_bytes());
    let up = rx.recv_timeout(IO_TIMEOUT).unwrap();
    // The writer thread: 16 MiB to a peer that does not read. It must block
    // (the mark holds the queue), not buffer it all.
    let written = Arc::new(AtomicUsize::new(0));
    let (w_up, w_written) = (up.clone(), written.clone());
    let writer = std::thread::spawn(move || {
        for _ in 0..256 {
            if w_up.write(Payload::from(vec![7u8; 64 * 1024])).is_err() {
                return;
            }
            w_written.fetch_add(64 * 1024, Ordering::SeqCst);
        }
    });
    // It stops advancing well short of the whole.
    let mut last = usize::MAX;
    assert!(wait_until(IO_TIMEOUT, || {
        let now = written.load(Ordering::SeqCst);
        let settled = now == last;
        last = now;
        std::thread::sleep(Duration::from_millis(100));
        settled && now > 0
    }));
    assert!(written.load(Ordering::SeqCst) < 8 << 20, "the writer was held back");
    // Reading drains it all, in order.
    let (_head, rest) = read_switch(&mut c);
    let total = read_exactly(&mut c, rest, 16 << 20);
    assert!(total.iter().all(|&b| b == 7));
    writer.join().unwrap();
    assert_eq!(written.load(Ordering::SeqCst), 16 << 20);
    drop(up);
    assert!(c.closed_by_server(), "dropping the last handle closes the connection");
}

#[test]
fn an_application_that_does_not_read_stops_the_peer_at_the_window() {
    let (tx, rx) = mpsc::channel::<Upgraded>();
    let tx = Mutex::new(tx);
    let server = start(move |_req: &Request<'_>, res: &mut Response<'_>| {
        let up = res.upgrade(fields(), None).unwrap();
        tx.lock().unwrap().send(up).unwrap();
    });
    let mut c = server.connect();
    c.send(upgrade_request("").as_bytes());
    let up = rx.recv_timeout(IO_TIMEOUT).unwrap();
    let _ = read_switch(&mut c);
    // The peer writes until its socket blocks: what it got rid of is the
    // window plus the kernel's buffers, not all of it.
    c.stream.set_nonblocking(true).unwrap();
    let chunk = vec![1u8; 64 * 1024];
    let mut sent = 0usize;
    let mut stuck_rounds = 0;
    while sent < 64 << 20 && stuck_rounds < 20 {
        match c.stream.write(&chunk) {
            Ok(n) => {
                sent += n;
                stuck_rounds = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stuck_rounds += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(sent < 32 << 20, "the peer was stopped (sent {sent})");
    c.stream.set_nonblocking(false).unwrap();
    // Reading takes every byte, in order, and the peer goes on.
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0usize;
    let reader = std::thread::spawn(move || {
        while got < sent {
            let n = up.read(&mut buf).unwrap();
            assert!(buf[..n].iter().all(|&b| b == 1));
            got += n;
        }
        got
    });
    assert_eq!(reader.join().unwrap(), sent);
}

#[test]
fn shutdown_tells_upgraded_connections_it_drains_and_cuts_them_at_the_deadline() {
    let (server, echo) = loop_echo_server();
    let mut c = server.connect();
    c.send(upgrade_request("").as_bytes());
    let _ = read_switch(&mut c);
    c.send(b"ping");
    let got = read_exactly(&mut c, Vec::new(), 4);
    assert_eq!(got, b"ping");
    let TestServer { server, .. } = server;
    let stopper = std::thread::spawn(move || {
        let report = server.shutdown(Duration::from_millis(1500));
        (report, server)
    });
    assert!(wait_until(IO_TIMEOUT, || echo.seen.load(Ordering::SeqCst) & events::DRAINING != 0));
    let left = echo.handle.lock().unwrap().as_ref().and_then(|up| up.draining());
    assert!(left.is_some_and(|d| d <= Duration::from_millis(1500)), "{left:?}");
    assert!(c.closed_by_server(), "cut at the deadline");
    let (_report, _server) = stopper.join().unwrap();
    assert_eq!(echo.closed.load(Ordering::SeqCst), 1);
}

#[test]
fn a_take_over_sends_nothing_and_the_application_writes_its_own_answer() {
    let server = start(|_req: &Request<'_>, res: &mut Response<'_>| {
        let mut d = res.defer().unwrap();
        std::thread::spawn(move || {
            let up = d.take_over(None).expect("take over");
            let mut buf = [0u8; 64];
            let n = up.read(&mut buf).unwrap();
            let mut answer =
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n".to_vec();
            answer.extend_from_slice(&buf[..n]);
            up.write(Payload::from(answer)).unwrap();
        });
    });
    let mut c = server.connect();
    c.send(format!("{}first", upgrade_request("")).as_bytes());
    let (head, rest) = read_switch(&mut c);
    assert_eq!(head, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n");
    assert_eq!(read_exactly(&mut c, rest, 5), b"first");
    assert!(c.closed_by_server(), "the handle dropped: closed");
    let stats = server.server.stats();
    assert_eq!((stats.upgrades, stats.responses[0]), (1, 0), "an upgrade, and no status the engine sent");
    // A request that did not ask is not taken over.
    let refused = start(|_req: &Request<'_>, res: &mut Response<'_>| {
        let taken = res.take_over(None).map(|_| ());
        assert_eq!(taken, Err(RespondError::NotUpgradable));
        let _ = res.respond(200, std::iter::empty(), b"plain");
    });
    assert_eq!(refused.connect().get("/").status, 200);
}

#[test]
fn a_connection_that_upgrades_while_the_server_drains_is_told_at_once() {
    struct Seen(Arc<AtomicU32>);
    impl UpgradeEvents for Seen {
        fn on_events(&self, ev: u32) {
            self.0.fetch_or(ev, Ordering::SeqCst);
        }
    }
    let (tx, rx) = mpsc::channel::<warpcore::Deferred>();
    let tx = Mutex::new(tx);
    let server = start(move |req: &Request<'_>, res: &mut Response<'_>| {
        if req.path == b"/up" {
            tx.lock().unwrap().send(res.defer().unwrap()).unwrap();
        } else {
            let _ = res.respond(200, std::iter::empty(), b"ok");
        }
    });
    let mut c = server.connect();
    c.send(upgrade_request("").as_bytes());
    let mut d = rx.recv_timeout(IO_TIMEOUT).unwrap();
    // An idle keep-alive connection: closed when the worker begins to drain.
    let mut idle = server.connect();
    assert_eq!(idle.get("/x").status, 200);
    let TestServer { server, .. } = server;
    let server = Arc::new(server);
    let stopper = {
        let server = server.clone();
        std::thread::spawn(move || server.shutdown(Duration::from_secs(2)))
    };
    // The worker drains (the idle connection is closed); the deferred answer
    // keeps its connection.
    assert!(idle.closed_by_server());
    let seen = Arc::new(AtomicU32::new(0));
    let up = d.upgrade(fields(), Some(Arc::new(Seen(seen.clone())))).expect("upgrade while draining");
    assert!(wait_until(IO_TIMEOUT, || seen.load(Ordering::SeqCst) & events::DRAINING != 0));
    assert!(up.draining().is_some());
    let (head, _) = read_switch(&mut c);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(c.closed_by_server(), "cut at the deadline");
    stopper.join().unwrap();
    assert!(wait_until(IO_TIMEOUT, || seen.load(Ordering::SeqCst) & events::CLOSED != 0));
}

#[test]
fn a_very_long_idle_timeout_does_not_close_the_connection_early() {
    let keep = Arc::new(Mutex::new(Vec::new()));
    let k2 = keep.clone();
    let server = start(move |_req: &Request<'_>, res: &mut Response<'_>| {
        let up = res.upgrade(fields(), None).unwrap();
        // "Forever" as a caller may spell it: past the worker's clock.
        up.set_idle_timeout(Some(Duration::from_secs(u32::MAX as u64))).unwrap();
        k2.lock().unwrap().push(up);
    });
    let mut c = server.connect();
    c.send(upgrade_request("").as_bytes());
    let _ = read_switch(&mut c);
    // Deadlines are swept once a second: a wrapped one expires within two.
    std::thread::sleep(Duration::from_millis(2500));
    let up = keep.lock().unwrap().pop().unwrap();
    assert!(!up.is_closed(), "closed long before its idle timeout");
    assert_eq!(server.server.stats().connections_timed_out, 0);
    up.write(Payload::from(b"still".to_vec())).unwrap();
    let mut got = [0u8; 5];
    c.stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"still");
}

#[test]
fn close_within_cuts_a_connection_the_peer_keeps_busy() {
    let (tx, rx) = mpsc::channel::<Upgraded>();
    let tx = Mutex::new(tx);
    let server = start(move |_req: &Request<'_>, res: &mut Response<'_>| {
        let up = res.upgrade(fields(), None).unwrap();
        up.close_within(Duration::from_secs(1)).unwrap();
        tx.lock().unwrap().send(up).unwrap();
    });
    let mut c = server.connect();
    c.send(upgrade_request("").as_bytes());
    let _up = rx.recv_timeout(IO_TIMEOUT).unwrap();
    let _ = read_switch(&mut c);
    // Busy both ways would keep an idle timeout from ever firing; this bound
    // holds anyway.
    let start = std::time::Instant::now();
    let mut writer = c.stream.try_clone().unwrap();
    let busy = std::thread::spawn(move || {
        while start.elapsed() < IO_TIMEOUT {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(c.closed_by_server(), "closed within its bound");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    busy.join().unwrap();
}

#[test]
fn a_websocket_handshake_with_two_keys_is_refused() {
    use warpcore::websocket::{WebSocket, WsOptions};
    let server = start(|_req: &Request<'_>, res: &mut Response<'_>| {
        if WebSocket::accept(res, &[], None, WsOptions::default()).is_err() {
            let _ = res.respond(400, std::iter::empty(), b"bad handshake");
        }
    });
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let request = |keys: usize| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
            key.repeat(keys)
        )
    };
    let mut c = server.connect();
    c.send(request(2).as_bytes());
    assert_eq!(c.read_response(false).status, 400);
    let mut c = server.connect();
    c.send(request(1).as_bytes());
    let (head, _) = read_switch(&mut c);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
}
