//! Step 17's one config file (TOML): the listeners, the settings that
//! harden it (steps 14 to 16), and steps 11 and 12's routes and apps, in one place.
//! The kit of step 17: like the routes and apps files, every mistake is one
//! error naming the file, the line and the column, and unknown keys are
//! errors (a typo is not silently ignored).
//!
//! ```toml
//! listen = ["127.0.0.1:8080"]          # several allowed; TLS per listener:
//! # listen = [{ address = "0.0.0.0:8443", tls = "self-signed" }]   # or tls = { cert = "…", key = "…" }
//! admin_token = "…"                   # /_proxy/apps and /_proxy/metrics (or PROXY_ADMIN_TOKEN)
//!
//! [timeouts]
//! header_read = "10s"                 # a request head, from its first byte (slowloris)
//! keep_alive = "60s"                  # an idle keep-alive connection: closed after this
//! connect = "5s"                      # to an upstream: 502 after this
//! response_head = "30s"               # from an upstream: 504 after this (step 08)
//! tunnel_idle = "1h"                  # a WebSocket with no byte either way: closed after this
//!
//! [limits]
//! max_connections = 10000             # beyond: new connections wait in the backlog
//! max_request_body = 10485760         # bytes, counted while streaming: 413 (none by default)
//!
//! [shutdown]
//! grace = "30s"                       # SIGTERM: in-flight requests finish within this
//!
//! [log]
//! access = "stdout"                   # or "off", or a file path
//! format = "common"                   # or "json"
//!
//! [upstreams.api]                     # a group: forward = "http://api/…" takes its servers in turn
//! servers = ["10.0.0.1:8080", "10.0.0.2:8080"]
//! fail_after = 3                      # connect failures in a row before a server rests
//! cool_down = "10s"                   # … for this long; a failed connect is retried on another server
//!
//! [upstream_tls]
//! ca = "internal-ca.pem"              # https:// upstreams: this CA only (default: the system's roots)
//!
//! [state]
//! redis = "redis://127.0.0.1:6379/0"  # apps' state shared by every instance (default: this one's memory)
//!
//! [[tls]]                             # a certificate per host name (SNI), on TLS listeners
//! hosts = ["example.com", "*.example.com"]
//! cert = "example.pem"
//! key = "example-key.pem"
//!
//! [accept]  …  [[rules]]  …           # step 11's routes
//! [on_demand]  …  [[apps]]  …         # step 12's apps (domain, idle, start_timeout, discover)
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::Authority;
use serde::Deserialize;
use toml::Spanned;

use crate::apps_file::{self, AppFile, AppsFile, AppsSettings, Human, Run};
use crate::certificates::NamedCertificate;
use crate::connector::UpstreamRoots;
use crate::routes_file::{self, Routes, RoutesSection, RuleFile, line_column, toml_error};
use crate::upstream_groups::{Group, Groups};

/// A config file, checked.
#[derive(Debug)]
pub struct Config {
    pub listeners: Vec<Listener>,
    /// Chosen by SNI on every TLS listener; a name none covers gets the
    /// listener's own certificate.
    pub certificates: Vec<NamedCertificate>,
    pub admin_token: Option<String>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub shutdown_grace: Duration,
    pub log: LogSettings,
    /// `None`: no `[[rules]]` (every host that is not an app's: 404).
    pub routes: Option<Routes>,
    /// `[upstreams.NAME]`: the rules' groups of servers.
    pub groups: Groups,
    /// What `https://` upstreams are verified against.
    pub upstream_roots: UpstreamRoots,
    pub apps: AppsFile,
    /// `[state] redis`: where the instances share their apps' state.
    pub redis: Option<String>,
    pub source: String,
}

// ANCHOR: restart_settings
/// What only a restart changes: a running server is made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartSettings {
    pub listeners: Vec<Listener>,
    pub certificates: Vec<NamedCertificate>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub shutdown_grace: Duration,
    pub log: LogSettings,
    pub admin_token: Option<String>,
    pub upstream_roots: UpstreamRoots,
    pub redis: Option<String>,
}
// ANCHOR_END: restart_settings

