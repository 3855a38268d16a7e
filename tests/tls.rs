//! TLS listeners, end to end over real sockets with a rustls client:
//! handshakes (TLS 1.2 and 1.3), what the request sees of them (SNI, ALPN,
//! the client's certificates), SNI choosing the certificate, ALPN, client
//! certificates required and optional, resumption (with and without
//! tickets, and across reloads that change client certificates), names
//! refused (SNI required), a handshake that fails or never ends costing its
//! connection only, bad certificates refused at start, certificates reloaded
//! under load; the engine's answers (pipelined, deferred, streamed, files,
//! upgraded) unchanged over TLS; the client's end of stream with and without
//! `close_notify`; kernel TLS asked for where the kernel lacks it.

mod util;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use util::tls::{client_config, connect, try_connect, ClientOpts, Leaf, Pki};
use util::*;
use warpcore::{ClientAuth, Config, ErrorKind, Payload, Request, Response, Server, TlsSetup};

static TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// Answers with what the request saw of its connection's TLS:
/// `tls=V cipher=C sni=S alpn=A certs=N resumed=R` (or `plain`), or, for
/// `/echo`, the body.
fn tls_view(req: &Request<'_>, res: &mut Response<'_>) {
    if req.path == b"/echo" {
        let _ = res.respond(200, std::iter::empty(), req.body);
        return;
    }
    let text = match req.tls {
        Some(t) => format!(
            "tls={:04x} cipher={:04x} sni={} alpn={} certs={} resumed={}",
            t.version,
            t.cipher,
            t.sni,
            String::from_utf8_lossy(&t.alpn),
            t.peer_certs.len(),
            t.resumed
        ),
        None => "plain".to_owned(),
    };
    let _ = res.respond(200, std::iter::empty(), text.as_bytes());
}

/// The error log's lines.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl warpcore::ErrorLog for Lines {
    fn log(&self, _: warpcore::Level, message: &str) {
        self.0.lock().unwrap().push(message.to_owned());
    }
}

impl Lines {
    fn has(&self, part: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l.contains(part))
    }
}

fn setup_for(leaves: &[&Leaf]) -> TlsSetup {
    let mut setup = TlsSetup::new();
    for leaf in leaves {
        setup.add_cert_files(&leaf.chain_path, &leaf.key_path).unwrap();
    }
    setup
}

/// A server whose only listener is TLS on 127.0.0.1:0.
fn start_tls(handler: impl warpcore::Handler, setup: TlsSetup, tune: impl FnOnce(&mut Config)) -> TestServer {
    start_with(handler, |c| {
        c.listen = String::new();
        c.add_tls_listener("127.0.0.1:0", setup).unwrap();
        tune(c);
    })
}

/// `start_tls` serving `tls_view`, with its error log kept to look at.
fn start_tls_logged(setup: TlsSetup) -> (TestServer, Arc<Lines>) {
    let log = Arc::new(Lines::default());
    let seen = log.clone();
    (start_tls(tls_view, setup, move |c| c.error_log = Some(seen)), log)
}

#[test]
fn tls_1_3_and_1_2_handshakes_serve_requests_and_the_request_sees_them() {
    let pki = Pki::new("versions");
    let leaf = pki.server(&["localhost"]);
    let s = start_tls(tls_view, setup_for(&[&leaf]), |_| {});
    for (versions, want) in [(TLS13, "tls=0304"), (TLS12, "tls=0303")] {
        let config = client_config(&pki, ClientOpts { versions, ..Default::default() });
        let mut c = connect(s.port, &config, "localhost");
        for _ in 0..3 {
            let reply = c.get("/");
            assert_eq!(reply.status, 200);
            let text = reply.text();
            assert!(text.starts_with(want), "{text}");
            assert!(text.contains("sni=localhost alpn=http/1.1 certs=0"), "{text}");
        }
        let reply = {
            c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
            c.read_response(false)
        };
        assert_eq!(reply.text(), "hello");
    }
    let stats = s.server.stats();
    assert_eq!((stats.tls_handshakes, stats.tls_handshake_failures), (2, 0));
}

#[test]
fn a_plain_client_on_a_tls_listener_costs_its_connection_and_a_counter_only() {
    let pki = Pki::new("garbage");
    let leaf = pki.server(&["localhost"]);
    let (s, log) = start_tls_logged(setup_for(&[&leaf]));
    let config = client_config(&pki, ClientOpts::default());
    // A session open across the garbage keeps being served.
    let mut good = connect(s.port, &config, "localhost");
    assert_eq!(good.get("/").status, 200);
    let mut bad = Client::connect(s.port);
    bad.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let answer = bad.read_to_eof();
    // At most a TLS alert record (type 21), never HTTP.
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    assert_eq!(good.get("/").status, 200);
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().tls_handshake_failures == 1));
    assert!(wait_until(IO_TIMEOUT, || log.has("TLS handshake with 127.0.0.1")));
    assert_eq!(connect(s.port, &config, "localhost").get("/").status, 200);
}

