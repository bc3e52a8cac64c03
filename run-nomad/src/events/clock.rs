//! Time for the watcher: the wall clock (NotBefore is a UTC time) and waiting. Tests give a
//! virtual clock, so no test waits for real time; production waits can be cut short by a stop
//! request (SIGTERM from systemd or supervisord).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The watcher's clock.
pub trait Clock {
    /// The current UTC time.
    fn now(&self) -> SystemTime;
    /// Waits `duration` (or less, when the watcher is asked to stop).
    fn sleep(&self, duration: Duration);
}

/// The system clock; a wait ends early once `stop` is set.
#[derive(Debug, Clone, Default)]
pub struct SystemClock {
    stop: Arc<AtomicBool>,
}

impl SystemClock {
    /// A clock whose waits end when `stop` becomes true.
    pub fn new(stop: Arc<AtomicBool>) -> Self {
        Self { stop }
    }
}

/// How often a wait looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, duration: Duration) {
        let end = std::time::Instant::now() + duration;
        while !self.stop.load(Ordering::SeqCst) {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(STOP_CHECK));
        }
    }
}

/// A point in time for logs: the HTTP date Scheduled Events use.
pub fn show(time: SystemTime) -> String {
    httpdate::fmt_http_date(time)
}

/// Seconds with one decimal, for logs.
pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_request_ends_a_wait() {
        let stop = Arc::new(AtomicBool::new(true));
        let clock = SystemClock::new(stop);
        let started = std::time::Instant::now();
        clock.sleep(Duration::from_secs(3600));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
