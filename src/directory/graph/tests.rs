use super::*;

fn cfg(extra: &str) -> Result<GraphConfig, String> {
    let text = format!("tenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"app\"\n{extra}");
    let c: GraphConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
    c.validate().map(|_| c).map_err(|e| e.to_string())
}

#[test]
fn secret_certificate_or_refresh_token_required() {
    let e = cfg("").unwrap_err();
    assert!(e.contains("graph.client_secret"), "{e}");
    assert!(cfg("client_secret = \"s\"").is_ok());
    assert!(cfg("client_secret_file = \"/x\"").is_ok());
    assert!(cfg("refresh_token_file = \"/x\"").is_ok());
    assert!(cfg("client_certificate = \"/c\"\nclient_key = \"/k\"").is_ok());
    let e = cfg("client_certificate = \"/c\"").unwrap_err();
    assert!(e.contains("graph.client_key"), "{e}");
    let e = cfg("client_secret = \"\"").unwrap_err();
    assert!(e.contains("graph.client_secret"), "{e}");
}

#[test]
fn http_only_for_loopback() {
    let ok = [
        "http://127.0.0.1:1234",
        "http://[::1]:80",
        "http://localhost:9",
        "https://login.example",
    ];
    for u in ok {
        assert!(
            cfg(&format!("client_secret = \"s\"\nauthority = \"{u}\"")).is_ok(),
            "{u}"
        );
    }
    let e = cfg("client_secret = \"s\"\nendpoint = \"http://graph.microsoft.com\"").unwrap_err();
    assert!(e.contains("graph.endpoint"), "{e}");
    let e = cfg("client_secret = \"s\"\nauthority = \"http://10.0.0.1\"").unwrap_err();
    assert!(e.contains("graph.authority"), "{e}");
    let e = cfg("client_secret = \"s\"\nauthority = \"ftp://x\"").unwrap_err();
    assert!(e.contains("graph.authority"), "{e}");
}

#[test]
fn assertion_algorithm_and_tenant() {
    let c =
        cfg("client_certificate = \"/c\"\nclient_key = \"/k\"\nassertion_algorithm = \"PS256\"")
            .unwrap();
    assert_eq!(c.assertion_algorithm, AssertionAlgorithm::Ps256);
    let text = "tenant_id = \"common\"\nclient_id = \"a\"\nclient_secret = \"s\"";
    let c: GraphConfig = toml::from_str(text).unwrap();
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("graph.tenant_id"));
}

#[test]
fn retry_delay_honours_retry_after_and_caps() {
    let e = GraphError::Credential("x".into());
    let d = retry_delay(&e, 30, Duration::from_secs(300));
    assert!(
        d <= Duration::from_secs(360) && d >= Duration::from_secs(240),
        "{d:?}"
    );
    let a = GraphError::Auth(error::AuthError {
        status: 429,
        error: "x".into(),
        codes: vec![],
        description: String::new(),
        suberror: None,
        retry_after: Some(Duration::from_secs(1000)),
    });
    assert_eq!(
        retry_delay(&a, 1, Duration::from_secs(300)),
        Duration::from_secs(1000)
    );
}
