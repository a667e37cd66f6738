//! The access log's writer, the kit of step 15 (whose lesson is *when* a
//! line is written, and what it says): a line per request, in Apache's
//! common format (extended with the host and the time taken) or in JSON,
//! written by a thread of its own, so that a slow disk never holds a
//! response.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::{Request, StatusCode};
use workshop::ip_text::push_ip;
use workshop::listen_and_serve::ClientAddr;

use crate::config::{AccessLog as LogTo, LogFormat, LogSettings};
use crate::patterns::host_of;

/// Where access log lines go: a thread writes them, so that a slow disk
/// never holds a response.
#[derive(Clone)]
pub struct AccessLog {
    pending: Arc<Mutex<Pending>>,
    /// Wakes the writer; it ends once every clone of this is gone.
    wake: std_mpsc::SyncSender<()>,
    format: LogFormat,
}

/// The lines written since the writer last took them: one string that
/// requests append to and the writer swaps for an empty one. A string (or a
/// channel message) per line would be allocated on a request's thread and
/// freed on the writer's, which glibc's allocator pays for on both sides:
/// with a string sent per line, writing a line and the writer's thread cost
/// 2,700 instructions a small request; now 1,500 (callgrind).
#[derive(Default)]
struct Pending {
    text: String,
    /// The writer has been woken for these lines.
    woken: bool,
}

impl Pending {
    /// The lines, for the writer: the next ones start a string of their
    /// own (the memory of a burst goes back, not kept for the next), and
    /// the next line wakes the writer again.
    fn take(&mut self) -> String {
        self.woken = false;
        std::mem::take(&mut self.text)
    }
}

/// Beyond this many bytes waiting (some 16 000 lines, 50 ms at 300 000
/// requests a second), lines are dropped: a disk that cannot keep up never
/// holds a request, nor fills the memory.
const MOST_PENDING: usize = 2 << 20;

/// What a line says about one request, known when it arrives.
pub struct Arrival {
    pub started: Instant,
    pub at: SystemTime,
    pub client: Option<SocketAddr>,
    pub method: http::Method,
    /// The target, then the host, as sent: one string, one allocation (a
    /// string each cost one more; clones of the header value and the URI,
    /// slices of hyper's read buffer, would keep all of its 8 KiB for as
    /// long as the response lasts).
    target_then_host: String,
    host_at: usize,
    pub version: http::Version,
}

impl Arrival {
    /// Nothing known (never used for a line).
    pub fn none() -> Arrival {
        Arrival {
            started: Instant::now(),
            at: SystemTime::now(),
            client: None,
            method: http::Method::GET,
            target_then_host: String::new(),
            host_at: 0,
            version: http::Version::HTTP_11,
        }
    }

    /// The host it asked for (`Host`, else the URI's authority), as sent;
    /// `-` if none.
    pub fn host(&self) -> &str {
        &self.target_then_host[self.host_at..]
    }

    /// Its target, path and query, as sent.
    pub fn target(&self) -> &str {
        &self.target_then_host[..self.host_at]
    }
}

impl<B> From<&Request<B>> for Arrival {
    fn from(request: &Request<B>) -> Arrival {
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |target| target.as_str());
        let host = host_of(request).unwrap_or("-");
        let mut target_then_host = String::with_capacity(target.len() + host.len());
        target_then_host.push_str(target);
        target_then_host.push_str(host);
        Arrival {
            started: Instant::now(),
            at: SystemTime::now(),
            client: request.extensions().get::<ClientAddr>().map(|addr| addr.0),
            method: request.method().clone(),
            target_then_host,
            host_at: target.len(),
            version: request.version(),
        }
    }
}