impl RestartSettings {
    /// The keys of the file (their names there) whose values differ
    /// between `self` and `other`.
    pub fn differing_keys(&self, other: &RestartSettings) -> Vec<&'static str> {
        let differs = [
            ("listen", self.listeners != other.listeners),
            ("[[tls]]", self.certificates != other.certificates),
            ("[timeouts]", self.timeouts != other.timeouts),
            ("[limits]", self.limits != other.limits),
            ("[shutdown]", self.shutdown_grace != other.shutdown_grace),
            ("[log]", self.log != other.log),
            ("admin_token", self.admin_token != other.admin_token),
            ("upstream_tls", self.upstream_roots != other.upstream_roots),
            ("[state]", self.redis != other.redis),
        ];
        differs
            .into_iter()
            .filter_map(|(key, differs)| differs.then_some(key))
            .collect()
    }
}

impl Config {
    /// What of this config only a restart changes.
    pub fn restart_settings(&self) -> RestartSettings {
        RestartSettings {
            listeners: self.listeners.clone(),
            certificates: self.certificates.clone(),
            timeouts: self.timeouts,
            limits: self.limits,
            shutdown_grace: self.shutdown_grace,
            log: self.log.clone(),
            admin_token: self.admin_token.clone(),
            upstream_roots: self.upstream_roots.clone(),
            redis: self.redis.clone(),
        }
    }
}

/// Where to accept connections, and with which certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Made at start, for development (step 09's).
    SelfSigned,
    Pem {
        cert: PathBuf,
        key: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub header_read: Duration,
    /// An idle keep-alive connection is closed after this.
    pub keep_alive: Duration,
    pub connect: Duration,
    pub response_head: Duration,
    /// A WebSocket (any upgraded connection) with no byte either way for
    /// this long is closed.
    pub tunnel_idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    /// Bytes; `None`: no limit.
    pub max_request_body: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub access: AccessLog,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `127.0.0.1 - - [date] "GET /path HTTP/1.1" 200 1234 …`, extended.
    Common,
    Json,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            header_read: Duration::from_secs(10),
            keep_alive: Duration::from_secs(60),
            connect: Duration::from_secs(5),
            response_head: Duration::from_secs(30),
            tunnel_idle: Duration::from_secs(3600),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            max_request_body: None,
        }
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules = self.routes.as_ref().map_or(0, |routes| routes.rules.len());
        write!(
            f,
            "{} listener(s), {rules} rule(s), {} upstream group(s), {} app(s) from {}",
            self.listeners.len(),
            self.groups.len(),
            self.apps.apps.len(),
            self.source
        )?;
        if let Some(redis) = &self.redis {
            // Only apps started and stopped by commands are shared: a
            // child runs on the machine of the instance that started it.
            let local: Vec<&str> = self
                .apps
                .apps
                .iter()
                .filter(|app| matches!(app.run, Run::Child { .. }))
                .map(|app| app.name.as_str())
                .collect();
            // Never its password in a log.
            let shown = match redis.split_once('@') {
                Some((_, address)) => format!("redis://…@{address}"),
                None => redis.clone(),
            };
            write!(f, "; apps' state shared through {shown}")?;
            if !local.is_empty() {
                write!(
                    f,
                    " (not {}: an app with a command is a child of one instance, local to it)",
                    local.join(", ")
                )?;
            }
        }
        Ok(())
    }
}

/// Reads and checks a config file. `origin`, when given, takes the place
/// of 127.0.0.1:9000 in the rules (as for step 11's example).
pub fn load(path: &Path, origin: Option<&Authority>) -> Result<Config, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| format!("{name}: {err}"))?;
    parse(&text, &name, origin)
}

