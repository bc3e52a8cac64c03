//! What the watcher has done, kept across restarts in a small JSON file (0600, written
//! atomically), so that a restarted watcher does not act on an event twice and knows what to
//! undo if an event it acted on is withdrawn while the VM lives on.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use support::files::{write_atomic, FileSpec};

/// The default state file.
pub const DEFAULT_PATH: &str = "/var/lib/run-nomad/scheduled-events.json";

/// One event the watcher acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handled {
    pub event_id: String,
    pub event_type: String,
    /// Unix seconds when the watcher first saw it.
    pub first_seen: u64,
    /// The node the watcher drained, when it did.
    #[serde(default)]
    pub drained_node: Option<String>,
    /// The watcher stopped (or asked the service manager to stop) Nomad for it.
    #[serde(default)]
    pub stopped_nomad: bool,
    /// The client drained itself on the watcher's SIGTERM (`drain_on_shutdown`); its node is
    /// left ineligible, which without a token the watcher cannot undo.
    #[serde(default)]
    pub self_drained: bool,
    /// Everything for it is done (approved, or nothing left to approve).
    #[serde(default)]
    pub finished: bool,
}

impl Handled {
    pub fn first_seen_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.first_seen)
    }
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub handled: Vec<Handled>,
}

impl State {
    pub fn get(&self, event_id: &str) -> Option<&Handled> {
        self.handled
            .iter()
            .find(|h| h.event_id.eq_ignore_ascii_case(event_id))
    }

    pub fn get_mut(&mut self, event_id: &str) -> Option<&mut Handled> {
        self.handled
            .iter_mut()
            .find(|h| h.event_id.eq_ignore_ascii_case(event_id))
    }

    pub fn remove(&mut self, event_id: &str) {
        self.handled
            .retain(|h| !h.event_id.eq_ignore_ascii_case(event_id));
    }
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; none yet is empty. An unreadable or corrupt file is reported and
    /// treated as empty: every step the watcher takes is safe to repeat.
    pub fn load(&self) -> State {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!(
                        "ignoring the watcher state {}: not what this version writes ({e})",
                        self.path.display()
                    );
                    State::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                tracing::warn!("ignoring the watcher state {}: {e}", self.path.display());
                State::default()
            }
        }
    }

    /// Saves the state (creating its directory, 0700). A failure is logged, not fatal: the
    /// event still has to be handled.
    pub fn save(&self, state: &State) {
        if let Err(e) = self.try_save(state) {
            tracing::warn!("could not save the watcher state: {e}");
        }
    }

    fn try_save(&self, state: &State) -> Result<(), String> {
        if let Some(dir) = self.path.parent() {
            if !dir.as_os_str().is_empty() && !dir.is_dir() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
            }
        }
        let mut text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
        text.push('\n');
        write_atomic(&self.path, text.as_bytes(), FileSpec::mode(0o600)).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saves_and_loads_and_survives_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("deep/state.json"));
        assert_eq!(file.load(), State::default());
        let state = State {
            handled: vec![Handled {
                event_id: "E1".into(),
                event_type: "Terminate".into(),
                first_seen: 1_800_000_000,
                drained_node: Some("node-1".into()),
                stopped_nomad: true,
                self_drained: false,
                finished: false,
            }],
        };
        file.save(&state);
        assert_eq!(file.load(), state);
        assert!(file.load().get("e1").is_some());
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(dir.path().join("deep"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        std::fs::write(file.path(), "{not json").unwrap();
        assert_eq!(file.load(), State::default());
    }
}
