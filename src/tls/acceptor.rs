//! `Acceptor`: a listener's TLS, built from its `TlsSetup` when a server
//! starts or reloads: the rustls `ServerConfig` every connection accepted
//! from then on shares, and whether they move to kernel TLS.

use std::sync::Arc;

use rustls::crypto::ring;
use rustls::server::{ClientHello, NoClientAuth, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use super::certs::{self, Certificate};
use super::setup::{CaSource, CertSource, ClientAuth, TlsSetup, TLS_1_3};
use crate::error::{Error, ErrorKind};

/// How many sessions a listener keeps for resumption by session ID (TLS 1.2
/// clients without tickets) when tickets are off.
const SESSION_CACHE: usize = 1024;

/// A listener's TLS, shared by every worker.
#[derive(Debug)]
pub(crate) struct Acceptor {
    pub(crate) config: Arc<ServerConfig>,
    /// Connections move to kernel TLS after their handshake, where the kernel can.
    pub(crate) ktls: bool,
}

/// Chooses a certificate by the name the client asked for (SNI): the first
/// whose names cover it, else the first certificate.
#[derive(Debug)]
struct BySni {
    certs: Vec<Certificate>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello.server_name().and_then(|name| self.certs.iter().find(|c| certs::covers(&c.names, name)));
        chosen.or(self.certs.first()).map(|c| c.key.clone())
    }
}

impl Acceptor {
    /// Reads the setup's files and builds its `ServerConfig`. The session
    /// ticket keys and session cache of `previous` (the listener's TLS
    /// before a reload) are kept, so that clients resume across reloads.
    pub fn build(setup: &TlsSetup, previous: Option<&Acceptor>) -> Result<Acceptor, Error> {
        setup.validate()?;
        let tls_error = |m: String| Error::new(ErrorKind::Tls, m);
        let mut chosen = Vec::with_capacity(setup.certs.len());
        for source in &setup.certs {
            chosen.push(match source {
                CertSource::Files { chain, key } => certs::from_files(chain, key)?,
                CertSource::Loaded(cert) => Certificate { key: cert.key.clone(), names: cert.names.clone() },
            });
        }
        // Deprecated for lacking post-quantum key exchange only: it offers
        // X25519, P-256 and P-384, as OpenSSL 3.0 does.
        #[allow(deprecated)]
        let provider = Arc::new(ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] =
            if setup.min_version == TLS_1_3 { &[&rustls::version::TLS13] } else { rustls::DEFAULT_VERSIONS };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| tls_error(format!("TLS versions: {e}")))?;
        let verifier = match (&setup.client_auth, &setup.client_ca) {
            (ClientAuth::None, _) | (_, None) => Arc::new(NoClientAuth) as Arc<_>,
            (mode, Some(ca)) => {
                let roots: Arc<RootCertStore> = match ca {
                    CaSource::File(path) => {
                        Arc::new(certs::roots_from_pem(&certs::read_file(path, "CA")?, &path.display().to_string())?)
                    }
                    CaSource::Loaded(roots) => roots.clone(),
                };
                let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                if *mode == ClientAuth::Optional {
                    verifier = verifier.allow_unauthenticated();
                }
                verifier.build().map_err(|e| tls_error(format!("client certificates: {e}")))?
            }
        };
        let mut config =
            builder.with_client_cert_verifier(verifier).with_cert_resolver(Arc::new(BySni { certs: chosen }));
        config.alpn_protocols = setup.alpn.clone();
        config.enable_secret_extraction = setup.ktls;
        let kept = previous.map(|p| &p.config);
        if setup.session_tickets {
            config.ticketer = match kept.filter(|p| p.ticketer.enabled()) {
                Some(p) => p.ticketer.clone(),
                None => ring::Ticketer::new().map_err(|e| tls_error(format!("session tickets: {e}")))?,
            };
        }
        config.session_storage = match kept {
            Some(p) => p.session_storage.clone(),
            None => rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE),
        };
        Ok(Acceptor { config: Arc::new(config), ktls: setup.ktls })
    }
}
