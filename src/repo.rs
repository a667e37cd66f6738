//! Where the workshop's repository is, found when a program runs, not when
//! it was built.
//!
//! The slides, the demo origin's `/slides/`, step 11's example routes and
//! `cargo xtask` read files of the repository. The path cargo compiled them
//! in (`CARGO_MANIFEST_DIR`) is not enough: cargo's fingerprints do not
//! record it, so a checkout moved or copied after a build, or two checkouts
//! sharing one `CARGO_TARGET_DIR`, would run binaries that read the other
//! folder. So: the current directory and its parents first (where `cargo
//! run` and `cargo test` start programs), then the path it was built in.
//!
//! Std only: `xtask` includes this very file.

use std::path::{Path, PathBuf};

/// The repository: the first of the current directory and its parents that
/// holds the workshop (`tests/steps.toml` and `slides/`), else the one this
/// program was built from, else the current directory.
pub fn root() -> PathBuf {
    let here = std::env::current_dir().ok();
    let built = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = here
        .iter()
        .flat_map(|here| here.ancestors())
        .chain(built.ancestors())
        .find(|dir| is_workshop(dir))
        .map(Path::to_path_buf);
    found.or(here).unwrap_or_else(|| built.to_path_buf())
}

/// Whether `dir` is the workshop's repository.
pub fn is_workshop(dir: &Path) -> bool {
    dir.join("tests/steps.toml").is_file() && dir.join("slides").is_dir()
}
