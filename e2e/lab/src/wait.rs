//! Waiting on conditions: the one way tests and the lab wait for something to become true.
//! Never a fixed sleep: poll a condition, give up after a timeout with a message that says what
//! was awaited and what was last seen.

use std::time::{Duration, Instant};

/// How often conditions are polled: fast enough not to add latency worth measuring, slow enough
/// not to load the machine while a lab runs.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Polls `probe` until it returns `Ok`; after `timeout`, an error naming `what` and the last
/// answer.
///
/// # Errors
/// When `probe` has not succeeded within `timeout`.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => {
                anyhow::bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(POLL_EVERY),
        }
    }
}

/// [`poll_until`] for tests: panics with the message instead of returning it.
///
/// # Panics
/// When `probe` has not succeeded within `timeout`.
#[track_caller]
pub fn eventually<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Result<T, String>) -> T {
    match poll_until(what, timeout, probe) {
        Ok(value) => value,
        Err(e) => panic!("{e}"),
    }
}

/// [`eventually`] inside a tokio runtime: sleeps without blocking the runtime's thread.
///
/// # Panics
/// When `probe` has not succeeded within `timeout`.
pub async fn eventually_async<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last seen: {last}"
            ),
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_that_becomes_true_is_returned() {
        let mut calls = 0;
        let value = eventually("the third call", Duration::from_secs(5), || {
            calls += 1;
            if calls == 3 {
                Ok(calls)
            } else {
                Err(format!("call {calls}"))
            }
        });
        assert_eq!(value, 3);
    }

    #[test]
    fn a_condition_that_never_holds_names_what_and_the_last_answer() {
        let err = poll_until::<()>("the impossible", Duration::from_millis(120), || {
            Err("still no".into())
        })
        .expect_err("never true");
        let text = err.to_string();
        assert!(
            text.contains("the impossible") && text.contains("still no"),
            "{text}"
        );
    }
}
