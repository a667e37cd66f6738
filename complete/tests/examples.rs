//! The example files are valid, as the steps themselves check them
//! (`--check`): the routes step 11 serves by default (naming the demo
//! origin by its usual address, which the step replaces with its own
//! origin's), the apps file that documents steps 12 and 13's format, and
//! the config file that documents step 17's.
//!
//! It also makes `cargo test` build the binaries of this package (as any
//! integration test does), which the capability matrix of the root package
//! starts.

use std::process::Command;

/// Runs `binary FLAG FILE --check` on a file of the repository.
fn checks_out(binary: &str, flag: &str, file: &str) {
    let example = workshop::repo::root().join(file);
    let output = Command::new(binary)
        .arg(flag)
        .arg(&example)
        .arg("--check")
        .output()
        .unwrap_or_else(|err| panic!("running {binary} --check: {err}"));
    assert!(
        output.status.success(),
        "{file} is not valid:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_example_routes_are_valid() {
    checks_out(
        env!("CARGO_BIN_EXE_11-routing"),
        "--routes",
        "routes/example.toml",
    );
    let example = workshop::repo::root().join("routes/example.toml");
    let text = std::fs::read_to_string(&example).expect("routes/example.toml");
    for line in text.lines().filter(|line| line.starts_with("forward")) {
        assert!(
            line.contains("http://127.0.0.1:9000"),
            "every forward of the example goes to the demo origin's usual address: {line}"
        );
    }
}

/// `apps/example.toml`, which documents the apps' format, is valid too.
#[test]
fn the_example_apps_are_valid() {
    checks_out(
        env!("CARGO_BIN_EXE_13-sleep"),
        "--apps",
        "apps/example.toml",
    );
}

/// `proxy.example.toml`, which documents step 17's config file, is valid.
#[test]
fn the_example_config_is_valid() {
    checks_out(
        env!("CARGO_BIN_EXE_17-complete"),
        "--config",
        "proxy.example.toml",
    );
}
