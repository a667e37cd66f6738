//! What `cargo xtask check NN` prints: what to do first, then the step's own
//! behaviours, then the ones it inherits, short.
//!
//! An unfilled `todo!()` makes the proxy panic on most requests, so most
//! checks fail for that one reason: the report leads with each `todo!()`
//! that was hit (file and line, and its hint), names every check that only
//! failed because of a panic on one line, and keeps the details for the
//! failures that have another cause.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use super::outcome::{Failure, Outcome, Panic};
use crate::tooling::{Check, Step};

/// The report of one step: every check it should pass, with its outcome.
pub struct Report<'a> {
    step: &'a str,
    results: &'a [(&'a Check, Outcome)],
}

impl<'a> Report<'a> {
    pub fn new(step: &'a str, results: &'a [(&'a Check, Outcome)]) -> Report<'a> {
        Report { step, results }
    }

    pub fn failed(&self) -> usize {
        self.count(|outcome| matches!(outcome, Err(failure) if failure.is_failure()))
    }

    fn count(&self, which: impl Fn(&Outcome) -> bool) -> usize {
        self.results
            .iter()
            .filter(|(_, outcome)| which(outcome))
            .count()
    }

    /// Every distinct panic, with the number of checks that saw it.
    fn panics(&self) -> Vec<(Panic, usize)> {
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (_, outcome) in self.results {
            if let Err(Failure::Panicked { panics, .. }) = outcome {
                let mut distinct: Vec<_> = panics
                    .iter()
                    .map(|panic| (tidy_path(&panic.location), panic.message.clone()))
                    .collect();
                distinct.sort();
                distinct.dedup();
                for key in distinct {
                    *seen.entry(key).or_default() += 1;
                }
            }
        }
        seen.into_iter()
            .map(|((location, message), checks)| (Panic { location, message }, checks))
            .collect()
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let panics = self.panics();
        if !panics.is_empty() {
            let todos = panics.iter().any(|(panic, _)| is_todo(panic));
            if todos {
                writeln!(f, "\nyour code hit a todo!(): fill it in, then check again")?;
            } else {
                writeln!(f, "\nthe proxy panicked: fix that first")?;
            }
            for (panic, checks) in &panics {
                let checks = match checks {
                    1 => "in 1 check".to_string(),
                    n => format!("in {n} checks"),
                };
                match panic.message.strip_prefix("not yet implemented") {
                    Some(hint) => {
                        let hint = hint.trim_start_matches(':').trim();
                        writeln!(
                            f,
                            "  not yet implemented at {} — {hint}  ({checks})",
                            panic.location
                        )?;
                    }
                    None => writeln!(
                        f,
                        "  panicked at {}: {}  ({checks})",
                        panic.location, panic.message
                    )?,
                }
            }
        }

        let (new, inherited): (Vec<_>, Vec<_>) = self
            .results
            .iter()
            .partition(|(check, _)| check.since == self.step);
        if !new.is_empty() {
            writeln!(f, "\nnew in step {}:", self.step)?;
            for (check, outcome) in &new {
                match outcome {
                    Ok(()) => writeln!(f, "  ✓ {} — {}", check.name, check.what)?,
                    Err(Failure::Panicked { .. }) => writeln!(
                        f,
                        "  ✗ {} — {} (the proxy panicked: see above)",
                        check.name, check.what
                    )?,
                    Err(Failure::Skip(why)) => writeln!(f, "  - {} — skipped: {why}", check.name)?,
                    Err(Failure::Fail(why)) => write_failure(f, check, why)?,
                }
            }
        }

        if !inherited.is_empty() {
            writeln!(f, "\nfrom earlier steps:")?;
            let passed = inherited.iter().filter(|(_, o)| o.is_ok()).count();
            match passed {
                0 => {}
                1 => writeln!(f, "  ✓ 1 behaviour passes")?,
                n => writeln!(f, "  ✓ {n} behaviours pass")?,
            }
            let panicked: Vec<&str> = inherited
                .iter()
                .filter(|(_, o)| matches!(o, Err(Failure::Panicked { .. })))
                .map(|(check, _)| check.name.as_str())
                .collect();
            if !panicked.is_empty() {
                // A few names are enough: the cause is one, above.
                const SHOWN: usize = 8;
                let mut names = panicked[..panicked.len().min(SHOWN)].to_vec();
                let more = format!("and {} more", panicked.len().saturating_sub(SHOWN));
                if panicked.len() > SHOWN {
                    names.push(&more);
                }
                writeln!(
                    f,
                    "  ✗ {} fail only because the proxy panicked (see above):\n{}",
                    panicked.len(),
                    wrap(&names, "      ")
                )?;
            }
            for (check, outcome) in &inherited {
                if let Err(Failure::Fail(why)) = outcome {
                    write_failure(f, check, why)?;
                }
            }
            let mut skipped: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (check, outcome) in &inherited {
                if let Err(Failure::Skip(why)) = outcome {
                    skipped.entry(why).or_default().push(&check.name);
                }
            }
            for (why, names) in skipped {
                writeln!(
                    f,
                    "  - {} skipped, {why}: {}",
                    names.len(),
                    names.join(", ")
                )?;
            }
        }

        let skipped = self.count(|o| matches!(o, Err(Failure::Skip(_))));
        let passed = self.count(Result::is_ok);
        writeln!(
            f,
            "\n{passed} passed, {} failed, {skipped} skipped",
            self.failed()
        )
    }
}

fn write_failure(f: &mut fmt::Formatter<'_>, check: &Check, why: &str) -> fmt::Result {
    writeln!(
        f,
        "  ✗ {} — {}\n      {}",
        check.name,
        check.what,
        why.replace('\n', "\n      ")
    )
}

/// `names`, comma-separated, in lines of at most 100 characters.
fn wrap(names: &[&str], indent: &str) -> String {
    let mut lines = vec![indent.to_string()];
    for (index, name) in names.iter().enumerate() {
        let comma = if index + 1 < names.len() { "," } else { "" };
        let last = lines.last_mut().expect("one line at least");
        if last.len() > indent.len() && last.len() + 1 + name.len() + comma.len() > 100 {
            lines.push(indent.to_string());
        }
        let last = lines.last_mut().expect("one line at least");
        if last.len() > indent.len() {
            last.push(' ');
        }
        last.push_str(name);
        last.push_str(comma);
    }
    lines.join("\n")
}

fn is_todo(panic: &Panic) -> bool {
    panic.message.starts_with("not yet implemented")
}

/// `src/../exercises/05_x.rs:59` (how rustc names a `#[path]` module) as
/// `exercises/05_x.rs:59`: the path an editor opens from the repository.
fn tidy_path(location: &str) -> String {
    let mut tidy = PathBuf::new();
    for component in Path::new(location).components() {
        match component {
            Component::ParentDir if tidy.file_name().is_some() => {
                tidy.pop();
            }
            Component::CurDir => {}
            other => tidy.push(other),
        }
    }
    tidy.to_string_lossy().into_owned()
}

/// Before checking a proxy someone started (`--addr`): is anything there,
/// and does it answer like step `step` (started without `--upstream`, so
/// that it forwards to its own demo origin)? One line if not.
pub async fn preflight(addr: SocketAddr, step: &Step) -> Result<(), String> {
    let run = format!("cargo run --bin {} --features ex{}", step.bin, step.id);
    let connected = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(addr),
    )
    .await;
    match connected {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            return Err(format!(
                "nothing answers on {addr} ({err}): start your proxy in another terminal first, \
                 with `{run} -- --listen {addr}`"
            ));
        }
        Err(_) => return Err(format!("{addr} accepts no connection within 5 s")),
    }
    let reply = super::within(
        10,
        "an answer to GET /echo",
        super::client::get(addr, "/echo"),
    )
    .await
    .map_err(|failure| {
        format!(
            "{addr} accepts connections but GET /echo got no answer ({}): if it is your \
             exercise, look at its terminal: a todo!() it hit says where (in this mode the \
             checks cannot see the proxy's panics)",
            failure.message()
        )
    })?;
    let forwards = reply.json().is_ok_and(|echo| echo["path"] == "/echo");
    let describes = reply.text().contains("request: GET /echo");
    let first_step = step.id == "01";
    if (first_step && describes) || (!first_step && forwards) {
        return Ok(());
    }
    Err(if first_step && forwards {
        format!(
            "{addr} forwards requests; step 01 answers them itself: is it the step you are \
             checking? (start it with `{run}`)"
        )
    } else if first_step {
        format!(
            "{addr} answered GET /echo with {} and no description of the request: is it step 01? \
             (start it with `{run}`)",
            reply.status
        )
    } else if describes {
        format!(
            "{addr} answers like step 01 (it describes the request instead of forwarding it): \
             start step {} with `{run}`",
            step.id
        )
    } else {
        format!(
            "{addr} answered GET /echo with {} but not with the demo origin's echo: start the \
             proxy without --upstream, so that it forwards to its own demo origin (`{run}`)",
            reply.status
        )
    })
}
