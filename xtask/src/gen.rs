//! What `cargo xtask` generates and checks, as pure functions on text.
//!
//! - exercises: `solutions/NN_name.rs` → `exercises/NN_name.rs`;
//! - the capability matrix: `tests/steps.toml` → the table in `README.md`.
//!
//! The xtask binary uses these functions to write the files, and
//! `tests/docs.rs` uses the very same file (through `#[path]`) to fail CI when
//! a generated file is stale: one implementation, so the command and the test
//! cannot disagree. That is why this file only uses std, serde and toml, which
//! both crates have, and takes file contents instead of reading files.

use std::collections::HashSet;

use serde::Deserialize;

// --- exercises ---------------------------------------------------------------

/// Opens a region of the solution that the attendee writes; the rest of the
/// line is the hint.
const EXERCISE_OPEN: &str = "// EXERCISE:";
/// Closes the region.
const EXERCISE_CLOSE: &str = "// END EXERCISE";

/// The attribute every exercise carries: `todo!()` leaves parameters, imports
/// and helpers unused (`unused` is the lint group for all of them), and code
/// after it unreachable. Short enough for rustfmt to leave it on one line.
const EXERCISE_ALLOW: &str = "#![allow(unused, unreachable_code)]";

/// rustfmt's line width: exercises are modules of the crate, so `cargo fmt`
/// formats them too, and a generated file must already look formatted.
const MAX_WIDTH: usize = 100;

