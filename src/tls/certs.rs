//! Certificates and keys: PEM in, rustls's `CertifiedKey` out, with the DNS
//! names a handshake's SNI chooses it by; and the CA certificates client
//! certificates are checked against.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use crate::error::{Error, ErrorKind};

/// A certificate chain with its key, ready to present.
#[derive(Debug)]
pub(crate) struct Certificate {
    pub key: Arc<CertifiedKey>,
    /// The DNS names of its subjectAltName, lowercase (`example.com`,
    /// `*.example.com`), for choosing it by SNI; never for verification.
    pub names: Vec<String>,
}

fn tls_error(message: String) -> Error {
    Error::new(ErrorKind::Tls, message)
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| tls_error(format!("cannot read the {what} file {}: {e}", path.display())))
}

/// Parses a PEM certificate chain (leaf first) and its PEM private key
/// (PKCS#8, PKCS#1 RSA or SEC1 EC), and checks that they belong together.
/// `chain_name` and `key_name` say where they came from, for the errors.
pub(crate) fn from_pem(chain: &[u8], key: &[u8], chain_name: &str, key_name: &str) -> Result<Certificate, Error> {
    let certs = parse_chain(chain, chain_name)?;
    let der = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
        pem::Error::NoItemsFound => tls_error(format!("{key_name}: no private key in it (a PEM 'PRIVATE KEY' block)")),
        e => tls_error(format!("{key_name}: not a PEM private key ({e})")),
    })?;
    let signer =
        any_supported_type(&der).map_err(|e| tls_error(format!("{key_name}: the private key cannot be used ({e})")))?;
    let certified = CertifiedKey::new(certs, signer);
    certified.keys_match().map_err(|e| {
        tls_error(format!("{key_name} is not the private key of the certificate in {chain_name} ({e})"))
    })?;
    let names = dns_names(&certified.cert[0]);
    Ok(Certificate { key: Arc::new(certified), names })
}

/// Reads a certificate chain file and its key file (see `from_pem`).
pub(crate) fn from_files(chain: &Path, key: &Path) -> Result<Certificate, Error> {
    let chain_pem = read_file(chain, "certificate")?;
    let key_pem = read_file(key, "key")?;
    from_pem(&chain_pem, &key_pem, &chain.display().to_string(), &key.display().to_string())
}

/// Every certificate in a PEM text, in order; at least one.
fn parse_chain(pem_text: &[u8], name: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(format!("{name}: not a PEM certificate chain ({e})")))?;
    if certs.is_empty() {
        return Err(tls_error(format!("{name}: no certificate in it (a PEM 'CERTIFICATE' block)")));
    }
    Ok(certs)
}

/// The CA certificates in a PEM text, as trust anchors for client certificates.
pub(crate) fn roots_from_pem(pem_text: &[u8], name: &str) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in parse_chain(pem_text, name)? {
        roots.add(cert).map_err(|e| tls_error(format!("{name}: a CA certificate cannot be used ({e})")))?;
    }
    Ok(roots)
}

/// The DNS names of a leaf certificate's subjectAltName, lowercase.
fn dns_names(leaf: &CertificateDer<'_>) -> Vec<String> {
    webpki::EndEntityCert::try_from(leaf)
        .map(|cert| cert.valid_dns_names().map(str::to_ascii_lowercase).collect())
        .unwrap_or_default()
}

/// Whether `name` (an SNI host name) is one of `names`: equal ignoring
/// case, or under a wildcard (`*.example.com` covers `a.example.com`, not
/// `example.com` nor `a.b.example.com`).
pub(crate) fn covers(names: &[String], name: &str) -> bool {
    names.iter().any(|n| match n.strip_prefix("*.") {
        Some(parent) => {
            name.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(parent))
        }
        None => n.eq_ignore_ascii_case(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        let names = vec!["example.com".to_owned(), "*.example.org".to_owned()];
        assert!(covers(&names, "EXAMPLE.com"));
        assert!(covers(&names, "a.example.org"));
        assert!(!covers(&names, "example.org"));
        assert!(!covers(&names, "a.b.example.org"));
        assert!(!covers(&names, ".example.org"));
        assert!(!covers(&names, "example.net"));
    }

    #[test]
    fn bad_pem_is_named() {
        let e = from_pem(b"nonsense", b"", "chain.pem", "key.pem").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Tls);
        assert!(e.message.contains("chain.pem") && e.message.contains("no certificate"), "{e}");
    }
}
