//! Reading an apps file (TOML) and a discovery command's list (JSON): the
//! kit of steps 12 on. As with routes, every mistake is one error that names
//! the file, the line and the column.
//!
//! ```toml
//! domain = "localhost"        # the app NAME answers at NAME.localhost
//! idle = "15m"                # stopped after this long without a request
//! start_timeout = "30s"       # not ready by then: 503, and the start is abandoned
//! discover = { command = "./list-apps.sh", every = "60s" }   # optional: JSON on stdout
//!
//! [[apps]]                    # a child process of the proxy...
//! name = "hello"
//! command = ["python3", "-m", "http.server", "{port}"]   # {port}, and env PORT: a free port
//! ready = "/"                 # optional: polled until it answers; default: the port accepts
//! idle = "2m"                 # optional: this app's own
//!
//! [[apps]]                    # ...or something commands start and stop
//! name = "docs"
//! start = "docker start docs"
//! stop = "docker stop docs"
//! upstream = "http://127.0.0.1:8001"
//! linked = ["hello"]          # hello wakes with docs; the two stop together
//! ```
//!
//! A discovery command prints the same `[[apps]]` entries as a JSON array:
//! `[{"name": "docs", "start": "…", "stop": "…", "upstream": "…"}]`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use http::Uri;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::routes_file::{line_column, toml_error};

/// What an apps file says, checked.
#[derive(Debug, Clone)]
pub struct AppsFile {
    /// Lowercase, no leading dot: `localhost`.
    pub domain: String,
    /// In file order.
    pub apps: Vec<AppSpec>,
    pub discover: Option<Discover>,
    /// Whether an app's cookies are kept to its own host (step 17 does it).
    pub isolate_apps: bool,
    /// The defaults, for apps a discovery command adds.
    pub defaults: Defaults,
    /// Where it comes from, for logs.
    pub source: String,
}

/// The file's `idle` and `start_timeout`, for apps that do not set theirs.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub idle: Duration,
    pub start_timeout: Duration,
}

impl Default for Defaults {
    fn default() -> Defaults {
        Defaults {
            idle: Duration::from_secs(15 * 60),
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// One app: how to start it, how to know it is ready, when to stop it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    pub name: String,
    pub run: Run,
    /// An HTTP path polled until it answers (any status); `None`: until
    /// the port accepts a connection.
    pub ready: Option<String>,
    pub idle: Duration,
    pub start_timeout: Duration,
    /// The apps woken with this one (not the other way round); all the
    /// apps linked together stay awake while one of them is.
    pub linked: Vec<String>,
}

/// Who owns the app's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// The proxy runs it as a child, on a free port it picks: `{port}` in
    /// the arguments and `PORT` in the environment.
    Child { command: Vec<String> },
    /// Shell commands start and stop something the proxy does not own
    /// (a container, a PaaS app), which then answers at `upstream`.
    Commands {
        start: String,
        stop: String,
        upstream: Uri,
    },
}

/// A command that prints the list of apps, run every so often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discover {
    pub command: String,
    pub every: Duration,
}

impl fmt::Display for AppsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.apps.iter().map(|app| app.name.as_str()).collect();
        write!(
            f,
            "{} app(s) at NAME.{} from {} ({})",
            self.apps.len(),
            self.domain,
            self.source,
            names.join(", ")
        )
    }
}

/// Reads and checks an apps file.
pub fn load(path: &Path) -> Result<AppsFile, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| format!("{name}: {err}"))?;
    parse(&text, &name)
}

/// Parses the text of an apps file called `name`.
pub fn parse(text: &str, name: &str) -> Result<AppsFile, String> {
    let file: File = toml::from_str(text).map_err(|err| toml_error(text, name, &err))?;
    if file.apps.is_empty() && file.discover.is_none() {
        return Err(format!(
            "{name}: no [[apps]] and no discover command: nothing to serve"
        ));
    }
    let settings = AppsSettings {
        domain: file.domain,
        isolate_apps: file.isolate_apps,
        idle: file.idle,
        start_timeout: file.start_timeout,
        discover: file.discover,
    };
    compile(text, name, &settings, &file.apps)
}

