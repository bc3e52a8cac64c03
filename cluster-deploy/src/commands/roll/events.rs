//! What a roll says while it works: one event per step, as a line of text
//! (`[  1m05s] servers: ...`) or, with `--json`, one JSON object per line for automation:
//! `{"event": "<kind>", "elapsed_s": <seconds since the roll started>, "message": "<the text
//! line>", ...fields}`. Events go to stdout as they happen (flushed each), so a pipe or a CI log
//! sees the roll move.
//!
//! Kinds: `start`, `state` (every instance, before and after), `check`, `plan`, `snapshot`,
//! `surge`, `waiting`, `gate`, `version`, `leadership`, `delete`, `left`, `peer-removed`,
//! `eligibility`, `drain`, `trim` (a pool above its count once no old instance is left), `note`,
//! `done`, `stopped` (with the report).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::clock::Clock;

pub(super) struct Events<'a> {
    out: &'a mut dyn Write,
    json: bool,
    clock: Arc<dyn Clock>,
    start: Duration,
}

impl<'a> Events<'a> {
    pub(super) fn new(out: &'a mut dyn Write, json: bool, clock: Arc<dyn Clock>) -> Self {
        let start = clock.now();
        Self {
            out,
            json,
            clock,
            start,
        }
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.clock.now().saturating_sub(self.start)
    }

    /// One event. `fields` (an object, or null) adds machine-readable detail to the JSON form.
    pub(super) fn emit(&mut self, kind: &str, message: impl Into<String>, fields: Value) {
        let message = message.into();
        let elapsed = self.elapsed();
        let result = if self.json {
            let mut object = Map::new();
            object.insert("event".into(), json!(kind));
            object.insert(
                "elapsed_s".into(),
                json!((elapsed.as_millis() as f64) / 1000.0),
            );
            object.insert("message".into(), json!(message));
            if let Value::Object(extra) = fields {
                object.extend(extra);
            }
            writeln!(self.out, "{}", Value::Object(object))
        } else {
            let mut result = Ok(());
            for (i, line) in message.lines().enumerate() {
                result = result.and_then(|()| {
                    if i == 0 {
                        writeln!(self.out, "[{:>7}] {line}", clock_text(elapsed))
                    } else {
                        writeln!(self.out, "          {line}")
                    }
                });
            }
            result
        };
        // A closed stdout must not stop a roll half way: the log still has everything.
        if let Err(e) = result.and_then(|()| self.out.flush()) {
            tracing::warn!("could not write the event {kind:?} to stdout: {e}");
        }
        tracing::debug!(target: "roll", kind, "{message}");
    }
}

/// `5s`, `1m05s`, `1h02m`: short and fixed in shape, for the text lines.
pub(super) fn clock_text(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    }
}

/// A duration as an operator writes it (`30s`, `20m`, `1h`, `1m30s`): Go's form without its
/// trailing zero units.
pub(super) fn duration_text(d: Duration) -> String {
    let mut text = support::go_duration::format(d);
    for zero in ["m0s", "h0m"] {
        if text.ends_with(zero) {
            text.truncate(text.len() - 2);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    struct Fixed(Mutex<Duration>);
    impl Clock for Fixed {
        fn now(&self) -> Duration {
            *self.0.lock().unwrap()
        }
        fn sleep(&self, d: Duration, _: &AtomicBool) {
            *self.0.lock().unwrap() += d;
        }
    }

    #[test]
    fn text_and_json_lines() {
        let clock = Arc::new(Fixed(Mutex::new(Duration::from_secs(100))));
        let mut text = Vec::new();
        {
            let mut events = Events::new(&mut text, false, clock.clone());
            clock.sleep(Duration::from_secs(65), &AtomicBool::new(false));
            events.emit(
                "surge",
                "servers: 3 -> 4 instances\nsecond line",
                json!({"to": 4}),
            );
        }
        let text = String::from_utf8(text).unwrap();
        assert_eq!(
            text,
            "[  1m05s] servers: 3 -> 4 instances\n          second line\n"
        );
        let mut lines = Vec::new();
        {
            let mut events = Events::new(&mut lines, true, clock.clone());
            events.emit("surge", "servers: 3 -> 4", json!({"to": 4}));
        }
        let event: Value = serde_json::from_slice(&lines).unwrap();
        assert_eq!(event["event"], "surge");
        assert_eq!(event["to"], 4);
        assert_eq!(event["elapsed_s"], 0.0);
    }

    #[test]
    fn durations_read_as_written() {
        assert_eq!(duration_text(Duration::from_secs(30)), "30s");
        assert_eq!(duration_text(Duration::from_secs(1200)), "20m");
        assert_eq!(duration_text(Duration::from_secs(3600)), "1h");
        assert_eq!(duration_text(Duration::from_secs(90)), "1m30s");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1.5s");
    }
}
