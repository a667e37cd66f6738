//! The three patterns a routing rule matches a request with: its path, its
//! host and the media types it accepts. The kit of step 11, not its lesson
//! (the lesson is the order in which rules are tried): small parsers and
//! matchers, each with the semantics of mu.semte.ch's dispatcher.
//!
//! - path: `/widgets/:id` (one segment), `/files/*rest` (the rest, zero or
//!   more segments), on the raw path: what is captured stays escaped;
//! - host: `api.example.com`, `*.example.com` (the apex and any subdomain),
//!   `{sub}.example.com` (exactly one label); port ignored, any case;
//! - media ranges: `type/subtype`, either part `*`, and the request's
//!   `Accept` grouped by quality, best group first.

use std::borrow::Cow;
use std::fmt;

/// What a request's host and path captured, by name: raw, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures(Vec<(String, String)>);

impl Captures {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn push(&mut self, name: &str, value: &str) {
        self.0.push((name.to_string(), value.to_string()));
    }
}

/// A name for a capture: letters, digits, `_`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

// --- paths -------------------------------------------------------------------

/// `/widgets/:id/*rest`: literal segments, one-segment captures, and at the
/// end an optional capture of the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    rest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
}

impl PathPattern {
    pub fn parse(pattern: &str) -> Result<PathPattern, String> {
        let Some(body) = pattern.strip_prefix('/') else {
            return Err(format!("the path pattern {pattern:?} must start with `/`"));
        };
        let mut segments = Vec::new();
        let mut rest = None;
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        for (index, part) in parts.iter().enumerate() {
            let last = index + 1 == parts.len();
            if let Some(name) = part.strip_prefix('*') {
                if !last {
                    return Err(format!(
                        "in {pattern:?}, `*{name}` takes the rest of the path: it must come last"
                    ));
                }
                if !valid_name(name) {
                    return Err(format!(
                        "in {pattern:?}, `*{name}` needs a name of letters, digits and `_`"
                    ));
                }
                rest = Some(name.to_string());
            } else if let Some(name) = part.strip_prefix(':') {
                if !valid_name(name) {
                    return Err(format!(
                        "in {pattern:?}, `:{name}` needs a name of letters, digits and `_`"
                    ));
                }
                segments.push(Segment::Capture(name.to_string()));
            } else if part.is_empty() && !last {
                return Err(format!("{pattern:?} has an empty segment (`//`)"));
            } else if !part.is_empty() {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        let parsed = PathPattern { segments, rest };
        let names = parsed.names();
        if let Some((_, twice)) = names
            .iter()
            .enumerate()
            .find(|(i, name)| names[..*i].contains(name))
        {
            return Err(format!("{pattern:?} captures {twice:?} twice"));
        }
        Ok(parsed)
    }

    /// Matches the raw `path` (it starts with `/`). On a match, returns the
    /// rest the pattern's `*name` captured, with its leading slash (`/a/b`,
    /// `/`, or `""` when nothing is left), and adds the captures; a pattern
    /// without `*name` matches the whole path, one trailing slash allowed.
    pub fn matches<'p>(&self, path: &'p str, captures: &mut Captures) -> Option<&'p str> {
        let mut left = path;
        for segment in &self.segments {
            let after = left.strip_prefix('/')?;
            let end = after.find('/').unwrap_or(after.len());
            let (value, tail) = after.split_at(end);
            match segment {
                Segment::Literal(literal) if value == literal => {}
                Segment::Capture(name) if !value.is_empty() => captures.push(name, value),
                _ => return None,
            }
            left = tail;
        }
        // The rest is returned, not captured: a `forward` URL may not use
        // it (step 11 joins it to the upstream's path), and two strings a
        // request are saved.
        match &self.rest {
            Some(_) => Some(left),
            None if left.is_empty() || left == "/" => Some(""),
            None => None,
        }
    }

    /// The names this pattern captures.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .segments
            .iter()
            .filter_map(|segment| match segment {
                Segment::Capture(name) => Some(name.as_str()),
                Segment::Literal(_) => None,
            })
            .collect();
        names.extend(self.rest.as_deref());
        names
    }

    /// The literal first segment every path it matches starts with
    /// (`widgets` for `/widgets/:id`), if it has one.
    pub fn first_literal(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Literal(literal)) => Some(literal),
            _ => None,
        }
    }

    /// The name of its `*name` capture, if it has one.
    pub fn rest_name(&self) -> Option<&str> {
        self.rest.as_deref()
    }
}

