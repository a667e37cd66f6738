//! Every step prints commands to try; each must paste into a shell and work
//! with the flags in use (`https://` and `curl -k` under `--tls`, `wss://`
//! and `--insecure` for the demo clients). The check runs them, as printed.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::ensure;
use crate::harness::{Ctx, OrFail, Outcome, fail, within};

/// The start-up block: `try, in another terminal:`, then `  # note` and
/// `  command` lines, then an empty line.
const HEADER: &str = "try, in another terminal:";

pub async fn try_lines_work(ctx: Ctx) -> Outcome {
    let help = help_text(&ctx).await?;
    let upstream = format!("http://{}", ctx.origin);
    // Every line a step can print: plain, h2c upstream (step 09's gRPC
    // line), and TLS with it (the same lines over https and wss).
    let mut variants: Vec<Vec<&str>> = vec![vec![]];
    let (tls, h2) = (help.contains("--tls"), help.contains("--upstream-http2"));
    if h2 {
        variants.push(vec!["--upstream-http2"]);
    }
    match (tls, h2) {
        (true, true) => variants.push(vec!["--tls", "--upstream-http2"]),
        (true, false) => variants.push(vec!["--tls"]),
        _ => {}
    }
    // Step 11 and later print their own lines with their example routes.
    let routes = help.contains("--routes");
    for variant in variants {
        let mut args = match routes && variant.is_empty() {
            true => vec![],
            false => vec!["--upstream", upstream.as_str()],
        };
        args.extend(&variant);
        // A short deadline, so that the 504 line of step 08 ends soon.
        if help.contains("--upstream-timeout") {
            args.extend(["--upstream-timeout", "1"]);
        }
        // And so that step 14's silent connection is closed soon.
        if help.contains("--header-read-timeout") {
            args.extend(["--header-read-timeout", "2s"]);
        }
        let proxy = ctx.spawn(&args).await?;
        let lines = proxy
            .stdout_until(
                |lines| {
                    lines
                        .iter()
                        .skip_while(|line| *line != HEADER)
                        .skip(1)
                        .any(|line| line.is_empty())
                },
                10,
            )
            .await
            .map_err(|failure| {
                fail(format!(
                    "expected `{HEADER}`, commands indented by two spaces, then an empty line; \
                     got {:?} ({failure})",
                    proxy.stdout()
                ))
            })?;
        let block: Vec<&str> = lines
            .iter()
            .skip_while(|line| *line != HEADER)
            .skip(1)
            .take_while(|line| !line.is_empty())
            .map(String::as_str)
            .collect();
        let flags = if variant.is_empty() {
            "no flag".to_string()
        } else {
            variant.join(" ")
        };
        ensure!(
            block.iter().any(|line| !line.trim_start().starts_with('#')),
            "with {flags}: no command under `{HEADER}`"
        );
        let mut note = "";
        for line in block {
            let Some(line) = line.strip_prefix("  ") else {
                return Err(fail(format!(
                    "with {flags}: {line:?} is not indented by two spaces"
                )));
            };
            if line.starts_with('#') {
                note = line;
                continue;
            }
            ensure!(
                !line.contains(" #"),
                "with {flags}: `{line}` ends with a comment: zsh (macOS's shell) passes it to \
                 the command; put the note on a `# ` line before it"
            );
            let expect = Expect::from_note(note);
            run(line, expect)
                .await
                .map_err(|why| fail(format!("with {flags}, `{line}` {why}")))?;
            note = "";
        }
    }
    Ok(())
}