impl AccessLog {
    /// The access log `settings` ask for, if any: stdout, or a file opened
    /// now (appended to), so that a problem with it is said at start.
    pub fn open(settings: &LogSettings) -> Result<Option<AccessLog>, String> {
        match &settings.access {
            LogTo::Off => Ok(None),
            // Buffered: the writer's lines of 50 ms go out in one write.
            LogTo::Stdout => Ok(Some(AccessLog::start(
                std::io::BufWriter::new(std::io::stdout()),
                settings.format,
            ))),
            LogTo::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|err| format!("access log {}: {err}", path.display()))?;
                let write = std::io::BufWriter::new(file);
                Ok(Some(AccessLog::start(write, settings.format)))
            }
        }
    }

    /// Lines to `write` (stdout, a file: buffered), in `format`, by a
    /// thread of its own. The first line of a burst wakes it; it waits 50 ms
    /// more, then takes what came and writes it in one go (nginx's
    /// `access_log … flush=`): the other requests never wake it, and a disk
    /// that cannot keep up never holds a request.
    // ANCHOR: writer
    pub fn start(mut write: impl std::io::Write + Send + 'static, format: LogFormat) -> AccessLog {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (wake, woken) = std_mpsc::sync_channel::<()>(1);
        let lines = pending.clone();
        tokio::task::spawn_blocking(move || {
            let mut stopping = false;
            while !stopping {
                // `Err`: every `AccessLog` is gone, the proxy is stopping;
                // what came last is still written.
                stopping = woken.recv().is_err();
                if !stopping {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let taken = lines.lock().map(|mut pending| pending.take());
                let _ = write.write_all(taken.unwrap_or_default().as_bytes());
                let _ = write.flush();
            }
        });
        AccessLog {
            pending,
            wake,
            format,
        }
    }
    // ANCHOR_END: writer

    /// Queues the line of one request: its status, its bytes, how long it
    /// all took (until now).
    pub fn write(&self, arrival: &Arrival, status: StatusCode, bytes: u64) {
        // Formatted into a string of this thread's, kept from line to line,
        // then copied to the writer's: no allocation for the line (JSON's
        // makes two small strings, its time and client), and the lock is
        // held only for the copy.
        thread_local! {
            static LINE: RefCell<String> = const { RefCell::new(String::new()) };
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            self.format(line, arrival, status, bytes);
            if !line.is_empty() {
                self.queue(line);
            }
        });
    }

    /// Writes the line of one request into `line`.
    fn format(&self, line: &mut String, arrival: &Arrival, status: StatusCode, bytes: u64) {
        let took = arrival.started.elapsed();
        match self.format {
            LogFormat::Common => {
                // One string, written into, without the formatting
                // machinery: pieces as they are, numbers by `itoa`, the
                // client by `push_ip`, the time formatted once a second.
                // `write!` cost 2,900 instructions a line, this 600.
                match arrival.client {
                    Some(addr) => push_ip(line, addr.ip()),
                    None => line.push('-'),
                }
                let micros = took.as_micros();
                let (mut bytes_text, mut ms_text) = (itoa::Buffer::new(), itoa::Buffer::new());
                for piece in [
                    " - - [",
                    &SecondStamp::of(arrival.at).0,
                    "] \"",
                    arrival.method.as_str(),
                    " ",
                    &quoted(arrival.target()),
                    " ",
                    version_name(arrival.version),
                    "\" ",
                    status.as_str(),
                    " ",
                    bytes_text.format(bytes),
                    " \"",
                    &quoted(arrival.host()),
                    "\" ",
                    ms_text.format(micros / 1000),
                ] {
                    line.push_str(piece);
                }
                // Milliseconds, to the microsecond: `12.034ms`.
                let fraction = micros % 1000;
                line.push('.');
                for digit in [fraction / 100, fraction / 10 % 10, fraction % 10] {
                    line.push(char::from(b'0' + digit as u8));
                }
                line.push_str("ms");
            }
            LogFormat::Json => {
                // Serialized straight from borrowed fields into a buffer of
                // this thread's. Through a `serde_json::Value` (a map, a
                // string per key and per value), then its text, as this was
                // written first, a JSON line cost 16,100 instructions a
                // request; this way 3,500, against 1,800 for the common
                // format (`bench/instructions.py --features`).
                thread_local! {
                    static JSON: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
                }
                let mut client = String::with_capacity(15);
                match arrival.client {
                    Some(addr) => push_ip(&mut client, addr.ip()),
                    None => client.push('-'),
                }
                let fields = JsonLine {
                    time: &milli_stamp(arrival.at),
                    client: &client,
                    method: arrival.method.as_str(),
                    host: arrival.host(),
                    target: arrival.target(),
                    status: status.as_u16(),
                    bytes,
                    ms: took.as_secs_f64() * 1000.0,
                };
                JSON.with_borrow_mut(|json| {
                    json.clear();
                    let written = serde_json::to_writer(&mut *json, &fields);
                    // serde_json writes UTF-8: the check never fails (if
                    // anything did, the line would be left empty, unwritten).
                    if let (Ok(()), Ok(text)) = (written, std::str::from_utf8(json)) {
                        line.push_str(text);
                    }
                });
            }
        }
    }

    /// Appends `line` to what the writer takes next, and wakes the writer
    /// if this is the first line since it last took them.
    // ANCHOR: queue
    fn queue(&self, line: &str) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.text.len() + line.len() > MOST_PENDING {
            return; // the disk cannot keep up: the line is dropped
        }
        pending.text.push_str(line);
        pending.text.push('\n');
        let first = !std::mem::replace(&mut pending.woken, true);
        drop(pending);
        if first {
            // Full: the writer has a wake-up it has not read yet.
            let _ = self.wake.try_send(());
        }
    }
    // ANCHOR_END: queue
}