/// `path` with its `.` and `..` segments resolved (RFC 3986 §5.2.4), also
/// written `%2e`: `/public/../admin` is `/admin`. Rules match, and the
/// upstream gets, the path an upstream that resolves them would serve;
/// otherwise `/public/../admin/x` would slip past a rule on `/admin`.
/// Above the root, `..` stays at the root.
pub fn without_dot_segments(path: &str) -> std::borrow::Cow<'_, str> {
    let is_dot = |segment: &str| segment == "." || segment.eq_ignore_ascii_case("%2e");
    let is_dot_dot = |segment: &str| {
        segment.len() >= 2
            && segment.len() <= 6
            && segment.to_ascii_lowercase().replace("%2e", ".").eq("..")
    };
    // Most paths have no dot at all, escaped or not: one look at each byte
    // for `.` or `%` (the three `contains` it replaced, for `.`, `%2e` and
    // `%2E`, cost some 400 instructions a request).
    if !path.bytes().any(|byte| byte == b'.' || byte == b'%') {
        return std::borrow::Cow::Borrowed(path);
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    if !segments.iter().any(|s| is_dot(s) || is_dot_dot(s)) {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut kept: Vec<&str> = Vec::new();
    let last = segments.len().saturating_sub(1);
    for (index, segment) in segments.iter().enumerate() {
        if is_dot(segment) || is_dot_dot(segment) {
            if is_dot_dot(segment) {
                kept.pop();
            }
            // `/a/..` and `/a/.` end with a slash: `/`, `/a/`.
            if index == last {
                kept.push("");
            }
        } else {
            kept.push(segment);
        }
    }
    std::borrow::Cow::Owned(format!("/{}", kept.join("/")))
}

// --- hosts -------------------------------------------------------------------

/// `api.example.com`, `*.example.com`, `{sub}.example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// `*.` in front: any number of labels (none included) before the rest.
    any_subdomain: bool,
    labels: Vec<Label>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Label {
    Literal(String),
    Capture(String),
}

impl HostPattern {
    pub fn parse(pattern: &str) -> Result<HostPattern, String> {
        let (any_subdomain, rest) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if rest.is_empty() {
            return Err(format!("the host pattern {pattern:?} names no domain"));
        }
        let mut labels = Vec::new();
        for label in rest.split('.') {
            if let Some(name) = label.strip_prefix('{').and_then(|l| l.strip_suffix('}')) {
                if !valid_name(name) {
                    return Err(format!(
                        "in {pattern:?}, `{{{name}}}` needs a name of letters, digits and `_`"
                    ));
                }
                labels.push(Label::Capture(name.to_string()));
            } else if label.is_empty()
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "{pattern:?} is not a host pattern: labels of letters, digits and `-`, \
                     `*.` in front, `{{name}}` to capture a label"
                ));
            } else {
                labels.push(Label::Literal(label.to_ascii_lowercase()));
            }
        }
        Ok(HostPattern {
            any_subdomain,
            labels,
        })
    }

    /// Matches a host as [`normalize_host`] leaves it, adding the captures.
    /// Labels are compared from the right, where hosts differ most, and
    /// nothing is captured (nor allocated) unless every label matches.
    pub fn matches(&self, host: &str, captures: &mut Captures) -> bool {
        let count = host.split('.').count();
        if count < self.labels.len() || (count > self.labels.len() && !self.any_subdomain) {
            return false;
        }
        let pairs = || host.rsplit('.').zip(self.labels.iter().rev());
        // A captured label goes into a `forward` URL: letters, digits and
        // `-` only, or a client could write `/`, `?` or `@` into the URL
        // through its Host header and choose the upstream.
        let label_like = |label: &str| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let all = pairs().all(|(label, pattern)| match pattern {
            Label::Literal(literal) => label == literal,
            Label::Capture(_) => label_like(label),
        });
        if all {
            for (label, pattern) in pairs() {
                if let Label::Capture(name) = pattern {
                    captures.push(name, label);
                }
            }
        }
        all
    }

    pub fn names(&self) -> Vec<&str> {
        self.labels
            .iter()
            .filter_map(|label| match label {
                Label::Capture(name) => Some(name.as_str()),
                Label::Literal(_) => None,
            })
            .collect()
    }
}

/// The host a request names: `Host`, or else the URI's authority (HTTP/2's
/// `:authority`, an absolute-form target). `None`: no host at all.
pub fn host_of<B>(request: &http::Request<B>) -> Option<&str> {
    match request.headers().get(http::header::HOST) {
        Some(host) => host.to_str().ok(),
        None => request
            .uri()
            .authority()
            .map(|authority| authority.as_str()),
    }
}

