//! Knowing when to reload a file: when it changes on disk, or when the
//! process gets `SIGHUP` (what operators send daemons to reread their
//! configuration). The kit of step 11; what a reload does is its lesson.
//!
//! The directory is watched, not the file: editors often save by writing a
//! new file and renaming it over the old one, and a watch on the old file
//! would see nothing after the first save. Events come in bursts (create,
//! write, rename…): they are gathered for a moment, then one reload runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::warn;

/// How long a burst of events is gathered before one reload.
const SETTLE: Duration = Duration::from_millis(50);

/// Calls `reload` on a task of its own each time `path` changes or the
/// process gets `SIGHUP`, for as long as the process lives. If the file
/// cannot be watched (no such folder, no inotify watches left), `SIGHUP`
/// still reloads, and the error says why the file is not watched.
pub fn on_change(path: &Path, reload: impl Fn() + Send + 'static) -> Result<(), String> {
    let (changed, mut changes) = mpsc::unbounded_channel::<()>();
    let (watcher, unwatched) = match watch_folder(path, changed) {
        Ok(watcher) => (Some(watcher), Ok(())),
        Err(err) => (None, Err(err)),
    };
    let mut hangups = hangups();
    tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                Some(()) = changes.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while changes.try_recv().is_ok() {}
                }
                _ = next_hangup(&mut hangups) => {}
            }
            reload();
        }
    });
    unwatched
}

/// Watches the folder of `path`, sending on `changed` when `path` changes.
fn watch_folder(
    path: &Path,
    changed: mpsc::UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher, String> {
    let name = path
        .file_name()
        .map(|name| name.to_os_string())
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Created, written, renamed over, removed, or closed after writing
        // (the last event of a slow writer: its whole file, at last).
        let ours = event.is_ok_and(|event| {
            let closed_after_writing = matches!(
                event.kind,
                EventKind::Access(AccessKind::Close(AccessMode::Write))
            );
            (!event.kind.is_access() || closed_after_writing)
                && event
                    .paths
                    .iter()
                    .any(|path| path.file_name() == Some(name.as_os_str()))
        });
        if ours {
            let _ = changed.send(());
        }
    })
    .map_err(|err| format!("cannot watch {}: {err}", directory.display()))?;
    watcher
        .watch(&directory, RecursiveMode::NonRecursive)
        .map_err(|err| format!("cannot watch {}: {err}", directory.display()))?;
    Ok(watcher)
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|err| warn!("SIGHUP will not reload: {err}"))
        .ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {}

/// The next `SIGHUP`; never, where there are none.
async fn next_hangup(hangups: &mut Hangups) {
    #[cfg(unix)]
    if let Some(hangups) = hangups
        && hangups.recv().await.is_some()
    {
        return;
    }
    let _ = hangups;
    std::future::pending::<()>().await
}

/// SIGINT (Ctrl-C) or SIGTERM (what service managers send).
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
