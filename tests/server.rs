//! Server lifecycle and workers: start errors, port 0, several workers,
//! external workers run on the embedder's threads, graceful shutdown.

mod util;

use std::collections::HashSet;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use util::*;
use warpcore::{Config, ErrorKind, Request, Response, Server};

fn config(handler: impl warpcore::Handler) -> Config {
    Config { listen: "127.0.0.1:0".into(), workers: 1, handler: Some(Arc::new(handler)), ..Config::default() }
}

fn start_err(config: &Config) -> warpcore::Error {
    match Server::start(config) {
        Ok(s) => panic!("started on port {} but should not have", s.port()),
        Err(e) => e,
    }
}

#[test]
fn port_zero_gives_a_real_port() {
    let s = start(demo_handler);
    assert_ne!(s.port, 0);
    assert_eq!(s.server.port(), s.port);
    assert_eq!(s.connect().get("/").text(), "Hello, World!");
    // It is really taken.
    let err = std::net::TcpListener::bind(("127.0.0.1", s.port)).expect_err("the port is in use");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

#[test]
fn two_servers_on_port_zero_get_different_ports() {
    let a = start(demo_handler);
    let b = start(demo_handler);
    assert_ne!(a.port, b.port);
    assert_eq!(a.connect().get("/").status, 200);
    assert_eq!(b.connect().get("/").status, 200);
}

#[test]
fn port_in_use_is_address_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut c = config(demo_handler);
    c.listen = format!("127.0.0.1:{port}");
    let e = start_err(&c);
    assert_eq!(e.kind, ErrorKind::AddressInUse, "{e}");
    // Also when the other owner is one of ours (it sets SO_REUSEPORT too).
    let ours = start(demo_handler);
    c.listen = ours.addr();
    c.workers = 2;
    assert_eq!(start_err(&c).kind, ErrorKind::AddressInUse);
    assert_eq!(ours.connect().get("/").status, 200, "the first server is unharmed");
}

