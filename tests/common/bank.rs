//! The bank (the second IdP) and the in-task-auth-code configuration that
//! trusts it, shared by the in-task tests and the attack catalog. The
//! users' own IdP is a signing key whose public key the filter is given
//! inline: every request names its user with a token minted here.
#![allow(dead_code)]

use std::sync::OnceLock;

use std::net::SocketAddr;
use std::time::Duration;

use baton_harness::{Envoy, EnvoySpec};
use http_kit::{ClientRequest, parse_urlencoded};
use mock_idp::{ClientRegistration, MockIdp, MockIdpConfig, SigningKey};
use serde_json::{Value, json};

/// The gateway's OAuth redirect URI registered at the bank.
pub const REDIRECT: &str = "https://gateway.test/a2a/oauth/callback";
/// The issuer of the users' tokens.
pub const CORP_ISSUER: &str = "https://corp.test";
/// The audience of the users' tokens.
pub const CORP_AUDIENCE: &str = "transfer-agent";

/// A bank IdP on a free loopback port, with the gateway registered.
pub fn bank() -> MockIdp {
    let config = MockIdpConfig {
        clients: vec![ClientRegistration::bank_gateway("transfer-gateway", "bank-secret", REDIRECT)],
        ..MockIdpConfig::default()
    };
    MockIdp::start(config).expect("bank IdP starts")
}

/// The users' IdP key.
pub fn corp_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::es256("corp-1").expect("ES256 key"))
}

/// `user`'s bearer token from the users' IdP, valid for five minutes.
pub fn user_token(user: &str) -> String {
    let now = mock_idp::now_secs();
    corp_key().sign_compact(
        &json!({"alg": "ES256", "kid": corp_key().kid(), "typ": "at+jwt"}),
        &json!({"iss": CORP_ISSUER, "sub": user, "aud": CORP_AUDIENCE, "iat": now, "exp": now + 300}),
    )
}

/// `Authorization` for `user`.
pub fn bearer(user: &str) -> String {
    format!("Bearer {}", user_token(user))
}

/// The filter verifies the users' tokens itself.
pub fn primary_identity() -> Value {
    json!({"providers": [{"name": "corp", "issuer": CORP_ISSUER, "audiences": [CORP_AUDIENCE],
                          "algorithms": ["ES256"], "jwks": {"inline": {"keys": [corp_key().public_jwk()]}}}]})
}

/// in-task-auth-code: transfers need the bank's token.
pub fn filter_config(bank: &MockIdp) -> Value {
    json!({
        "secondaryIdp": {
            "name": "bank",
            "authorizationEndpoint": bank.authorization_endpoint(),
            "tokenEndpoint": bank.token_endpoint(),
            "cluster": "bank_idp", "tokenPath": "/token", "timeoutMs": 1000,
            "clientId": "transfer-gateway", "clientSecret": "bank-secret",
            "redirectUri": REDIRECT,
            "scopes": ["transfers:write"],
            "audience": "bank-api",
            "providers": [{"name": "bank", "issuer": bank.issuer(), "audiences": ["bank-api"], "algorithms": ["ES256", "RS256"],
                           "jwks": {"remote": {"cluster": "bank_idp", "path": "/jwks", "timeoutMs": 1000}}}]
        },
        "rules": [{"name": "transfers", "match": {"pathPrefix": "/"},
                   "when": {"source": "data", "pointer": "/operation", "equals": "transfer"}}],
        "primaryIdentity": primary_identity(),
        // The bank's subjects are the users' own here: its token must name
        // the user who asked.
        "userBinding": {"secondaryClaim": "sub"},
        "identityHeader": "x-baton-user"
    })
}

/// An Envoy running in-task-auth-code with `config` in front of `agent`,
/// calling `bank` through cluster `bank_idp`.
pub fn in_task_envoy(bank: &MockIdp, agent: SocketAddr, config: Value) -> Envoy {
    let spec = EnvoySpec::new(agent).cluster("bank_idp", bank.addr()).filter("in_task_auth_code", config);
    Envoy::start(&spec).unwrap_or_else(|e| panic!("Envoy did not start: {e}"))
}

/// `user` approves at `bank` (auto-approved by the mock, which `login_hint`
/// names the user to): the redirect's location, `code` and `state`.
pub fn approve(bank: &MockIdp, authorization_url: &str, user: &str) -> (String, String, String) {
    let target = authorization_url.split_once("://").expect("an absolute URL").1;
    let target = &target[target.find('/').expect("a path")..];
    let response = http_kit::send(
        bank.addr(),
        &ClientRequest::get(&format!("{target}&login_hint={user}")),
        Duration::from_secs(5),
    )
    .expect("the bank answers");
    assert_eq!(response.status, 302, "{}", response.body_str());
    let location = response.header("location").expect("a redirect").to_string();
    let params = parse_urlencoded(location.split_once('?').expect("a query").1);
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).expect(name);
    let (code, state) = (get("code"), get("state"));
    (location, code, state)
}

/// The `authChallenge` of an auth-required answer (v0.3 or v1.0).
pub fn auth_challenge(response: &http_kit::ClientResponse) -> Value {
    let body = response.json().unwrap_or(Value::Null);
    let status = if body["result"]["task"].is_object() {
        &body["result"]["task"]["status"]
    } else {
        &body["result"]["status"]
    };
    status["message"]["parts"]
        .as_array()
        .and_then(|parts| parts.iter().find_map(|p| p.pointer("/data/authChallenge")))
        .cloned()
        .unwrap_or_else(|| panic!("no authChallenge in {}", response.body_str()))
}