/// The DER of the certificate the server presented.
fn presented(c: &Client<util::tls::TlsSocket>) -> Vec<u8> {
    c.stream.conn().peer_certificates().expect("a certificate")[0].to_vec()
}

#[test]
fn sni_chooses_the_certificate_and_the_first_is_the_default() {
    let pki = Pki::new("sni");
    let a = pki.server(&["a.test"]);
    let b = pki.server(&["b.test", "b2.test"]);
    let wild = pki.server(&["*.wild.test"]);
    let s = start_tls(tls_view, setup_for(&[&a, &b, &wild]), |_| {});
    let config = client_config(&pki, ClientOpts::default());
    for (name, leaf) in [("a.test", &a), ("b.test", &b), ("B2.TEST", &b), ("x.wild.test", &wild)] {
        let mut c = connect(s.port, &config, name);
        assert_eq!(presented(&c), leaf.der.to_vec(), "{name}");
        let text = c.get("/").text();
        assert!(text.contains(&format!("sni={}", name.to_ascii_lowercase())), "{text}");
    }
    // A name no certificate has gets the first one (which the client refuses).
    assert!(try_connect(s.port, &config, "other.test").is_err());
}

#[test]
fn alpn_agrees_on_http_1_1_and_refuses_a_client_without_it() {
    let pki = Pki::new("alpn");
    let leaf = pki.server(&["localhost"]);
    let s = start_tls(tls_view, setup_for(&[&leaf]), |_| {});
    let both =
        client_config(&pki, ClientOpts { alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()], ..Default::default() });
    let mut c = connect(s.port, &both, "localhost");
    assert_eq!(c.stream.conn().alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(c.get("/").text().contains("alpn=http/1.1"));
    let none = client_config(&pki, ClientOpts { alpn: vec![], ..Default::default() });
    assert!(connect(s.port, &none, "localhost").get("/").text().contains("alpn= "));
    let h2_only = client_config(&pki, ClientOpts { alpn: vec![b"h2".to_vec()], ..Default::default() });
    assert!(try_connect(s.port, &h2_only, "localhost").is_err());
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().tls_handshake_failures == 1));
}

/// Answers `/cert` with the DER of the client's certificate (empty without one).
fn client_cert(req: &Request<'_>, res: &mut Response<'_>) {
    let der = req.tls.and_then(|t| t.peer_certs.first()).map(|c| c.to_vec()).unwrap_or_default();
    let _ = res.respond(200, std::iter::empty(), &der);
}

/// A request over a session the server may refuse after the client's side
/// of the handshake ended (TLS 1.3 sends the verdict after): its status, or
/// None when the connection failed.
fn try_get(port: u16, config: &Arc<rustls::ClientConfig>) -> Option<(u16, Vec<u8>)> {
    let mut c = try_connect(port, config, "localhost").ok()?;
    c.stream.write_all(b"GET /cert HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match c.stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
        if let Some((reply, _)) = parse_response(&got, false) {
            return Some((reply.status, reply.body));
        }
    }
    None
}

#[test]
fn a_required_client_certificate_is_checked_and_shown_to_the_handler() {
    let pki = Pki::new("mtls");
    let leaf = pki.server(&["localhost"]);
    let client = pki.client("alice");
    let stranger = Pki::new("mtls-other").client("mallory");
    let mut setup = setup_for(&[&leaf]);
    setup.set_client_auth_file(ClientAuth::Required, pki.ca_path()).unwrap();
    let s = start_tls(client_cert, setup, |_| {});
    for versions in [TLS13, TLS12] {
        let with = client_config(&pki, ClientOpts { versions, cert: Some(&client), ..Default::default() });
        assert_eq!(try_get(s.port, &with), Some((200, client.der.to_vec())));
        let without = client_config(&pki, ClientOpts { versions, ..Default::default() });
        assert_eq!(try_get(s.port, &without), None, "no certificate: refused");
        let wrong = client_config(&pki, ClientOpts { versions, cert: Some(&stranger), ..Default::default() });
        assert_eq!(try_get(s.port, &wrong), None, "a certificate of another CA: refused");
    }
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().tls_handshake_failures == 4));
    assert_eq!(s.server.stats().tls_handshakes, 2);
}

#[test]
fn an_optional_client_certificate_may_be_left_out() {
    let pki = Pki::new("mtls-optional");
    let leaf = pki.server(&["localhost"]);
    let client = pki.client("bob");
    let mut setup = setup_for(&[&leaf]);
    setup.set_client_auth_pem(ClientAuth::Optional, pki.ca_pem().as_bytes()).unwrap();
    let s = start_tls(client_cert, setup, |_| {});
    let with = client_config(&pki, ClientOpts { cert: Some(&client), ..Default::default() });
    assert_eq!(try_get(s.port, &with), Some((200, client.der.to_vec())));
    let without = client_config(&pki, ClientOpts::default());
    assert_eq!(try_get(s.port, &without), Some((200, Vec::new())));
}

