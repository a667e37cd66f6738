//! TLS for the demo clients (`ws-client`, `h2-client`): how they trust the
//! proxy's certificate. Not a lesson, plumbing: step 09 teaches the server
//! side.
//!
//! A proxy started with `--tls` makes a self-signed certificate that no
//! client trusts. curl has `-k` (trust anything) and `--cacert FILE` (trust
//! this one certificate); the demo clients take the same two choices, as
//! `--insecure` and `--cacert`.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Which server certificates a client accepts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Any certificate at all, like `curl -k`: for a dev certificate only.
    Anything,
    /// The certificates in this PEM file, like `curl --cacert FILE`.
    Pem(PathBuf),
}

impl Trust {
    /// From the `--insecure` and `--cacert` flags; `None` if neither is given.
    pub fn from_flags(insecure: bool, cacert: Option<PathBuf>) -> Option<Trust> {
        match (insecure, cacert) {
            (true, _) => Some(Trust::Anything),
            (false, Some(path)) => Some(Trust::Pem(path)),
            (false, None) => None,
        }
    }
}

/// A client configuration that trusts `trust` and offers `alpn` (like
/// `h2`, or `http/1.1`).
pub fn client_config(trust: &Trust, alpn: &[&[u8]]) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS: {err}"))?;
    let mut config = match trust {
        Trust::Anything => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth(),
        Trust::Pem(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| format!("{}: {err}", path.display()))?;
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|err| format!("{}: {err}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

/// Accepts any certificate, but still checks the handshake's signatures
/// (the server must hold the key of the certificate it shows).
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The name to ask the server for: the URL's host (an IP address works
/// too: the dev certificate names 127.0.0.1 and ::1).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|err| format!("{host}: {err}"))
}
