//! Timeouts, limits at their boundaries, the connection limit, contained
//! panics and clients that vanish, over real sockets.

mod util;

use std::io::{Read, Write};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use util::*;
use warpcore::{Payload, Request, Response};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Waits for the server to close `c`; returns how long it took.
fn time_to_close(c: &mut Client) -> Duration {
    let started = Instant::now();
    assert!(c.closed_by_server(), "the server did not close the connection");
    started.elapsed()
}

#[test]
fn header_timeout_is_not_extended_by_a_trickle() {
    let s = start_with(demo_handler, |c| c.header_timeout = secs(1));
    let mut c = s.connect();
    let started = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    c.send(head);
    // One byte every 200 ms keeps the connection busy but must not save it.
    let mut closed = false;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(200));
        if c.stream.write_all(b"a").is_err() {
            closed = true;
            break;
        }
        c.stream.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let gone = match c.stream.read(&mut b) {
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            Ok(_) => true,
        };
        c.stream.set_nonblocking(false).unwrap();
        if gone {
            closed = true;
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(closed, "a trickling head kept the connection open");
    assert!(elapsed >= secs(1) && elapsed < secs(4), "closed after {elapsed:?}");
}

#[test]
fn idle_keep_alive_connections_time_out() {
    let s = start_with(demo_handler, |c| c.idle_timeout = secs(1));
    let mut c = s.connect();
    assert_eq!(c.get("/").status, 200);
    let t = time_to_close(&mut c);
    assert!(t >= Duration::from_millis(900) && t < secs(4), "{t:?}");
    assert_eq!(s.server.stats().connections_timed_out, 1);
}

#[test]
fn body_timeout_closes_a_stalled_upload() {
    let s = start_with(demo_handler, |c| c.body_timeout = secs(1));
    let mut c = s.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    let t = time_to_close(&mut c);
    assert!(t >= Duration::from_millis(900) && t < secs(4), "{t:?}");
}

#[test]
fn write_timeout_closes_a_client_that_stops_reading() {
    let s = start_with(
        |_req: &Request<'_>, res: &mut Response<'_>| {
            let _ = res.respond(200, std::iter::empty(), &vec![b'w'; 64 << 20]);
        },
        |c| c.write_timeout = secs(1),
    );
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    // Read nothing for a while: the server's writes make no progress.
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if s.server.stats().connections_timed_out == 1 {
            break;
        }
        assert!(started.elapsed() < secs(6), "the stalled writer was not timed out");
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[test]
fn a_request_being_handled_is_never_timed_out() {
    let (tx, rx) = mpsc::channel::<warpcore::Deferred>();
    let tx = Mutex::new(tx);
    let s = start_with(
        move |_req: &Request<'_>, res: &mut Response<'_>| {
            let _ = tx.lock().unwrap().send(res.defer().unwrap());
        },
        |c| {
            c.idle_timeout = secs(1);
            c.header_timeout = secs(1);
            c.write_timeout = secs(1);
        },
    );
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut d = rx.recv_timeout(secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    d.respond(200, std::iter::empty(), Payload::from(b"patience".to_vec())).unwrap();
    assert_eq!(c.read_response(false).text(), "patience");
}

/// Sends `raw` on a fresh connection and returns the status of the one answer.
fn status_of(port: u16, raw: &[u8]) -> u16 {
    let mut c = Client::connect(port);
    c.send(raw);
    c.read_response(false).status
}

#[test]
fn limits_hold_exactly_at_their_boundary() {
    let s = start_with(demo_handler, |c| {
        c.max_request_line = 100;
        c.max_head_size = 400;
        c.max_header_count = 10;
        c.max_body_size = 50;
    });
    let port = s.port;
    // Request line: "GET /aaa HTTP/1.1" is 4 + path + 9 bytes (without CRLF).
    let line = |len: usize| format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(len - 4 - 9 - 1));
    assert_eq!(status_of(port, line(100).as_bytes()), 404);
    assert_eq!(status_of(port, line(101).as_bytes()), 414);

    let with_headers = |n: usize| {
        let mut r = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
        for i in 1..n {
            r.push_str(&format!("X-{i}: v\r\n"));
        }
        r + "\r\n"
    };
    assert_eq!(status_of(port, with_headers(10).as_bytes()), 200);
    assert_eq!(status_of(port, with_headers(11).as_bytes()), 431);

    let head_of = |total: usize| {
        let base = "GET / HTTP/1.1\r\nHost: t\r\nX: \r\n\r\n".len();
        format!("GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n", "p".repeat(total - base))
    };
    assert_eq!(status_of(port, head_of(400).as_bytes()), 200);
    assert_eq!(status_of(port, head_of(401).as_bytes()), 431);

    let body = |n: usize| format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n\r\n{}", "b".repeat(n));
    assert_eq!(status_of(port, body(50).as_bytes()), 200);
    assert_eq!(status_of(port, body(51).as_bytes()), 413);
    let chunked = |n: usize| {
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{}\r\n0\r\n\r\n",
            "c".repeat(n)
        )
    };
    assert_eq!(status_of(port, chunked(50).as_bytes()), 200);
    assert_eq!(status_of(port, chunked(51).as_bytes()), 413);
}

#[test]
fn accepting_pauses_at_the_connection_limit_and_resumes_below_it() {
    let s = start_with(demo_handler, |c| c.max_connections = 2);
    let mut a = s.connect();
    let mut b = s.connect();
    assert_eq!(a.get("/").status, 200);
    assert_eq!(b.get("/").status, 200);
    // The third waits in the listen backlog, unanswered.
    let mut third = s.connect();
    third.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    third.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 64];
    assert!(third.stream.read(&mut buf).is_err(), "answered beyond the limit");
    third.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    drop(a);
    assert_eq!(third.read_response(false).status, 200, "accepted once a connection closed");
    assert_eq!(b.get("/").status, 200);
}

#[test]
fn a_panicking_handler_costs_only_its_request() {
    let s = start(|req: &Request<'_>, res: &mut Response<'_>| {
        if req.path == b"/boom" {
            panic!("handler bug");
        }
        demo_handler(req, res);
    });
    let mut other = s.connect();
    assert_eq!(other.get("/").status, 200);
    let mut c = s.connect();
    c.send(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 500);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_by_server());
    assert_eq!(other.get("/").status, 200, "the worker lives on");
    assert_eq!(s.connect().get("/").status, 200);
}

#[test]
fn clients_that_reset_or_half_close_never_disturb_others() {
    let s = start_with(demo_handler, |c| c.workers = 1);
    let mut steady = s.connect();
    for round in 0..50 {
        // A reset in the middle of a head, of a body, and right after a request.
        let raw: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHo",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        ];
        let c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        (&c).write_all(raw[round % 3]).unwrap();
        // SO_LINGER 0 turns close into a reset.
        socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
        drop(c);
        // A half-close after a complete request still gets its answer.
        let mut h = s.connect();
        h.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        h.shutdown_write();
        assert_eq!(h.read_response(false).status, 200);
        assert_eq!(steady.get("/").status, 200);
    }
}
