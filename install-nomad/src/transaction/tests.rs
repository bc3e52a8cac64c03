use super::*;

/// A root with an old `bin/nomad` and a link to it, and a staging directory holding the
/// new binary and a receipt.
struct Fixture {
    root: tempfile::TempDir,
    journal: Journal,
}

impl Fixture {
    fn new() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("opt/nomad/bin")).unwrap();
        fs::create_dir_all(r.join("opt/nomad/.staging")).unwrap();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        fs::write(r.join("opt/nomad/bin/nomad"), "old").unwrap();
        fs::write(r.join("opt/nomad/receipt"), "old receipt").unwrap();
        std::os::unix::fs::symlink("/old/nomad", r.join("usr/bin/nomad")).unwrap();
        fs::write(r.join("opt/nomad/.staging/nomad"), "new").unwrap();
        fs::write(r.join("opt/nomad/.staging/receipt"), "new receipt").unwrap();
        let place = |staged: &str, target: &str, bytes: &[u8]| Step::Place {
            staged: PathBuf::from(staged),
            target: PathBuf::from(target),
            sha256: support::hash::sha256_hex(bytes),
        };
        let journal = Journal {
            what: "Nomad new".into(),
            steps: vec![
                Step::dir(Path::new("/opt/nomad/data"), FileSpec::mode(0o700), true),
                place("/opt/nomad/.staging/nomad", "/opt/nomad/bin/nomad", b"new"),
                Step::Symlink {
                    at: PathBuf::from("/usr/bin/nomad"),
                    value: PathBuf::from("/opt/nomad/bin/nomad"),
                },
                place(
                    "/opt/nomad/.staging/receipt",
                    "/opt/nomad/receipt",
                    b"new receipt",
                ),
            ],
            staging: vec![PathBuf::from("/opt/nomad/.staging")],
        };
        Fixture { root, journal }
    }

    fn path(&self, inside: &str) -> PathBuf {
        under_root(self.root.path(), Path::new(inside))
    }

    fn journal_path(&self) -> PathBuf {
        self.path("/opt/nomad").join(JOURNAL_NAME)
    }

    fn commit(&self, hook: Option<&CommitHook>) -> Result<Committed, CommitError> {
        commit(self.root.path(), &self.journal_path(), &self.journal, hook)
    }

    /// (binary, link, receipt, data dir exists)
    fn state(&self) -> (String, String, String, bool) {
        (
            fs::read_to_string(self.path("/opt/nomad/bin/nomad")).unwrap(),
            fs::read_link(self.path("/usr/bin/nomad"))
                .unwrap()
                .display()
                .to_string(),
            fs::read_to_string(self.path("/opt/nomad/receipt")).unwrap(),
            self.path("/opt/nomad/data").is_dir(),
        )
    }

    /// Every name under the root that is not part of an install.
    fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        for dir in ["/opt/nomad", "/opt/nomad/bin", "/usr/bin"] {
            for entry in fs::read_dir(self.path(dir)).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    found.push(format!("{dir}/{name}"));
                }
            }
        }
        found
    }
}

fn new_state() -> (String, String, String, bool) {
    (
        "new".into(),
        "/opt/nomad/bin/nomad".into(),
        "new receipt".into(),
        true,
    )
}

fn old_state() -> (String, String, String, bool) {
    (
        "old".into(),
        "/old/nomad".into(),
        "old receipt".into(),
        false,
    )
}

