//! The bearer tokens the identity doubles (IMDS, the login endpoint) issue and the Key Vault
//! double reads. They are shaped like Microsoft Entra access tokens: a JWT (`header.payload.
//! signature`, base64url) whose claims say who the token stands for and for what: `aud` (the
//! resource, e.g. `https://vault.azure.net`), `oid` (the principal's object id), `tid`, `appid`,
//! `iss`, `iat`/`nbf`/`exp` ("Azure Key Vault REST API Error Codes" shows a decoded Key Vault
//! token with these claims). Key Vault reads `aud` (AKV10022 when it is another resource) and
//! authorizes `oid` against role assignments; the double does the same.
//!
//! The signature part is not a signature: the doubles trust the tokens they issue, and a test
//! that forges one only fools a double.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// Who a token stands for and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `aud`: the resource (`https://vault.azure.net`, `https://management.azure.com/`).
    pub audience: String,
    /// `oid`: the principal's object id.
    pub object_id: String,
    /// `tid`.
    pub tenant_id: String,
    /// `appid`: the application (client) id.
    pub app_id: String,
    /// `exp`, Unix seconds.
    pub expires_at: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Claims {
    /// Claims for `object_id` and `audience` in `tenant_id`, valid for a day.
    pub fn new(audience: &str, object_id: &str, tenant_id: &str) -> Self {
        Self {
            audience: audience.to_string(),
            object_id: object_id.to_string(),
            tenant_id: tenant_id.to_string(),
            app_id: object_id.to_string(),
            expires_at: now() + 86_399,
        }
    }

    /// The token: `header.payload.signature`.
    pub fn issue(&self) -> String {
        let header = json!({ "typ": "JWT", "alg": "RS256", "kid": "double" });
        let issued = self.expires_at.saturating_sub(86_399);
        let payload = json!({
            "aud": self.audience,
            "iss": format!("https://sts.windows.net/{}/", self.tenant_id),
            "iat": issued,
            "nbf": issued,
            "exp": self.expires_at,
            "appid": self.app_id,
            "oid": self.object_id,
            "sub": self.object_id,
            "tid": self.tenant_id,
            "ver": "1.0",
        });
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            URL_SAFE_NO_PAD.encode("not-a-signature")
        )
    }

    /// The claims of a token the doubles issued; `None` for anything else.
    pub fn read(token: &str) -> Option<Claims> {
        let mut parts = token.split('.');
        let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        Some(Claims {
            audience: payload["aud"].as_str()?.to_string(),
            object_id: payload["oid"].as_str()?.to_string(),
            tenant_id: payload["tid"].as_str()?.to_string(),
            app_id: payload["appid"].as_str().unwrap_or_default().to_string(),
            expires_at: payload["exp"].as_u64()?,
        })
    }

    /// Whether `exp` has passed.
    pub fn expired(&self) -> bool {
        self.expires_at <= now()
    }
}

/// Whether `resource` names the Key Vault audience (with or without the trailing slash).
pub fn is_key_vault_resource(resource: &str) -> bool {
    resource
        .trim_end_matches('/')
        .eq_ignore_ascii_case(crate::keyvault::RESOURCE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_look_like_jwts() {
        let claims = Claims::new("https://vault.azure.net", "oid-1", "tid-1");
        let token = claims.issue();
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(Claims::read(&token), Some(claims.clone()));
        assert!(!claims.expired());
        assert!(Claims::read("arm-double-token-3f9c").is_none());
        assert!(Claims::read("a.b.c").is_none());
        let old = Claims {
            expires_at: 1,
            ..claims
        };
        assert!(old.expired());
        assert!(is_key_vault_resource("https://vault.azure.net/"));
        assert!(!is_key_vault_resource("https://management.azure.com/"));
    }
}