/// Parses the text of a config file called `name`.
pub fn parse(text: &str, name: &str, origin: Option<&Authority>) -> Result<Config, String> {
    let file: File = toml::from_str(text).map_err(|err| toml_error(text, name, &err))?;
    let at = |offset: usize, message: &str| {
        let (line, column) = line_column(text, offset);
        format!("{name}:{line}:{column}: {message}")
    };
    let mut listeners = Vec::new();
    for spanned in &file.listen {
        let (address, tls) = match spanned.get_ref() {
            ListenFile::Address(address) => (address.clone(), None),
            ListenFile::Table(table) => (table.address.clone(), table.tls.clone()),
        };
        let address = address.parse().map_err(|_| {
            at(
                spanned.span().start,
                &format!("{address:?} is not an address to listen on (like \"127.0.0.1:8080\")"),
            )
        })?;
        let tls = match tls {
            None => None,
            Some(TlsFile::Named(named)) if named == "self-signed" => Some(Tls::SelfSigned),
            Some(TlsFile::Named(named)) => {
                return Err(at(
                    spanned.span().start,
                    &format!(
                        "tls = {named:?}: write \"self-signed\" or {{ cert = \"…\", key = \"…\" }}"
                    ),
                ));
            }
            Some(TlsFile::Pem(files)) => Some(Tls::Pem {
                cert: files.cert,
                key: files.key,
            }),
        };
        listeners.push(Listener { address, tls });
    }
    if listeners.is_empty() {
        listeners.push(Listener {
            address: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
        });
    }
    let defaults = Timeouts::default();
    let timeouts = file.timeouts.unwrap_or_default();
    let timeouts = Timeouts {
        header_read: timeouts.header_read.map_or(defaults.header_read, |d| d.0),
        keep_alive: timeouts.keep_alive.map_or(defaults.keep_alive, |d| d.0),
        connect: timeouts.connect.map_or(defaults.connect, |d| d.0),
        response_head: timeouts
            .response_head
            .map_or(defaults.response_head, |d| d.0),
        tunnel_idle: timeouts.tunnel_idle.map_or(defaults.tunnel_idle, |d| d.0),
    };
    let limits_file = file.limits.unwrap_or_default();
    let max_connections = match limits_file.max_connections {
        Some(max) if *max.get_ref() == 0 || *max.get_ref() > 1_000_000 => {
            return Err(at(
                max.span().start,
                "max_connections: from 1 to 1000000 (each is an open file)",
            ));
        }
        Some(max) => *max.get_ref(),
        None => Limits::default().max_connections,
    };
    let limits = Limits {
        max_connections,
        max_request_body: limits_file.max_request_body,
    };
    let shutdown_grace = file
        .shutdown
        .and_then(|shutdown| shutdown.grace)
        .map_or(Duration::from_secs(30), |d| d.0);
    let log_file = file.log.unwrap_or_default();
    let log = LogSettings {
        access: match log_file.access.as_deref() {
            None | Some("stdout") => AccessLog::Stdout,
            Some("off") => AccessLog::Off,
            Some(path) => AccessLog::File(PathBuf::from(path)),
        },
        format: match log_file
            .format
            .as_ref()
            .map(|format| (format.get_ref().as_str(), format.span()))
        {
            None | Some(("common", _)) => LogFormat::Common,
            Some(("json", _)) => LogFormat::Json,
            Some((other, span)) => {
                return Err(at(
                    span.start,
                    &format!("format = {other:?}: write \"common\" or \"json\""),
                ));
            }
        },
    };
    let mut groups = Vec::new();
    for (group_name, spanned) in &file.upstreams {
        groups.push(group(group_name, spanned, &at)?);
    }
    let groups = Groups::new(groups);
    let routes = if file.rules.is_empty() {
        None
    } else {
        let section = RoutesSection {
            accept: file.accept,
            rules: file.rules,
        };
        Some(routes_file::compile(
            text,
            name,
            &section,
            origin,
            Some(&groups),
        )?)
    };
    let upstream_roots = match file.upstream_tls.and_then(|tls| tls.ca) {
        Some(ca) => UpstreamRoots::Ca(ca),
        None => UpstreamRoots::System,
    };
    let apps = apps_file::compile(text, name, &file.on_demand.unwrap_or_default(), &file.apps)?;
    let redis = match file.state.and_then(|state| state.redis) {
        None => None,
        Some(url) => {
            let start = url.span().start;
            let url = url.into_inner();
            if let Err(err) = crate::shared_state::SharedApps::new(&url) {
                return Err(at(
                    start,
                    &format!("[state] redis: {err} (like \"redis://127.0.0.1:6379/0\")"),
                ));
            }
            Some(url)
        }
    };
    if routes.is_none() && apps.apps.is_empty() && apps.discover.is_none() {
        return Err(format!(
            "{name}: no [[rules]], no [[apps]], no discover command: nothing to serve"
        ));
    }
    let mut certificates = Vec::new();
    for entry in file.tls {
        let start = entry.span().start;
        let entry = entry.into_inner();
        let valid = |host: &String| {
            let name = host.strip_prefix("*.").unwrap_or(host);
            !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if entry.hosts.is_empty() || !entry.hosts.iter().all(valid) {
            return Err(at(
                start,
                "[[tls]] hosts: host names, like \"example.com\" or \"*.example.com\"",
            ));
        }
        certificates.push(NamedCertificate {
            hosts: entry.hosts,
            cert: entry.cert,
            key: entry.key,
        });
    }
    Ok(Config {
        listeners,
        certificates,
        admin_token: file.admin_token.filter(|token| !token.is_empty()),
        timeouts,
        limits,
        shutdown_grace,
        log,
        routes,
        groups,
        upstream_roots,
        apps,
        redis,
        source: name.to_string(),
    })
}

/// One `[upstreams.NAME]` table, checked.
fn group(
    name: &str,
    spanned: &Spanned<GroupFile>,
    at: &dyn Fn(usize, &str) -> String,
) -> Result<Group, String> {
    let file = spanned.get_ref();
    let start = spanned.span().start;
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid_name {
        return Err(at(
            start,
            &format!(
                "[upstreams.{name}]: a group's name is a host name (letters, digits, `-`, `.`)"
            ),
        ));
    }
    if file.servers.is_empty() {
        return Err(at(start, &format!("[upstreams.{name}]: list its servers")));
    }
    let mut servers = Vec::new();
    for server in &file.servers {
        let authority = server
            .get_ref()
            .parse::<Authority>()
            .ok()
            .filter(|authority| authority.port_u16().is_some() && !authority.host().is_empty())
            .ok_or_else(|| {
                at(
                    server.span().start,
                    &format!("{:?} is not a server: write host:port", server.get_ref()),
                )
            })?;
        servers.push(authority);
    }
    if file.fail_after == Some(0) {
        return Err(at(
            start,
            &format!("[upstreams.{name}] fail_after: 1 or more"),
        ));
    }
    Ok(Group::new(
        name.to_string(),
        servers,
        file.fail_after.unwrap_or(3),
        file.cool_down
            .as_ref()
            .map_or(Duration::from_secs(10), |d| d.0),
    ))
}

// --- the file as written -----------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    listen: Vec<Spanned<ListenFile>>,
    #[serde(default)]
    tls: Vec<Spanned<NamedFile>>,
    admin_token: Option<String>,
    timeouts: Option<TimeoutsFile>,
    limits: Option<LimitsFile>,
    shutdown: Option<ShutdownFile>,
    log: Option<LogFile>,
    #[serde(default)]
    accept: std::collections::BTreeMap<String, Vec<Spanned<String>>>,
    #[serde(default)]
    rules: Vec<Spanned<RuleFile>>,
    on_demand: Option<AppsSettings>,
    #[serde(default)]
    apps: Vec<Spanned<AppFile>>,
    #[serde(default)]
    upstreams: std::collections::BTreeMap<String, Spanned<GroupFile>>,
    upstream_tls: Option<UpstreamTlsFile>,
    state: Option<StateFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    redis: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    servers: Vec<Spanned<String>>,
    fail_after: Option<u32>,
    cool_down: Option<Human>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamTlsFile {
    ca: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedFile {
    hosts: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "an address (\"127.0.0.1:8080\"), or { address = \"…\", tls = … }"
)]
enum ListenFile {
    Address(String),
    Table(ListenTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenTable {
    address: String,
    tls: Option<TlsFile>,
}

#[derive(Deserialize, Clone)]
#[serde(
    untagged,
    expecting = "tls = \"self-signed\", or tls = { cert = \"chain.pem\", key = \"key.pem\" }"
)]
enum TlsFile {
    Named(String),
    Pem(PemFiles),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct PemFiles {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TimeoutsFile {
    header_read: Option<Human>,
    keep_alive: Option<Human>,
    connect: Option<Human>,
    response_head: Option<Human>,
    tunnel_idle: Option<Human>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_connections: Option<Spanned<usize>>,
    max_request_body: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShutdownFile {
    grace: Option<Human>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogFile {
    access: Option<String>,
    format: Option<Spanned<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = ["127.0.0.1:8080", { address = "127.0.0.1:8443", tls = "self-signed" }]
admin_token = "secret"

[timeouts]
header_read = "5s"

[limits]
max_connections = 100

[log]
access = "off"
format = "json"

[[rules]]
path = "/*rest"
forward = "http://127.0.0.1:9000"

[on_demand]
domain = "apps.localhost"
idle = "1m"

[[apps]]
name = "hello"
command = ["true"]
"#;

    #[test]
    fn a_good_file() {
        let config = parse(GOOD, "proxy.toml", None).expect("valid");
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.listeners[1].tls, Some(Tls::SelfSigned));
        assert_eq!(config.timeouts.header_read, Duration::from_secs(5));
        assert_eq!(config.timeouts.response_head, Duration::from_secs(30));
        assert_eq!(config.limits.max_connections, 100);
        assert_eq!(config.log.access, AccessLog::Off);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.apps.domain, "apps.localhost");
        assert_eq!(config.apps.apps[0].idle, Duration::from_secs(60));
        assert_eq!(config.routes.map(|routes| routes.rules.len()), Some(1));
    }

    #[test]
    fn every_mistake_names_line_and_column() {
        let rule = "[[rules]]\npath = \"/*rest\"\nforward = \"http://127.0.0.1:9000\"\n";
        let cases = [
            (
                format!("listen = [\"nowhere\"]\n{rule}"),
                "proxy.toml:1:11:",
            ),
            (
                format!("[timeouts]\nheader_read = \"soon\"\n{rule}"),
                "proxy.toml:2:15:",
            ),
            (
                format!("[timeouts]\nheader_reed = \"1s\"\n{rule}"),
                "proxy.toml:2:1:",
            ),
            (
                format!("[limits]\nmax_connections = 0\n{rule}"),
                "proxy.toml:2:19:",
            ),
            (
                format!(
                    "listen = [{{ address = \"127.0.0.1:1\", tsl = \"self-signed\" }}]\n{rule}"
                ),
                "proxy.toml:1:10:",
            ),
            (
                format!("[log]\nformat = \"xml\"\n{rule}"),
                "proxy.toml:2:10:",
            ),
            (format!("{rule}path2 = 1\n"), "proxy.toml:4:1:"),
            (
                "[[rules]]\npath = \"nope\"\nforward = \"http://x\"\n".to_string(),
                "proxy.toml:2:8:",
            ),
            (
                "[[apps]]\nname = \"A\"\ncommand = [\"x\"]\n".to_string(),
                "proxy.toml:1:1:",
            ),
            (
                format!("{rule}[upstreams.api]\nservers = [\"10.0.0.1\"]\n"),
                "proxy.toml:5:12:",
            ),
            (
                format!("{rule}[upstreams.api]\nservers = [\"10.0.0.1:80\"]\nretries = 2\n"),
                "proxy.toml:6:1:",
            ),
            (
                "[upstreams.api]\nservers = [\"10.0.0.1:80\"]\n[[rules]]\npath = \"/*rest\"\nforward = \"http://api:80/\"\n"
                    .to_string(),
                "proxy.toml:5:11:",
            ),
            (
                format!("{rule}[state]\nredis = \"127.0.0.1:6379\"\n"),
                "proxy.toml:5:9:",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&text, "proxy.toml", None).expect_err(&text);
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
        assert!(parse("", "proxy.toml", None).is_err(), "nothing to serve");
    }

    #[test]
    fn a_rule_forwards_to_a_group_in_turn() {
        let text = "[upstreams.api]\nservers = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n\
                    [[rules]]\npath = \"/*rest\"\nforward = \"http://api/v1\"\n";
        let config = parse(text, "proxy.toml", None).expect("valid");
        let routes = config.routes.expect("rules");
        let routes_file::Action::Forward(template) = &routes.rules[0].action else {
            panic!("a forward rule");
        };
        let captures = crate::patterns::Captures::default();
        let first = template.render(&captures).expect("a URL").to_string();
        let second = template.render(&captures).expect("a URL").to_string();
        assert_eq!(first, "http://127.0.0.1:1/v1");
        assert_eq!(second, "http://127.0.0.1:2/v1");
    }
}
