//! `cargo xtask`: the workshop's maintenance commands (the alias lives in
//! `.cargo/config.toml`).
//!
//! - `exercises`: regenerate `exercises/` from `solutions/`;
//! - `matrix`: regenerate the capability matrix in `README.md` from
//!   `tests/steps.toml`;
//! - `check NN`: run the behaviour checks of step NN against the attendee's
//!   exercise.
//!
//! The text transformations live in `gen.rs`, which `tests/docs.rs` shares to
//! fail CI when a generated file is stale; this file only does the I/O.

mod check;
// Where the repository is, found at run time (the workshop's own file).
#[path = "../../src/repo.rs"]
mod repo;
// `gen` is a reserved word since edition 2024, hence the raw identifier.
// `tests/docs.rs` uses the slide checks; this binary does not.
#[allow(dead_code)]
mod r#gen;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::process::ExitCode;

use check::Running;

use r#gen::{
    MATRIX_END, MATRIX_START, generate_exercise, parse_table, render_matrix,
    replace_between_markers,
};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  check NN [--addr HOST:PORT [--pid PID]]
      Run the behaviour checks of step NN (like 03) against your exercise,
      exercises/NN_*.rs, built as `cargo run --bin NN-name --features exNN`
      builds it. With --addr, check a proxy you already started instead
      (without --upstream); with its --pid too, the memory checks run.
  exercises [--check]
      Regenerate exercises/NN_name.rs from every solutions/NN_name.rs
      (this overwrites your work in exercises/: commit or copy it first).
      --check only lists the stale files, and exits 1 if there are any.
  matrix [--check]
      Rewrite the capability matrix in README.md from tests/steps.toml.
      --check only says whether it is stale, and exits 1 if it is.
";

/// What a command failed with: a message for the user, exit code 1.
type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    // Non-UTF-8 arguments can only be mistakes here: show the usage.
    let args: Option<Vec<String>> = std::env::args_os()
        .skip(1)
        .map(OsString::into_string)
        .map(|a| a.ok())
        .collect();
    let args = args.unwrap_or_default();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if args
        .iter()
        .any(|arg| matches!(*arg, "help" | "--help" | "-h"))
    {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let root = repo::root();
    let result = match args.as_slice() {
        ["exercises"] => exercises(&root, false),
        ["exercises", "--check"] => exercises(&root, true),
        ["matrix"] => matrix(&root, false),
        ["matrix", "--check"] => matrix(&root, true),
        ["check", step] => check::run(&root, step, None),
        ["check", step, "--addr", addr] | ["check", "--addr", addr, step] => {
            check::run(&root, step, Some(Running { addr, pid: None }))
        }
        ["check", step, "--addr", addr, "--pid", pid]
        | ["check", step, "--pid", pid, "--addr", addr] => {
            let pid = Some(*pid);
            check::run(&root, step, Some(Running { addr, pid }))
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    result.unwrap_or_else(|message| {
        eprintln!("error: {message}");
        ExitCode::FAILURE
    })
}

/// An exercise file that does not match its solution.
enum Stale {
    Missing(String),
    OutOfDate(String),
    Orphan,
}

/// `cargo xtask exercises [--check]`.
fn exercises(root: &Path, check_only: bool) -> Result<ExitCode> {
    let solutions = rust_files(&root.join("solutions"))?;
    let exercises_dir = root.join("exercises");
    let mut stale = Vec::new(); // (file name, what is wrong with it)
    for name in &solutions {
        let solution = read(&root.join("solutions").join(name))?;
        let exercise = generate_exercise(&solution, &format!("solutions/{name}"))?;
        match read_if_exists(&exercises_dir.join(name))? {
            Some(current) if current == exercise => {}
            Some(_) => stale.push((name.clone(), Stale::OutOfDate(exercise))),
            None => stale.push((name.clone(), Stale::Missing(exercise))),
        }
    }
    let exercises = match exercises_dir.exists() {
        true => rust_files(&exercises_dir)?,
        false => BTreeSet::new(),
    };
    for name in exercises.difference(&solutions) {
        stale.push((name.clone(), Stale::Orphan));
    }

    if stale.is_empty() {
        println!("exercises/ is up to date ({} files)", solutions.len());
        return Ok(ExitCode::SUCCESS);
    }
    if check_only {
        for (name, problem) in &stale {
            let why = match problem {
                Stale::Missing(_) => "missing",
                Stale::OutOfDate(_) => "differs from what solutions/ generates",
                Stale::Orphan => "has no solutions/ file",
            };
            println!("exercises/{name}: {why}");
        }
        println!("run `cargo xtask exercises` to regenerate exercises/ from solutions/");
        return Ok(ExitCode::FAILURE);
    }

    fs::create_dir_all(&exercises_dir)
        .map_err(|err| format!("cannot create {}: {err}", exercises_dir.display()))?;
    for (name, problem) in stale {
        let path = exercises_dir.join(&name);
        let write = |text: String| {
            fs::write(&path, text).map_err(|err| format!("cannot write {}: {err}", path.display()))
        };
        match problem {
            Stale::Missing(exercise) => {
                write(exercise)?;
                println!("created exercises/{name}");
            }
            Stale::OutOfDate(exercise) => {
                write(exercise)?;
                println!("updated exercises/{name}");
            }
            Stale::Orphan => {
                fs::remove_file(&path)
                    .map_err(|err| format!("cannot remove {}: {err}", path.display()))?;
                println!("removed exercises/{name} (there is no solutions/{name})");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask matrix [--check]`.
fn matrix(root: &Path, check_only: bool) -> Result<ExitCode> {
    let table = read_table(root)?;
    let readme_path = root.join("README.md");
    let Some(readme) = read_if_exists(&readme_path)? else {
        return Err(format!(
            "{} does not exist yet: write it with a line {MATRIX_START} and a line {MATRIX_END} where the matrix goes, then run `cargo xtask matrix`",
            readme_path.display()
        ));
    };
    let updated =
        replace_between_markers(&readme, MATRIX_START, MATRIX_END, &render_matrix(&table))
            .map_err(|err| format!("README.md: {err}"))?;
    if updated == readme {
        println!("README.md: the matrix is up to date");
        return Ok(ExitCode::SUCCESS);
    }
    if check_only {
        println!("README.md: the matrix differs from tests/steps.toml; run `cargo xtask matrix`");
        return Ok(ExitCode::FAILURE);
    }
    fs::write(&readme_path, updated)
        .map_err(|err| format!("cannot write {}: {err}", readme_path.display()))?;
    println!("README.md: matrix updated from tests/steps.toml");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn read_table(root: &Path) -> Result<r#gen::Table> {
    let path = root.join("tests/steps.toml");
    parse_table(&read(&path)?).map_err(|err| format!("{}: {err}", path.display()))
}

/// The names of the `.rs` files directly in `dir`, sorted.
fn rust_files(dir: &Path) -> Result<BTreeSet<String>> {
    let entries =
        fs::read_dir(dir).map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rs") {
            names.insert(name);
        }
    }
    Ok(names)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|err| format!("cannot read {}: {err}", path.display()))
}

fn read_if_exists(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("cannot read {}: {err}", path.display())),
    }
}
