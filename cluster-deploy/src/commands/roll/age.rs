//! `roll --created-before <time>`: replacing instances by age as well as by model.
//!
//! Secrets (a rotated certificate, CA bundle or gossip key) are read by a VM when it boots; a
//! rotation changes the vault, not the scale set's model, so every instance stays "on the latest
//! model" while holding the old material. An instance that Azure created before the rotation
//! step (`properties.timeCreated` of the VirtualMachineScaleSetVM, Compute api-version
//! 2021-11-01 and later, `virtualMachineScaleSet.json`) counts as old; the instances the roll
//! surges are created after it and count as new, so a re-run with the same time resumes where
//! the first one stopped. An instance whose age is unknown is never guessed at: the roll
//! refuses, naming it.
//!
//! RFC 3339 is parsed and written here by hand: the workspace's `time` has no parsing or
//! formatting features, and the grammar we accept is small (Azure writes
//! `2021-06-27T01:02:38.3138469+00:00`; operators write `2026-11-30T12:34:56Z`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::state::Instance;

/// Parses an RFC 3339 date-time with a `T` (or `t`/space) separator, optional fraction (up to
/// nine digits) and `Z` or a `±HH:MM` offset.
pub(crate) fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    let bad = |why: &str| format!("not an RFC 3339 time ({why}); e.g. 2026-11-30T12:34:56Z");
    let b = text.as_bytes();
    if b.len() < 20 {
        return Err(bad("too short"));
    }
    let digits = |range: std::ops::Range<usize>| -> Result<u32, String> {
        let part = &text[range];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad("a number is out of range"))
        } else {
            Err(bad("expected digits"))
        }
    };
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return Err(bad("expected YYYY-MM-DDTHH:MM:SS"));
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad("expected T between date and time"));
    }
    let year = digits(0..4)? as i32;
    let month = Month::try_from(digits(5..7)? as u8).map_err(|_| bad("no such month"))?;
    let date = Date::from_calendar_date(year, month, digits(8..10)? as u8)
        .map_err(|_| bad("no such day"))?;
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let n = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return Err(bad("a fraction needs 1 to 9 digits"));
        }
        nanos =
            after_dot[..n].parse::<u32>().map_err(|_| bad("fraction"))? * 10u32.pow(9 - n as u32);
        rest = &after_dot[n..];
    }
    let offset = match rest {
        "Z" | "z" => UtcOffset::UTC,
        _ if rest.len() == 6 && matches!(&rest[0..1], "+" | "-") && &rest[3..4] == ":" => {
            let number = |r: &str| {
                r.parse::<i8>()
                    .ok()
                    .filter(|_| r.bytes().all(|c| c.is_ascii_digit()))
            };
            let (Some(h), Some(m)) = (number(&rest[1..3]), number(&rest[4..6])) else {
                return Err(bad("bad offset"));
            };
            let sign = if &rest[0..1] == "-" { -1 } else { 1 };
            UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad("bad offset"))?
        }
        _ => return Err(bad("expected Z or an offset like +00:00 at the end")),
    };
    let time = Time::from_hms_nano(hour as u8, minute as u8, second as u8, nanos)
        .map_err(|_| bad("no such time of day"))?;
    Ok(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

/// `2026-11-30T12:34:56Z`: UTC, to the second (rounded down).
pub(crate) fn format_utc_seconds(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The `--created-before` value, checked: a time in the future is refused, since every
/// instance the roll surges would be created before it too and be old for ever.
pub(crate) fn parse_cutoff(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    let cutoff =
        parse_rfc3339(text.trim()).map_err(|e| anyhow::anyhow!("--created-before {text}: {e}"))?;
    if cutoff > now {
        bail!(
            "--created-before {text}: the time is in the future (now {}): the instances the roll \
             creates would be older than it too and never count as new; give the time of the \
             step that changed the secrets (rotate prints the command)",
            format_utc_seconds(now)
        );
    }
    Ok(cutoff)
}

/// Marks the instances created before `cutoff` as to be replaced; without a cutoff, none.
/// An instance without `timeCreated` cannot be judged: refused, naming it.
pub(crate) fn select(instances: &mut [Instance], cutoff: Option<OffsetDateTime>) -> Result<()> {
    let Some(cutoff) = cutoff else {
        return Ok(());
    };
    for i in instances.iter_mut() {
        let Some(created) = i.created else {
            bail!(
                "--created-before {}: scale set {}: instance {} has no properties.timeCreated in \
                 ARM's answer, so its age is unknown; not rolling rather than guessing whether it \
                 holds the old secrets (replace it by hand, or roll without --created-before)",
                format_utc_seconds(cutoff),
                i.scale_set,
                i.label()
            );
        };
        i.created_before_cutoff = created < cutoff;
    }
    Ok(())
}

/// The instances of each scale set a roll saw first. One that appears later was created
/// during the roll (its own surge): when Azure says it was created before the cutoff, the
/// cutoff is ahead of Azure's clock (typed from a clock that runs fast, or not the time
/// rotate printed). Every instance the roll makes would then be old as well, and the roll
/// would replace its own nodes for ever: it stops instead.
#[derive(Debug, Default)]
pub(crate) struct SurgeGuard {
    first_seen: std::sync::Mutex<BTreeMap<String, BTreeSet<String>>>,
}

impl SurgeGuard {
    /// Records the first listing of `scale_set`; refuses a later one in which an instance
    /// that was not there at first is marked as created before `cutoff`.
    pub(crate) fn check(
        &self,
        scale_set: &str,
        instances: &[Instance],
        cutoff: Option<OffsetDateTime>,
    ) -> Result<()> {
        let Some(cutoff) = cutoff else {
            return Ok(());
        };
        let mut first_seen = self.first_seen.lock().unwrap_or_else(|e| e.into_inner());
        let Some(known) = first_seen.get(scale_set) else {
            let ids = instances.iter().map(|i| i.vm_id.clone()).collect();
            first_seen.insert(scale_set.to_string(), ids);
            return Ok(());
        };
        if let Some(new) = instances
            .iter()
            .find(|i| i.created_before_cutoff && !known.contains(&i.vm_id))
        {
            bail!(
                "--created-before {}: scale set {scale_set}: instance {}, created during this \
                 roll, has timeCreated {}, before the cutoff: the time is ahead of Azure's \
                 clock, so every new instance would count as old and the roll would replace \
                 its own nodes for ever. Stopped; re-run with the time `cluster-deploy rotate` \
                 printed (Key Vault's time of the step), not one from this machine's clock",
                format_utc_seconds(cutoff),
                new.label(),
                new.created
                    .map_or_else(|| "?".to_string(), format_utc_seconds)
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        parse_rfc3339(text).unwrap()
    }

    #[test]
    fn azure_and_operator_forms_parse() {
        let azure = at("2021-06-27T01:02:38.3138469+00:00");
        assert_eq!(azure.unix_timestamp(), 1_624_755_758);
        assert_eq!(azure.nanosecond(), 313_846_900);
        assert_eq!(format_utc_seconds(azure), "2021-06-27T01:02:38Z");
        assert_eq!(at("2026-11-30T13:34:56+01:00"), at("2026-11-30T12:34:56Z"));
        assert_eq!(at("2026-11-30t12:34:56.5z").nanosecond(), 500_000_000);
        for bad in [
            "2026-11-30",
            "2026-11-30T12:34:56",
            "2026-13-30T12:34:56Z",
            "2026-02-30T12:34:56Z",
            "2026-11-30T24:00:00Z",
            "2026-11-30T12:34:56.Z",
            "2026-11-30T12:34:56+0100",
            "yesterday at noon",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cutoff_is_named_and_not_in_the_future() {
        let now = at("2026-11-30T12:00:00Z");
        assert_eq!(parse_cutoff("2026-11-30T12:00:00Z", now).unwrap(), now);
        let err = parse_cutoff("2026-11-30T12:00:01Z", now)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--created-before 2026-11-30T12:00:01Z: the time is in the future"),
            "{err}"
        );
        let err = parse_cutoff("noon", now).unwrap_err().to_string();
        assert!(
            err.starts_with("--created-before noon: not an RFC 3339 time"),
            "{err}"
        );
    }

    #[test]
    fn instances_before_the_cutoff_are_selected_and_an_unknown_age_is_refused() {
        use super::super::state::tests::instance;
        let mut set = vec![instance("s", 0, true), instance("s", 1, true)];
        set[0].created = Some(at("2026-11-30T11:59:59Z"));
        set[1].created = Some(at("2026-11-30T12:00:00Z"));
        select(&mut set, Some(at("2026-11-30T12:00:00Z"))).unwrap();
        assert!(set[0].created_before_cutoff && !set[0].current());
        assert!(!set[1].created_before_cutoff && set[1].current());
        // Without the flag the age is not looked at, even when unknown.
        set[1].created = None;
        select(&mut set, None).unwrap();
        let err = select(&mut set, Some(at("2026-11-30T12:00:00Z")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--created-before 2026-11-30T12:00:00Z")
                && err.contains("instance 1 (s000001, vm vm-s-1) has no properties.timeCreated"),
            "{err}"
        );
    }

    #[test]
    fn an_instance_the_roll_made_before_the_cutoff_stops_it() {
        use super::super::state::tests::instance;
        let cutoff = Some(at("2026-11-30T12:00:00Z"));
        let guard = SurgeGuard::default();
        let mut first = vec![instance("s", 0, true)];
        first[0].created = Some(at("2026-11-30T11:00:00Z"));
        select(&mut first, cutoff).unwrap();
        guard.check("s", &first, cutoff).unwrap();
        // The old one again, and a surge Azure made after the cutoff: fine.
        let mut later = first.clone();
        later.push(instance("s", 1, true));
        later[1].created = Some(at("2026-11-30T12:00:01Z"));
        select(&mut later, cutoff).unwrap();
        guard.check("s", &later, cutoff).unwrap();
        // A surge Azure made before the cutoff (the cutoff is ahead of Azure's clock).
        later[1].created = Some(at("2026-11-30T11:59:00Z"));
        select(&mut later, cutoff).unwrap();
        let err = guard.check("s", &later, cutoff).unwrap_err().to_string();
        assert!(
            err.starts_with("--created-before 2026-11-30T12:00:00Z: scale set s: instance 1 (")
                && err.contains("created during this roll")
                && err.contains("ahead of Azure's clock"),
            "{err}"
        );
        // Another scale set is recorded on its own first listing; no cutoff, no check.
        guard.check("c", &later, cutoff).unwrap();
        guard.check("s", &later, None).unwrap();
    }
}
