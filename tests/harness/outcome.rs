//! What a check returns: pass, fail with a teaching message, or skip.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// Why a check did not pass.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The behaviour is missing: the message says what was expected and the
    /// likely mistake.
    Fail(String),
    /// The check cannot run in this mode (e.g. it must start the proxy
    /// itself, but `PROXY_ADDR` points at a proxy someone else started).
    Skip(String),
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
