//! What hostile clients cost the server's memory. Each server runs in a child
//! process of this test binary, so its resident memory is measured alone; each
//! attack's cost must stay within a generous bound that the unbounded
//! behaviour it guards against exceeds many times over.

mod util;

use std::io::{Read, Write};
use std::time::Duration;

use util::child::{is_child, peak_rss_kib, read_port, rss_kib, spawn, ChildGuard};
use util::*;
use warpcore::{Request, Response};

/// A 16,000-byte answer to every request, a request's body length to POSTs.
fn big_answer(req: &Request<'_>, res: &mut Response<'_>) {
    let text = [(&b"Content-Type"[..], &b"text/plain"[..])];
    let headers = text.iter().map(|(n, v)| (*n, *v));
    if req.method == b"POST" {
        let _ = res.respond(200, headers, req.body.len().to_string().as_bytes());
    } else {
        let _ = res.respond(200, headers, &[b'x'; 16_000]);
    }
}

/// Serves `big_answer` on one worker until stdin closes; `tune` names the
/// settings (see `child_settings`).
fn serve_until_stdin_closes(tune: impl FnOnce(&mut warpcore::Config)) {
    assert!(is_child(), "only runs as a child");
    let s = start_with(big_answer, |c| {
        c.workers = 1;
        c.max_connections = 4096;
        c.backlog = 2048;
        tune(c);
    });
    println!("PORT {}", s.port);
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

#[test]
#[ignore = "run by the tests below"]
fn server_child_default() {
    serve_until_stdin_closes(|_| {});
}

#[test]
#[ignore = "run by the tests below"]
fn server_child_largest_body() {
    serve_until_stdin_closes(|c| c.max_body_size = 1 << 40);
}

#[test]
#[ignore = "run by the tests below"]
fn server_child_deferred() {
    // Every answer from another thread, as thread pools and green threads
    // give them: requests behind a pending one are handled ahead (read-ahead).
    assert!(is_child(), "only runs as a child");
    let (tx, rx) = std::sync::mpsc::channel::<warpcore::Deferred>();
    std::thread::spawn(move || {
        let body = vec![b'x'; 256 * 1024];
        for mut d in rx {
            let text = [(&b"Content-Type"[..], &b"text/plain"[..])];
            let _ = d.respond_bytes(200, text.iter().map(|(n, v)| (*n, *v)), &body);
        }
    });
    let tx = std::sync::Mutex::new(tx);
    let s = start_with(
        move |_req: &Request<'_>, res: &mut Response<'_>| {
            if let Ok(d) = res.defer() {
                let _ = tx.lock().unwrap().send(d);
            }
        },
        |c| c.workers = 1,
    );
    println!("PORT {}", s.port);
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

#[test]
#[ignore = "run by the tests below"]
fn server_child_long_poll() {
    // A long poll: every POST is deferred and never answered (its handle is
    // kept); `GET /held` says how many are held.
    assert!(is_child(), "only runs as a child");
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::<warpcore::Deferred>::new()));
    let s = start_with(
        move |req: &Request<'_>, res: &mut Response<'_>| {
            if req.method == b"POST" {
                if let Ok(d) = res.defer() {
                    held.lock().unwrap().push(d);
                }
            } else {
                let n = held.lock().unwrap().len().to_string();
                let _ = res.respond(200, std::iter::empty(), n.as_bytes());
            }
        },
        |c| c.workers = 1,
    );
    println!("PORT {}", s.port);
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

struct ChildServer {
    guard: ChildGuard,
    port: u16,
}

impl ChildServer {
    fn start(name: &str) -> ChildServer {
        let mut guard = ChildGuard(spawn(name));
        let port = read_port(&mut guard.0);
        ChildServer { guard, port }
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.guard.0.id())
    }

    /// A warm baseline: a few requests answered, so that the worker's own
    /// buffers are counted before the attack.
    fn warm_baseline(&self) -> u64 {
        let mut c = Client::connect(self.port);
        for _ in 0..4 {
            assert_eq!(c.get("/").status, 200);
        }
        self.rss_kib()
    }

    /// The highest resident memory seen while watching for `window` — a
    /// negative check: the attack has had its bytes delivered already, so an
    /// unbounded server grows within milliseconds, far inside the window.
    fn peak_over(&self, window: Duration) -> u64 {
        peak_rss_kib(self.guard.0.id(), window)
    }

    /// The server still answers a fresh client's GET.
    fn still_answers_get(&self) {
        let mut c = Client::connect(self.port);
        assert_eq!(c.get("/").status, 200);
    }

    /// The server still answers a fresh client.
    fn still_answers(&self) {
        let mut c = Client::connect(self.port);
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok");
        let r = c.read_response(false);
        assert_eq!((r.status, r.text().as_str()), (200, "2"));
    }
}

/// `n` minimal pipelined requests (`GET / HTTP/1.1\nHost:\n\n`, 22 bytes each).
fn pipelined_gets(bytes: usize) -> Vec<u8> {
    let one = b"GET / HTTP/1.1\nHost:\n\n";
    one.iter().copied().cycle().take(bytes / one.len() * one.len()).collect()
}