#[test]
fn a_commit_places_everything_and_leaves_nothing_behind() {
    let f = Fixture::new();
    let done = f.commit(None).unwrap();
    assert_eq!(f.state(), new_state());
    assert_eq!(done.created_dirs, [PathBuf::from("/opt/nomad/data")]);
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn a_stop_at_every_point_is_completed_by_recovery() {
    let total = Fixture::new().journal.steps.len() + 5;
    for stop in 0..total {
        let f = Fixture::new();
        let hook = CommitHook::new(move |p| {
            assert_eq!(p.total, total);
            if p.index == stop {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        let err = f.commit(Some(&hook)).unwrap_err();
        assert!(
            matches!(err, CommitError::Interrupted { index, .. } if index == stop),
            "{err}"
        );
        let recovered = recover(f.root.path(), &f.journal_path()).unwrap();
        // Until the journal is written the old install stands (and stays); from then on
        // the new one is completed.
        if stop == 0 {
            assert_eq!(recovered, None);
            assert_eq!(f.state(), old_state(), "stopped at {stop}");
        } else {
            assert_eq!(
                recovered.as_deref(),
                (stop < total - 3).then_some("Nomad new"),
                "stopped at {stop}"
            );
            assert_eq!(f.state(), new_state(), "stopped at {stop}");
        }
        for dir in ["/opt/nomad", "/opt/nomad/bin", "/usr/bin"] {
            remove_leftovers(&f.path(dir));
        }
        let _ = fs::remove_dir_all(f.path("/opt/nomad/.staging"));
        assert!(
            f.leftovers().is_empty(),
            "stopped at {stop}: {:?}",
            f.leftovers()
        );
    }
}

#[test]
fn a_failing_step_undoes_the_others_and_keeps_no_journal() {
    let f = Fixture::new();
    // The receipt, placed last, is in the way as a directory: three steps ran before.
    fs::remove_file(f.path("/opt/nomad/receipt")).unwrap();
    fs::create_dir(f.path("/opt/nomad/receipt")).unwrap();
    let err = f.commit(None).unwrap_err();
    assert!(matches!(err, CommitError::RolledBack(_)), "{err}");
    assert!(
        err.to_string().contains("a directory is in the way"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(f.path("/opt/nomad/bin/nomad")).unwrap(),
        "old"
    );
    assert_eq!(
        fs::read_link(f.path("/usr/bin/nomad")).unwrap(),
        Path::new("/old/nomad")
    );
    assert!(!f.path("/opt/nomad/data").exists());
    assert!(!f.path("/opt/nomad/.staging").exists());
    assert!(!f.journal_path().exists());
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn an_undo_interrupted_midway_still_replays_forward() {
    // Undo of a placed file: first back to staging, then the backup back. Stopped between
    // the two, the journal's replay still completes the new install.
    let f = Fixture::new();
    let hook = CommitHook::new(|p| {
        if p.index == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert!(f.commit(Some(&hook)).is_err());
    fs::rename(
        f.path("/opt/nomad/bin/nomad"),
        f.path("/opt/nomad/.staging/nomad"),
    )
    .unwrap();
    assert!(!f.path("/opt/nomad/bin/nomad").exists());
    recover(f.root.path(), &f.journal_path()).unwrap();
    assert_eq!(f.state(), new_state());
}

#[test]
fn a_replay_refuses_bytes_that_are_not_the_planned_ones() {
    let f = Fixture::new();
    let hook = CommitHook::new(|p| {
        if p.index == 1 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert!(f.commit(Some(&hook)).is_err());
    fs::write(f.path("/opt/nomad/.staging/nomad"), "swapped").unwrap();
    let err = recover(f.root.path(), &f.journal_path()).unwrap_err();
    assert!(
        err.to_string().contains("changed since it was verified"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(f.path("/opt/nomad/bin/nomad")).unwrap(),
        "old"
    );
}

#[test]
fn leftovers_are_recognised_by_name_only() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        ".nomad.install-nomad-backup",
        ".nomad.install-nomad-new",
        ".install-nomad-journal.json.abc123.tmp",
        "nomad",
        ".hidden",
        "x.install-nomad-backup",
    ] {
        fs::write(dir.path().join(name), "").unwrap();
    }
    let mut removed: Vec<String> = remove_leftovers(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            ".install-nomad-journal.json.abc123.tmp",
            ".nomad.install-nomad-backup",
            ".nomad.install-nomad-new"
        ]
    );
}

#[test]
fn existing_directories_are_fixed_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o777)).unwrap();
    assert!(ensure_dir(&bin, FileSpec::mode(0o755), true)
        .unwrap()
        .is_empty());
    assert_eq!(
        fs::metadata(&bin).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    assert!(ensure_dir(&file, FileSpec::mode(0o755), true).is_err());
    let deep = dir.path().join("a/b/c");
    assert_eq!(
        ensure_dir(&deep, FileSpec::mode(0o700), false).unwrap(),
        [dir.path().join("a"), dir.path().join("a/b"), deep.clone()]
    );
    assert_eq!(
        fs::metadata(&deep).unwrap().permissions().mode() & 0o7777,
        0o700
    );
}
