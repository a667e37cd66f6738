//! The flags steps 12 and 13 add to step 11's: the routes and apps files,
//! the status API's token, `--check`, and the hidden flag the demo apps
//! are started with; and how steps 11 and 12 start listening. Kit: the
//! steps' lesson is what they do with them.

use std::path::PathBuf;

use crate::{apps_file, routes_file};

#[derive(clap::Args, Debug, Clone)]
pub struct Files {
    /// The routes file (TOML), as step 11. Without it: routes/example.toml
    /// in front of the demo origin, or everything to --upstream.
    #[arg(long, value_name = "FILE", conflicts_with = "upstream")]
    pub routes: Option<PathBuf>,

    /// The apps file (TOML), as step 12. Without it, and without --routes
    /// or --upstream: two demo apps, `hello` and `docs`.
    #[arg(long, value_name = "FILE")]
    pub apps: Option<PathBuf>,

    /// Opens the status API (`/_proxy/apps`) to `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PROXY_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Only check the files: exit 0 if they are valid, 2 with the error.
    #[arg(long)]
    pub check: bool,

    /// Serve the demo origin on this port (what the demo apps run).
    #[arg(long, value_name = "PORT", hide = true)]
    pub demo_app: Option<u16>,
}

impl Files {
    /// The token, unless empty (`PROXY_ADMIN_TOKEN=` opens nothing).
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token
            .as_deref()
            .filter(|token| !token.is_empty())
    }

    /// `--check`: every file given, checked; `Err` is what to say (exit 2).
    pub fn check(&self) -> Result<(), String> {
        if self.apps.is_none() && self.routes.is_none() {
            return Err("--check needs --apps FILE or --routes FILE (or both)".into());
        }
        if let Some(path) = &self.apps {
            let file = apps_file::load(path)?;
            println!("{}: {file}: valid", path.display());
        }
        if let Some(path) = &self.routes {
            let routes = routes_file::load(path, None)?;
            println!("{}: {routes}: valid", path.display());
        }
        Ok(())
    }
}
