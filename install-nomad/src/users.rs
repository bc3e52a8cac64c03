//! The Nomad service account, looked up in and created in the *target's* user database:
//! `<root>/etc/passwd` and `<root>/etc/group` (plus `shadow`/`gshadow` when they exist), never
//! the build machine's.
//!
//! Why edit the files instead of running `useradd --prefix`: `--prefix` needs shadow-utils 4.9+
//! (Ubuntu 20.04 ships 4.8), still reads some settings from the host, writes `lastlog`/`faillog`
//! and insists on files (`shadow`, `login.defs`) that a seeded image root may not have, and
//! `--root` chroots, which needs the target's own libraries. The files' format is stable and
//! small, so the account is added the way `useradd --system` would add it:
//!
//! - the same lock: an `fcntl` write lock on `<root>/etc/.pwd.lock`, as glibc's `lckpwdf` takes;
//! - ids from the system range of `<root>/etc/login.defs` (`SYS_UID_MIN`..`SYS_UID_MAX`, default
//!   100..999), highest free first as `useradd -r` does; the group gets the same number when it is
//!   free; an existing group of the same name is reused;
//! - no login (`/usr/sbin/nologin`), home = the install path, a locked password (`!`) in
//!   `shadow`/`gshadow` when those files exist;
//! - each file rewritten atomically (temporary file, fsync, rename) with its mode and owner
//!   kept, group before passwd so the primary group always exists.
//!
//! On a live host (`--root /`) a user that the files lack but NSS knows (LDAP, sssd) is used as
//! it is rather than shadowed by a new local account.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::files::{write_atomic, FileSpec, Ownership};

use crate::layout::Layout;

/// The shell of a service account that must not log in.
pub const NOLOGIN: &str = "/usr/sbin/nologin";

/// How long to wait for another user-database writer, as `lckpwdf` does.
const LOCK_WAIT: Duration = Duration::from_secs(15);

/// A resolved account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid user name {0:?}: use lower-case letters, digits, `_` and `-`, starting with a letter or `_`, at most 32 characters")]
    Name(String),
    #[error("{path} does not exist: user {user} is looked up and created in the target's user database (seed {path} and the group file with at least a root entry)")]
    NoDatabase { path: PathBuf, user: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} line {line} is not a valid entry: {text:?}")]
    Malformed {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("user {user} does not exist in {path}, and --skip-user says not to create it")]
    Missing { user: String, path: PathBuf },
    #[error("user {user} in {passwd} has primary group {gid}, which {group} does not list")]
    NoPrimaryGroup {
        user: String,
        gid: u32,
        passwd: PathBuf,
        group: PathBuf,
    },
    #[error("no free system {what} between {min} and {max} (see SYS_*_MIN/MAX in {login_defs})")]
    NoFreeId {
        what: &'static str,
        min: u32,
        max: u32,
        login_defs: PathBuf,
    },
    #[error("cannot lock {path}: {reason}")]
    Lock { path: PathBuf, reason: String },
    #[error(transparent)]
    Write(#[from] support::files::WriteError),
}

/// One `passwd` entry (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One `group` entry (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
}

/// A user or group name `useradd` accepts by default (shadow-utils' `[a-z_][a-z0-9_-]*`,
/// without the trailing `$`, at most 32 characters): it ends up in a colon-separated file, so
/// this is also what keeps it from adding fields.
pub fn check_name(name: &str) -> Result<(), UserError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok && name.len() <= 32 {
        Ok(())
    } else {
        Err(UserError::Name(name.to_string()))
    }
}

/// Lines that are not entries: blank, comments, and NIS compat markers (`+`/`-`).
fn skipped(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#') || t.starts_with('+') || t.starts_with('-')
}

/// Parses `passwd` text: `name:password:uid:gid:gecos:home:shell`.
pub fn parse_passwd(text: &str) -> Result<Vec<PasswdEntry>, (usize, String)> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if skipped(line) {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        let parsed = (fields.len() == 7)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten();
        let Some((uid, gid)) = parsed else {
            return Err((i + 1, line.to_string()));
        };
        entries.push(PasswdEntry {
            name: fields[0].to_string(),
            uid,
            gid,
        });
    }
    Ok(entries)
}

/// Parses `group` text: `name:password:gid:members`.
pub fn parse_group(text: &str) -> Result<Vec<GroupEntry>, (usize, String)> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if skipped(line) {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        let gid = (fields.len() == 4)
            .then(|| fields[2].parse().ok())
            .flatten();
        let Some(gid) = gid else {
            return Err((i + 1, line.to_string()));
        };
        entries.push(GroupEntry {
            name: fields[0].to_string(),
            gid,
        });
    }
    Ok(entries)
}