/// A `Host` value as host patterns compare it: without its port or a final
/// dot, lowercase (`Shop.Example.com:8080` → `shop.example.com`).
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = strip_port(host).trim_end_matches('.');
    match host.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(host.to_ascii_lowercase()),
        false => Cow::Borrowed(host),
    }
}

/// `example.com:8080` → `example.com`, `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

// --- media types -------------------------------------------------------------

/// `type/subtype`, either of them `*`, lowercase, parameters dropped.
/// (`Cow`: `*/*`, what a request without `Accept` takes, and the names
/// browsers send, cost no allocation.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    kind: Cow<'static, str>,
    subtype: Cow<'static, str>,
}

impl MediaRange {
    /// `text/html`, `image/*`, `*/*` (not `*/html`); parameters are ignored.
    pub fn parse(text: &str) -> Option<MediaRange> {
        // Byte by byte: on strings this short, `split` on a char costs more.
        let essence = text[..byte_at(text, b';').unwrap_or(text.len())].trim();
        let slash = byte_at(essence, b'/')?;
        let (kind, subtype) = (&essence[..slash], &essence[slash + 1..]);
        let token = |part: &str| {
            !part.is_empty()
                && part.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(
                            b,
                            b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+' | b'*'
                        )
                })
        };
        if !token(kind) || !token(subtype) || (kind == "*" && subtype != "*") {
            return None;
        }
        // Browsers send lowercase names: those of the list are borrowed.
        let part = |part: &str| match COMMON.iter().find(|name| **name == part) {
            Some(name) => Cow::Borrowed(*name),
            None => Cow::Owned(part.to_ascii_lowercase()),
        };
        Some(MediaRange {
            kind: part(kind),
            subtype: part(subtype),
        })
    }

    /// `*/*`.
    const ANY: MediaRange = MediaRange {
        kind: Cow::Borrowed("*"),
        subtype: Cow::Borrowed("*"),
    };

    /// Equal types and subtypes, or `*` on either side, part by part.
    pub fn matches(&self, other: &MediaRange) -> bool {
        let part = |a: &str, b: &str| a == b || a == "*" || b == "*";
        part(&self.kind, &other.kind) && part(&self.subtype, &other.subtype)
    }
}

impl fmt::Display for MediaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.subtype)
    }
}

impl MediaRange {
    /// How precise a range is: `*/*` 0, `image/*` 1, `image/png` 2.
    fn precision(&self) -> u8 {
        u8::from(self.kind != "*") + u8::from(self.subtype != "*")
    }
}

/// The types and subtypes of browsers' `Accept` (Chrome's, Firefox's, for
/// pages and images) and of APIs: borrowed, where any other name is a
/// lowercase copy. With a string for every name, `split` for every
/// separator and a `format!` for every quality, a rule by `Accept` cost a
/// request with Chrome's `Accept` for a page 20,300 instructions; 10,800
/// now (`bench/instructions.py --features`, with that `Accept`).
const COMMON: [&str; 20] = [
    "*",
    "text",
    "html",
    "plain",
    "css",
    "javascript",
    "application",
    "xhtml+xml",
    "xml",
    "json",
    "signed-exchange",
    "octet-stream",
    "image",
    "avif",
    "webp",
    "apng",
    "png",
    "jpeg",
    "gif",
    "svg+xml",
];

/// The media ranges a client sent with one quality, and the ones it said
/// it does not accept at all (`q=0`).
#[derive(Debug, Clone)]
pub struct AcceptGroup {
    ranges: Cow<'static, [MediaRange]>,
    refused: Vec<MediaRange>,
}

