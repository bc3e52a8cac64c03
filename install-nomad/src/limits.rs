//! How long a download may take: an overall deadline per file (`--download-timeout`) and stall
//! detection (`--stall-timeout`, `--stall-min-speed`), as curl's `--max-time` and
//! `--speed-time`/`--speed-limit` do.
//!
//! reqwest's blocking timeout applies to each wait (the response head, then every read of the
//! body), so a server that sends one byte per second is never cut off by it. [`Watched`] wraps a
//! body and checks, after every read, that the file's deadline has not passed and that the last
//! `window` brought at least `min_speed` bytes per second; the client's own timeout is set to
//! the window, so a server that sends nothing at all ends the read after one window too.
//!
//! A stall ends the attempt (the download is retried and resumed under `--download-attempts`);
//! the deadline ends the file.

use std::fmt;
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// The limits from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest time one file may take, every attempt and wait between attempts included.
    pub timeout: Duration,
    /// An attempt counts as stalled when a window this long brings fewer than
    /// `min_speed * window` bytes (or nothing at all).
    pub stall_window: Duration,
    /// Bytes per second.
    pub min_speed: u64,
}

impl Default for Limits {
    /// 10 minutes per file (a 100 MB release at 170 KB/s), stalled below 1 KiB/s over 30 s.
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(600),
            stall_window: Duration::from_secs(30),
            min_speed: 1024,
        }
    }
}

/// Why a transfer was cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// Fewer than the minimum bytes arrived in one window.
    Stalled {
        bytes: u64,
        window: Duration,
        min_speed: u64,
    },
    /// The file's deadline passed.
    Deadline { timeout: Duration },
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cut::Stalled {
                bytes: 0, window, ..
            } => write!(
                f,
                "stalled: nothing arrived for {} (--stall-timeout)",
                secs(*window)
            ),
            Cut::Stalled {
                bytes,
                window,
                min_speed,
            } => write!(
                f,
                "stalled: {bytes} bytes arrived in {}, slower than the {min_speed} bytes/s of --stall-min-speed",
                secs(*window)
            ),
            Cut::Deadline { timeout } => write!(
                f,
                "it took longer than the {} --download-timeout allows",
                secs(*timeout)
            ),
        }
    }
}

impl std::error::Error for Cut {}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

/// The bytes seen in the current window: a pure state machine fed with readings, so the rule
/// is tested without a clock.
#[derive(Debug, Clone, Copy)]
pub struct StallWatch {
    window: Duration,
    min_speed: u64,
    started: Instant,
    bytes: u64,
}

impl StallWatch {
    pub fn new(limits: &Limits, now: Instant) -> StallWatch {
        StallWatch {
            window: limits.stall_window,
            min_speed: limits.min_speed,
            started: now,
            bytes: 0,
        }
    }

    /// Records `n` bytes read at `now`; once a window is over, judges it and starts the next.
    pub fn observe(&mut self, n: u64, now: Instant) -> Result<(), Cut> {
        self.bytes += n;
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < self.window {
            return Ok(());
        }
        let wanted = (self.min_speed as f64 * elapsed.as_secs_f64()) as u64;
        if self.bytes < wanted.max(1) {
            return Err(Cut::Stalled {
                bytes: self.bytes,
                window: elapsed,
                min_speed: self.min_speed,
            });
        }
        self.started = now;
        self.bytes = 0;
        Ok(())
    }
}

/// A body read under a deadline and a stall watch. A cut shows as an `io::Error` of kind
/// `TimedOut` carrying the [`Cut`] ([`cut_of`] gets it back).
pub struct Watched<R> {
    inner: R,
    deadline: Instant,
    timeout: Duration,
    watch: StallWatch,
}

impl<R: Read> Watched<R> {
    /// `deadline` is the file's (it spans attempts); the stall window starts now.
    pub fn new(inner: R, limits: &Limits, deadline: Instant) -> Watched<R> {
        Watched {
            inner,
            deadline,
            timeout: limits.timeout,
            watch: StallWatch::new(limits, Instant::now()),
        }
    }

