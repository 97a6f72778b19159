//! TLS for AMQPS, the admin API's HTTPS and a cluster's replication link (`--cluster-tls`): loading the certificate, key and CA from PEM files into rustls server
//! configurations, reloading them (SIGHUP), and reading the client certificate's CN for the EXTERNAL mechanism.
//!
//! Invariants:
//! - Every handshake reads the configuration current at its start ([`Tls::amqp_acceptor`],
//!   [`Tls::admin_acceptor`]); a reload swaps the whole configuration at once, so connections already open keep the
//!   certificate they were served with, and a handshake never sees half of an old and half of a new set of files.
//! - A reload that fails (a missing or bad file, a key that does not match the certificate) changes nothing: the
//!   previous configuration stays in force and the error is returned for the caller to log.
//! - File reads happen at start (before the runtime serves anyone) or in `spawn_blocking` on reload, never on an
//!   async worker. The lock around the current configuration is only held to clone an `Arc`, never across `.await`.
//! - Client certificates (`verify_peer`, `fail_if_no_peer_cert`, with RabbitMQ's meaning) apply to AMQPS only. The
//!   admin API authenticates with basic auth and never asks for one.
//! - The replication link's server side offers the broker's certificate without asking for a client's (nodes prove
//!   themselves with the cluster's secret, `cluster/auth.rs`); its client side (a follower) verifies the leader's
//!   certificate against the CA file, for the host the leader advertised. Both use ALPN `warren-repl`.
//! - Only the ring crypto provider is used, named explicitly, so that no process-wide default provider is needed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The replication link's ALPN protocol.
const REPLICATION_ALPN: &[u8] = b"warren-repl";

/// How long a client has to finish the TLS handshake; the AMQP or HTTP handshake timeouts start after it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the TLS files are and how client certificates are treated (from `--tls-*`, `WARREN_TLS_*` or the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; needed for `verify_peer`.
    pub ca: Option<PathBuf>,
    /// Ask AMQPS clients for a certificate and verify it against `ca` (RabbitMQ's `verify_peer`).
    pub verify_peer: bool,
    /// Refuse AMQPS clients that present no certificate (RabbitMQ's `fail_if_no_peer_cert`); needs `verify_peer`.
    pub fail_if_no_peer_cert: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid TLS {what} {path}: {detail} (expected PEM)")]
    Pem {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("TLS certificate {cert} and key {key} do not make a usable pair: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot verify client certificates with the CA file {path}: {detail}")]
    Ca { path: PathBuf, detail: String },
    #[error("TLS set-up failed: {0}")]
    Setup(String),
}

/// TLS listeners and the configuration their handshakes use.
#[derive(Debug)]
pub struct TlsListeners {
    pub listeners: Vec<tokio::net::TcpListener>,
    pub tls: Arc<Tls>,
}

/// The two server configurations made from one set of files.
struct Loaded {
    amqp: Arc<ServerConfig>,
    admin: Arc<ServerConfig>,
    replication: Arc<ServerConfig>,
    /// A follower's side of the replication link: present when there is a CA file to verify the leader with.
    replication_client: Option<Arc<ClientConfig>>,
}

/// The broker's TLS state: the files' paths and the configurations read from them most recently.
pub struct Tls {
    config: TlsConfig,
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the files (blocking: call at start, before serving).
    pub fn load(config: &TlsConfig) -> Result<Self, TlsError> {
        Ok(Tls {
            config: config.clone(),
            current: RwLock::new(Arc::new(Loaded::read(config)?)),
        })
    }

    pub fn config(&self) -> &TlsConfig {
        &self.config
    }