#[test]
fn sessions_resume_with_tickets_in_tls_1_3_and_1_2() {
    let pki = Pki::new("resume");
    let leaf = pki.server(&["localhost"]);
    let s = start_tls(tls_view, setup_for(&[&leaf]), |_| {});
    for versions in [TLS13, TLS12] {
        let config = client_config(&pki, ClientOpts { versions, ..Default::default() });
        let mut first = connect(s.port, &config, "localhost");
        assert!(first.get("/").text().contains("resumed=false"));
        // The tickets came with that answer (TLS 1.3) or the handshake (1.2).
        let mut second = connect(s.port, &config, "localhost");
        assert_eq!(second.stream.conn().handshake_kind(), Some(rustls::HandshakeKind::Resumed));
        assert!(second.get("/").text().contains("resumed=true"));
    }
}

#[test]
fn a_handshake_that_never_ends_is_cut_by_the_header_timeout() {
    let pki = Pki::new("slow");
    let leaf = pki.server(&["localhost"]);
    let s = start_tls(tls_view, setup_for(&[&leaf]), |c| {
        c.header_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(60);
    });
    let mut silent = Client::connect(s.port);
    let mut partial = Client::connect(s.port);
    // The first bytes of a ClientHello record, and no more.
    partial.send(&[22, 3, 1, 0, 200, 1, 0]);
    let start = std::time::Instant::now();
    assert!(silent.closed_by_server() && partial.closed_by_server());
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert!(s.server.stats().connections_timed_out >= 2);
    // A handshake the timeout cut is a failed handshake too.
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().tls_handshake_failures == 2));
}

#[test]
fn a_bad_certificate_file_is_refused_at_start_with_a_clear_error() {
    let pki = Pki::new("badfile");
    let leaf = pki.server(&["localhost"]);
    let other = pki.server(&["localhost"]);
    let setup = setup_for(&[&leaf]);
    let config = |setup: TlsSetup| {
        let mut c =
            Config { listen: String::new(), workers: 1, handler: Some(Arc::new(tls_view)), ..Config::default() };
        c.add_tls_listener("127.0.0.1:0", setup).unwrap();
        c
    };
    std::fs::write(&leaf.key_path, b"not a key").unwrap();
    let e = Server::start(&config(setup.clone())).err().expect("refused");
    assert_eq!(e.kind, ErrorKind::Tls);
    assert!(e.message.contains(&leaf.key_path.display().to_string()) && e.message.contains("private key"), "{e}");
    std::fs::write(&leaf.key_path, &other.key_pem).unwrap();
    let e = Server::start(&config(setup.clone())).err().expect("refused");
    assert!(e.message.contains("is not the private key of the certificate"), "{e}");
    std::fs::remove_file(&leaf.chain_path).unwrap();
    let e = Server::start(&config(setup)).err().expect("refused");
    assert!(e.message.contains("cannot read the certificate file"), "{e}");
    // And when the setup is made.
    let mut setup = TlsSetup::new();
    assert_eq!(setup.add_cert_pem(b"", b"").unwrap_err().kind, ErrorKind::Tls);
    assert_eq!(
        setup.add_cert_pem(other.chain_pem.as_bytes(), leaf.chain_pem.as_bytes()).unwrap_err().kind,
        ErrorKind::Tls
    );
    let mut c = Config::default();
    assert!(c.add_tls_listener("127.0.0.1:0", TlsSetup::new()).is_err(), "no certificate");
}

/// The PROXY header comes in clear before the ClientHello, and the handshake
/// starts at accept: the two on one listener are refused, not half-served.
#[test]
fn the_proxy_protocol_on_a_tls_listener_is_refused_at_start() {
    let pki = Pki::new("proxytls");
    let leaf = pki.server(&["localhost"]);
    for (default, listener) in [
        (warpcore::ProxyProtocol::Required, None),
        (warpcore::ProxyProtocol::None, Some(warpcore::ProxyProtocol::Optional)),
    ] {
        let mut c =
            Config { listen: String::new(), workers: 1, handler: Some(Arc::new(tls_view)), ..Config::default() };
        c.add_tls_listener("127.0.0.1:0", setup_for(&[&leaf])).unwrap();
        c.proxy_protocol.default = default;
        if let Some(mode) = listener {
            c.proxy_protocol.listeners.push(("127.0.0.1:0".to_owned(), mode));
        }
        let e = Server::start(&c).err().expect("refused");
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("PROXY protocol on a TLS listener"), "{e}");
    }
}

