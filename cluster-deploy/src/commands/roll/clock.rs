//! Time and interruption as a roll sees them. Production waits on the wall clock and stops on
//! SIGINT/SIGTERM; tests hand in a clock that moves a simulated cluster's virtual time, so a
//! 20-minute gate timeout or a one-hour drain deadline passes in milliseconds, deterministically.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Where time comes from, and how waiting passes it.
pub trait Clock: Send + Sync {
    /// Time since an arbitrary, fixed origin.
    fn now(&self) -> Duration;
    /// Waits `d`, or less once `interrupted` is set.
    fn sleep(&self, d: Duration, interrupted: &AtomicBool);
    /// The calendar time (compared with Azure's `timeCreated`; `rotate` prints it).
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The wall clock: sleeps in short slices so an interruption is seen within a fraction of a
/// second.
#[derive(Debug)]
pub struct WallClock {
    origin: Instant,
}

impl Default for WallClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for WallClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, d: Duration, interrupted: &AtomicBool) {
        let until = Instant::now() + d;
        while !interrupted.load(Ordering::SeqCst) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}

/// What a roll runs with besides its arguments: the clock, the interruption flag, and the
/// `NOMAD_*` variables (the process environment unless given).
#[derive(Clone)]
pub struct Hooks {
    pub clock: Arc<dyn Clock>,
    /// Set by SIGINT/SIGTERM (or a test): the roll stops at its next safe point.
    pub interrupted: Arc<AtomicBool>,
    /// `NOMAD_*` variables; `None` reads the process environment.
    pub nomad_env: Option<BTreeMap<String, String>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("interrupted", &self.interrupted)
            .finish_non_exhaustive()
    }
}

impl Hooks {
    /// The wall clock, no signal handling, the process environment.
    pub fn wall_clock() -> Self {
        Self {
            clock: Arc::new(WallClock::default()),
            interrupted: Arc::new(AtomicBool::new(false)),
            nomad_env: None,
        }
    }

    /// The wall clock, with SIGINT and SIGTERM setting the interruption flag. A second signal
    /// ends the process at once (the first one asked politely).
    pub fn for_process() -> std::io::Result<Self> {
        let hooks = Self::wall_clock();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(
                signal,
                130,
                Arc::clone(&hooks.interrupted),
            )?;
            signal_hook::flag::register(signal, Arc::clone(&hooks.interrupted))?;
        }
        Ok(hooks)
    }

    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    pub fn sleep(&self, d: Duration) {
        self.clock.sleep(d, &self.interrupted);
    }

    /// A `NOMAD_*` variable.
    pub fn nomad_var(&self, name: &str) -> Option<String> {
        match &self.nomad_env {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_wall_clock_sleep_returns_at_once() {
        let clock = WallClock::default();
        let flag = AtomicBool::new(true);
        let before = clock.now();
        clock.sleep(Duration::from_secs(3600), &flag);
        assert!(clock.now() - before < Duration::from_secs(1));
    }
}
