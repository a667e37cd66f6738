//! How step 17 connects to its upstreams: TCP, to one server of a group if
//! the address names one (`upstream_groups`), then TLS for `https://`
//! upstreams, verified against the system's roots or the CA the config
//! names (`[upstream_tls] ca`). Kit of step 17: steps 02 to 16 speak plain
//! TCP (`HttpConnector`), and their code takes any client (`HttpClient`).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use tracing::{debug, warn};

use crate::upstream_groups::{GroupConnector, Groups};

/// Step 17's connector: groups, then TLS when the scheme says `https`.
pub type UpstreamConnector = HttpsConnector<GroupConnector>;

/// Which certificates an `https://` upstream may show.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UpstreamRoots {
    /// The system's (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`).
    #[default]
    System,
    /// Only those signed by the CA in this PEM file (an internal PKI).
    Ca(std::path::PathBuf),
}

/// The TLS client settings for `roots`: an error names the file.
pub fn client_tls(roots: &UpstreamRoots) -> Result<rustls::ClientConfig, String> {
    let mut store = RootCertStore::empty();
    match roots {
        UpstreamRoots::System => {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                debug!("system certificates: {err}");
            }
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                // Not fatal: plain http:// upstreams do not care. An
                // https:// one will fail to verify, and say why.
                warn!(
                    "no system root certificates found ({ignored} unusable): https:// upstreams will fail"
                );
            }
        }
        UpstreamRoots::Ca(path) => store = workshop::tls::roots_from_pem(path)?,
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS: {err}"))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(config)
}

/// A connector: TCP without Nagle's delay (step 08), at most `connect` per
/// attempt, aware of `groups`; TLS with `tls` for `https://`. ALPN offers
/// one protocol: `h2` if `http2`, else `http/1.1`: the client
/// (`upstream_client`) decides the protocol of all its connections, and the
/// upstream never picks another.
/// With `idle`, a connection with no byte either way for that long closes.
pub fn upstream_connector(
    connect: Duration,
    groups: Arc<ArcSwap<Groups>>,
    tls: rustls::ClientConfig,
    http2: bool,
    idle: Option<Duration>,
) -> UpstreamConnector {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect));
    // hyper-rustls checks the scheme itself; the TCP connector must let
    // https:// through.
    tcp.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let tcp = GroupConnector::new(tcp, groups, idle);
    if http2 {
        builder.enable_http2().wrap_connector(tcp)
    } else {
        builder.enable_http1().wrap_connector(tcp)
    }
}
