//! `retry_join` entries as Nomad's auto-join reads them, and go-discover's `key=value key=value`
//! strings (hashicorp/go-discover, `config.go`): formatting the Azure forms run-nomad writes, and
//! reading a string back by go-discover's rules so that a `--retry-join` entry Nomad could never
//! use is refused before anything is written.
//!
//! Nomad (`command/agent/retry_join.go`) takes each `retry_join` entry as an IP address, or, when
//! it matches `^(exec|provider|dns)=(.+)$`, as a go-netaddrs (`exec=`, `dns=`) or go-discover
//! (`provider=`) configuration; anything else is handed to the join as a host name. A
//! `provider=` string that go-discover cannot parse, or an Azure one its provider calls an
//! "unclear configuration", only shows up as a warning in every join attempt, forever.
//!
//! go-discover's parser: the input is trimmed (Go's `strings.TrimSpace`, any Unicode white
//! space); words are separated by ASCII spaces and `=`; a bare word is trimmed again; a word
//! that starts with `"` runs to the next unescaped `"` and is read with Go's
//! `strconv.Unquote`. Keys may not repeat. `tests/go_discover.rs` checks this reading against
//! HashiCorp's own parser (Debian's `golang-github-hashicorp-go-discover-dev`) on hostile input.

use std::collections::BTreeMap;

