//! The example files are valid, as the steps themselves check them
//! (`--check`): the routes step 11 serves by default (naming the demo
//! origin by its usual address, which the step replaces with its own
//! origin's), and the apps file that documents step 12's format.
//!
//! It also makes `cargo test` build `11-routing` and `12-on-demand`, which
//! the capability matrix of the root package starts.

use std::path::Path;
use std::process::Command;

#[test]
fn the_example_routes_are_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../routes/example.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_11-routing"))
        .arg("--routes")
        .arg(&example)
        .arg("--check")
        .output()
        .expect("running 11-routing --check");
    assert!(
        output.status.success(),
        "routes/example.toml is not valid:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&example).expect("routes/example.toml");
    for line in text.lines().filter(|line| line.starts_with("forward")) {
        assert!(
            line.contains("http://127.0.0.1:9000"),
            "every forward of the example goes to the demo origin's usual address: {line}"
        );
    }
}

/// `apps/example.toml`, which documents step 12's format, is valid too
/// (and this makes `cargo test` build `12-on-demand`).
#[test]
fn the_example_apps_are_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps/example.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_12-on-demand"))
        .arg("--apps")
        .arg(&example)
        .arg("--check")
        .output()
        .expect("running 12-on-demand --check");
    assert!(
        output.status.success(),
        "apps/example.toml is not valid:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
