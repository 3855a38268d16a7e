//! What hostile WebSocket clients cost the server's memory, measured on the
//! C demo's `/ws` echo running alone in a child process (one worker), its
//! resident memory read from /proc. Each attack's cost must stay within a
//! generous bound that the unbounded behaviour it guards against exceeds many
//! times over; the figures are printed (`--nocapture`).

mod util;

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use util::ws::*;
use util::Client;

/// `field` (VmRSS, VmSize, RssAnon…) of process `pid`, KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is alive");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in /proc/PID/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The demo after a few echoes of every size class, so that its worker's
/// own buffers are counted before the attack.
fn warm_demo() -> DemoProcess {
    let demo = DemoProcess::start(1);
    let mut c = WsClient::connect(demo.port);
    for len in [10, 1000, 70_000] {
        let payload = vec![b'w'; len];
        c.send_message(BINARY, &payload);
        c.expect_message(BINARY, &payload);
    }
    c.send_close(1000, b"");
    c.expect_close(Some(1000));
    demo
}

/// `n` WebSockets on `/ws`: all handshakes written first, then the 101s read.
fn open_websockets(port: u16, n: usize) -> Vec<WsClient> {
    let mut clients: Vec<WsClient> = (0..n).map(|_| WsClient::tcp(port)).collect();
    let request = handshake_request("/ws", RFC_KEY, "");
    for c in &mut clients {
        c.send(request.as_bytes());
    }
    for c in &mut clients {
        assert_eq!(c.read_head().status, 101);
    }
    clients
}

/// The server still echoes on a fresh WebSocket.
fn still_echoes(demo: &DemoProcess) {
    let mut c = WsClient::connect(demo.port);
    c.send_message(TEXT, b"still here");
    c.expect_message(TEXT, b"still here");
}

#[test]
fn frame_heads_promising_a_mebibyte_cost_what_arrived_not_what_was_promised() {
    const N: usize = 200;
    let demo = warm_demo();
    let pid = demo.child.id();
    let mut clients = open_websockets(demo.port, N);
    // Every connection is open and idle: what follows is the promises' cost.
    let rss0 = demo.rss_kib();
    let vm0 = status_kib(pid, "VmSize:");
    // A binary frame promising 1 MiB (the largest allowed): its head and
    // 100 bytes of its payload.
    let payload = vec![0x55u8; 1 << 20];
    let frame = FrameSpec::new(BINARY, payload.clone()).encode();
    let (head, rest) = frame.split_at(14 + 100);
    for c in &mut clients {
        c.send(head);
    }
    // The bytes were delivered; an allocation of the promise shows within
    // milliseconds, far inside the window.
    let rss = demo.peak_rss_over(Duration::from_millis(1000));
    let vm = status_kib(pid, "VmSize:");
    let grown = rss.saturating_sub(rss0);
    eprintln!(
        "{N} frame heads promising 1 MiB each: RSS +{grown} KiB ({} KiB each), VmSize +{} KiB",
        grown / N as u64,
        vm.saturating_sub(vm0)
    );
    // 200 MiB if the promises were allocated and touched; what arrived is 20 KB.
    assert!(grown < 8 * 1024, "{N} promised 1 MiB frames grew the server by {grown} KiB");
    // Nor reserved: the address space follows the bytes too (a reservation
    // per promise would be +200 MiB here, and fail under strict overcommit).
    let reserved = vm.saturating_sub(vm0);
    assert!(reserved < 64 * 1024, "{N} promised 1 MiB frames reserved {reserved} KiB of address space");
    // A promised frame that does arrive is still echoed whole.
    clients[0].send(rest);
    clients[0].expect_message(BINARY, &payload);
    still_echoes(&demo);
}

