//! The talk in a real browser: every deck, served by `cargo run --bin slides`
//! and exported with `--export`, loaded in headless Chromium.
//!
//! It fails when a slide shows a raw `{{#include` or an `ANCHOR` line, when
//! a script error or a failed load happens, when a slide's content overflows
//! the 1280×720 slide (or a code block needs a scroll bar), when a slide has
//! no speaker notes or a code block is not highlighted, when a plugin
//! (markdown, highlight, notes: the speaker view) is missing, when a deck's
//! page does not show that deck, when `?print-pdf` does not lay out one page
//! per slide, or when the talk does not load through step 10 (`/slides/`).
//! The way Comprehensive Rust checks its slides: measure them.
//!
//! Chromium is driven over its DevTools protocol (a WebSocket, JSON
//! messages) with the crates the workshop already has. Screenshots of the
//! first slide of each deck and of every slide with a problem land in
//! `target/tmp/deck-screenshots/` (all slides with `DECK_SCREENSHOTS=all`).
//!
//! It runs in the matrix's test binary, beside the matrix and the
//! exercises: most of its time is the browser's, and theirs is waiting.
//!
//! Needs Chromium: Debian's `chromium` (`.ci/run` installs it), or any
//! Chrome/Chromium named by `CHROME`. Without one the test fails and says
//! so; `cargo test -- --skip every_deck_in_chromium` leaves it out on such a
//! machine.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// How long the whole test may take, browser start included.
const WHOLE_TEST: Duration = Duration::from_secs(240);
/// How long one DevTools command or awaited event may take.
const ONE_STEP: Duration = Duration::from_secs(60);

pub fn every_deck_in_chromium() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let problems = runtime.block_on(async {
        match tokio::time::timeout(WHOLE_TEST, check_the_deck()).await {
            Ok(Ok(problems)) => problems,
            Ok(Err(err)) => vec![err],
            Err(_) => vec![format!(
                "the deck test took more than {} s",
                WHOLE_TEST.as_secs()
            )],
        }
    });
    assert!(
        problems.is_empty(),
        "the deck has {} problem(s):\n{}\n(screenshots in {})",
        problems.len(),
        problems.join("\n"),
        screenshot_dir().display()
    );
}

async fn check_the_deck() -> Result<Vec<String>, String> {
    let root = &workshop::repo::root();
    let decks = workshop::deck::decks(root).map_err(|err| format!("reading slides/: {err}"))?;
    if decks.is_empty() {
        return Err("no slides/NN_*.md".into());
    }
    let _ = std::fs::remove_dir_all(screenshot_dir());
    std::fs::create_dir_all(screenshot_dir()).map_err(|err| format!("screenshots: {err}"))?;

    let slides = SlidesServer::start(env!("CARGO_BIN_EXE_slides")).await?;
    let export_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deck-export");
    let _ = std::fs::remove_dir_all(&export_dir);
    export(&export_dir).await?;

    let mut browser = Browser::start().await?;
    let mut problems = Vec::new();

    // The whole talk: every slide measured.
    let talk = format!("http://{}/", slides.addr);
    let mut page = browser.open(&talk).await?;
    let report = page.measure_every_slide().await?;
    problems.extend(page.errors("the talk"));
    let total = report["total"].as_u64().unwrap_or(0);
    for problem in report["problems"].as_array().into_iter().flatten() {
        let (h, v) = (&problem["h"], &problem["v"]);
        let message = problem["message"].as_str().unwrap_or("?");
        problems.push(format!("the talk, slide {h}/{v}: {message}"));
        page.screenshot(h, v, &format!("problem-{h}-{v}")).await?;
    }
    for deck in &decks {
        let first = &report["decks"][&deck.step];
        page.screenshot(&first["h"], &json!(0), &deck.name).await?;
    }
    if std::env::var("DECK_SCREENSHOTS").is_ok_and(|all| all == "all") {
        for slide in report["slides"].as_array().into_iter().flatten() {
            let (h, v) = (&slide["h"], &slide["v"]);
            page.screenshot(h, v, &format!("all-{h:03}-{v}")).await?;
        }
    }
    page.close().await?;
    if total < 2 + decks.len() as u64 {
        problems.push(format!("the talk has only {total} slides"));
    }
    for plugin in ["markdown", "highlight", "notes"] {
        if report["plugins"][plugin] != json!(true) {
            problems.push(format!(
                "the talk: reveal.js's {plugin} plugin is not registered (the speaker view is \
                 the notes plugin)"
            ));
        }
    }

    // Each deck alone, served and exported: its own slides, nothing else.
    for deck in &decks {
        for url in [
            format!("http://{}/{}.html", slides.addr, deck.name),
            format!("file://{}/{}.html", export_dir.display(), deck.name),
        ] {
            let mut page = browser.open(&url).await?;
            let title = page
                .evaluate("Reveal.getSlides()[0]?.querySelector('h1,h2')?.textContent ?? ''")
                .await?;
            let shown = title.as_str().unwrap_or("");
            if !deck.title.contains(shown) || shown.is_empty() {
                problems.push(format!(
                    "{url}: the first slide reads {shown:?}, not the deck's title {:?}",
                    deck.title
                ));
            }
            problems.extend(page.errors(&url));
            page.close().await?;
        }
    }

    // The exported talk, from file://, and the print layout.
    let exported = format!("file://{}/index.html", export_dir.display());
    let mut page = browser.open(&exported).await?;
    let exported_total = page.evaluate("Reveal.getTotalSlides()").await?;
    if exported_total != json!(total) {
        problems.push(format!(
            "{exported}: {exported_total} slides, the served talk has {total}"
        ));
    }
    problems.extend(page.errors(&exported));
    page.close().await?;

    let print = format!("http://{}/?print-pdf", slides.addr);
    let mut page = browser.open(&print).await?;
    let pages = page
        .evaluate_async(
            "window.__deck.pdfReady.then(() => document.querySelectorAll('.pdf-page').length)",
        )
        .await?;
    if pages.as_u64().is_none_or(|pages| pages < total) {
        problems.push(format!("{print}: {pages} printed pages for {total} slides"));
    }
    problems.extend(page.errors(&print));
    page.close().await?;

    // The closing demo: the talk through the last step, from its own
    // demo origin's /slides/.
    // The reference binary (the exercises' builds may replace target/debug's).
    let step_10 = crate::binary("10-websocket");
    let proxy = StepProxy::start(&step_10.display().to_string()).await?;
    let through = format!("http://{}/slides/", proxy.addr);
    let mut page = browser.open(&through).await?;
    let proxied_total = page.evaluate("Reveal.getTotalSlides()").await?;
    if proxied_total != json!(total) {
        problems.push(format!(
            "{through}: {proxied_total} slides, the served talk has {total}"
        ));
    }
    problems.extend(page.errors(&through));
    page.close().await?;

    browser.close().await;
    Ok(problems)
}

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("deck-screenshots")
}

