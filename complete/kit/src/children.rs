//! Running apps as child processes, and the shell commands that start and
//! stop the others: the kit of steps 12 on, whose lessons are *when* to
//! start and stop; this file is *how*, on Unix.
//!
//! - [`launch`] starts an app as its spec says and waits until it answers,
//!   by its start timeout at the latest: a child on a free port (ready
//!   when it answers, failed if it exits first), or a start command (ready
//!   when its upstream answers; its stop command runs if it never does).
//!   What it returns knows how to stop what it started ([`Running`]).
//! - Each child leads a process group of its own, so that stopping it
//!   reaches whatever it started (`sh -c`, a dev server's workers): SIGTERM
//!   to the group, SIGKILL to the group after a grace period; and once the
//!   child itself has exited (stopped or crashed), what is left of its
//!   group is killed.
//! - On Linux, a child gets SIGTERM if the proxy dies without stopping it
//!   (even by SIGKILL): a child that stops its own children on SIGTERM, as
//!   servers and `sh` with a trap do, leaves nothing behind.
//! - Its stdout and stderr go to the proxy's log, one line each, prefixed
//!   by the app's name; the last lines of stderr are kept, to say why a
//!   start failed.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Uri;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, oneshot, watch};
use tracing::{info, warn};

use crate::apps_file::{AppSpec, Run};

/// How many lines of a child's stderr are kept, to explain a failure.
const TAIL: usize = 5;

/// How long a child has to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// An app started: where it answers, and how to stop it.
pub struct Launched {
    pub upstream: Uri,
    /// Its process, if it is our child.
    pub pid: Option<u32>,
    pub running: Running,
}

/// What runs while an app is awake, and how to stop it.
pub enum Running {
    /// Our child, owned by a task that watches it.
    Child(ChildHandle),
    /// Something a command started: its stop command stops it.
    Command { stop: String, timeout: Duration },
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// On its own: how, and its last lines on stderr.
    Crashed(String),
    /// Asked to: how.
    Stopped(String),
}

/// A child of ours: a task owns its process, stops it when asked, and
/// says how it ended.
pub struct ChildHandle {
    stop: oneshot::Sender<()>,
    ended: watch::Receiver<Option<Ended>>,
}

impl Running {
    /// How to stop an app a command started (another proxy may have run
    /// that command: step 16); `None` for a child.
    pub fn of(spec: &AppSpec) -> Option<Running> {
        match &spec.run {
            Run::Commands { stop, .. } => Some(Running::Command {
                stop: stop.clone(),
                timeout: spec.start_timeout,
            }),
            Run::Child { .. } => None,
        }
    }

    /// Stops it: SIGTERM to the child's group (SIGKILL after a grace
    /// period), or the stop command. Why it failed, if it did.
    pub async fn stop(self) -> Result<(), String> {
        match self {
            Running::Child(mut child) => {
                // Its task is gone if the child ended already: done.
                if child.stop.send(()).is_ok() {
                    let ended = child.ended.wait_for(Option::is_some);
                    let _ = tokio::time::timeout(STOP_GRACE * 2, ended).await;
                }
                Ok(())
            }
            Running::Command { stop, timeout } => run_shell(&stop, timeout).await.map(|_| ()),
        }
    }

    /// How it ended, if it has (a child only).
    pub fn ended(&self) -> Option<Ended> {
        match self {
            Running::Child(child) => child.ended.borrow().clone(),
            Running::Command { .. } => None,
        }
    }
}

// ANCHOR: launch
/// Runs the app as its spec says, by its start timeout at the latest.
/// `child_ended` is woken if a child ends on its own later (a crash).
pub async fn launch(spec: Arc<AppSpec>, child_ended: Arc<Notify>) -> Result<Launched, String> {
    let deadline = Instant::now()
        .checked_add(spec.start_timeout)
        .ok_or("start_timeout is too long")?;
    match &spec.run {
        Run::Child { command } => start_child(&spec, command, deadline, child_ended).await,
        Run::Commands {
            start,
            stop,
            upstream,
        } => start_by_command(&spec, start, stop, upstream, deadline).await,
    }
}
// ANCHOR_END: launch

