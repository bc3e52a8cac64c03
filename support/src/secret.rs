//! [`Secret`]: a string that must never reach output, a log line or an error message (client
//! secrets, bearer tokens, gossip keys). Its `Debug` prints `Secret(<redacted>)`, so a secret
//! inside any `{:?}`-printed struct or enum stays hidden, and it has no `Display`, so it cannot
//! slip into a `format!("{}")` by accident: the one place that sends or writes it calls
//! [`Secret::expose`].

use std::fmt;

/// A value that must never reach output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value itself, for the one place that sends or writes it (a header, a form field,
    /// a template parameter, a config file).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_everywhere_it_is_printed() {
        let secret = Secret::new("hunter2".to_string());
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{secret:#?}"), "Secret(<redacted>)");

        #[derive(Debug)]
        #[allow(dead_code)] // read only through Debug
        struct Holder {
            token: Secret,
            list: Vec<Secret>,
            maybe: Option<Secret>,
        }
        let holder = Holder {
            token: secret.clone(),
            list: vec![secret.clone()],
            maybe: Some(secret.clone()),
        };
        for printed in [format!("{holder:?}"), format!("{holder:#?}")] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert_eq!(
                printed.matches("Secret(<redacted>)").count(),
                3,
                "{printed}"
            );
        }
    }

    #[test]
    fn expose_gives_the_value_and_equality_compares_it() {
        let secret = Secret::new("hunter2".to_string());
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(secret, Secret::new("hunter2".to_string()));
        assert_ne!(secret, Secret::new("hunter3".to_string()));
        assert_eq!(secret.clone().expose(), "hunter2");
    }
}
