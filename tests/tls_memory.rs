//! What hostile TLS clients cost the server's memory (see hostile_memory.rs
//! for the plain ones): each server runs in a child process of this test
//! binary so that its resident memory is measured alone, and each attack's
//! cost per connection must stay within a bound that an unbounded session
//! (rustls buffering every answer, a handshake buffered whole) exceeds many
//! times over.

mod util;

use std::io::{Read, Write};
use std::time::Duration;

use util::child::{is_child, peak_rss_kib, read_port, rss_kib, spawn, ChildGuard};
use util::tls::{client_config, connect, connect_with_rcvbuf, ClientOpts, Pki};
use util::*;
use warpcore::{Request, Response, TlsSetup};

/// A 16,000-byte answer to every request.
fn big_answer(_req: &Request<'_>, res: &mut Response<'_>) {
    let _ = res.respond(200, std::iter::empty(), &[b'x'; 16_000]);
}

#[test]
#[ignore = "run by the tests below"]
fn tls_server_child() {
    assert!(is_child(), "only runs as a child");
    let cert = std::env::var("WARPCORE_TEST_CERT").unwrap();
    let key = std::env::var("WARPCORE_TEST_KEY").unwrap();
    let mut setup = TlsSetup::new();
    setup.add_cert_files(cert, key).unwrap();
    let s = start_with(big_answer, |c| {
        c.listen = String::new();
        c.add_tls_listener("127.0.0.1:0", setup).unwrap();
        c.workers = 1;
        c.max_connections = 4096;
        c.backlog = 2048;
    });
    println!("PORT {}", s.port);
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

struct ChildServer {
    guard: ChildGuard,
    port: u16,
    pki: Pki,
}

impl ChildServer {
    fn start() -> ChildServer {
        let pki = Pki::new("memory");
        let leaf = pki.server(&["localhost"]);
        std::env::set_var("WARPCORE_TEST_CERT", &leaf.chain_path);
        std::env::set_var("WARPCORE_TEST_KEY", &leaf.key_path);
        let mut guard = ChildGuard(spawn("tls_server_child"));
        let port = read_port(&mut guard.0);
        ChildServer { guard, port, pki }
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.guard.0.id())
    }

    /// Resident memory after a few sessions were served (rustls's and the
    /// worker's own first allocations counted).
    fn warm_baseline(&self) -> u64 {
        let config = client_config(&self.pki, ClientOpts::default());
        for _ in 0..3 {
            let mut c = connect(self.port, &config, "localhost");
            for _ in 0..4 {
                assert_eq!(c.get("/").status, 200);
            }
        }
        self.rss_kib()
    }

    /// The highest resident memory seen over `window`.
    fn peak_over(&self, window: Duration) -> u64 {
        peak_rss_kib(self.guard.0.id(), window)
    }

    fn still_answers(&self) {
        let config = client_config(&self.pki, ClientOpts::default());
        assert_eq!(connect(self.port, &config, "localhost").get("/").status, 200);
    }
}

#[test]
fn tls_clients_that_pipeline_and_never_read_cost_a_bounded_amount_each() {
    let server = ChildServer::start();
    let before = server.warm_baseline();
    let config = client_config(&server.pki, ClientOpts::default());
    let one = b"GET / HTTP/1.1\nHost:\n\n";
    let attack: Vec<u8> = one.iter().copied().cycle().take(32 * 1024 / one.len() * one.len()).collect();
    let mut clients = Vec::new();
    for _ in 0..200 {
        let mut c = connect_with_rcvbuf(server.port, &config, "localhost", 4096);
        c.stream.write_all(&attack).unwrap();
        clients.push(c);
    }
    let grown = server.peak_over(Duration::from_millis(2000)).saturating_sub(before);
    let per_connection = grown / 200;
    // The plain bound (~160 KiB: input, pending answers) plus the session's:
    // at most one call's records (64 KiB), a record being read and one
    // decrypted (16 KiB each); answering every request sent would cost ~22 MB each.
    eprintln!("200 non-reading pipelining TLS clients: +{grown} KiB, {per_connection} KiB each");
    assert!(per_connection < 240, "{per_connection} KiB per connection ({grown} KiB in all)");
    server.still_answers();
    drop(clients);
}

#[test]
fn idle_tls_sessions_and_half_handshakes_cost_little() {
    let server = ChildServer::start();
    let before = server.warm_baseline();
    let config = client_config(&server.pki, ClientOpts::default());
    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut c = connect(server.port, &config, "localhost");
        assert_eq!(c.get("/").status, 200);
        idle.push(c);
    }
    let grown = server.peak_over(Duration::from_millis(500)).saturating_sub(before);
    let per_idle = grown / 300;
    eprintln!("300 idle TLS sessions: +{grown} KiB, {per_idle} KiB each");
    assert!(per_idle < 24, "an idle TLS session costs {per_idle} KiB");
    // Handshakes that stop inside a record promising 16 KiB.
    let before = server.rss_kib();
    let mut half = Vec::new();
    for _ in 0..300 {
        let mut c = Client::connect(server.port);
        let mut bytes = vec![22, 3, 1, 0x40, 0x00];
        bytes.extend_from_slice(&[1, 0, 0x3f, 0xfc]);
        bytes.extend_from_slice(&[0u8; 4000]);
        c.send(&bytes);
        half.push(c);
    }
    let grown = server.peak_over(Duration::from_millis(500)).saturating_sub(before);
    let per_half = grown / 300;
    eprintln!("300 half handshakes: +{grown} KiB, {per_half} KiB each");
    assert!(per_half < 32, "a half handshake costs {per_half} KiB");
    // Handshakes that promise a ClientHello of 64 KiB and send most of it
    // (rustls gathers a whole handshake message): cut past
    // MAX_HANDSHAKE_BYTES (they held ~66 KiB each before).
    let before = server.rss_kib();
    let mut huge = Vec::new();
    for _ in 0..300 {
        let mut c = Client::connect(server.port);
        let mut bytes = Vec::new();
        let mut body = vec![1u8, 0, 0xff, 0xf0];
        body.resize(0xfff4, 0);
        for record in body.chunks(0x4000) {
            bytes.extend_from_slice(&[22, 3, 1]);
            bytes.extend_from_slice(&(record.len() as u16).to_be_bytes());
            bytes.extend_from_slice(record);
        }
        bytes.truncate(bytes.len() - 2000);
        let _ = c.stream.write_all(&bytes);
        huge.push(c);
    }
    let grown = server.peak_over(Duration::from_millis(500)).saturating_sub(before);
    let per_huge = grown / 300;
    eprintln!("300 huge half handshakes: +{grown} KiB, {per_huge} KiB each");
    assert!(per_huge < 40, "a huge half handshake costs {per_huge} KiB");
    server.still_answers();
    drop((idle, half, huge));
}