/// Formats go-discover's `key=value ...` string; each word is quoted when go-discover would not
/// read it back bare ([`word`]).
pub fn format(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", word(k), word(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One word as go-discover reads it back: bare when it is non-empty and holds no space, `=`,
/// `"`, `\`, control character or other white space (go-discover splits on spaces and `=`, and
/// trims a bare word of Unicode white space), else double-quoted with Go escapes
/// (`strconv.Unquote`).
pub fn word(text: &str) -> String {
    let plain = !text.is_empty()
        && !text
            .chars()
            .any(|c| matches!(c, '=' | '"' | '\\') || c.is_whitespace() || c.is_control());
    if plain {
        return text.to_string();
    }
    let mut out = String::from('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Go's \u takes exactly four hex digits; every control character fits.
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What go-discover's parser makes of a string: the key/value map (`None` for a string with no
/// pairs, as go-discover returns a nil map), or its error.
pub fn parse(input: &str) -> Result<Option<BTreeMap<String, String>>, String> {
    let chars: Vec<char> = input.trim().chars().collect();
    let mut rest: &[char] = &chars;
    let mut map = BTreeMap::new();
    let mut state = Expect::Key;
    let mut key = String::new();
    while !rest.is_empty() {
        let (token, used) = lex(rest);
        rest = &rest[used..];
        match (state, token) {
            (Expect::Key, Token::Text(text)) => {
                if map.contains_key(&text) {
                    return Err(format!("{text}: duplicate key"));
                }
                key = text;
                state = Expect::Equal;
            }
            (Expect::Key, Token::Equal) => {
                return Err(format!(
                    "{key}: an `=` where a key should start (quote a value holding `=`)"
                ))
            }
            (Expect::Key, Token::Error(e)) => {
                return Err(format!("{key}: error with key=value pair {e}"))
            }
            (Expect::Equal, Token::Equal) => state = Expect::Value,
            (Expect::Equal, _) => return Err(format!("{key}: missing '='")),
            (Expect::Value, Token::Text(text)) => {
                map.insert(std::mem::take(&mut key), text);
                state = Expect::Key;
            }
            (Expect::Value, Token::Error(e)) => return Err(format!("{key}: {e}")),
            (Expect::Value, Token::Equal) => return Err(format!("{key}: missing value")),
        }
    }
    match state {
        Expect::Equal => Err(format!("{key}: missing '='")),
        Expect::Value => Err(format!("{key}: missing value")),
        Expect::Key if map.is_empty() => Ok(None),
        Expect::Key => Ok(Some(map)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Key,
    Equal,
    Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Text(String),
    Equal,
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lexing {
    Start,
    Equal,
    Text,
    Quoted,
    QuotedEscape,
    QuotedEnd,
}

/// The next token of `s` and how many characters it used (spaces before it included).
fn lex(s: &[char]) -> (Token, usize) {
    let text = |end: usize| s[..end].iter().collect::<String>().trim().to_string();
    let mut state = Lexing::Start;
    for (i, &c) in s.iter().enumerate() {
        match state {
            Lexing::Start => {
                state = match c {
                    ' ' => Lexing::Start,
                    '=' => Lexing::Equal,
                    '"' => Lexing::Quoted,
                    _ => Lexing::Text,
                }
            }
            Lexing::Equal => return (Token::Equal, i),
            Lexing::Text => {
                if c == '=' || c == ' ' {
                    return (Token::Text(text(i)), i);
                }
            }
            Lexing::Quoted => {
                state = match c {
                    '"' => Lexing::QuotedEnd,
                    '\\' => Lexing::QuotedEscape,
                    _ => Lexing::Quoted,
                }
            }
            Lexing::QuotedEscape => state = Lexing::Quoted,
            Lexing::QuotedEnd => {
                return match go_unquote(&text(i)) {
                    Ok(v) => (Token::Text(v), i),
                    Err(e) => (Token::Error(e), i),
                }
            }
        }
    }
    let end = s.len();
    match state {
        Lexing::Equal => (Token::Equal, end),
        Lexing::Quoted => (Token::Error("unbalanced quotes".into()), end),
        Lexing::QuotedEscape => (Token::Error("unterminated escape sequence".into()), end),
        Lexing::QuotedEnd => match go_unquote(&text(end)) {
            Ok(v) => (Token::Text(v), end),
            Err(e) => (Token::Error(e), end),
        },
        Lexing::Start | Lexing::Text => (Token::Text(text(end)), end),
    }
}

/// Go's `strconv.Unquote` of a double-quoted string: the escapes of the Go specification, no
/// raw newline, no unescaped `"` inside.
pub fn go_unquote(quoted: &str) -> Result<String, String> {
    const SYNTAX: &str = "invalid syntax";
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .ok_or(SYNTAX)?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Result<u32, String> {
        let digits: String = chars.by_ref().take(n).collect();
        if digits.len() != n || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SYNTAX.to_string());
        }
        u32::from_str_radix(&digits, 16).map_err(|_| SYNTAX.to_string())
    };
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' => return Err(SYNTAX.to_string()),
            '\\' => {
                let escaped = chars.next().ok_or(SYNTAX)?;
                let simple = match escaped {
                    'a' => Some(0x07),
                    'b' => Some(0x08),
                    'f' => Some(0x0c),
                    'n' => Some(b'\n'),
                    'r' => Some(b'\r'),
                    't' => Some(b'\t'),
                    'v' => Some(0x0b),
                    '\\' => Some(b'\\'),
                    '"' => Some(b'"'),
                    _ => None,
                };
                if let Some(byte) = simple {
                    out.push(byte);
                    continue;
                }
                match escaped {
                    'x' => out.push(hex(&mut chars, 2)? as u8),
                    '0'..='7' => {
                        let rest: String = chars.by_ref().take(2).collect();
                        let digits = format!("{escaped}{rest}");
                        let value = (digits.len() == 3)
                            .then(|| u32::from_str_radix(&digits, 8).ok())
                            .flatten()
                            .filter(|v| *v <= 255)
                            .ok_or(SYNTAX)?;
                        out.push(value as u8);
                    }
                    'u' | 'U' => {
                        let n = if escaped == 'u' { 4 } else { 8 };
                        let c = char::from_u32(hex(&mut chars, n)?).ok_or(SYNTAX)?;
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    _ => return Err(SYNTAX.to_string()),
                }
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    // \x and octal escapes can make bytes that are not UTF-8; Go keeps them, we show them
    // replaced (only validation uses this).
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Checks one `retry_join` entry the way Nomad and go-discover will read it. Returns the
/// reason it cannot work.
pub fn check_retry_join(entry: &str) -> Result<(), String> {
    if entry.trim().is_empty() {
        return Err("is empty".to_string());
    }
    if entry.chars().any(char::is_control) {
        // Nomad's `^(exec|provider|dns)=(.+)$` does not match across a newline, and no host
        // name or address holds a control character.
        return Err("contains a control character".to_string());
    }
    if entry.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let prefixed = ["exec=", "provider=", "dns="]
        .iter()
        .find(|p| entry.starts_with(**p));
    match prefixed {
        Some(&"provider=") => {
            let map = parse(entry)
                .map_err(|e| format!("go-discover cannot parse it: {e}"))?
                .unwrap_or_default();
            if map.get("provider").is_none_or(|p| p.is_empty()) {
                return Err("go-discover needs a provider name after provider=".to_string());
            }
            if map["provider"] == "azure" {
                azure_form(&map)?;
            }
            Ok(())
        }
        Some(p) if entry.len() == p.len() => Err(format!("nothing follows {p}")),
        Some(_) => Ok(()),
        None if entry.chars().any(char::is_whitespace) => Err(
            "an address or host name cannot hold white space; a go-discover string starts \
             with provider="
                .to_string(),
        ),
        None => Ok(()),
    }
}

/// go-discover's Azure provider uses exactly one of two forms, or answers "unclear
/// configuration": `tag_name` and `tag_value` (both non-empty), or `resource_group` and
/// `vm_scale_set` (both non-empty), never a mix.
pub fn azure_form(map: &BTreeMap<String, String>) -> Result<(), String> {
    let set = |k: &str| map.get(k).is_some_and(|v| !v.is_empty());
    let tags = set("tag_name") && set("tag_value");
    let scale_set = set("resource_group") && set("vm_scale_set");
    let any_tag = set("tag_name") || set("tag_value");
    let any_scale_set = set("resource_group") || set("vm_scale_set");
    if (tags && !any_scale_set) || (scale_set && !any_tag) {
        Ok(())
    } else {
        Err(
            "go-discover's azure provider needs tag_name and tag_value (both non-empty), or \
             resource_group and vm_scale_set, and not both"
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(
            format(&[("provider", "azure"), ("vm_scale_set", "prod-servers")]),
            "provider=azure vm_scale_set=prod-servers"
        );
        assert_eq!(
            format(&[("tag_value", "a b=\"c\"\\\n\u{1}é")]),
            "tag_value=\"a b=\\\"c\\\"\\\\\\n\\u0001é\""
        );
        assert_eq!(format(&[("tag_value", "")]), "tag_value=\"\"");
        // go-discover trims a bare word of Unicode white space: such a word is quoted.
        assert_eq!(word("prod\u{a0}"), "\"prod\u{a0}\"");
        assert_eq!(word("\u{2003}x"), "\"\u{2003}x\"");
    }

    #[test]
    fn formatted_strings_parse_back_to_the_pairs() {
        for value in [
            "plain",
            "two words",
            "a=b",
            "q\"uote",
            "back\\slash",
            "",
            "\u{a0}nb",
            "tab\t",
        ] {
            let text = format(&[("provider", "azure"), ("tag_value", value)]);
            assert_eq!(
                parse(&text).unwrap(),
                map(&[("provider", "azure"), ("tag_value", value)]),
                "{text}"
            );
        }
    }

    #[test]
    fn parsing_follows_go_discover() {
        assert_eq!(parse("  ").unwrap(), None);
        assert_eq!(
            parse("provider=aws  region=eu-west-1").unwrap(),
            map(&[("provider", "aws"), ("region", "eu-west-1")])
        );
        assert_eq!(parse("a=\"x\"b=1").unwrap(), map(&[("a", "x"), ("b", "1")]));
        assert!(parse("a=1 a=2").unwrap_err().contains("duplicate key"));
        assert!(parse("a").unwrap_err().contains("missing '='"));
        assert!(parse("a=").unwrap_err().contains("missing value"));
        assert!(parse("a=b=c")
            .unwrap_err()
            .contains("where a key should start"));
        assert!(parse("a=\"x").unwrap_err().contains("unbalanced quotes"));
        assert!(parse("a=\"x\\")
            .unwrap_err()
            .contains("unterminated escape"));
        assert!(parse("a=\"\\q\"").unwrap_err().contains("invalid syntax"));
    }

    #[test]
    fn go_unquote_decodes_go_escapes() {
        assert_eq!(
            go_unquote(r#""a\tb\u00e9\U0001F600\x41\101\"\\""#).unwrap(),
            "a\tbé😀AA\"\\"
        );
        for bad in [
            r#""\'""#,
            r#""\x4""#,
            r#""\400""#,
            r#""\ud800""#,
            "\"a\nb\"",
            "x",
        ] {
            assert!(go_unquote(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retry_join_entries_are_checked_as_nomad_reads_them() {
        for ok in [
            "10.0.0.4",
            "fd00::4",
            "nomad-1.internal:4648",
            "dns=nomad.service.consul",
            "exec=/usr/local/bin/discover servers",
            "provider=azure tag_name=cluster tag_value=prod subscription_id=s",
            "provider=azure resource_group=rg vm_scale_set=srv",
            "provider=aws tag_key=k tag_value=v",
        ] {
            check_retry_join(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, reason) in [
            ("", "empty"),
            ("a\nb", "control"),
            ("nomad 1", "white space"),
            ("dns=", "nothing follows"),
            ("provider=azure tag_value=\"x", "unbalanced"),
            ("provider=azure tag_name=k tag_value=\"\"", "azure provider"),
            (
                "provider=azure tag_name=k tag_value=v resource_group=r vm_scale_set=s",
                "not both",
            ),
            ("provider=azure a=1 a=2", "duplicate"),
        ] {
            let err = check_retry_join(bad).unwrap_err();
            assert!(err.contains(reason), "{bad:?}: {err}");
        }
    }
}
