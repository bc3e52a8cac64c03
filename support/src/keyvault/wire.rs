//! Names (vaults, secrets), the 401 challenge, and the JSON shapes of secrets.json 7.6
//! (SecretBundle, SecretItem, DeletedSecretBundle, SecretListResult, KeyVaultError).

use reqwest::Url;
use serde::Deserialize;

use super::{KeyVaultError, DNS_SUFFIX};
use crate::secret::Secret;

/// A secret's identity and attributes, without its value (SecretItem / SecretBundle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProperties {
    pub name: String,
    /// `https://<vault>/secrets/<name>/<version>` (versionless in a vault-wide listing).
    pub id: String,
    /// Empty when the id carries none (GetSecrets lists base ids).
    pub version: String,
    pub enabled: bool,
    pub content_type: Option<String>,
    /// Unix seconds.
    pub created: Option<i64>,
    pub updated: Option<i64>,
    pub recovery_level: Option<String>,
}

/// A secret with its value.
#[derive(Debug, Clone)]
pub struct SecretValue {
    pub properties: SecretProperties,
    pub value: Secret,
}

/// A soft-deleted secret (DeletedSecretBundle), without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedSecret {
    pub properties: SecretProperties,
    pub recovery_id: Option<String>,
    pub deleted_date: Option<i64>,
    pub scheduled_purge_date: Option<i64>,
}

/// `https://<name>.vault.azure.net/` for a vault name, which is checked first.
pub fn vault_url(name: &str) -> Result<Url, KeyVaultError> {
    validate_vault_name(name)?;
    Url::parse(&format!("https://{name}.{DNS_SUFFIX}/")).map_err(|e| KeyVaultError::InvalidUrl {
        url: name.to_string(),
        reason: e.to_string(),
    })
}