// --- the slides binary --------------------------------------------------------

/// `slides --listen 127.0.0.1:0`, killed when dropped.
type SlidesServer = StepProxy;

/// A workshop binary started with `--listen 127.0.0.1:0` (a step without
/// `--upstream` starts its demo origin), killed when dropped.
struct StepProxy {
    addr: String,
    _child: Child,
}

impl StepProxy {
    async fn start(binary: &str) -> Result<StepProxy, String> {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| format!("starting {binary}: {err}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(ONE_STEP, lines.next_line())
            .await
            .map_err(|_| format!("{binary} printed nothing"))?
            .map_err(|err| format!("reading its stdout: {err}"))?
            .unwrap_or_default();
        let addr = first
            .strip_prefix("listening on http://")
            .ok_or_else(|| format!("{binary}'s first line is {first:?}"))?
            .to_string();
        // Keep reading, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(StepProxy {
            addr,
            _child: child,
        })
    }
}

async fn export(dir: &Path) -> Result<(), String> {
    let output = tokio::time::timeout(
        ONE_STEP,
        Command::new(env!("CARGO_BIN_EXE_slides"))
            .arg("--export")
            .arg(dir)
            .output(),
    )
    .await
    .map_err(|_| "`slides --export` did not finish".to_string())?
    .map_err(|err| format!("running `slides --export`: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "`slides --export {}` failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

// --- Chromium over the DevTools protocol --------------------------------------

/// Where Chromium is: `CHROME`, or the usual names on the PATH.
fn find_browser() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROME") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// A headless Chromium, its DevTools connection, and the events it sent
/// that no one has read yet.
struct Browser {
    child: Child,
    /// Its process group (its pid): its renderers and helpers are in it.
    group: Option<u32>,
    socket: WebSocketStream<TcpStream>,
    next_id: u64,
    events: VecDeque<Value>,
    _profile: TempDir,
}

impl Browser {
    async fn start() -> Result<Browser, String> {
        let binary = find_browser().ok_or(
            "no Chromium found: install it (Debian: `apt install chromium`) or name one with \
             CHROME=/path/to/chrome; `cargo test -- --skip every_deck_in_chromium` leaves this test out",
        )?;
        let profile = TempDir::new("deck-chromium")?;
        let mut command = Command::new(&binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,720",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its renderer and helper processes go with it.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|err| format!("starting {}: {err}", binary.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut said = Vec::new();
        let url = tokio::time::timeout(ONE_STEP, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return Some(url.trim().to_string());
                }
                said.push(line);
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| {
            format!(
                "{} did not say where DevTools listens; it said:\n{}",
                binary.display(),
                said.join("\n")
            )
        })?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let host = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| format!("unexpected DevTools address {url}"))?;
        let tcp = TcpStream::connect(host)
            .await
            .map_err(|err| format!("connecting to DevTools at {host}: {err}"))?;
        let (socket, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
            .await
            .map_err(|err| format!("DevTools handshake: {err}"))?;
        Ok(Browser {
            group: child.id(),
            child,
            socket,
            next_id: 1,
            events: VecDeque::new(),
            _profile: profile,
        })
    }

    /// Sends a command (to a page when `session` is given) and waits for its
    /// answer; events that arrive meanwhile are kept.
    async fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|err| format!("{method}: {err}"))?;
        tokio::time::timeout(ONE_STEP, async {
            loop {
                let message = self.next_message().await?;
                if message["id"] == json!(id) {
                    if let Some(error) = message.get("error") {
                        return Err(format!("{method}: {error}"));
                    }
                    return Ok(message["result"].clone());
                }
                self.events.push_back(message);
            }
        })
        .await
        .map_err(|_| format!("{method}: no answer within {} s", ONE_STEP.as_secs()))?
    }

    /// Waits for the event `method` of `session` (kept ones first).
    async fn event(&mut self, session: &str, method: &str) -> Result<Value, String> {
        let matches = |event: &Value| {
            event["method"] == json!(method) && event["sessionId"] == json!(session)
        };
        if let Some(at) = self.events.iter().position(matches) {
            return Ok(self.events.remove(at).unwrap_or_default());
        }
        tokio::time::timeout(ONE_STEP, async {
            loop {
                let message = self.next_message().await?;
                if matches(&message) {
                    return Ok(message);
                }
                self.events.push_back(message);
            }
        })
        .await
        .map_err(|_| format!("no {method} within {} s", ONE_STEP.as_secs()))?
    }

    async fn next_message(&mut self) -> Result<Value, String> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).map_err(|err| format!("DevTools: {err}"));
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(format!("DevTools connection: {err}")),
                None => return Err("the browser closed its DevTools connection".into()),
            }
        }
    }

    /// A new tab showing `url`, loaded, with reveal.js ready.
    async fn open(&mut self, url: &str) -> Result<Page<'_>, String> {
        let target = self
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_string();
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for method in ["Runtime.enable", "Page.enable", "Log.enable"] {
            self.call(Some(&session), method, json!({})).await?;
        }
        self.call(
            Some(&session),
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
        // Before the page's own scripts: promises for reveal.js's events,
        // which it dispatches on the document (they bubble).
        self.call(
            Some(&session),
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": "window.__deck = {\
                ready: new Promise(ok => document.addEventListener('ready', ok, { once: true })),\
                pdfReady: new Promise(ok => document.addEventListener('pdf-ready', ok, { once: true })),\
            };" }),
        )
        .await?;
        self.call(Some(&session), "Page.navigate", json!({ "url": url }))
            .await?;
        self.event(&session, "Page.loadEventFired").await?;
        let mut page = Page {
            browser: self,
            session,
            target_id,
            url: url.to_string(),
        };
        let ready = page
            .evaluate_async(
                "Promise.race([window.__deck.ready.then(() => true), new Promise((_, no) => \
                 setTimeout(() => no(new Error('no ready event within 20 s')), 20000))])",
            )
            .await;
        if let Err(err) = ready {
            let errors = page.errors(url);
            return Err(format!(
                "{url}: reveal.js did not start ({err}){}{}",
                if errors.is_empty() { "" } else { ":\n" },
                errors.join("\n")
            ));
        }
        Ok(page)
    }

    /// Closes the browser and waits for it; kills what is left of its
    /// process group if it does not go.
    async fn close(mut self) {
        let _ = self.call(None, "Browser.close", json!({})).await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
        }
        // The group is the one this test made for the browser. Written
        // `kill -s KILL -- -PGID`: procps's kill may read `-KILL -PGID` as
        // two options (and `-1` means every process).
        if let Some(pid) = self.group.filter(|&pid| pid > 1) {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One tab.
struct Page<'a> {
    browser: &'a mut Browser,
    session: String,
    target_id: String,
    url: String,
}

