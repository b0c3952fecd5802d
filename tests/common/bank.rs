//! The bank (the second IdP) and the in-task-auth-code configuration that
//! trusts it, shared by the in-task tests and the attack catalog.
#![allow(dead_code)]

use mock_idp::{ClientRegistration, MockIdp, MockIdpConfig};
use serde_json::{Value, json};

/// The gateway's OAuth redirect URI registered at the bank.
pub const REDIRECT: &str = "http://gateway.test/a2a/oauth/callback";

/// A bank IdP on a free loopback port, with the gateway registered.
pub fn bank() -> MockIdp {
    let config = MockIdpConfig {
        clients: vec![ClientRegistration::bank_gateway("transfer-gateway", "bank-secret", REDIRECT)],
        ..MockIdpConfig::default()
    };
    MockIdp::start(config).expect("bank IdP starts")
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
        "primaryIdentity": {"header": "x-user-id"},
        "identityHeader": "x-baton-user"
    })
}
