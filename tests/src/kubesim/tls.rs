//! kubesim's certificates: a CA generated once per cluster (kept in the state folder when there
//! is one, so a kubeconfig stays valid across restarts) and a serving certificate for
//! `127.0.0.1` and `localhost` signed by it at every start, offered over rustls (HTTP/1.1).

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::errors::StartError;

/// The cluster's CA: its PEM certificate (what kubeconfigs trust) and its signing key.
pub struct ClusterCa {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

fn cert_error(error: impl std::fmt::Display) -> StartError {
    StartError::Certificate(error.to_string())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::State {
        path: path.to_path_buf(),
        source,
    }
}

/// The CA's certificate parameters. They are the same at every start, so an issuer rebuilt from
/// them and the kept key signs certificates that chain to the kept CA certificate.
fn ca_params() -> Result<CertificateParams, StartError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kubesim-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

impl ClusterCa {
    /// A new CA.
    pub fn generate() -> Result<Self, StartError> {
        let key = KeyPair::generate().map_err(cert_error)?;
        let cert = ca_params()?.self_signed(&key).map_err(cert_error)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// The CA kept in `folder` (`ca.crt`, `ca.key`), created there on first use.
    pub fn load_or_create(folder: &Path) -> Result<Self, StartError> {
        let cert_path = folder.join("ca.crt");
        let key_path = folder.join("ca.key");
        if cert_path.exists() && key_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_error(&cert_path))?;
            let key_pem = std::fs::read_to_string(&key_path).map_err(io_error(&key_path))?;
            let key = KeyPair::from_pem(&key_pem).map_err(cert_error)?;
            return Ok(Self { cert_pem, key });
        }
        let ca = Self::generate()?;
        std::fs::write(&key_path, ca.key.serialize_pem()).map_err(io_error(&key_path))?;
        std::fs::write(&cert_path, &ca.cert_pem).map_err(io_error(&cert_path))?;
        Ok(ca)
    }

    /// A rustls server configuration with a fresh serving certificate signed by this CA.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, StartError> {
        let issuer = Issuer::new(ca_params()?, &self.key);
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .map_err(cert_error)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kubesim-apiserver");
        let key = KeyPair::generate().map_err(cert_error)?;
        let cert = params.signed_by(&key, &issuer).map_err(cert_error)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(cert_error)?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(cert_error)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
