//! The generated and cross-referenced files stay true to their sources:
//! exercises match solutions, the README's matrix matches `tests/steps.toml`,
//! and every slide points at code and binaries that exist (how the slides
//! look is `tests/matrix/deck.rs`'s job, in a browser).
//!
//! The generated files are checked with the same code as `cargo xtask`
//! (`xtask/src/gen.rs`), so when one fails, the xtask command it names
//! fixes it.

// `gen` is a reserved word since edition 2024, hence the raw identifier.
// The xtask commands use parts of gen.rs these tests do not (and back).
#[allow(dead_code)]
#[path = "../xtask/src/gen.rs"]
mod r#gen;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use r#gen::{
    MATRIX_END, MATRIX_START, generate_exercise, parse_table, render_matrix,
    replace_between_markers,
};
use serde::Deserialize;
use workshop::deck::{find_includes, resolve_include};

fn root() -> PathBuf {
    workshop::repo::root()
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
    // Steps 11 on live in their own package (complete/).
    let mut bins = cargo_bins(&read("Cargo.toml"));
    bins.extend(cargo_bins(&read("complete/Cargo.toml")));
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

// --- slides ------------------------------------------------------------------

/// Checks one reveal.js markdown deck and returns its problems (none when it
/// is fine), each as `deck_path:LINE: message`:
///
/// - slides are separated by lines `***` (next slide) and `**` (slide below);
///   each slide has exactly one speaker-notes line (`Note:`);
/// - every `{{#include PATH}}` and `{{#include PATH:ANCHOR}}` resolves, PATH
///   relative to the deck's folder, read through `read_file`;
/// - every `cargo run --bin NAME` names one of `bins`.
fn check_slide_deck(
    markdown: &str,
    deck_path: &Path,
    read_file: &dyn Fn(&Path) -> Option<String>,
    bins: &[String],
) -> Vec<String> {
    let deck = deck_path.display();
    let deck_dir = deck_path.parent().unwrap_or(Path::new(""));
    let mut problems = Vec::new();

    // Speaker notes, slide by slide. A trailing empty line closes the last
    // slide, so the loop handles it like any separator.
    let mut slide_start = 1;
    let mut notes: Vec<usize> = Vec::new();
    let lines: Vec<&str> = markdown.lines().collect();
    for (index, line) in lines.iter().map(Some).chain([None]).enumerate() {
        let number = index + 1;
        let is_separator = line.is_none_or(|line| matches!(line.trim_end(), "***" | "**"));
        if !is_separator {
            if line.is_some_and(|line| is_notes_line(line)) {
                notes.push(number);
            }
            continue;
        }
        match notes.as_slice() {
            [] => problems.push(format!(
                "{deck}:{slide_start}: this slide has no `Note:` line: every slide needs speaker notes"
            )),
            [_] => {}
            [first, second, ..] => problems.push(format!(
                "{deck}:{second}: a second notes line in this slide (the first is line {first}): reveal.js takes everything after the first as notes"
            )),
        }
        slide_start = number + 1;
        notes.clear();
    }

    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        for include in find_includes(line) {
            if let Err(err) = resolve_include(&include, deck_dir, read_file) {
                problems.push(format!("{deck}:{number}: {err}"));
            }
        }
        for bin in cargo_run_bins(line) {
            if !bins.contains(&bin) {
                problems.push(format!(
                    "{deck}:{number}: `cargo run --bin {bin}`: there is no such [[bin]] in Cargo.toml (known: {})",
                    bins.join(", ")
                ));
            }
        }
    }
    problems
}

/// A line that reveal.js takes as the start of the speaker notes. Its default
/// separator is `^\s*notes?:`, case-insensitive: a stray `notes:` line would
/// swallow the end of the slide too, so it counts.
fn is_notes_line(line: &str) -> bool {
    let line = line.trim_start().to_ascii_lowercase();
    line.starts_with("note:") || line.starts_with("notes:")
}

/// The NAME of every `cargo run ... --bin NAME` in a line (also
/// `--bin=NAME`). A command ends at a backtick, `&&`, `|` or `;`, and
/// what follows `--` belongs to the program, not to cargo.
fn cargo_run_bins(line: &str) -> Vec<String> {
    let mut bins = Vec::new();
    for (at, _) in line.match_indices("cargo run") {
        let command = &line[at + "cargo run".len()..];
        let command = command
            .find(['`', '|', ';', '&'])
            .map_or(command, |end| &command[..end]);
        let mut words = command.split_whitespace();
        while let Some(word) = words.next() {
            if word == "--" {
                break;
            }
            let name = match word.strip_prefix("--bin") {
                Some("") => words.next(),
                Some(rest) => rest.strip_prefix('='),
                None => None,
            };
            if let Some(name) = name {
                bins.push(name.to_string());
            }
        }
    }
    bins
}