/// The system id range from `login.defs` text (`SYS_UID_MIN`/`SYS_UID_MAX` or the GID pair),
/// defaulting to shadow-utils' 101..999 where a value is missing.
pub fn system_range(login_defs: &str, kind: &str) -> (u32, u32) {
    let value = |key: String| {
        login_defs.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(key.as_str()))
                .then(|| words.next()?.parse::<u32>().ok())
                .flatten()
        })
    };
    let min = value(format!("SYS_{kind}_MIN")).unwrap_or(101);
    let max = value(format!("SYS_{kind}_MAX")).unwrap_or(999);
    (min, max.max(min))
}

/// The highest id in `min..=max` that is not in `used`.
pub fn highest_free(used: &HashSet<u32>, min: u32, max: u32) -> Option<u32> {
    (min..=max).rev().find(|id| !used.contains(id))
}

/// The ids a new system account gets: the highest free uid; for the group, the gid of an
/// existing group of the same name, else the uid's number when it is free as a gid (as
/// `useradd -r -U` does), else the highest free gid. `Err` names the kind of id that ran out.
/// The `bool` says whether a new group is needed.
pub fn choose_ids(
    users: &[PasswdEntry],
    groups: &[GroupEntry],
    name: &str,
    uid_range: (u32, u32),
    gid_range: (u32, u32),
) -> Result<(u32, u32, bool), &'static str> {
    let used_uids: HashSet<u32> = users.iter().map(|u| u.uid).collect();
    let used_gids: HashSet<u32> = groups.iter().map(|g| g.gid).collect();
    let uid = highest_free(&used_uids, uid_range.0, uid_range.1).ok_or("uid")?;
    if let Some(group) = groups.iter().find(|g| g.name == name) {
        return Ok((uid, group.gid, false));
    }
    if !used_gids.contains(&uid) {
        return Ok((uid, uid, true));
    }
    let gid = highest_free(&used_gids, gid_range.0, gid_range.1).ok_or("gid")?;
    Ok((uid, gid, true))
}

/// The target's user database, read and parsed.
struct Database {
    passwd_path: PathBuf,
    group_path: PathBuf,
    passwd_text: String,
    group_text: String,
    users: Vec<PasswdEntry>,
    groups: Vec<GroupEntry>,
}

impl Database {
    fn read(layout: &Layout, user: &str) -> Result<Database, UserError> {
        let passwd_path = layout.etc("passwd");
        let group_path = layout.etc("group");
        for path in [&passwd_path, &group_path] {
            if !path.exists() {
                return Err(UserError::NoDatabase {
                    path: path.clone(),
                    user: user.to_string(),
                });
            }
        }
        let passwd_text = read(&passwd_path)?;
        let group_text = read(&group_path)?;
        let users = parse_passwd(&passwd_text).map_err(|(line, text)| UserError::Malformed {
            path: passwd_path.clone(),
            line,
            text,
        })?;
        let groups = parse_group(&group_text).map_err(|(line, text)| UserError::Malformed {
            path: group_path.clone(),
            line,
            text,
        })?;
        Ok(Database {
            passwd_path,
            group_path,
            passwd_text,
            group_text,
            users,
            groups,
        })
    }

    fn find(&self, layout: &Layout, name: &str) -> Result<Option<Account>, UserError> {
        if let Some(user) = self.users.iter().find(|u| u.name == name) {
            if !self.groups.iter().any(|g| g.gid == user.gid) {
                return Err(UserError::NoPrimaryGroup {
                    user: name.to_string(),
                    gid: user.gid,
                    passwd: self.passwd_path.clone(),
                    group: self.group_path.clone(),
                });
            }
            return Ok(Some(Account {
                name: name.to_string(),
                uid: user.uid,
                gid: user.gid,
            }));
        }
        if layout.root == Path::new("/") {
            if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
                tracing::info!(
                    "user {name} is not in {} but the system knows it (NSS): using uid {}",
                    self.passwd_path.display(),
                    user.uid
                );
                return Ok(Some(Account {
                    name: name.to_string(),
                    uid: user.uid.as_raw(),
                    gid: user.gid.as_raw(),
                }));
            }
        }
        Ok(None)
    }
}

/// Looks the account up in the target's files (and, on a live host, NSS) without changing
/// anything. Fails when the database is missing or malformed, and, unless `create`, when the
/// user does not exist: the check to run before downloading anything.
pub fn preflight(layout: &Layout, name: &str, create: bool) -> Result<Option<Account>, UserError> {
    check_name(name)?;
    let db = Database::read(layout, name)?;
    let found = db.find(layout, name)?;
    if found.is_none() && !create {
        return Err(UserError::Missing {
            user: name.to_string(),
            path: db.passwd_path,
        });
    }
    Ok(found)
}

