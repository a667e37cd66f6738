//! Starting the proxy under test, and what a check knows about it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use super::outcome::{Failure, OrFail, Outcome, fail, within};

/// Which proxy the checks talk to.
#[derive(Debug, Clone)]
pub enum Target {
    /// A step binary: each check starts its own process.
    Binary(PathBuf),
    /// A proxy someone already started (`PROXY_ADDR`), assumed to forward to
    /// the demo origin (a step started without `--upstream` does); with its
    /// PID (`PROXY_PID`), the memory checks can read its peak RSS too.
    Running { addr: SocketAddr, pid: Option<u32> },
}

/// Everything a check gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub target: Target,
    /// The demo origin of this test process.
    pub origin: SocketAddr,
    /// The panics of the proxies this check started: an unfilled `todo!`
    /// says where it is and "not yet implemented: <hint>", the best clue
    /// there is.
    panics: Arc<Mutex<Vec<Panic>>>,
    /// One receiver per proxy started: it completes when that proxy's
    /// stderr has been read to its end, so no panic line is missed.
    stderr_read: Arc<Mutex<Vec<oneshot::Receiver<()>>>>,
}

/// A panic the proxy printed on stderr: `thread '…' panicked at
/// FILE:LINE:COL:`, then the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panic {
    /// `exercises/05_hop_by_hop.rs:59` (the column dropped).
    pub location: String,
    pub message: String,
}

impl std::fmt::Display for Panic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.message, self.location)
    }
}

impl Ctx {
    pub fn new(target: Target, origin: SocketAddr) -> Ctx {
        Ctx {
            target,
            origin,
            panics: Arc::default(),
            stderr_read: Arc::default(),
        }
    }

