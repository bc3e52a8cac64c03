//! The Microsoft identity platform's v2.0 token endpoint for the client credentials grant
//! ("Microsoft identity platform and the OAuth 2.0 client credentials flow").
//!
//! The token depends on the `scope`, as a real one's audience does: for ARM's the access token
//! the double was started with; for `https://vault.azure.net/.default` a token for the Key
//! Vault audience that names the caller ([`super::CALLER_OBJECT_ID`], or
//! [`LoginDouble::set_principal`]), which the Key Vault double authorizes ([`super::super::tokens`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::super::server::{RecordedRequest, Reply, Server};

/// The Microsoft identity platform's v2.0 token endpoint for the client credentials grant.
pub struct LoginDouble {
    server: Server,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    principal: Arc<Mutex<String>>,
}

impl LoginDouble {
    /// Accepts `client_id` with `client_secret` and issues `access_token`.
    pub fn start(client_id: &str, client_secret: &str, access_token: String) -> Self {
        let requests: Arc<Mutex<Vec<RecordedRequest>>> = Arc::new(Mutex::new(Vec::new()));
        let principal = Arc::new(Mutex::new(super::CALLER_OBJECT_ID.to_string()));
        let seen = requests.clone();
        let who = principal.clone();
        let (id, secret) = (client_id.to_string(), client_secret.to_string());
        let server = Server::start(move |request: &RecordedRequest| {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(request.clone());
            let principal = who.lock().unwrap_or_else(|e| e.into_inner()).clone();
            token_answer(request, &id, &secret, &access_token, &principal)
        });
        Self {
            server,
            requests,
            principal,
        }
    }

    /// The object id Key Vault tokens name (default [`super::CALLER_OBJECT_ID`]).
    pub fn set_principal(&self, principal_id: &str) {
        *self.principal.lock().unwrap_or_else(|e| e.into_inner()) = principal_id.to_string();
    }

    /// `http://127.0.0.1:PORT`, for `--login-endpoint`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn token_error(status: u16, error: &str, code: u32, description: &str) -> Reply {
    Reply::json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: 00000000-0000-0000-0000-000000000000\r\nTimestamp: 2026-01-01 00:00:00Z"),
            "error_codes": [code],
            "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
        }),
    )
}

fn token_answer(
    request: &RecordedRequest,
    client_id: &str,
    client_secret: &str,
    access_token: &str,
    principal: &str,
) -> Reply {
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    let path_ok = request.method == "POST"
        && segments.len() == 4
        && segments[1] == "oauth2"
        && segments[2] == "v2.0"
        && segments[3] == "token";
    if !path_ok {
        return token_error(
            404,
            "invalid_request",
            90002,
            "Not the v2.0 token endpoint.",
        );
    }
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(request.body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return token_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if !form.get("scope").is_some_and(|s| s.ends_with("/.default")) {
        return token_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).");
    }
    if form.get("client_id").map(String::as_str) != Some(client_id) {
        return token_error(
            400,
            "unauthorized_client",
            700016,
            "Application was not found in the directory.",
        );
    }
    if form.get("client_secret").map(String::as_str) != Some(client_secret) {
        return token_error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.");
    }
    let scope = form.get("scope").map(String::as_str).unwrap_or_default();
    let resource = scope.trim_end_matches("/.default");
    let token = if super::super::tokens::is_key_vault_resource(resource) {
        let mut claims =
            super::super::tokens::Claims::new(crate::keyvault::RESOURCE, principal, super::TENANT);
        claims.app_id = client_id.to_string();
        claims.issue()
    } else {
        access_token.to_string()
    };
    Reply::json(
        200,
        &json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token }),
    )
}
