//! What a check returns: pass, fail with a teaching message, or skip.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

pub use super::proxy::Panic;

/// Why a check did not pass.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The behaviour is missing: the message says what was expected and the
    /// likely mistake.
    Fail(String),
    /// The check cannot run in this mode (e.g. it must start the proxy
    /// itself, but `PROXY_ADDR` points at a proxy someone else started).
    Skip(String),
    /// The proxy panicked during the check: a failure whatever the check
    /// saw (`symptom`: what it failed with, `None` if it saw nothing wrong).
    Panicked {
        panics: Vec<Panic>,
        symptom: Option<String>,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl Failure {
    /// A failure to report (not a skip).
    pub fn is_failure(&self) -> bool {
        !matches!(self, Failure::Skip(_))
    }

    /// What went wrong, in one message.
    pub fn message(&self) -> String {
        match self {
            Failure::Fail(why) | Failure::Skip(why) => why.clone(),
            Failure::Panicked { panics, symptom } => {
                let panics: Vec<String> = panics.iter().map(Panic::to_string).collect();
                let mut message = format!("the proxy panicked: {}", panics.join("; "));
                if let Some(symptom) = symptom {
                    message.push_str(&format!("\nwhich led to: {symptom}"));
                }
                message
            }
        }
    }
}

pub type Outcome = Result<(), Failure>;

pub fn fail(message: impl Into<String>) -> Failure {
    Failure::Fail(message.into())
}

/// Fails the check with a formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        let holds: bool = $condition;
        if !holds {
            return Err($crate::harness::fail(format!($($message)+)));
        }
    };
}

/// `?` for errors and options, with a word on what was being done.
pub trait OrFail<T> {
    fn or_fail(self, doing: &str) -> Result<T, Failure>;
}

impl<T, E: Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, doing: &str) -> Result<T, Failure> {
        self.map_err(|err| fail(format!("{doing}: {err}")))
    }
}

impl<T> OrFail<T> for Option<T> {
    fn or_fail(self, doing: &str) -> Result<T, Failure> {
        self.ok_or_else(|| fail(doing.to_string()))
    }
}

/// Waits for `future`, at most `seconds`: every wait in a check is bounded.
pub async fn within<T>(
    seconds: u64,
    waiting_for: &str,
    future: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(Duration::from_secs(seconds), future).await {
        Ok(result) => result,
        Err(_) => Err(fail(format!(
            "timed out after {seconds} s waiting for {waiting_for}"
        ))),
    }
}