/// Four clients each pipeline ~3,000 requests (64 KiB) and never read; returns
/// how much the server grew (KiB, its peak over 1.5 s) and the clients, kept open.
fn four_clients_pipeline_and_never_read(server: &ChildServer) -> (u64, Vec<Client>) {
    let before = server.warm_baseline();
    let attack = pipelined_gets(64 * 1024);
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect_with_rcvbuf(server.port, 4096)).collect();
    for c in &mut clients {
        c.stream.write_all(&attack).unwrap();
    }
    (server.peak_over(Duration::from_millis(1500)).saturating_sub(before), clients)
}

#[test]
fn pipelining_clients_that_never_read_cost_a_bounded_amount_each() {
    let server = ChildServer::start("server_child_default");
    let (grown, clients) = four_clients_pipeline_and_never_read(&server);
    // Each connection may hold one pass of input (64 KiB) and its pending
    // answers (64 KiB plus the one that crossed it); the kernel holds the rest.
    eprintln!("4 non-reading pipelining clients: +{grown} KiB");
    assert!(grown < 4 * 1024, "4 non-reading pipelining clients grew the server by {grown} KiB");
    server.still_answers();
    drop(clients);
}

/// Read-ahead (answers deferred to another thread) stops at the output bound
/// too: answers promoted to the output while the client reads nothing count
/// (they did not: 523 MiB for these four clients).
#[test]
fn pipelining_clients_that_never_read_deferred_answers_cost_a_bounded_amount_each() {
    let server = ChildServer::start("server_child_deferred");
    let (grown, clients) = four_clients_pipeline_and_never_read(&server);
    // Each connection may hold its unsent output (64 KiB plus the answer that
    // crossed it), the answers of up to `MAX_AHEAD` (16) requests handled
    // ahead — the 256 KiB each was already made when it was deferred — and a
    // pass of input: ~4.5 MiB. Answering every request sent (~3,000 each)
    // would hold ~750 MiB per client.
    eprintln!("4 non-reading pipelining clients, deferred answers: +{grown} KiB");
    assert!(grown < 24 * 1024, "4 non-reading pipelining clients of deferred answers grew the server by {grown} KiB");
    drop(clients);
}

#[test]
fn a_thousand_pipelining_clients_that_never_read_stay_within_the_bound() {
    let server = ChildServer::start("server_child_default");
    let before = server.warm_baseline();
    let attack = pipelined_gets(16 * 1024);
    let mut clients = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut c = Client::connect_with_rcvbuf(server.port, 4096);
        c.stream.write_all(&attack).unwrap();
        clients.push(c);
    }
    let grown = server.peak_over(Duration::from_millis(2000)).saturating_sub(before);
    let per_connection = grown / 1000;
    // The bound per connection (see `MAX_PENDING_OUTPUT`) plus its input and
    // bookkeeping; answering every request sent would cost ~11 MB each.
    eprintln!("1,000 non-reading pipelining clients: +{grown} KiB");
    assert!(
        per_connection < 160,
        "1,000 non-reading pipelining clients cost {per_connection} KiB each ({grown} KiB in all)"
    );
    server.still_answers();
    drop(clients);
}

#[test]
fn a_promised_body_costs_nothing_until_its_bytes_arrive() {
    let server = ChildServer::start("server_child_default");
    let before = server.warm_baseline();
    // 100 heads that promise 1 MiB bodies (the default limit) and send none.
    let mut clients: Vec<Client> = (0..100).map(|_| Client::connect(server.port)).collect();
    for c in &mut clients {
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n");
    }
    let grown = server.peak_over(Duration::from_millis(1000)).saturating_sub(before);
    eprintln!("100 promised 1 MiB bodies: +{grown} KiB");
    assert!(grown < 8 * 1024, "100 promised 1 MiB bodies grew the server by {grown} KiB");
    // A body that does arrive is still received whole.
    let mut c = &mut clients[0];
    c.send(&vec![b'b'; 1 << 20]);
    let r = c.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "1048576"));
    c = &mut clients[1];
    c.send(&vec![b'b'; 1000]);
    server.still_answers();
}

#[test]
fn a_body_promised_at_the_largest_limit_neither_aborts_nor_allocates_it() {
    let server = ChildServer::start("server_child_largest_body");
    let before = server.warm_baseline();
    let mut c = Client::connect(server.port);
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1099511627776\r\n\r\nsome");
    let grown = server.peak_over(Duration::from_millis(500)).saturating_sub(before);
    eprintln!("a 1 TiB promise: +{grown} KiB");
    assert!(grown < 1024, "a 1 TiB promise grew the server by {grown} KiB");
    server.still_answers();
    drop(c);
}

