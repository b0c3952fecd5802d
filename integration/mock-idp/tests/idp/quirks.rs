//! The ways real IdPs differ that the mock can play (`MockIdpConfig::quirks`).

use mock_idp::{ClientRegistration, MockIdp, MockIdpConfig, Quirks};
use serde_json::Value;

use crate::common::{BROKER, test_config, token_request};

fn with_quirks(quirks: Quirks) -> MockIdp {
    let mut config = MockIdpConfig { quirks, ..test_config() };
    config.clients.push(
        ClientRegistration::confidential("cc-only", "cc-secret").with_grant_types(&["client_credentials"]),
    );
    MockIdp::start(config).unwrap()
}

fn claims(body: &Value) -> Value {
    mock_idp::decode_claims_unverified(body["access_token"].as_str().unwrap()).unwrap()
}

#[test]
fn an_unregistered_grant_is_refused_with_the_configured_code() {
    let form = [("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")];
    for (code, status) in [("unauthorized_client", 400), ("invalid_request", 400)] {
        let idp = with_quirks(Quirks { unregistered_grant_error: code.into(), ..Quirks::default() });
        let response = token_request(&idp, &form, Some(("cc-only", "cc-secret")));
        assert_eq!(response.status, status);
        let body = response.json().unwrap();
        assert_eq!(body["error"], code);
        assert!(body["error_description"].as_str().unwrap().contains("not allowed for this client"));
    }
}

#[test]
fn client_credentials_may_ignore_audience_and_honour_resource_only() {
    let form = |extra: &[(&'static str, &'static str)]| {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        form
    };
    let honours = with_quirks(Quirks::default());
    let ignores = with_quirks(Quirks { client_credentials_ignores_audience: true, ..Quirks::default() });
    let asked = form(&[("audience", "market-data")]);
    assert_eq!(claims(&token_request(&honours, &asked, Some(BROKER)).json().unwrap())["aud"], "market-data");
    assert_eq!(claims(&token_request(&ignores, &asked, Some(BROKER)).json().unwrap())["aud"], "agent-broker");
    let resource = form(&[("resource", "https://market.example/api")]);
    assert_eq!(
        claims(&token_request(&ignores, &resource, Some(BROKER)).json().unwrap())["aud"],
        "https://market.example/api"
    );
}
