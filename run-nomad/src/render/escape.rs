//! One escaping function per target language. Every value that reaches a generated file goes
//! through exactly one of these (the templates call them as tera filters), so no value can end
//! a string, start a new setting or be expanded by the program that reads the file.

use std::fmt;

/// A value the target language cannot carry; the message says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrepresentable(pub String);

impl fmt::Display for Unrepresentable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unrepresentable {}

/// An HCL (version 1, the parser Nomad's agent configuration uses) quoted string literal.
///
/// - `"` and `\` are backslash-escaped, newline, tab and carriage return use `\n` `\t` `\r`,
///   other control characters (and U+2028/U+2029) use `\uXXXX`.
/// - `$` and `%` are always written `\u0024` and `\u0025`. HCL1's lexer treats `${` inside a
///   string as the start of an interpolation that it follows to the closing `}` (a `"` inside
///   it does not end the string, and escapes are not processed there), and `\$` is not a valid
///   escape. Its unquoting turns `\u0024` into `$` after the lexer has run, so the sequence is
///   inert. `%` is escaped the same way so that `%{` stays inert for HCL2 readers too.
pub fn hcl_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' => push_u4(&mut out, c),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => push_u4(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn push_u4(out: &mut String, c: char) {
    out.push_str(&format!("\\u{:04x}", c as u32));
}

/// One word of a systemd `ExecStart=` line: left bare when it is plain, else double-quoted with
/// C escapes, and in both cases `%` doubled (specifiers). ExecStart= expands `$VAR` and `${VAR}`
/// in the arguments but not in the program path ("the first argument ... may not be a
/// variable"), so `$` is doubled in arguments only. systemd refuses a program path holding a
/// quote, a backslash or a control character, however it is quoted (`string_is_safe()`:
/// "Executable name contains special characters", a fatal unit error).
pub fn unit_exec_word(word: &str, is_program: bool) -> Result<String, Unrepresentable> {
    if word.is_empty() || word.contains('\0') {
        return Err(Unrepresentable(format!(
            "{word:?} cannot be a command-line word"
        )));
    }
    if is_program
        && word
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\'))
    {
        return Err(Unrepresentable(format!(
            "systemd refuses an executable path with a quote, a backslash or a control \
             character: {word:?}"
        )));
    }
    let plain = word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-:+@,=".contains(&b));
    if plain {
        return Ok(word.to_string());
    }
    Ok(unit_quoted(word, !is_program))
}

