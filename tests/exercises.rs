//! Every exercise is real: it compiles, and it fails at least one of the
//! checks its step introduces until the attendee fills it in. (That the
//! solutions pass those checks is the capability matrix's job.)
//!
//! Each exercise is built with its feature (`--features exNN`) into a target
//! directory of its own, so the binaries the other tests use stay the
//! reference ones.

mod checks;
mod harness;
#[path = "../xtask/src/gen.rs"]
mod tooling;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::Ctx;
use harness::proxy::Target;
use harness::run::run_check;

#[test]
fn every_exercise_fails_its_step_until_solved() {
    let root = &workshop::repo::root();
    let table_text =
        std::fs::read_to_string(root.join("tests/steps.toml")).expect("tests/steps.toml");
    let table = tooling::parse_table(&table_text).expect("a valid tests/steps.toml");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exercises");

    // Build every exercise first (one after the other: they share a target
    // directory), keeping a copy of each binary.
    let mut built = Vec::new();
    for step in &table.steps {
        built.push((step, build_exercise(root, &target_dir, &step.id, &step.bin)));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let problems: Vec<String> = runtime.block_on(async {
        let origin = workshop::origin::start("127.0.0.1:0")
            .await
            .expect("the demo origin starts")
            .addr();
        let mut problems = Vec::new();
        for (step, binary) in &built {
            let new_checks: Vec<_> = table
                .checks
                .iter()
                .filter(|check| check.since == step.id)
                .collect();
            let mut failing = 0;
            for check in &new_checks {
                let ctx = Ctx::new(Target::Binary(binary.clone()), origin);
                let check_fn = checks::find(&check.name).expect("an implemented check");
                if let Err(failure) = run_check(check_fn, ctx).await
                    && failure.is_failure()
                {
                    failing += 1;
                    // One failing check is enough to prove the point.
                    break;
                }
            }
            println!(
                "exercise {} ({}): {}",
                step.id,
                step.teaches,
                if failing > 0 { "fails its step's checks until solved" } else { "PASSES unsolved" }
            );
            if failing == 0 {
                problems.push(format!(
                    "exercises/{}: the unsolved exercise passes every check step {} introduces ({}): \
                     the todo! regions do not cover the step's key code",
                    step.bin, step.id,
                    new_checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        problems
    });
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `cargo build --features exNN --bin BIN`, in a target directory of its
/// own; returns a copy of the binary that the next build cannot overwrite.
fn build_exercise(root: &Path, target_dir: &Path, id: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "--features",
            &format!("ex{id}"),
            "--bin",
            bin,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .expect("running cargo build");
    assert!(
        output.status.success(),
        "exercise {id} does not compile (`cargo build --features ex{id} --bin {bin}`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let copy = target_dir.join(format!("{bin}-exercise"));
    std::fs::copy(target_dir.join("debug").join(bin), &copy).expect("copying the exercise binary");
    copy
}
