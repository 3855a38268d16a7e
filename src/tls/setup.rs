//! `TlsSetup`: how a listener speaks TLS, as an embedder describes it. It is
//! checked as it is filled in, and turned into a rustls `ServerConfig` (an
//! `Acceptor`) when a server starts or reloads: certificate files are read
//! again then, so that a reload installs the certificates on disk.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::RootCertStore;

use super::certs::{self, Certificate};
use crate::error::{Error, ErrorKind};

/// TLS 1.2 (`0x0303`), the lowest version a listener accepts by default.
pub const TLS_1_2: u16 = 0x0303;
/// TLS 1.3 (`0x0304`).
pub const TLS_1_3: u16 = 0x0304;

/// Where a certificate comes from.
#[derive(Debug, Clone)]
pub(crate) enum CertSource {
    /// PEM files, read at every start and reload.
    Files { chain: PathBuf, key: PathBuf },
    /// PEM text given in memory, parsed once.
    Loaded(Arc<Certificate>),
}

/// Where the CA certificates for client certificates come from.
#[derive(Debug, Clone)]
pub(crate) enum CaSource {
    /// A PEM file, read at every start and reload.
    File(PathBuf),
    /// PEM text given in memory, parsed once.
    Loaded(Arc<RootCertStore>),
}

/// Whether clients present certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// None is asked for (the default).
    None,
    /// One is asked for; a client without one is served too. A certificate
    /// that is presented must verify.
    Optional,
    /// One that verifies is required; the handshake fails without it.
    Required,
}

/// How a listener speaks TLS: its certificates (the first is the default,
/// the others are chosen by the name the client asks for, SNI; or, with
/// `require_sni_match`, a name no certificate has is refused), ALPN, client
/// certificates, session tickets, kernel TLS and the lowest version.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    pub(crate) certs: Vec<CertSource>,
    pub(crate) alpn: Vec<Vec<u8>>,
    pub(crate) client_auth: ClientAuth,
    pub(crate) client_ca: Option<CaSource>,
    pub(crate) session_tickets: bool,
    pub(crate) ktls: bool,
    pub(crate) min_version: u16,
    pub(crate) require_sni_match: bool,
}

impl Default for TlsSetup {
    fn default() -> Self {
        TlsSetup {
            certs: Vec::new(),
            alpn: vec![b"http/1.1".to_vec()],
            client_auth: ClientAuth::None,
            client_ca: None,
            session_tickets: true,
            ktls: true,
            min_version: TLS_1_2,
            require_sni_match: false,
        }
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

impl TlsSetup {
    /// A setup with no certificate yet, ALPN `http/1.1`, no client
    /// certificates, session tickets and kernel TLS on, TLS 1.2 and 1.3.
    pub fn new() -> TlsSetup {
        TlsSetup::default()
    }

    /// Adds a certificate chain (PEM, leaf first) and its private key (PEM)
    /// from files: read and checked now, and read again at every start and
    /// reload (so replacing the files and reloading installs the new ones).
    pub fn add_cert_files(&mut self, chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<(), Error> {
        let (chain, key) = (chain.into(), key.into());
        certs::from_files(&chain, &key)?;
        self.certs.push(CertSource::Files { chain, key });
        Ok(())
    }

    /// Adds a certificate chain and its private key given as PEM text.
    pub fn add_cert_pem(&mut self, chain: &[u8], key: &[u8]) -> Result<(), Error> {
        let cert = certs::from_pem(chain, key, "the certificate PEM", "the key PEM")?;
        self.certs.push(CertSource::Loaded(Arc::new(cert)));
        Ok(())
    }

    /// The protocols offered by ALPN, in order of preference: `http/1.1`
    /// only for now (`h2` is refused until the engine speaks it). An empty
    /// list turns ALPN off.
    pub fn set_alpn(&mut self, protocols: &[&[u8]]) -> Result<(), Error> {
        for p in protocols {
            if p.is_empty() || p.len() > 255 {
                return Err(invalid("an ALPN protocol name is 1 to 255 bytes"));
            }
            if *p != b"http/1.1" {
                return Err(invalid(format!(
                    "ALPN protocol '{}' is not served: only http/1.1 is",
                    String::from_utf8_lossy(p)
                )));
            }
        }
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        Ok(())
    }

    /// Asks clients for certificates (`Optional`, `Required`), checked against
    /// the CA certificates in PEM text `ca_pem`; `None` asks for none (and
    /// `ca_pem` may be empty).
    pub fn set_client_auth_pem(&mut self, mode: ClientAuth, ca_pem: &[u8]) -> Result<(), Error> {
        let ca = match mode {
            ClientAuth::None => None,
            _ => Some(CaSource::Loaded(Arc::new(certs::roots_from_pem(ca_pem, "the CA PEM")?))),
        };
        self.client_auth = mode;
        self.client_ca = ca;
        Ok(())
    }

    /// `set_client_auth_pem` with the CA certificates in a PEM file, read
    /// and checked now and again at every start and reload.
    pub fn set_client_auth_file(&mut self, mode: ClientAuth, ca_file: impl Into<PathBuf>) -> Result<(), Error> {
        let path = ca_file.into();
        let ca = match mode {
            ClientAuth::None => None,
            _ => {
                certs::roots_from_pem(&certs::read_file(&path, "CA")?, &path.display().to_string())?;
                Some(CaSource::File(path))
            }
        };
        self.client_auth = mode;
        self.client_ca = ca;
        Ok(())
    }

    /// Whether clients may resume sessions with tickets (TLS 1.3 and 1.2),
    /// which save the next handshake's key exchange and signature. Default
    /// on. Off, TLS 1.3 clients never resume; TLS 1.2 clients may still
    /// resume by session ID from the listener's cache.
    pub fn set_session_tickets(&mut self, on: bool) {
        self.session_tickets = on;
    }

    /// Whether the kernel encrypts the connection's records after the
    /// handshake (Linux kernel TLS), where it can: files are then sent with
    /// `sendfile` without passing through the process. Default on.
    pub fn set_ktls(&mut self, on: bool) {
        self.ktls = on;
    }

    /// Whether a client must ask (SNI) for a name one of the certificates
    /// has: on, a client that asks for another name, or for none (as
    /// clients connecting to an IP address do), fails its handshake with an
    /// `unrecognized_name` alert; off (the default), it gets the first
    /// certificate.
    pub fn set_require_sni_match(&mut self, on: bool) {
        self.require_sni_match = on;
    }

    /// The lowest TLS version accepted: `TLS_1_2` (the default) or `TLS_1_3`.
    pub fn set_min_version(&mut self, version: u16) -> Result<(), Error> {
        if version != TLS_1_2 && version != TLS_1_3 {
            return Err(invalid("the lowest TLS version is 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3)"));
        }
        self.min_version = version;
        Ok(())
    }

    /// Checks that the setup can serve: it has a certificate.
    pub fn validate(&self) -> Result<(), Error> {
        if self.certs.is_empty() {
            return Err(Error::new(ErrorKind::Tls, "a TLS listener needs a certificate and its key"));
        }
        Ok(())
    }
}
