//! Packer's `-machine-readable` output, parsed. Pure: lines in, events and a transcript out.
//!
//! Format (Packer docs, "Machine-readable output"): one record per line,
//! `timestamp,target,type,data...`. Inside data, a comma is written `%!(PACKER_COMMA)`, a newline
//! a literal `\n` and a carriage return a literal `\r`. `ui` records carry `say`, `message` or
//! `error` and the text; `artifact` records describe each artifact (`builder-id`, `id`,
//! `string`, `files-count`, `file`, `end`); `error-count` and `<target>,error,<message>` close a
//! failed build. A sample recorded from Debian's Packer 1.6.6 is
//! `../shared/fixtures/packer/null-build-machine-readable.txt`.

/// One machine-readable record with its data fields unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub timestamp: u64,
    /// The build the record is about (`null.local`); empty for Packer-wide records.
    pub target: String,
    pub kind: String,
    pub data: Vec<String>,
}

/// Parses one line; `None` when it is not a machine-readable record (Packer can print plain
/// text, such as a crash report, even in machine-readable mode).
pub fn parse_line(line: &str) -> Option<Line> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = line.split(',');
    let timestamp = fields.next()?;
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let timestamp = timestamp.parse().ok()?;
    let target = unescape(fields.next()?);
    let kind = fields.next()?.to_string();
    if kind.is_empty() {
        return None;
    }
    let data = fields.map(unescape).collect();
    Some(Line {
        timestamp,
        target,
        kind,
        data,
    })
}

/// Undoes Packer's escaping of one field.
pub fn unescape(field: &str) -> String {
    let field = field.replace("%!(PACKER_COMMA)", ",");
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('n') => {
                    chars.next();
                    out.push('\n');
                    continue;
                }
                Some('r') => {
                    chars.next();
                    out.push('\r');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// How loud a `ui` record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiLevel {
    Say,
    Message,
    Error,
}

/// What a record means to a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Human-readable output: Packer's own lines and the provisioners' output.
    Ui { level: UiLevel, text: String },
    /// How many artifacts a build produced.
    ArtifactCount { target: String, count: usize },
    /// One property of artifact `index` of `target`.
    Artifact {
        target: String,
        index: usize,
        key: String,
        values: Vec<String>,
    },
    /// How many builds failed.
    ErrorCount(usize),
    /// The error that ended build `target`.
    BuildError { target: String, message: String },
    /// A record this tool has no use for.
    Other(Line),
}

impl From<Line> for Event {
    fn from(line: Line) -> Self {
        match (line.kind.as_str(), line.data.as_slice()) {
            ("ui", [level, text, ..]) => {
                let level = match level.as_str() {
                    "say" => Some(UiLevel::Say),
                    "message" => Some(UiLevel::Message),
                    "error" => Some(UiLevel::Error),
                    _ => None,
                };
                match level {
                    Some(level) => Event::Ui {
                        level,
                        text: text.clone(),
                    },
                    None => Event::Other(line),
                }
            }
            ("artifact-count", [count]) => match count.parse() {
                Ok(count) => Event::ArtifactCount {
                    target: line.target,
                    count,
                },
                Err(_) => Event::Other(line),
            },
            ("artifact", [index, key, values @ ..]) => match index.parse() {
                Ok(index) => Event::Artifact {
                    target: line.target.clone(),
                    index,
                    key: key.clone(),
                    values: values.to_vec(),
                },
                Err(_) => Event::Other(line),
            },
            ("error-count", [count]) => match count.parse() {
                Ok(count) => Event::ErrorCount(count),
                Err(_) => Event::Other(line),
            },
            ("error", [message, ..]) => Event::BuildError {
                target: line.target,
                message: message.clone(),
            },
            _ => Event::Other(line),
        }
    }
}

/// The readable lines of a `ui` event: one per line of text, blank lines and trailing spaces
/// dropped (Packer starts some messages with `\n` for spacing).
pub fn readable_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
}

/// How much a line of output matters, for display and for error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Debug,
    Info,
    Warn,
    Error,
}

