//! The demo apps of steps 12 to 17: the demo origin, run as child
//! processes by the step's own executable (`--demo-app PORT`), so that
//! `cargo run --bin 12-wake` shows real processes start and stop with
//! nothing else installed.

use std::time::Duration;

use workshop::cli;

use crate::apps_file::{AppSpec, AppsFile, Defaults, Run};
use crate::watch::shutdown_signal;

/// The demo apps: the demo origin, run by this very executable.
pub fn demo_apps() -> Result<AppsFile, String> {
    let me = std::env::current_exe()
        .map_err(|err| format!("cannot find this program to run the demo apps: {err}"))?;
    let command = vec![
        me.display().to_string(),
        "--demo-app".to_string(),
        "{port}".to_string(),
    ];
    let app = |name: &str, linked: &[&str]| AppSpec {
        name: name.to_string(),
        run: Run::Child {
            command: command.clone(),
        },
        ready: Some("/".to_string()),
        idle: Duration::from_secs(20),
        start_timeout: Duration::from_secs(10),
        linked: linked.iter().map(|name| name.to_string()).collect(),
    };
    Ok(AppsFile {
        domain: "localhost".to_string(),
        apps: vec![app("hello", &[]), app("docs", &["hello"])],
        discover: None,
        isolate_apps: true,
        defaults: Defaults::default(),
        source: "the built-in demo".to_string(),
    })
}

/// No apps at all: every host goes to the routes.
pub fn no_apps() -> AppsFile {
    AppsFile {
        domain: "localhost".to_string(),
        apps: Vec::new(),
        discover: None,
        isolate_apps: true,
        defaults: Defaults::default(),
        source: "no file".to_string(),
    }
}

/// The demo origin on 127.0.0.1:`port`, until SIGTERM.
pub async fn run_demo_app(port: u16) {
    cli::init_logs();
    match workshop::origin::start(&format!("127.0.0.1:{port}")).await {
        Ok(origin) => println!("demo app listening on http://{}", origin.addr()),
        Err(err) => {
            eprintln!("error: cannot listen on 127.0.0.1:{port}: {err}");
            std::process::exit(1);
        }
    }
    shutdown_signal().await;
}