    fn current(&self) -> Arc<Loaded> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The acceptor for the next AMQPS handshake (client certificates as configured).
    pub fn amqp_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current().amqp.clone())
    }

    /// The acceptor for the next admin HTTPS handshake (no client certificates; ALPN `http/1.1`).
    pub fn admin_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current().admin.clone())
    }

    /// The acceptor for the next replication handshake (a follower connecting to this leader).
    pub fn replication_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current().replication.clone())
    }

    /// The connector for a follower's replication link (the leader's certificate must chain to the CA file); None
    /// without a CA file.
    pub fn replication_connector(&self) -> Option<TlsConnector> {
        self.current().replication_client.clone().map(TlsConnector::from)
    }

    /// Reads the files again and, if they make a valid configuration, uses it for every handshake from now on.
    /// On error the configuration in force stays.
    pub async fn reload(&self) -> Result<(), TlsError> {
        let config = self.config.clone();
        let loaded = tokio::task::spawn_blocking(move || Loaded::read(&config))
            .await
            .map_err(|e| TlsError::Setup(format!("the reload task failed: {e}")))??;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.into(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |detail: String| TlsError::Pem {
        what,
        path: path.into(),
        detail,
    };
    let certs = CertificateDer::pem_slice_iter(&read(what, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no certificate in it".into()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read("key", path)?).map_err(|e| TlsError::Pem {
        what: "key",
        path: path.into(),
        detail: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key in it".into(),
            e => e.to_string(),
        },
    })
}

/// The certificates of a CA file, as the roots a peer's certificate must chain to.
fn ca_roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certificates("CA file", ca)? {
        roots.add(c).map_err(|e| TlsError::Ca {
            path: ca.into(),
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}

impl Loaded {
    fn read(config: &TlsConfig) -> Result<Self, TlsError> {
        let certs = certificates("certificate", &config.cert)?;
        let key = private_key(&config.key)?;
        let pair_error = |source| TlsError::Pair {
            cert: config.cert.clone(),
            key: config.key.clone(),
            source,
        };
        let builder = || {
            ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Setup(e.to_string()))
        };

        let mut admin = builder()?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(pair_error)?;
        admin.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut replication = builder()?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(pair_error)?;
        replication.alpn_protocols = vec![REPLICATION_ALPN.to_vec()];
        let replication_client = match &config.ca {
            Some(ca) => {
                let roots = ca_roots(ca)?;
                let mut client = ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| TlsError::Setup(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                client.alpn_protocols = vec![REPLICATION_ALPN.to_vec()];
                Some(Arc::new(client))
            }
            None => None,
        };

        let amqp = match (&config.ca, config.verify_peer) {
            (Some(ca), true) => {
                let roots = ca_roots(ca)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = if config.fail_if_no_peer_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier.build().map_err(|e| TlsError::Ca {
                    path: ca.clone(),
                    detail: e.to_string(),
                })?;
                builder()?.with_client_cert_verifier(verifier)
            }
            (None, true) => return Err(TlsError::Setup("verify_peer needs a CA file (--tls-ca)".into())),
            (_, false) => builder()?.with_no_client_auth(),
        };
        let amqp = amqp.with_single_cert(certs, key).map_err(pair_error)?;
        Ok(Loaded {
            amqp: Arc::new(amqp),
            admin: Arc::new(admin),
            replication: Arc::new(replication),
            replication_client,
        })
    }
}

/// The subject's common name of a (verified) client certificate: the user name for the EXTERNAL mechanism.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The CN of the certificate a client presented on this TLS connection, if it presented one (which the verifier
/// then checked: the handshake fails on a certificate that does not chain to the CA).
pub fn peer_common_name(conn: &rustls::ServerConnection) -> Option<String> {
    conn.peer_certificates()?.first().and_then(common_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate\n").expect("write");
        let config = TlsConfig {
            cert: dir.path().join("missing.pem"),
            key: bad.clone(),
            ca: None,
            verify_peer: false,
            fail_if_no_peer_cert: false,
        };
        let err = Tls::load(&config).expect_err("missing cert").to_string();
        assert!(
            err.contains("cannot read the TLS certificate") && err.contains("missing.pem"),
            "{err}"
        );
        let err = Tls::load(&TlsConfig {
            cert: bad.clone(),
            ..config.clone()
        })
        .expect_err("bad cert")
        .to_string();
        assert!(
            err.contains("invalid TLS certificate") && err.contains("bad.pem"),
            "{err}"
        );
    }
}