#[test]
fn a_reload_installs_new_certificates_under_load_without_dropping_a_connection() {
    let pki = Pki::new("reload");
    let old = pki.server(&["localhost"]);
    let new = pki.server(&["localhost"]);
    let setup = setup_for(&[&old]);
    let mut config =
        Config { listen: String::new(), workers: 2, handler: Some(Arc::new(tls_view)), ..Config::default() };
    config.add_tls_listener("127.0.0.1:0", setup).unwrap();
    let server = Arc::new(Server::start(&config).unwrap());
    let port = server.port();
    let client = client_config(&pki, ClientOpts::default());
    let mut kept = connect(port, &client, "localhost");
    assert_eq!(presented(&kept), old.der.to_vec());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, done, client) = (stop.clone(), done.clone(), client.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut c = connect(port, &client, "localhost");
                    for _ in 0..3 {
                        assert_eq!(c.get("/").status, 200);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    assert!(wait_until(IO_TIMEOUT, || done.load(Ordering::Relaxed) > 30));
    // The files are replaced and the same config reloaded (as nginx -s reload).
    std::fs::write(&old.chain_path, &new.chain_pem).unwrap();
    std::fs::write(&old.key_path, &new.key_pem).unwrap();
    server.reload(&config).unwrap();
    let after = done.load(Ordering::Relaxed);
    assert!(wait_until(IO_TIMEOUT, || done.load(Ordering::Relaxed) > after + 30));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("every request answered");
    }
    // A fresh client (one that resumes shows the certificate of its first session).
    let fresh = client_config(&pki, ClientOpts::default());
    assert_eq!(presented(&connect(port, &fresh, "localhost")), new.der.to_vec());
    assert_eq!(kept.get("/").status, 200, "a session from before the reload goes on");
    assert_eq!(server.stats().tls_handshake_failures, 0);
}

// The engine's answers over TLS: the cases of pipelining.rs, deferred.rs,
// body_stream.rs, static_files.rs and upgrade.rs that matter to the bytes'
// path, with a client whose small receive window makes writes partial.

fn tls_server(
    handler: impl warpcore::Handler,
    tune: impl FnOnce(&mut Config),
) -> (Pki, TestServer, Arc<rustls::ClientConfig>) {
    let pki = Pki::new("engine");
    let leaf = pki.server(&["localhost"]);
    let s = start_tls(handler, setup_for(&[&leaf]), tune);
    let config = client_config(&pki, ClientOpts::default());
    (pki, s, config)
}

#[test]
fn pipelined_requests_are_answered_in_order_over_tls() {
    let (_pki, s, config) = tls_server(echo_handler, |_| {});
    let mut c = connect(s.port, &config, "localhost");
    let mut batch = Vec::new();
    for i in 0..50 {
        batch
            .extend_from_slice(format!("POST /p{i} HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n{i:03}").as_bytes());
    }
    c.send(&batch);
    for i in 0..50 {
        assert_eq!(c.read_response(false).text(), format!("POST /p{i} {i:03}"));
    }
}

#[test]
fn deferred_and_held_answers_keep_their_order_over_tls() {
    let handler = |req: &Request<'_>, res: &mut Response<'_>| {
        if req.path == b"/slow" {
            let mut d = res.defer().unwrap();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                d.respond(200, std::iter::empty(), Payload::from(b"slow".to_vec())).unwrap();
            });
        } else {
            let _ = res.respond(200, std::iter::empty(), b"fast");
        }
    };
    let (_pki, s, config) = tls_server(handler, |_| {});
    let mut c = connect(s.port, &config, "localhost");
    for _ in 0..5 {
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /fast HTTP/1.1\r\nHost: t\r\n\r\nGET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
        let texts: Vec<_> = (0..3).map(|_| c.read_response(false).text()).collect();
        assert_eq!(texts, ["slow", "fast", "slow"]);
    }
}

/// A digest of bytes, to compare large bodies in messages.
fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

