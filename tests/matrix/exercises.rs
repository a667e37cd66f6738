//! Every exercise is real: it compiles, and it fails at least one of the
//! checks its step introduces until the attendee fills it in. (That the
//! solutions pass those checks is the capability matrix's job.)
//!
//! Each exercise is built with its feature (`--features exNN`) in the same
//! target directory and profile as everything else, so that only the crate
//! whose feature changed is built again, with its program (2 to 4 s an
//! exercise), on one core: this test runs beside the matrix, whose checks
//! time things. A build leaves its binary in
//! `target/debug/`: the test links it aside, and once done builds the
//! reference binaries again (cargo only links them back into place), for
//! whatever runs them next; the matrix runs copies of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::checks;
use crate::harness::Ctx;
use crate::harness::proxy::Target;
use crate::harness::run::run_check;
use crate::tooling;

pub fn each_exercise_fails_its_step_until_solved() {
    let root = &workshop::repo::root();
    let table = crate::load_table();
    let copies = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exercises");
    std::fs::create_dir_all(&copies).expect("a folder for the exercise binaries");

    // Build every exercise first (one after the other), keeping each binary
    // aside, then put the reference binaries back.
    let mut built = Vec::new();
    for step in &table.steps {
        built.push((step, build_exercise(root, &copies, &step.id, &step.bin)));
    }
    let bins: Vec<&str> = table.steps.iter().map(|step| step.bin.as_str()).collect();
    cargo(root, &["build", "--quiet"], &bins, false);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let problems: Vec<String> = runtime.block_on(async {
        let origin = workshop::origin::start("127.0.0.1:0")
            .await
            .expect("the demo origin starts")
            .addr();
        // The exercises at once (each one's checks in turn, until one
        // fails): most of a check's time is waiting for what must happen.
        let mut exercises = tokio::task::JoinSet::new();
        for (step, binary) in &built {
            let new_checks: Vec<String> = table
                .checks
                .iter()
                .filter(|check| check.since == step.id)
                .map(|check| check.name.clone())
                .collect();
            let (id, bin, teaches) = (step.id.clone(), step.bin.clone(), step.teaches.clone());
            let binary = binary.clone();
            exercises.spawn(async move {
                let started = std::time::Instant::now();
                let mut failing = false;
                for name in &new_checks {
                    let ctx = Ctx::new(Target::Binary(binary.clone()), origin);
                    let check = checks::find(name).expect("an implemented check");
                    if let Err(failure) = run_check(check, ctx).await
                        && failure.is_failure()
                    {
                        // One failing check is enough to prove the point.
                        failing = true;
                        break;
                    }
                }
                let took = started.elapsed().as_secs_f64();
                (id, bin, format!("{teaches}; {took:.1} s"), new_checks, failing)
            });
        }
        let mut problems = Vec::new();
        for (id, bin, teaches, new_checks, failing) in exercises.join_all().await {
            println!(
                "exercise {id} ({teaches}): {}",
                if failing { "fails its step's checks until solved" } else { "PASSES unsolved" }
            );
            if !failing {
                problems.push(format!(
                    "exercises/{bin}: the unsolved exercise passes every check step {id} introduces \
                     ({}): the todo! regions do not cover the step's key code",
                    new_checks.join(", ")
                ));
            }
        }
        problems
    });
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `cargo build --features exNN --bin BIN`; returns a copy of the binary,
/// which the next build cannot overwrite.
fn build_exercise(root: &Path, copies: &Path, id: &str, bin: &str) -> PathBuf {
    let feature = format!("ex{id}");
    let built = cargo(
        root,
        &["build", "--quiet", "--features", &feature],
        &[bin],
        true,
    );
    let copy = copies.join(format!("{bin}-exercise"));
    let _ = std::fs::remove_file(&copy);
    // A link is enough: the next build replaces the file, not its content.
    if std::fs::hard_link(&built, &copy).is_err() {
        std::fs::copy(&built, &copy).expect("copying the exercise binary");
    }
    copy
}

/// Runs `cargo ARGS --bin B…` (on one core, for the exercises, while the
/// matrix runs beside) and returns where the first binary is.
fn cargo(root: &Path, args: &[&str], bins: &[&str], one_core: bool) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root).args(args);
    tooling::forget_cargo_run_env(&mut command);
    for bin in bins {
        command.args(["--bin", bin]);
    }
    // One core while the matrix runs beside (its checks wait, mostly, but
    // their timeouts must not starve); both once it is over.
    if one_core && !crate::MATRIX_DONE.load(std::sync::atomic::Ordering::Relaxed) {
        command.arg("--jobs=1");
    }
    let output = command.output().expect("running cargo build");
    assert!(
        output.status.success(),
        "`cargo {} --bin {}` failed:\n{}",
        args.join(" "),
        bins.join(" --bin "),
        String::from_utf8_lossy(&output.stderr)
    );
    let binary = Path::new(env!("CARGO_BIN_EXE_origin")).with_file_name(bins[0]);
    assert!(binary.is_file(), "cargo built no {}", binary.display());
    binary
}