/// The `[[bin]]` names of a Cargo.toml (none if it does not parse).
fn cargo_bins(cargo_toml_text: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct Manifest {
        #[serde(default)]
        bin: Vec<Bin>,
    }
    #[derive(Deserialize)]
    struct Bin {
        name: Option<String>,
    }
    toml::from_str::<Manifest>(cargo_toml_text)
        .map(|manifest| {
            manifest
                .bin
                .into_iter()
                .filter_map(|bin| bin.name)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn decks_are_checked() {
    const CODE: &str = "fn outside() {}\n// ANCHOR: inner\nfn f() {}\n// ANCHOR_END: inner\n";
    let files =
        |path: &Path| (path == Path::new("slides/../solutions/01_x.rs")).then(|| CODE.to_string());
    let deck = "\
# Title

Note: say hello
***
## Code

{{#include ../solutions/01_x.rs:inner}}
`cargo run --bin 01-a` and `cargo run --release --bin=01-b -- --bin x`

Note: explain
**
no notes, {{#include ../solutions/01_x.rs:missing}} {{#include ../nope.rs}}
cargo run --bin nope && cargo run --bin 01-a
***
Note: one
notes: two
";
    let bins = ["01-a".to_string(), "01-b".to_string()];
    let problems = check_slide_deck(deck, Path::new("slides/01_x.md"), &files, &bins);
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert!(problems[0].starts_with("slides/01_x.md:12: this slide has no `Note:`"));
    assert!(problems[1].starts_with("slides/01_x.md:16: a second notes line"));
    assert!(
        problems[2]
            .starts_with("slides/01_x.md:12: {{#include ../solutions/01_x.rs:missing}}: no line")
    );
    assert!(problems[3].starts_with("slides/01_x.md:12: {{#include ../nope.rs}}: cannot read"));
    assert!(problems[4].starts_with("slides/01_x.md:13: `cargo run --bin nope`"));
}

#[test]
fn bins_come_from_cargo_toml() {
    let manifest = "[package]\nname = \"p\"\n[[bin]]\nname = \"01-a\"\npath = \"a.rs\"\n[[bin]]\nname = \"origin\"\n";
    assert_eq!(cargo_bins(manifest), ["01-a", "origin"]);
    assert!(cargo_bins("not toml [").is_empty());
}

/// A checkout moved or copied after a build (or another checkout sharing
/// the target directory) reads its own files: the `slides` binary, built
/// here, run in a copy of a repository, exports the copy's deck, not this
/// one's (`workshop::repo` finds the repository at run time).
#[test]
fn a_moved_checkout_reads_its_own_files() {
    let copy = Path::new(env!("CARGO_TARGET_TMPDIR")).join("moved-checkout");
    let _ = fs::remove_dir_all(&copy);
    let marker = "only-in-the-moved-copy";
    for (file, text) in [
        ("tests/steps.toml", String::new()),
        (
            "slides/01_moved.md",
            format!("# Step 01 — {marker}\n\ntext\n"),
        ),
        ("slides/workshop.css", String::new()),
        ("slides/reveal.js/dist/reveal.js", String::new()),
        ("slides/fonts/.keep", String::new()),
    ] {
        let path = copy.join(file);
        fs::create_dir_all(path.parent().expect("a folder")).expect("making the copy");
        fs::write(&path, text).expect("writing the copy");
    }
    let export = copy.join("export");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_slides"))
        .current_dir(copy.join("slides"))
        .arg("--export")
        .arg(&export)
        .output()
        .expect("running the slides binary");
    assert!(
        output.status.success(),
        "`slides --export` in a moved copy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page = fs::read_to_string(export.join("index.html")).expect("the exported talk");
    assert!(
        page.contains(marker),
        "run in another checkout, the slides binary exported the decks of the checkout it was \
         built in (it must find the repository at run time: the current folder and its parents)"
    );
    let _ = fs::remove_dir_all(&copy);
}

/// No slide shows an exercise's code before the exercise's slide (`##
/// Exercise NN`): an attendee who only copies learns nothing. A deck's
/// includes of its own solution, before that slide, must not reach into an
/// `// EXERCISE:` region (an anchor around a region shows it too).
#[test]
fn exercise_code_comes_after_the_exercise_slide() {
    let mut problems = Vec::new();
    for deck in files_in("slides", ".md") {
        let name = deck.trim_end_matches(".md");
        let solution_path = format!("solutions/{name}.rs");
        let Ok(solution) = fs::read_to_string(root().join(&solution_path)) else {
            continue;
        };
        let deck_text = read(&format!("slides/{deck}"));
        let step = &name[..2];
        let Some(exercise_slide) = deck_text
            .lines()
            .position(|line| line.starts_with(&format!("## Exercise {step}")))
        else {
            problems.push(format!("slides/{deck}: no `## Exercise {step}` slide"));
            continue;
        };
        let regions = exercise_regions(&solution);
        for (index, line) in deck_text.lines().enumerate().take(exercise_slide) {
            for include in find_includes(line) {
                if !include.path.ends_with(&format!("{name}.rs"))
                    || !include.path.contains("solutions/")
                {
                    continue;
                }
                let Some((from, to)) = anchor_lines(&solution, include.anchor) else {
                    continue;
                };
                if regions
                    .iter()
                    .any(|&(start, end)| start <= to && from <= end)
                {
                    problems.push(format!(
                        "slides/{deck}:{}: `{}` shows code of an exercise region of \
                         {solution_path} before the `## Exercise {step}` slide (line {})",
                        index + 1,
                        include.anchor.unwrap_or("the whole file"),
                        exercise_slide + 1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The 1-based lines of every `// EXERCISE:` … `// END EXERCISE` region.
fn exercise_regions(solution: &str) -> Vec<(usize, usize)> {
    let mut regions = Vec::new();
    let mut open = None;
    for (index, line) in solution.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("// EXERCISE:") {
            open = Some(index + 1);
        } else if trimmed == "// END EXERCISE"
            && let Some(start) = open.take()
        {
            regions.push((start, index + 1));
        }
    }
    regions
}

/// The 1-based lines an include shows: between `ANCHOR: name` and
/// `ANCHOR_END: name`, or the whole file.
fn anchor_lines(text: &str, anchor: Option<&str>) -> Option<(usize, usize)> {
    let Some(anchor) = anchor else {
        return Some((1, text.lines().count()));
    };
    let is = |line: &str, marker: &str| {
        line.split_once(marker)
            .is_some_and(|(_, rest)| rest.split_whitespace().next() == Some(anchor))
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|line| is(line, "ANCHOR:"))?;
    let end = lines.iter().position(|line| is(line, "ANCHOR_END:"))?;
    Some((start + 1, end + 1))
}

/// A deck fits about 20 minutes: at most 1,500 words of speaker notes.
#[test]
fn decks_fit_twenty_minutes() {
    let mut problems = Vec::new();
    for deck in files_in("slides", ".md") {
        let text = read(&format!("slides/{deck}"));
        let mut words = 0;
        let mut in_notes = false;
        for line in text.lines() {
            if matches!(line.trim_end(), "***" | "**") {
                in_notes = false;
            } else if is_notes_line(line) {
                in_notes = true;
            }
            if in_notes {
                words += line.split_whitespace().count();
            }
        }
        if words > 1500 {
            problems.push(format!(
                "slides/{deck}: {words} words of notes: a deck fits about 20 minutes (1,500 at most)"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A step is a lesson: its lesson file (`solutions/NN_*.rs`) at most 400
/// lines, naming its ideas as a list in its doc comment (four at most);
/// its program (`steps/NN_*.rs`) at most 150 lines, only wiring.
#[test]
fn steps_stay_lessons() {
    let mut problems = Vec::new();
    for (folder, most) in [("solutions", 400), ("steps", 150)] {
        for file in files_in(folder, ".rs") {
            let text = read(&format!("{folder}/{file}"));
            let lines = text.lines().count();
            if lines > most {
                problems.push(format!(
                    "{folder}/{file}: {lines} lines, {most} at most: move what is not the lesson to the kit"
                ));
            }
            let ideas = text
                .lines()
                .take_while(|line| line.starts_with("//!"))
                .filter(|line| line.starts_with("//! - "))
                .count();
            if folder == "solutions" && ideas > 4 {
                problems.push(format!(
                    "{folder}/{file}: its doc comment lists {ideas} ideas, four at most"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