#[test]
fn bad_addresses_are_invalid_address() {
    for listen in
        ["", "nonsense", "127.0.0.1", "127.0.0.1:", ":8080", "127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:port"]
    {
        let mut c = config(demo_handler);
        c.listen = listen.into();
        let e = start_err(&c);
        assert_eq!(e.kind, ErrorKind::InvalidAddress, "{listen:?}: {e}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn missing_handler_is_invalid_argument() {
    let c = Config { listen: "127.0.0.1:0".into(), ..Config::default() };
    let e = start_err(&c);
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("handler"), "{e}");
}

/// A setting's name and a change that makes it invalid.
type BadSetting = (&'static str, Box<dyn Fn(&mut Config)>);

#[test]
fn invalid_settings_are_invalid_argument() {
    let cases: Vec<BadSetting> = vec![
        ("workers", Box::new(|c| c.workers = 5000)),
        ("max_header_count", Box::new(|c| c.max_header_count = 0)),
        ("max_header_count", Box::new(|c| c.max_header_count = 101)),
        ("max_request_line", Box::new(|c| c.max_request_line = 8)),
        ("max_head_size", Box::new(|c| c.max_head_size = 2 << 20)),
        ("server_name", Box::new(|c| c.server_name = b"a\r\nX: y".to_vec())),
        ("idle_timeout", Box::new(|c| c.idle_timeout = Duration::from_millis(10))),
        ("header_timeout", Box::new(|c| c.header_timeout = Duration::from_secs(86_401))),
        ("backlog", Box::new(|c| c.backlog = 0)),
    ];
    for (name, tune) in cases {
        let mut c = config(demo_handler);
        tune(&mut c);
        let e = start_err(&c);
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{name}: {e}");
        assert!(e.message.contains(name), "the message names {name}: {e}");
    }
}

/// A handler answering with the index of its worker.
fn worker_index_handler(req: &Request<'_>, res: &mut Response<'_>) {
    let _ = res.respond(200, std::iter::empty(), req.worker_index.to_string().as_bytes());
}

#[test]
fn several_workers_all_serve() {
    let s = start_with(worker_index_handler, |c| c.workers = 4);
    assert_eq!(s.server.workers(), 4);
    // Many connections open at once, each answered.
    let mut clients: Vec<Client> = (0..200).map(|_| s.connect()).collect();
    for c in &mut clients {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    let mut seen = HashSet::new();
    for c in &mut clients {
        let r = c.read_response(false);
        assert_eq!(r.status, 200);
        let index: usize = r.text().parse().unwrap();
        assert!(index < 4);
        seen.insert(index);
    }
    // SO_REUSEPORT spreads connections by a hash of their addresses: with 200
    // source ports, all landing on one of four workers has probability 4^-199.
    assert!(seen.len() > 1, "200 connections all went to worker(s) {seen:?}");
}

#[test]
fn workers_zero_means_one_per_core() {
    let s = start_with(demo_handler, |c| c.workers = 0);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(s.server.workers(), cores);
    assert_eq!(s.connect().get("/").status, 200);
}

#[test]
fn external_workers_run_on_the_callers_threads() {
    let handler_threads: Arc<Mutex<HashSet<ThreadId>>> = Arc::default();
    let record = handler_threads.clone();
    let handler = move |req: &Request<'_>, res: &mut Response<'_>| {
        record.lock().unwrap().insert(std::thread::current().id());
        let _ = res.respond(200, std::iter::empty(), req.worker_index.to_string().as_bytes());
    };
    let mut c = config(handler);
    c.workers = 3;
    c.external_workers = true;
    let server = Arc::new(Server::start(&c).expect("start"));
    assert_eq!(server.workers(), 3);
    let port = server.port();

    let (started_tx, started_rx) = mpsc::channel();
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let server = server.clone();
            let started = started_tx.clone();
            std::thread::spawn(move || {
                started.send(std::thread::current().id()).unwrap();
                server.run_worker(i)
            })
        })
        .collect();
    let ours: HashSet<ThreadId> = (0..3).map(|_| started_rx.recv_timeout(IO_TIMEOUT).unwrap()).collect();

    let mut clients: Vec<Client> = (0..60).map(|_| Client::connect(port)).collect();
    let mut indices = HashSet::new();
    for c in &mut clients {
        let r = c.get("/");
        assert_eq!(r.status, 200);
        indices.insert(r.text().parse::<usize>().unwrap());
    }
    let seen = handler_threads.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen.is_subset(&ours), "handlers ran on threads we did not start");
    assert!(!seen.contains(&std::thread::current().id()));
    assert!(indices.iter().all(|&i| i < 3));

    // Each index runs once; indices out of range do not exist.
    for index in [0, 1, 2, 3, 1000] {
        let e = server.run_worker(index).expect_err("cannot run");
        assert_eq!(e.kind, ErrorKind::InvalidState, "run_worker({index}): {e}");
    }

    server.shutdown(Duration::from_secs(2));
    for t in threads {
        assert!(t.join().unwrap().is_ok(), "run_worker returns Ok after shutdown");
    }
    assert!(server.is_stopped());
    let e = server.run_worker(0).expect_err("stopped");
    assert!(matches!(e.kind, ErrorKind::ShuttingDown | ErrorKind::InvalidState), "{e:?}");
}

#[test]
fn run_worker_on_a_server_with_its_own_threads_is_invalid_state() {
    let s = start_with(demo_handler, |c| c.workers = 2);
    for index in [0, 1, 2] {
        assert_eq!(s.server.run_worker(index).unwrap_err().kind, ErrorKind::InvalidState);
    }
    assert_eq!(s.connect().get("/").status, 200);
}