/// The severity of one line of a `ui` event. Packer shows everything a provisioner writes to
/// stderr as `ui,error`, but our own tools (install-nomad) log progress to stderr with the
/// level in front (`support::cli` format: ` INFO message`): such lines keep their own level.
pub fn severity(level: UiLevel, line: &str) -> Severity {
    if level != UiLevel::Error {
        return Severity::Info;
    }
    // Packer prefixes provisioner output with `==> <build>: `.
    let message = line
        .strip_prefix("==> ")
        .and_then(|rest| rest.split_once(": "))
        .map_or(line, |(_, message)| message)
        .trim_start();
    let tool_level = [
        ("TRACE ", Severity::Debug),
        ("DEBUG ", Severity::Debug),
        ("INFO ", Severity::Info),
        ("WARN ", Severity::Warn),
    ];
    tool_level
        .iter()
        .find(|(prefix, _)| message.starts_with(prefix))
        .map_or(Severity::Error, |(_, severity)| *severity)
}

/// An artifact as Packer described it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Artifact {
    pub target: String,
    pub index: usize,
    pub builder_id: String,
    pub id: String,
    /// The builder's description: for azure-arm, `Key: value` lines such as
    /// `ManagedImageId:` and `ManagedImageSharedImageGalleryId:` (packer-plugin-azure
    /// `builder/azure/arm/artifact.go`, `String()`).
    pub string: String,
    pub files: Vec<String>,
}

impl Artifact {
    /// The value of a `Key: value` line of the artifact's description.
    pub fn described(&self, key: &str) -> Option<&str> {
        self.string.lines().find_map(|line| {
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        })
    }
}

/// Everything worth keeping from a build's stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    pub artifacts: Vec<Artifact>,
    /// `<target>,error,<message>` records: the errors that ended builds.
    pub build_errors: Vec<(String, String)>,
    /// `ui,error` text, most recent last (bounded by [`Transcript::UI_ERRORS_KEPT`]): where a
    /// failing provisioner's stderr shows up.
    pub ui_errors: Vec<String>,
    pub error_count: Option<usize>,
}

impl Transcript {
    /// How many `ui,error` lines are kept for an error report.
    pub const UI_ERRORS_KEPT: usize = 40;

    /// Folds one event in.
    pub fn record(&mut self, event: &Event) {
        match event {
            Event::Ui {
                level: UiLevel::Error,
                text,
            } => {
                for line in readable_lines(text) {
                    // A tool's progress on stderr is not an error worth reporting.
                    if severity(UiLevel::Error, line) < Severity::Warn {
                        continue;
                    }
                    if self.ui_errors.len() == Self::UI_ERRORS_KEPT {
                        self.ui_errors.remove(0);
                    }
                    self.ui_errors.push(line.to_string());
                }
            }
            Event::Artifact {
                target,
                index,
                key,
                values,
            } => {
                let artifact = self.artifact_mut(target, *index);
                let first = values.first().cloned().unwrap_or_default();
                match key.as_str() {
                    "builder-id" => artifact.builder_id = first,
                    "id" => artifact.id = first,
                    "string" => artifact.string = values.join(","),
                    // `file,<n>,<name>`
                    "file" => artifact.files.extend(values.get(1).cloned()),
                    _ => {}
                }
            }
            Event::BuildError { target, message } => {
                self.build_errors.push((target.clone(), message.clone()));
            }
            Event::ErrorCount(count) => self.error_count = Some(*count),
            _ => {}
        }
    }

    fn artifact_mut(&mut self, target: &str, index: usize) -> &mut Artifact {
        let position = self
            .artifacts
            .iter()
            .position(|a| a.target == target && a.index == index);
        match position {
            Some(i) => &mut self.artifacts[i],
            None => {
                self.artifacts.push(Artifact {
                    target: target.to_string(),
                    index,
                    ..Artifact::default()
                });
                self.artifacts.last_mut().expect("just pushed")
            }
        }
    }

    /// Parses a whole transcript (lines that are not records are skipped).
    pub fn from_text(text: &str) -> Self {
        let mut transcript = Self::default();
        for line in text.lines().filter_map(parse_line) {
            transcript.record(&Event::from(line));
        }
        transcript
    }

