//! Virtual time: milliseconds since the simulation started, mapped onto a fixed wall-clock
//! epoch so every timestamp the double writes is deterministic; and the text forms Nomad uses
//! for times and durations.

use std::time::Duration;

pub use crate::go_duration::{format as go_duration, parse as parse_go_duration};

/// Wall-clock time of the simulation's start: 2026-01-01T00:00:00Z.
pub const EPOCH_UNIX_SECONDS: i64 = 1_767_225_600;

/// A point in simulated time (milliseconds since the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimTime(pub u64);

impl SimTime {
    pub fn millis(self) -> u64 {
        self.0
    }

    pub fn plus(self, d: Duration) -> SimTime {
        SimTime(self.0.saturating_add(d.as_millis() as u64))
    }

    /// Time from `earlier` to `self` (zero when `earlier` is later).
    pub fn since(self, earlier: SimTime) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Unix time in nanoseconds (Nomad's allocation `CreateTime`/`ModifyTime`).
    pub fn unix_nanos(self) -> i64 {
        EPOCH_UNIX_SECONDS * 1_000_000_000 + self.0 as i64 * 1_000_000
    }

    /// Unix time in seconds (Nomad's node `StatusUpdatedAt`).
    pub fn unix_seconds(self) -> i64 {
        EPOCH_UNIX_SECONDS + (self.0 / 1000) as i64
    }

    /// RFC 3339 in UTC with the fraction Go's `time.RFC3339Nano` writes (trailing zeros and a
    /// bare dot dropped): `2026-01-01T00:00:01.25Z`.
    pub fn rfc3339(self) -> String {
        let seconds = EPOCH_UNIX_SECONDS + (self.0 / 1000) as i64;
        let millis = self.0 % 1000;
        let mut text = civil(seconds);
        if millis > 0 {
            let fraction = format!("{millis:03}");
            text.push('.');
            text.push_str(fraction.trim_end_matches('0'));
        }
        text.push('Z');
        text
    }

    /// The wall-clock time this simulated time stands for (e.g. for the ARM double's
    /// `timeCreated`, [`crate::doubles::arm::ArmDouble::set_clock`]).
    pub fn system_time(self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(EPOCH_UNIX_SECONDS as u64 * 1000 + self.0)
    }

    /// RFC 3339 rounded down to the second (autopilot's `StableSince`).
    pub fn rfc3339_seconds(self) -> String {
        SimTime(self.0 - self.0 % 1000).rfc3339()
    }
}

/// `YYYY-MM-DDTHH:MM:SS` for unix seconds (proleptic Gregorian calendar, UTC).
pub fn civil(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm, public domain).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_like_go_writes_them() {
        assert_eq!(SimTime(0).rfc3339(), "2026-01-01T00:00:00Z");
        assert_eq!(SimTime(1_250).rfc3339(), "2026-01-01T00:00:01.25Z");
        assert_eq!(SimTime(1_250).rfc3339_seconds(), "2026-01-01T00:00:01Z");
        // 60 days later: leap handling of the civil conversion (2026 is not a leap year).
        assert_eq!(SimTime(59 * 86_400_000).rfc3339(), "2026-03-01T00:00:00Z");
        assert_eq!(SimTime(0).unix_seconds(), 1_767_225_600);
        assert_eq!(SimTime(1).unix_nanos(), 1_767_225_600_001_000_000);
        let at = SimTime(1_250).system_time();
        assert_eq!(
            crate::doubles::arm::created::time_created(at),
            "2026-01-01T00:00:01.2500000+00:00"
        );
    }
}
