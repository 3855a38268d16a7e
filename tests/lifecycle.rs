//! Graceful shutdown, live reload, stats and the access log over real sockets.

mod util;

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use util::*;
use warpcore::{AccessLogTarget, Config, Request, Response, Server};

fn text<'a>() -> std::iter::Once<(&'a [u8], &'a [u8])> {
    std::iter::once((&b"Content-Type"[..], &b"text/plain"[..]))
}

/// A handler that answers with its own name, so a test can tell which one ran.
fn named(name: &'static str) -> impl warpcore::Handler {
    move |_req: &Request<'_>, res: &mut Response<'_>| {
        let _ = res.respond(200, text(), name.as_bytes());
    }
}

#[test]
fn shutdown_closes_idle_connections_soon_and_finishes_work_in_flight() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    // The work in flight finishes only once the idle connection was seen
    // closed: it is surely still in flight when the shutdown begins, and the
    // idle connection is surely closed before it, however slow the machine.
    let idle_closed = Arc::new(Gate::default());
    let gate = idle_closed.clone();
    let s = start(move |req: &Request<'_>, res: &mut Response<'_>| match req.path {
        b"/slow" => {
            let mut d = res.defer().unwrap();
            let _ = tx.lock().unwrap().send(());
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.wait(IO_TIMEOUT);
                let _ = d.respond(200, std::iter::empty(), warpcore::Payload::from(b"finished".to_vec()));
            });
        }
        b"/stream" => {
            let mut d = res.defer().unwrap();
            let _ = tx.lock().unwrap().send(());
            let gate = gate.clone();
            std::thread::spawn(move || {
                d.start(200, std::iter::empty(), None).unwrap();
                for i in 0..5 {
                    if i == 4 {
                        gate.wait(IO_TIMEOUT);
                    }
                    std::thread::sleep(Duration::from_millis(60));
                    d.write(warpcore::Payload::from(b"tick\n".to_vec())).unwrap();
                }
                d.end().unwrap();
            });
        }
        _ => demo_handler(req, res),
    });
    let mut idle = s.connect();
    assert_eq!(idle.get("/").status, 200);
    let mut slow = s.connect();
    slow.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut streaming = s.connect();
    streaming.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();

    let started = Instant::now();
    let server = Arc::new(s);
    let stopper = {
        let server = server.clone();
        std::thread::spawn(move || server.server.shutdown(Duration::from_secs(5)))
    };
    assert!(idle.closed_by_server(), "the idle keep-alive connection is closed");
    let took = started.elapsed();
    idle_closed.open();
    // Closed while the work was in flight, well before the 5 s deadline.
    assert!(took < Duration::from_millis(2500), "closed at once, not at the deadline: {took:?}");

    let r = slow.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "finished"));
    assert_eq!(r.header("connection"), Some("close"));
    // The stream's head may have left before the shutdown began: it is not
    // required to say close, but the connection must close after the stream.
    let r = streaming.read_response(false);
    assert_eq!(r.text(), "tick\n".repeat(5));
    assert!(streaming.closed_by_server());
    let report = stopper.join().unwrap();
    assert_eq!(report.requests_finished, 2);
    assert_eq!(report.connections_cut, 0);
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err(), "no longer accepting");
}

#[test]
fn shutdown_cuts_what_remains_at_the_deadline() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let s = start(move |_req: &Request<'_>, res: &mut Response<'_>| {
        let _ = tx.lock().unwrap().send(res.defer().unwrap());
    });
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let _held = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let started = Instant::now();
    let report = s.server.shutdown(Duration::from_millis(300));
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(report.connections_cut, 1);
    assert!(c.closed_by_server());
}

