//! A folder of a check's own, for the files it gives the proxy (routes,
//! apps, a config): under cargo's target/tmp, removed when the check ends.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::outcome::{Failure, OrFail, Outcome};

pub struct Folder {
    path: PathBuf,
}

impl Folder {
    /// A new, empty folder named after `what` (and this process).
    pub fn new(what: &str) -> Result<Folder, Failure> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).or_fail(&format!("making a folder for the {what}"))?;
        Ok(Folder { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the file `name` in this folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `name` the way editors save: a new file renamed over it.
    pub fn replace(&self, name: &str, text: &str) -> Outcome {
        let next = self.file(&format!("{name}.new"));
        std::fs::write(&next, text).or_fail(&format!("writing {name}"))?;
        std::fs::rename(&next, self.file(name)).or_fail(&format!("renaming {name} into place"))
    }

    /// Rewrites `name` in place.
    pub fn rewrite(&self, name: &str, text: &str) -> Outcome {
        std::fs::write(self.file(name), text).or_fail(&format!("rewriting {name}"))
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One file of the proxy's (its routes, its apps, its config) in a folder
/// of its own, removed with it.
pub struct FileIn {
    folder: Folder,
    name: &'static str,
}

impl FileIn {
    /// `name` in a new folder named after `what`, written with `text`.
    pub fn new(what: &str, name: &'static str, text: &str) -> Result<FileIn, Failure> {
        let file = FileIn {
            folder: Folder::new(what)?,
            name,
        };
        file.folder.rewrite(name, text)?;
        Ok(file)
    }

    /// Replaces it the way editors save: a new file renamed over it.
    pub fn replace(&self, text: &str) -> Outcome {
        self.folder.replace(self.name, text)
    }

    /// Rewrites it in place.
    pub fn rewrite(&self, text: &str) -> Outcome {
        self.folder.rewrite(self.name, text)
    }

    pub fn path(&self) -> PathBuf {
        self.folder.file(self.name)
    }

    /// Its path, as a command-line argument.
    pub fn arg(&self) -> String {
        self.path().display().to_string()
    }

    /// The folder it is in (for other files beside it).
    pub fn folder(&self) -> &Folder {
        &self.folder
    }

    /// Writes another file beside it (a certificate), and says where.
    pub fn beside(&self, name: &str, text: &str) -> Result<PathBuf, Failure> {
        self.folder.rewrite(name, text)?;
        Ok(self.folder.file(name))
    }
}