#[test]
fn streamed_bodies_both_ways_survive_a_slow_reader_over_tls() {
    // Uploads stream to the handler, which answers with a stream of 2 MiB.
    let handler = |req: &Request<'_>, res: &mut Response<'_>| {
        if req.method == b"GET" {
            let _ = res.respond(200, std::iter::empty(), b"ok");
            return;
        }
        let mut body = res.body().expect("the body streams");
        let mut d = res.defer().unwrap();
        std::thread::spawn(move || {
            use sha2::Digest;
            let mut hash = sha2::Sha256::new();
            let mut buf = vec![0u8; 50_000];
            loop {
                match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => hash.update(&buf[..n]),
                    Err(e) => panic!("{e:?}"),
                }
            }
            let text = format!("{:x}\n", hash.finalize());
            d.start(200, std::iter::empty(), None).unwrap();
            d.write(Payload::from(text.into_bytes())).unwrap();
            for i in 0..64u32 {
                d.write(Payload::from(vec![(i % 251) as u8; 32 * 1024])).unwrap();
            }
            d.end().unwrap();
        });
    };
    let (_pki, s, config) = tls_server(handler, |c| {
        c.whole_body_max = 64 * 1024;
        c.max_body_size = 8 << 20;
    });
    let mut c = connect(s.port, &config, "localhost");
    let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    c.send(format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", upload.len()).as_bytes());
    for chunk in upload.chunks(100_000) {
        c.send(chunk);
    }
    let reply = c.read_response(false);
    assert_eq!(reply.status, 200);
    let (line, rest) = reply.body.split_at(65);
    assert_eq!(String::from_utf8_lossy(line).trim(), digest(&upload));
    assert_eq!(rest.len(), 64 * 32 * 1024);
    assert!(rest.chunks(32 * 1024).enumerate().all(|(i, c)| c.iter().all(|&b| b == (i % 251) as u8)));
    assert_eq!(c.get("/again").status, 200, "the connection goes on");
}

#[test]
fn static_files_go_out_whole_over_tls() {
    let dir = TempDir::new("tls", "static");
    let data: Vec<u8> = (0..(1u32 << 20) + 12345).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    std::fs::write(dir.join("big.bin"), &data).unwrap();
    std::fs::write(dir.join("small.txt"), b"small file").unwrap();
    let mount = warpcore::MountSpec::new(b"/s", &*dir).unwrap();
    let (_pki, s, config) = tls_server(tls_view, |c| c.static_mounts = vec![mount]);
    let mut c = connect(s.port, &config, "localhost");
    for _ in 0..3 {
        let reply = c.get("/s/big.bin");
        assert_eq!(reply.status, 200);
        assert!(reply.body == data, "the file arrives whole");
        assert_eq!(c.get("/s/small.txt").text(), "small file");
    }
    // A range from the middle.
    c.send(b"GET /s/big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000-200999\r\n\r\n");
    let reply = c.read_response(false);
    assert_eq!(reply.status, 206);
    assert!(reply.body == data[1000..201_000]);
    // Whether the kernel took the records depends on the machine; either way the bytes are the same.
    let stats = s.server.stats();
    assert_eq!(stats.tls_handshakes, 1);
    assert!(stats.tls_kernel <= 1);
}

#[test]
fn an_upgraded_connection_echoes_over_tls_and_half_closes() {
    let handler = |_req: &Request<'_>, res: &mut Response<'_>| {
        let mut d = res.defer().unwrap();
        std::thread::spawn(move || {
            let up = d.upgrade([(&b"Upgrade"[..], &b"echo"[..])], None).unwrap();
            let mut buf = vec![0u8; 16_384];
            loop {
                match up.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => up.write(Payload::from(buf[..n].to_vec())).unwrap(),
                    Err(e) => panic!("read failed: {e:?}"),
                }
            }
            up.write(Payload::from(b"bye".to_vec())).unwrap();
            up.shutdown_write().unwrap();
        });
    };
    let (_pki, s, config) = tls_server(handler, |_| {});
    let mut c = connect(s.port, &config, "localhost");
    c.send(b"GET /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
    let head = c.read_response(false);
    assert_eq!(head.status, 101);
    for round in 0..20u32 {
        let chunk: Vec<u8> = (0..30_000u32).map(|i| ((i + round) % 247) as u8).collect();
        c.send(&chunk);
        let mut got = c.leftover().to_vec();
        let mut buf = [0u8; 16_384];
        while got.len() < chunk.len() {
            let n = c.stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got == chunk, "round {round}");
        if round == 0 {
            // Bytes buffered by the client reader were consumed above.
            c = Client::over(c.stream);
        }
    }
    // close_notify: the application reads the end, says bye and closes its side.
    c.stream.0.conn.send_close_notify();
    c.stream.0.flush().unwrap();
    assert_eq!(c.read_to_eof(), b"bye");
}

/// A config whose only listener is TLS on 127.0.0.1:0, for start and reload.
fn tls_config(handler: impl warpcore::Handler, setup: TlsSetup) -> Config {
    let mut c = Config { listen: String::new(), workers: 1, handler: Some(Arc::new(handler)), ..Config::default() };
    c.add_tls_listener("127.0.0.1:0", setup).unwrap();
    c
}

