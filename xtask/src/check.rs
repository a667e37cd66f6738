//! `cargo xtask check NN`: the behaviour checks of step NN against the
//! attendee's exercise, with nothing but the report on screen.
//!
//! The edit–check loop is what attendees do all day, so it must be quick:
//! - the checks (the `matrix` test) are built once, from the reference code,
//!   and never rebuilt when an exercise changes;
//! - only the step's binary is built with `--features exNN`, the very build
//!   `cargo run --bin NN-name --features exNN` makes, so running and checking
//!   in turn rebuilds nothing;
//! - the test runs as a program: no test runner's epilogue, no panic trace,
//!   just the report it prints.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::r#gen::forget_cargo_run_env;
use crate::{Result, read_table};

/// A proxy the attendee started: where it listens, and optionally its PID.
pub struct Running<'a> {
    pub addr: &'a str,
    pub pid: Option<&'a str>,
}

/// `cargo xtask check NN [--addr HOST:PORT [--pid PID]]`.
pub fn run(root: &Path, step: &str, running: Option<Running>) -> Result<ExitCode> {
    let table = read_table(root)?;
    // `check 3` means step 03.
    let step = match step.parse::<u8>() {
        Ok(number) if step.len() < 2 => format!("{number:02}"),
        _ => step.to_string(),
    };
    let Some(bin) = table.steps.iter().find(|s| s.id == step).map(|s| &s.bin) else {
        let ids: Vec<&str> = table.steps.iter().map(|s| s.id.as_str()).collect();
        return Err(format!(
            "there is no step {step:?}: the steps are {} (like `cargo xtask check {}`)",
            ids.join(", "),
            ids.first().unwrap_or(&"01")
        ));
    };
    if let Some(running) = &running {
        let valid = running
            .addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(format!(
                "--addr {:?}: expected HOST:PORT, like 127.0.0.1:8080",
                running.addr
            ));
        }
        if let Some(pid) = running.pid
            && pid.parse::<u32>().is_err()
        {
            return Err(format!("--pid {pid:?}: expected a process id, like 12345"));
        }
    }

    // The checks first, then the binary: both builds put a `BIN` in
    // target/debug, and the one `cargo run --features exNN` would use must
    // be the one left there.
    let checks = build(root, &["test", "--no-run", "--test", "matrix"], "matrix")?;
    let mut test = Command::new(&checks);
    test.current_dir(root)
        .args(["capability_matrix", "--exact", "--nocapture"])
        .env("WORKSHOP_STEP", &step)
        .env("RUST_BACKTRACE", "0");
    match &running {
        None => {
            let feature = format!("ex{step}");
            let binary = build(root, &["build", "--features", &feature, "--bin", bin], bin)?;
            test.env("WORKSHOP_BIN", binary);
        }
        Some(running) => {
            test.env("PROXY_ADDR", running.addr);
            if let Some(pid) = running.pid {
                test.env("PROXY_PID", pid);
            }
        }
    }
    forget_cargo_run_env(&mut test);
    test.stdout(Stdio::piped());
    let mut child = test
        .spawn()
        .map_err(|err| format!("cannot run {}: {err}", checks.display()))?;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(|line| line.ok()) {
            // With one test thread, the runner's `test NAME ... ` comes
            // first on the line of the report's first words.
            let line = line
                .strip_prefix("test capability_matrix ... ")
                .unwrap_or(&line);
            if !is_test_runner_line(line) {
                println!("{line}");
            }
        }
    }
    let status = child
        .wait()
        .map_err(|err| format!("waiting for the checks: {err}"))?;
    // Killed by a signal: no code, a failure.
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|code| u8::try_from(code).ok())
            .unwrap_or(1),
    ))
}

/// Runs `cargo ARGS` and returns the executable it built for `target`.
/// cargo's progress shows as usual; compiler messages are shown as cargo
/// would show them.
fn build(root: &Path, args: &[&str], target: &str) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let format = if std::io::stderr().is_terminal() {
        "--message-format=json-diagnostic-rendered-ansi"
    } else {
        "--message-format=json"
    };
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(args)
        .arg(format)
        .stdout(Stdio::piped());
    forget_cargo_run_env(&mut command);
    let mut child = command
        .spawn()
        .map_err(|err| format!("cannot run cargo: {err}"))?;
    let mut executable = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(|line| line.ok()) {
            let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            match message["reason"].as_str() {
                Some("compiler-message") => {
                    if let Some(rendered) = message["message"]["rendered"].as_str() {
                        eprint!("{rendered}");
                    }
                }
                Some("compiler-artifact") if message["target"]["name"] == target => {
                    if let Some(path) = message["executable"].as_str() {
                        executable = Some(PathBuf::from(path));
                    }
                }
                _ => {}
            }
        }
    }
    let status = child
        .wait()
        .map_err(|err| format!("waiting for cargo: {err}"))?;
    if !status.success() {
        return Err(format!("`cargo {}` failed (see above)", args.join(" ")));
    }
    executable.ok_or_else(|| format!("`cargo {}` built no {target}", args.join(" ")))
}

/// The test runner's own lines around the report (`running 1 test`,
/// `test result: …`): noise in front of an attendee.
fn is_test_runner_line(line: &str) -> bool {
    line.starts_with("running ") && (line.ends_with(" test") || line.ends_with(" tests"))
        || line.starts_with("test capability_matrix")
        || line.starts_with("test result: ")
}
