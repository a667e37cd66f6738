//! The capability matrix: every check against every step binary.
//!
//! `tests/steps.toml` says which step introduces which behaviour. This test
//! starts every step and runs every check against it; any cell that differs
//! from the table fails the test, in both directions: a step that lacks a
//! behaviour it claims, and an early step that passes a later check (which
//! would mean the check cannot tell the steps apart).
//!
//! The same binary runs two more tests beside it, which spend most of
//! their time in something else than waiting (the matrix's checks mostly
//! wait): `each_exercise_fails_its_step_until_solved` (matrix/exercises.rs:
//! compiles every exercise, on one core) and `every_deck_in_chromium`
//! (matrix/deck.rs: the talk in a browser). The matrix and the deck run the
//! reference binaries, linked aside before any exercise is built.
//!
//! Two more modes, for attendees:
//! - `WORKSHOP_STEP=03` runs only step 03's checks and prints a short report
//!   (`cargo xtask check 03` sets it, and `WORKSHOP_BIN` to the binary it
//!   built with `--features ex03`);
//! - with `PROXY_ADDR=127.0.0.1:8080` as well (and `PROXY_PID`), the checks
//!   target a proxy that is already running instead of starting the binary.

mod checks;
#[path = "matrix/deck.rs"]
mod deck;
#[path = "matrix/exercises.rs"]
mod exercises;
mod harness;
// The xtask commands use parts of gen.rs this test does not.
#[allow(dead_code)]
#[path = "../xtask/src/gen.rs"]
mod tooling;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use harness::proxy::Target;
use harness::report;
use harness::run::run_check;
use harness::{Ctx, Failure, Outcome};

/// How many checks run at once: most wait on the network or on a deadline
/// (an idle app's stop, a slow client cut off)…
const PARALLEL: usize = 12;

/// …and a few keep both cores busy: at most two of these at a time, so
/// that the checks that time things are not starved.
const HEAVY: &[&str] = &[
    "upload_1gib_bounded",
    "download_1gib_bounded",
    "slow_client_backpressure",
    "many_keepalive_clients",
    "h2_many_streams",
    "routes_reload_under_load",
    "config_reload_under_load",
    "one_start_for_many_requests",
];
const PARALLEL_HEAVY: usize = 2;

#[test]
fn capability_matrix() {
    // However it ends, the exercises' builds may then take both cores.
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            MATRIX_DONE.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _done = Done;
    let table = load_table();
    binary("");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match std::env::var("WORKSHOP_STEP") {
        Ok(step) => runtime.block_on(check_one_step(&table, &step)),
        Err(_) => runtime.block_on(check_the_whole_matrix(&table)),
    }
}

/// Set once `capability_matrix` is over: until then, the exercises build
/// on one core beside it.
static MATRIX_DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn load_table() -> tooling::Table {
    let path = workshop::repo::root().join("tests/steps.toml");
    let text = std::fs::read_to_string(path).expect("tests/steps.toml is readable");
    let table = tooling::parse_table(&text).unwrap_or_else(|err| panic!("tests/steps.toml: {err}"));
    for check in &table.checks {
        assert!(
            checks::find(&check.name).is_some(),
            "tests/steps.toml names a check `{}` that tests/checks/ does not implement",
            check.name
        );
    }
    for check in checks::ALL {
        assert!(
            table.checks.iter().any(|row| row.name == check.name),
            "the check `{}` is implemented but has no row in tests/steps.toml",
            check.name
        );
    }
    table
}

/// Where the step binaries are: links to the ones cargo built for this
/// test, made once, before the exercises' builds can replace them.
fn binary(bin: &str) -> PathBuf {
    static ASIDE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let aside = ASIDE.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_origin"));
        let aside = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reference");
        std::fs::create_dir_all(&aside).expect("a folder for the reference binaries");
        for step in load_table().steps {
            let (from, to) = (built.with_file_name(&step.bin), aside.join(&step.bin));
            let _ = std::fs::remove_file(&to);
            // `cargo xtask check` builds this test alone, which builds the
            // root package's programs only (steps 01 to 10): it needs none
            // of the others, and they may not be built yet.
            if from.exists() && std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to)
                    .unwrap_or_else(|err| panic!("copying {}: {err}", from.display()));
            }
        }
        aside
    });
    let path = aside.join(bin);
    assert!(
        bin.is_empty() || path.exists(),
        "{bin} is not built: `cargo test` (or `cargo build`) builds every step's program"
    );
    path
}