fn unit_quoted(value: &str, escape_dollar: bool) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '%' => out.push_str("%%"),
            '$' if escape_dollar => out.push_str("$$"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => push_u4(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A systemd setting that takes the rest of the line verbatim (a path, a user name,
/// `StandardOutput=`): specifiers are expanded, so `%` is doubled; control characters, a
/// trailing backslash (a line continuation) and surrounding spaces cannot be carried.
pub fn unit_value(value: &str) -> Result<String, Unrepresentable> {
    if value.chars().any(char::is_control) {
        return Err(Unrepresentable(format!(
            "{value:?} contains a control character, which a unit file line cannot carry"
        )));
    }
    if value.ends_with('\\') || value.trim() != value || value.is_empty() {
        return Err(Unrepresentable(format!(
            "{value:?} is empty, has surrounding spaces or ends with a backslash"
        )));
    }
    Ok(value.replace('%', "%%"))
}

/// Problems every supervisor value shares: the config file is read by Python's configparser
/// with `;` and `#` inline comments, one value per line, and `%(name)s` expansion (and a
/// literal `%(here)s` replacement that even `%%` does not stop).
fn supervisor_line(value: &str) -> Result<(), Unrepresentable> {
    supervisor_line_shown(value, &format!("{value:?}"))
}

/// [`supervisor_line`], naming the value as `shown` in the reason: an environment value may be
/// a secret, so its reasons say "the value of KEY" and never quote it.
fn supervisor_line_shown(value: &str, shown: &str) -> Result<(), Unrepresentable> {
    if value.chars().any(char::is_control) {
        return Err(Unrepresentable(format!(
            "{shown} contains a control character, which a supervisor config line cannot carry"
        )));
    }
    for comment in [" ;", " #", "\t;", "\t#"] {
        if value.contains(comment) {
            return Err(Unrepresentable(format!(
                "{shown} contains {comment:?}, which supervisor reads as the start of a comment"
            )));
        }
    }
    if value.contains("%(here)s") {
        return Err(Unrepresentable(format!(
            "{shown} contains %(here)s, which supervisor always replaces"
        )));
    }
    Ok(())
}

/// One line of a systemd `EnvironmentFile=`: `KEY="value"`. systemd.exec(5): a `"`-quoted
/// value may span lines and "the same escape sequences are recognized as in POSIX shell
/// double-quoted strings": a backslash keeps `"`, `\`, `` ` `` and `$` literal, any other
/// character stands for itself, and nothing is expanded. So those four are backslash-escaped
/// and everything else is written as it is, newlines and control characters included. The file
/// must be UTF-8 without NUL, U+FEFF (a byte order mark) or Unicode noncharacters.
pub fn environment_file_line(key: &str, value: &str) -> Result<String, Unrepresentable> {
    let refused = value.chars().find(|&c| {
        c == '\0'
            || c == '\u{feff}'
            || ('\u{fdd0}'..='\u{fdef}').contains(&c)
            || (c as u32) & 0xfffe == 0xfffe
    });
    if let Some(c) = refused {
        return Err(Unrepresentable(format!(
            "the value of {key} contains U+{:04X}, which a systemd environment file cannot carry",
            c as u32
        )));
    }
    let mut out = format!("{key}=\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '`' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// A supervisor log file path (`stdout_logfile=`, `stderr_logfile=`): supervisor expands it
/// twice, once when it reads the option and again for the process's expansions
/// (`processes_from_section` in supervisor/options.py), so `%` is written `%%%%`.
pub fn supervisor_logfile(value: &str) -> Result<String, Unrepresentable> {
    supervisor_value(value).map(|once| once.replace('%', "%%"))
}

/// A plain supervisor value expanded once (a user name): `%` doubled.
pub fn supervisor_value(value: &str) -> Result<String, Unrepresentable> {
    supervisor_line(value)?;
    if value.trim() != value || value.is_empty() {
        return Err(Unrepresentable(format!(
            "{value:?} is empty or has surrounding spaces"
        )));
    }
    Ok(value.replace('%', "%%"))
}

/// A supervisor `command=`: supervisor splits it with Python's `shlex.split` (POSIX rules), so
/// each word is POSIX-quoted, then `%` is doubled for its expansion.
pub fn supervisor_command<'a>(
    words: impl IntoIterator<Item = &'a str>,
) -> Result<String, Unrepresentable> {
    let mut quoted = Vec::new();
    for word in words {
        supervisor_line(word)?;
        quoted.push(support::shell::quote(word));
    }
    Ok(quoted.join(" ").replace('%', "%%"))
}

/// A supervisor `environment=` entry, `KEY="value"`. supervisor parses the list with a
/// non-POSIX `shlex` (no escapes inside quotes) and strips quote characters from both ends of
/// each value, so the value is wrapped in whichever quote it does not contain, and a value
/// holding both quotes, or starting or ending with one, cannot be carried.
pub fn supervisor_environment(key: &str, value: &str) -> Result<String, Unrepresentable> {
    supervisor_line_shown(value, &format!("the value of {key}"))?;
    if value.starts_with(['"', '\'']) || value.ends_with(['"', '\'']) {
        return Err(Unrepresentable(format!(
            "the value of {key} starts or ends with a quote, which supervisor strips"
        )));
    }
    let quote = match (value.contains('"'), value.contains('\'')) {
        (false, _) => '"',
        (true, false) => '\'',
        (true, true) => {
            return Err(Unrepresentable(format!(
                "the value of {key} contains both ' and \", which supervisor cannot quote"
            )))
        }
    };
    Ok(format!("{key}={quote}{value}{quote}").replace('%', "%%"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_strings_escape_quotes_controls_and_interpolation() {
        assert_eq!(hcl_string("eastus2"), "\"eastus2\"");
        assert_eq!(hcl_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(hcl_string("l1\nl2\t\r"), "\"l1\\nl2\\t\\r\"");
        assert_eq!(hcl_string("${x} %{y}"), "\"\\u0024{x} \\u0025{y}\"");
        assert_eq!(hcl_string("\u{1}\u{7f}\u{85}"), "\"\\u0001\\u007f\\u0085\"");
        assert_eq!(hcl_string("é✓😀"), "\"é✓😀\"");
        assert_eq!(hcl_string(""), "\"\"");
    }

    #[test]
    fn unit_words_and_assignments_are_quoted_for_systemd() {
        assert_eq!(
            unit_exec_word("/opt/nomad/bin/nomad", true).unwrap(),
            "/opt/nomad/bin/nomad"
        );
        assert_eq!(unit_exec_word("-config", false).unwrap(), "-config");
        assert_eq!(
            unit_exec_word("/opt/my nomad/$HOME/%h", false).unwrap(),
            "\"/opt/my nomad/$$HOME/%%h\""
        );
        assert_eq!(
            unit_exec_word("/opt/my nomad/$HOME/%h", true).unwrap(),
            "\"/opt/my nomad/$HOME/%%h\""
        );
        for refused in ["/o'brien/nomad", "/q\"/nomad", "/b\\s/nomad"] {
            assert!(unit_exec_word(refused, true).is_err(), "{refused}");
            assert!(unit_exec_word(refused, false).is_ok(), "{refused}");
        }
        assert_eq!(unit_value("/var/log/100%").unwrap(), "/var/log/100%%");
        assert!(unit_value("a\\").is_err());
        assert!(unit_value("a\nb").is_err());
    }

    #[test]
    fn supervisor_values_are_quoted_or_refused() {
        assert_eq!(
            supervisor_command(["/opt/nomad/bin/nomad", "agent", "-config", "/a b/100%"]).unwrap(),
            "/opt/nomad/bin/nomad agent -config '/a b/100%%'"
        );
        assert_eq!(supervisor_environment("A", "x y").unwrap(), "A=\"x y\"");
        assert_eq!(
            supervisor_environment("A", "say \"hi\"!").unwrap(),
            "A='say \"hi\"!'"
        );
        assert_eq!(supervisor_environment("A", "50%").unwrap(), "A=\"50%%\"");
        for bad in [
            "it's \"both\"",
            "\"quoted\"",
            "x ;comment",
            "a\nb",
            "%(here)s",
        ] {
            assert!(supervisor_environment("A", bad).is_err(), "{bad}");
        }
        assert!(supervisor_value("/log #x").is_err());
        assert_eq!(supervisor_value("/var/log/n%").unwrap(), "/var/log/n%%");
        assert_eq!(
            supervisor_logfile("/var/log/100%/n").unwrap(),
            "/var/log/100%%%%/n"
        );
        assert!(supervisor_logfile("/var/%(here)s").is_err());
    }

    #[test]
    fn environment_file_lines_escape_what_posix_double_quotes_expand() {
        assert_eq!(
            environment_file_line("K", "a \"b\" \\ $x `y` %i\n\u{1}'").unwrap(),
            "K=\"a \\\"b\\\" \\\\ \\$x \\`y\\` %i\n\u{1}'\""
        );
        assert_eq!(environment_file_line("E", "").unwrap(), "E=\"\"");
        for bad in ["\0", "\u{feff}", "\u{fdd0}", "\u{ffff}", "\u{1fffe}"] {
            assert!(environment_file_line("K", bad).is_err(), "{bad:?}");
        }
    }
}