async fn help_text(ctx: &Ctx) -> Result<String, crate::harness::Failure> {
    let binary = ctx.binary()?;
    let output = within(20, "--help", async {
        Command::new(binary)
            .arg("--help")
            .output()
            .await
            .or_fail("running --help")
    })
    .await?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// What a command should do, as its note (the `# ` line before it) says.
enum Expect {
    /// End within 30 s, exit 0, say something; curl fails on any 4xx or
    /// 5xx (a proxy that answers 502 to everything does not pass).
    Success,
    /// The note names a status (`# a 504 after …`): show it, then end.
    Status(String),
    /// The note says Ctrl-C: show a `101`, then keep the connection.
    Holds,
}

impl Expect {
    fn from_note(note: &str) -> Expect {
        if note.contains("Ctrl-C") {
            return Expect::Holds;
        }
        let status = note
            .split(|c: char| !c.is_ascii_digit())
            .find(|word| word.len() == 3 && matches!(word.as_bytes()[0], b'1'..=b'5'));
        match status {
            Some(status) => Expect::Status(status.to_string()),
            None => Expect::Success,
        }
    }
}

/// Runs one printed command through `sh`, the demo clients' `cargo run`
/// replaced by the binaries cargo built for this test, as [`Expect`] says.
async fn run(line: &str, expect: Expect) -> Result<(), String> {
    let holds = matches!(expect, Expect::Holds);
    let command = line
        .replace(
            "cargo run --bin ws-client --",
            env!("CARGO_BIN_EXE_ws-client"),
        )
        .replace(
            "cargo run --bin h2-client --",
            env!("CARGO_BIN_EXE_h2-client"),
        );
    if command.contains("cargo run") {
        return Err("runs a binary this check does not know".into());
    }
    // A command that holds prints its 101 to a terminal at once, but keeps
    // it in a buffer when its output is a pipe (curl does): give it a
    // terminal, as a user's paste would, with `script` (util-linux's on
    // Linux, BSD's on macOS: their arguments differ).
    let mut child = if !holds {
        let mut sh = Command::new("sh");
        sh.args(["-c", &command]);
        sh
    } else if cfg!(target_os = "macos") {
        let mut script = Command::new("script");
        script.args(["-q", "/dev/null", "sh", "-c", &command]);
        script
    } else {
        let mut script = Command::new("script");
        script.args(["-qfc", &command, "/dev/null"]);
        script
    };
    // curl reads $CURL_HOME/.curlrc: `fail` makes it exit 22 on a 4xx or
    // 5xx, unless a status is what the note announces.
    let curl_home = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "curlrc-{}",
        if matches!(expect, Expect::Success) {
            "fail"
        } else {
            "plain"
        }
    ));
    let curlrc = if matches!(expect, Expect::Success) {
        "fail\n"
    } else {
        ""
    };
    std::fs::create_dir_all(&curl_home)
        .and_then(|()| std::fs::write(curl_home.join(".curlrc"), curlrc))
        .map_err(|err| format!("could not write a .curlrc: {err}"))?;
    let mut child = child
        .env("CURL_HOME", &curl_home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, ended with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("could not start: {err}"))?;
    let group = child.id();
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let mut out = Vec::new();
    if holds {
        let shown = tokio::time::timeout(Duration::from_secs(10), async {
            let mut chunk = [0u8; 4096];
            while !String::from_utf8_lossy(&out).contains(" 101 ") {
                match stdout.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => out.extend_from_slice(&chunk[..n]),
                }
            }
            true
        })
        .await
        .unwrap_or(false);
        let still_running = matches!(child.try_wait(), Ok(None));
        end_group(&mut child, group).await;
        if shown && still_running {
            return Ok(());
        }
        return Err(format!(
            "(which holds the connection until Ctrl-C) should show a `101` and keep running; \
             it printed {:?}{}",
            String::from_utf8_lossy(&out),
            if still_running { "" } else { " and ended" }
        ));
    }
    let mut err = Vec::new();
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        let _ = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        child.wait().await
    })
    .await
    .ok()
    .and_then(Result::ok);
    end_group(&mut child, group).await;
    let (out, err) = (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    );
    let said_something = !(out.trim().is_empty() && err.trim().is_empty());
    match (status, expect) {
        (Some(status), Expect::Status(code)) if status.success() && out.contains(&code) => Ok(()),
        (Some(status), Expect::Status(code)) => Err(format!(
            "should show a {code} (its note says so) and end; it ended with {status}, stdout: {:?}",
            out.chars().take(300).collect::<String>()
        )),
        // Something said, on either stream (ws-client talks on stderr).
        (Some(status), _) if status.success() && said_something => Ok(()),
        (Some(status), _) => Err(format!(
            "ended with {status}; stdout: {:?}, stderr: {:?}",
            out.chars().take(300).collect::<String>(),
            err.chars().take(300).collect::<String>()
        )),
        (None, _) => Err("did not end within 30 s".into()),
    }
}

/// Ends `child` and its process group `group` (whatever it started).
async fn end_group(child: &mut tokio::process::Child, group: Option<u32>) {
    // `kill -s KILL -- -PGID`: with `kill -KILL -PGID`, procps's kill may
    // read the group as an option (and `-1` means every process).
    if let Some(pid) = group.filter(|&pid| pid > 1) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status()
            .await;
    }
    let _ = child.kill().await;
}
