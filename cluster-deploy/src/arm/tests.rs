use super::*;

#[test]
fn retryable_answers_are_named_once() {
    assert!(is_retryable(429, ""));
    assert!(is_retryable(500, "InternalServerError"));
    assert!(is_retryable(503, ""));
    assert!(is_retryable(409, "AnotherOperationInProgress"));
    assert!(!is_retryable(409, "Conflict"));
    assert!(!is_retryable(400, "InvalidTemplate"));
    assert!(!is_retryable(404, "ResourceGroupNotFound"));
    assert!(!is_retryable(501, ""));
}

#[test]
fn urls_off_the_endpoint_are_never_sent_the_token() {
    let tokens = TokenProvider::new(
        crate::auth::Method::ClientSecret {
            tenant: "t".into(),
            client_id: "c".into(),
            secret: crate::auth::Secret::new("s".into()),
        },
        crate::auth::TokenEndpoints {
            login: Url::parse("http://127.0.0.1:9").unwrap(),
            imds: Url::parse("http://127.0.0.1:9").unwrap(),
            audience: "https://management.azure.com/".into(),
        },
        Timing::default().retry,
    )
    .unwrap();
    let client = ArmClient::new(
        Url::parse("https://management.azure.com").unwrap(),
        tokens,
        "sub".into(),
        Timing::default(),
    )
    .unwrap();
    let foreign = Url::parse("https://evil.example.com/subscriptions/sub?api-version=1").unwrap();
    let err = client.send(Method::GET, &foreign, None).unwrap_err();
    assert!(matches!(err, ArmError::ForeignUrl { .. }), "{err}");
    let url = client.url(
        "/subscriptions/sub/resourcegroups/rg",
        RESOURCES_API,
        &[("$filter", "a eq 'b'")],
    );
    assert_eq!(
            url.as_str(),
            "https://management.azure.com/subscriptions/sub/resourcegroups/rg?%24filter=a+eq+%27b%27&api-version=2025-04-01"
        );
}

#[test]
fn error_bodies_give_code_and_message() {
    let e = error_of(r#"{"error":{"code":"InvalidTemplate","message":"bad"}}"#);
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("InvalidTemplate", "bad")
    );
    let e = error_of(r#"{"code":"Conflict","message":"busy"}"#);
    assert_eq!((e.code.as_str(), e.message.as_str()), ("Conflict", "busy"));
    assert_eq!(error_of("<html>502</html>").code, "UnknownError");
    let nested = error_of(
        r#"{"error":{"code":"InvalidTemplateDeployment","message":"See inner errors for details.","details":[{"code":"QuotaExceeded","target":"standardDSv5Family","message":"over","details":[{"code":"Inner","message":"deep"}]}]}}"#,
    );
    assert_eq!(
            nested.to_string(),
            "InvalidTemplateDeployment: See inner errors for details.\n  - QuotaExceeded: over (target: standardDSv5Family)\n    - Inner: deep"
        );
    assert_eq!(
        nested.codes(),
        ["InvalidTemplateDeployment", "QuotaExceeded", "Inner"]
    );
}
