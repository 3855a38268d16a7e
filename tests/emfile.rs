//! Running out of file descriptors: accept fails with EMFILE, the worker does
//! not spin, existing connections go on, and accepting resumes once
//! descriptors free up. The server runs in a child process with a low limit.

mod util;

use std::io::Read;
use std::time::{Duration, Instant};

use util::child::{is_child, read_port, spawn_limited, ChildGuard};
use util::*;

/// The child: a server on a port it prints, until stdin closes.
#[test]
#[ignore = "run by accept_survives_running_out_of_descriptors in a limited child"]
fn emfile_server_child() {
    assert!(is_child(), "only runs as a child");
    let s = start(demo_handler);
    println!("PORT {}", s.port);
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn accept_survives_running_out_of_descriptors() {
    let mut guard = ChildGuard(spawn_limited("emfile_server_child", 40));
    let pid = guard.0.id();
    let port = read_port(&mut guard.0);
    let mut first = Client::connect(port);
    assert_eq!(first.get("/").status, 200);

    // Far more connections than the child has descriptors for.
    let mut extra: Vec<Client> = (0..60).map(|_| Client::connect(port)).collect();
    std::thread::sleep(Duration::from_millis(500));

    // No spinning: the child uses little CPU while accept keeps failing.
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    assert!(used < 50, "the child used {used} ticks in 2 s while out of descriptors");

    assert_eq!(first.get("/").status, 200, "existing connections are still served");

    // Free descriptors: the last connection, still in the backlog, is served.
    let mut last = extra.pop().unwrap();
    extra.truncate(10);
    let started = Instant::now();
    last.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(last.read_response(false).status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));

    drop(guard.0.stdin.take());
    let status = guard.0.wait().unwrap();
    assert!(status.success(), "child failed: {status}");
}
