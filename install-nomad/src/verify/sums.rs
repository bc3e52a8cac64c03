//! `SHA256SUMS`, the file HashiCorp's signature covers: parsed strictly, and asked for the hash
//! of exactly one archive name.

/// A problem with a SHA256SUMS file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SumsError {
    #[error("it is not UTF-8 text")]
    NotText,
    #[error("line {line} is not `<sha256 hex>  <file name>`: {text:?}")]
    Malformed { line: usize, text: String },
    #[error("it does not list {0}")]
    Missing(String),
    #[error("it lists {name} {count} times")]
    Duplicate { name: String, count: usize },
}

/// A parsed SHA256SUMS file: `(file name, lower-case hex)` in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sums {
    entries: Vec<(String, String)>,
}

/// Parses a `sha256sum`-style file, strictly: every non-empty line must be 64 hex digits, two
/// separator characters (`"  "`, or `" *"` for binary mode) and a file name.
pub fn parse_sums(bytes: &[u8]) -> Result<Sums, SumsError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SumsError::NotText)?;
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let malformed = || SumsError::Malformed {
            line: index + 1,
            text: line.chars().take(120).collect(),
        };
        let (hex, rest) = line.split_at_checked(64).ok_or_else(malformed)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        let name = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(malformed)?;
        if name.is_empty() || name.trim() != name {
            return Err(malformed());
        }
        entries.push((name.to_string(), hex.to_ascii_lowercase()));
    }
    Ok(Sums { entries })
}

impl Sums {
    /// The hash listed for exactly `name`. The name must match byte for byte and appear exactly
    /// once: `nomad_0.8.7_linux_amd64-lxc.zip` is not `nomad_0.8.7_linux_amd64.zip`.
    pub fn sha256_of(&self, name: &str) -> Result<&str, SumsError> {
        let matches: Vec<&str> = self
            .entries
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, h)| h.as_str())
            .collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(SumsError::Missing(name.to_string())),
            more => Err(SumsError::Duplicate {
                name: name.to_string(),
                count: more.len(),
            }),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }
}