/// Vault names: "3 to 24 characters and can contain only numbers (0-9), letters (a-z, A-Z),
/// and hyphens (-)" (`VaultNameNotValid`, Key Vault common error codes); ARM also wants a letter
/// first, a letter or digit last, and no two hyphens in a row.
pub fn validate_vault_name(name: &str) -> Result<(), KeyVaultError> {
    let bad = |reason: &str| {
        Err(KeyVaultError::InvalidVaultName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if !(3..=24).contains(&name.len()) {
        return bad("a vault name has 3 to 24 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return bad("only letters, digits and hyphens");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return bad("it must start with a letter");
    }
    if name.ends_with('-') {
        return bad("it must end with a letter or a digit");
    }
    if name.contains("--") {
        return bad("no two hyphens in a row");
    }
    Ok(())
}

/// Secret names: SetSecret's `secret-name` pattern `^[0-9a-zA-Z-]+$`, at most 127 characters
/// (Key Vault object names).
pub fn validate_secret_name(name: &str) -> Result<(), KeyVaultError> {
    if name.is_empty() || name.len() > 127 {
        return Err(KeyVaultError::InvalidSecretName {
            name: name.to_string(),
            reason: "a secret name has 1 to 127 characters".into(),
        });
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(KeyVaultError::InvalidSecretName {
            name: name.to_string(),
            reason: "only letters, digits and hyphens (^[0-9a-zA-Z-]+$)".into(),
        });
    }
    Ok(())
}

/// The parameters of a `WWW-Authenticate: Bearer k="v", k="v"` challenge.
pub fn parse_challenge(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim();
    let (scheme, params) = rest.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return None;
    }
    let mut out = Vec::new();
    for part in params.split(',') {
        let (k, v) = part.split_once('=')?;
        out.push((
            k.trim().to_ascii_lowercase(),
            v.trim().trim_matches('"').to_string(),
        ));
    }
    Some(out)
}

/// The audience a challenge asks for: `resource`, or `scope` without `/.default`.
pub(super) fn challenge_resource(params: &[(String, String)]) -> Option<String> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    get("resource").or_else(|| get("scope").map(|s| s.trim_end_matches("/.default").to_string()))
}

pub(super) fn same_audience(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

// ------------------------------------------------------------------ wire types

#[derive(Deserialize, Default)]
pub(super) struct Attributes {
    #[serde(default = "yes")]
    enabled: bool,
    created: Option<i64>,
    updated: Option<i64>,
    #[serde(rename = "recoveryLevel")]
    recovery_level: Option<String>,
}

fn yes() -> bool {
    true
}

/// SecretBundle / DeletedSecretBundle / SecretItem. No `Debug`: it may hold a value.
#[derive(Deserialize)]
pub(super) struct Bundle {
    pub(super) value: Option<String>,
    pub(super) id: Option<String>,
    #[serde(rename = "contentType")]
    pub(super) content_type: Option<String>,
    #[serde(default)]
    pub(super) attributes: Attributes,
    #[serde(rename = "recoveryId")]
    pub(super) recovery_id: Option<String>,
    #[serde(rename = "deletedDate")]
    pub(super) deleted_date: Option<i64>,
    #[serde(rename = "scheduledPurgeDate")]
    pub(super) scheduled_purge_date: Option<i64>,
}

#[derive(Deserialize)]
pub(super) struct ListPage {
    #[serde(default)]
    pub(super) value: Vec<Bundle>,
    #[serde(rename = "nextLink")]
    pub(super) next_link: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
pub(super) struct ErrorDetail {
    code: Option<String>,
    innererror: Option<Box<ErrorDetail>>,
}

impl Bundle {
    pub(super) fn properties(&self) -> SecretProperties {
        let id = self.id.clone().unwrap_or_default();
        let (name, version) = name_and_version(&id);
        SecretProperties {
            name,
            id,
            version,
            enabled: self.attributes.enabled,
            content_type: self.content_type.clone(),
            created: self.attributes.created,
            updated: self.attributes.updated,
            recovery_level: self.attributes.recovery_level.clone(),
        }
    }

    pub(super) fn deleted(&self) -> DeletedSecret {
        DeletedSecret {
            properties: self.properties(),
            recovery_id: self.recovery_id.clone(),
            deleted_date: self.deleted_date,
            scheduled_purge_date: self.scheduled_purge_date,
        }
    }
}

/// `.../secrets/<name>[/<version>]` (or `.../deletedsecrets/<name>`) -> (name, version).
pub(super) fn name_and_version(id: &str) -> (String, String) {
    let path = Url::parse(id)
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., kind, name, version] if kind.eq_ignore_ascii_case("secrets") => {
            (name.to_string(), version.to_string())
        }
        [.., _, name] => (name.to_string(), String::new()),
        _ => (String::new(), String::new()),
    }
}

/// A serde error without its message, which may quote the value it choked on.
pub(super) fn decode_reason(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// `error.code` and `error.innererror.code` of a KeyVaultError body (secrets.json).
pub(super) fn error_codes(body: &str) -> (Option<String>, Option<String>) {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody { error: Some(e) }) => (e.code, e.innererror.and_then(|i| i.code)),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyvault::RESOURCE;

    #[test]
    fn vault_names_follow_the_documented_rules() {
        assert_eq!(
            vault_url("nomad-prod-kv").unwrap().as_str(),
            "https://nomad-prod-kv.vault.azure.net/"
        );
        for bad in [
            "kv",
            "a-very-long-vault-name-abcd",
            "1vault",
            "vault-",
            "va--ult",
            "vault_x",
        ] {
            let e = validate_vault_name(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn secret_names_follow_the_spec_pattern() {
        validate_secret_name("nomad-ca-cert").unwrap();
        for bad in ["", "a/b", "a_b", "a.b", &"x".repeat(128)] {
            assert!(validate_secret_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn challenges_are_parsed() {
        let params = parse_challenge(
            r#"Bearer authorization="https://login.windows.net/72f988bf", resource="https://vault.azure.net""#,
        )
        .unwrap();
        assert_eq!(
            challenge_resource(&params).as_deref(),
            Some("https://vault.azure.net")
        );
        let scoped = parse_challenge(
            r#"Bearer authorization="https://login.microsoftonline.com/t", scope="https://vault.azure.cn/.default""#,
        )
        .unwrap();
        assert_eq!(
            challenge_resource(&scoped).as_deref(),
            Some("https://vault.azure.cn")
        );
        assert!(parse_challenge("Basic realm=x").is_none());
        assert!(same_audience("https://vault.azure.net/", RESOURCE));
    }

    #[test]
    fn ids_give_name_and_version() {
        assert_eq!(
            name_and_version("https://v.vault.azure.net/secrets/nomad-ca-cert/0a1b"),
            ("nomad-ca-cert".into(), "0a1b".into())
        );
        assert_eq!(
            name_and_version("https://v.vault.azure.net/secrets/nomad-ca-cert"),
            ("nomad-ca-cert".into(), String::new())
        );
        assert_eq!(
            name_and_version("http://127.0.0.1:9/deletedsecrets/x"),
            ("x".into(), String::new())
        );
    }

    #[test]
    fn decode_errors_never_quote_the_value() {
        let e = serde_json::from_str::<Bundle>(r#"{"value": 12345678}"#)
            .err()
            .unwrap();
        let reason = decode_reason(&e);
        assert!(!reason.contains("12345678"), "{reason}");
    }
}
