//! Users and groups as the files under `--root` list them (`<root>/etc/passwd`,
//! `<root>/etc/group`), as `systemd-sysusers --root` reads them: an image being built is not
//! the host, so the host's user database is never asked.

use std::path::Path;

use support::files::under_root;

use super::{invalid, SettingsError};

/// A user or group: its name and numeric id, from `<root>/etc/passwd` / `<root>/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub id: u32,
}

/// A user or group name safe to write into a unit or a supervisor program.
pub(super) fn account_name(flag: &str, name: &str) -> Result<(), SettingsError> {
    let mut chars = name.chars();
    let valid = name.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(invalid(flag, name, "not a valid user or group name"))
    }
}

/// The entries of a passwd- or group-style file: (name, id, primary gid for passwd).
fn read_account_file(path: &Path) -> Result<Vec<(String, u32, u32)>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|cause| SettingsError::Io {
        what: "failed to read",
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let id = fields.get(2)?.parse().ok()?;
            let gid = fields.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
            Some((fields.first()?.to_string(), id, gid))
        })
        .collect())
}

/// Looks a user up in `<root>/etc/passwd`: the user and its primary group from
/// `<root>/etc/group` (the numeric gid stands in when the group has no entry).
pub(super) fn lookup_user(
    root: &Path,
    by: UserQuery<'_>,
) -> Result<(Account, Account), SettingsError> {
    let passwd = under_root(root, Path::new("/etc/passwd"));
    let users = read_account_file(&passwd)?;
    let found = users.iter().find(|(name, uid, _)| match by {
        UserQuery::Name(n) => name == n,
        UserQuery::Uid(u) => *uid == u,
    });
    let Some((name, uid, gid)) = found else {
        return Err(SettingsError::Missing(match by {
            UserQuery::Name(n) => format!("--user {n:?}: no such user in {}", passwd.display()),
            UserQuery::Uid(u) => format!(
                "the config directory is owned by uid {u}, which has no entry in {}: pass --user",
                passwd.display()
            ),
        }));
    };
    let group_file = under_root(root, Path::new("/etc/group"));
    let groups = read_account_file(&group_file)?;
    let group_name = groups
        .iter()
        .find(|(_, id, _)| id == gid)
        .map(|(n, _, _)| n.clone())
        .unwrap_or_else(|| gid.to_string());
    Ok((
        Account {
            name: name.clone(),
            id: *uid,
        },
        Account {
            name: group_name,
            id: *gid,
        },
    ))
}

#[derive(Clone, Copy)]
pub(super) enum UserQuery<'a> {
    Name(&'a str),
    Uid(u32),
}