/// A request's [`AcceptGroup`]s, best first. Most requests' are one
/// `*/*` group, borrowed from a `static` rather than built: two
/// allocations a request fewer.
pub struct AcceptGroups(Cow<'static, [AcceptGroup]>);

/// One group, `*/*`: no `Accept`, curl's `*/*`, or no rule that asks.
static ANYTHING: [AcceptGroup; 1] = [AcceptGroup {
    ranges: Cow::Borrowed(&[MediaRange::ANY]),
    refused: Vec::new(),
}];

impl std::ops::Deref for AcceptGroups {
    type Target = [AcceptGroup];

    fn deref(&self) -> &[AcceptGroup] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a AcceptGroups {
    type Item = &'a AcceptGroup;
    type IntoIter = std::slice::Iter<'a, AcceptGroup>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl AcceptGroup {
    /// Whether this group takes one of `offered` (a rule's media types): a
    /// range matches it, and no `q=0` range at least as precise refuses it
    /// (`*/*, image/png;q=0` does not take `image/png`).
    pub fn takes_any(&self, offered: &[MediaRange]) -> bool {
        offered.iter().any(|offer| {
            self.ranges.iter().any(|range| {
                range.matches(offer)
                    && !self
                        .refused
                        .iter()
                        .any(|no| no.matches(offer) && no.precision() >= range.precision())
            })
        })
    }

    /// The ranges, for display.
    pub fn ranges(&self) -> &[MediaRange] {
        &self.ranges
    }
}

/// A request's `Accept` values as groups of media ranges of equal quality,
/// best first; malformed ranges are left out, `q=0` ranges refuse what
/// they name in every group. No `Accept` at all is `*/*`. At least one
/// group comes back (maybe empty), so that rules without `accept` are
/// still tried.
pub fn accept_groups<'a>(values: impl Iterator<Item = &'a str>) -> AcceptGroups {
    let mut values = values.peekable();
    let anything = || AcceptGroups(Cow::Borrowed(&ANYTHING));
    // No `Accept`, or one that is `*/*` alone (curl's, most tools'): the
    // same one group, without parsing, sorting and grouping it (four
    // allocations a request fewer).
    let Some(first) = values.next() else {
        return anything();
    };
    if values.peek().is_none() && first.trim() == "*/*" {
        return anything();
    }
    let values = std::iter::once(first).chain(values);
    let mut seen_header = false;
    let mut ranges: Vec<(u16, MediaRange)> = Vec::with_capacity(8);
    let mut refused = Vec::new();
    for value in values {
        seen_header = true;
        for item in value.split(',') {
            let (Some(range), Some(quality)) = (MediaRange::parse(item), quality(item)) else {
                continue;
            };
            match quality {
                0 => refused.push(range),
                quality => ranges.push((quality, range)),
            }
        }
    }
    if !seen_header {
        ranges.push((1000, MediaRange::ANY));
    }
    // Stable: equal qualities keep the order they were sent in.
    ranges.sort_by_key(|(quality, _)| std::cmp::Reverse(*quality));
    let mut groups: Vec<(u16, Vec<MediaRange>)> = Vec::with_capacity(4);
    for (quality, range) in ranges {
        match groups.last_mut() {
            Some((last, group)) if *last == quality => group.push(range),
            _ => groups.push((quality, vec![range])),
        }
    }
    let mut groups: Vec<AcceptGroup> = groups
        .into_iter()
        .map(|(_, ranges)| AcceptGroup {
            ranges: Cow::Owned(ranges),
            refused: refused.clone(),
        })
        .collect();
    if groups.is_empty() {
        groups.push(AcceptGroup {
            ranges: Cow::Borrowed(&[]),
            refused,
        });
    }
    AcceptGroups(Cow::Owned(groups))
}

/// Where `byte` first is in `text`, if it is.
fn byte_at(text: &str, byte: u8) -> Option<usize> {
    text.bytes().position(|b| b == byte)
}

/// The `q` of one `Accept` item, in thousandths (1000 without one); `None`
/// when it is not a valid quality.
fn quality(item: &str) -> Option<u16> {
    // Most items have no parameter at all.
    let Some(semicolon) = byte_at(item, b';') else {
        return Some(1000);
    };
    let q = item[semicolon + 1..].split(';').find_map(|param| {
        let equals = byte_at(param, b'=')?;
        let name = param[..equals].trim();
        name.eq_ignore_ascii_case("q")
            .then(|| param[equals + 1..].trim())
    });
    let Some(q) = q else {
        return Some(1000);
    };
    let (whole, fraction) = match byte_at(q, b'.') {
        Some(dot) => (&q[..dot], &q[dot + 1..]),
        None => (q, ""),
    };
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `0.8` is 800: the digits, padded to three.
    let digits = fraction.bytes().chain(std::iter::repeat(b'0')).take(3);
    let thousandths = digits.fold(0, |sum, digit| sum * 10 + u16::from(digit - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(pattern: &str, path: &str) -> Option<(String, Captures)> {
        let mut captures = Captures::default();
        let pattern = PathPattern::parse(pattern).unwrap();
        pattern
            .matches(path, &mut captures)
            .map(|rest| (rest.to_string(), captures))
    }

    #[test]
    fn paths() {
        for (request, rest) in [
            ("/widgets", ""),
            ("/widgets/", "/"),
            ("/widgets/a/b", "/a/b"),
            ("/widgets/a%2Fb/", "/a%2Fb/"),
        ] {
            let (got, captures) = path("/widgets/*rest", request).unwrap();
            assert_eq!(got, rest, "{request}");
            assert_eq!(captures.get("rest"), None);
        }
        assert!(path("/widgets/*rest", "/widgetsx").is_none());
        assert!(path("/widgets/*rest", "/other").is_none());
        let (_, captures) = path("/items/:id", "/items/42/").unwrap();
        assert_eq!(captures.get("id"), Some("42"));
        assert!(path("/items/:id", "/items/").is_none());
        assert!(path("/items/:id", "/items/42/more").is_none());
        assert_eq!(path("/", "/").unwrap().0, "");
        assert!(path("/", "/a").is_none());
        assert_eq!(
            path("/*_", "/anything/at/all").unwrap().0,
            "/anything/at/all"
        );
        for bad in [
            "widgets",
            "/a/*rest/b",
            "/a//b",
            "/:",
            "/*",
            "/:a-b",
            "/:a/:a",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dot_segments() {
        for (path, resolved) in [
            ("/a/b", "/a/b"),
            ("/public/../admin/x", "/admin/x"),
            ("/a/./b/", "/a/b/"),
            ("/a/%2e%2E/b", "/b"),
            ("/../../x", "/x"),
            ("/a/..", "/"),
            ("/a/b/.", "/a/b/"),
            ("/a%2Fb/..c", "/a%2Fb/..c"),
        ] {
            assert_eq!(without_dot_segments(path), resolved, "{path}");
        }
    }

    fn host(pattern: &str, host: &str) -> Option<Captures> {
        let mut captures = Captures::default();
        HostPattern::parse(pattern)
            .unwrap()
            .matches(&normalize_host(host), &mut captures)
            .then_some(captures)
    }

    #[test]
    fn hosts() {
        assert!(host("api.example.com", "API.Example.com:8080").is_some());
        assert!(host("api.example.com", "example.com").is_none());
        assert!(host("*.example.com", "example.com").is_some());
        assert!(host("*.example.com", "a.b.example.com").is_some());
        assert!(host("*.example.com", "badexample.com").is_none());
        let captures = host("{sub}.example.com", "Shop.example.com").unwrap();
        assert_eq!(captures.get("sub"), Some("shop"));
        assert!(host("{sub}.example.com", "a.b.example.com").is_none());
        assert!(host("{sub}.example.com", "example.com").is_none());
        assert!(host("{sub}.example.com", "a?b=1&.example.com").is_none());
        assert!(host("{sub}.example.com", "x:1@evil/.example.com").is_none());
        assert!(host("localhost", "[::1]:8080").is_none());
        assert!(host("{app}.localhost", "demo.localhost:8080").is_some());
        for bad in ["", "*.", "a..b", "{x-y}.a", "a b"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn groups(accept: Option<&str>) -> Vec<Vec<String>> {
        accept_groups(accept.into_iter())
            .iter()
            .map(|group| group.ranges().iter().map(ToString::to_string).collect())
            .collect()
    }

    #[test]
    fn accept() {
        assert_eq!(groups(None), [["*/*"]]);
        assert_eq!(
            groups(Some("image/png;q=0.5, application/json")),
            [["application/json"], ["image/png"]]
        );
        assert_eq!(
            groups(Some("text/html, application/xhtml+xml, */*;q=0.8")),
            [vec!["text/html", "application/xhtml+xml"], vec!["*/*"]]
        );
        assert_eq!(groups(Some("text/html;q=0")), [Vec::<String>::new()]);
        assert_eq!(
            groups(Some("text/html;q=2, a/b;q=0.1234")),
            [Vec::<String>::new()]
        );
        let range = |text: &str| MediaRange::parse(text).unwrap();
        assert!(range("image/*").matches(&range("image/png")));
        assert!(range("image/png").matches(&range("*/*")));
        assert!(!range("image/png").matches(&range("text/*")));
        assert!(range("Application/JSON; charset=utf-8").matches(&range("application/json")));
        assert!(MediaRange::parse("*/html").is_none());
        // Names of the common list and others, in any case; qualities to
        // the thousandth, `q` in any case, among other parameters.
        assert_eq!(
            groups(Some(
                "TEXT/Html;level=1;Q=0.75, Application/X-Mine;q=0.8, a/b;q=1.0, c/d;q=0."
            )),
            [vec!["a/b"], vec!["application/x-mine"], vec!["text/html"]]
        );
        assert!(range("text/html;q=0.5").matches(&range("text/HTML")));
        let takes = |accept: &str, offered: &str| {
            accept_groups([accept].into_iter())
                .iter()
                .any(|group| group.takes_any(&[range(offered)]))
        };
        assert!(!takes("*/*, image/png;q=0", "image/png"));
        assert!(takes("*/*, image/png;q=0", "image/gif"));
        assert!(takes("image/png, image/*;q=0", "image/png"));
        assert!(!takes("text/html;q=0", "text/html"));
    }
}
