//! Steps 12 and 13: apps on demand, woken then put to sleep, with real
//! child processes. Each check writes an apps file whose apps are the demo
//! origin, started by a small `sh` script that first writes its PID (which
//! `exec` keeps) to a file: the check counts starts and finds the app's
//! process from outside.
//!
//! Some apps wait for a `go` file before they exec the origin: the check
//! decides when a start may finish, so "held while starting" is observed,
//! not hoped for. Idle stops are timed against a control app: when the
//! control app (same idle time, woken later) has been stopped, the app
//! under test has had at least as long to go idle.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::ensure;
use crate::harness::client::{Reply, admin_request, excerpt, fetch, read, send};
use crate::harness::folder::FileIn;
use crate::harness::logs::{logged, logged_again, tail};
use crate::harness::{Ctx, Failure, OrFail, Outcome, Proxy, fail, within};
use workshop::body::{Body, empty};

/// A folder for one check: the apps file, the start records, the `go` files.
struct AppsDir {
    file: FileIn,
    dir: PathBuf,
}

impl AppsDir {
    /// Writes `apps.toml` from `text`, where `{app NAME}` is the command of
    /// an app that records its starts and runs the origin, `{gated NAME}`
    /// the same waiting for `go-NAME` first, `{dir}` this folder and
    /// `{origin}` the demo origin's binary.
    fn new(text: &str) -> Result<AppsDir, Failure> {
        let file = FileIn::new("apps", "apps.toml", "")?;
        let apps = AppsDir {
            dir: file.folder().path().to_path_buf(),
            file,
        };
        apps.write(text)?;
        Ok(apps)
    }

    fn expand(&self, text: &str) -> String {
        let dir = self.dir.display().to_string();
        let origin = env!("CARGO_BIN_EXE_origin");
        let mut text = text.replace("{dir}", &dir).replace("{origin}", origin);
        // `{app NAME}` and `{gated NAME}`: a TOML array for `command`.
        for (marker, gated) in [("{app ", false), ("{gated ", true)] {
            while let Some(at) = text.find(marker) {
                let Some(end) = text[at..].find('}') else {
                    break;
                };
                let name = text[at + marker.len()..at + end].to_string();
                let wait = if gated {
                    // Bounded: 20 s at most, then it gives up and exits.
                    format!(
                        "i=0; while [ ! -e {dir}/go-{name} ] && [ $i -lt 1000 ]; do sleep 0.02; i=$((i+1)); done; "
                    )
                } else {
                    String::new()
                };
                let script = format!(
                    "echo $$ >> {dir}/{name}.starts; {wait}exec {origin} --listen 127.0.0.1:$PORT"
                );
                text.replace_range(at..at + end + 1, &format!("[\"sh\", \"-c\", {script:?}]"));
            }
        }
        text
    }

    fn write(&self, text: &str) -> Outcome {
        self.file.replace(&self.expand(text))
    }

    fn path(&self) -> String {
        self.file.arg()
    }

    /// Lets the gated app `name` finish starting.
    fn go(&self, name: &str) -> Outcome {
        std::fs::write(self.dir.join(format!("go-{name}")), "").or_fail("writing a go file")
    }

    /// The PIDs of `name`'s starts so far, oldest first.
    fn starts(&self, name: &str) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join(format!("{name}.starts")))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    }
}

/// The step with this apps file (other hosts: everything to the origin).
async fn with_apps(ctx: &Ctx, text: &str, more: &[&str]) -> Result<(Proxy, AppsDir), Failure> {
    let apps = AppsDir::new(text)?;
    let upstream = format!("http://{}", ctx.origin);
    let path = apps.path();
    let mut args = vec!["--apps", &path, "--upstream", &upstream];
    args.extend_from_slice(more);
    let proxy = ctx.spawn_ready(&args, "apps:", "--apps FILE").await?;
    Ok((proxy, apps))
}