/// `at` in RFC 3339, to the second, as text: formatted once a second per
/// thread (nginx caches its time strings the same way), copied otherwise.
struct SecondStamp(std::rc::Rc<str>);

impl SecondStamp {
    fn of(at: SystemTime) -> SecondStamp {
        thread_local! {
            static LAST: std::cell::RefCell<(u64, std::rc::Rc<str>)> =
                std::cell::RefCell::new((u64::MAX, "".into()));
        }
        let second = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        LAST.with_borrow_mut(|(last, text)| {
            if *last != second {
                *text = humantime::format_rfc3339_seconds(at).to_string().into();
                *last = second;
            }
            SecondStamp(text.clone())
        })
    }
}

impl std::fmt::Display for SecondStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JSON line's fields, written in this order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    client: &'a str,
    method: &'a str,
    host: &'a str,
    target: &'a str,
    status: u16,
    bytes: u64,
    ms: f64,
}

/// `at` in RFC 3339, to the millisecond (`2026-12-07T19:23:35.123Z`): the
/// second's text from [`SecondStamp`], then the milliseconds.
fn milli_stamp(at: SystemTime) -> String {
    let stamp = SecondStamp::of(at);
    let millis = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_millis());
    let mut text = String::with_capacity(24);
    text.push_str(stamp.0.strip_suffix('Z').unwrap_or(&stamp.0));
    text.push('.');
    for digit in [millis / 100, millis / 10 % 10, millis % 10] {
        text.push(char::from(b'0' + digit as u8));
    }
    text.push('Z');
    text
}

/// `HTTP/1.1`, `HTTP/2.0`: the version as the log's request line spells it
/// (http's `{:?}`, as nginx does).
fn version_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// What a client sent, fit to stand between quotes in a log line: a `"`
/// or a control character cannot forge a field. Borrowed when there is
/// nothing to escape, as nearly always.
fn quoted(text: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    // Printable ASCII but `"` and `\\`, byte by byte: nearly always all of it.
    let plain = |b: &u8| (b' '..=b'~').contains(b) && *b != b'"' && *b != b'\\';
    let escaped = |c: char| c == '"' || c == '\\' || c.is_control();
    if text.as_bytes().iter().all(plain) || !text.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut quoted = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_control() => {
                let _ = write!(quoted, "\\x{:02x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    std::borrow::Cow::Owned(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_stamp_is_rfc3339_to_the_millisecond() {
        for (seconds, millis) in [
            (1_765_135_415, 123),
            (1_765_135_415, 7),
            (0, 0),
            (86_399, 999),
        ] {
            let at = SystemTime::UNIX_EPOCH + Duration::new(seconds, millis * 1_000_000 + 456);
            let expected = humantime::format_rfc3339_millis(at).to_string();
            assert_eq!(milli_stamp(at), expected);
        }
    }

    #[test]
    fn arrival_keeps_target_and_host_apart() {
        let request = |target: &str, host: Option<&str>| {
            let mut request = Request::builder().uri(target);
            if let Some(host) = host {
                request = request.header(http::header::HOST, host);
            }
            request.body(()).expect("a request")
        };
        let asked = Arrival::from(&request("/a/b?c=d", Some("shop.example:8080")));
        assert_eq!(
            (asked.target(), asked.host()),
            ("/a/b?c=d", "shop.example:8080")
        );
        let absolute = Arrival::from(&request("http://other.example/x", None));
        assert_eq!(
            (absolute.target(), absolute.host()),
            ("/x", "other.example")
        );
        let hostless = Arrival::from(&request("/", None));
        assert_eq!((hostless.target(), hostless.host()), ("/", "-"));
        let none = Arrival::none();
        assert_eq!((none.target(), none.host()), ("", ""));
    }
}