/// A resumed session carries the outcome of its full handshake: one made
/// when no certificate was asked for, or checked against another CA, must
/// not stand in for a certificate the reloaded listener requires.
#[test]
fn a_reload_that_changes_client_certificates_resumes_no_session_from_before() {
    let pki = Pki::new("reauth");
    let leaf = pki.server(&["localhost"]);
    let alice = pki.client("alice");
    let other = Pki::new("reauth-other");
    let bob = other.client("bob");
    let required_by = |ca: &Pki| {
        let mut setup = setup_for(&[&leaf]);
        setup.set_client_auth_file(ClientAuth::Required, ca.ca_path()).unwrap();
        setup
    };
    for versions in [TLS13, TLS12] {
        let server = Server::start(&tls_config(client_cert, setup_for(&[&leaf]))).unwrap();
        let port = server.port();
        let anonymous = client_config(&pki, ClientOpts { versions, ..Default::default() });
        // Sessions without a certificate (TLS 1.3's tickets come with the answer).
        assert_eq!(connect(port, &anonymous, "localhost").get("/cert").status, 200);
        let resumed = connect(port, &anonymous, "localhost");
        assert_eq!(resumed.stream.conn().handshake_kind(), Some(rustls::HandshakeKind::Resumed));

        server.reload(&tls_config(client_cert, required_by(&pki))).unwrap();
        assert_eq!(try_get(port, &anonymous), None, "a session from before stood in for a certificate");
        let with_alice = client_config(&pki, ClientOpts { versions, cert: Some(&alice), ..Default::default() });
        assert_eq!(try_get(port, &with_alice), Some((200, alice.der.to_vec())));

        // The same rule again: sessions are kept.
        server.reload(&tls_config(client_cert, required_by(&pki))).unwrap();
        let mut again = connect(port, &with_alice, "localhost");
        assert_eq!(again.stream.conn().handshake_kind(), Some(rustls::HandshakeKind::Resumed));
        assert_eq!(again.get("/cert").body, alice.der.to_vec());

        // Another CA: alice's certificate is no longer trusted, resumed or not.
        server.reload(&tls_config(client_cert, required_by(&other))).unwrap();
        assert_eq!(try_get(port, &with_alice), None, "a session from before outlived its CA");
        let with_bob = client_config(&pki, ClientOpts { versions, cert: Some(&bob), ..Default::default() });
        assert_eq!(try_get(port, &with_bob), Some((200, bob.der.to_vec())));
    }
}

#[test]
fn without_tickets_tls_1_3_never_resumes_and_tls_1_2_resumes_by_session_id() {
    let pki = Pki::new("notickets");
    let leaf = pki.server(&["localhost"]);
    let mut setup = setup_for(&[&leaf]);
    setup.set_session_tickets(false);
    let s = start_tls(tls_view, setup, |_| {});
    for (versions, resumes) in [(TLS13, false), (TLS12, true)] {
        let config = client_config(&pki, ClientOpts { versions, ..Default::default() });
        for _ in 0..2 {
            let mut c = connect(s.port, &config, "localhost");
            assert!(c.get("/").text().contains("resumed=false"), "the first connection");
            let mut second = connect(s.port, &config, "localhost");
            let kind = if resumes { rustls::HandshakeKind::Resumed } else { rustls::HandshakeKind::Full };
            assert_eq!(second.stream.conn().handshake_kind(), Some(kind), "{versions:?}");
            assert!(second.get("/").text().contains(&format!("resumed={resumes}")));
            if resumes {
                break;
            }
        }
    }
}

/// The alert a failed handshake received from the server, if any.
fn alert_of(e: &std::io::Error) -> Option<rustls::AlertDescription> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

#[test]
fn with_a_name_required_other_names_and_none_are_refused_with_unrecognized_name() {
    let pki = Pki::new("snireq");
    let a = pki.server(&["a.test"]);
    let wild = pki.server(&["*.wild.test"]);
    let mut setup = setup_for(&[&a, &wild]);
    setup.set_require_sni_match(true);
    let (s, log) = start_tls_logged(setup);
    for versions in [TLS13, TLS12] {
        let config = client_config(&pki, ClientOpts { versions, ..Default::default() });
        for (name, leaf) in [("a.test", &a), ("A.Test", &a), ("x.wild.test", &wild)] {
            let mut c = connect(s.port, &config, name);
            assert_eq!(presented(&c), leaf.der.to_vec(), "{name}");
            // The request sees the name in lowercase.
            assert!(c.get("/").text().contains(&format!("sni={} ", name.to_ascii_lowercase())));
        }
        // Another name, a wildcard's parent, and none at all (an IP address sends no SNI).
        for name in ["other.test", "wild.test", "127.0.0.1"] {
            let e = try_connect(s.port, &config, name).err().expect("refused");
            assert_eq!(alert_of(&e), Some(rustls::AlertDescription::UnrecognisedName), "{name}: {e}");
        }
    }
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().tls_handshake_failures == 6));
    assert!(log.has("no certificate for the name the client asked for ('other.test')"));
    assert!(log.has("no certificate for the name the client asked for ('')"));
    assert_eq!(s.server.stats().tls_handshakes, 6);
}

/// Where an upgraded connection's reads are reported: its bytes, and how it ended.
type Seen = std::sync::mpsc::Sender<(Vec<u8>, String)>;

