//! Running checks: each on its own task, under a timeout of its own.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::outcome::{Failure, Outcome, fail};
use super::proxy::Ctx;

/// The longest any one check may take, 1 GiB transfers included.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(90);

/// A named behaviour, checked from outside.
pub struct Check {
    pub name: &'static str,
    pub run: fn(Ctx) -> Pin<Box<dyn Future<Output = Outcome> + Send>>,
}

/// Runs one check; an overrun is a failure, never a hang, and so is a check
/// during which the proxy panicked, whatever the check saw.
pub async fn run_check(check: &Check, ctx: Ctx) -> Outcome {
    let mut task = tokio::spawn((check.run)(ctx.clone()));
    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, &mut task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => Err(fail(format!("the check itself panicked: {err}"))),
        Err(_) => {
            task.abort();
            Err(fail(format!(
                "the check took more than {} s in all",
                CHECK_TIMEOUT.as_secs()
            )))
        }
    };
    // The proxy's own panic says more than any symptom seen from outside,
    // and a check cannot pass while the proxy panics: a `todo!()` hit on
    // one connection must not hide behind a client that accepts a failure.
    let panics = ctx.panics(2).await;
    if panics.is_empty() {
        return outcome;
    }
    let symptom = match outcome {
        Ok(()) => None,
        Err(Failure::Panicked { symptom, .. }) => symptom,
        Err(other) => Some(other.message()),
    };
    Err(Failure::Panicked { panics, symptom })
}
