//! `Acceptor`: a listener's TLS, built from its `TlsSetup` when a server
//! starts or reloads: the rustls `ServerConfig` every connection accepted
//! from then on shares, and whether they move to kernel TLS.

use std::sync::Arc;

use rustls::crypto::ring;
use rustls::server::{ClientHello, NoClientAuth, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use super::certs::{self, Certificate};
use super::ktls::KernelSupport;
use super::setup::{CaSource, CertSource, ClientAuth, TlsSetup, TLS_1_2, TLS_1_3};
use crate::error::{Error, ErrorKind};

/// How many sessions a listener keeps for resumption by session ID (TLS 1.2
/// clients without tickets) when tickets are off.
const SESSION_CACHE: usize = 1024;

/// A listener's TLS, shared by every worker.
#[derive(Debug)]
pub(crate) struct Acceptor {
    pub(crate) config: Arc<ServerConfig>,
    /// What kernel TLS takes on this machine (probed when the acceptor is
    /// built; nothing when the setup turned kernel TLS off): connections
    /// whose negotiated version and cipher it takes move to it.
    pub(crate) ktls: KernelSupport,
    /// Kernel TLS was asked for and the kernel takes none of it: why (logged
    /// once per process when the listener's settings are built).
    ktls_unusable: Option<&'static str>,
    /// A name no certificate has is refused (see `TlsSetup::set_require_sni_match`).
    pub(crate) require_sni_match: bool,
    /// Who may authenticate, for deciding what a reload keeps.
    clients: ClientIdentity,
    /// The lowest TLS version taken (`TLS_1_2` or `TLS_1_3`).
    min_version: u16,
}

/// What decides who a client is: whether certificates are asked for, and
/// the CA certificates they are checked against. A session (ticket or
/// cached) carries the outcome of its full handshake, so sessions made under
/// one identity rule must not resume under another.
#[derive(Debug)]
struct ClientIdentity {
    mode: ClientAuth,
    roots: Option<Arc<RootCertStore>>,
}

impl PartialEq for ClientIdentity {
    /// The same mode, and CA sets with the same trust anchors (subject,
    /// key, name constraints) in the same order.
    fn eq(&self, other: &Self) -> bool {
        self.mode == other.mode
            && match (&self.roots, &other.roots) {
                (None, None) => true,
                (Some(a), Some(b)) => a.roots == b.roots,
                _ => false,
            }
    }
}

/// Chooses a certificate by the name the client asked for (SNI): the first
/// whose names cover it; else the first certificate, or, with
/// `require_match`, none (the handshake fails; the session sends
/// `unrecognized_name`).
#[derive(Debug)]
struct BySni {
    certs: Vec<Certificate>,
    require_match: bool,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello.server_name().and_then(|name| self.certs.iter().find(|c| certs::covers(&c.names, name)));
        let fallback = if self.require_match { None } else { self.certs.first() };
        chosen.or(fallback).map(|c| c.key.clone())
    }
}

impl Acceptor {
    /// Whether a handshake begun under `self` may finish although `other`
    /// replaced it: the same clients are let in the same way (who may
    /// authenticate, whether a name must match, the lowest version).
    pub fn same_rules(&self, other: &Acceptor) -> bool {
        self.clients == other.clients
            && self.require_sni_match == other.require_sni_match
            && self.min_version == other.min_version
    }

    /// Why kernel TLS is not usable for this listener though asked for,
    /// the first time in the process that is asked (it is said once).
    pub(crate) fn ktls_unusable_first_time(&self) -> Option<&'static str> {
        self.ktls_unusable.filter(|_| super::ktls::first_unusable())
    }

    /// Reads the setup's files and builds its `ServerConfig`. The session
    /// ticket keys and session cache of `previous` (the listener's TLS
    /// before a reload) are kept, so that clients resume across reloads,
    /// unless who may authenticate changed (client certificates asked for
    /// or not, other CA certificates): then sessions from before are
    /// forgotten, since resuming one skips the client's certificate.
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
        let clients = match (&setup.client_auth, &setup.client_ca) {
            (ClientAuth::None, _) | (_, None) => ClientIdentity { mode: ClientAuth::None, roots: None },
            (mode, Some(ca)) => {
                let roots: Arc<RootCertStore> = match ca {
                    CaSource::File(path) => {
                        Arc::new(certs::roots_from_pem(&certs::read_file(path, "CA")?, &path.display().to_string())?)
                    }
                    CaSource::Loaded(roots) => roots.clone(),
                };
                ClientIdentity { mode: *mode, roots: Some(roots) }
            }
        };
        let verifier = match &clients.roots {
            None => Arc::new(NoClientAuth) as Arc<_>,
            Some(roots) => {
                let mut verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider);
                if clients.mode == ClientAuth::Optional {
                    verifier = verifier.allow_unauthenticated();
                }
                verifier.build().map_err(|e| tls_error(format!("client certificates: {e}")))?
            }
        };
        let resolver = BySni { certs: chosen, require_match: setup.require_sni_match };
        let mut config = builder.with_client_cert_verifier(verifier).with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = setup.alpn.clone();
        config.enable_secret_extraction = setup.ktls;
        let kept = previous.filter(|p| p.clients == clients).map(|p| &p.config);
        if setup.session_tickets {
            config.ticketer = match kept.filter(|p| p.ticketer.enabled()) {
                Some(p) => p.ticketer.clone(),
                None => ring::Ticketer::new().map_err(|e| tls_error(format!("session tickets: {e}")))?,
            };
        } else {
            // TLS 1.3 would otherwise resume by tickets that name an entry
            // of the session cache (stateful tickets): tickets off means none.
            config.send_tls13_tickets = 0;
        }
        config.session_storage = match kept {
            Some(p) => p.session_storage.clone(),
            None => rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE),
        };
        let (ktls, ktls_unusable) = if setup.ktls {
            let versions: &[u16] = if setup.min_version == TLS_1_3 { &[TLS_1_3] } else { &[TLS_1_2, TLS_1_3] };
            KernelSupport::probed(versions)
        } else {
            (KernelSupport::NONE, None)
        };
        Ok(Acceptor {
            config: Arc::new(config),
            ktls,
            ktls_unusable,
            require_sni_match: setup.require_sni_match,
            clients,
            min_version: setup.min_version,
        })
    }
}
