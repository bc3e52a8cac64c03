//! Which version steps Nomad supports, from its upgrade guide
//! (hashicorp/nomad `website/content/docs/upgrade/index.mdx`, "Upgrading"): "Nomad strives to
//! be backward compatible for at least 1 point release, so Nomad v1.6.x hosts work with v1.5.x
//! hosts. Upgrading 2 point releases (eg v1.4.0 to v1.6.0) may work but is untested and
//! unsupported", and "Nomad does *not* support downgrading at this time". A point release is
//! a minor version here (1.5 -> 1.6); patch releases within one are always fine. 0.12 was the
//! last 0.x release, so 0.12 -> 1.0 is one step.

use std::cmp::Ordering;
use std::fmt;

/// A Nomad version: `1.10.5`, `1.10.0-beta.1`, `1.9.7+ent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// `beta.1`, `rc.2`, `dev` ("" for a release).
    pub prerelease: String,
    /// `ent` and the like (ignored in comparisons).
    pub metadata: String,
}

impl Version {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bare = text.strip_prefix('v').unwrap_or(text);
        let (rest, metadata) = match bare.split_once('+') {
            Some((rest, meta)) => (rest, meta.to_string()),
            None => (bare, String::new()),
        };
        let (core, prerelease) = match rest.split_once('-') {
            Some((core, pre)) => (core, pre.to_string()),
            None => (rest, String::new()),
        };
        let numbers: Vec<&str> = core.split('.').collect();
        let number = |i: usize| -> Result<u64, String> {
            numbers
                .get(i)
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("{text:?} is not a Nomad version (e.g. 1.10.5)"))?
                .parse()
                .map_err(|_| format!("{text:?} is not a Nomad version (e.g. 1.10.5)"))
        };
        if numbers.len() != 3 {
            return Err(format!("{text:?} is not a Nomad version (e.g. 1.10.5)"));
        }
        Ok(Self {
            major: number(0)?,
            minor: number(1)?,
            patch: number(2)?,
            prerelease,
            metadata,
        })
    }

    fn core(&self) -> (u64, u64, u64) {
        (self.major, self.minor, self.patch)
    }

    /// Ordering by semantic version precedence (a prerelease comes before its release).
    pub fn precedence(&self, other: &Self) -> Ordering {
        self.core().cmp(&other.core()).then_with(|| {
            match (self.prerelease.is_empty(), other.prerelease.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.prerelease.cmp(&other.prerelease),
            }
        })
    }

    /// The release after which `self`'s minor version comes (`1.6` for 1.7.x; `0.12` for
    /// 1.0.x).
    fn previous_minor(&self) -> Option<(u64, u64)> {
        match (self.major, self.minor) {
            (1, 0) => Some((0, 12)),
            (_, 0) => None,
            (major, minor) => Some((major, minor - 1)),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.prerelease.is_empty() {
            write!(f, "-{}", self.prerelease)?;
        }
        if !self.metadata.is_empty() {
            write!(f, "+{}", self.metadata)?;
        }
        Ok(())
    }
}

/// `Ok` with a short description when Nomad supports going from `from` to `to` on a running
/// cluster, `Err` with the reason otherwise.
pub fn supported_step(from: &Version, to: &Version) -> Result<&'static str, String> {
    if to.precedence(from) == Ordering::Less {
        return Err(format!(
            "{from} -> {to} is a downgrade: Nomad does not support downgrading (servers need re-provisioning, clients a drain and an empty data directory)"
        ));
    }
    if (from.major, from.minor) == (to.major, to.minor) {
        return Ok(if to.precedence(from) == Ordering::Equal {
            "same version"
        } else {
            "patch release"
        });
    }
    if to.previous_minor() == Some((from.major, from.minor)) {
        return Ok("next point release");
    }
    Err(format!(
        "{from} -> {to} skips a point release: Nomad is compatible across one point release only; upgrading two or more at once is untested and unsupported (roll to {} first)",
        if to.major == from.major {
            format!("{}.{}.x", from.major, from.minor + 1)
        } else {
            format!("the release after {}.{}", from.major, from.minor)
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_parse_as_nomad_writes_them() {
        assert_eq!(v("1.10.5").core(), (1, 10, 5));
        let pre = v("1.11.0-beta.1+ent");
        assert_eq!(
            (pre.core(), pre.prerelease.as_str(), pre.metadata.as_str()),
            ((1, 11, 0), "beta.1", "ent")
        );
        assert_eq!(v("v1.9.7").to_string(), "1.9.7");
        for bad in ["1.10", "1.10.x", "", "latest", "1.10.5.1"] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_point_release_at_a_time_and_never_down() {
        assert_eq!(
            supported_step(&v("1.10.5"), &v("1.10.5")),
            Ok("same version")
        );
        assert_eq!(
            supported_step(&v("1.10.2"), &v("1.10.5")),
            Ok("patch release")
        );
        assert_eq!(
            supported_step(&v("1.9.7"), &v("1.10.5")),
            Ok("next point release")
        );
        assert_eq!(
            supported_step(&v("0.12.12"), &v("1.0.0")),
            Ok("next point release")
        );
        let skip = supported_step(&v("1.8.4"), &v("1.10.5")).unwrap_err();
        assert!(skip.contains("skips a point release"), "{skip}");
        assert!(skip.contains("1.9.x first"), "{skip}");
        let down = supported_step(&v("1.10.5"), &v("1.9.7")).unwrap_err();
        assert!(down.contains("downgrade"), "{down}");
        assert!(supported_step(&v("1.10.5"), &v("1.10.4")).is_err());
        assert!(supported_step(&v("0.11.3"), &v("1.0.0")).is_err());
        assert!(supported_step(&v("1.10.5"), &v("2.0.0")).is_err());
        // A release candidate of the next point release is a step up; of the same one, a
        // prerelease before the release already running is a downgrade.
        assert!(supported_step(&v("1.9.7"), &v("1.10.0-rc.1")).is_ok());
        assert!(supported_step(&v("1.10.0"), &v("1.10.0-rc.1")).is_err());
    }
}
