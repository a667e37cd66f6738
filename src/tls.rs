//! TLS for the demo clients (`ws-client`, `h2-client`): how they trust the
//! proxy's certificate (and the roots of a PEM file, which step 17's
//! `https://` upstreams use too). Not a lesson, plumbing: step 09 teaches
//! the server side.
//!
//! A proxy started with `--tls` makes a self-signed certificate that no
//! client trusts. curl has `-k` (trust anything) and `--cacert FILE` (trust
//! this one certificate); the demo clients take the same two choices, as
//! `--insecure` and `--cacert`.

use std::path::PathBuf;
use std::sync::Arc;

use http::Uri;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

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
        Trust::Pem(path) => builder
            .with_root_certificates(roots_from_pem(path)?)
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

/// The certificates of a PEM file, as roots to verify servers against (a
/// dev certificate, an internal CA): an error names the file.
pub fn roots_from_pem(path: &std::path::Path) -> Result<rustls::RootCertStore, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("{}: {err}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|err| format!("{}: {err}", path.display()))?;
    }
    Ok(roots)
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

/// A TCP connection to `uri`'s host and port (80, or 443 for `https` and
/// `wss`, when the URL names none).
pub async fn connect_tcp(uri: &Uri) -> Result<TcpStream, String> {
    let host = bare_host(uri)?;
    let secure = matches!(uri.scheme_str(), Some("https" | "wss"));
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|err| format!("connecting to {host}:{port}: {err}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// TLS over `tcp` to `uri`'s host, offering `alpn`, trusting what the
/// `--insecure` and `--cacert` flags said (`None`: neither, an error).
pub async fn connect_tls(
    tcp: TcpStream,
    uri: &Uri,
    trust: Option<Trust>,
    alpn: &[&[u8]],
) -> Result<TlsStream<TcpStream>, String> {
    let scheme = uri.scheme_str().unwrap_or("https");
    let trust = trust.ok_or_else(|| {
        format!(
            "{scheme}:// needs --insecure (accept the proxy's self-signed certificate, like \
             curl -k) or --cacert FILE"
        )
    })?;
    let config = client_config(&trust, alpn)?;
    let host = bare_host(uri)?;
    let name = ServerName::try_from(host.to_string()).map_err(|err| format!("{host}: {err}"))?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|err| format!("TLS with {host}: {err}"))
}

/// The URL's host, without the brackets of an IPv6 address.
fn bare_host(uri: &Uri) -> Result<&str, String> {
    let host = uri
        .host()
        .ok_or_else(|| format!("{uri}: the URL needs a host"))?;
    Ok(host.trim_start_matches('[').trim_end_matches(']'))
}