/// A child on a free port: ready when it answers, failed if it exits
/// first or is not ready by the deadline.
async fn start_child(
    spec: &AppSpec,
    command: &[String],
    deadline: Instant,
    child_ended: Arc<Notify>,
) -> Result<Launched, String> {
    let port = free_port().map_err(|err| format!("no free port: {err}"))?;
    let mut process = AppProcess::spawn(&spec.name, command, port)?;
    let address = SocketAddr::from(([127, 0, 0, 1], port)).to_string();
    // ANCHOR: race
    let outcome = tokio::select! {
        () = wait_until_ready(&address, spec.ready.as_deref()) => Ok(()),
        ended = process.exited() => Err(format!("it exited before it was ready: {ended}")),
        () = tokio::time::sleep_until(deadline.into()) => Err(format!(
            "it was not ready within {} (nothing answered on port {port})",
            crate::apps::readable(spec.start_timeout)
        )),
    };
    // ANCHOR_END: race
    if let Err(why) = outcome {
        let stderr = process.last_stderr();
        let ended = process.stop(STOP_GRACE).await;
        info!("{}: the failed start ended ({ended})", spec.name);
        return Err(with_stderr(why, &stderr));
    }
    let upstream = format!("http://{address}")
        .parse()
        .map_err(|err| format!("{err}"))?;
    let pid = process.pid();
    let (stop, stopped) = oneshot::channel();
    let (said, ended) = watch::channel(None);
    tokio::spawn(watch_child(
        spec.name.clone(),
        process,
        stopped,
        said,
        child_ended,
    ));
    Ok(Launched {
        upstream,
        pid: Some(pid),
        running: Running::Child(ChildHandle { stop, ended }),
    })
}

/// Owns a running child: stops it when asked, says how it ended, and
/// wakes `child_ended` if it ended on its own.
async fn watch_child(
    name: String,
    mut process: AppProcess,
    stop: oneshot::Receiver<()>,
    said: watch::Sender<Option<Ended>>,
    child_ended: Arc<Notify>,
) {
    // ANCHOR: watch_child
    let ended = tokio::select! {
        ended = process.exited() => {
            Ended::Crashed(with_stderr(format!("it crashed: {ended}"), &process.last_stderr()))
        }
        // (A dropped sender is no request to stop: that branch is off.)
        Ok(()) = stop => {
            let ended = process.stop(STOP_GRACE).await;
            info!("{name}: its process ended ({ended})");
            Ended::Stopped(ended)
        }
    };
    let crashed = matches!(ended, Ended::Crashed(_));
    said.send_replace(Some(ended));
    if crashed {
        // One waiter (the sweep); a crash while it is busy is kept for
        // its next wait, not lost.
        child_ended.notify_one();
    }
    // ANCHOR_END: watch_child
}

/// Something a command starts: ready when `upstream` answers. If it does
/// not in time, its stop command runs: nothing is left half-started.
async fn start_by_command(
    spec: &AppSpec,
    start: &str,
    stop: &str,
    upstream: &Uri,
    deadline: Instant,
) -> Result<Launched, String> {
    let time_left = deadline.saturating_duration_since(Instant::now());
    run_shell(start, time_left).await?;
    let address = upstream
        .authority()
        .map(|authority| match authority.port() {
            Some(_) => authority.to_string(),
            None => format!("{authority}:80"),
        })
        .unwrap_or_default();
    let ready = wait_until_ready(&address, spec.ready.as_deref());
    if tokio::time::timeout_at(deadline.into(), ready)
        .await
        .is_ok()
    {
        return Ok(Launched {
            upstream: upstream.clone(),
            pid: None,
            running: Running::Command {
                stop: stop.to_string(),
                timeout: spec.start_timeout,
            },
        });
    }
    let mut why = format!(
        "`{start}` succeeded, but {upstream} did not answer within {}",
        crate::apps::readable(spec.start_timeout)
    );
    if let Err(stop_failed) = run_shell(stop, spec.start_timeout).await {
        why = format!("{why}; and then {stop_failed}");
    }
    Err(why)
}

// ANCHOR: backoff
/// Polls `address` until it answers: the port accepts a connection, or,
/// with a `ready` path, an HTTP request there gets any answer at all.
/// The pause doubles from 1 ms up to half a second: a fast app is seen
/// within a millisecond or two, a slow one is not hammered (Paastis polls
/// every second, so even a 50 ms app takes a second to wake). The caller
/// bounds the time.
async fn wait_until_ready(address: &str, ready: Option<&str>) {
    let mut pause = Duration::from_millis(1);
    loop {
        if answers(address, ready).await {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}
// ANCHOR_END: backoff

/// One probe, at most a second long.
async fn answers(address: &str, ready: Option<&str>) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(address).await.ok()?;
        let Some(path) = ready else { return Some(()) };
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).await.ok()?;
        (&head == b"HTTP/").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Some(()))
    )
}