/// Checks the settings and `[[apps]]` read from `text` (an apps file, or
/// step 17's config file, which has them too).
pub(crate) fn compile(
    text: &str,
    name: &str,
    file: &AppsSettings,
    apps_read: &[Spanned<AppFile>],
) -> Result<AppsFile, String> {
    let at = |offset: usize, message: &str| {
        let (line, column) = line_column(text, offset);
        format!("{name}:{line}:{column}: {message}")
    };
    let defaults = Defaults {
        idle: file.idle.map_or(Defaults::default().idle, |d| d.0),
        start_timeout: file
            .start_timeout
            .map_or(Defaults::default().start_timeout, |d| d.0),
    };
    let domain = match &file.domain {
        Some(domain) => {
            let lower = domain.get_ref().trim_matches('.').to_ascii_lowercase();
            if lower.is_empty() || !lower.split('.').all(is_label) {
                return Err(at(
                    domain.span().start,
                    &format!(
                        "{:?} is not a domain name (like `localhost` or `apps.example.com`)",
                        domain.get_ref()
                    ),
                ));
            }
            lower
        }
        None => "localhost".to_string(),
    };
    let mut apps = Vec::new();
    for entry in apps_read {
        let app = check_app(entry.get_ref().clone(), &defaults)
            .map_err(|message| at(entry.span().start, &message))?;
        apps.push(app);
    }
    check_together(&apps)
        .map_err(|(index, message)| at(apps_read[index].span().start, &message))?;
    let discover = file.discover.as_ref().map(|discover| Discover {
        command: discover.command.clone(),
        every: discover.every.0,
    });
    Ok(AppsFile {
        domain,
        apps,
        discover,
        isolate_apps: file.isolate_apps.unwrap_or(true),
        defaults,
        source: name.to_string(),
    })
}

/// Parses what a discovery command printed: a JSON array of apps, each
/// like an `[[apps]]` entry. Errors name the entry and what is wrong.
pub fn parse_discovered(json: &str, defaults: &Defaults) -> Result<Vec<AppSpec>, String> {
    let entries: Vec<AppFile> = serde_json::from_str(json)
        .map_err(|err| format!("line {}, column {}: {err}", err.line(), err.column()))?;
    let mut apps = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        apps.push(check_app(entry, defaults).map_err(|err| format!("app #{}: {err}", index + 1))?);
    }
    check_together(&apps).map_err(|(index, err)| format!("app #{}: {err}", index + 1))?;
    Ok(apps)
}

/// One entry, on its own.
fn check_app(app: AppFile, defaults: &Defaults) -> Result<AppSpec, String> {
    let name = app.name;
    if !is_label(&name) {
        return Err(format!(
            "{name:?} cannot be an app name: one DNS label, lowercase letters, digits and `-`"
        ));
    }
    let run = match (app.command, app.start, app.stop, app.upstream) {
        (Some(command), None, None, None) => {
            if command.first().is_none_or(|program| program.is_empty()) {
                return Err(format!(
                    "app {name:?}: `command` is empty: name a program to run"
                ));
            }
            Run::Child { command }
        }
        (None, Some(start), Some(stop), Some(upstream)) => Run::Commands {
            start,
            stop,
            upstream: upstream.0,
        },
        (Some(_), ..) => {
            return Err(format!(
                "app {name:?}: `command` runs a child of the proxy; `start`, `stop` and `upstream` are for apps it does not own: not both"
            ));
        }
        _ => {
            return Err(format!(
                "app {name:?}: give either `command` (a child of the proxy) or all of `start`, `stop` and `upstream`"
            ));
        }
    };
    if let Some(ready) = &app.ready
        && !ready.starts_with('/')
    {
        return Err(format!(
            "app {name:?}: `ready` is a path, like \"/\" or \"/health\""
        ));
    }
    Ok(AppSpec {
        name,
        run,
        ready: app.ready,
        idle: app.idle.map_or(defaults.idle, |d| d.0),
        start_timeout: app.start_timeout.map_or(defaults.start_timeout, |d| d.0),
        linked: app.linked,
    })
}