/// Looks the account up in the target's files; creates it (and its group) as a system account
/// when it is missing and `create` is true. Returns the account and whether it was created.
pub fn ensure_account(
    layout: &Layout,
    name: &str,
    home: &Path,
    create: bool,
) -> Result<(Account, bool), UserError> {
    check_name(name)?;
    let _lock = if create {
        Database::read(layout, name)?;
        Some(PasswordLock::acquire(&layout.etc(".pwd.lock"))?)
    } else {
        None
    };
    // Read under the lock, so a concurrent writer's entry is seen.
    let db = Database::read(layout, name)?;
    if let Some(account) = db.find(layout, name)? {
        return Ok((account, false));
    }
    if !create {
        return Err(UserError::Missing {
            user: name.to_string(),
            path: db.passwd_path,
        });
    }
    let login_defs_path = layout.etc("login.defs");
    let login_defs = fs::read_to_string(&login_defs_path).unwrap_or_default();
    let uid_range = system_range(&login_defs, "UID");
    let gid_range = system_range(&login_defs, "GID");
    let (uid, gid, new_group) = choose_ids(&db.users, &db.groups, name, uid_range, gid_range)
        .map_err(|what| {
            let (min, max) = if what == "uid" { uid_range } else { gid_range };
            UserError::NoFreeId {
                what,
                min,
                max,
                login_defs: login_defs_path.clone(),
            }
        })?;

    if new_group {
        append_line(&db.group_path, &db.group_text, &format!("{name}:x:{gid}:"))?;
        let gshadow = layout.etc("gshadow");
        if gshadow.exists() {
            let text = read(&gshadow)?;
            append_line(&gshadow, &text, &format!("{name}:!::"))?;
        }
    }
    let home = home.display();
    append_line(
        &db.passwd_path,
        &db.passwd_text,
        &format!("{name}:x:{uid}:{gid}:Nomad:{home}:{NOLOGIN}"),
    )?;
    let shadow = layout.etc("shadow");
    if shadow.exists() {
        let text = read(&shadow)?;
        let days = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() / 86_400)
            .unwrap_or(0);
        append_line(&shadow, &text, &format!("{name}:!:{days}::::::"))?;
    }
    Ok((
        Account {
            name: name.to_string(),
            uid,
            gid,
        },
        true,
    ))
}

