//! The flag values that are parsed on their own, before any metadata or file is read:
//! `KEY=VALUE` lists, the gossip key, systemd output targets.

use base64::Engine;

use super::{invalid, Secret, SettingsError};
use crate::rules;

/// The gossip key length Nomad documents for `server.encrypt` ("This key must be 32 bytes").
pub const GOSSIP_KEY_BYTES: usize = 32;

/// Splits `KEY=VALUE` at the first `=`.
pub fn key_value<'a>(flag: &str, item: &'a str) -> Result<(&'a str, &'a str), SettingsError> {
    let (key, value) = item
        .split_once('=')
        .ok_or_else(|| invalid(flag, item, "expected KEY=VALUE"))?;
    if key.is_empty() {
        return Err(invalid(flag, item, "the key is empty"));
    }
    Ok((key, value))
}

/// `--environment`: a POSIX-style variable name and any value.
pub fn environment(items: &[String]) -> Result<Vec<(String, String)>, SettingsError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in items {
        // The value may be a secret (a client secret for a task driver, say): a refusal names
        // the variable, never its value.
        let (key, value) = key_value("--environment", item)
            .map_err(|e| redacted(e, item.split_once('=').map(|(k, _)| k)))?;
        let shown = format!("{key}=<redacted>");
        let mut chars = key.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(invalid(
                "--environment",
                &shown,
                "the name must be letters, digits and _ and not start with a digit",
            ));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(invalid(
                "--environment",
                &shown,
                "the variable is given twice",
            ));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// `err` with its value replaced by `KEY=<redacted>` (or `<redacted>` when there is no key).
fn redacted(err: SettingsError, key: Option<&str>) -> SettingsError {
    match err {
        SettingsError::Invalid { flag, reason, .. } => SettingsError::Invalid {
            flag,
            value: key.map_or_else(|| "<redacted>".into(), |k| format!("{k}=<redacted>")),
            reason,
        },
        other => other,
    }
}

/// `--meta`: node metadata. Keys and values are escaped on their way into HCL, so only what
/// Nomad refuses at start ([`rules::meta_key`]) or could never use is refused.
pub fn meta(items: &[String]) -> Result<Vec<(String, String)>, SettingsError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in items {
        let (key, value) = key_value("--meta", item)?;
        rules::meta_key(key).map_err(|reason| invalid("--meta", item, reason))?;
        if key.chars().any(char::is_control) {
            return Err(invalid(
                "--meta",
                item,
                "the key contains a control character",
            ));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(invalid("--meta", item, "the key is given twice"));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Checks a gossip key: standard base64 (Nomad decodes it with Go's `base64.StdEncoding`) of
/// exactly [`GOSSIP_KEY_BYTES`] bytes. The error never contains the key.
pub fn gossip_key(flag: &str, value: &str) -> Result<Secret, SettingsError> {
    let key = value.trim();
    let reject = |reason: &str| invalid(flag, "<redacted>", reason);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| {
            reject(
                "not standard base64 (generate one with `nomad operator gossip keyring generate`)",
            )
        })?;
    if bytes.len() != GOSSIP_KEY_BYTES {
        return Err(reject(&format!(
            "decodes to {} bytes; Nomad's server.encrypt takes {GOSSIP_KEY_BYTES}",
            bytes.len()
        )));
    }
    Ok(Secret::new(key.to_string()))
}

/// Checks a systemd StandardOutput=/StandardError= value against the forms systemd.exec(5)
/// documents.
pub fn systemd_output(flag: &str, value: &str) -> Result<String, SettingsError> {
    const SIMPLE: &[&str] = &[
        "inherit",
        "null",
        "tty",
        "journal",
        "kmsg",
        "journal+console",
        "kmsg+console",
        "socket",
    ];
    if value.chars().any(char::is_control) || value.trim() != value {
        return Err(invalid(
            flag,
            value,
            "contains control characters or surrounding spaces",
        ));
    }
    if SIMPLE.contains(&value) {
        return Ok(value.to_string());
    }
    for prefix in ["file:", "append:", "truncate:"] {
        if let Some(path) = value.strip_prefix(prefix) {
            if !path.starts_with('/') {
                return Err(invalid(flag, value, "the path must be absolute"));
            }
            return Ok(value.to_string());
        }
    }
    if let Some(name) = value.strip_prefix("fd:") {
        if !name.is_empty() && !name.contains(char::is_whitespace) {
            return Ok(value.to_string());
        }
    }
    Err(invalid(
        flag,
        value,
        format!(
            "expected one of {}, file:PATH, append:PATH, truncate:PATH or fd:NAME",
            SIMPLE.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_keys_are_base64_of_32_bytes_and_never_echoed() {
        let good = "6RhfKFZ5uYEaU6RgWzx69ssLcpiIkvnEZs5KBOQxvxA=";
        assert_eq!(gossip_key("--gossip-key", good).unwrap().expose(), good);
        assert_eq!(
            gossip_key("--gossip-key", &format!("{good}\n"))
                .unwrap()
                .expose(),
            good
        );
        // 16 bytes: what Nomad 0.x keygen printed; the documentation asks for 32.
        let short = "YgZOXLMhC7TtZqeghMT8+w==";
        let err = gossip_key("--gossip-key", short).unwrap_err().to_string();
        assert!(err.contains("16 bytes"), "{err}");
        assert!(!err.contains(short), "{err}");
        let err = gossip_key("--gossip-key", "not*base64")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not standard base64"), "{err}");
        assert!(!err.contains("not*base64"), "{err}");
        // URL-safe alphabet: Go's StdEncoding, which Nomad uses, rejects it.
        assert!(gossip_key(
            "--gossip-key",
            "6RhfKFZ5uYEaU6RgWzx69ssLcpiIkvnEZs5KBOQxvx-_"
        )
        .is_err());
        assert_eq!(
            format!("{:?}", Secret::new(good.into())),
            "Secret(<redacted>)"
        );
    }

    #[test]
    fn environment_and_meta_parse_at_the_first_equals() {
        let env = environment(&["A=b=c".into(), "_X=".into()]).unwrap();
        assert_eq!(env, [("A".into(), "b=c".into()), ("_X".into(), "".into())]);
        for bad in ["noequals", "=v", "1A=v", "A-B=v"] {
            let err = environment(&[bad.into()]).unwrap_err().to_string();
            assert!(err.contains("--environment"), "{err}");
        }
        assert!(environment(&["A=1".into(), "A=2".into()]).is_err());
        let m = meta(&["rack=r\"1".into(), "a.b/c d=${x}".into()]).unwrap();
        assert_eq!(m[1], ("a.b/c d".into(), "${x}".into()));
        assert!(meta(&["k=1".into(), "k=2".into()]).is_err());
        assert!(meta(&["a\nb=1".into()]).is_err());
    }

    #[test]
    fn systemd_outputs_are_checked() {
        for ok in ["journal", "null", "append:/var/log/nomad.log", "fd:x"] {
            assert_eq!(systemd_output("--systemd-stdout", ok).unwrap(), ok);
        }
        for bad in ["journald", "file:relative", "journal\n", "fd:"] {
            let err = systemd_output("--systemd-stdout", bad).unwrap_err();
            assert!(err.to_string().contains("--systemd-stdout"), "{err}");
        }
    }
}