    /// The error report for a failed build: the errors that ended builds, then the last error
    /// output (where install-nomad's own message appears).
    pub fn error_report(&self) -> String {
        let mut out = String::new();
        if !self.build_errors.is_empty() {
            out.push_str("Packer reported:");
            for (target, message) in &self.build_errors {
                for (i, line) in readable_lines(message).enumerate() {
                    if i == 0 && !target.is_empty() {
                        out.push_str(&format!("\n  {target}: {line}"));
                    } else {
                        out.push_str(&format!("\n  {line}"));
                    }
                }
            }
        }
        if !self.ui_errors.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str("last error output:");
            for line in &self.ui_errors {
                out.push_str(&format!("\n  {line}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_fields_and_unescapes_commas_and_newlines() {
        let line = parse_line(
            "1795803124,,ui,error,Error: Failed to prepare build: \"azure-arm\"\\n\\n* A%!(PACKER_COMMA) B\\r\n",
        )
        .unwrap();
        assert_eq!(line.timestamp, 1795803124);
        assert_eq!(line.target, "");
        assert_eq!(line.kind, "ui");
        assert_eq!(
            line.data,
            vec![
                "error".to_string(),
                "Error: Failed to prepare build: \"azure-arm\"\n\n* A, B\r".to_string()
            ]
        );
    }

    #[test]
    fn non_records_are_not_parsed() {
        assert_eq!(parse_line("# a comment"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("panic: runtime error"), None);
        assert_eq!(parse_line("12,,"), None);
    }

    #[test]
    fn a_backslash_not_before_n_or_r_stays() {
        assert_eq!(unescape(r"C:\tmp\\x"), r"C:\tmp\\x");
        assert_eq!(unescape(r"a\nb"), "a\nb");
    }

    #[test]
    fn events_are_classified() {
        let event = |s: &str| Event::from(parse_line(s).unwrap());
        assert_eq!(
            event("1,,ui,say,==> null.local: hi"),
            Event::Ui {
                level: UiLevel::Say,
                text: "==> null.local: hi".into()
            }
        );
        assert_eq!(
            event("1,x,artifact-count,2"),
            Event::ArtifactCount {
                target: "x".into(),
                count: 2
            }
        );
        assert_eq!(event("1,,error-count,1"), Event::ErrorCount(1));
        assert_eq!(
            event("1,null,error,boom%!(PACKER_COMMA) really"),
            Event::BuildError {
                target: "null".into(),
                message: "boom, really".into()
            }
        );
        assert!(matches!(event("1,,version,1.6.6"), Event::Other(_)));
    }

    #[test]
    fn artifact_description_lines_are_found() {
        let artifact = Artifact {
            string: "Azure.ResourceManagement.VMImage:\n\nOSType: Linux\nManagedImageId: /subscriptions/s/x\nManagedImageSharedImageGalleryId: /subscriptions/s/g/versions/1.0.0\n".into(),
            ..Artifact::default()
        };
        assert_eq!(
            artifact.described("ManagedImageId"),
            Some("/subscriptions/s/x")
        );
        assert_eq!(
            artifact.described("ManagedImageSharedImageGalleryId"),
            Some("/subscriptions/s/g/versions/1.0.0")
        );
        assert_eq!(artifact.described("Missing"), None);
    }

    #[test]
    fn stderr_lines_of_our_tools_keep_their_level() {
        let e = UiLevel::Error;
        assert_eq!(
            severity(e, "==> null.local:  INFO downloading http://x/nomad.zip"),
            Severity::Info
        );
        assert_eq!(
            severity(
                e,
                "==> azure-arm.nomad:  WARN install failed: undoing 2 step(s)"
            ),
            Severity::Warn
        );
        assert_eq!(
            severity(e, "==> null.local: error: refusing http://x: bad checksum"),
            Severity::Error
        );
        assert_eq!(
            severity(e, "Build 'x' errored after 1s: boom"),
            Severity::Error
        );
        assert_eq!(severity(UiLevel::Say, "==> x: ERROR y"), Severity::Info);

        let mut t = Transcript::default();
        t.record(&Event::Ui {
            level: e,
            text: "==> null.local:  INFO downloading".into(),
        });
        t.record(&Event::Ui {
            level: e,
            text: "==> null.local: error: refusing".into(),
        });
        assert_eq!(t.ui_errors, ["==> null.local: error: refusing"]);
    }

    #[test]
    fn ui_errors_are_bounded() {
        let mut t = Transcript::default();
        for i in 0..(Transcript::UI_ERRORS_KEPT + 5) {
            t.record(&Event::Ui {
                level: UiLevel::Error,
                text: format!("e{i}"),
            });
        }
        assert_eq!(t.ui_errors.len(), Transcript::UI_ERRORS_KEPT);
        assert_eq!(t.ui_errors[0], "e5");
    }
}