#[test]
fn shutdown_under_load_never_cuts_a_response_short() {
    let s = start_with(demo_handler, |c| c.workers = 2);
    let port = s.port;
    let stop = Arc::new(AtomicBool::new(false));
    let complete = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stop, complete) = (stop.clone(), complete.clone());
            std::thread::spawn(move || {
                // Keep sending pipelined pairs until the server goes away; every
                // byte received must parse as whole responses.
                while !stop.load(Ordering::SeqCst) {
                    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return };
                    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut sent = 0;
                    let mut all = Vec::new();
                    for _ in 0..50 {
                        use std::io::Write;
                        if conn.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc").is_err() {
                            break;
                        }
                        sent += 2;
                    }
                    let _ = conn.shutdown(std::net::Shutdown::Write);
                    let _ = conn.read_to_end(&mut all);
                    let answered = check_whole_responses(&all);
                    assert!(answered <= sent);
                    complete.fetch_add(answered, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // Shut down under load: once answers are arriving, not after a guess at
    // how long the clients take to start.
    let answering = wait_until(IO_TIMEOUT, || complete.load(Ordering::SeqCst) > 0);
    assert!(answering, "no client was answered before the shutdown");
    let report = s.server.shutdown(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    assert!(complete.load(Ordering::SeqCst) > 0);
    assert_eq!(report.connections_cut, 0);
}

/// Parses `bytes` as a sequence of complete responses; panics on a partial one.
fn check_whole_responses(mut bytes: &[u8]) -> usize {
    let mut n = 0;
    while !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(bytes) {
            Ok(httparse::Status::Complete(h)) => h,
            other => panic!("a response was cut short: {other:?} in {:?}", String::from_utf8_lossy(bytes)),
        };
        let len: usize = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .expect("content-length");
        assert!(bytes.len() >= head + len, "a body was cut short");
        bytes = &bytes[head + len..];
        n += 1;
    }
    n
}

#[test]
fn reload_swaps_the_handler_for_requests_read_afterwards() {
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        workers: 2,
        handler: Some(Arc::new(named("gen-0"))),
        ..Config::default()
    };
    let server = Arc::new(Server::start(&config).unwrap());
    let port = server.port();
    // Every request is answered by a generation between `lower` (reload had
    // returned before the request was sent) and `upper` (reload had begun
    // before the answer arrived).
    let lower = Arc::new(AtomicUsize::new(0));
    let upper = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (lower, upper, stop, failures) = (lower.clone(), upper.clone(), stop.clone(), failures.clone());
            let served = served.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut count = 0;
                while !stop.load(Ordering::SeqCst) {
                    let floor = lower.load(Ordering::SeqCst);
                    let r = c.get("/");
                    let got: usize = r.text().trim_start_matches("gen-").parse().unwrap_or(usize::MAX);
                    let ceiling = upper.load(Ordering::SeqCst);
                    if r.status != 200 || got < floor || got > ceiling {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    served.fetch_add(1, Ordering::SeqCst);
                    count += 1;
                }
                count
            })
        })
        .collect();
    for g in 1..=100 {
        config.handler = Some(Arc::new(named(Box::leak(format!("gen-{g}").into_boxed_str()))));
        upper.store(g, Ordering::SeqCst);
        server.reload(&config).unwrap();
        lower.store(g, Ordering::SeqCst);
        // Requests are served between reloads: wait for the next answer
        // instead of sleeping and hoping the clients got a turn.
        let before = served.load(Ordering::SeqCst);
        assert!(wait_until(IO_TIMEOUT, || served.load(Ordering::SeqCst) > before), "no answer after reload {g}");
    }
    stop.store(true, Ordering::SeqCst);
    let total: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(total > 100, "requests were served during the reloads ({total})");
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    let mut c = Client::connect(port);
    assert_eq!(c.get("/").text(), "gen-100");
}

/// What a reloading handler needs: the server and its own handler (weakly,
/// so nothing keeps itself alive), and where it leaves the connection it opened.
#[derive(Default)]
struct ReloadSlot {
    server: std::sync::OnceLock<(std::sync::Weak<Server>, std::sync::Weak<dyn warpcore::Handler>)>,
    opened: Mutex<Option<Client>>,
}