/// Writes `wire` to `c` over and over until the server stops taking bytes
/// (a nonblocking write finds the socket full and it does not drain within
/// `quiet`), or `limit` bytes were written. Returns the bytes written.
fn write_until_stalled(c: &mut WsClient, wire: &[u8], limit: usize, quiet: Duration) -> usize {
    c.stream.set_nonblocking(true).unwrap();
    let mut written = 0;
    let mut at = 0;
    let mut blocked_since: Option<Instant> = None;
    while written < limit {
        match c.stream.write(&wire[at..]) {
            Ok(n) => {
                written += n;
                at = (at + n) % wire.len();
                blocked_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= quiet {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write failed after {written} bytes: {e}"),
        }
    }
    c.stream.set_nonblocking(false).unwrap();
    written
}

#[test]
fn clients_that_send_and_never_read_the_echoes_cost_a_bounded_amount_each() {
    const N: usize = 16;
    let demo = warm_demo();
    // Small receive buffers: the echoes back up into the server soon.
    let mut clients: Vec<WsClient> = (0..N)
        .map(|_| {
            let c = Client::connect_with_rcvbuf(demo.port, 4096);
            let mut c = WsClient::from_stream(c.stream);
            c.send(handshake_request("/ws", RFC_KEY, "").as_bytes());
            assert_eq!(c.read_head().status, 101);
            c
        })
        .collect();
    let rss0 = demo.rss_kib();
    // 16 KiB binary messages, 64 of them per write.
    let one = FrameSpec::new(BINARY, vec![0xa5u8; 16 * 1024]).encode();
    let wire: Vec<u8> = one.iter().copied().cycle().take(one.len() * 64).collect();
    // Each client sends until the server stops reading from it, at most 64 MiB.
    let limit = 64 << 20;
    let threads: Vec<_> = clients
        .drain(..)
        .map(|mut c| {
            let wire = wire.clone();
            std::thread::spawn(move || {
                let sent = write_until_stalled(&mut c, &wire, limit, Duration::from_millis(500));
                (c, sent)
            })
        })
        .collect();
    let results: Vec<(WsClient, usize)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let sent: usize = results.iter().map(|(_, s)| s).sum();
    for (_, s) in &results {
        assert!(*s < limit, "a client that never reads was never stopped ({s} bytes taken)");
    }
    let rss = demo.peak_rss_over(Duration::from_millis(500));
    let grown = rss.saturating_sub(rss0);
    let each = grown / N as u64;
    eprintln!(
        "{N} clients sending 16 KiB messages and never reading: {} KiB sent each before the server stopped reading; \
         RSS +{grown} KiB ({each} KiB each)",
        sent / N / 1024
    );
    // Per connection: the write queue's high-water mark (1 MiB) and the
    // message past it, one message held by tungstenite and one by the demo,
    // the 64 KiB inbox and the 64 KiB window.
    assert!(each < 2 * 1024, "a non-reading WebSocket client costs {each} KiB ({grown} KiB for {N})");
    still_echoes(&demo);
    // The clients read at last: every echo comes back, in order, whole.
    let (mut c, sent0) = results.into_iter().next().unwrap();
    let messages = sent0 / one.len();
    for _ in 0..messages {
        c.expect_message(BINARY, &[0xa5u8; 16 * 1024]);
    }
}

#[test]
fn an_idle_websocket_costs_a_few_kibibytes() {
    const N: usize = 1000;
    let demo = warm_demo();
    // The first few connections' share of the worker's buffers is not counted.
    let warm = open_websockets(demo.port, 10);
    let rss0 = demo.rss_kib();
    let clients = open_websockets(demo.port, N);
    // Each WebSocket is served: a ping through every one of them.
    let mut clients = clients;
    for c in &mut clients {
        c.send_frame(&FrameSpec::new(PING, "idle?"));
    }
    for c in &mut clients {
        c.expect_message(PONG, b"idle?");
    }
    let rss = demo.rss_kib();
    let per = (rss.saturating_sub(rss0)) as f64 / N as f64;
    eprintln!("{N} idle WebSockets: RSS {rss0} -> {rss} KiB = {per:.2} KiB per WebSocket");
    assert!(per < 48.0, "an idle WebSocket costs {per:.2} KiB");
    drop(warm);
}

#[test]
fn idle_websockets_give_back_a_big_message_s_memory() {
    const N: usize = 60;
    let demo = warm_demo();
    let mut clients = open_websockets(demo.port, N);
    let rss0 = demo.rss_kib();
    // Each echoes one 1 MiB message, then stays open and idle.
    let payload = vec![0x3cu8; 1 << 20];
    let frame = FrameSpec::new(BINARY, payload.clone()).encode();
    for c in &mut clients {
        c.send(&frame);
        c.expect_message(BINARY, &payload);
    }
    let grown = demo.rss_kib().saturating_sub(rss0);
    eprintln!("{N} idle WebSockets after a 1 MiB echo each: RSS +{grown} KiB ({} KiB each)", grown / N as u64);
    // Holding the message's buffers would be 1-3 MiB each.
    assert!(grown < 8 * 1024, "{N} idle WebSockets after 1 MiB echoes hold {grown} KiB");
    still_echoes(&demo);
}

#[test]
fn a_client_that_pings_and_never_reads_the_pongs_is_stopped() {
    let demo = warm_demo();
    let c = Client::connect_with_rcvbuf(demo.port, 4096);
    let mut c = WsClient::from_stream(c.stream);
    c.send(handshake_request("/ws", RFC_KEY, "").as_bytes());
    assert_eq!(c.read_head().status, 101);
    let rss0 = demo.rss_kib();
    // Pings of the largest size, 256 of them per write; their pongs (as
    // large) back up into the server once the client's buffer is full.
    let one = FrameSpec::new(PING, vec![0x5au8; 125]).encode();
    let wire: Vec<u8> = one.iter().copied().cycle().take(one.len() * 256).collect();
    let limit = 64 << 20;
    let sent = write_until_stalled(&mut c, &wire, limit, Duration::from_millis(2000));
    let rss = demo.peak_rss_over(Duration::from_millis(500));
    let grown = rss.saturating_sub(rss0);
    eprintln!("a client pinging and never reading: {} KiB of pings taken; RSS +{grown} KiB", sent / 1024);
    // Unanswered pongs held without bound would be as large as the pings.
    assert!(sent < limit, "a client that pings and never reads was never stopped ({sent} bytes taken)");
    assert!(grown < 4 * 1024, "a client pinging and never reading grew the server by {grown} KiB");
    still_echoes(&demo);
}