impl Page<'_> {
    async fn evaluate(&mut self, expression: &str) -> Result<Value, String> {
        self.evaluate_with(expression, false).await
    }

    async fn evaluate_async(&mut self, expression: &str) -> Result<Value, String> {
        self.evaluate_with(expression, true).await
    }

    async fn evaluate_with(
        &mut self,
        expression: &str,
        await_promise: bool,
    ) -> Result<Value, String> {
        let result = self
            .browser
            .call(
                Some(&self.session),
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": await_promise, "returnByValue": true }),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!(
                "{}: {}",
                self.url,
                exception["exception"]["description"]
                    .as_str()
                    .unwrap_or(&exception.to_string())
            ));
        }
        Ok(result["result"]["value"].clone())
    }

    async fn measure_every_slide(&mut self) -> Result<Value, String> {
        self.evaluate_async(MEASURE_EVERY_SLIDE).await
    }

    /// Shows slide `h`/`v` and saves a screenshot as `name.png`.
    async fn screenshot(&mut self, h: &Value, v: &Value, name: &str) -> Result<(), String> {
        self.evaluate_async(&format!(
            "(async () => {{ Reveal.slide({h}, {v}); await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))); }})()"
        ))
        .await?;
        let shot = self
            .browser
            .call(
                Some(&self.session),
                "Page.captureScreenshot",
                json!({ "format": "png" }),
            )
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .map_err(|err| format!("a screenshot: {err}"))?;
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png)
            .map_err(|err| format!("saving a screenshot: {err}"))
    }

    /// Script errors, console errors and failed loads seen so far, one line
    /// each.
    fn errors(&mut self, what: &str) -> Vec<String> {
        let session = json!(self.session);
        let mut errors = Vec::new();
        self.browser.events.retain(|event| {
            if event["sessionId"] != session {
                return true;
            }
            let params = &event["params"];
            match event["method"].as_str() {
                Some("Runtime.exceptionThrown") => errors.push(format!(
                    "{what}: a script error: {}",
                    params["exceptionDetails"]["exception"]["description"]
                        .as_str()
                        .or(params["exceptionDetails"]["text"].as_str())
                        .unwrap_or("?")
                )),
                Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                    errors.push(format!("{what}: console.error: {}", params["args"]))
                }
                Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                    errors.push(format!(
                        "{what}: {} {}",
                        params["entry"]["text"].as_str().unwrap_or("?"),
                        params["entry"]["url"].as_str().unwrap_or("")
                    ))
                }
                _ => {}
            }
            false
        });
        errors
    }

    async fn close(self) -> Result<(), String> {
        self.browser
            .call(
                None,
                "Target.closeTarget",
                json!({ "targetId": self.target_id }),
            )
            .await
            .map(|_| ())
    }
}

