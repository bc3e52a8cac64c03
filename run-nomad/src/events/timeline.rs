//! When to do what before an event's `NotBefore`: pure.
//!
//! Azure deletes or evicts the VM at `NotBefore` whether or not it was approved ("the event is
//! automatically approved when the NotBefore time is reached" [SE, High level overview]), so
//! every step is bounded by it. Working back from `NotBefore`:
//!
//! ```text
//!  now ─── drain (deadline) ───┬─ kill allowance ─┬─ stop Nomad ─┬─ approval margin ─┤ NotBefore
//!                   Nomad forces what is left     allocations    approve by
//! ```
//!
//! - the approval goes out at the latest `approval margin` before `NotBefore`;
//! - before that, the service manager gets up to `stop timeout` to stop Nomad (a server leaves
//!   Raft in that time);
//! - a client's drain gets the rest, minus a `kill allowance` in which the allocations Nomad
//!   force-stops at the drain deadline can exit (their `kill_timeout`).
//!
//! A short window (a Spot eviction's 30 seconds) is shared the same way, with the stop and
//! kill reserves shrunk to a quarter of it each, so the drain still gets half; with no time
//! left the drain is forced at once. The stop always gets at least [`MIN_STOP`].

use std::time::{Duration, SystemTime};

use super::document::EventType;

/// The least time the service manager gets to stop Nomad, even when the window has passed.
pub const MIN_STOP: Duration = Duration::from_secs(3);

/// A drain whose deadline would be shorter than this is forced at once instead.
pub const MIN_DRAIN: Duration = Duration::from_secs(1);

/// The reserves carved out of the window (flags of `watch-events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Margins {
    /// Approve at the latest this long before `NotBefore`.
    pub approval: Duration,
    /// The longest the service manager gets to stop Nomad.
    pub stop_timeout: Duration,
    /// Between the drain's deadline and the stop: for allocations Nomad force-stops.
    pub kill_allowance: Duration,
}

impl Default for Margins {
    fn default() -> Self {
        Self {
            approval: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(30),
            kill_allowance: Duration::from_secs(10),
        }
    }
}

/// A drain's deadline, as the Nomad client sends it (`DrainSpec.Deadline`). A plan gives
/// [`DrainDeadline::After`] (at least [`MIN_DRAIN`]) or [`DrainDeadline::ForceNow`], never
/// [`DrainDeadline::None`]: the VM goes away, so a drain always ends.
pub use support::nomad::DrainDeadline;

/// The plan for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// The `NotBefore` planned for (the event's, or the type's minimum notice from when it was
    /// first seen when the event has none).
    pub not_before: SystemTime,
    /// Whether `not_before` was assumed rather than read.
    pub assumed: bool,
    /// Approve by then at the latest.
    pub approve_by: SystemTime,
    /// When the drain's deadline falls (clients): Nomad force-stops what is left then.
    pub drain_until: SystemTime,
    /// Wait for the allocations to stop until then (clients).
    pub allocations_until: SystemTime,
    /// How long the service manager gets to stop Nomad.
    pub stop_timeout: Duration,
}

impl Timeline {
    /// Time left before `NotBefore`, from `now` (zero once it passed).
    pub fn left(&self, now: SystemTime) -> Duration {
        self.not_before.duration_since(now).unwrap_or_default()
    }

    /// The drain's deadline for a drain requested at `now` (time spent finding the node is
    /// taken off it).
    pub fn drain_deadline(&self, now: SystemTime) -> DrainDeadline {
        let left = window(now, self.drain_until);
        if left >= MIN_DRAIN {
            DrainDeadline::After(left)
        } else {
            DrainDeadline::ForceNow
        }
    }
}