/// A request for `path` of the app `name`, with these headers.
fn for_app(name: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::new(empty());
    *request.method_mut() = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
    *request.uri_mut() = path.parse().unwrap_or_default();
    let host = format!("{name}.localhost");
    if let Ok(host) = HeaderValue::from_str(&host) {
        request.headers_mut().insert(http::header::HOST, host);
    }
    for (header, value) in headers {
        if let (Ok(header), Ok(value)) = (
            http::HeaderName::from_bytes(header.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            request.headers_mut().insert(header, value);
        }
    }
    request
}

/// GET `path` of app `name` as an API client (`Accept: application/json`),
/// waiting up to `seconds` for the answer: a held request takes a start.
pub(super) async fn ask_app(
    addr: SocketAddr,
    name: &str,
    path: &str,
    seconds: u64,
) -> Result<Reply, Failure> {
    within(
        seconds,
        &format!("an answer from {name}.localhost"),
        async {
            let response = crate::harness::client::send_within(
                addr,
                for_app(name, "GET", path, &[("accept", "application/json")]),
                seconds,
            )
            .await?;
            read(response).await
        },
    )
    .await
}

/// A 200 from the app, through the proxy (the origin's echo says so).
async fn expect_awake(proxy: &Proxy, name: &str) -> Outcome {
    let reply = ask_app(proxy.addr, name, "/echo", 20).await?;
    ensure!(
        reply.status == StatusCode::OK && reply.text().contains("\"path\""),
        "a request for {name}.localhost should be held while the app starts, then answered by it \
         (200, the origin's echo); got {} {}\nproxy log:\n{}",
        reply.status,
        excerpt(&reply.text()),
        tail(proxy)
    );
    Ok(())
}

/// `count` connections, each with a whole `GET /echo` for app `name`
/// written: the proxy has them, whatever it does with them next.
pub(super) async fn written_requests(
    addr: SocketAddr,
    name: &str,
    count: usize,
) -> Result<Vec<TcpStream>, Failure> {
    let request = format!(
        "GET /echo HTTP/1.1\r\nhost: {name}.localhost\r\naccept: */*\r\nconnection: close\r\n\r\n"
    );
    let mut connections = Vec::new();
    for _ in 0..count {
        let mut tcp = TcpStream::connect(addr).await.or_fail("connecting")?;
        tcp.write_all(request.as_bytes())
            .await
            .or_fail("sending a request")?;
        connections.push(tcp);
    }
    Ok(connections)
}

/// Waits until the proxy has had `count` requests for the app `name` (its
/// status API's `requests`): requests written are not yet requests read,
/// and one read after a start failed would rightly start it again.
async fn until_held(addr: SocketAddr, token: &str, name: &str, count: u64) -> Outcome {
    within(10, "the proxy to hold every request", async {
        // Bounded by `within`: one status request every 20 ms.
        loop {
            let reply = fetch(
                addr,
                admin_request(addr, "GET", "/_proxy/apps", Some(token)),
            )
            .await?;
            let held = reply.json().ok().and_then(|json| {
                let apps = json.get("apps")?.as_array()?.clone();
                let app = apps
                    .iter()
                    .find(|app| app.get("name") == Some(&name.into()))?;
                app.get("requests")?.as_u64()
            });
            if held == Some(count) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// How many of these connections were answered with a status line that
/// starts with `status_line` (within 30 s in all).
pub(super) async fn count_answers(
    connections: Vec<TcpStream>,
    status_line: &str,
) -> Result<usize, Failure> {
    within(30, "every answer", async {
        let mut matching = 0;
        for mut tcp in connections {
            let mut answer = Vec::new();
            tcp.read_to_end(&mut answer)
                .await
                .or_fail("reading an answer")?;
            if answer.starts_with(status_line.as_bytes()) {
                matching += 1;
            }
        }
        Ok(matching)
    })
    .await
}

/// Whether process `pid` is still running (a zombie does not count).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Fails if process `pid` still runs. Called once the proxy said the app
/// is asleep: it has reaped the process before saying so.
fn gone(pid: u32, what: &str) -> Outcome {
    ensure!(
        !running(pid),
        "{what} (pid {pid}) still runs after the proxy said it had stopped it"
    );
    Ok(())
}

/// The one start of an app: exactly one record.
fn one_start(apps: &AppsDir, name: &str) -> Result<u32, Failure> {
    let starts = apps.starts(name);
    ensure!(
        starts.len() == 1,
        "{name} should have been started exactly once, it was started {} time(s)",
        starts.len()
    );
    Ok(starts[0])
}

const HELLO: &str = r#"
[[apps]]
name = "hello"
command = {app hello}
"#;

/// A sleeping app starts on its first request, which is held and answered;
/// the next request finds it awake.
pub async fn app_wakes_on_first_request(ctx: Ctx) -> Outcome {
    let (proxy, apps) = with_apps(&ctx, HELLO, &[]).await?;
    ensure!(
        apps.starts("hello").is_empty(),
        "hello should sleep until its first request, but it was started at once"
    );
    expect_awake(&proxy, "hello").await?;
    expect_awake(&proxy, "hello").await?;
    one_start(&apps, "hello")?;
    logged(&proxy, "hello: asleep → starting", 5).await?;
    logged(&proxy, "hello: starting → awake", 5).await
}

/// 100 requests arrive while the app starts: one start, 100 answers.
pub async fn one_start_for_many_requests(ctx: Ctx) -> Outcome {
    let (proxy, apps) = with_apps(
        &ctx,
        "[[apps]]\nname = \"crowd\"\ncommand = {gated crowd}\n",
        &[],
    )
    .await?;
    // Every request is written before the app may finish starting.
    let connections = written_requests(proxy.addr, "crowd", 100).await?;
    apps.go("crowd")?;
    let answers = count_answers(connections, "HTTP/1.1 200").await?;
    ensure!(
        answers == 100,
        "100 requests held while the app started should all be answered 200, {answers} were\nproxy log:\n{}",
        tail(&proxy)
    );
    one_start(&apps, "crowd")?;
    Ok(())
}

/// A browser gets a self-refreshing 503 page at once; an API client asking
/// at the same time is held until the app is up.
pub async fn browser_gets_a_waiting_page(ctx: Ctx) -> Outcome {
    let (proxy, apps) = with_apps(
        &ctx,
        "[[apps]]\nname = \"slow\"\ncommand = {gated slow}\n",
        &[],
    )
    .await?;
    let browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let held = tokio::spawn(ask_app(proxy.addr, "slow", "/echo", 30));
    // The API request has reached the proxy once it has started the app.
    logged(&proxy, "slow: asleep → starting", 10).await?;
    // The app cannot be ready: its go file does not exist yet.
    let page = within(
        5,
        "the waiting page (at once, not after the start)",
        async {
            fetch(
                proxy.addr,
                for_app("slow", "GET", "/", &[("accept", browser_accept)]),
            )
            .await
        },
    )
    .await?;
    let refreshes = !page.header_values("refresh").is_empty()
        || page.text().contains("http-equiv=refresh")
        || page.text().contains("location.reload");
    ensure!(
        page.status == StatusCode::SERVICE_UNAVAILABLE
            && !page.header_values("retry-after").is_empty()
            && refreshes
            && page.text().contains("slow"),
        "a browser (Accept: text/html first) asking for a sleeping app should get at once a 503 \
         page naming the app, with Retry-After and a Refresh header (or a meta refresh); got {} \
         {:?} {}",
        page.status,
        page.headers,
        excerpt(&page.text())
    );
    ensure!(
        !held.is_finished(),
        "an API client (Accept: application/json) should be held while the app starts, \
         but it was answered before the app could be ready"
    );
    apps.go("slow")?;
    let api = held.await.or_fail("the held request's task")??;
    ensure!(
        api.status == StatusCode::OK,
        "the held API request should get the app's answer once it is up, got {} {}",
        api.status,
        excerpt(&api.text())
    );
    let again = fetch(
        proxy.addr,
        for_app("slow", "GET", "/echo", &[("accept", browser_accept)]),
    )
    .await?;
    ensure!(
        again.status == StatusCode::OK,
        "once the app is up, the browser's reload should get the app, got {}",
        again.status
    );
    one_start(&apps, "slow")?;
    Ok(())
}

/// A browser alone, reloading the waiting page as it says, gets the app
/// once it has started: the page does not wake the app, its request does.
pub async fn browser_alone_wakes_the_app(ctx: Ctx) -> Outcome {
    let (proxy, apps) = with_apps(&ctx, HELLO, &[]).await?;
    let browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let reload = || {
        fetch(
            proxy.addr,
            for_app("hello", "GET", "/echo", &[("accept", browser_accept)]),
        )
    };
    let first = reload().await?;
    ensure!(
        first.status == StatusCode::SERVICE_UNAVAILABLE,
        "a browser asking for a sleeping app should get the waiting page (503), got {}",
        first.status
    );
    let up = within(15, "the browser's reloads to reach the app", async {
        // Bounded by `within`: a reload every 200 ms.
        loop {
            let reply = reload().await?;
            if reply.status == StatusCode::OK {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    up.map_err(|failure| {
        fail(format!(
            "a browser alone, reloading the waiting page, should get the app once it has \
             started: the request that got the page must wake the app too ({failure})"
        ))
    })?;
    one_start(&apps, "hello")?;
    Ok(())
}

/// The request that starts an app may leave (its client gone) before the
/// app is up: the start goes on, and the next request gets the app.
pub async fn start_outlives_its_client(ctx: Ctx) -> Outcome {
    let (proxy, apps) = with_apps(
        &ctx,
        "[[apps]]\nname = \"lonely\"\ncommand = {gated lonely}\n",
        &[],
    )
    .await?;
    let first = written_requests(proxy.addr, "lonely", 1).await?;
    logged(&proxy, "lonely: asleep → starting", 10).await?;
    // Its client leaves: the proxy drops that request.
    drop(first);
    apps.go("lonely")?;
    let reply = ask_app(proxy.addr, "lonely", "/echo", 10)
        .await
        .map_err(|failure| {
            fail(format!(
                "the client whose request started the app left; the start should go on, and \
                 the next request get the app ({failure})"
            ))
        })?;
    ensure!(
        reply.status == StatusCode::OK,
        "the client whose request started the app left; the next request should get the app, \
         got {} {}",
        reply.status,
        excerpt(&reply.text())
    );
    one_start(&apps, "lonely")?;
    Ok(())
}

/// A start that fails (the child exits, or is not ready in time) is a 503
/// with Retry-After that says which app and why; the next request tries again.
pub async fn failed_start_is_503(ctx: Ctx) -> Outcome {
    let (proxy, apps) = with_apps(
        &ctx,
        r#"
[[apps]]
name = "broken"
command = ["sh", "-c", "echo $$ >> {dir}/broken.starts; i=0; while [ ! -e {dir}/go-broken ] && [ $i -lt 1000 ]; do sleep 0.02; i=$((i+1)); done; echo 'cannot open the database' >&2; exit 3"]

[[apps]]
name = "stuck"
command = ["sh", "-c", "echo $$ >> {dir}/stuck.starts; exec sleep 60"]
start_timeout = "1s"
"#,
        &["--admin-token", "s3cret-token"],
    )
    .await?;
    // Ten requests, all held before the start may fail: one start.
    let connections = written_requests(proxy.addr, "broken", 10).await?;
    until_held(proxy.addr, "s3cret-token", "broken", 10).await?;
    apps.go("broken")?;
    let refused = count_answers(connections, "HTTP/1.1 503").await?;
    ensure!(
        refused == 10,
        "ten requests waiting for a start that fails should all get a 503, {refused} did"
    );
    ensure!(
        apps.starts("broken").len() == 1,
        "ten requests waiting for the same start should cause one start, even when it fails; \
         there were {}",
        apps.starts("broken").len()
    );
    for attempt in 2..=3 {
        let reply = ask_app(proxy.addr, "broken", "/", 20).await?;
        let body = reply.text();
        ensure!(
            reply.status == StatusCode::SERVICE_UNAVAILABLE
                && !reply.header_values("retry-after").is_empty()
                && body.contains("broken")
                && body.contains("exit status 3")
                && body.contains("cannot open the database"),
            "an app whose process exits while starting should get a 503 with Retry-After, naming \
             the app, its exit status (`exit status 3`) and its last stderr line; got {} {:?}",
            reply.status,
            excerpt(&body)
        );
        ensure!(
            apps.starts("broken").len() == attempt,
            "each request after a failed start should try again: after {attempt} request(s), \
             {} start(s)",
            apps.starts("broken").len()
        );
    }
    let reply = ask_app(proxy.addr, "stuck", "/", 20).await?;
    ensure!(
        reply.status == StatusCode::SERVICE_UNAVAILABLE
            && !reply.header_values("retry-after").is_empty()
            && reply.text().contains("stuck"),
        "an app not ready within its start_timeout should get a 503 with Retry-After naming it; \
         got {} {:?}",
        reply.status,
        excerpt(&reply.text())
    );
    let pid = one_start(&apps, "stuck")?;
    gone(pid, "the app that did not start in time")
}

/// An app without requests for its idle time is stopped (its process
/// ends), and the next request starts it again.
pub async fn idle_app_is_stopped(ctx: Ctx) -> Outcome {
    let (proxy, apps) = with_apps(
        &ctx,
        "[[apps]]\nname = \"hello\"\ncommand = {app hello}\nidle = \"2s\"\n",
        &[],
    )
    .await?;
    expect_awake(&proxy, "hello").await?;
    // The proxy's idle time counts from the end of that answer, which came
    // before this instant: the stop may not come sooner than 2 s after it.
    let answered = std::time::Instant::now();
    let pid = one_start(&apps, "hello")?;
    logged(&proxy, "hello: awake → stopping", 15).await?;
    let waited = answered.elapsed();
    ensure!(
        waited >= std::time::Duration::from_millis(1900),
        "hello (idle = \"2s\") was stopped {waited:?} after its last request: it should stay up \
         for its whole idle time"
    );
    logged(&proxy, "hello: stopping → asleep", 15).await?;
    gone(pid, "the idle app's process")?;
    expect_awake(&proxy, "hello").await?;
    ensure!(
        apps.starts("hello").len() == 2,
        "after an idle stop, the next request should start the app again"
    );
    Ok(())
}

const BUSY_AND_QUIET: &str = r#"
idle = "1s"

[[apps]]
name = "chatty"
command = {app chatty}

[[apps]]
name = "streamer"
command = {app streamer}

[[apps]]
name = "quiet"
command = {app quiet}
"#;

/// An open WebSocket and a response still streaming keep their apps awake
/// past their idle time; once they end, the apps go idle.
pub async fn activity_keeps_app_awake(ctx: Ctx) -> Outcome {
    let (proxy, _apps) = with_apps(&ctx, BUSY_AND_QUIET, &[]).await?;
    let mut socket = websocket_to(proxy.addr, "chatty").await?;
    echo(&mut socket, "hello").await?;
    // A stream of 60 s: longer than this check waits for anything.
    let stream = send(
        proxy.addr,
        for_app(
            "streamer",
            "GET",
            "/stream?n=6000&interval_ms=10",
            &[("accept", "*/*")],
        ),
    )
    .await?;
    ensure!(
        stream.status() == StatusCode::OK,
        "the stream should start, got {}",
        stream.status()
    );
    // quiet wakes after both: when it has been stopped for idleness, they
    // have been open longer than their idle time.
    expect_awake(&proxy, "quiet").await?;
    logged(&proxy, "quiet: stopping → asleep", 15).await?;
    let log = proxy.stderr();
    for busy in ["chatty", "streamer"] {
        ensure!(
            !log.contains(&format!("{busy}: awake → stopping")),
            "{busy} had a request in flight (an open WebSocket, a response not yet read) and was \
             stopped as idle: in-flight requests and open WebSockets count as activity\nproxy log:\n{}",
            tail(&proxy)
        );
    }
    echo(&mut socket, "still there").await?;
    // Once they end (the client leaves), the apps may sleep.
    let _ = socket.close(None).await;
    drop(socket);
    drop(stream);
    logged(&proxy, "chatty: stopping → asleep", 15).await?;
    logged(&proxy, "streamer: stopping → asleep", 15).await
}

/// A WebSocket to app `name`'s echo.
pub(super) async fn websocket_to(
    addr: SocketAddr,
    name: &str,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, Failure> {
    let tcp = TcpStream::connect(addr).await.or_fail("connecting")?;
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .or_fail("a WebSocket request")?;
    request.headers_mut().insert(
        http::header::HOST,
        HeaderValue::from_str(&format!("{name}.localhost")).or_fail("a host")?,
    );
    within(
        30,
        "the WebSocket handshake (while the app starts)",
        async {
            let (socket, _) = tokio_tungstenite::client_async(request, tcp)
                .await
                .or_fail("the WebSocket handshake with an app")?;
            Ok(socket)
        },
    )
    .await
}

pub(super) async fn echo(
    socket: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
    text: &str,
) -> Outcome {
    socket
        .send(Message::text(text))
        .await
        .or_fail("sending over the WebSocket")?;
    let reply = within(10, "the echo", async {
        socket
            .next()
            .await
            .or_fail("the WebSocket ended")?
            .or_fail("reading the WebSocket")
    })
    .await?;
    ensure!(
        reply == Message::text(text),
        "sent {text:?}, got back {reply:?}"
    );
    Ok(())
}

/// An app whose process dies is asleep; the next request starts it again.
pub async fn crashed_app_starts_again(ctx: Ctx) -> Outcome {
    let (proxy, apps) = with_apps(&ctx, HELLO, &[]).await?;
    expect_awake(&proxy, "hello").await?;
    let pid = one_start(&apps, "hello")?;
    // The app's process, which this check's proxy started for it.
    let killed = tokio::process::Command::new("kill")
        .args(["-s", "KILL", &pid.to_string()])
        .status()
        .await
        .or_fail("running kill")?;
    ensure!(killed.success(), "could not kill the app's process {pid}");
    logged(&proxy, "hello: awake → asleep", 10).await?;
    expect_awake(&proxy, "hello").await?;
    ensure!(
        apps.starts("hello").len() == 2,
        "after its process died, the next request should start the app again"
    );
    Ok(())
}

const LINKED: &str = r#"
idle = "1s"

[[apps]]
name = "docs"
command = {app docs}
linked = ["search"]

[[apps]]
name = "search"
command = {app search}

[[apps]]
name = "quiet"
command = {app quiet}
"#;

/// Waking an app wakes the apps it is linked to (once), not the other way
/// round.
pub async fn linked_apps_wake_together(ctx: Ctx) -> Outcome {
    let (proxy, apps) = with_apps(&ctx, LINKED, &[]).await?;
    expect_awake(&proxy, "docs").await?;
    logged(&proxy, "search: starting → awake", 10).await?;
    one_start(&apps, "search")?;
    expect_awake(&proxy, "quiet").await?;
    ensure!(
        apps.starts("docs").len() == 1 && apps.starts("search").len() == 1,
        "docs is linked to search: waking docs should wake search once; quiet, linked to \
         nobody, wakes nobody"
    );
    Ok(())
}

/// None of a group of linked apps is stopped while one of them is busy;
/// once all are idle, they are stopped together; one woken alone is
/// stopped alone.
pub async fn linked_apps_sleep_together(ctx: Ctx) -> Outcome {
    let (proxy, apps) = with_apps(&ctx, LINKED, &[]).await?;
    let mut socket = websocket_to(proxy.addr, "docs").await?;
    echo(&mut socket, "docs").await?;
    logged(&proxy, "search: starting → awake", 10).await?;
    one_start(&apps, "search")?;
    expect_awake(&proxy, "quiet").await?;
    logged(&proxy, "quiet: stopping → asleep", 15).await?;
    ensure!(
        !proxy.stderr().contains("search: awake → stopping"),
        "search (no request of its own) is linked to docs, which has an open WebSocket: it \
         should stay awake while docs is\nproxy log:\n{}",
        tail(&proxy)
    );
    let _ = socket.close(None).await;
    drop(socket);
    logged(&proxy, "docs: stopping → asleep", 15).await?;
    logged(&proxy, "search: stopping → asleep", 15).await?;
    // Woken alone, search sleeps alone: docs, asleep already, lets it.
    expect_awake(&proxy, "search").await?;
    logged_again(&proxy, "search: stopping → asleep", 1, 15)
        .await
        .map_err(|failure| {
            fail(format!(
                "search, woken alone (docs, linked to it, stays asleep), should be stopped once \
                 idle: a member that is asleep lets its group sleep ({failure})"
            ))
        })
}

/// The status API needs the token, answers JSON, starts and stops apps,
/// and is not reachable through an app's host.
pub async fn apps_api_needs_token(ctx: Ctx) -> Outcome {
    let (proxy, apps) = with_apps(&ctx, HELLO, &["--admin-token", "s3cret-token"]).await?;
    let api = |method: &str, path: &str, token: Option<&str>| {
        fetch(proxy.addr, admin_request(proxy.addr, method, path, token))
    };
    for token in [None, Some("wrong"), Some("s3cret-toke")] {
        let reply = api("GET", "/_proxy/apps", token).await?;
        ensure!(
            reply.status == StatusCode::UNAUTHORIZED,
            "GET /_proxy/apps with {token:?} should be 401, got {} {}",
            reply.status,
            excerpt(&reply.text())
        );
    }
    let reply = api("GET", "/_proxy/apps", Some("s3cret-token")).await?;
    let state = |reply: &Reply| -> Option<String> {
        let json = reply.json().ok()?;
        let apps = json.get("apps")?.as_array()?.clone();
        let hello = apps
            .iter()
            .find(|app| app.get("name") == Some(&"hello".into()))?;
        Some(hello.get("state")?.as_str()?.to_string())
    };
    ensure!(
        reply.status == StatusCode::OK && state(&reply).as_deref() == Some("asleep"),
        "GET /_proxy/apps with the token should list the apps as JSON (`apps: [{{name, state}}]`), \
         hello asleep; got {} {}",
        reply.status,
        excerpt(&reply.text())
    );
    let started = api("POST", "/_proxy/apps/hello/start", Some("s3cret-token")).await?;
    let now = api("GET", "/_proxy/apps", Some("s3cret-token")).await?;
    ensure!(
        started.status == StatusCode::OK && state(&now).as_deref() == Some("awake"),
        "POST /_proxy/apps/hello/start should start it (then GET says awake); got {} {}, then {}",
        started.status,
        excerpt(&started.text()),
        excerpt(&now.text())
    );
    let pid = one_start(&apps, "hello")?;
    // Through the app's own host, the path is the app's.
    let mut request = for_app("hello", "GET", "/_proxy/apps", &[]);
    request.headers_mut().insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer s3cret-token"),
    );
    let through_app = fetch(proxy.addr, request).await?;
    let direct = crate::harness::client::get(ctx.origin, "/_proxy/apps").await?;
    ensure!(
        through_app.status == direct.status && !through_app.text().contains("\"domain\""),
        "/_proxy/apps through an app's host (hello.localhost) should reach the app (the origin \
         answers it {}), never the proxy's API; got {} {}",
        direct.status,
        through_app.status,
        excerpt(&through_app.text())
    );
    let stopped = api("POST", "/_proxy/apps/hello/stop", Some("s3cret-token")).await?;
    let now = api("GET", "/_proxy/apps", Some("s3cret-token")).await?;
    ensure!(
        stopped.status == StatusCode::OK && state(&now).as_deref() == Some("asleep"),
        "POST /_proxy/apps/hello/stop should stop it (then GET says asleep); got {}, then {}",
        stopped.status,
        excerpt(&now.text())
    );
    gone(pid, "the stopped app's process")
}

/// Two apps, and one whose shell runs the origin as its own child and, on
/// SIGTERM, waits for that child: only a signal to the whole process group
/// ends it without a SIGKILL.
const FAMILY: &str = r#"
[[apps]]
name = "one"
command = {app one}

[[apps]]
name = "two"
command = {app two}

[[apps]]
name = "family"
command = ["sh", "-c", 'echo $$ >> {dir}/family.starts; trap "wait; exit 0" TERM; timeout --foreground 60 {origin} --listen 127.0.0.1:$PORT & echo $! >> {dir}/family-child.starts; wait']
"#;

/// On SIGTERM the proxy stops every app it started and exits 0: no orphan.
pub async fn no_orphans_after_sigterm(ctx: Ctx) -> Outcome {
    let (mut proxy, apps) = with_apps(&ctx, FAMILY, &[]).await?;
    for name in ["one", "two", "family"] {
        expect_awake(&proxy, name).await?;
    }
    let mut pids = vec![one_start(&apps, "one")?, one_start(&apps, "two")?];
    pids.extend(apps.starts("family-child"));
    ensure!(
        pids.len() == 3,
        "the family app should have recorded its child's PID"
    );
    let code = proxy.terminate(20).await?;
    for pid in pids {
        ensure!(
            !running(pid),
            "after SIGTERM the proxy exited, but the app process {pid} it started is still \
             running: stop every child (and its process group) before exiting"
        );
    }
    ensure!(
        !proxy.stderr().contains("SIGKILL"),
        "the family app's shell waits for its own child on SIGTERM: the child should have got \
         SIGTERM too (sent to the app's process group), not needed a SIGKILL\nproxy log:\n{}",
        tail(&proxy)
    );
    ensure!(
        code == Some(0),
        "after SIGTERM the proxy should exit 0, it exited with {code:?}"
    );
    Ok(())
}

/// A host under the domain that names no app is a 404 naming it; other
/// hosts still go to the routes.
pub async fn unknown_app_is_404(ctx: Ctx) -> Outcome {
    let (proxy, _apps) = with_apps(&ctx, HELLO, &[]).await?;
    let reply = ask_app(proxy.addr, "nope", "/", 10).await?;
    ensure!(
        reply.status == StatusCode::NOT_FOUND && reply.text().contains("nope"),
        "nope.localhost names no app: a 404 that names it, got {} {}",
        reply.status,
        excerpt(&reply.text())
    );
    let routed = crate::harness::client::get(proxy.addr, "/echo").await?;
    ensure!(
        routed.status == StatusCode::OK && routed.text().contains("\"path\""),
        "a host that is not under the apps' domain should go to the routes (here: --upstream), \
         got {} {}",
        routed.status,
        excerpt(&routed.text())
    );
    Ok(())
}

/// A changed apps file applies without a restart; a broken one is refused
/// with file, line and column, and the apps in force stay.
pub async fn apps_file_reloads(ctx: Ctx) -> Outcome {
    let (proxy, apps) = with_apps(&ctx, HELLO, &[]).await?;
    expect_awake(&proxy, "hello").await?;
    apps.write(&format!(
        "{HELLO}\n[[apps]]\nname = \"extra\"\ncommand = {{app extra}}\n"
    ))?;
    logged(&proxy, "apps reloaded", 10).await?;
    expect_awake(&proxy, "extra").await?;
    apps.write(&format!(
        "{HELLO}\n[[apps]]\nname = \"extra\"\ncommand = {{app extra}}\nidle = \"soon\"\n"
    ))?;
    logged(&proxy, "apps.toml:9:8:", 10).await?;
    expect_awake(&proxy, "hello").await?;
    expect_awake(&proxy, "extra").await?;
    one_start(&apps, "hello")?;
    // And --check says the same, and exits 2.
    let (code, stderr) = ctx
        .run_to_exit(&["--apps", &apps.path(), "--check"])
        .await?;
    ensure!(
        code == Some(2) && stderr.contains("apps.toml:9:8:"),
        "--apps FILE --check on a broken file should exit 2 naming FILE:LINE:COLUMN, got {code:?}: {stderr}"
    );
    Ok(())
}

/// A discovery command's list adds apps; a failing one keeps the last
/// list; an app gone from it is served until idle, then forgotten.
pub async fn discovery_adds_apps(ctx: Ctx) -> Outcome {
    let apps = AppsDir::new("")?;
    let origin = env!("CARGO_BIN_EXE_origin");
    let list = format!(
        r#"[{{"name": "found", "command": ["sh", "-c", "echo $$ >> {dir}/found.starts; exec {origin} --listen 127.0.0.1:$PORT"]}}]"#,
        dir = apps.dir.display()
    );
    std::fs::write(apps.dir.join("list.json"), list).or_fail("writing the list")?;
    apps.write(
        "idle = \"3s\"\ndiscover = { command = \"cat {dir}/list.json\", every = \"200ms\" }\n",
    )?;
    let upstream = format!("http://{}", ctx.origin);
    let proxy = ctx
        .spawn(&["--apps", &apps.path(), "--upstream", &upstream])
        .await?;
    logged(&proxy, "apps discovered: +found", 10).await?;
    expect_awake(&proxy, "found").await?;
    std::fs::write(apps.dir.join("list.json"), "not json").or_fail("breaking the list")?;
    logged(&proxy, "discovery failed", 10).await?;
    expect_awake(&proxy, "found").await?;
    // Gone from the list, but awake: served until idle, then forgotten.
    let stops = proxy.stderr().matches("found: stopping → asleep").count();
    std::fs::write(apps.dir.join("list.json"), "[]").or_fail("emptying the list")?;
    logged(&proxy, "apps discovered: -found", 10).await?;
    let awake_still = ask_app(proxy.addr, "found", "/echo", 10).await?;
    // (On a slow machine it may have gone idle already: then it is
    // forgotten, and a 404 is right.)
    let forgotten_already = proxy.stderr().matches("found: stopping → asleep").count() > stops;
    ensure!(
        awake_still.status == StatusCode::OK || forgotten_already,
        "an app gone from the discovered list, but awake, should be served until it goes idle; \
         got {} {}",
        awake_still.status,
        excerpt(&awake_still.text())
    );
    logged_again(&proxy, "found: stopping → asleep", stops, 15).await?;
    let reply = ask_app(proxy.addr, "found", "/", 10).await?;
    ensure!(
        reply.status == StatusCode::NOT_FOUND,
        "an app gone from the discovered list should be forgotten once it has gone idle \
         (a 404), got {} {}",
        reply.status,
        excerpt(&reply.text())
    );
    Ok(())
}

/// An app the proxy does not own: its `start` command runs, the request is
/// held until `upstream` answers; idle, its `stop` command runs.
pub async fn command_app_started_and_stopped(ctx: Ctx) -> Outcome {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .or_fail("finding a free port")?
        .port();
    // `timeout 60`: should the check fail half-way, the origin it started
    // outside the proxy still ends.
    let text = format!(
        r#"
[[apps]]
name = "outside"
start = "echo started >> {{dir}}/outside.starts; timeout 60 {{origin}} --listen 127.0.0.1:{port} >/dev/null 2>&1 & echo $! > {{dir}}/outside.pid"
stop = "echo stopped >> {{dir}}/outside.stops; kill $(cat {{dir}}/outside.pid)"
upstream = "http://127.0.0.1:{port}"
idle = "1s"
"#
    );
    let (proxy, apps) = with_apps(&ctx, &text, &[]).await?;
    expect_awake(&proxy, "outside").await?;
    let starts = std::fs::read_to_string(apps.dir.join("outside.starts")).unwrap_or_default();
    ensure!(
        starts.lines().count() == 1,
        "the app's start command should have run once, it ran {} time(s)",
        starts.lines().count()
    );
    logged(&proxy, "outside: stopping → asleep", 15).await?;
    let stops = std::fs::read_to_string(apps.dir.join("outside.stops")).unwrap_or_default();
    ensure!(
        stops.lines().count() == 1,
        "idle, the app's stop command should have run once, it ran {} time(s)",
        stops.lines().count()
    );
    Ok(())
}