/// Answers an upgrade and reports what its reads saw: the bytes, then how
/// the stream ended (`end` for a read of 0, else the error).
fn upgrade_reporter(report: Arc<Mutex<Seen>>) -> impl warpcore::Handler {
    move |_req: &Request<'_>, res: &mut Response<'_>| {
        let mut d = res.defer().unwrap();
        let report = report.lock().unwrap().clone();
        std::thread::spawn(move || {
            let up = d.upgrade([(&b"Upgrade"[..], &b"echo"[..])], None).unwrap();
            let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
            let end = loop {
                match up.read(&mut buf) {
                    Ok(0) => break "end".to_owned(),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => break format!("{e:?}"),
                }
            };
            let _ = report.send((got, end));
        });
    }
}

/// An end of stream counts only with `close_notify`: a TCP end without it
/// (which anyone on the path can forge) is a failure for an upgraded
/// stream, whose bytes have no framing of their own.
#[test]
fn an_upgraded_tls_stream_cut_without_close_notify_reads_as_a_failure() {
    let (tx, rx) = std::sync::mpsc::channel();
    let (_pki, s, config) = tls_server(upgrade_reporter(Arc::new(Mutex::new(tx))), |_| {});
    for clean in [true, false] {
        let mut c = connect(s.port, &config, "localhost");
        c.send(b"GET /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
        assert_eq!(c.read_response(false).status, 101);
        c.send(b"last words");
        if clean {
            c.stream.0.conn.send_close_notify();
            c.stream.0.flush().unwrap();
        }
        c.stream.0.sock.shutdown(std::net::Shutdown::Write).unwrap();
        let (got, end) = rx.recv_timeout(IO_TIMEOUT).expect("the application saw the end");
        assert_eq!(got, b"last words");
        assert_eq!(end, if clean { "end" } else { "Closed" }, "clean: {clean}");
    }
}

#[test]
fn a_request_body_cut_without_close_notify_fails_its_reader() {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx = Mutex::new(tx);
    let handler = move |_req: &Request<'_>, res: &mut Response<'_>| {
        let mut body = res.body().expect("the body streams");
        let mut d = res.defer().unwrap();
        let tx = tx.lock().unwrap().clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let outcome = loop {
                match body.read(&mut buf) {
                    Ok(0) => break "end".to_owned(),
                    Ok(_) => {}
                    Err(e) => break format!("{e:?}"),
                }
            };
            let _ = d.respond(200, std::iter::empty(), Payload::from(outcome.clone().into_bytes()));
            let _ = tx.send(outcome);
        });
    };
    let (_pki, s, config) = tls_server(handler, |c| c.whole_body_max = 1024);
    let mut c = connect(s.port, &config, "localhost");
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    c.send(&[b'x'; 5000]);
    c.stream.0.sock.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(rx.recv_timeout(IO_TIMEOUT).unwrap(), "Closed");
}

/// Between requests an end without `close_notify` is an ordinary close:
/// what the client sent before it is answered.
#[test]
fn a_request_followed_by_an_end_without_close_notify_is_answered() {
    let (_pki, s, config) = tls_server(tls_view, |_| {});
    let mut c = connect(s.port, &config, "localhost");
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    c.stream.0.sock.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(c.read_response(false).text().starts_with("tls="));
    assert!(c.closed_by_server());
}

/// A client that sends its request and `close_notify` together, and keeps
/// the connection open for the answer (no FIN): the server sees the end
/// behind the request at once, not at the idle timeout, and ends with its
/// own `close_notify`.
#[test]
fn close_notify_right_behind_a_request_ends_the_connection_after_its_answer() {
    let (_pki, s, config) = tls_server(tls_view, |c| c.idle_timeout = Duration::from_secs(60));
    let mut c = connect(s.port, &config, "localhost");
    let tls = &mut c.stream.0;
    tls.conn.writer().write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    tls.conn.send_close_notify();
    // Both records in one write: one segment, one readiness event.
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut tls.sock).unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let start = std::time::Instant::now();
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                panic!("not a clean end after {:?} ({e}); got {:?}", start.elapsed(), String::from_utf8_lossy(&got))
            }
        }
    }
    let (reply, _) = parse_response(&got, false).expect("the answer");
    assert!(reply.text().starts_with("tls="));
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

/// A keep-alive connection closed by the idle timeout ends with the
/// server's `close_notify`: the client reads a clean end, not a truncation.
#[test]
fn an_idle_timeout_ends_with_close_notify() {
    let (_pki, s, config) = tls_server(tls_view, |c| c.idle_timeout = Duration::from_secs(1));
    let mut c = connect(s.port, &config, "localhost");
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(c.read_response(false).text().starts_with("tls="));
    // The coarse clock closes it within a second or two of the timeout.
    let tls = &mut c.stream.0;
    tls.sock.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 64];
    match tls.read(&mut buf) {
        Ok(0) => {}
        other => panic!("not a clean end after {:?}: {other:?}", start.elapsed()),
    }
}

