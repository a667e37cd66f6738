//! Waiting for what a proxy logs (its stderr): a state change, a reload.

use super::outcome::{Outcome, fail};
use super::proxy::Proxy;

/// Waits until the proxy's log has a line containing `needle`.
pub async fn logged(proxy: &Proxy, needle: &str, seconds: u64) -> Outcome {
    proxy
        .stderr_until(
            &format!("a log line with `{needle}`"),
            |log| log.contains(needle),
            seconds,
        )
        .await
        .map(drop)
        .map_err(|failure| {
            fail(format!(
                "{}\n(the step logs each state change, `NAME: FROM → TO (…)`)\nproxy log:\n{}",
                failure.message(),
                tail(proxy)
            ))
        })
}

/// Waits until the proxy's log has `needle` more than `before` times.
pub async fn logged_again(proxy: &Proxy, needle: &str, before: usize, seconds: u64) -> Outcome {
    proxy
        .stderr_until(
            &format!("a new log line with `{needle}`"),
            |log| log.matches(needle).count() > before,
            seconds,
        )
        .await
        .map(drop)
}

/// The last lines of the proxy's log, for a failure message.
pub fn tail(proxy: &Proxy) -> String {
    let log = proxy.stderr();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
