//! Explicit, bounded, logged retry policies.
//!
//! A [`Policy`] says how many attempts, how long to wait between them (exponential backoff with
//! jitter, or what the server asked for in `Retry-After`), and an optional overall deadline. The
//! operation classifies each failure itself as retryable ([`Attempt::Retry`]) or not
//! ([`Attempt::Fail`]); which statuses are retryable is named once, next to each client.

use std::fmt;
use std::time::{Duration, Instant};

/// A server's `Retry-After` is honoured up to this long, so a hostile or broken header cannot
/// park a tool for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How to retry one kind of operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What is being retried, for the log lines ("IMDS request", "download").
    pub what: &'static str,
    /// Attempts in all, the first one included. At least 1.
    pub max_attempts: u32,
    /// The delay after the first failure; it doubles each time up to `max_delay`.
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// Give up once this much time has passed since the first attempt, whatever is left of
    /// `max_attempts`.
    pub deadline: Option<Duration>,
}

/// What one attempt tells the loop.
#[derive(Debug)]
pub enum Attempt<E> {
    /// A transient failure: try again, after `after` if the server said so.
    Retry { error: E, after: Option<Duration> },
    /// A permanent failure: stop now.
    Fail(E),
}

impl<E> Attempt<E> {
    pub fn retry(error: E) -> Self {
        Attempt::Retry { error, after: None }
    }
}

/// Facts an attempt may use, such as the time left to bound its own request timeout.
#[derive(Debug, Clone, Copy)]
pub struct AttemptInfo {
    /// 1 for the first attempt.
    pub number: u32,
    /// Time left before the deadline, when there is one.
    pub remaining: Option<Duration>,
}

/// Why the loop stopped without a result.
#[derive(Debug)]
pub enum RetryError<E> {
    /// The operation said the failure was permanent.
    Fatal(E),
    /// Attempts or time ran out; `last` is the last failure.
    Exhausted {
        attempts: u32,
        elapsed: Duration,
        last: E,
    },
}

impl<E> RetryError<E> {
    /// The underlying failure, whichever way the loop stopped.
    pub fn into_inner(self) -> E {
        match self {
            RetryError::Fatal(e) => e,
            RetryError::Exhausted { last, .. } => last,
        }
    }

    pub fn inner(&self) -> &E {
        match self {
            RetryError::Fatal(e) => e,
            RetryError::Exhausted { last, .. } => last,
        }
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryError::Fatal(e) => write!(f, "{e}"),
            RetryError::Exhausted {
                attempts,
                elapsed,
                last,
            } => write!(
                f,
                "gave up after {attempts} attempt{} in {:.1}s: {last}",
                if *attempts == 1 { "" } else { "s" },
                elapsed.as_secs_f64()
            ),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner().source()
    }
}

impl Policy {
    /// One attempt and no retry: for a caller whose own loop does the retrying (against its
    /// own deadline or clock).
    pub fn once(what: &'static str) -> Self {
        Self {
            what,
            max_attempts: 1,
            initial_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            deadline: None,
        }
    }

    /// The backoff before attempt `failed + 1`, after `failed` failures: exponential from
    /// `initial_delay`, capped at `max_delay`, with jitter in the upper half so that many VMs
    /// booting together do not retry in lockstep.
    pub fn backoff(&self, failed: u32) -> Duration {
        let exponent = failed.saturating_sub(1).min(20);
        let full = self
            .initial_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = full / 2;
        half + full.saturating_sub(half).mul_f64(fastrand::f64())
    }

    /// How long to wait after failure number `failed`: what the server asked for (capped at
    /// [`MAX_RETRY_AFTER`]), or else the backoff.
    pub fn wait_after(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        retry_after
            .map(|a| a.min(MAX_RETRY_AFTER))
            .unwrap_or_else(|| self.backoff(failed))
    }