/// A free port on the loopback interface, for a child to listen on.
///
/// The port is free when we ask, and the child binds it a moment later.
/// Meanwhile another program could take it, and the readiness probe would
/// then find *that* program answering. So the port is not one the kernel
/// hands out to whoever asks for any free port (port 0: its ephemeral
/// range, on Linux `ip_local_port_range`, 32768 to 60999 by default), but
/// one below that range, picked at random and tried until one binds.
pub fn free_port() -> std::io::Result<u16> {
    let below = ephemeral_start().unwrap_or(32768).clamp(2048, 60000);
    let span = u64::from(below - 1024);
    let mut seed = std::collections::hash_map::RandomState::new()
        .hash_one((std::process::id(), std::time::SystemTime::now()));
    // Bounded: 64 random tries, then any port the kernel gives.
    for _ in 0..64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 1024 + u16::try_from((seed >> 33) % span).unwrap_or(0);
        if TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok() {
            return Ok(port);
        }
    }
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// Where the kernel's range of ports for port 0 starts (Linux).
fn ephemeral_start() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// An app running as our child.
pub struct AppProcess {
    child: Child,
    pid: u32,
    tail: Tail,
    /// Done when its stderr has been read to the end.
    stderr_read: Option<tokio::task::JoinHandle<()>>,
    /// Whether what was left of its group has been killed.
    group_ended: bool,
}