fn read(path: &Path) -> Result<String, UserError> {
    fs::read_to_string(path).map_err(|source| UserError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Rewrites `path` atomically as `current` plus `line`, keeping its mode and owner.
fn append_line(path: &Path, current: &str, line: &str) -> Result<(), UserError> {
    let meta = fs::metadata(path).map_err(|source| UserError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut text = current.to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    let spec = FileSpec::owned(
        meta.permissions().mode() & 0o7777,
        Ownership::new(meta.uid(), meta.gid()),
    );
    write_atomic(path, text.as_bytes(), spec)?;
    Ok(())
}

/// The `lckpwdf` lock: an exclusive `fcntl` record lock on `<root>/etc/.pwd.lock`, released
/// when dropped (the file descriptor closes).
struct PasswordLock {
    _file: File,
}

impl PasswordLock {
    fn acquire(path: &Path) -> Result<PasswordLock, UserError> {
        let lock_error = |reason: String| UserError::Lock {
            path: path.to_path_buf(),
            reason,
        };
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| lock_error(e.to_string()))?;
        let request = nix::libc::flock {
            l_type: nix::libc::F_WRLCK as i16,
            l_whence: nix::libc::SEEK_SET as i16,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        let started = Instant::now();
        loop {
            match nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETLK(&request)) {
                Ok(_) => return Ok(PasswordLock { _file: file }),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES)
                    if started.elapsed() < LOCK_WAIT =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    return Err(lock_error(format!(
                        "{e} (another program is changing the user database)"
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                          # a comment\n\
                          sys999:x:999:999::/:/usr/sbin/nologin\n\
                          +::::::\n";
    const GROUP: &str = "root:x:0:\ndaemon:x:1:\nsys999:x:999:\nother:x:998:\n";

    fn layout(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            nomad_path: PathBuf::from("/opt/nomad"),
            system_bin_dir: PathBuf::from("/usr/local/bin"),
            consul_path: PathBuf::from("/opt/consul"),
            cni_path: PathBuf::from("/opt/cni/bin"),
        }
    }

    fn seeded_root(passwd: &str, group: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        fs::write(dir.path().join("etc/group"), group).unwrap();
        dir
    }

    #[test]
    fn names_are_checked() {
        for ok in ["nomad", "_svc", "nomad-server", "n0mad"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Nomad",
            "9lives",
            "no:mad",
            "no\nmad",
            "a b",
            &"x".repeat(33),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_and_refuses_malformed_lines() {
        let users = parse_passwd(PASSWD).unwrap();
        assert_eq!(users.len(), 3);
        assert_eq!(users[2].uid, 999);
        assert_eq!(parse_passwd("root:x:0:0\n").unwrap_err().0, 1);
        assert_eq!(parse_group("root:x:zero:\n").unwrap_err().0, 1);
    }

    #[test]
    fn system_ranges() {
        assert_eq!(system_range("", "UID"), (101, 999));
        let defs = "# comment\nSYS_UID_MIN 200\nSYS_UID_MAX   300\nSYS_GID_MIN 150\n";
        assert_eq!(system_range(defs, "UID"), (200, 300));
        assert_eq!(system_range(defs, "GID"), (150, 999));
    }

    #[test]
    fn ids_are_highest_free() {
        let used: HashSet<u32> = [999, 998].into_iter().collect();
        assert_eq!(highest_free(&used, 101, 999), Some(997));
        assert_eq!(highest_free(&used, 998, 999), None);
    }

    #[test]
    fn creates_a_system_user_in_the_root_only() {
        let root = seeded_root(PASSWD, GROUP);
        let home = Path::new("/opt/nomad");
        let (account, created) = ensure_account(&layout(root.path()), "nomad", home, true).unwrap();
        assert!(created);
        // 999 is taken as a uid, so 998 (free as a uid, but taken as a gid by `other`).
        assert_eq!(account.uid, 998);
        assert_eq!(account.gid, 997);
        let passwd = fs::read_to_string(root.path().join("etc/passwd")).unwrap();
        assert!(passwd.starts_with(PASSWD), "existing lines kept");
        assert!(passwd.ends_with("nomad:x:998:997:Nomad:/opt/nomad:/usr/sbin/nologin\n"));
        let group = fs::read_to_string(root.path().join("etc/group")).unwrap();
        assert!(group.ends_with("nomad:x:997:\n"));
        // Run again: found, not duplicated.
        let (again, created) = ensure_account(&layout(root.path()), "nomad", home, true).unwrap();
        assert!(!created);
        assert_eq!(again, account);
        let passwd_again = fs::read_to_string(root.path().join("etc/passwd")).unwrap();
        assert_eq!(passwd, passwd_again);
    }

    #[test]
    fn same_number_for_the_group_when_free_and_shadow_files_follow() {
        let root = seeded_root("root:x:0:0:root:/root:/bin/bash\n", "root:x:0:\n");
        fs::write(
            root.path().join("etc/shadow"),
            "root:*:19000:0:99999:7:::\n",
        )
        .unwrap();
        fs::set_permissions(
            root.path().join("etc/shadow"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        fs::write(root.path().join("etc/gshadow"), "root:*::\n").unwrap();
        fs::write(
            root.path().join("etc/login.defs"),
            "SYS_UID_MAX 499\nSYS_GID_MAX 499\n",
        )
        .unwrap();
        let (account, _) =
            ensure_account(&layout(root.path()), "nomad", Path::new("/opt/nomad"), true).unwrap();
        assert_eq!((account.uid, account.gid), (499, 499));
        let shadow = fs::read_to_string(root.path().join("etc/shadow")).unwrap();
        assert!(
            shadow.lines().last().unwrap().starts_with("nomad:!:"),
            "{shadow}"
        );
        let mode = fs::metadata(root.path().join("etc/shadow"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "mode kept");
        let gshadow = fs::read_to_string(root.path().join("etc/gshadow")).unwrap();
        assert!(gshadow.ends_with("nomad:!::\n"));
    }

    #[test]
    fn an_existing_group_is_reused() {
        let root = seeded_root(
            "root:x:0:0:root:/root:/bin/bash\n",
            "root:x:0:\nnomad:x:555:\n",
        );
        let (account, _) =
            ensure_account(&layout(root.path()), "nomad", Path::new("/opt/nomad"), true).unwrap();
        assert_eq!(account.gid, 555);
        let group = fs::read_to_string(root.path().join("etc/group")).unwrap();
        assert_eq!(group.matches("nomad:").count(), 1);
    }

    #[test]
    fn skip_user_needs_an_existing_user_and_a_database() {
        let root = seeded_root(PASSWD, GROUP);
        let err = ensure_account(
            &layout(root.path()),
            "nomad",
            Path::new("/opt/nomad"),
            false,
        )
        .unwrap_err();
        assert!(matches!(err, UserError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("etc/passwd"), "{err}");
        let (account, created) =
            ensure_account(&layout(root.path()), "sys999", Path::new("/x"), false).unwrap();
        assert_eq!((account.uid, account.gid, created), (999, 999, false));

        let empty = tempfile::tempdir().unwrap();
        let err = ensure_account(
            &layout(empty.path()),
            "nomad",
            Path::new("/opt/nomad"),
            true,
        )
        .unwrap_err();
        assert!(matches!(err, UserError::NoDatabase { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&empty.path().join("etc/passwd").display().to_string()),
            "{err}"
        );
    }
}