/// Writes the exercise for one solution: every `// EXERCISE: hint` …
/// `// END EXERCISE` region (markers included) becomes a `// TODO: hint` line
/// and a `todo!("hint")` line at the marker's indentation; everything else is
/// copied byte for byte, so `diff exercises/x.rs solutions/x.rs` shows exactly
/// the work. `solution_path` (like `solutions/03_stream_body.rs`) names the
/// file in errors and in the exercise's header.
pub fn generate_exercise(solution: &str, solution_path: &str) -> Result<String, String> {
    let file = solution_path
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(solution_path);
    let step = file
        .get(..2)
        .filter(|nn| nn.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            format!("{solution_path}: the file name must start with its step number, like 03_stream_body.rs")
        })?;
    let lines = split_lines(solution);
    // Keep the line endings of the file (a Windows checkout may have CRLF),
    // so that regenerating is byte-identical there too.
    let eol = lines.first().map_or("\n", |&(_, eol)| or_newline(eol));

    let mut out = String::with_capacity(solution.len());
    let docs = lines
        .iter()
        .take_while(|(text, _)| text.starts_with("//!"))
        .count();
    for (text, line_eol) in &lines[..docs] {
        out.push_str(text);
        out.push_str(line_eol);
    }
    if docs > 0 {
        out.push_str("//!");
        out.push_str(eol);
    }
    let header = [
        format!(
            "//! Exercise: fill in every `todo!()` below, then run `cargo xtask check {step}`."
        ),
        format!("//! This file is generated from `solutions/{file}` by"),
        "//! `cargo xtask exercises`, which overwrites it:".to_string(),
        format!("//! `diff exercises/{file} solutions/{file}`"),
        "//! shows exactly the work.".to_string(),
        EXERCISE_ALLOW.to_string(),
    ];
    for line in header {
        out.push_str(&line);
        out.push_str(eol);
    }

    let mut open: Option<usize> = None; // line number of the open region's marker
    let mut regions = 0;
    // Open anchors: name, line, and the region they opened in (if any).
    // Anchors and regions must nest, or the exercise keeps half an anchor
    // and the slide shows unbalanced code.
    let mut anchors: Vec<(&str, usize, Option<usize>)> = Vec::new();
    for (index, (text, line_eol)) in lines.iter().enumerate().skip(docs) {
        let number = index + 1;
        let trimmed = text.trim();
        if let Some(name) = marker_name(text, "ANCHOR_END:") {
            if let Some(at) = anchors
                .iter()
                .rposition(|(open_name, ..)| *open_name == name)
            {
                let (_, opened_at, region) = anchors.remove(at);
                if region != open {
                    return Err(format!(
                        "{solution_path}:{number}: `ANCHOR_END: {name}` {} the exercise region that \
                         `ANCHOR: {name}` (line {opened_at}) {}: anchors and exercise regions must nest",
                        if open.is_some() {
                            "is inside"
                        } else {
                            "is outside"
                        },
                        if region.is_some() {
                            "opened in"
                        } else {
                            "is outside of"
                        },
                    ));
                }
            }
        } else if let Some(name) = marker_name(text, "ANCHOR:") {
            anchors.push((name, number, open));
        }
        if let Some(hint) = trimmed.strip_prefix(EXERCISE_OPEN) {
            if let Some(opened) = open {
                return Err(format!(
                    "{solution_path}:{number}: `{EXERCISE_OPEN}` inside the region opened at line {opened}: regions do not nest"
                ));
            }
            let hint = hint.trim();
            if hint.is_empty() {
                return Err(format!(
                    "{solution_path}:{number}: `{EXERCISE_OPEN}` needs a hint: it is all the attendee sees of the missing code"
                ));
            }
            let indent = &text[..text.len() - text.trim_start().len()];
            let line_eol = or_newline(line_eol);
            out.push_str(&format!("{indent}// TODO: {hint}{line_eol}"));
            // At the end of a block `todo!()` is the block's value; with code
            // after it, it is a statement (and that code is unreachable).
            let end = if code_follows_region(&lines, index) {
                ";"
            } else {
                ""
            };
            let literal = format!("\"{}\"", escape_format_literal(hint));
            let one_line = format!("{indent}todo!({literal}){end}");
            if one_line.chars().count() <= MAX_WIDTH {
                out.push_str(&format!("{one_line}{line_eol}"));
            } else {
                // What rustfmt does with a call too long for one line.
                out.push_str(&format!("{indent}todo!({line_eol}"));
                out.push_str(&format!("{indent}    {literal}{line_eol}"));
                out.push_str(&format!("{indent}){end}{line_eol}"));
            }
            open = Some(number);
            regions += 1;
        } else if trimmed == EXERCISE_CLOSE {
            if let Some((name, opened_at, _)) = anchors
                .iter()
                .find(|(.., region)| *region == open && open.is_some())
            {
                return Err(format!(
                    "{solution_path}:{number}: this `{EXERCISE_CLOSE}` closes the region while \
                     `ANCHOR: {name}` (line {opened_at}), opened inside it, is still open: anchors \
                     and exercise regions must nest"
                ));
            }
            if open.take().is_none() {
                return Err(format!(
                    "{solution_path}:{number}: `{EXERCISE_CLOSE}` without an open `{EXERCISE_OPEN}` region"
                ));
            }
        } else if open.is_none() {
            out.push_str(text);
            out.push_str(line_eol);
        }
    }
    if let Some(opened) = open {
        return Err(format!(
            "{solution_path}:{opened}: this `{EXERCISE_OPEN}` region has no `{EXERCISE_CLOSE}`"
        ));
    }
    if regions == 0 {
        return Err(format!(
            "{solution_path}: no `{EXERCISE_OPEN}` region: the exercise would be the solution itself"
        ));
    }
    Ok(out)
}

/// The name after `marker` (`ANCHOR:` or `ANCHOR_END:`) in a line, if any.
fn marker_name<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let (_, rest) = line.split_once(marker)?;
    rest.split_whitespace().next()
}

/// Splits text into (line without its ending, the ending: "\n", "\r\n" or ""
/// for a last line without one).
fn split_lines(text: &str) -> Vec<(&str, &str)> {
    text.split_inclusive('\n')
        .map(|line| {
            let content = line.strip_suffix('\n').unwrap_or(line);
            let content = content.strip_suffix('\r').unwrap_or(content);
            (content, &line[content.len()..])
        })
        .collect()
}

fn or_newline(eol: &str) -> &str {
    if eol.is_empty() { "\n" } else { eol }
}