/// An upgraded connection closed by its idle timeout does not say
/// `close_notify`: bytes its application wrote may still have been queued,
/// and a clean end would hide their loss. The client reads a truncation.
#[test]
fn an_upgraded_connections_idle_timeout_is_not_a_clean_end() {
    let handler = |_req: &Request<'_>, res: &mut Response<'_>| {
        let up = res.upgrade([(&b"Upgrade"[..], &b"echo"[..])].into_iter(), None).unwrap();
        up.set_idle_timeout(Some(Duration::from_secs(1))).unwrap();
        // Kept until the connection closes.
        std::thread::spawn(move || while up.read(&mut [0u8; 64]).is_ok_and(|n| n > 0) {});
    };
    let (_pki, s, config) = tls_server(handler, |_| {});
    let mut c = connect(s.port, &config, "localhost");
    c.send(b"GET /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
    assert_eq!(c.read_response(false).status, 101);
    let tls = &mut c.stream.0;
    tls.sock.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let got = tls.read(&mut [0u8; 64]);
    assert!(
        matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "the idle timeout's end, without close_notify: {got:?}"
    );
}

/// Whether this kernel has TLS (the `tls` upper-layer protocol attaches).
fn kernel_has_tls() -> bool {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a live descriptor and a 3-byte name valid for the call.
    let r =
        unsafe { libc::setsockopt(server.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_ULP, b"tls".as_ptr().cast(), 3) };
    r == 0
}

/// Kernel TLS asked for (the default): on a kernel without it (as this
/// machine's, whose TCP_ULP says ENOENT) every connection stays in user
/// space and is served whole, files included.
#[test]
fn kernel_tls_asked_for_falls_back_to_user_space_where_the_kernel_lacks_it() {
    let dir = TempDir::new("tls", "ktls");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("f.bin"), &data).unwrap();
    let mount = warpcore::MountSpec::new(b"/s", &*dir).unwrap();
    let kernel = |req: &Request<'_>, res: &mut Response<'_>| {
        let t = req.tls.expect("TLS");
        let _ = res.respond(200, std::iter::empty(), format!("kernel={}", t.kernel).as_bytes());
    };
    let pki = Pki::new("ktls");
    let leaf = pki.server(&["localhost"]);
    let mut setup = setup_for(&[&leaf]);
    setup.set_ktls(true);
    let s = start_tls(kernel, setup, |c| c.static_mounts = vec![mount]);
    let has = kernel_has_tls();
    for versions in [TLS13, TLS12] {
        let config = client_config(&pki, ClientOpts { versions, ..Default::default() });
        let mut c = connect(s.port, &config, "localhost");
        let reply = c.get("/s/f.bin");
        assert_eq!(reply.status, 200);
        assert!(reply.body == data, "the file arrives whole");
        let text = c.get("/").text();
        if !has {
            assert_eq!(text, "kernel=false");
        }
    }
    let stats = s.server.stats();
    assert_eq!((stats.tls_handshakes, stats.tls_handshake_failures), (2, 0));
    if !has {
        assert_eq!(stats.tls_kernel, 0);
    }
}

/// A handshake that completes and a session that fails in the same read
/// (the client's Finished, then a record that does not decrypt, sent
/// together) are both reported: the handshake counted, the failure logged.
#[test]
fn a_session_failing_in_the_read_that_ends_its_handshake_still_counts_the_handshake() {
    let pki = Pki::new("done-then-failed");
    let leaf = pki.server(&["localhost"]);
    let (s, log) = start_tls_logged(setup_for(&[&leaf]));
    let config = client_config(&pki, ClientOpts { versions: TLS13, ..Default::default() });
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    // Up to the server's Finished: the client's own is then queued, unsent.
    while conn.is_handshaking() {
        if conn.wants_write() {
            conn.write_tls(&mut sock).unwrap();
        } else {
            conn.read_tls(&mut sock).unwrap();
            conn.process_new_packets().unwrap();
        }
    }
    // Finished and a 16,000-byte record (longer than one of the server's
    // reads: the handshake ends a read before the record fails) whose tag
    // is spoiled.
    conn.writer().write_all(&[b'x'; 16_000]).unwrap();
    let mut bytes = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut bytes).unwrap();
    }
    *bytes.last_mut().unwrap() ^= 1;
    sock.write_all(&bytes).unwrap();
    let _ = sock.read_to_end(&mut Vec::new());
    assert!(wait_until(IO_TIMEOUT, || log.has("TLS session with 127.0.0.1")), "the failure is logged");
    let stats = s.server.stats();
    assert_eq!((stats.tls_handshakes, stats.tls_handshake_failures), (1, 0));
}
