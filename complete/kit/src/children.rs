//! Running apps as child processes, and the shell commands that start and
//! stop the others: the kit of step 12, whose lesson is *when* to start and
//! stop; this file is *how*, on Unix.
//!
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
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// How many lines of a child's stderr are kept, to explain a failure.
const TAIL: usize = 5;

/// A free port on the loopback interface, for a child to listen on.
///
/// The port is free when we ask; a process could take it before the child
/// does (the child then fails to start, and says so on stderr).
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
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
