//! `POST /v1/acl/bootstrap` with an operator-chosen secret, so that a lost answer (or a
//! re-run) is recoverable: Nomad bootstraps once, then answers 400 "ACL bootstrap already
//! done (reset index: N)", which is recognised here as an outcome, not a failure.

use reqwest::Method;

use super::{Call, NomadClient, NomadError};
use crate::nomad::types::{AclToken, BootstrapRequest};
use crate::secret::Secret;

/// What an ACL bootstrap found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// This call made the management token; its SecretID is the secret passed in.
    Bootstrapped(AclToken),
    /// Bootstrap had already happened (by an earlier run whose answer was lost, or by someone
    /// else): whether the secret passed in works is for the caller to check.
    AlreadyDone { reset_index: Option<u64> },
}

/// A UUID in Nomad's sense (helper.IsUUID): 8-4-4-4-12 hexadecimal digits.
pub fn is_uuid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

impl NomadClient {
    /// Bootstraps the ACL system with `secret` as the management token's SecretID.
    pub fn acl_bootstrap(&self, secret: &Secret) -> Result<BootstrapOutcome, NomadError> {
        if !is_uuid(secret.expose()) {
            return Err(NomadError::Refused {
                action: "bootstrap ACLs".to_string(),
                reason: "the bootstrap secret must be a UUID (Nomad answers \"invalid acl token\" otherwise)".to_string(),
            });
        }
        let body = BootstrapRequest {
            bootstrap_secret: secret.expose().to_string(),
        };
        // The answer is the management token, SecretID included.
        let call = Call::write(Method::POST, "v1/acl/bootstrap")
            .json(&body)
            .secret_answer();
        match self.json::<AclToken>(call, false) {
            Ok(token) => Ok(BootstrapOutcome::Bootstrapped(token)),
            Err(e)
                if e.status() == Some(400)
                    && e.body()
                        .is_some_and(|b| b.contains("ACL bootstrap already done")) =>
            {
                let reset_index = e.body().and_then(|b| {
                    let tail = b.split("reset index: ").nth(1)?;
                    tail.trim_end_matches(')').trim().parse().ok()
                });
                Ok(BootstrapOutcome::AlreadyDone { reset_index })
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert!(is_uuid("3f4a0fcd-7c42-773c-25db-2d31ba0c05fe"));
        assert!(!is_uuid("3f4a0fcd7c42773c25db2d31ba0c05fe"));
        assert!(!is_uuid("3f4a0fcd-7c42-773c-25db-2d31ba0c05fg"));
        assert!(!is_uuid("s3cret"));
    }

    /// Nomad answers the bootstrap with the management token, SecretID included
    /// (`../shared/nomad-api`, ACLToken): a body that does not decode must not reach the error.
    #[cfg(feature = "doubles")]
    #[test]
    fn a_bootstrap_answer_that_does_not_decode_never_shows_the_token() {
        use crate::doubles::server::{Reply, Server};
        use crate::nomad::NomadSettings;
        use crate::retry::Policy;

        const TOKEN: &str = "2f7c4c7e-6d3a-4c4b-9d5e-0a1b2c3d4e5f";
        let whole = format!(
            r#"{{"AccessorID":"b780e702-98ce-521f-2e5f-c6b87de05b24","SecretID":"{TOKEN}","Name":"Bootstrap Token","Type":"management","Policies":null,"Global":true,"CreateTime":"2017-08-23T22:47:14.695408057Z","CreateIndex":7,"ModifyIndex":7}}"#
        );
        for (what, body) in [
            ("cut short", whole[..whole.len() - 20].to_string()),
            ("trailing bytes", format!("{whole} {whole}")),
            (
                "a field of the wrong type",
                whole.replace("\"CreateIndex\":7", "\"CreateIndex\":\"seven\""),
            ),
        ] {
            let server = Server::start(move |_| {
                Reply::new(200)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
            });
            let mut settings = NomadSettings::new(server.url().parse().unwrap());
            settings.timeouts.write_retries = Policy::once("Nomad API write");
            let client = NomadClient::with_settings(settings).unwrap();
            let error = client
                .acl_bootstrap(&Secret::new(TOKEN.to_string()))
                .unwrap_err();
            for text in [error.to_string(), format!("{error:?}")] {
                assert!(!text.contains(TOKEN), "{what}: the token in {text}");
                assert!(!text.contains("SecretID"), "{what}: the body in {text}");
            }
            let text = error.to_string();
            assert!(text.contains("v1/acl/bootstrap"), "{what}: {text}");
            assert!(text.contains("line 1 column"), "{what}: {text}");
            assert!(text.contains("is not shown"), "{what}: {text}");
        }
    }
}
