//! The flags of steps 11 to 17, beside those of steps 01 to 10: the routes
//! and apps files, the status API's token, `--check` and the hidden flag
//! the demo apps are started with (steps 11 and 12); step 14's limits and
//! deadlines; step 15's access log. Each step's lesson is what it does with
//! them. And the open-files limit every server from step 14 on raises at start.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{AccessLog, Limits, LogFormat, LogSettings, Timeouts};
use crate::{apps_file, routes_file};

#[derive(clap::Args, Debug, Clone)]
pub struct Files {
    /// The routes file (TOML), as step 11. Without it: routes/example.toml
    /// in front of the demo origin, or everything to --upstream.
    #[arg(long, value_name = "FILE", conflicts_with = "upstream")]
    pub routes: Option<PathBuf>,

    /// The apps file (TOML), as step 12. Without it, and without --routes
    /// or --upstream: two demo apps, `hello` and `docs`.
    #[arg(long, value_name = "FILE")]
    pub apps: Option<PathBuf>,

    /// Opens the status API (`/_proxy/apps`) to `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PROXY_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Only check the files: exit 0 if they are valid, 2 with the error.
    #[arg(long)]
    pub check: bool,

    /// Serve the demo origin on this port (what the demo apps run).
    #[arg(long, value_name = "PORT", hide = true)]
    pub demo_app: Option<u16>,
}

impl Files {
    /// The token, unless empty (`PROXY_ADMIN_TOKEN=` opens nothing).
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token
            .as_deref()
            .filter(|token| !token.is_empty())
    }

    /// `--check`: every file given, checked; `Err` is what to say (exit 2).
    pub fn check(&self) -> Result<(), String> {
        if self.apps.is_none() && self.routes.is_none() {
            return Err("--check needs --apps FILE or --routes FILE (or both)".into());
        }
        if let Some(path) = &self.apps {
            let file = apps_file::load(path)?;
            println!("{}: {file}: valid", path.display());
        }
        if let Some(path) = &self.routes {
            let routes = routes_file::load(path, None)?;
            println!("{}: {routes}: valid", path.display());
        }
        Ok(())
    }
}

/// Step 14's flags: what the config file's `[timeouts]`, `[limits]` and
/// `[shutdown]` say from step 17 on.
#[derive(clap::Args, Debug, Clone)]
pub struct Hardening {
    /// A request head must arrive within this, from its first byte: a
    /// client that sends one byte at a time (slowloris) is cut off.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,

    /// An idle HTTP/1.1 keep-alive connection is closed after this (an
    /// HTTP/2 connection stays open: hyper has no idle deadline for it).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub keep_alive: Duration,

    /// Connections served at once; beyond, new ones wait in the backlog.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Request bodies stop at this many bytes, counted while they stream:
    /// 413 (none by default).
    #[arg(long, value_name = "BYTES")]
    pub max_request_body: Option<u64>,

    /// On SIGTERM, how long requests in flight have to finish.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub shutdown_grace: Duration,
}

impl Hardening {
    /// The config's timeouts these flags say (`response_head`: step 08's
    /// `--upstream-timeout`).
    pub fn timeouts(&self, response_head: Duration) -> Timeouts {
        Timeouts {
            header_read: self.header_read_timeout,
            keep_alive: self.keep_alive,
            response_head,
            ..Timeouts::default()
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections as usize,
            max_request_body: self.max_request_body,
        }
    }
}

/// Step 15's flags: what the config file's `[log]` says from step 17 on.
#[derive(clap::Args, Debug, Clone)]
pub struct Logs {
    /// The access log: `stdout`, `off`, or a file (appended to).
    #[arg(long, value_name = "WHERE", default_value = "off")]
    pub access_log: String,

    /// `common` (Apache's, with the host and the time taken) or `json`.
    #[arg(long, value_name = "FORMAT", default_value = "common", value_parser = ["common", "json"])]
    pub log_format: String,
}

impl Logs {
    pub fn settings(&self) -> LogSettings {
        LogSettings {
            access: match self.access_log.as_str() {
                "stdout" => AccessLog::Stdout,
                "off" => AccessLog::Off,
                path => AccessLog::File(PathBuf::from(path)),
            },
            format: match self.log_format.as_str() {
                "json" => LogFormat::Json,
                _ => LogFormat::Common,
            },
        }
    }
}

/// `10s`, `500ms`, `1m30s`.
fn duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|err| format!("{err}: expected a duration like 10s, 500ms or 1m"))
}

/// Raises the soft limit on open files to the hard one: each connection
/// is a file, and the default soft limit (often 1024) is lower than what
/// a proxy is allowed.
pub fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!("open files: {soft} → {hard}"),
            Err(err) => tracing::warn!("could not raise the open files limit from {soft}: {err}"),
        },
        Ok(_) => {}
        Err(err) => tracing::warn!("could not read the open files limit: {err}"),
    }
}
