//! TLS for the socket tests: certificates made at test time (a CA of the
//! test's own, server certificates for names, client certificates; ECDSA
//! P-256, written as PEM files in a temporary directory: no key is
//! committed), and a rustls client that a `Client` reads and writes through.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{Client, Socket, TempDir, IO_TIMEOUT};

/// A test's certificate authority and the files it wrote.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    pub dir: TempDir,
    n: std::cell::Cell<usize>,
}

/// A certificate with its key, as PEM text and as files.
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
    pub chain_path: PathBuf,
    pub key_path: PathBuf,
    pub der: CertificateDer<'static>,
    pub key_der: PrivateKeyDer<'static>,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "warpcore test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = TempDir::new("tls", name);
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { ca, dir, n: std::cell::Cell::new(0) }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        roots
    }

    fn issue(&self, names: &[&str], client: bool) -> Leaf {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("client"));
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let n = self.n.get();
        self.n.set(n + 1);
        let chain_path = self.dir.join(format!("cert{n}.pem"));
        let key_path = self.dir.join(format!("key{n}.pem"));
        std::fs::write(&chain_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Leaf {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain_path,
            key_path,
            der: cert.der().clone(),
            key_der: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.issue(names, false)
    }

    /// A client certificate.
    pub fn client(&self, name: &str) -> Leaf {
        self.issue(&[name], true)
    }
}

/// How a test client speaks TLS.
pub struct ClientOpts<'a> {
    pub versions: &'static [&'static rustls::SupportedProtocolVersion],
    pub alpn: Vec<Vec<u8>>,
    pub cert: Option<&'a Leaf>,
    pub resumption: Option<rustls::client::Resumption>,
}

impl Default for ClientOpts<'_> {
    fn default() -> Self {
        ClientOpts {
            versions: rustls::DEFAULT_VERSIONS,
            alpn: vec![b"http/1.1".to_vec()],
            cert: None,
            resumption: None,
        }
    }
}

#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config trusting `pki`'s CA.
pub fn client_config(pki: &Pki, opts: ClientOpts<'_>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(opts.versions)
        .unwrap()
        .with_root_certificates(pki.roots());
    let mut config = match opts.cert {
        Some(leaf) => builder.with_client_auth_cert(vec![leaf.der.clone()], leaf.key_der.clone_key()).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = opts.alpn;
    if let Some(r) = opts.resumption {
        config.resumption = r;
    }
    Arc::new(config)
}

/// A rustls client session over TCP. A server that closes without
/// `close_notify` reads as the end of the stream.
pub struct TlsSocket(pub StreamOwned<ClientConnection, TcpStream>);

impl Read for TlsSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            r => r,
        }
    }
}

impl Write for TlsSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Socket for TlsSocket {
    fn half_close(&self) {
        // A shared reference cannot send close_notify: the TCP half-close
        // says the same to the server.
        let _ = self.0.sock.shutdown(std::net::Shutdown::Write);
    }
    fn read_timeout(&self, timeout: Duration) {
        self.0.sock.set_read_timeout(Some(timeout)).unwrap();
    }
}

impl TlsSocket {
    pub fn conn(&self) -> &ClientConnection {
        &self.0.conn
    }
}

/// Connects to 127.0.0.1:`port` and completes the handshake, asking for
/// `name` (SNI, and the name the certificate must carry).
pub fn try_connect(port: u16, config: &Arc<ClientConfig>, name: &str) -> io::Result<Client<TlsSocket>> {
    handshake(TcpStream::connect(("127.0.0.1", port))?, config, name)
}

/// `connect` with a small receive buffer (set before connecting, so the
/// window stays small): the server's writes back up quickly.
pub fn connect_with_rcvbuf(port: u16, config: &Arc<ClientConfig>, name: &str, bytes: usize) -> Client<TlsSocket> {
    let plain = Client::connect_with_rcvbuf(port, bytes);
    handshake(plain.stream, config, name).expect("TLS handshake")
}

fn handshake(sock: TcpStream, config: &Arc<ClientConfig>, name: &str) -> io::Result<Client<TlsSocket>> {
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    sock.set_nodelay(true)?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(Client::over(TlsSocket(stream)))
}

pub fn connect(port: u16, config: &Arc<ClientConfig>, name: &str) -> Client<TlsSocket> {
    try_connect(port, config, name).expect("TLS handshake")
}
