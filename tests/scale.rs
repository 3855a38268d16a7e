//! 10,000 idle keep-alive connections held while other connections are served,
//! the memory each idle connection costs the server, and 1,000 concurrent
//! connections × 100 requests with no error. The server runs in a child
//! process, so that each side stays within the descriptor limit and the
//! server's memory is measured alone.

mod util;

use std::io::Read;
use std::time::{Duration, Instant};

use util::child::{is_child, read_port, rss_kib, spawn, ChildGuard};
use util::*;

const IDLE: usize = 10_000;

/// The child: a one-worker server on a port it prints, until stdin closes.
#[test]
#[ignore = "run by scale_against_a_child_server"]
fn scale_server_child() {
    assert!(is_child(), "only runs as a child");
    let s = start_with(demo_handler, |c| {
        c.workers = 1;
        c.max_connections = 19_000;
        c.backlog = 4096;
    });
    println!("PORT {}", s.port);
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap_or(u64::MAX)
}

#[test]
fn scale_against_a_child_server() {
    let limit = open_files_limit();
    assert!(limit >= 12_000, "this test needs 12,000 descriptors (ulimit -n is {limit})");
    let mut guard = ChildGuard(spawn("scale_server_child"));
    let pid = guard.0.id();
    let port = read_port(&mut guard.0);
    let started = Instant::now();

    // Warm up the server's own structures before measuring.
    let mut warm: Vec<Client> = (0..200).map(|_| Client::connect(port)).collect();
    for c in &mut warm {
        assert_eq!(c.get("/").status, 200);
    }
    drop(warm);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(pid);

    // 10,000 connections, each after one completed request, left idle.
    let mut idle: Vec<Client> = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let mut c = Client::connect(port);
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        idle.push(c);
    }
    for c in &mut idle {
        assert_eq!(c.read_response(false).status, 200);
    }
    std::thread::sleep(Duration::from_millis(500));
    let with_idle = rss_kib(pid);
    let per_conn = with_idle.saturating_sub(before) as f64 / IDLE as f64;
    eprintln!("scale: {per_conn:.3} KiB per idle connection (server RSS {before} -> {with_idle} KiB)");
    assert!(per_conn < 1.0, "{per_conn:.3} KiB per idle connection");

    // Other connections are still answered while the idle ones are held.
    let mut busy = Client::connect(port);
    for _ in 0..100 {
        assert_eq!(busy.get("/").text(), "Hello, World!");
    }
    drop(busy);

    // 1,000 concurrent connections × 100 requests, spread over 20 threads.
    let threads: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let mut conns: Vec<Client> = (0..50).map(|_| Client::connect(port)).collect();
                let mut ok = 0;
                for _ in 0..100 {
                    for c in &mut conns {
                        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
                    }
                    for c in &mut conns {
                        let r = c.read_response(false);
                        if r.status == 200 && r.body == b"Hello, World!" {
                            ok += 1;
                        }
                    }
                }
                ok
            })
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(ok, 1000 * 100, "every request answered correctly");
    // The idle ones are all still open and still work.
    for c in idle.iter_mut().step_by(500) {
        assert_eq!(c.get("/").status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(120));
    drop(idle);
    drop(guard.0.stdin.take());
    let status = guard.0.wait().unwrap();
    assert!(status.success(), "the server child failed: {status}");
}
