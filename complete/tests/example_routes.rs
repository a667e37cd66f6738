//! The example routes file the step serves by default is valid, as the
//! step itself checks it (`--check`), and names the demo origin by its
//! usual address (the step puts its own origin's address in its place).
//!
//! It also makes `cargo test` build `11-routing`, which the capability
//! matrix of the root package starts.

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
