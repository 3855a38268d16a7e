//! TLS listeners against the command-line clients people check servers with:
//! `openssl s_client` (TLS 1.2 and 1.3, SNI choosing the certificate or,
//! required, refusing a name; ALPN, a client certificate required: missing
//! and given) and `curl` (requests over TLS 1.2 and 1.3, the certificate
//! verified). Certificates are made at test time (rcgen).

mod util;

use std::io::Write;
use std::process::{Command, Stdio};

use util::tls::Pki;
use util::*;
use warpcore::{ClientAuth, Config, Request, Response, TlsSetup};

fn view(req: &Request<'_>, res: &mut Response<'_>) {
    let t = req.tls.expect("a TLS connection");
    let text = format!(
        "v={:04x} sni={} alpn={} certs={}",
        t.version,
        t.sni,
        String::from_utf8_lossy(&t.alpn),
        t.peer_certs.len()
    );
    let _ = res.respond(200, std::iter::empty(), text.as_bytes());
}

/// `openssl s_client` with `args`, sending one GET (or nothing); its stdout and stderr together.
fn s_client(port: u16, args: &[&str], request: bool) -> String {
    let mut child = Command::new("timeout")
        .args(["20", "openssl", "s_client", "-connect", &format!("127.0.0.1:{port}")])
        // With a request: read until the server closes after its answer.
        .args(if request { &["-ign_eof"][..] } else { &[][..] })
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    let mut stdin = child.stdin.take().unwrap();
    if request {
        stdin.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn curl(port: u16, pki: &Pki, args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(pki.ca_path())
        .args(["--resolve", &format!("a.test:{port}:127.0.0.1")])
        .args(args)
        .arg(format!("https://a.test:{port}/"))
        .output()
        .expect("curl runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn openssl_s_client_and_curl_see_versions_sni_alpn_and_client_certificates() {
    let pki = Pki::new("cli");
    let a = pki.server(&["a.test"]);
    let b = pki.server(&["b.test"]);
    let client = pki.client("carol");
    let mut setup = TlsSetup::new();
    setup.add_cert_files(&a.chain_path, &a.key_path).unwrap();
    setup.add_cert_files(&b.chain_path, &b.key_path).unwrap();
    let s = start_with(view, |c: &mut Config| {
        c.listen = String::new();
        c.add_tls_listener("127.0.0.1:0", setup.clone()).unwrap();
    });
    let ca = pki.ca_path().display().to_string();
    for (flag, want) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(s.port, &[flag, "-servername", "b.test", "-alpn", "http/1.1", "-CAfile", &ca], true);
        assert!(out.contains(&format!("Protocol  : {want}")) || out.contains(&format!("New, {want}")), "{out}");
        assert!(out.contains("CN = b.test") || out.contains("CN=b.test"), "SNI chose b.test: {out}");
        assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        let v = if want == "TLSv1.2" { "0303" } else { "0304" };
        assert!(out.contains(&format!("v={v} sni=b.test alpn=http/1.1 certs=0")), "{out}");
    }
    // Without SNI: the first certificate.
    let out = s_client(s.port, &["-noservername", "-CAfile", &ca], false);
    assert!(out.contains("CN = a.test") || out.contains("CN=a.test"), "{out}");
    // Unless a name is required: then the unrecognized_name alert (112).
    let mut strict = setup.clone();
    strict.set_require_sni_match(true);
    let s_strict = start_with(view, |c: &mut Config| {
        c.listen = String::new();
        c.add_tls_listener("127.0.0.1:0", strict).unwrap();
    });
    for args in [&["-noservername"][..], &["-servername", "c.test"][..]] {
        let out = s_client(s_strict.port, &[args, &["-CAfile", &ca]].concat(), false);
        assert!(out.contains("alert number 112") || out.contains("unrecognized name"), "{args:?}: {out}");
    }
    let out = s_client(s_strict.port, &["-servername", "b.test", "-CAfile", &ca], true);
    assert!(out.contains("v=0304 sni=b.test"), "{out}");
    for flag in ["--tlsv1.2", "--tlsv1.3"] {
        let max = if flag == "--tlsv1.2" { "1.2" } else { "1.3" };
        let (ok, body) = curl(s.port, &pki, &[flag, "--tls-max", max]);
        assert!(
            ok && body.starts_with(&format!("v=030{} sni=a.test alpn=http/1.1", if max == "1.2" { 3 } else { 4 })),
            "{body}"
        );
    }

    // A client certificate required.
    let mut setup = TlsSetup::new();
    setup.add_cert_files(&a.chain_path, &a.key_path).unwrap();
    setup.set_client_auth_file(ClientAuth::Required, pki.ca_path()).unwrap();
    let s = start_with(view, |c: &mut Config| {
        c.listen = String::new();
        c.add_tls_listener("127.0.0.1:0", setup).unwrap();
    });
    let cert = client.chain_path.display().to_string();
    let key = client.key_path.display().to_string();
    let out = s_client(s.port, &["-servername", "a.test", "-CAfile", &ca, "-cert", &cert, "-key", &key], true);
    // The client's certificate (and the CA's, which OpenSSL sends after it).
    assert!(out.contains("certs=1") || out.contains("certs=2"), "{out}");
    let out = s_client(s.port, &["-servername", "a.test", "-CAfile", &ca], true);
    assert!(!out.contains("certs="), "served without a certificate: {out}");
    assert!(out.to_ascii_lowercase().contains("alert"), "{out}");
    let (ok, _) = curl(s.port, &pki, &[]);
    assert!(!ok, "curl without a client certificate is refused");
    let (ok, body) = curl(s.port, &pki, &["--cert", &cert, "--key", &key]);
    assert!(ok && (body.ends_with("certs=1") || body.ends_with("certs=2")), "{body}");
}
