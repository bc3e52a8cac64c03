//! Which Azure credential cluster-deploy uses (`--auth`). The credentials themselves (client
//! secret from `ARM_*`, the Azure CLI, a managed identity), their tokens and the subscription each
//! implies live in `support::azure_auth`, shared with image-builder.

use std::path::Path;

pub use support::azure_auth::*;

/// Which credential to use (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthChoice {
    /// Client secret when ARM_CLIENT_ID, ARM_CLIENT_SECRET and ARM_TENANT_ID are set; else managed
    /// identity when ARM_USE_MSI=true; else the Azure CLI when its program exists; else none.
    Auto,
    ClientSecret,
    AzureCli,
    ManagedIdentity,
    /// No credentials: `plan` stays offline; other commands refuse.
    None,
}

/// Picks the credential. `Ok(None)` means no credentials (only `auto` and `none` give that).
pub fn choose(
    choice: AuthChoice,
    env: &Env,
    az_program: &Path,
) -> Result<Option<Method>, AuthError> {
    let managed = || Method::ManagedIdentity {
        client_id: env.get("ARM_CLIENT_ID").map(str::to_string),
    };
    match choice {
        AuthChoice::None => Ok(None),
        AuthChoice::ClientSecret => Method::client_secret_from(env).map(Some),
        AuthChoice::ManagedIdentity => Ok(Some(managed())),
        AuthChoice::AzureCli => match find_program(az_program) {
            Some(program) => Ok(Some(Method::AzureCli { program })),
            None => Err(AuthError::NoAzureCli(az_program.to_path_buf())),
        },
        AuthChoice::Auto => {
            if env.get("ARM_CLIENT_SECRET").is_some() {
                return Method::client_secret_from(env).map(Some);
            }
            if env
                .get("ARM_USE_MSI")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            {
                return Ok(Some(managed()));
            }
            Ok(find_program(az_program).map(|program| Method::AzureCli { program }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    #[test]
    fn auto_prefers_the_client_secret_then_msi_then_the_cli() {
        let none = Path::new("/nonexistent/az");
        let full = env(&[
            ("ARM_TENANT_ID", "contoso.onmicrosoft.com"),
            ("ARM_CLIENT_ID", "app"),
            ("ARM_CLIENT_SECRET", "s3cret"),
        ]);
        assert!(matches!(
            choose(AuthChoice::Auto, &full, none).unwrap(),
            Some(Method::ClientSecret { .. })
        ));
        let msi = env(&[("ARM_USE_MSI", "true")]);
        assert!(matches!(
            choose(AuthChoice::Auto, &msi, none).unwrap(),
            Some(Method::ManagedIdentity { client_id: None })
        ));
        assert!(choose(AuthChoice::Auto, &env(&[]), none).unwrap().is_none());
        let sh = Path::new("/bin/sh");
        assert!(matches!(
            choose(AuthChoice::Auto, &env(&[]), sh).unwrap(),
            Some(Method::AzureCli { .. })
        ));
    }

    #[test]
    fn explicit_choices_say_what_is_missing() {
        let err = choose(
            AuthChoice::ClientSecret,
            &env(&[("ARM_CLIENT_ID", "a"), ("ARM_CLIENT_SECRET", "b")]),
            Path::new("az"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("ARM_TENANT_ID"), "{err}");
        let err = choose(
            AuthChoice::AzureCli,
            &env(&[]),
            Path::new("/nonexistent/az"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/az"), "{err}");
    }
}