/// Does code follow the region opened at `open` in the same block, i.e. is
/// the first line after its `END` marker (blank lines and comments aside)
/// anything but a closing brace?
fn code_follows_region(lines: &[(&str, &str)], open: usize) -> bool {
    let after_end = lines[open..]
        .iter()
        .position(|(text, _)| text.trim() == EXERCISE_CLOSE)
        .map_or(lines.len(), |end| open + end + 1);
    lines[after_end..]
        .iter()
        .map(|(text, _)| text.trim())
        .find(|text| !text.is_empty() && !text.starts_with("//"))
        .is_some_and(|text| !text.starts_with('}'))
}

/// Escapes a hint for the inside of `todo!("...")`: it is a string literal
/// *and* a format string, so braces are doubled too (a hint that mentions
/// `{addr}` must not become a format argument).
fn escape_format_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '{' => escaped.push_str("{{"),
            '}' => escaped.push_str("}}"),
            c if c.is_control() => escaped.extend(c.escape_default()),
            c => escaped.push(c),
        }
    }
    escaped
}

// --- the capability matrix --------------------------------------------------

/// `tests/steps.toml`: the steps, and for every check the step that
/// introduces it. Build it with [`parse_table`], which validates it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    #[serde(rename = "step", default)]
    pub steps: Vec<Step>,
    #[serde(rename = "check", default)]
    pub checks: Vec<Check>,
}

/// One step of the workshop: `[[step]]` in `tests/steps.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Two digits, like `"03"`.
    pub id: String,
    /// The binary that runs the step, like `"03-stream-body"`.
    pub bin: String,
    pub teaches: String,
}

/// One behaviour check: `[[check]]` in `tests/steps.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub name: String,
    /// The step that introduces the behaviour; it passes from there on.
    pub since: String,
    pub what: String,
    /// Later steps that knowingly break the behaviour again.
    #[serde(default)]
    pub broken_in: Vec<String>,
}

impl Table {
    /// Whether `check_name` should pass on step `step_id`: from its `since`
    /// step on, except in the steps that break it. An unknown check never
    /// passes.
    pub fn expected(&self, step_id: &str, check_name: &str) -> bool {
        // Step ids are two digits (parse_table checks it), so comparing the
        // strings compares the steps.
        self.checks
            .iter()
            .find(|check| check.name == check_name)
            .is_some_and(|check| {
                step_id >= check.since.as_str() && !check.broken_in.iter().any(|b| b == step_id)
            })
    }
}

