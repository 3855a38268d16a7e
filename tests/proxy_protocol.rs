//! The PROXY protocol on listeners, over real sockets: the address a header
//! carries becomes the peer of the request view and of the access log; a
//! malformed or missing (when required) header closes the connection with
//! nothing sent; per-listener modes; bounded in time (the header timeout).
//! (Bounded in memory: tests/hostile_memory.rs.)

mod util;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use util::*;
use warpcore::{AccessLogSink, AccessLogTarget, Config, ProxyProtocol, ProxyProtocols, Request, Response};

/// Answers the request's peer as the handler sees it: `IP PORT`.
fn peer_handler(req: &Request<'_>, res: &mut Response<'_>) {
    let text = format!("{} {}", String::from_utf8_lossy(req.peer_ip), req.peer.port());
    let _ = res.respond(200, std::iter::empty(), text.as_bytes());
}

fn with_mode(mode: ProxyProtocol) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| c.proxy_protocol = ProxyProtocols { default: mode, listeners: Vec::new() }
}

fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[command, family]);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(body);
    h
}

fn v2_tcp4(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut body = src.to_vec();
    body.extend_from_slice(&[10, 0, 0, 1]);
    body.extend_from_slice(&port.to_be_bytes());
    body.extend_from_slice(&443u16.to_be_bytes());
    v2(0x21, 0x11, &body)
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

#[derive(Default)]
struct Lines(Mutex<Vec<u8>>);

impl AccessLogSink for Lines {
    fn write(&self, lines: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(lines);
    }
}

#[test]
fn a_v1_header_s_client_is_the_peer_of_every_request_and_of_the_access_log() {
    let lines = Arc::new(Lines::default());
    let sink = lines.clone();
    let s = start_with(peer_handler, move |c| {
        with_mode(ProxyProtocol::Required)(c);
        c.access_log = Some(AccessLogTarget::Sink(sink));
    });
    let mut c = s.connect();
    c.send(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
    c.send(GET);
    assert_eq!(c.read_response(false).text(), "192.0.2.1 56324");
    // The connection keeps it for its later requests.
    assert_eq!(c.get("/again").text(), "192.0.2.1 56324");
    assert!(wait_until(Duration::from_secs(5), || lines
        .0
        .lock()
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
        == 2));
    let log = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    assert!(log.lines().all(|l| l.starts_with("192.0.2.1 - - [")), "{log}");
}

#[test]
fn v2_headers_carry_ipv4_and_ipv6_clients_and_local_keeps_the_socket_s() {
    let s = start_with(peer_handler, with_mode(ProxyProtocol::Required));
    let mut c = s.connect();
    c.send(&[v2_tcp4([203, 0, 113, 7], 40000), GET.to_vec()].concat());
    assert_eq!(c.read_response(false).text(), "203.0.113.7 40000");

    let mut body = vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    body.extend_from_slice(&[0; 16]);
    body.extend_from_slice(&8080u16.to_be_bytes());
    body.extend_from_slice(&80u16.to_be_bytes());
    body.extend_from_slice(&[0xEA, 0, 2, b'x', b'y']); // a TLV, skipped
    let mut c = s.connect();
    c.send(&[v2(0x21, 0x21, &body), GET.to_vec()].concat());
    assert_eq!(c.read_response(false).text(), "2001:db8::9 8080");

    // LOCAL (the balancer's health check) and UNKNOWN: the socket's peer;
    // LOCAL whatever family it names (ignored, as the specification says).
    for header in [v2(0x20, 0x00, &[]), v2(0x20, 0x44, &[7; 5]), b"PROXY UNKNOWN\r\n".to_vec()] {
        let mut c = s.connect();
        let local = c.stream.local_addr().unwrap().port();
        c.send(&[header, GET.to_vec()].concat());
        assert_eq!(c.read_response(false).text(), format!("127.0.0.1 {local}"));
    }
}

#[test]
fn a_header_that_arrives_a_byte_at_a_time_is_read_whole() {
    let s = start_with(peer_handler, with_mode(ProxyProtocol::Required));
    for header in [v2_tcp4([198, 51, 100, 1], 1), b"PROXY TCP6 ::1 ::2 65535 1\r\n".to_vec()] {
        let mut c = s.connect();
        for b in &header {
            c.send(&[*b]);
            std::thread::sleep(Duration::from_millis(2));
        }
        c.send(GET);
        let text = c.read_response(false).text();
        assert!(text == "198.51.100.1 1" || text == "::1 65535", "{text}");
    }
}

#[test]
fn required_closes_a_connection_without_a_header_or_with_a_malformed_one_sending_nothing() {
    let s = start_with(peer_handler, with_mode(ProxyProtocol::Required));
    for bad in [
        GET.to_vec(),
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        b"PROXY TCP4 300.0.2.1 198.51.100.2 1 2\r\n".to_vec(),
        [b"PROXY UNKNOWN ".to_vec(), vec![b'a'; 200]].concat(),
        v2(0x22, 0x11, &[0; 12]),
        v2(0x21, 0x11, &[0; 4]),
    ] {
        let got = exchange(s.port, &bad);
        assert!(got.is_empty(), "sent {:?}, got {:?}", String::from_utf8_lossy(&bad), String::from_utf8_lossy(&got));
    }
    let stats = s.server.stats();
    assert_eq!(stats.requests, 0, "no request was handled");
    // The server goes on.
    let mut c = s.connect();
    c.send(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
    c.send(GET);
    assert_eq!(c.read_response(false).status, 200);
}

#[test]
fn optional_takes_a_header_when_there_is_one_and_plain_http_otherwise() {
    let s = start_with(peer_handler, with_mode(ProxyProtocol::Optional));
    let mut c = s.connect();
    c.send(&[b"PROXY TCP4 192.0.2.1 198.51.100.2 5 443\r\n".to_vec(), GET.to_vec()].concat());
    assert_eq!(c.read_response(false).text(), "192.0.2.1 5");
    let mut c = s.connect();
    let local = c.stream.local_addr().unwrap().port();
    assert_eq!(c.get("/").text(), format!("127.0.0.1 {local}"));
    // A malformed header is still refused.
    assert!(exchange(s.port, b"PROXY TCP4 nonsense\r\n\r\n").is_empty());
}

#[test]
fn without_the_protocol_a_header_is_just_a_bad_request() {
    let s = start(peer_handler);
    let got = exchange(s.port, &[b"PROXY TCP4 192.0.2.1 198.51.100.2 5 443\r\n".to_vec(), GET.to_vec()].concat());
    assert!(got.starts_with(b"HTTP/1.1 400 "), "{}", String::from_utf8_lossy(&got));
}

#[test]
fn each_listener_has_its_mode_and_a_reload_changes_it() {
    // The TCP listener is the load balancer's; the Unix one takes direct clients.
    let dir = TempDir::new("proxy", "listeners");
    let unix = format!("unix:{}", dir.join("direct.sock").display());
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        listeners: vec![unix.clone()],
        workers: 1,
        handler: Some(Arc::new(peer_handler)),
        proxy_protocol: ProxyProtocols {
            default: ProxyProtocol::None,
            listeners: vec![("127.0.0.1:0".into(), ProxyProtocol::Required)],
        },
        ..Config::default()
    };
    let server = warpcore::Server::start(&config).unwrap();
    let balanced = server.port();
    let header = b"PROXY TCP4 192.0.2.1 198.51.100.2 7 443\r\n".to_vec();
    let close = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec();
    let direct = |bytes: &[u8]| {
        let mut c = Client::connect_unix(&dir.join("direct.sock"));
        c.send(bytes);
        c.read_to_eof()
    };
    let via_balancer = exchange(balanced, &[header.clone(), close.clone()].concat());
    assert!(via_balancer.ends_with(b"192.0.2.1 7"), "{}", String::from_utf8_lossy(&via_balancer));
    assert!(exchange(balanced, GET).is_empty(), "the balancer's port requires the header");
    let plain = direct(&close);
    assert!(plain.ends_with(b"unix: 0"), "{}", String::from_utf8_lossy(&plain));
    let spoofed = direct(&[header.clone(), close.clone()].concat());
    assert!(spoofed.starts_with(b"HTTP/1.1 400"), "a direct client cannot claim an address");

    // A reload makes the direct listener take optional headers.
    config.listen = format!("127.0.0.1:{balanced}");
    config.proxy_protocol.listeners =
        vec![(config.listen.clone(), ProxyProtocol::Required), (unix.clone(), ProxyProtocol::Optional)];
    server.reload(&config).unwrap();
    let now = direct(&[header, close.clone()].concat());
    assert!(now.ends_with(b"192.0.2.1 7"), "{}", String::from_utf8_lossy(&now));
    assert!(direct(&close).ends_with(b"unix: 0"));
    assert!(exchange(balanced, GET).is_empty());
}

#[test]
fn a_header_that_does_not_arrive_in_the_header_timeout_closes_the_connection() {
    let s = start_with(peer_handler, |c| {
        with_mode(ProxyProtocol::Required)(c);
        c.header_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(30);
    });
    let mut c = s.connect();
    c.send(b"PROXY TCP4 192.0.2.1 ");
    let started = Instant::now();
    assert!(c.read_to_eof().is_empty());
    // Swept once a second: between 1 and 3 s.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "{took:?}");
    // Silence from the start is bounded the same way (not by the idle timeout).
    let mut c = s.connect();
    let started = Instant::now();
    assert!(c.read_to_eof().is_empty());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