/// A handler reloads, then (still inside the handler, so surely after the
/// reload returned) opens a connection and sends a request on it. The worker
/// accepts that connection right after answering, before it reads its own
/// wake-up; the request must still get the new settings. Same for the next
/// request on the reloading connection.
#[test]
fn a_reload_from_a_handler_applies_to_requests_its_own_worker_reads_next() {
    let slot: Arc<ReloadSlot> = Arc::default();
    let handler: Arc<dyn warpcore::Handler> = {
        let slot = slot.clone();
        Arc::new(move |req: &Request<'_>, res: &mut Response<'_>| {
            if let Some(name) = req.path.strip_prefix(b"/reload/") {
                let (server, handler) = slot.server.get().unwrap();
                let server = server.upgrade().unwrap();
                let config = Config {
                    listen: "127.0.0.1:0".into(),
                    workers: 1,
                    server_name: name.to_vec(),
                    handler: handler.upgrade(),
                    ..Config::default()
                };
                server.reload(&config).unwrap();
                let mut opened = Client::connect(server.port());
                opened.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
                *slot.opened.lock().unwrap() = Some(opened);
            }
            let _ = res.respond(200, text(), b"ok");
        })
    };
    let config =
        Config { listen: "127.0.0.1:0".into(), workers: 1, handler: Some(handler.clone()), ..Config::default() };
    let server = Arc::new(Server::start(&config).unwrap());
    assert!(slot.server.set((Arc::downgrade(&server), Arc::downgrade(&handler))).is_ok());
    let mut c = Client::connect(server.port());
    for round in 0..50 {
        let name = format!("gen-{round}");
        // A new connection each round whose request arrives with it: the
        // worker handles it from its accept loop.
        let mut reloading = Client::connect(server.port());
        reloading.send(format!("GET /reload/{name} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(reloading.read_response(false).status, 200);
        let mut opened = slot.opened.lock().unwrap().take().unwrap();
        assert_eq!(opened.read_response(false).header("server"), Some(name.as_str()), "round {round}, opened inside");
        assert_eq!(reloading.get("/").header("server"), Some(name.as_str()), "round {round}, same connection");
        assert_eq!(c.get("/").header("server"), Some(name.as_str()), "round {round}, an older connection");
    }
    drop(c);
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn reload_refuses_a_new_worker_count_and_moves_listeners() {
    let s = start(demo_handler);
    let mut config =
        Config { listen: "127.0.0.1:0".into(), workers: 1, handler: Some(Arc::new(demo_handler)), ..Config::default() };
    config.workers = 3;
    let e = s.server.reload(&config).unwrap_err();
    assert!(e.message.contains("worker count"), "{e}");
    config.workers = 1;
    // An address that cannot be bound fails the reload and changes nothing.
    config.listen = "192.0.2.1:1".into();
    assert!(s.server.reload(&config).is_err());
    assert_eq!(s.server.port(), s.port);
    // Port 0 again: the same listener, the same port.
    config.listen = "127.0.0.1:0".into();
    config.server_name = b"renamed".to_vec();
    s.server.reload(&config).unwrap();
    assert_eq!(s.server.port(), s.port);
    assert_eq!(s.connect().get("/").header("server"), Some("renamed"));
}

#[test]
fn stats_add_up_with_what_was_sent() {
    let s = start(demo_handler);
    let mut c = s.connect();
    for _ in 0..10 {
        assert_eq!(c.get("/").status, 200);
    }
    assert_eq!(c.get("/missing").status, 404);
    let mut bad = s.connect();
    bad.send(b"BROKEN\r\n\r\n");
    assert!(bad.closed_by_server());
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let st = s.server.stats();
        if st.connections_active == 0 || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(stats.connections_accepted, 2);
    assert_eq!(stats.connections_active, 0);
    assert_eq!(stats.requests, 12);
    assert_eq!(stats.responses, [0, 10, 0, 2, 0]);
    assert_eq!(stats.parse_errors, 1);
    let request_bytes = 10 * "GET / HTTP/1.1\r\nHost: t\r\n\r\n".len()
        + "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n".len()
        + "BROKEN\r\n\r\n".len();
    assert_eq!(stats.bytes_in, request_bytes as u64);
    assert!(stats.bytes_out > 10 * 13);
}

#[test]
fn answers_written_inside_the_handler_are_counted_before_the_client_has_them() {
    // Large bodies leave from inside the handler call (writev, a stream's
    // data): the counters must show them by the time the client has them, even
    // while the handler has not returned yet (it sleeps after writing here).
    let big = vec![b'x'; 64 * 1024];
    let s = start(move |req: &warpcore::Request<'_>, res: &mut warpcore::Response<'_>| {
        let _ = match req.path {
            b"/stream" => res.start(201, std::iter::empty(), Some(big.len() as u64)).and_then(|_| res.write(&big)),
            _ => res.respond(200, std::iter::empty(), &big),
        };
        std::thread::sleep(Duration::from_millis(300));
        if req.path == b"/stream" {
            let _ = res.end();
        }
    });
    let mut c = s.connect();
    for (i, path) in ["/", "/stream"].into_iter().enumerate() {
        let r = c.get(path);
        assert_eq!(r.body.len(), 64 * 1024);
        let st = s.server.stats();
        assert_eq!(st.requests, i as u64 + 1, "{path}: the request is counted before its answer was read");
        assert_eq!(st.responses[1], i as u64 + 1, "{path}: the answer is counted before it was read");
    }
}

#[test]
fn access_log_lines_parse_back_and_rotate() {
    let dir = std::env::temp_dir().join(format!("warpcore-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let s = start_with(demo_handler, |c| c.access_log = Some(AccessLogTarget::File(path.clone())));
    let mut c = s.connect();
    c.send(b"GET /a?x=1 HTTP/1.1\r\nHost: t\r\nReferer: http://r/\r\nUser-Agent: test \"agent\"\r\n\r\n");
    assert_eq!(c.read_response(false).status, 404);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.read_response(false).text(), "hello");
    let lines = wait_for_lines(&path, 2);
    let re_head = |l: &str| l.starts_with("127.0.0.1 - - [") && l.contains(" +0000] \"");
    assert!(re_head(&lines[0]), "{}", lines[0]);
    assert!(lines[0].ends_with("\"GET /a?x=1 HTTP/1.1\" 404 10 \"http://r/\" \"test \\\"agent\\\"\""), "{}", lines[0]);
    assert!(lines[1].ends_with("\"POST /echo HTTP/1.1\" 200 5 \"-\" \"-\""), "{}", lines[1]);

    // Rotation: move the file away, reopen, and new lines go to a fresh file.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    s.server.reopen_logs().unwrap();
    assert_eq!(c.get("/").status, 200);
    let fresh = wait_for_lines(&path, 1);
    assert!(fresh[0].contains("\"GET / HTTP/1.1\" 200 13"), "{}", fresh[0]);
    assert_eq!(std::fs::read_to_string(&rotated).unwrap().lines().count(), 2);
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "the access log has {} lines, expected {n}", lines.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}
