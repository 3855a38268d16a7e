//! Zero-downtime restarts (docs/deployment.md): a new server starts on the
//! same address while the old one drains with `shutdown`, under load from a
//! few client threads that each alternate keep-alive runs and fresh
//! connections. Every request must be answered: no connection refused or
//! reset, no answer cut, no request lost on a connection the old server
//! closed. Clients follow `Connection: close` as HTTP/1.1 clients do.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use util::*;
use warpcore::{Config, Request, Response, Server};

/// Answers which server it is, so the clients can tell when the new one serves.
fn named(name: &'static str) -> impl Fn(&Request<'_>, &mut Response<'_>) + Send + Sync + 'static {
    move |_req: &Request<'_>, res: &mut Response<'_>| {
        let _ = res.respond(200, std::iter::empty(), name.as_bytes());
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    answered: AtomicUsize,
    by_new: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

/// One response on `stream`: its body and whether the server closes after it.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(Vec<u8>, bool), String> {
    loop {
        if let Some((reply, used)) = parse_response(buf, false) {
            buf.drain(..used);
            let close = reply.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
            return Ok((reply.body, close));
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("closed before a whole answer ({} bytes of it)", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// A client thread: keep-alive runs of up to 20 requests, then 5 fresh
/// connections of one request each, until `stop`.
fn client(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    let fail = |what: String| tally.errors.lock().unwrap().push(what);
    let count = |body: &[u8]| {
        tally.answered.fetch_add(1, Ordering::Relaxed);
        if body == b"new" {
            tally.by_new.fetch_add(1, Ordering::Relaxed);
        }
    };
    let connect = || {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Ok::<_, String>(s)
    };
    while !stop.load(Ordering::Relaxed) {
        // Keep-alive: requests one after the other on one connection, a new
        // connection when the server says it closes.
        let mut stream = match connect() {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let mut buf = Vec::new();
        for _ in 0..20 {
            if let Err(e) = stream.write_all(REQUEST) {
                return fail(format!("keep-alive write: {e}"));
            }
            match read_response(&mut stream, &mut buf) {
                Ok((body, close)) => {
                    count(&body);
                    if close {
                        break;
                    }
                }
                Err(e) => return fail(format!("keep-alive: {e}")),
            }
        }
        // Fresh connections.
        for _ in 0..5 {
            let mut s = match connect() {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            if let Err(e) = s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n") {
                return fail(format!("fresh write: {e}"));
            }
            match read_response(&mut s, &mut Vec::new()) {
                Ok((body, _)) => count(&body),
                Err(e) => return fail(format!("fresh: {e}")),
            }
        }
    }
}

/// Swaps servers `SWAPS` times under the clients' load: each time `start`
/// makes the next server on `addr` (it may use the current one's), both
/// serve for a while, then the current one drains with `shutdown`. Returns
/// what the clients saw, and the last server.
const SWAPS: usize = 6;

fn swaps_under_load(addr: SocketAddr, first: Server, start: impl Fn(&'static str) -> Server) -> (Arc<Tally>, Server) {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, tally) = (stop.clone(), tally.clone());
            std::thread::spawn(move || client(addr, stop, tally))
        })
        .collect();
    let mut current = first;
    for i in 0..SWAPS {
        let name = if i % 2 == 0 { "new" } else { "old" };
        let at = tally.answered.load(Ordering::Relaxed);
        assert!(wait_until(IO_TIMEOUT, || tally.answered.load(Ordering::Relaxed) > at + 500), "served before swap {i}");
        let next = start(name);
        let at = tally.answered.load(Ordering::Relaxed);
        assert!(wait_until(IO_TIMEOUT, || tally.answered.load(Ordering::Relaxed) > at + 500), "both serve in swap {i}");
        let report = current.shutdown(Duration::from_secs(5));
        assert_eq!(report.connections_cut, 0, "swap {i}");
        current = next;
    }
    let at = tally.answered.load(Ordering::Relaxed);
    assert!(wait_until(IO_TIMEOUT, || tally.answered.load(Ordering::Relaxed) > at + 500), "the last server serves");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    (tally, current)
}

fn check(tally: &Tally) {
    let errors = tally.errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors in {} answers: {:?}",
        errors.len(),
        tally.answered.load(Ordering::Relaxed),
        &errors[..errors.len().min(5)]
    );
    assert!(tally.by_new.load(Ordering::Relaxed) > 0);
}

fn config(name: &'static str, listen: &str, share_port: bool) -> Config {
    Config {
        listen: listen.to_owned(),
        workers: 2,
        share_port,
        handler: Some(Arc::new(named(name))),
        ..Config::default()
    }
}

/// The inherited-descriptor recipe: the listening socket outlives each
/// server (a supervisor, systemd, or the old process passing it on), so
/// nothing queued on it is ever reset.
#[test]
fn a_swap_through_an_inherited_socket_loses_nothing() {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let handed = || format!("fd://{}", socket.try_clone().unwrap().into_raw_fd());
    let first = Server::start(&config("old", &handed(), false)).unwrap();
    let (tally, last) = swaps_under_load(addr, first, |name| Server::start(&config(name, &handed(), false)).unwrap());
    check(&tally);
    last.shutdown(Duration::from_secs(1));
}