#[test]
fn external_workers_never_run_still_shut_down() {
    let mut c = config(demo_handler);
    c.workers = 2;
    c.external_workers = true;
    let server = Server::start(&c).unwrap();
    let t = Instant::now();
    server.shutdown(Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(server.is_stopped());
    server.wait();
}

/// A server whose handler, on `/slow`, says it started and then works on
/// until the shutdown has begun (up to `IO_TIMEOUT`): the request is surely in
/// flight when the shutdown starts, however the threads are scheduled. The
/// second flag says whether the handler saw the shutdown begin.
fn slow_server(workers: usize) -> (Arc<Server>, u16, Arc<AtomicBool>, Arc<AtomicBool>) {
    let entered = Arc::new(AtomicBool::new(false));
    let saw_shutdown = Arc::new(AtomicBool::new(false));
    let this: Arc<OnceLock<Weak<Server>>> = Arc::default();
    let (flag, saw, slot) = (entered.clone(), saw_shutdown.clone(), this.clone());
    let handler = move |req: &Request<'_>, res: &mut Response<'_>| {
        if req.path == b"/slow" {
            flag.store(true, Ordering::SeqCst);
            if let Some(server) = slot.get().and_then(Weak::upgrade) {
                // On a server with its own threads, run_worker is refused with
                // ShuttingDown once the shutdown began (InvalidState before):
                // a probe that changes nothing.
                let began = || matches!(server.run_worker(0), Err(e) if e.kind == ErrorKind::ShuttingDown);
                saw.store(wait_until(IO_TIMEOUT, began), Ordering::SeqCst);
            }
        }
        let _ = res.respond(200, std::iter::empty(), b"finished");
    };
    let mut c = config(handler);
    c.workers = workers;
    let server = Arc::new(Server::start(&c).unwrap());
    this.set(Arc::downgrade(&server)).unwrap();
    let port = server.port();
    (server, port, entered, saw_shutdown)
}

/// Waits until the server has read `bytes` bytes from its clients in all.
fn read_by_server(server: &Server, bytes: usize) -> bool {
    wait_until(IO_TIMEOUT, || server.stats().bytes_in >= bytes as u64)
}

#[test]
fn shutdown_lets_a_request_in_flight_finish() {
    let (server, port, entered, saw_shutdown) = slow_server(1);
    let mut c = Client::connect(port);
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(wait_until(IO_TIMEOUT, || entered.load(Ordering::SeqCst)));
    let stopper = {
        let server = server.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            server.shutdown(Duration::from_secs(5));
            t.elapsed()
        })
    };
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "finished");
    assert_eq!(r.header("connection"), Some("close"), "answered during shutdown: the connection closes");
    assert!(c.closed_by_server());
    let took = stopper.join().unwrap();
    assert!(saw_shutdown.load(Ordering::SeqCst), "the handler was still running when the shutdown began");
    assert!(took < Duration::from_millis(2500), "shutdown waited for the request, not the whole grace: {took:?}");
    assert!(server.is_stopped());
}

#[test]
fn shutdown_lets_pipelined_requests_already_received_finish() {
    let (server, port, entered, saw_shutdown) = slow_server(1);
    let mut c = Client::connect(port);
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(wait_until(IO_TIMEOUT, || entered.load(Ordering::SeqCst)));
    let stopper = {
        let server = server.clone();
        std::thread::spawn(move || server.shutdown(Duration::from_secs(2)))
    };
    // The slow one is answered in full; whatever follows it, the stream is
    // well-formed and ends with a close.
    let (replies, rest) = parse_responses(&c.read_to_eof(), &[]);
    assert!(!replies.is_empty());
    assert_eq!(replies[0].text(), "finished");
    assert_eq!(replies.last().unwrap().header("connection"), Some("close"));
    assert!(rest.is_empty());
    stopper.join().unwrap();
    assert!(saw_shutdown.load(Ordering::SeqCst), "the handler was still running when the shutdown began");
}