/// Reads and validates `tests/steps.toml`: step ids are two digits, unique
/// and ascending; check names are unique; `since` and `broken_in` name
/// existing steps, and a step can only break a check after it was introduced.
/// All problems are reported at once, one a line.
pub fn parse_table(toml_text: &str) -> Result<Table, String> {
    let table: Table = toml::from_str(toml_text).map_err(|err| err.to_string())?;
    let mut problems = Vec::new();
    if table.steps.is_empty() {
        problems.push("no [[step]]".to_string());
    }
    let mut previous: Option<&str> = None;
    for step in &table.steps {
        let id = step.id.as_str();
        if id.len() != 2 || !id.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(format!("step id {id:?}: use two digits, like \"03\""));
        }
        if let Some(previous) = previous {
            if id == previous {
                problems.push(format!("step {id} is listed twice"));
            } else if id < previous {
                problems.push(format!(
                    "step {id} comes after step {previous}: list steps in order"
                ));
            }
        }
        previous = Some(id);
    }
    let ids: HashSet<&str> = table.steps.iter().map(|step| step.id.as_str()).collect();
    let mut names = HashSet::new();
    for check in &table.checks {
        let name = &check.name;
        if !names.insert(name.as_str()) {
            problems.push(format!("check {name} is listed twice"));
        }
        if !ids.contains(check.since.as_str()) {
            problems.push(format!(
                "check {name}: since = {:?} is not a step",
                check.since
            ));
        }
        for broken in &check.broken_in {
            if !ids.contains(broken.as_str()) {
                problems.push(format!("check {name}: broken_in {broken:?} is not a step"));
            } else if broken <= &check.since {
                problems.push(format!(
                    "check {name}: broken_in {broken:?} must be later than since = {:?}",
                    check.since
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(table)
    } else {
        Err(problems.join("\n"))
    }
}

/// The matrix as a markdown table: one row per check (in file order), one
/// column per step, `✓` where the check should pass, `·` where it should fail.
pub fn render_matrix(table: &Table) -> String {
    let mut out = String::from("| behaviour |");
    for step in &table.steps {
        out.push_str(&format!(" {} |", step.id));
    }
    out.push_str("\n|---|");
    out.push_str(&":-:|".repeat(table.steps.len()));
    out.push('\n');
    for check in &table.checks {
        // A `|` would end the cell.
        let what = check.what.replace('|', "\\|");
        out.push_str(&format!("| `{}` — {what} |", check.name));
        for step in &table.steps {
            let cell = if table.expected(&step.id, &check.name) {
                "✓"
            } else {
                "·"
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out.push_str("\n✓ passes, · fails (the matrix test checks both)\n");
    out
}

/// Where the matrix goes in `README.md`.
pub const MATRIX_START: &str = "<!-- matrix:start -->";
pub const MATRIX_END: &str = "<!-- matrix:end -->";

/// Replaces what lies between the `start` and `end` markers of `readme` with
/// `content` (blank lines around it, so markdown sees a table, not the
/// comment's continuation). The markers stay; each must appear once.
pub fn replace_between_markers(
    readme: &str,
    start: &str,
    end: &str,
    content: &str,
) -> Result<String, String> {
    let find_once = |marker: &str| match readme.match_indices(marker).count() {
        0 => Err(format!(
            "no `{marker}` line: add it where the generated text goes"
        )),
        1 => Ok(readme.find(marker).unwrap_or_default()),
        _ => Err(format!("`{marker}` appears more than once")),
    };
    let start_at = find_once(start)?;
    let end_at = find_once(end)?;
    let content_at = start_at + start.len();
    if end_at < content_at {
        return Err(format!("`{end}` comes before `{start}`"));
    }
    Ok(format!(
        "{}\n\n{}\n\n{}",
        &readme[..content_at],
        content.trim_matches('\n'),
        &readme[end_at..]
    ))
}

// --- running cargo ------------------------------------------------------------

/// `cargo run` and `cargo test` give the program they run variables that
/// describe *that* package (`CARGO_MANIFEST_DIR=…/xtask`,
/// `CARGO_PKG_NAME=xtask`…). A cargo started with them records them in the
/// fingerprints of what reads them, and the next plain `cargo build`
/// rebuilds it: remove them, so that switching costs nothing. (std only,
/// like the rest of this file.)
pub fn forget_cargo_run_env(command: &mut std::process::Command) {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_by_cargo_run = matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_RUSTC_CURRENT_DIR"
        ) || name.starts_with("CARGO_PKG_");
        if set_by_cargo_run {
            command.env_remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOLUTION: &str = "\
//! Step 07 — a step.
//!
//! What it teaches.

use std::fmt;

// ANCHOR: run
pub fn run(x: u32) -> u32 {
    let y = x + 1;
    // EXERCISE: double \"y\" with {braces} and a \\ backslash
    let z = y * 2;
    z
    // END EXERCISE
}
// ANCHOR_END: run
";

    #[test]
    fn anchors_and_regions_must_nest() {
        let straddles = [
            // Opened outside, closed inside (the old accept anchor of step 01).
            "// ANCHOR: a\nfn f() {\n    // EXERCISE: h\n    x\n    // ANCHOR_END: a\n    // END EXERCISE\n}\n",
            // Opened inside, closed outside.
            "fn f() {\n    // EXERCISE: h\n    // ANCHOR: a\n    x\n    // END EXERCISE\n    // ANCHOR_END: a\n}\n",
        ];
        for solution in straddles {
            let err = generate_exercise(solution, "s/01_x.rs").unwrap_err();
            assert!(err.contains("must nest"), "{solution:?} gave {err}");
        }
        let nested = "// ANCHOR: a\nfn f() {\n    // EXERCISE: h\n    // ANCHOR: b\n    x\n    // ANCHOR_END: b\n    // END EXERCISE\n}\n// ANCHOR_END: a\n";
        let exercise = generate_exercise(nested, "s/01_x.rs").unwrap();
        assert!(!exercise.contains("ANCHOR: b") && exercise.contains("ANCHOR_END: a"));
    }

    #[test]
    fn a_region_followed_by_code_becomes_a_statement() {
        let solution = "fn f() {\n    // EXERCISE: set it\n    x.set();\n    // END EXERCISE\n    // why\n    x.go()\n}\n";
        let exercise = generate_exercise(solution, "solutions/01_x.rs").unwrap();
        assert!(exercise.contains("    todo!(\"set it\");\n    // why\n    x.go()\n"));
    }

    #[test]
    fn a_long_hint_is_laid_out_as_rustfmt_would() {
        let hint = "h".repeat(120);
        let solution =
            format!("fn f() {{\n    // EXERCISE: {hint}\n    x\n    // END EXERCISE\n}}\n");
        let exercise = generate_exercise(&solution, "solutions/01_x.rs").unwrap();
        assert!(exercise.contains(&format!("    todo!(\n        \"{hint}\"\n    )\n")));
    }

    #[test]
    fn exercise_replaces_each_region_with_a_todo() {
        let exercise = generate_exercise(SOLUTION, "solutions/07_step.rs").unwrap();
        let expected = "\
//! Step 07 — a step.
//!
//! What it teaches.
//!
//! Exercise: fill in every `todo!()` below, then run `cargo xtask check 07`.
//! This file is generated from `solutions/07_step.rs` by
//! `cargo xtask exercises`, which overwrites it:
//! `diff exercises/07_step.rs solutions/07_step.rs`
//! shows exactly the work.
#![allow(unused, unreachable_code)]

use std::fmt;

// ANCHOR: run
pub fn run(x: u32) -> u32 {
    let y = x + 1;
    // TODO: double \"y\" with {braces} and a \\ backslash
    todo!(\"double \\\"y\\\" with {{braces}} and a \\\\ backslash\")
}
// ANCHOR_END: run
";
        assert_eq!(exercise, expected);
    }

    #[test]
    fn exercise_handles_several_regions_crlf_and_no_docs() {
        let solution = "fn a() {\r\n  // EXERCISE: one\r\n  1\r\n  // END EXERCISE\r\n}\r\nfn b() {\r\n\t// EXERCISE: two\r\n\t2\r\n\t// END EXERCISE\r\n}";
        let exercise = generate_exercise(solution, "12_x.rs").unwrap();
        assert!(
            exercise.starts_with("//! Exercise: fill in"),
            "no blank //! line without docs"
        );
        assert!(exercise.contains("fn a() {\r\n  // TODO: one\r\n  todo!(\"one\")\r\n}\r\n"));
        assert!(exercise.ends_with("fn b() {\r\n\t// TODO: two\r\n\ttodo!(\"two\")\r\n}"));
        assert!(
            !exercise.replace("\r\n", "").contains('\n'),
            "CRLF kept everywhere"
        );
    }

    #[test]
    fn exercise_errors_name_the_line() {
        let cases = [
            (
                "// EXERCISE: a\n// EXERCISE: b\n// END EXERCISE\n",
                "s/01_x.rs:2:",
                "do not nest",
            ),
            (
                "x\n  // EXERCISE: a\nx\n",
                "s/01_x.rs:2:",
                "no `// END EXERCISE`",
            ),
            ("x\n// END EXERCISE\n", "s/01_x.rs:2:", "without an open"),
            (
                "//! docs\nfn main() {}\n",
                "s/01_x.rs:",
                "no `// EXERCISE:` region",
            ),
            (
                "// EXERCISE:   \n// END EXERCISE\n",
                "s/01_x.rs:1:",
                "needs a hint",
            ),
        ];
        for (solution, place, message) in cases {
            let err = generate_exercise(solution, "s/01_x.rs").unwrap_err();
            assert!(
                err.starts_with(place) && err.contains(message),
                "{solution:?} gave {err}"
            );
        }
        let err = generate_exercise(SOLUTION, "solutions/step.rs").unwrap_err();
        assert!(err.contains("step number"), "{err}");
    }

    const STEPS: &str = r#"
[[step]]
id = "01"
bin = "01-a"
teaches = "a"

[[step]]
id = "02"
bin = "02-b"
teaches = "b"

[[step]]
id = "03"
bin = "03-c"
teaches = "c"

[[check]]
name = "serves"
since = "01"
what = "serves | pipes"

[[check]]
name = "upgrade"
since = "01"
what = "upgrades"
broken_in = ["02"]

[[check]]
name = "late"
since = "03"
what = "comes late"
"#;

    #[test]
    fn expected_follows_since_and_broken_in() {
        let table = parse_table(STEPS).unwrap();
        let cells = |check: &str| ["01", "02", "03"].map(|step| table.expected(step, check));
        assert_eq!(cells("serves"), [true, true, true]);
        assert_eq!(cells("upgrade"), [true, false, true]);
        assert_eq!(cells("late"), [false, false, true]);
        assert_eq!(cells("unknown"), [false, false, false]);
    }

    #[test]
    fn table_problems_are_all_reported() {
        let bad = r#"
[[step]]
id = "02"
bin = "b"
teaches = "b"
[[step]]
id = "01"
bin = "a"
teaches = "a"
[[step]]
id = "1"
bin = "a"
teaches = "a"
[[check]]
name = "x"
since = "09"
what = "x"
[[check]]
name = "x"
since = "02"
what = "x"
broken_in = ["01", "02", "07"]
"#;
        let err = parse_table(bad).unwrap_err();
        for message in [
            "step 01 comes after step 02",
            "step id \"1\"",
            "check x is listed twice",
            "since = \"09\" is not a step",
            "broken_in \"01\" must be later",
            "broken_in \"02\" must be later",
            "broken_in \"07\" is not a step",
        ] {
            assert!(err.contains(message), "{message:?} missing from:\n{err}");
        }
        let typo = "[[step]]\nid = \"01\"\nbin = \"a\"\nteaches = \"a\"\nbroken = 1\n";
        assert!(
            parse_table(typo)
                .unwrap_err()
                .contains("unknown field `broken`")
        );
    }

    #[test]
    fn matrix_renders_and_replaces_between_markers() {
        let matrix = render_matrix(&parse_table(STEPS).unwrap());
        assert_eq!(
            matrix,
            "\
| behaviour | 01 | 02 | 03 |
|---|:-:|:-:|:-:|
| `serves` — serves \\| pipes | ✓ | ✓ | ✓ |
| `upgrade` — upgrades | ✓ | · | ✓ |
| `late` — comes late | · | · | ✓ |

✓ passes, · fails (the matrix test checks both)
"
        );
        let readme = format!("# T\n\n{MATRIX_START}\nold\n{MATRIX_END}\n\nmore\n");
        let fresh = replace_between_markers(&readme, MATRIX_START, MATRIX_END, &matrix).unwrap();
        assert_eq!(
            fresh,
            format!("# T\n\n{MATRIX_START}\n\n{matrix}\n{MATRIX_END}\n\nmore\n")
        );
        let again = replace_between_markers(&fresh, MATRIX_START, MATRIX_END, &matrix).unwrap();
        assert_eq!(again, fresh, "replacing is idempotent");
        for broken in [
            format!("{MATRIX_START}\n"),
            format!("{MATRIX_END}\n{MATRIX_START}\n"),
            format!("{MATRIX_START}\n{MATRIX_END}\n{MATRIX_END}\n"),
        ] {
            assert!(replace_between_markers(&broken, MATRIX_START, MATRIX_END, "x").is_err());
        }
    }
}
