//! A certificate per host name, chosen by the name the client asks for in
//! its TLS hello (SNI): step 17's `[[tls]]` entries. A name no entry
//! covers gets the listener's own certificate (its PEM files, or the
//! self-signed one made at start, which then also names the apps' domain).
//! Kit of step 17.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use workshop::http2::{fingerprint, load_pem, self_signed};

/// One `[[tls]]` entry: the names it covers (`a.example`, `*.example`: one
/// label under it), and its PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedCertificate {
    pub hosts: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The listener's own certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// Made at start, for `localhost` and these names.
    SelfSigned(Vec<String>),
    Pem {
        cert: PathBuf,
        key: PathBuf,
    },
}

/// Chooses a certificate by SNI.
#[derive(Debug)]
struct ByName {
    named: Vec<(String, Arc<CertifiedKey>)>,
    fallback: Arc<CertifiedKey>,
}

// ANCHOR: resolve
impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let asked = hello.server_name().map(|name| name.to_ascii_lowercase());
        let chosen = asked.and_then(|asked| {
            self.named
                .iter()
                .find(|(pattern, _)| covers(pattern, &asked))
                .map(|(_, key)| key.clone())
        });
        Some(chosen.unwrap_or_else(|| self.fallback.clone()))
    }
}
// ANCHOR_END: resolve

/// `a.example` covers itself; `*.example` covers one label under it.
fn covers(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => name
            .strip_suffix(parent)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => pattern == name,
    }
}

/// A TLS acceptor offering HTTP/2 then HTTP/1.1 (as step 09's), choosing
/// among `named` by SNI, `fallback` otherwise; and the fallback's
/// fingerprint, to print.
pub fn acceptor(
    fallback: &Fallback,
    named: &[NamedCertificate],
) -> Result<(TlsAcceptor, String), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = |(chain, key): (Vec<_>, _)| -> Result<Arc<CertifiedKey>, String> {
        let key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|err| format!("TLS key: {err}"))?;
        Ok(Arc::new(CertifiedKey::new(chain, key)))
    };
    let fallback_pair = match fallback {
        Fallback::SelfSigned(names) => self_signed(names)?,
        Fallback::Pem { cert, key } => load_pem(cert, key)?,
    };
    let print = fallback_pair.0.first().map(fingerprint).unwrap_or_default();
    let fallback = certified(fallback_pair)?;
    let mut by_name = Vec::new();
    for entry in named {
        let key = certified(load_pem(&entry.cert, &entry.key)?)?;
        for host in &entry.hosts {
            by_name.push((host.to_ascii_lowercase(), key.clone()));
        }
    }
    let resolver = ByName {
        named: by_name,
        fallback,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS: {err}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), print))
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn names_and_wildcards() {
        assert!(covers("a.example", "a.example"));
        assert!(!covers("a.example", "b.example"));
        assert!(covers("*.example", "a.example"));
        assert!(!covers("*.example", "example"));
        assert!(!covers("*.example", "a.b.example"));
        assert!(!covers("*.example", "aexample"));
    }
}
