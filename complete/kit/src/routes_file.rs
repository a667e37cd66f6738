//! Reading a routes file (TOML) into rules ready to match: the kit of step
//! 11. Every mistake is one error that names the file, the line and the
//! column, so that an operator can fix it at 3 a.m.
//!
//! ```toml
//! [accept]                          # named groups of media types
//! json = ["application/json", "application/vnd.api+json"]
//!
//! [[rules]]
//! methods = ["GET", "HEAD"]         # optional: any method
//! host = "*.example.com"            # optional: any host
//! path = "/widgets/*rest"           # required
//! accept = ["json"]                 # optional: names from [accept]
//! layer = "main"                    # or "fallback", tried after every main rule
//! forward = "http://127.0.0.1:9000/widgets"   # or respond = { status, body, headers }
//! request_headers = { set = { "x-api" = "1" }, remove = ["cookie"] }
//! response_headers = { set = { "cache-control" = "no-store" } }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use serde::Deserialize;
use toml::Spanned;
use workshop::hop_by_hop::HOP_BY_HOP;

use crate::patterns::{
    AcceptGroups, Captures, HostPattern, MediaRange, PathPattern, accept_groups,
};
use crate::upstream_groups::{Group, Groups};

/// The rules of one routes file, in file order.
#[derive(Debug)]
pub struct Routes {
    pub rules: Vec<Rule>,
    /// Where they come from, for logs: a file name, or a description.
    pub source: String,
    /// For each literal first path segment, the rules that may match a
    /// path starting with it (those with that segment, and those whose
    /// first segment captures anything), in file order: most rules never
    /// need trying. The other paths try `any_first`. (A B-tree: a few
    /// string comparisons cost less than hashing the segment, 1,100
    /// instructions a request with a `HashMap`.)
    by_first: BTreeMap<String, Candidates>,
    any_first: Candidates,
}

/// The rules that may match a path, and whether one of them chooses by
/// `Accept` (so that `Accept` is parsed only then).
#[derive(Debug, Default)]
struct Candidates {
    rules: Vec<usize>,
    by_accept: bool,
}

impl Routes {
    pub fn new(rules: Vec<Rule>, source: String) -> Routes {
        let candidates = |indices: Vec<usize>| Candidates {
            by_accept: indices.iter().any(|&i| rules[i].accept.is_some()),
            rules: indices,
        };
        let any_first: Vec<usize> = (0..rules.len())
            .filter(|&i| rules[i].path.first_literal().is_none())
            .collect();
        let mut by_first: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, rule) in rules.iter().enumerate() {
            if let Some(first) = rule.path.first_literal() {
                by_first.entry(first.to_string()).or_default().push(i);
            }
        }
        let by_first = by_first
            .into_iter()
            .map(|(first, mut indices)| {
                indices.extend(&any_first);
                indices.sort_unstable();
                (first, candidates(indices))
            })
            .collect();
        let any_first = candidates(any_first);
        Routes {
            rules,
            source,
            by_first,
            any_first,
        }
    }

    /// Whether a rule that may match `path` chooses by `Accept`: then the
    /// answer to that path depends on the request's `Accept` (whichever
    /// rule wins, or none), and caches must be told (`Vary: Accept`).
    pub fn depends_on_accept(&self, path: &str) -> bool {
        self.for_path(path).by_accept
    }

    /// The request's `Accept` (`headers`) as [`accept_groups`], best first,
    /// parsed only if a rule that may match `path` chooses by it: without
    /// one, every group finds the rule the first finds, and a browser's
    /// `Accept` takes thousands of instructions to parse (no `Accept` is one
    /// group, `*/*`).
    pub fn accept_groups(&self, path: &str, headers: &HeaderMap) -> AcceptGroups {
        if !self.depends_on_accept(path) {
            return accept_groups(std::iter::empty());
        }
        let accepted = headers.get_all(http::header::ACCEPT).iter();
        accept_groups(accepted.filter_map(|value| value.to_str().ok()))
    }

    /// The rules of `layer` that may match `path`, in file order: the
    /// others cannot (their first segment is another word).
    pub fn candidates<'r>(&'r self, layer: Layer, path: &str) -> impl Iterator<Item = &'r Rule> {
        self.for_path(path)
            .rules
            .iter()
            .map(|&i| &self.rules[i])
            .filter(move |rule| rule.layer == layer)
    }

    fn for_path(&self, path: &str) -> &Candidates {
        let first = path.trim_start_matches('/');
        // Byte by byte: `find('/')` sets up a searcher, which costs more
        // than the search on a first segment (three lookups a request).
        let end = first.bytes().position(|b| b == b'/');
        let first = &first[..end.unwrap_or(first.len())];
        self.by_first.get(first).unwrap_or(&self.any_first)
    }
}