#[test]
fn shutdown_waits_for_a_body_still_arriving() {
    let s = start(demo_handler);
    let server = &s.server;
    let mut c = s.connect();
    let part: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234";
    c.send(part);
    assert!(read_by_server(server, part.len()), "the server read the first part");
    std::thread::scope(|scope| {
        let stopper = scope.spawn(|| server.shutdown(Duration::from_secs(3)));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!stopper.is_finished(), "shutdown waits for the request being received");
        c.send(b"56789");
        let r = c.read_response(false);
        assert_eq!(r.text(), "0123456789");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closed_by_server());
        stopper.join().unwrap();
    });
}

#[test]
fn shutdown_cuts_what_is_left_at_the_deadline() {
    let s = start(demo_handler);
    let mut c = s.connect();
    // A body that never completes.
    let part: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234";
    c.send(part);
    assert!(read_by_server(&s.server, part.len()), "the server read the first part");
    let t = Instant::now();
    s.server.shutdown(Duration::from_millis(200));
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(150), "{took:?}");
    assert!(took < Duration::from_millis(2500), "cut near the deadline, not later: {took:?}");
    assert!(c.closed_by_server());
    assert!(c.leftover().is_empty(), "no response to the unfinished request");
}

#[test]
fn shutdown_closes_idle_keep_alive_connections_within_a_second() {
    let s = start_with(demo_handler, |c| c.workers = 2);
    let mut idle: Vec<Client> = (0..8).map(|_| s.connect()).collect();
    for c in &mut idle {
        assert_eq!(c.get("/").status, 200);
    }
    // A connection that never sent anything, and one with half a head.
    let mut silent = s.connect();
    let mut half = s.connect();
    half.send(b"GET / HTTP/1.1\r\nHo");
    let sent = 8 * "GET / HTTP/1.1\r\nHost: t\r\n\r\n".len() + "GET / HTTP/1.1\r\nHo".len();
    assert!(read_by_server(&s.server, sent), "the server read the half head");
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().connections_accepted == 10), "the server accepted all ten");

    let t = Instant::now();
    s.server.shutdown(Duration::from_secs(10));
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "idle connections do not hold shutdown to its grace: {took:?}");
    for c in idle.iter_mut().chain([&mut silent, &mut half]) {
        assert!(c.closed_by_server(), "EOF at once");
        assert!(c.leftover().is_empty());
    }
}

#[test]
fn wait_returns_after_shutdown_from_another_thread() {
    let s = start_with(demo_handler, |c| c.workers = 2);
    let server = &s.server;
    assert!(!server.is_stopped());
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel();
        scope.spawn(move || {
            server.wait();
            done_tx.send(Instant::now()).unwrap();
        });
        // wait() does not return on its own.
        assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err());
        let stopper = scope.spawn(|| server.shutdown(Duration::from_secs(1)));
        let returned = done_rx.recv_timeout(IO_TIMEOUT).expect("wait() returns after shutdown");
        stopper.join().unwrap();
        assert!(returned.elapsed() < IO_TIMEOUT);
    });
    assert!(server.is_stopped());
    server.wait();
}

#[test]
fn connections_after_shutdown_are_refused() {
    let s = start_with(demo_handler, |c| c.workers = 3);
    let port = s.port;
    assert_eq!(s.connect().get("/").status, 200);
    s.server.shutdown(Duration::from_secs(1));
    for _ in 0..20 {
        match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), IO_TIMEOUT) {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
            Ok(_) => panic!("a connection after shutdown was accepted by the kernel"),
        }
    }
}

#[test]
fn shutdown_is_idempotent_and_drop_after_it_is_fine() {
    let s = start_with(demo_handler, |c| c.workers = 2);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| s.server.shutdown(Duration::from_secs(1)));
        }
    });
    s.server.shutdown(Duration::ZERO);
    assert!(s.server.is_stopped());
    drop(s);
}

#[test]
fn dropping_a_server_stops_it() {
    let s = start(demo_handler);
    let port = s.port;
    let mut c = s.connect();
    assert_eq!(c.get("/").status, 200);
    drop(s);
    assert!(c.closed_by_server());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