#[test]
fn idle_connections_give_back_a_chunked_upload_s_memory() {
    let server = ChildServer::start("server_child_default");
    let before = server.warm_baseline();
    // 60 connections each upload ~1 MiB chunked, get their answer, stay open.
    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(b"4000\r\n");
        body.extend_from_slice(&[b'c'; 0x4000]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut clients = Vec::new();
    for _ in 0..60 {
        let mut c = Client::connect(server.port);
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        c.send(&body);
        let r = c.read_response(false);
        assert_eq!((r.status, r.text().as_str()), (200, "1048576"));
        clients.push(c);
    }
    // Idle now: each holds its slot, not its upload (~1.2 MiB each before).
    let grown = server.rss_kib().saturating_sub(before);
    eprintln!("60 idle connections after chunked uploads: +{grown} KiB");
    assert!(grown < 16 * 1024, "60 idle connections after chunked uploads hold {grown} KiB");
    server.still_answers();
}

#[test]
fn a_trickled_body_costs_what_arrived_not_what_was_promised() {
    let server = ChildServer::start("server_child_default");
    let before = server.warm_baseline();
    // 100 heads promising 1 MiB, then their bodies one byte at a time, paced
    // so that the server reads each byte on its own.
    let mut clients: Vec<Client> = (0..100).map(|_| Client::connect(server.port)).collect();
    for c in &mut clients {
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n");
    }
    for _ in 0..12 {
        std::thread::sleep(Duration::from_millis(20));
        for c in &mut clients {
            c.send(b"b");
        }
    }
    let grown = server.peak_over(Duration::from_millis(500)).saturating_sub(before);
    eprintln!("100 trickled 1 MiB bodies, 12 bytes each so far: +{grown} KiB");
    assert!(grown < 8 * 1024, "100 trickled bodies grew the server by {grown} KiB");
    server.still_answers();
}

#[test]
#[ignore = "run by the tests below"]
fn server_child_proxy_required() {
    serve_until_stdin_closes(|c| {
        c.proxy_protocol.default = warpcore::ProxyProtocol::Required;
    });
}

#[test]
fn partial_proxy_headers_cost_what_arrived() {
    let server = ChildServer::start("server_child_proxy_required");
    let warm = {
        let mut c = Client::connect(server.port);
        c.send(b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response(false).status, 200);
        server.rss_kib()
    };
    // 200 v2 headers announcing 30,000 bytes (under the 32 KiB head limit),
    // 200 v1 headers of 100 bytes without their CRLF, 200 v2 headers
    // announcing 65,535 bytes (refused as soon as the length is read); then
    // a trickle.
    let mut v2_long = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    v2_long.extend_from_slice(&30000u16.to_be_bytes());
    let mut v2_huge = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    v2_huge.extend_from_slice(&65535u16.to_be_bytes());
    let v1_open = [b"PROXY UNKNOWN ".to_vec(), vec![b'a'; 86]].concat();
    let mut clients = Vec::new();
    for attack in [&v2_long, &v1_open, &v2_huge] {
        for _ in 0..200 {
            let mut c = Client::connect(server.port);
            c.send(attack);
            clients.push(c);
        }
    }
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(20));
        for c in clients.iter_mut().take(200) {
            let _ = c.stream.write_all(&[0u8; 16]);
        }
    }
    let grown = server.peak_over(Duration::from_millis(1000)).saturating_sub(warm);
    eprintln!("600 partial PROXY headers: +{grown} KiB");
    assert!(grown < 10 * 1024, "600 partial PROXY headers grew the server by {grown} KiB");
    // The huge ones were closed at once, with nothing sent.
    for c in clients.iter_mut().skip(400) {
        assert!(c.read_to_eof().is_empty());
    }
    let mut c = Client::connect(server.port);
    c.send(b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\nPOST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(c.read_response(false).text(), "2");
}

/// A request whose answer is deferred keeps its connection, not the buffer
/// its body arrived in: 40 long polls, each posted a body of almost 1 MiB
/// (read whole before the handler, the default `whole_body_max`), cost their
/// slots, not 40 MiB, while they wait.
#[test]
fn long_polls_do_not_keep_the_buffers_their_bodies_arrived_in() {
    let server = ChildServer::start("server_child_long_poll");
    let before = server.warm_baseline();
    let body = vec![b'p'; 1_000_000];
    let mut clients = Vec::new();
    for i in 1..=40 {
        let mut c = Client::connect(server.port);
        c.send(b"POST /poll HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
        c.send(&body);
        clients.push(c);
        // One at a time: a buffer given back serves the next upload.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut probe = Client::connect(server.port);
        while probe.get("/held").text() != i.to_string() {
            assert!(std::time::Instant::now() < deadline, "long poll {i} never reached the handler");
            std::thread::yield_now();
        }
    }
    let grown = server.rss_kib().saturating_sub(before);
    eprintln!("40 long polls with ~1 MiB bodies: +{grown} KiB");
    assert!(grown < 12 * 1024, "40 long polls with ~1 MiB bodies hold {grown} KiB");
    server.still_answers_get();
    drop(clients);
}