impl std::fmt::Display for Routes {
    /// `8 rules from routes/example.toml`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.rules.len();
        let plural = if count == 1 { "" } else { "s" };
        write!(f, "{count} rule{plural} from {}", self.source)
    }
}

/// Main rules are tried first; fallback rules answer what no main rule did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Main,
    Fallback,
}

/// One `[[rules]]` entry, checked and compiled.
#[derive(Debug)]
pub struct Rule {
    /// The line of its `[[rules]]`, to name it in logs.
    pub line: usize,
    pub layer: Layer,
    /// `None`: any method.
    pub methods: Option<Vec<Method>>,
    /// `None`: any host.
    pub host: Option<HostPattern>,
    pub path: PathPattern,
    /// The media types of its `accept` groups; `None`: any request.
    pub accept: Option<Vec<MediaRange>>,
    pub action: Action,
    pub request_headers: HeaderChanges,
    pub response_headers: HeaderChanges,
}

/// What a rule does with a request it matched.
#[derive(Debug)]
pub enum Action {
    /// Forward it to this URL (captures filled in, the rest joined).
    Forward(UrlTemplate),
    /// Answer it directly.
    Respond(Canned),
}

/// A response the proxy answers itself.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: StatusCode,
    pub body: Bytes,
    pub headers: HeaderMap,
}

/// Headers a rule sets (replacing any) and removes.
#[derive(Debug, Clone, Default)]
pub struct HeaderChanges {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderChanges {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// `http://{sub}.internal:8080/items/{id}`: a URL with captures to fill in.
/// In step 17, its host may name a group of servers (`http://api/`): each
/// URL then takes the group's next server.
#[derive(Debug, Clone)]
pub struct UrlTemplate {
    text: String,
    group: Option<Arc<Group>>,
    /// Parsed once when nothing is to fill in, as in most rules: a request
    /// then clones it (shared bytes), where filling costs a string, a
    /// parse and a copy (4 allocations a request, by callgrind).
    fixed: Option<Uri>,
}

impl UrlTemplate {
    fn new(text: String) -> UrlTemplate {
        let fixed = match text.contains('{') {
            true => None,
            false => text.parse::<Uri>().ok(),
        };
        UrlTemplate {
            text,
            group: None,
            fixed,
        }
    }

    /// The URL for one request. A capture that makes it invalid (a host
    /// label with odd bytes, say) is an error to answer, not a panic.
    pub fn render(&self, captures: &Captures) -> Result<Uri, String> {
        let uri = self.fill(captures)?;
        let Some(group) = &self.group else {
            return Ok(uri);
        };
        let mut parts = uri.into_parts();
        parts.authority = Some(group.choose());
        Uri::from_parts(parts).map_err(|err| format!("group {}: {err}", group.name))
    }

    fn fill(&self, captures: &Captures) -> Result<Uri, String> {
        if let Some(uri) = &self.fixed {
            return Ok(uri.clone());
        }
        let mut url = String::with_capacity(self.text.len());
        let mut rest = self.text.as_str();
        while let Some(open) = rest.find('{') {
            url.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |at| open + at);
            let name = &rest[open + 1..close];
            url.push_str(captures.get(name).unwrap_or(""));
            rest = rest.get(close + 1..).unwrap_or("");
        }
        url.push_str(rest);
        url.parse::<Uri>()
            .map_err(|err| format!("{url:?} is not a URL ({err})"))
    }