/// The talk in a real browser (`matrix/deck.rs`), beside the matrix. (The
/// test runner starts tests two at a time, in the order of their names:
/// the matrix and the exercises first, which run longest; this one when
/// either is done.)
#[test]
fn every_deck_in_chromium() {
    binary("");
    deck::every_deck_in_chromium();
}

/// Every exercise is real: run beside the matrix (most of whose time is
/// spent waiting), it builds them while the matrix runs.
#[test]
fn each_exercise_fails_its_step_until_solved() {
    // The reference binaries aside first: the builds replace them.
    binary("");
    exercises::each_exercise_fails_its_step_until_solved();
}

async fn start_origin() -> SocketAddr {
    workshop::origin::start("127.0.0.1:0")
        .await
        .expect("the demo origin starts")
        .addr()
}

async fn check_the_whole_matrix(table: &tooling::Table) {
    let origin = start_origin().await;
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let heavy = Arc::new(tokio::sync::Semaphore::new(PARALLEL_HEAVY));
    let mut cells = tokio::task::JoinSet::new();
    for step in &table.steps {
        for check in &table.checks {
            let ctx = Ctx::new(Target::Binary(binary(&step.bin)), origin);
            let (step_id, name, limit) = (step.id.clone(), check.name.clone(), limit.clone());
            let heavy = HEAVY.contains(&check.name.as_str()).then(|| heavy.clone());
            cells.spawn(async move {
                let _heavy = match heavy {
                    Some(heavy) => Some(heavy.acquire_owned().await.expect("semaphore")),
                    None => None,
                };
                let _permit = limit.acquire_owned().await.expect("semaphore");
                let check = checks::find(&name).expect("checked in load_table");
                let started = std::time::Instant::now();
                let outcome = run_check(check, ctx).await;
                (step_id, name, outcome, started.elapsed())
            });
        }
    }
    let mut results = BTreeMap::new();
    let mut took = Vec::new();
    while let Some(cell) = cells.join_next().await {
        let (step, name, outcome, elapsed) = cell.expect("a matrix cell task");
        took.push((elapsed, format!("{step} {name}")));
        results.insert((step, name), outcome);
    }
    // What makes the matrix long (`cargo test --test matrix -- --nocapture`).
    took.sort();
    for (elapsed, cell) in took.iter().rev().take(20) {
        println!("{:6.1} s  {cell}", elapsed.as_secs_f64());
    }

    let mut mismatches = Vec::new();
    println!("{}", grid(table, &results));
    for check in &table.checks {
        for step in &table.steps {
            let outcome = &results[&(step.id.clone(), check.name.clone())];
            let expected = table.expected(&step.id, &check.name);
            match (expected, outcome) {
                (_, Err(Failure::Skip(why))) => mismatches.push(format!(
                    "step {} `{}` was skipped ({why}): every cell of the matrix must run",
                    step.id, check.name
                )),
                (true, Ok(())) | (false, Err(_)) => {}
                (true, Err(failure)) => mismatches.push(format!(
                    "step {} should pass `{}` ({}), but: {}",
                    step.id,
                    check.name,
                    check.what,
                    failure.message()
                )),
                (false, Ok(())) => mismatches.push(format!(
                    "step {} should fail `{}` (introduced in step {}), but it passed: \
                     either the check cannot tell the steps apart, or the step does more than the table says",
                    step.id, check.name, check.since
                )),
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} cell(s) of the capability matrix differ from tests/steps.toml \
         (built with --features exNN? the matrix expects the solutions; use `cargo xtask check NN`):\n\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}

/// One line per check and a column per step: ✓ pass, ✗ fail, s skipped;
/// `!` marks a cell that differs from the table.
fn grid(table: &tooling::Table, results: &BTreeMap<(String, String), Outcome>) -> String {
    let width = table.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = format!("{:width$} ", "");
    for step in &table.steps {
        out.push_str(&format!(" {} ", step.id));
    }
    out.push('\n');
    for check in &table.checks {
        out.push_str(&format!("{:width$} ", check.name));
        for step in &table.steps {
            let outcome = &results[&(step.id.clone(), check.name.clone())];
            let expected = table.expected(&step.id, &check.name);
            let (mark, right) = match outcome {
                Ok(()) => ("✓", expected),
                Err(Failure::Skip(_)) => ("s", false),
                Err(_) => ("✗", !expected),
            };
            out.push_str(&format!("  {mark}{}", if right { " " } else { "!" }));
        }
        out.push('\n');
    }
    out
}

async fn check_one_step(table: &tooling::Table, step_id: &str) {
    let Some(step) = table.steps.iter().find(|step| step.id == step_id) else {
        let ids: Vec<_> = table.steps.iter().map(|step| step.id.as_str()).collect();
        eprintln!(
            "WORKSHOP_STEP={step_id}: no such step; the steps are {}",
            ids.join(", ")
        );
        std::process::exit(2);
    };
    let target = match running_proxy() {
        Ok(Some(target)) => target,
        // `cargo xtask check` builds the exercise itself and says where.
        Ok(None) => match std::env::var_os("WORKSHOP_BIN") {
            Some(path) => Target::Binary(PathBuf::from(path)),
            None => Target::Binary(binary(&step.bin)),
        },
        Err(problem) => {
            eprintln!("{problem}");
            std::process::exit(2);
        }
    };
    let origin = start_origin().await;
    println!("step {} ({}): {}", step.id, step.bin, step.teaches);
    if let Target::Running { addr, .. } = &target
        && let Err(problem) = report::preflight(*addr, step).await
    {
        println!("\n{problem}\n");
        std::process::exit(1);
    }

    // The step's own behaviours first, then the ones it inherits.
    let mut rows: Vec<_> = table
        .checks
        .iter()
        .filter(|check| table.expected(&step.id, &check.name))
        .collect();
    rows.sort_by_key(|check| check.since != step.id);
    println!("checking {} behaviours…", rows.len());

    let mut cells = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    for (index, check) in rows.iter().enumerate() {
        let ctx = Ctx::new(target.clone(), origin);
        let (name, limit) = (check.name.clone(), limit.clone());
        cells.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore");
            let check = checks::find(&name).expect("checked in load_table");
            (index, run_check(check, ctx).await)
        });
    }
    let mut outcomes = BTreeMap::new();
    while let Some(cell) = cells.join_next().await {
        let (index, outcome) = cell.expect("a check task");
        outcomes.insert(index, outcome);
    }
    let results: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(index, check)| (*check, outcomes.remove(&index).unwrap_or(Ok(()))))
        .collect();
    let report = report::Report::new(&step.id, &results);
    print!("{report}");
    // A clean exit code without a test runner's panic trace: the report
    // above says everything (`cargo xtask check` shows only the report).
    if report.failed() > 0 {
        std::process::exit(1);
    }
}

/// `PROXY_ADDR` (and `PROXY_PID`): a proxy someone already started.
fn running_proxy() -> Result<Option<Target>, String> {
    let Ok(addr) = std::env::var("PROXY_ADDR") else {
        return Ok(None);
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("PROXY_ADDR={addr}: expected host:port, like 127.0.0.1:8080"))?;
    let pid = match std::env::var("PROXY_PID") {
        Ok(pid) => Some(
            pid.parse()
                .map_err(|_| format!("PROXY_PID={pid}: expected a process id, like 12345"))?,
        ),
        Err(_) => None,
    };
    Ok(Some(Target::Running { addr, pid }))
}