    /// Runs `op` until it succeeds, fails permanently, or the policy is exhausted. Each retry is
    /// logged at WARN with the error, the attempt number and the wait.
    pub fn run<T, E: fmt::Display>(
        &self,
        mut op: impl FnMut(AttemptInfo) -> Result<T, Attempt<E>>,
    ) -> Result<T, RetryError<E>> {
        let start = Instant::now();
        let max_attempts = self.max_attempts.max(1);
        let mut number = 1;
        loop {
            let remaining = self.deadline.map(|d| d.saturating_sub(start.elapsed()));
            let (error, after) = match op(AttemptInfo { number, remaining }) {
                Ok(value) => return Ok(value),
                Err(Attempt::Fail(error)) => return Err(RetryError::Fatal(error)),
                Err(Attempt::Retry { error, after }) => (error, after),
            };
            let wait = self.wait_after(number, after);
            let out_of_time = self.deadline.is_some_and(|d| start.elapsed() + wait >= d);
            if number >= max_attempts || out_of_time {
                return Err(RetryError::Exhausted {
                    attempts: number,
                    elapsed: start.elapsed(),
                    last: error,
                });
            }
            // A policy bounded only by its deadline says so instead of "attempt 1/4294967295".
            let of = if max_attempts == u32::MAX {
                String::new()
            } else {
                format!("/{max_attempts}")
            };
            tracing::warn!(
                "{} failed (attempt {number}{of}): {error}; retrying in {:.1}s",
                self.what,
                wait.as_secs_f64()
            );
            std::thread::sleep(wait);
            number += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn quick(max_attempts: u32) -> Policy {
        Policy {
            what: "test op",
            max_attempts,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            deadline: None,
        }
    }

    #[test]
    fn retries_until_success() {
        let calls = Cell::new(0);
        let got = quick(5).run(|info| {
            calls.set(calls.get() + 1);
            assert_eq!(info.number, calls.get());
            if info.number < 3 {
                Err(Attempt::retry("transient"))
            } else {
                Ok(42)
            }
        });
        assert_eq!(got.unwrap(), 42);
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn once_makes_one_attempt_and_sleeps_not() {
        let calls = Cell::new(0);
        let got: Result<(), _> = Policy::once("test op").run(|_| {
            calls.set(calls.get() + 1);
            Err(Attempt::Retry {
                error: "503",
                after: Some(Duration::from_secs(60)),
            })
        });
        assert_eq!(calls.get(), 1);
        assert!(matches!(
            got,
            Err(RetryError::Exhausted {
                attempts: 1,
                last: "503",
                ..
            })
        ));
    }

    #[test]
    fn fatal_stops_at_once() {
        let calls = Cell::new(0);
        let got: Result<(), _> = quick(5).run(|_| {
            calls.set(calls.get() + 1);
            Err(Attempt::Fail("403 forbidden"))
        });
        assert!(matches!(got, Err(RetryError::Fatal("403 forbidden"))));
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn exhaustion_reports_attempts_and_last_error() {
        let got: Result<(), _> =
            quick(3).run(|info| Err(Attempt::retry(format!("boom {}", info.number))));
        let err = got.unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("gave up after 3 attempts"), "{text}");
        assert!(text.ends_with("boom 3"), "{text}");
    }

    #[test]
    fn deadline_stops_before_attempts_run_out() {
        let policy = Policy {
            deadline: Some(Duration::from_millis(50)),
            ..quick(1000)
        };
        let calls = Cell::new(0u32);
        let got: Result<(), _> = policy.run(|_| {
            calls.set(calls.get() + 1);
            Err(Attempt::Retry {
                error: "busy",
                after: Some(Duration::from_millis(20)),
            })
        });
        assert!(matches!(got, Err(RetryError::Exhausted { .. })));
        // 20 ms waits inside a 50 ms deadline: at most three attempts fit.
        assert!(calls.get() <= 3, "{}", calls.get());
    }

    #[test]
    fn remaining_time_shrinks() {
        let policy = Policy {
            deadline: Some(Duration::from_secs(10)),
            ..quick(2)
        };
        let mut seen = Vec::new();
        let _: Result<(), _> = policy.run(|info| {
            seen.push(info.remaining.unwrap());
            Err(Attempt::retry("x"))
        });
        assert_eq!(seen.len(), 2);
        assert!(seen[1] < seen[0]);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = Policy {
            what: "x",
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            deadline: None,
        };
        for failed in 1..10 {
            let full = Duration::from_millis(100 * (1u64 << (failed - 1)))
                .min(Duration::from_millis(1000));
            let d = policy.backoff(failed);
            assert!(
                d >= full / 2 && d <= full,
                "failed={failed} d={d:?} full={full:?}"
            );
        }
    }

    #[test]
    fn retry_after_wins_over_backoff_but_is_capped() {
        let policy = quick(2);
        assert_eq!(
            policy.wait_after(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            policy.wait_after(1, Some(Duration::from_secs(100_000))),
            MAX_RETRY_AFTER
        );
        assert!(policy.wait_after(1, None) <= Duration::from_millis(1));
    }
}
