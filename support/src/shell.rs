//! POSIX shell quoting. Every value that reaches a shell line (custom data, the Packer
//! provisioning script, `--dry-run` output) goes through [`quote`], so no value can end a word,
//! start a new command or expand a variable.

/// Quotes one word for a POSIX shell. Words made only of characters no shell treats specially
/// are left bare for readability; anything else is single-quoted, with `'` written as `'\''`.
pub fn quote(word: &str) -> String {
    // `=` is inert inside an argument, but a bare leading `NAME=value` word would be read as a
    // variable assignment, so only flag-shaped words (`--x=y`) may keep it bare.
    let equals_ok = word.starts_with('-');
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| is_plain(b) || (b == b'=' && equals_ok))
    {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes and joins words with single spaces.
pub fn join<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    words.into_iter().map(quote).collect::<Vec<_>>().join(" ")
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'_' | b'-' | b'.' | b'/' | b':' | b',' | b'+' | b'@' | b'%'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn plain_words_stay_bare() {
        assert_eq!(quote("--num-servers"), "--num-servers");
        assert_eq!(
            quote("/opt/nomad/bin/run-nomad"),
            "/opt/nomad/bin/run-nomad"
        );
        assert_eq!(quote("--datacenter=dc1"), "--datacenter=dc1");
        assert_eq!(quote("KEY=value"), "'KEY=value'");
    }

    #[test]
    fn special_words_are_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
    }

    #[test]
    fn a_shell_reads_back_exactly_the_words() {
        let hostile = [
            "plain",
            "two words",
            "quote ' inside",
            "double \" inside",
            "$HOME and $(id) and `id`",
            "new\nline",
            "glob * ? [a]",
            "semi; rm -rf /; echo",
            "back\\slash",
            "unicode ✓ ü",
            "A=b",
            "",
        ];
        let script = format!("for a in {}; do printf '%s\\0' \"$a\"; done", join(hostile));
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(out.status.success());
        let words: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|w| String::from_utf8(w.to_vec()).unwrap())
            .collect();
        // printf adds a trailing separator, so the last split piece is empty.
        assert_eq!(&words[..words.len() - 1], &hostile[..]);
    }
}