    /// The names it uses, `{name}`.
    fn names(&self) -> Vec<&str> {
        self.text
            .split('{')
            .skip(1)
            .filter_map(|part| part.split_once('}').map(|(name, _)| name))
            .collect()
    }
}

/// One rule that forwards every request to `upstream`, its path joined with
/// the request's and its query merged: what steps 02 to 10 do, for a step
/// 11 started with `--upstream` and no routes file.
// A literal pattern, parsed the same on every run: not input.
#[allow(clippy::expect_used)]
pub fn forward_everything(upstream: &Uri) -> Routes {
    let rule = Rule {
        line: 0,
        layer: Layer::Main,
        methods: None,
        host: None,
        path: PathPattern::parse("/*rest").expect("a valid pattern"),
        accept: None,
        action: Action::Forward(UrlTemplate::new(upstream.to_string())),
        request_headers: HeaderChanges::default(),
        response_headers: HeaderChanges::default(),
    };
    Routes::new(vec![rule], format!("--upstream {upstream}"))
}

/// Where a step's rules come from, and how to read them again.
#[derive(Clone)]
pub enum Source {
    /// A routes file, watched; `origin` takes the place of the example's
    /// 127.0.0.1:9000.
    File {
        path: std::path::PathBuf,
        origin: Option<Authority>,
    },
    /// `--upstream` without a file: everything goes there, as in step 10.
    Upstream(Uri),
}

impl Source {
    /// Step 11's choice: `--routes FILE`; else `--upstream URL` alone,
    /// everything there; else the example.
    pub fn from_flags(routes: Option<&Path>, upstream: Option<&Uri>) -> Source {
        match (routes, upstream) {
            (Some(path), _) => Source::File {
                path: path.to_path_buf(),
                origin: None,
            },
            (None, Some(upstream)) => Source::Upstream(upstream.clone()),
            (None, None) => Source::File {
                path: example(),
                origin: None,
            },
        }
    }

    pub fn load(&self) -> Result<Routes, String> {
        match self {
            Source::File { path, origin } => load(path, origin.as_ref()),
            Source::Upstream(upstream) => Ok(forward_everything(upstream)),
        }
    }

    /// The file to watch, if any.
    pub fn watched(&self) -> Option<&Path> {
        match self {
            Source::File { path, .. } => Some(path),
            Source::Upstream(_) => None,
        }
    }

    /// Whether this is the repository's example.
    pub fn is_example(&self) -> bool {
        self.watched() == Some(example().as_path())
    }
}

/// `routes/example.toml`, in the workshop's repository (found at run time).
pub fn example() -> std::path::PathBuf {
    workshop::repo::root().join("routes/example.toml")
}

/// Reads and checks a routes file. `origin`, when given, takes the place of
/// `127.0.0.1:9000` in every `forward` (the example file names the demo
/// origin's usual address; the step that runs it in-process knows its
/// real one).
pub fn load(path: &Path, origin: Option<&Authority>) -> Result<Routes, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| format!("{name}: {err}"))?;
    parse_with_origin(&text, &name, origin)
}

/// Parses the text of a routes file called `name`.
pub fn parse(text: &str, name: &str) -> Result<Routes, String> {
    parse_with_origin(text, name, None)
}

fn parse_with_origin(text: &str, name: &str, origin: Option<&Authority>) -> Result<Routes, String> {
    let file: RoutesSection = toml::from_str(text).map_err(|err| toml_error(text, name, &err))?;
    compile(text, name, &file, origin, None)
}

