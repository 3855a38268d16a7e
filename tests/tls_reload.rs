//! Reloading a TLS listener while connections wait: a connection accepted
//! before the reload and silent since begins its handshake under the new
//! rules (a client may not open sockets early to skip a certificate the reload
//! starts to require), and a reload that keeps the rules drops nothing.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use util::tls::{client_config, try_connect, ClientOpts, Pki};
use util::*;
use warpcore::{ClientAuth, Config, Request, Response, Server, TlsSetup};

static TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

fn client_cert(req: &Request<'_>, res: &mut Response<'_>) {
    let der = req.tls.and_then(|t| t.peer_certs.first()).map(|c| c.to_vec()).unwrap_or_default();
    let text = format!("certs={} resumed={}", der.len(), req.tls.map(|t| t.resumed).unwrap_or(false));
    let _ = res.respond(200, std::iter::empty(), text.as_bytes());
}

fn tls_config(setup: TlsSetup) -> Config {
    let mut c = Config { listen: String::new(), workers: 1, handler: Some(Arc::new(client_cert)), ..Config::default() };
    c.add_tls_listener("127.0.0.1:0", setup).unwrap();
    c
}

fn get_over(mut c: Client<util::tls::TlsSocket>) -> Option<(u16, String)> {
    c.stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match c.stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
        if let Some((reply, _)) = parse_response(&got, false) {
            return Some((reply.status, String::from_utf8_lossy(&reply.body).into_owned()));
        }
    }
}

/// Handshake over an already connected TCP socket.
fn handshake_over(
    sock: TcpStream,
    config: &Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<Client<util::tls::TlsSocket>> {
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(Client::over(util::tls::TlsSocket(stream)))
}

fn setup_for(leaf: &util::tls::Leaf) -> TlsSetup {
    let mut s = TlsSetup::new();
    s.add_cert_files(&leaf.chain_path, &leaf.key_path).unwrap();
    s
}

/// `setup_for` that refuses clients without a certificate of `pki`'s CA.
fn requiring_certificates(pki: &Pki, leaf: &util::tls::Leaf) -> TlsSetup {
    let mut s = setup_for(leaf);
    s.set_client_auth_file(ClientAuth::Required, pki.ca_path()).unwrap();
    s
}

/// `n` connections the server has accepted, which have sent nothing.
fn accepted_silent(server: &Server, n: u64) -> Vec<TcpStream> {
    let before = server.stats().connections_accepted;
    let socks = (0..n).map(|_| TcpStream::connect(("127.0.0.1", server.port())).unwrap()).collect();
    assert!(wait_until(IO_TIMEOUT, || server.stats().connections_accepted >= before + n));
    socks
}

/// Connections accepted before a reload that starts requiring client
/// certificates, silent until after it: they handshake under the new rule
/// (refused without a certificate), as a connection made after it does.
#[test]
fn connections_accepted_before_a_reload_handshake_under_its_rules() {
    let pki = Pki::new("reload-early");
    let leaf = pki.server(&["localhost"]);
    let server = Server::start(&tls_config(setup_for(&leaf))).unwrap();
    let port = server.port();
    let early = accepted_silent(&server, 2);
    server.reload(&tls_config(requiring_certificates(&pki, &leaf))).unwrap();
    let anonymous = client_config(&pki, ClientOpts { versions: TLS13, ..Default::default() });
    let fresh = try_connect(port, &anonymous, "localhost").ok().and_then(get_over);
    assert_eq!(fresh, None, "a new connection needs a certificate");
    for sock in early {
        let got = handshake_over(sock, &anonymous, "localhost").ok().and_then(get_over);
        assert_eq!(got, None, "a connection accepted before the reload got in without a certificate");
    }
    // With a certificate, one accepted before the reload is served.
    let early = accepted_silent(&server, 1).pop().unwrap();
    server.reload(&tls_config(requiring_certificates(&pki, &leaf))).unwrap();
    let alice_cert = pki.client("alice");
    let alice = client_config(&pki, ClientOpts { versions: TLS13, cert: Some(&alice_cert), ..Default::default() });
    let got = handshake_over(early, &alice, "localhost").ok().and_then(get_over);
    assert!(
        matches!(got, Some((200, ref text)) if text.starts_with("certs=") && text != "certs=0 resumed=false"),
        "{got:?}"
    );
}

/// A reload that changes nothing of who gets in (the same certificate files
/// read again) drops no connection waiting to handshake: it begins under the
/// new acceptor and is served.
#[test]
fn a_reload_that_keeps_the_rules_drops_no_waiting_connection() {
    let pki = Pki::new("reload-keep");
    let leaf = pki.server(&["localhost"]);
    let server = Server::start(&tls_config(setup_for(&leaf))).unwrap();
    let early = accepted_silent(&server, 1).pop().unwrap();
    server.reload(&tls_config(setup_for(&leaf))).unwrap();
    let anonymous = client_config(&pki, ClientOpts { versions: TLS12, ..Default::default() });
    assert_eq!(handshake_over(early, &anonymous, "localhost").ok().and_then(get_over).map(|r| r.0), Some(200));
}