/// What only the whole list can tell: duplicates, links to nowhere.
fn check_together(apps: &[AppSpec]) -> Result<(), (usize, String)> {
    let mut seen = BTreeSet::new();
    for (index, app) in apps.iter().enumerate() {
        if !seen.insert(app.name.as_str()) {
            return Err((index, format!("a second app named {:?}", app.name)));
        }
    }
    for (index, app) in apps.iter().enumerate() {
        for linked in &app.linked {
            if *linked == app.name {
                return Err((index, format!("app {:?} is linked to itself", app.name)));
            }
            if !seen.contains(linked.as_str()) {
                return Err((
                    index,
                    format!(
                        "app {:?} is linked to {linked:?}, which is not an app",
                        app.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The groups of apps linked together (directly or through others): each
/// app's group, itself included, sorted by name.
pub fn groups(apps: &[AppSpec]) -> BTreeMap<String, Vec<String>> {
    // Few apps, few links: grow each group until it stops growing.
    let mut group_of: BTreeMap<String, BTreeSet<String>> = apps
        .iter()
        .map(|app| (app.name.clone(), BTreeSet::from([app.name.clone()])))
        .collect();
    for app in apps {
        for linked in &app.linked {
            let merged: BTreeSet<String> = [&app.name, linked]
                .iter()
                .filter_map(|name| group_of.get(*name))
                .flatten()
                .cloned()
                .collect();
            for member in &merged {
                group_of.insert(member.clone(), merged.clone());
            }
        }
    }
    group_of
        .into_iter()
        .map(|(name, group)| (name, group.into_iter().collect()))
        .collect()
}

/// One DNS label: `a-z`, `0-9`, inner `-`, at most 63.
fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

// --- the file as written -----------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    domain: Option<Spanned<String>>,
    isolate_apps: Option<bool>,
    idle: Option<Human>,
    start_timeout: Option<Human>,
    discover: Option<DiscoverFile>,
    #[serde(default)]
    apps: Vec<Spanned<AppFile>>,
}

/// What an apps file says besides its `[[apps]]` (step 17's `[on_demand]`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppsSettings {
    domain: Option<Spanned<String>>,
    isolate_apps: Option<bool>,
    idle: Option<Human>,
    start_timeout: Option<Human>,
    discover: Option<DiscoverFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscoverFile {
    command: String,
    every: Human,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppFile {
    name: String,
    command: Option<Vec<String>>,
    start: Option<String>,
    stop: Option<String>,
    upstream: Option<HttpUrl>,
    ready: Option<String>,
    idle: Option<Human>,
    start_timeout: Option<Human>,
    #[serde(default)]
    linked: Vec<String>,
}

/// The longest duration a file may give: clocks cannot add centuries.
const LONGEST: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration as people write it (`90s`, `15m`, `1h 30m`), more than zero:
/// checked while reading, so that toml says where a bad one is.
#[derive(Clone, Copy)]
pub(crate) struct Human(pub(crate) Duration);

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Human, D::Error> {
        let text = String::deserialize(deserializer)?;
        match humantime::parse_duration(&text) {
            Ok(duration) if duration > LONGEST => Err(serde::de::Error::custom(format!(
                "{text:?} is longer than a year: give a shorter duration"
            ))),
            Ok(duration) if !duration.is_zero() => Ok(Human(duration)),
            Ok(_) => Err(serde::de::Error::custom(
                "a duration of zero: give one like \"30s\"",
            )),
            Err(err) => Err(serde::de::Error::custom(format!(
                "{text:?} is not a duration ({err}): write one like \"500ms\", \"30s\", \"15m\" or \"1h\""
            ))),
        }
    }
}

/// An `http://host:port` URL, checked while reading.
#[derive(Clone)]
struct HttpUrl(Uri);

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<HttpUrl, D::Error> {
        let text = String::deserialize(deserializer)?;
        let uri: Uri = text
            .parse()
            .map_err(|err| serde::de::Error::custom(format!("{text:?} is not a URL: {err}")))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(serde::de::Error::custom(format!(
                "{text:?}: an upstream is http://HOST:PORT"
            )));
        }
        Ok(HttpUrl(uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
domain = "Apps.Localhost"
idle = "15m"

[[apps]]
name = "hello"
command = ["python3", "-m", "http.server", "{port}"]
ready = "/"
idle = "2m"

[[apps]]
name = "docs"
start = "docker start docs"
stop = "docker stop docs"
upstream = "http://127.0.0.1:8001"
linked = ["hello"]

[[apps]]
name = "alone"
command = ["true"]
"#;

    #[test]
    fn a_good_file() {
        let file = parse(GOOD, "apps.toml").expect("valid");
        assert_eq!(file.domain, "apps.localhost");
        assert_eq!(file.apps.len(), 3);
        assert_eq!(file.apps[0].idle, Duration::from_secs(120));
        assert_eq!(file.apps[1].idle, Duration::from_secs(900));
        assert_eq!(file.apps[1].start_timeout, Duration::from_secs(30));
        let groups = groups(&file.apps);
        assert_eq!(groups["hello"], ["docs", "hello"]);
        assert_eq!(groups["docs"], ["docs", "hello"]);
        assert_eq!(groups["alone"], ["alone"]);
    }

    #[test]
    fn every_mistake_names_line_and_column() {
        let cases = [
            (
                "idle = \"soon\"\n[[apps]]\nname = \"a\"\ncommand = [\"x\"]\n",
                "apps.toml:1:8:",
            ),
            (
                "[[apps]]\nname = \"a\"\ncommand = [\"x\"]\nrestart = true\n",
                "apps.toml:4:1:",
            ),
            (
                "\n[[apps]]\nname = \"A b\"\ncommand = [\"x\"]\n",
                "apps.toml:2:1:",
            ),
            ("[[apps]]\nname = \"a\"\n", "apps.toml:1:1:"),
            (
                "[[apps]]\nname = \"a\"\ncommand = [\"x\"]\nlinked = [\"b\"]\n",
                "apps.toml:1:1:",
            ),
            (
                "[[apps]]\nname = \"a\"\nstart = \"s\"\nstop = \"t\"\nupstream = \"ftp://x\"\n",
                "apps.toml:5:12:",
            ),
            (
                "[[apps]]\nname = \"a\"\ncommand = [\"x\"]\n[[apps]]\nname = \"a\"\ncommand = [\"y\"]\n",
                "apps.toml:4:1:",
            ),
            (
                "domain = \"\"\n[[apps]]\nname = \"a\"\ncommand = [\"x\"]\n",
                "apps.toml:1:10:",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text, "apps.toml").expect_err(text);
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
        assert!(
            parse("", "apps.toml").is_err(),
            "an empty file serves nothing"
        );
    }

    #[test]
    fn discovered_apps_use_the_defaults() {
        let defaults = Defaults::default();
        let apps = parse_discovered(
            r#"[{"name": "a", "command": ["x"]}, {"name": "b", "start": "s", "stop": "t", "upstream": "http://127.0.0.1:1", "idle": "1s"}]"#,
            &defaults,
        )
        .expect("valid");
        assert_eq!(apps[0].idle, defaults.idle);
        assert_eq!(apps[1].idle, Duration::from_secs(1));
        let err = parse_discovered(r#"[{"name": "a"}]"#, &defaults).expect_err("no command");
        assert!(err.starts_with("app #1:"), "{err}");
        let err = parse_discovered("not json", &defaults).expect_err("not JSON");
        assert!(err.starts_with("line 1, column 2:"), "{err}");
    }
}