    /// The panics of the proxies this check started, once their stderr has
    /// been read to the end (at most `seconds` of waiting: a proxy the check
    /// dropped is killed, which closes its stderr at once).
    pub async fn panics(&self, seconds: u64) -> Vec<Panic> {
        let readers: Vec<_> = lock(&self.stderr_read).drain(..).collect();
        let wait = async {
            for reader in readers {
                let _ = reader.await;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(seconds), wait).await;
        lock(&self.panics).clone()
    }

    /// A proxy in front of the demo origin.
    pub async fn proxy(&self) -> Result<Proxy, Failure> {
        match &self.target {
            Target::Binary(_) => {
                let upstream = format!("http://{}", self.origin);
                self.spawn(&["--upstream", &upstream]).await
            }
            Target::Running { addr, pid } => Ok(Proxy {
                addr: *addr,
                process: None,
                pid: *pid,
            }),
        }
    }

    /// The step binary, started with `--listen 127.0.0.1:0` and `args`.
    /// Skipped against an already running proxy.
    pub async fn spawn(&self, args: &[&str]) -> Result<Proxy, Failure> {
        let binary = self.binary()?;
        let mut command = Command::new(binary);
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        let mut started = self.start(command, binary)?;
        let first_line = within(20, "the `listening on http://ADDR` line", async {
            started.stdout_line().await.ok_or_else(|| {
                fail(format!(
                    "{} exited before printing `listening on http://ADDR`; stderr:\n{}",
                    binary.display(),
                    started.stderr()
                ))
            })
        })
        .await?;
        let addr = first_line
            .strip_prefix("listening on http://")
            .or_else(|| first_line.strip_prefix("listening on https://"))
            .and_then(|addr| addr.trim().parse().ok())
            .ok_or_else(|| {
                fail(format!(
                    "the first line on stdout must be `listening on http://ADDR` (or https://) with the real port, got {first_line:?}"
                ))
            })?;
        started.drain_stdout();
        Ok(Proxy {
            addr,
            pid: started.child.id(),
            process: Some(started),
        })
    }

    /// [`Ctx::spawn`], then waits until the step prints a line starting with
    /// `banner` (`routes:`, `apps:`): it has read its files, and watches
    /// them. `flags` names what it was started with, for the failure.
    pub async fn spawn_ready(
        &self,
        args: &[&str],
        banner: &str,
        flags: &str,
    ) -> Result<Proxy, Failure> {
        let proxy = self.spawn(args).await?;
        proxy.stdout_line(banner, 10).await.map_err(|failure| {
            fail(format!(
                "started with {flags}, the step should print `{banner} …` once it has read its                  files and watches them ({failure})"
            ))
        })?;
        Ok(proxy)
    }

    /// Runs the step binary with `args` until it exits (a bad command line).
    pub async fn run_to_exit(&self, args: &[&str]) -> Result<(Option<i32>, String), Failure> {
        let binary = self.binary()?;
        let mut command = Command::new(binary);
        command.args(args);
        let mut started = self.start(command, binary)?;
        let status = within(20, "the process to exit", async {
            started
                .child
                .wait()
                .await
                .or_fail("waiting for the process")
        })
        .await?;
        // stderr is read by a task that may finish a little after the exit.
        if let Some(reader) = started.stderr_reader.take() {
            within(5, "stderr to close", async {
                reader.await.or_fail("reading stderr")
            })
            .await?;
        }
        Ok((status.code(), started.stderr()))
    }

    fn start(&self, command: Command, binary: &Path) -> Result<Started, Failure> {
        let (done, read) = oneshot::channel();
        lock(&self.stderr_read).push(read);
        Started::start(command, binary, self.panics.clone(), done)
    }

    pub fn binary(&self) -> Result<&Path, Failure> {
        match &self.target {
            Target::Binary(path) => Ok(path),
            Target::Running { .. } => Err(Failure::Skip(
                "needs to start the proxy itself (PROXY_ADDR points at a running one)".into(),
            )),
        }
    }

    /// GETs `path` from the demo origin: directly when it is ours, through
    /// the proxy when it is the running proxy's own in-process origin.
    pub async fn ask_origin(&self, proxy: &Proxy, path: &str) -> Result<String, Failure> {
        let addr = match self.target {
            Target::Binary(_) => self.origin,
            Target::Running { .. } => proxy.addr,
        };
        Ok(super::client::get(addr, path).await?.text())
    }

    /// How many bytes the origin has sent for `/big?id=ID`.
    pub async fn origin_progress(&self, proxy: &Proxy, id: &str) -> Result<u64, Failure> {
        self.ask_origin(proxy, &format!("/progress?id={id}"))
            .await?
            .trim()
            .parse()
            .or_fail("reading the origin's /progress")
    }
}

/// A proxy a check talks to; if the check started it, dropping this kills it.
pub struct Proxy {
    pub addr: SocketAddr,
    process: Option<Started>,
    pid: Option<u32>,
}

impl Proxy {
    /// The peak resident memory of the proxy process so far (`VmHWM`), MiB.
    pub fn peak_rss_mib(&self) -> Result<f64, Failure> {
        let Some(pid) = self.pid else {
            return Err(Failure::Skip(
                "needs the proxy's PID to read its memory (`cargo xtask check NN --addr ADDR --pid PID`)"
                    .into(),
            ));
        };
        if !std::path::Path::new("/proc/self/status").exists() {
            return Err(Failure::Skip(
                "reading a process's peak memory needs Linux's /proc".into(),
            ));
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .or_fail("reading /proc/PID/status")?;
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .or_fail("no VmHWM in /proc/PID/status")?;
        Ok(kib / 1024.0)
    }

    /// Lines the proxy printed on stdout after `listening on`.
    pub fn stdout(&self) -> Vec<String> {
        self.process
            .as_ref()
            .map(|process| process.stdout_lines.borrow().clone())
            .unwrap_or_default()
    }

    /// Waits (at most `seconds`) for a stdout line that starts with `prefix`.
    pub async fn stdout_line(&self, prefix: &str, seconds: u64) -> Result<String, Failure> {
        let Some(process) = &self.process else {
            return Err(Failure::Skip("needs the proxy's own stdout".into()));
        };
        let mut lines = process.stdout_lines.subscribe();
        within(
            seconds,
            &format!("a stdout line starting with {prefix:?}"),
            async {
                let found = lines
                    .wait_for(|lines| lines.iter().any(|line| line.starts_with(prefix)))
                    .await
                    .or_fail("stdout closed")?;
                Ok(found
                    .iter()
                    .find(|line| line.starts_with(prefix))
                    .cloned()
                    .unwrap_or_default())
            },
        )
        .await
    }

    /// Waits (at most `seconds`) until the lines printed on stdout after
    /// `listening on` satisfy `done`, and returns them.
    pub async fn stdout_until(
        &self,
        done: impl Fn(&[String]) -> bool,
        seconds: u64,
    ) -> Result<Vec<String>, Failure> {
        let Some(process) = &self.process else {
            return Err(Failure::Skip("needs the proxy's own stdout".into()));
        };
        let mut lines = process.stdout_lines.subscribe();
        within(seconds, "the proxy's start-up lines", async {
            let lines = lines
                .wait_for(|lines| done(lines))
                .await
                .or_fail("stdout closed")?;
            Ok(lines.clone())
        })
        .await
    }

    /// What the proxy wrote on stderr (its logs), for failure messages.
    pub fn stderr(&self) -> String {
        self.process
            .as_ref()
            .map(Started::stderr)
            .unwrap_or_default()
    }

    /// Waits (at most `seconds`) until what the proxy wrote on stderr (its
    /// last 32 to 64 KiB) satisfies `done`: a log line says what it did.
    pub async fn stderr_until(
        &self,
        waiting_for: &str,
        done: impl Fn(&str) -> bool,
        seconds: u64,
    ) -> Result<String, Failure> {
        let Some(process) = &self.process else {
            return Err(Failure::Skip("needs the proxy's own logs".into()));
        };
        let mut text = process.stderr.subscribe();
        within(seconds, waiting_for, async {
            let text = text
                .wait_for(|text| done(text))
                .await
                .or_fail("stderr closed (the proxy exited?)")?;
            Ok(text.clone())
        })
        .await
    }

    /// Sends SIGTERM to the proxy this check started and waits (at most
    /// `seconds`) for it to exit; returns its exit code.
    pub async fn terminate(&mut self, seconds: u64) -> Result<Option<i32>, Failure> {
        let Some(process) = self.process.as_mut() else {
            return Err(Failure::Skip("needs to start the proxy itself".into()));
        };
        let pid = process.child.id().or_fail("the proxy has exited already")?;
        let sent = Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .status()
            .await
            .or_fail("running kill")?;
        if !sent.success() {
            return Err(fail(format!("kill -s TERM {pid} failed: {sent}")));
        }
        let status = within(seconds, "the proxy to exit after SIGTERM", async {
            process.child.wait().await.or_fail("waiting for the proxy")
        })
        .await?;
        Ok(status.code())
    }

    /// Kills the proxy this check started (SIGKILL: no goodbye, as a crash
    /// or a lost machine) and waits (at most `seconds`) until it is gone.
    pub async fn kill(&mut self, seconds: u64) -> Outcome {
        let Some(process) = self.process.as_mut() else {
            return Err(Failure::Skip("needs to start the proxy itself".into()));
        };
        within(seconds, "the proxy to die of SIGKILL", async {
            process.child.kill().await.or_fail("killing the proxy")
        })
        .await
    }

    /// Waits (at most `seconds`) for the proxy this check started to exit;
    /// returns its exit code.
    pub async fn wait_for_exit(&mut self, seconds: u64) -> Result<Option<i32>, Failure> {
        let Some(process) = self.process.as_mut() else {
            return Err(Failure::Skip("needs to start the proxy itself".into()));
        };
        let status = within(seconds, "the proxy to exit", async {
            process.child.wait().await.or_fail("waiting for the proxy")
        })
        .await?;
        Ok(status.code())
    }

    /// The proxy's process id, if this check started it.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
}

/// A started child process whose output is read in the background, so it
/// never blocks on a full pipe.
struct Started {
    child: Child,
    stdout: Option<tokio::io::Lines<BufReader<tokio::process::ChildStdout>>>,
    stdout_lines: tokio::sync::watch::Sender<Vec<String>>,
    /// Its last 32 to 64 KiB of stderr; subscribers learn of each line.
    stderr: tokio::sync::watch::Sender<String>,
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
}

impl Started {
    fn start(
        mut command: Command,
        binary: &Path,
        panics: Arc<Mutex<Vec<Panic>>>,
        stderr_done: oneshot::Sender<()>,
    ) -> Result<Started, Failure> {
        command
            .env("RUST_LOG", "info")
            // The panic message is the clue; a backtrace only buries it.
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .or_fail(&format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().map(|out| BufReader::new(out).lines());
        let stderr = tokio::sync::watch::Sender::new(String::new());
        let stderr_reader = child.stderr.take().map(|err| {
            let (stderr, panics) = (stderr.clone(), panics);
            tokio::spawn(async move {
                collect_stderr(err, stderr, panics).await;
                let _ = stderr_done.send(());
            })
        });
        Ok(Started {
            child,
            stdout,
            stdout_lines: tokio::sync::watch::Sender::new(Vec::new()),
            stderr,
            stderr_reader,
        })
    }

    async fn stdout_line(&mut self) -> Option<String> {
        self.stdout.as_mut()?.next_line().await.ok().flatten()
    }

    fn drain_stdout(&mut self) {
        if let Some(mut lines) = self.stdout.take() {
            let kept = self.stdout_lines.clone();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    kept.send_if_modified(|kept| {
                        let room = kept.len() < 1000;
                        if room {
                            kept.push(line);
                        }
                        room
                    });
                }
            });
        }
    }