/// Walks every slide and measures it once laid out. Returns
/// `{ total, slides: [{h, v}], decks: {NN: {h}}, problems: [{h, v, message}],
/// plugins: {markdown, highlight, notes} }`.
const MEASURE_EVERY_SLIDE: &str = r#"(async () => {
  Reveal.configure({ transition: 'none', backgroundTransition: 'none' });
  const { width, height } = Reveal.getConfig();
  const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const problems = [], slides = [], decks = {};
  for (const slide of Reveal.getSlides()) {
    const { h, v = 0 } = Reveal.getIndices(slide);
    Reveal.slide(h, v);
    await frame();
    slides.push({ h, v });
    const problem = message => problems.push({ h, v, message: `${title(slide)}: ${message}` });
    if (slide.id && slide.id.startsWith('step-')) decks[slide.id.slice(5)] = { h };
    const text = slide.innerText;
    if (text.includes('{{#include')) problem('shows a raw {{#include');
    if (/ANCHOR(_END)?:/.test(text)) problem('shows an ANCHOR line');
    if (slide.scrollHeight > height + 1)
      problem(`content is ${slide.scrollHeight} px tall, the slide ${height}: split it or shorten it`);
    if (slide.scrollWidth > width + 1)
      problem(`content is ${slide.scrollWidth} px wide, the slide ${width}`);
    for (const code of slide.querySelectorAll('pre code')) {
      if (code.scrollWidth > code.clientWidth + 1)
        problem(`a code block needs ${code.scrollWidth} px, it has ${code.clientWidth}: ` +
          JSON.stringify(longestLine(code.textContent)));
      if (code.scrollHeight > code.clientHeight + 1)
        problem(`a code block scrolls (${code.scrollHeight} px of ${code.clientHeight})`);
      if (!code.classList.contains('hljs')) problem('a code block is not highlighted');
    }
    if (!Reveal.getSlideNotes(slide)) problem('has no speaker notes');
  }
  const plugins = Object.fromEntries(['markdown', 'highlight', 'notes'].map(p => [p, Reveal.hasPlugin(p)]));
  return { total: Reveal.getTotalSlides(), slides, decks, problems, plugins };

  function title(slide) {
    const heading = slide.querySelector('h1, h2, h3');
    return JSON.stringify(heading ? heading.textContent.trim() : slide.innerText.trim().slice(0, 40));
  }
  function longestLine(text) {
    return text.split('\n').reduce((a, b) => (b.length > a.length ? b : a), '');
  }
})()"#;

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Result<TempDir, String> {
        let path =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
