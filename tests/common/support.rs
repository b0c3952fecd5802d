//! Helpers shared by the integration tests: one mock IdP and one echo
//! backend per test, tokens minted against the real clock, and the base
//! claim-enforcement configuration.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use baton_harness::{Envoy, EnvoySpec};
use echo_backend::EchoBackend;
use mock_idp::{MockIdp, MockIdpConfig, SigningKey};
use serde_json::{Value, json};

pub const AUDIENCE: &str = "orders-api";

/// One RSA key for all IdPs of a test binary: generation is the slow part.
fn shared_rsa_key() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(SigningKey::rs256("rsa-shared").expect("RSA key generation"))).clone()
}

/// A mock IdP on a free loopback port.
pub fn idp() -> MockIdp {
    idp_with(MockIdpConfig::default())
}

/// A mock IdP configured by `config`, with the RSA key shared by the test
/// binary (unless `config` brings its own).
pub fn idp_with(mut config: MockIdpConfig) -> MockIdp {
    config.keys.push(shared_rsa_key());
    MockIdp::start(config).expect("mock IdP starts")
}

/// An echo backend on a free loopback port.
pub fn backend() -> EchoBackend {
    EchoBackend::start().expect("echo backend starts")
}

/// Claims for `sub` from `idp`, for our audience, valid for five minutes,
/// with scopes, roles, and a fresh multi-factor login.
pub fn claims(idp: &MockIdp, sub: &str) -> Value {
    let mut claims = idp.standard_claims(sub, AUDIENCE, 300);
    claims["scope"] = json!("orders:read orders:write");
    claims["client_id"] = json!("web-app");
    claims["roles"] = json!(["trader", "viewer"]);
    claims["acr"] = json!("mfa");
    claims["auth_time"] = json!(mock_idp::now_secs() - 30);
    claims
}

/// The claim-enforcement configuration most tests start from: keys fetched
/// from the IdP through the `idp` cluster, four routes, three forwarded claims.
pub fn ce_config(idp: &MockIdp) -> Value {
    json!({
        "realm": "orders",
        "providers": [{
            "name": "mock",
            "issuer": idp.issuer(),
            "audiences": [AUDIENCE],
            "algorithms": ["ES256", "RS256"],
            "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": 1000,
                                "minRefetchIntervalSeconds": 1, "retryIntervalSeconds": 1}}
        }],
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "action": "allow"},
            {"name": "orders-read", "match": {"pathPrefix": "/orders", "methods": ["GET"]},
             "require": {"scopes": {"allOf": ["orders:read"]}}},
            {"name": "admin", "match": {"pathPrefix": "/admin"},
             "require": {"claims": [{"claim": "roles", "contains": "admin"}]}},
            {"name": "transfers", "match": {"pathPrefix": "/transfers", "methods": ["POST"]},
             "require": {"scopes": {"allOf": ["orders:write"]}, "stepUp": {"acrValues": ["mfa"], "maxAgeSeconds": 300}}}
        ],
        "forwardClaims": [
            {"claim": "sub", "header": "x-user-id"},
            {"claim": "roles", "header": "x-user-roles"},
            {"claim": "client_id", "header": "x-client-id"}
        ],
        "forwardPayloadHeader": "x-jwt-payload"
    })
}

/// Starts Envoy with claim-enforcement configured by `config`, calling
/// `idp` through cluster `idp` and forwarding to `backend`.
pub fn envoy_with(config: Value, idp: &MockIdp, backend: &EchoBackend, workers: u32) -> Envoy {
    let spec = EnvoySpec::new(backend.addr())
        .cluster("idp", idp.addr())
        .filter("claim_enforcement", config)
        .concurrency(workers);
    Envoy::start(&spec).unwrap_or_else(|error| panic!("Envoy did not start: {error}"))
}

/// The value of a header the backend received on its last request.
pub fn backend_header(backend: &EchoBackend, name: &str) -> Option<String> {
    let requests = backend.requests();
    let last = requests.last()?;
    last.header(name).map(String::from)
}

/// A PKCS#8 private key (DER) in PEM armour, as a gateway key is configured.
pub fn pkcs8_pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
}

/// obo-credential-injection exchanging a token `idp` issued (audience
/// `agent-broker`, verified by its own JWKS) for the `portfolio` target.
pub fn obo_exchange_config(idp: &MockIdp) -> Value {
    json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "timeoutMs": 1000,
                  "clientId": "agent-broker", "clientSecret": mock_idp::DEMO_BROKER_SECRET}],
        "subjectToken": {"validation": "jwks", "providers": [{
            "name": "corp", "issuer": idp.issuer(), "audiences": ["agent-broker"], "algorithms": ["ES256"],
            "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": 1000}}}]},
        "targets": [{"name": "portfolio", "mode": "tokenExchange", "idp": "corp",
                     "audiences": ["portfolio-agent"], "scope": "portfolio:read"}]
    })
}
