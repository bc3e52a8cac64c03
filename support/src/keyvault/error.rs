//! What went wrong talking to a vault: every error names the vault URL, the operation and the
//! secret; an answer's status, `error.code`, `innererror.code` and a bounded body are kept.

use std::time::Duration;

use super::{MAX_SECRET_BYTES, RESOURCE};

/// What went wrong, with enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum KeyVaultError {
    #[error("invalid Key Vault URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid Key Vault name {name:?}: {reason}")]
    InvalidVaultName { name: String, reason: String },
    #[error("invalid Key Vault secret name {name:?}: {reason}")]
    InvalidSecretName { name: String, reason: String },
    #[error("{operation} {target} in Key Vault {vault}: the value is {size} bytes, more than Key Vault's {MAX_SECRET_BYTES}")]
    TooLarge {
        vault: String,
        operation: &'static str,
        target: String,
        size: usize,
    },
    #[error("{operation} {target} in Key Vault {vault}: no token for {RESOURCE}: {message}")]
    Token {
        vault: String,
        operation: &'static str,
        target: String,
        message: String,
    },
    #[error("{operation} {target} in Key Vault {vault}: {message}")]
    Transport {
        vault: String,
        operation: &'static str,
        target: String,
        message: String,
    },
    #[error("{0}")]
    Status(Box<HttpFailure>),
    #[error("{operation} {target} in Key Vault {vault}: the vault's challenge asks for a token of another audience ({challenge}), not {RESOURCE}: is the vault in another cloud or tenant?")]
    Challenge {
        vault: String,
        operation: &'static str,
        target: String,
        challenge: String,
    },
    #[error("{operation} {target} in Key Vault {vault}: the answer is not a {expected}: {reason}")]
    Decode {
        vault: String,
        operation: &'static str,
        target: String,
        expected: &'static str,
        reason: String,
    },
    #[error("gave up after {attempts} attempt{} in {:.1}s (deadline {:.0}s): {last}", if *.attempts == 1 { "" } else { "s" }, .elapsed.as_secs_f64(), .deadline.as_secs_f64())]
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        deadline: Duration,
        last: Box<KeyVaultError>,
    },
}

/// An error answer of the vault.
#[derive(Debug)]
pub struct HttpFailure {
    pub vault: String,
    pub operation: &'static str,
    pub target: String,
    pub status: u16,
    /// `error.code` of the KeyVaultError body (`Forbidden`, `SecretNotFound`...).
    pub code: Option<String>,
    /// `error.innererror.code` (`ForbiddenByRbac`, `ObjectIsDeletedButRecoverable`...).
    pub inner_code: Option<String>,
    /// At most [`http::ERROR_BODY_LIMIT`] bytes of the body.
    pub body: String,
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} in Key Vault {}: HTTP {}{}: {}",
            self.operation,
            self.target,
            self.vault,
            self.status,
            codes(&self.code, &self.inner_code),
            self.body
        )
    }
}

fn codes(code: &Option<String>, inner: &Option<String>) -> String {
    match (code, inner) {
        (Some(c), Some(i)) => format!(" {c} ({i})"),
        (Some(c), None) => format!(" {c}"),
        (None, Some(i)) => format!(" ({i})"),
        (None, None) => String::new(),
    }
}

impl KeyVaultError {
    /// The error the last attempt met (through [`KeyVaultError::GaveUp`]).
    pub fn last(&self) -> &KeyVaultError {
        match self {
            KeyVaultError::GaveUp { last, .. } => last.last(),
            other => other,
        }
    }

    /// The HTTP status of the (last) answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self.last() {
            KeyVaultError::Status(f) => Some(f.status),
            _ => None,
        }
    }

    fn inner_code(&self) -> Option<&str> {
        match self.last() {
            KeyVaultError::Status(f) => f.inner_code.as_deref(),
            _ => None,
        }
    }

    /// 404: no such secret (or version).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// 409 `ObjectIsDeletedButRecoverable`: the name belongs to a soft-deleted secret, which
    /// must be recovered or purged before the name can be set again.
    pub fn is_deleted_but_recoverable(&self) -> bool {
        self.status() == Some(409) && self.inner_code() == Some("ObjectIsDeletedButRecoverable")
    }

    /// 403 from RBAC (a missing or not yet propagated role assignment).
    pub fn is_forbidden_by_rbac(&self) -> bool {
        self.status() == Some(403) && self.inner_code() == Some("ForbiddenByRbac")
    }
}

/// An error and its sources on one line (reqwest hides the cause of "error sending request").
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
