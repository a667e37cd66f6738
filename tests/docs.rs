//! The generated and cross-referenced files stay true to their sources:
//! exercises match solutions, the README's matrix matches `tests/steps.toml`,
//! and every slide points at code and binaries that exist.
//!
//! These tests use the same code as `cargo xtask` (`xtask/src/gen.rs`), so
//! when one fails, the xtask command it names fixes it.

// `gen` is a reserved word since edition 2024, hence the raw identifier.
// The xtask commands use parts of gen.rs these tests do not (and back).
#[allow(dead_code)]
#[path = "../xtask/src/gen.rs"]
mod r#gen;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use r#gen::{
    MATRIX_END, MATRIX_START, cargo_bins, check_slide_deck, generate_exercise, parse_table,
    render_matrix, replace_between_markers,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// The names of the files in `dir` (relative to the root) ending in `ext`.
fn files_in(dir: &str, ext: &str) -> BTreeSet<String> {
    let path = root().join(dir);
    let Ok(entries) = fs::read_dir(&path) else {
        return BTreeSet::new(); // no folder yet: nothing to check
    };
    entries
        .map(|entry| entry.unwrap_or_else(|err| panic!("cannot list {}: {err}", path.display())))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(ext))
        .collect()
}

/// The number of the first line where `a` and `b` differ, if they do.
fn first_difference(a: &str, b: &str) -> Option<usize> {
    if a == b {
        return None;
    }
    let same = a
        .split_inclusive('\n')
        .zip(b.split_inclusive('\n'))
        .take_while(|(x, y)| x == y)
        .count();
    Some(same + 1)
}

#[test]
fn exercises_are_generated_from_solutions() {
    let solutions = files_in("solutions", ".rs");
    let exercises = files_in("exercises", ".rs");
    let mut problems = Vec::new();
    for name in &solutions {
        let exercise = generate_exercise(
            &read(&format!("solutions/{name}")),
            &format!("solutions/{name}"),
        )
        .unwrap_or_else(|err| panic!("{err}"));
        if !exercises.contains(name) {
            problems.push(format!("exercises/{name} is missing"));
        } else if let Some(line) = first_difference(&read(&format!("exercises/{name}")), &exercise)
        {
            problems.push(format!(
                "exercises/{name}:{line}: differs from what solutions/{name} generates"
            ));
        }
    }
    for orphan in exercises.difference(&solutions) {
        problems.push(format!("exercises/{orphan} has no solutions/{orphan}"));
    }
    assert!(
        problems.is_empty(),
        "{}\nexercises/ is generated: run `cargo xtask exercises` (never edit it by hand)",
        problems.join("\n")
    );
}

#[test]
fn readme_matrix_is_fresh() {
    let table = parse_table(&read("tests/steps.toml"))
        .unwrap_or_else(|err| panic!("tests/steps.toml: {err}"));
    let readme = read("README.md");
    let fresh = replace_between_markers(&readme, MATRIX_START, MATRIX_END, &render_matrix(&table))
        .unwrap_or_else(|err| panic!("README.md: {err}"));
    assert!(
        fresh == readme,
        "README.md's capability matrix differs from tests/steps.toml: run `cargo xtask matrix`"
    );
}

#[test]
fn slides_resolve() {
    let bins = cargo_bins(&read("Cargo.toml"));
    assert!(!bins.is_empty(), "found no [[bin]] in Cargo.toml");
    let read_file = |path: &Path| fs::read_to_string(root().join(path)).ok();
    let mut problems = Vec::new();
    for deck in files_in("slides", ".md") {
        let deck = format!("slides/{deck}");
        problems.extend(check_slide_deck(
            &read(&deck),
            Path::new(&deck),
            &read_file,
            &bins,
        ));
    }
    assert!(
        problems.is_empty(),
        "the slides have problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn table_is_valid() {
    if let Err(err) = parse_table(&read("tests/steps.toml")) {
        panic!("tests/steps.toml:\n{err}");
    }
}