/// The last lines a child wrote on stderr.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        if lines.len() == TAIL {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn text(&self) -> String {
        let lines = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl AppProcess {
    /// Starts `command` (`{port}` replaced, `PORT` set) as `name`.
    pub fn spawn(name: &str, command: &[String], port: u16) -> Result<AppProcess, String> {
        let port_text = port.to_string();
        let mut args = command.iter().map(|arg| arg.replace("{port}", &port_text));
        let program = args.next().unwrap_or_default();
        let mut child = ours(&program);
        child.args(args).env("PORT", &port_text);
        let mut child = child
            .spawn()
            .map_err(|err| format!("cannot run {program:?}: {err}"))?;
        let pid = child.id().unwrap_or_default();
        let tail = Tail::default();
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(log_lines(name.to_string(), stdout, None, None));
        }
        let stderr_read = child.stderr.take().map(|stderr| {
            tokio::spawn(log_lines(
                name.to_string(),
                stderr,
                Some(tail.clone()),
                None,
            ))
        });
        Ok(AppProcess {
            child,
            pid,
            tail,
            stderr_read,
            group_ended: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The last lines of its stderr (empty if none).
    pub fn last_stderr(&self) -> String {
        self.tail.text()
    }

    /// Waits until it exits (or cannot be waited for), then a moment for
    /// its last stderr lines, which may still be in the pipe.
    pub async fn exited(&mut self) -> String {
        let ended = match self.child.wait().await {
            Ok(status) => describe(status),
            Err(err) => format!("lost ({err})"),
        };
        self.end_group();
        if let Some(reading) = self.stderr_read.take() {
            // A process it started may keep the pipe open: not for long.
            let _ = tokio::time::timeout(Duration::from_millis(500), reading).await;
        }
        ended
    }

    /// SIGTERM to its group; SIGKILL to the group if the child has not
    /// exited after `grace`. Returns how it ended.
    pub async fn stop(&mut self, grace: Duration) -> String {
        signal_group(self.pid, nix::sys::signal::Signal::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.end_group();
                describe(status)
            }
            Ok(Err(err)) => format!("lost ({err})"),
            Err(_) => {
                warn!(
                    "pid {} still running {grace:?} after SIGTERM: SIGKILL",
                    self.pid
                );
                signal_group(self.pid, nix::sys::signal::Signal::SIGKILL);
                self.exited().await
            }
        }
    }

    /// The app is its first process: once that has exited, whatever is
    /// left of its group (a worker it started, a server a shell put in the
    /// background) is killed, at once, before the group's number can be
    /// anyone else's.
    fn end_group(&mut self) {
        if !self.group_ended {
            self.group_ended = true;
            signal_group(self.pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for AppProcess {
    /// Dropped without a stop (the proxy exits while the app starts, a
    /// task is cancelled): its whole group is killed.
    fn drop(&mut self) {
        if !self.group_ended {
            signal_group(self.pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// `exit status 3`, `killed by SIGKILL`.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        },
        (None, None) => status.to_string(),
    }
}

/// Sends `signal` to the process group led by `pid`. Never to pid 0 or 1:
/// `killpg(0)` would be our own group.
fn signal_group(pid: u32, signal: nix::sys::signal::Signal) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid <= 1 {
        return;
    }
    if let Err(err) = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal) {
        // ESRCH: the group is gone already, which is what we wanted.
        if err != nix::errno::Errno::ESRCH {
            warn!("cannot send {signal} to process group {pid}: {err}");
        }
    }
}

/// A command for a process of ours: its output piped to us, its input
/// empty, a process group of its own (our signals reach its own children
/// too, and a Ctrl-C in the proxy's terminal is ours to handle), killed if
/// its handle is dropped, and told when the proxy dies.
fn ours(program: &str) -> Command {
    let mut command = Command::new(program);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    stop_when_parent_dies(&mut command);
    command
}

#[cfg(target_os = "linux")]
fn stop_when_parent_dies(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe, as code between fork and exec
    // must be. The "parent" is the thread that forks: a tokio worker,
    // which lives as long as the runtime, that is as long as the proxy.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn stop_when_parent_dies(_command: &mut Command) {}

/// Copies a child's output to the log, `name| line`, keeping stderr's tail
/// (and everything, up to a limit, in `all`). Bytes that are not UTF-8 are
/// shown as `�`, and a line is cut at 4 KiB: whatever a child writes, the
/// pipe is read to its end, so the child never blocks on it nor gets
/// SIGPIPE.
async fn log_lines(
    name: String,
    mut output: impl AsyncRead + Unpin,
    tail: Option<Tail>,
    all: Option<Arc<Mutex<Vec<u8>>>>,
) {
    const LONGEST_LINE: usize = 4096;
    let mut line = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = match output.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if let Some(all) = &all {
            let mut all = all.lock().unwrap_or_else(|poison| poison.into_inner());
            let room = (1usize << 20).saturating_sub(all.len());
            all.extend_from_slice(&chunk[..read.min(room)]);
        }
        for &byte in &chunk[..read] {
            if byte != b'\n' && line.len() < LONGEST_LINE {
                line.push(byte);
                continue;
            }
            emit(&name, &line, tail.as_ref());
            line.clear();
            if byte != b'\n' {
                line.push(byte);
            }
        }
    }
    if !line.is_empty() {
        emit(&name, &line, tail.as_ref());
    }
}

fn emit(name: &str, line: &[u8], tail: Option<&Tail>) {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches('\r');
    info!("{name}| {line}");
    if let Some(tail) = tail {
        tail.push(line.to_string());
    }
}

/// Runs a shell command (an app's `start` or `stop`, a discovery command)
/// until the shell exits, within `timeout`. Returns its stdout (up to
/// 1 MiB), or why it failed: its exit status and its last lines on stderr.
///
/// It waits for the shell, not for the end of its output: a `start` that
/// leaves a server running in the background (whose output still goes to
/// the pipes) is done when the shell is. Its output goes on to the log.
pub async fn run_shell(command: &str, timeout: Duration) -> Result<String, String> {
    let mut shell = ours("sh");
    shell.args(["-c", command]);
    let mut child = shell
        .spawn()
        .map_err(|err| format!("cannot run `sh -c {command:?}`: {err}"))?;
    let pid = child.id().unwrap_or_default();
    let (stdout, tail) = (Arc::new(Mutex::new(Vec::new())), Tail::default());
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(log_lines(
            "sh".into(),
            out,
            None,
            Some(stdout.clone()),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(log_lines(
            "sh".into(),
            err,
            Some(tail.clone()),
            None,
        )));
    }
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(err)) => return Err(format!("`{command}`: {err}")),
        Err(_) => {
            // Dropping the child kills the shell; its group goes too.
            signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            return Err(format!("`{command}` did not finish within {timeout:?}"));
        }
    };
    // What the shell itself wrote is in the pipes already: a moment to
    // read it (a background process may keep them open for long).
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_millis(500), reader).await;
    }
    if !status.success() {
        return Err(with_stderr(
            format!("`{command}` failed: {}", describe(status)),
            &tail.text(),
        ));
    }
    let stdout = stdout.lock().unwrap_or_else(|poison| poison.into_inner());
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// `message`, then the child's last stderr lines if it wrote any.
pub fn with_stderr(message: String, stderr: &str) -> String {
    match stderr.trim() {
        "" => message,
        stderr => format!("{message}; its last lines on stderr:\n{stderr}"),
    }
}