/// Checks the `[accept]` and `[[rules]]` read from `text` (a routes file,
/// or step 17's config file, which has them too) into rules. `groups`:
/// step 17's upstream groups, whose connector also takes `https://`.
pub(crate) fn compile(
    text: &str,
    name: &str,
    file: &RoutesSection,
    origin: Option<&Authority>,
    upstream_groups: Option<&Groups>,
) -> Result<Routes, String> {
    let at = |span: Range<usize>, message: &str| {
        let (line, column) = line_column(text, span.start);
        format!("{name}:{line}:{column}: {message}")
    };

    let mut groups: BTreeMap<String, Vec<MediaRange>> = BTreeMap::new();
    for (group, types) in &file.accept {
        let mut ranges = Vec::new();
        for media in types {
            let range = MediaRange::parse(media.get_ref()).ok_or_else(|| {
                at(
                    media.span(),
                    &format!(
                        "{:?} is not a media type (like `application/json` or `image/*`)",
                        media.get_ref()
                    ),
                )
            })?;
            ranges.push(range);
        }
        if ranges.is_empty() {
            return Err(format!(
                "{name}: the accept group {group:?} is empty: list its media types"
            ));
        }
        groups.insert(group.clone(), ranges);
    }

    let mut rules = Vec::new();
    for spanned in &file.rules {
        let rule = spanned.get_ref();
        let line = line_column(text, spanned.span().start).0;
        let fail = |span: Range<usize>, message: String| at(span, &message);
        let path =
            PathPattern::parse(rule.path.get_ref()).map_err(|e| fail(rule.path.span(), e))?;
        let host = match &rule.host {
            Some(host) => {
                Some(HostPattern::parse(host.get_ref()).map_err(|e| fail(host.span(), e))?)
            }
            None => None,
        };
        let methods = match &rule.methods {
            Some(methods) if methods.get_ref().is_empty() => {
                return Err(fail(
                    methods.span(),
                    "`methods = []` matches nothing: list methods, or leave it out for any".into(),
                ));
            }
            Some(methods) => Some(
                methods
                    .get_ref()
                    .iter()
                    .map(|method| {
                        let upper = method.get_ref().to_ascii_uppercase();
                        Method::from_bytes(upper.as_bytes()).map_err(|_| {
                            fail(
                                method.span(),
                                format!("{:?} is not an HTTP method", method.get_ref()),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let accept = match &rule.accept {
            Some(names) => {
                let mut ranges = Vec::new();
                for group in names {
                    let members = groups.get(group.get_ref()).ok_or_else(|| {
                        let known: Vec<&str> = groups.keys().map(String::as_str).collect();
                        fail(
                            group.span(),
                            format!(
                                "no accept group {:?} (the [accept] table has: {})",
                                group.get_ref(),
                                if known.is_empty() {
                                    "none".to_string()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        )
                    })?;
                    ranges.extend(members.iter().cloned());
                }
                Some(ranges)
            }
            None => None,
        };
        let layer = match rule
            .layer
            .as_ref()
            .map(|layer| (layer.get_ref().as_str(), layer.span()))
        {
            None | Some(("main", _)) => Layer::Main,
            Some(("fallback", _)) => Layer::Fallback,
            Some((other, span)) => {
                return Err(fail(
                    span,
                    format!("layer {other:?}: use \"main\" or \"fallback\""),
                ));
            }
        };
        let captures = Captured {
            host: host.iter().flat_map(HostPattern::names).collect(),
            path: path.names().into_iter().collect(),
            rest: path.rest_name(),
        };
        if let Some(both) = captures
            .host
            .iter()
            .find(|name| captures.path.contains(*name))
        {
            return Err(fail(
                rule.path.span(),
                format!("{both:?} is captured by both the host and the path"),
            ));
        }
        let action = match (&rule.forward, &rule.respond) {
            (Some(forward), None) => Action::Forward(
                check_forward(forward, &captures, origin, upstream_groups)
                    .map_err(|e| fail(forward.span(), e))?,
            ),
            (None, Some(respond)) => Action::Respond(canned(respond.get_ref(), &fail)?),
            (Some(_), Some(respond)) => {
                return Err(fail(
                    respond.span(),
                    "a rule either forwards or responds, not both".into(),
                ));
            }
            (None, None) => {
                return Err(fail(
                    spanned.span(),
                    "this rule has neither `forward` nor `respond`: say what it does".into(),
                ));
            }
        };
        rules.push(Rule {
            line,
            layer,
            methods,
            host,
            path,
            accept,
            action,
            request_headers: header_changes(rule.request_headers.as_ref(), &fail)?,
            response_headers: header_changes(rule.response_headers.as_ref(), &fail)?,
        });
    }
    if rules.is_empty() {
        // An empty file (or one cut short while an editor writes it) would
        // answer 404 to everything: refused, the rules in force stay.
        return Err(format!(
            "{name}: no [[rules]]: a proxy without rules would answer 404 to everything"
        ));
    }
    Ok(Routes::new(rules, name.to_string()))
}

/// What a rule's patterns capture, by where.
struct Captured<'a> {
    host: HashSet<&'a str>,
    path: HashSet<&'a str>,
    /// The path's `*name`: joined to the upstream's path by itself.
    rest: Option<&'a str>,
}

/// A `forward` URL: `http://`, a host, a valid port, and only captures the
/// rule has, each where it belongs: host captures (letters, digits, `-`)
/// may name the upstream, path captures only go in its path. `origin`,
/// when given, replaces `127.0.0.1:9000`. With `groups` (step 17), the
/// host may name a group, and `https://` is allowed.
fn check_forward(
    forward: &Spanned<String>,
    captured: &Captured,
    origin: Option<&Authority>,
    groups: Option<&Groups>,
) -> Result<UrlTemplate, String> {
    let text = forward.get_ref();
    if text.matches('{').count() != text.matches('}').count() {
        return Err(format!("{text:?}: a `{{` without its `}}`, or the reverse"));
    }
    let mut template = UrlTemplate::new(match origin {
        Some(origin) => text.replace("127.0.0.1:9000", origin.as_str()),
        None => text.clone(),
    });
    let authority_end = text
        .find("://")
        .map(|at| {
            at + 3
                + text[at + 3..]
                    .find(['/', '?'])
                    .unwrap_or(text.len() - at - 3)
        })
        .unwrap_or(0);
    for name in template.names() {
        if Some(name) == captured.rest {
            return Err(format!(
                "`{{{name}}}` in forward: the rest `*{name}` captures is joined to the \
                 upstream's path already"
            ));
        }
        let in_host = text[..authority_end].contains(&format!("{{{name}}}"));
        if in_host && captured.path.contains(name) {
            return Err(format!(
                "`{{{name}}}` in forward's host: a path capture may only go in the path (host \
                 captures may name the upstream)"
            ));
        }
        if !captured.host.contains(name) && !captured.path.contains(name) {
            return Err(format!(
                "`{{{name}}}` in forward: the rule's host and path capture no {name:?}"
            ));
        }
    }
    // Check the URL with every capture as a plain word.
    let mut sample = Captures::default();
    for name in captured.host.iter().chain(&captured.path) {
        sample.push(name, "x");
    }
    let uri = template.render(&sample)?;
    let bad_port = uri.authority().is_some_and(|authority| {
        let after_host = authority
            .as_str()
            .rsplit_once(']')
            .map_or(authority.as_str(), |(_, rest)| rest);
        after_host
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_err())
    });
    if bad_port {
        return Err(format!("{text:?}: the port must be a number up to 65535"));
    }
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") if groups.is_some() => {}
        Some(other) => {
            let what = if groups.is_some() {
                "http:// or https://"
            } else {
                "http://"
            };
            return Err(format!(
                "forward to {other}:// is not supported; use {what}"
            ));
        }
        None => return Err(format!("{:?} needs http://host:port", forward.get_ref())),
    }
    let Some(host) = uri.host().filter(|host| !host.is_empty()) else {
        return Err(format!("{:?} names no host", forward.get_ref()));
    };
    if let Some(group) = groups.and_then(|groups| groups.named(host)) {
        if uri.port().is_some() {
            return Err(format!(
                "{host:?} is an upstream group: its servers have their ports; write no port here"
            ));
        }
        template.group = Some(group);
    }
    Ok(template)
}

fn canned(
    respond: &RespondFile,
    fail: &dyn Fn(Range<usize>, String) -> String,
) -> Result<Canned, String> {
    let status = Some(*respond.status.get_ref())
        .filter(|code| (200..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| fail(respond.status.span(), "a status from 200 to 599".into()))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &respond.headers {
        let (name, value) = header(name, value, fail)?;
        headers.append(name, value);
    }
    Ok(Canned {
        status,
        body: Bytes::from(respond.body.clone().unwrap_or_default()),
        headers,
    })
}

fn header_changes(
    changes: Option<&Spanned<HeadersFile>>,
    fail: &dyn Fn(Range<usize>, String) -> String,
) -> Result<HeaderChanges, String> {
    let Some(changes) = changes else {
        return Ok(HeaderChanges::default());
    };
    let mut out = HeaderChanges::default();
    for (name, value) in &changes.get_ref().set {
        out.set.push(header(name, value, fail)?);
    }
    for name in &changes.get_ref().remove {
        out.remove.push(header_name(name, fail)?);
    }
    Ok(out)
}

fn header(
    name: &Spanned<String>,
    value: &Spanned<String>,
    fail: &dyn Fn(Range<usize>, String) -> String,
) -> Result<(HeaderName, HeaderValue), String> {
    let value = HeaderValue::from_str(value.get_ref()).map_err(|_| {
        fail(
            value.span(),
            format!("{:?} is not a header value", value.get_ref()),
        )
    })?;
    Ok((header_name(name, fail)?, value))
}

/// A header name a rule may touch: not a connection-specific one (step
/// 05 strips those whatever a rule says).
fn header_name(
    name: &Spanned<String>,
    fail: &dyn Fn(Range<usize>, String) -> String,
) -> Result<HeaderName, String> {
    let parsed = HeaderName::from_bytes(name.get_ref().as_bytes()).map_err(|_| {
        fail(
            name.span(),
            format!("{:?} is not a header name", name.get_ref()),
        )
    })?;
    // Step 05's list: what it strips whatever a rule says.
    if HOP_BY_HOP.contains(&parsed) {
        return Err(fail(
            name.span(),
            format!("{parsed} is connection-specific: the proxy handles it, a rule cannot"),
        ));
    }
    // The body's length is hyper's to say: a wrong one would desync the
    // connection.
    if parsed == http::header::CONTENT_LENGTH {
        return Err(fail(
            name.span(),
            "content-length is the body's own: the proxy sets it, a rule cannot".into(),
        ));
    }
    Ok(parsed)
}

/// toml's own error (a syntax error, a wrong type, an unknown key) as
/// `FILE:LINE:COLUMN: message`, on one line: its messages may span lines.
pub(crate) fn toml_error(text: &str, name: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', ": ");
    match err.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("{name}:{line}:{column}: {message}")
        }
        None => format!("{name}: {message}"),
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

// --- the file as written -----------------------------------------------------

/// `[accept]` and `[[rules]]`: a routes file, or part of step 17's config.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoutesSection {
    #[serde(default)]
    pub(crate) accept: BTreeMap<String, Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) rules: Vec<Spanned<RuleFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    methods: Option<Spanned<Vec<Spanned<String>>>>,
    host: Option<Spanned<String>>,
    path: Spanned<String>,
    accept: Option<Vec<Spanned<String>>>,
    layer: Option<Spanned<String>>,
    forward: Option<Spanned<String>>,
    respond: Option<Spanned<RespondFile>>,
    request_headers: Option<Spanned<HeadersFile>>,
    response_headers: Option<Spanned<HeadersFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RespondFile {
    status: Spanned<u16>,
    body: Option<String>,
    #[serde(default)]
    headers: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadersFile {
    #[serde(default)]
    set: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    remove: Vec<Spanned<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[accept]
json = ["application/json"]
html = ["text/html"]

[[rules]]
methods = ["get"]
host = "{sub}.example.com"
path = "/widgets/:id/*rest"
accept = ["json"]
forward = "http://{sub}.internal:8080/items/{id}"
request_headers = { set = { "x-a" = "1" }, remove = ["cookie"] }

[[rules]]
path = "/*_"
layer = "fallback"
respond = { status = 404, body = "none", headers = { "content-type" = "text/plain" } }
"#;

    #[test]
    fn a_good_file() {
        let routes = parse(GOOD, "r.toml").unwrap();
        assert_eq!(routes.rules.len(), 2);
        let rule = &routes.rules[0];
        assert_eq!(rule.line, 6);
        assert_eq!(rule.methods.as_deref(), Some(&[Method::GET][..]));
        assert_eq!(rule.layer, Layer::Main);
        assert_eq!(rule.request_headers.set.len(), 1);
        assert!(matches!(routes.rules[1].action, Action::Respond(ref c) if c.status == 404));
        let Action::Forward(template) = &rule.action else {
            panic!("forward");
        };
        let mut captures = Captures::default();
        HostPattern::parse("{sub}.example.com")
            .unwrap()
            .matches("shop.example.com", &mut captures);
        PathPattern::parse("/w/:id")
            .unwrap()
            .matches("/w/42", &mut captures);
        assert_eq!(
            template.render(&captures).unwrap(),
            "http://shop.internal:8080/items/42"
        );
    }

    #[test]
    fn every_mistake_names_line_and_column() {
        let cases = [
            ("[[rules]]\npath = \"/a\"\n", "r.toml:1:1:", "neither"),
            (
                "[[rules]]\npath = \"/a\"\nforward = \"http://x\"\nrespond = { status = 200 }\n",
                "r.toml:4:11:",
                "not both",
            ),
            (
                "[[rules]]\npath = \"a\"\nforward = \"http://x\"\n",
                "r.toml:2:8:",
                "start with",
            ),
            (
                "[[rules]]\npath = \"/a\"\naccept = [\"json\"]\nforward = \"http://x\"\n",
                "r.toml:3:11:",
                "no accept group",
            ),
            (
                "[[rules]]\npath = \"/a\"\nforward = \"https://x\"\n",
                "r.toml:3:11:",
                "https",
            ),
            (
                "[[rules]]\npath = \"/a\"\nforward = \"http://x/{id}\"\n",
                "r.toml:3:11:",
                "capture no",
            ),
            (
                "[[rules]]\npath = \"/a\"\nforwrd = \"http://x\"\n",
                "r.toml:3:1:",
                "unknown field",
            ),
            ("[[rules]\n", "r.toml:1:", ""),
            (
                "[accept]\nx = [\"nope\"]\n",
                "r.toml:2:6:",
                "not a media type",
            ),
            (
                "[[rules]]\npath = \"/a\"\nforward = \"http://x\"\nlayer = \"last\"\n",
                "r.toml:4:9:",
                "fallback",
            ),
            (
                "[[rules]]\npath = \"/a\"\nforward = \"http://x\"\nrequest_headers = { set = { \"Connection\" = \"x\" } }\n",
                "r.toml:4:29:",
                "connection-specific",
            ),
            (
                "[[rules]]\npath = \"/a\"\nrespond = { status = 200, headers = { \"content-length\" = \"2\" } }\n",
                "r.toml:3:39:",
                "content-length",
            ),
            (
                "[[rules]]\npath = \"/a/*rest\"\nforward = \"http://x/{rest}\"\n",
                "r.toml:3:11:",
                "joined",
            ),
            (
                "[[rules]]\npath = \"/a/:id\"\nforward = \"http://{id}.svc/\"\n",
                "r.toml:3:11:",
                "host",
            ),
            (
                "[[rules]]\npath = \"/a/:id\"\nforward = \"http://x/{id\"\n",
                "r.toml:3:11:",
                "without",
            ),
            (
                "[[rules]]\npath = \"/a\"\nforward = \"http://x:99999/\"\n",
                "r.toml:3:11:",
                "65535",
            ),
            (
                "[[rules]]\npath = \"/a\"\nrespond = { status = 700 }\n",
                "r.toml:3:22:",
                "200 to 599",
            ),
            (
                "[[rules]]\npath = \"/a\"\nmethods = []\nforward = \"http://x\"\n",
                "r.toml:3:11:",
                "matches nothing",
            ),
            ("", "r.toml:", "no [[rules]]"),
        ];
        for (text, place, words) in cases {
            let err = parse(text, "r.toml").unwrap_err();
            assert!(
                err.starts_with(place) && err.contains(words),
                "{text:?} gave {err}"
            );
        }
    }
}
