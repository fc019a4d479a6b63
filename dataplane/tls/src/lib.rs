//! Server-side TLS for Switchyard's two TCP listeners (the HTTP intake on the shards and the
//! control API): a rustls [`ServerConfig`] built once, whose certificate and key are read
//! from PEM files and re-read by [`ServerTls::reload`] (the binary calls it on SIGHUP).
//!
//! The configuration resolves its certificate through a shared cell on every handshake, so
//! a reload affects new handshakes only: connections already established keep the session
//! they negotiated. A reload that fails (unreadable file, key not matching the certificate)
//! keeps the certificate in force and says why.
//!
//! The crypto provider is always rustls' `ring` provider, named explicitly: the process
//! links other rustls users whose features may enable a second provider, and rustls then
//! refuses to pick a process default.
//!
//! Nothing here logs, and no error carries key material (only paths and rustls' reasons).
//! Emits no metrics.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Largest certificate chain or key file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Why TLS could not be set up or reloaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not what it should be (no certificate, no key, invalid PEM, too large).
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate, the key or the pair (e.g. the key does not match).
    #[error("certificate {cert} with key {key}: {reason}")]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        reason: String,
    },
}

/// A reloadable server TLS setup for one listener.
#[derive(Debug, Clone)]
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Resolver>,
    config: Arc<ServerConfig>,
}

/// The certificate in force, swapped by a reload.
#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        )
    }
}

fn read_capped(path: &Path) -> Result<Vec<u8>, TlsError> {
    let mut out = Vec::new();
    #[allow(clippy::disallowed_methods)] // capped by `take`
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES + 1).read_to_end(&mut out))
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::Invalid {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_PEM_BYTES} bytes"),
        });
    }
    Ok(out)
}

/// Reads the chain and key and checks that they belong together.
fn certified_key(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let invalid = |path: &Path, reason: String| TlsError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let pem = read_capped(cert)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, format!("invalid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(cert, "no CERTIFICATE in it".into()));
    }
    let pem = read_capped(key)?;
    // The error of a key file never quotes the file (it would be the key).
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        invalid(
            key,
            match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    "no PRIVATE KEY (PKCS#8, PKCS#1 or SEC1) in it".into()
                }
                _ => "invalid PEM".into(),
            },
        )
    })?;
    let rejected = |reason: String| TlsError::Rejected {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| rejected(e.to_string()))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| rejected(e.to_string()))?;
    Ok(Arc::new(ck))
}

impl ServerTls {
    /// Reads `cert` (a PEM chain, leaf first) and `key` (PEM PKCS#8, PKCS#1 or SEC1) and
    /// builds a server configuration offering `alpn` (e.g. `[b"http/1.1"]`), TLS 1.2 and 1.3.
    ///
    /// # Errors
    /// [`TlsError`] naming the file and what is wrong.
    pub fn load(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = certified_key(&provider, cert, key)?;
        let resolver = Arc::new(Resolver(RwLock::new(current)));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rejected {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            resolver,
            config: Arc::new(config),
        })
    }

    /// The server configuration (shared: a reload changes what it serves).
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// Re-reads the certificate and key files; new handshakes use them. On error the
    /// certificate in force stays.
    ///
    /// # Errors
    /// [`TlsError`] naming the file and what is wrong.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = certified_key(&self.provider, &self.cert, &self.key)?;
        *self
            .resolver
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, ck.cert.pem()).unwrap();
        std::fs::write(&k, ck.key_pair.serialize_pem()).unwrap();
        (c, k, ck.cert.der().to_vec())
    }

    fn served(tls: &ServerTls) -> Vec<u8> {
        tls.resolver.0.read().unwrap().cert[0].as_ref().to_vec()
    }

    #[test]
    fn loads_reloads_and_keeps_the_old_certificate_on_a_bad_reload() {
        let dir = std::env::temp_dir().join(format!("sy-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k, first) = write_pair(&dir, "first.test");
        let tls = ServerTls::load(&c, &k, &[b"http/1.1"]).unwrap();
        assert_eq!(served(&tls), first);
        assert_eq!(tls.config().alpn_protocols, vec![b"http/1.1".to_vec()]);

        let (_, _, second) = write_pair(&dir, "second.test");
        tls.reload().unwrap();
        assert_eq!(served(&tls), second);

        // A key that does not match the certificate: refused, the second pair stays.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&k, other.serialize_pem()).unwrap();
        let e = tls.reload().unwrap_err();
        assert!(matches!(e, TlsError::Rejected { .. }), "{e}");
        assert_eq!(served(&tls), second);

        // Not PEM at all: the error names the file and never quotes it.
        std::fs::write(&k, "secret-not-a-key").unwrap();
        let e = tls.reload().unwrap_err().to_string();
        assert!(
            e.contains("key.pem") && !e.contains("secret-not-a-key"),
            "{e}"
        );
        std::fs::remove_file(&c).unwrap();
        let e = tls.reload().unwrap_err().to_string();
        assert!(e.contains("cert.pem"), "{e}");
        assert_eq!(served(&tls), second);
        let _ = std::fs::remove_dir_all(dir);
    }
}