    fn cut(&self, cut: Cut) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, cut)
    }
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(self.cut(Cut::Deadline {
                timeout: self.timeout,
            }));
        }
        let result = self.inner.read(buf);
        let now = Instant::now();
        let n = match &result {
            Ok(n) => *n as u64,
            // The client's own per-read timeout (one stall window, or what is left before the
            // deadline) ended a read that got nothing.
            Err(e) if is_timeout(e) => 0,
            Err(_) => return result,
        };
        if now >= self.deadline {
            return Err(self.cut(Cut::Deadline {
                timeout: self.timeout,
            }));
        }
        match (self.watch.observe(n, now), result) {
            (Err(cut), _) => Err(self.cut(cut)),
            (Ok(()), Err(e)) if is_timeout(&e) => Err(self.cut(Cut::Stalled {
                bytes: 0,
                window: self.watch.window,
                min_speed: self.watch.min_speed,
            })),
            (Ok(()), result) => result,
        }
    }
}

/// The [`Cut`] an error from [`Watched`] carries, if any.
pub fn cut_of(error: &io::Error) -> Option<&Cut> {
    error.get_ref()?.downcast_ref::<Cut>()
}

/// Whether an I/O error is a timeout: the kind, or a reqwest timeout inside it (reqwest's
/// blocking body reports its read timeout as an `Other` error wrapping its own).
pub fn is_timeout(error: &io::Error) -> bool {
    if error.kind() == io::ErrorKind::TimedOut {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.get_ref().map(|e| e as _);
    while let Some(e) = source {
        if let Some(reqwest) = e.downcast_ref::<reqwest::Error>() {
            return reqwest.is_timeout();
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return true;
            }
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(window_ms: u64, min_speed: u64) -> Limits {
        Limits {
            timeout: Duration::from_secs(600),
            stall_window: Duration::from_millis(window_ms),
            min_speed,
        }
    }

    #[test]
    fn a_trickle_is_a_stall_and_a_steady_flow_is_not() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // One byte per second against 1 KiB/s over 30 s: cut when the first window ends.
        let mut watch = StallWatch::new(&limits(30_000, 1024), t0);
        for s in 1..30 {
            assert_eq!(watch.observe(1, at(s * 1000)), Ok(()));
        }
        assert_eq!(
            watch.observe(1, at(30_000)),
            Err(Cut::Stalled {
                bytes: 30,
                window: Duration::from_secs(30),
                min_speed: 1024
            })
        );
        // 2 KiB every second passes window after window.
        let mut watch = StallWatch::new(&limits(30_000, 1024), t0);
        for s in 1..=100 {
            assert_eq!(watch.observe(2048, at(s * 1000)), Ok(()), "second {s}");
        }
        // A burst then silence: the next window catches it.
        let mut watch = StallWatch::new(&limits(1000, 10), t0);
        assert_eq!(watch.observe(1_000_000, at(999)), Ok(()));
        assert_eq!(watch.observe(0, at(1000)), Ok(()));
        assert!(watch.observe(0, at(2000)).is_err());
        // A minimum speed of 0 still wants one byte per window.
        let mut watch = StallWatch::new(&limits(1000, 0), t0);
        assert!(watch.observe(0, at(1000)).is_err());
    }

    /// Gives one byte per read, sleeping `pause` first.
    struct Slow {
        pause: Duration,
        left: usize,
    }

    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Ok(0);
            }
            std::thread::sleep(self.pause);
            self.left -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn watched_reads_are_cut_by_a_stall_or_the_deadline() {
        let slow = || Slow {
            pause: Duration::from_millis(10),
            left: 1000,
        };
        let far = Instant::now() + Duration::from_secs(600);
        let mut body = Watched::new(slow(), &limits(100, 1000), far);
        let err = io::copy(&mut body, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(matches!(cut_of(&err), Some(Cut::Stalled { .. })), "{err:?}");
        assert!(err.to_string().contains("--stall-min-speed"), "{err}");

        let near = Instant::now() + Duration::from_millis(50);
        let mut body = Watched::new(slow(), &limits(10_000, 1), near);
        let err = io::copy(&mut body, &mut io::sink()).unwrap_err();
        assert!(
            matches!(cut_of(&err), Some(Cut::Deadline { .. })),
            "{err:?}"
        );

        let mut body = Watched::new(&b"all of it"[..], &limits(100, 1000), far);
        let mut out = Vec::new();
        body.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"all of it");
    }

    #[test]
    fn messages_name_the_flags() {
        let stalled = Cut::Stalled {
            bytes: 0,
            window: Duration::from_secs(30),
            min_speed: 1024,
        };
        assert_eq!(
            stalled.to_string(),
            "stalled: nothing arrived for 30s (--stall-timeout)"
        );
        let deadline = Cut::Deadline {
            timeout: Duration::from_millis(1500),
        };
        assert_eq!(
            deadline.to_string(),
            "it took longer than the 1.5s --download-timeout allows"
        );
    }
}
