//! A throw-away PKI for the TLS tests and `scripts/test`: a CA, a server certificate for 127.0.0.1 and localhost,
//! and client certificates whose CN names a user, all generated with rcgen and written as PEM files.
//!
//! Nothing here is secret or lasting: each test makes its own in a temporary directory. Keys are ECDSA P-256
//! (rcgen's default), which rustls, OpenSSL (pika, curl) and every client we test with accept.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Generation fails only on a full disk or an rcgen bug; the message says which file.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA that signs server and client certificates into a directory.
pub struct TestCa {
    /// The CA certificate (PEM): what clients trust and what `--tls-ca` names.
    pub cert: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl TestCa {
    /// Makes a CA called `name` and writes its certificate to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Warren {name} (tests only)"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let cert = dir.join(format!("{name}.pem"));
        write(&cert, &issuer.pem())?;
        Ok(TestCa {
            cert,
            issuer,
            dir: dir.to_path_buf(),
        })
    }

    /// A server certificate for 127.0.0.1, ::1 and localhost, written as `<file>.pem` and `<file>.key`.
    pub fn server(&self, file: &str) -> Result<CertFiles> {
        let sans = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, file)
    }

    /// A client certificate whose subject CN is `cn` (the user EXTERNAL logs in as).
    pub fn client(&self, cn: &str, file: &str) -> Result<CertFiles> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, file)
    }

    fn sign(&self, mut params: CertificateParams, file: &str) -> Result<CertFiles> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        write(&files.cert, &cert.pem())?;
        write(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

fn write(path: &Path, pem: &str) -> Result<()> {
    std::fs::write(path, pem).map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}