    fn stderr(&self) -> String {
        self.stderr.borrow().clone()
    }
}

/// Keeps the last 32 to 64 KiB of a process's stderr, and its panics.
async fn collect_stderr(
    err: impl AsyncRead + Unpin,
    into: tokio::sync::watch::Sender<String>,
    panics: Arc<Mutex<Vec<Panic>>>,
) {
    let mut lines = BufReader::new(err).lines();
    let mut panicked_at: Option<String> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        // Rust prints "thread '…' panicked at FILE:LINE:COL:" then the message.
        if let Some(location) = panicked_at.take() {
            let mut panics = lock(&panics);
            if panics.len() < 10 {
                panics.push(Panic {
                    location,
                    message: line.clone(),
                });
            }
        }
        panicked_at = panic_location(&line);
        into.send_modify(|kept| {
            kept.push_str(&line);
            kept.push('\n');
            if kept.len() > 64 * 1024 {
                let cut = kept.len() - 32 * 1024;
                let cut = (cut..kept.len())
                    .find(|&i| kept.is_char_boundary(i))
                    .unwrap_or(0);
                kept.drain(..cut);
            }
        });
    }
}

/// `FILE:LINE` of a line `thread 'NAME' (ID) panicked at FILE:LINE:COL:`.
fn panic_location(line: &str) -> Option<String> {
    if !line.starts_with("thread '") {
        return None;
    }
    let (_, at) = line.split_once(" panicked at ")?;
    let at = at.trim_end().trim_end_matches(':');
    // Drop the column: `FILE:LINE` is what an editor opens.
    let location = match at.rsplit_once(':') {
        Some((file_line, column)) if column.bytes().all(|b| b.is_ascii_digit()) => file_line,
        _ => at,
    };
    Some(location.to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