/// The plan at `now` for an event of `event_type` whose `NotBefore` is `not_before` (`None`:
/// blank or unreadable), first seen at `first_seen`; `drains` when this VM runs a Nomad client.
pub fn plan(
    now: SystemTime,
    event_type: &EventType,
    not_before: Option<SystemTime>,
    first_seen: SystemTime,
    drains: bool,
    margins: Margins,
) -> Timeline {
    let (not_before, assumed) = match not_before {
        Some(t) => (t, false),
        None => (first_seen + event_type.minimum_notice(), true),
    };
    let approve_by = (not_before - margins.approval.min(window(now, not_before))).max(now);
    let available = window(now, approve_by);
    let share = |reserve: Duration, part: u32| reserve.min(available / part);
    if !drains {
        return Timeline {
            not_before,
            assumed,
            approve_by,
            drain_until: now,
            allocations_until: now,
            stop_timeout: share(margins.stop_timeout, 1).max(MIN_STOP),
        };
    }
    let stop = share(margins.stop_timeout, 4);
    let kill = share(margins.kill_allowance, 4);
    let drain_for = available.saturating_sub(stop + kill);
    Timeline {
        not_before,
        assumed,
        approve_by,
        drain_until: now + drain_for,
        allocations_until: now + drain_for + kill,
        stop_timeout: stop.max(MIN_STOP),
    }
}

fn window(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn a_five_minute_terminate_gives_the_drain_most_of_it() {
        let t = plan(
            at(0),
            &EventType::Terminate,
            Some(at(300)),
            at(0),
            true,
            Margins::default(),
        );
        assert_eq!(t.approve_by, at(295));
        // 295 s to approval: 30 s to stop, 10 s for killed allocations, 255 s of drain.
        assert_eq!(
            t.drain_deadline(at(0)),
            DrainDeadline::After(Duration::from_secs(255))
        );
        // Ten seconds spent finding the node come off the deadline.
        assert_eq!(
            t.drain_deadline(at(10)),
            DrainDeadline::After(Duration::from_secs(245))
        );
        assert_eq!(t.allocations_until, at(265));
        assert_eq!(t.stop_timeout, Duration::from_secs(30));
        assert!(t.allocations_until + t.stop_timeout <= t.approve_by);
        assert!(!t.assumed);
    }

    #[test]
    fn a_spot_eviction_shares_its_thirty_seconds() {
        let t = plan(
            at(2),
            &EventType::Preempt,
            Some(at(30)),
            at(2),
            true,
            Margins::default(),
        );
        // 23 s to approval: a quarter each to stop and to killed allocations, the rest drains.
        assert_eq!(t.approve_by, at(25));
        assert_eq!(t.stop_timeout, Duration::from_millis(5750));
        assert_eq!(
            t.drain_deadline(at(2)),
            DrainDeadline::After(Duration::from_millis(23_000 - 2 * 5750))
        );
        assert!(t.allocations_until + t.stop_timeout <= t.approve_by);
    }

    #[test]
    fn no_time_left_forces_the_drain_and_still_gives_the_stop_a_moment() {
        for not_before in [at(100), at(101)] {
            let t = plan(
                at(100),
                &EventType::Preempt,
                Some(not_before),
                at(90),
                true,
                Margins::default(),
            );
            assert_eq!(
                t.drain_deadline(at(100)),
                DrainDeadline::ForceNow,
                "{not_before:?}"
            );
            assert_eq!(t.stop_timeout, MIN_STOP);
            assert_eq!(t.approve_by, at(100));
        }
        assert_eq!(DrainDeadline::ForceNow.nanos(), Some(-1_000_000_000));
        assert_eq!(
            DrainDeadline::After(Duration::from_secs(255)).nanos(),
            Some(255_000_000_000)
        );
    }

    #[test]
    fn a_server_stops_at_once_within_the_window() {
        let t = plan(
            at(0),
            &EventType::Terminate,
            Some(at(300)),
            at(0),
            false,
            Margins::default(),
        );
        assert_eq!(t.stop_timeout, Duration::from_secs(30));
        assert_eq!(t.allocations_until, at(0));
        let late = plan(
            at(0),
            &EventType::Terminate,
            Some(at(12)),
            at(0),
            false,
            Margins::default(),
        );
        assert_eq!(late.stop_timeout, Duration::from_secs(7));
    }

    #[test]
    fn a_blank_not_before_assumes_the_types_minimum_notice_from_first_sight() {
        let t = plan(
            at(10),
            &EventType::Preempt,
            None,
            at(5),
            true,
            Margins::default(),
        );
        assert!(t.assumed);
        assert_eq!(t.not_before, at(35));
        let t = plan(
            at(10),
            &EventType::Terminate,
            None,
            at(5),
            false,
            Margins::default(),
        );
        assert_eq!(t.not_before, at(305));
    }
}
