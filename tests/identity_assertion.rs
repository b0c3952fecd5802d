//! obo-credential-injection's identity assertions in a real Envoy: the
//! upstream receives a JWT the gateway signed, verifies it with an
//! independent library (`jsonwebtoken`) against the JWKS the filter serves,
//! and sees the user, the audience and the chain; keys rotate without
//! breaking assertions already issued; no IdP is asked for anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/support.rs"]
mod support;

use baton_harness::{Envoy, EnvoySpec, body_json};
use echo_backend::EchoBackend;
use http_kit::ClientRequest;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use mock_idp::{Endpoint, MockIdp, now_secs};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use serde_json::{Value, json};
use support::*;

const GATEWAY: &str = "https://gateway.finport.test";
const JWKS_PATH: &str = "/.well-known/baton/jwks.json";

fn es256_key(kid: &str) -> Value {
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    json!({"kid": kid, "alg": "ES256", "pem": pkcs8_pem(der.as_ref())})
}

fn ed25519_key(kid: &str) -> Value {
    let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    json!({"kid": kid, "alg": "EdDSA", "pem": pkcs8_pem(der.as_ref())})
}

fn config(idp: &MockIdp, keys: &[&Value], active: &str) -> Value {
    json!({
        "subjectToken": {"validation": "jwks", "providers": [{
            "name": "corp", "issuer": idp.issuer(), "audiences": ["agent-broker"], "algorithms": ["ES256", "RS256"],
            "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": 1000}}}]},
        "identityAssertion": {
            "issuer": GATEWAY, "actor": "finport-gateway", "keys": keys, "activeKid": active,
            "lifetimeSeconds": 60, "typ": "at+jwt", "jwksPath": JWKS_PATH,
            "claims": [{"from": "email"}, {"from": "roles", "to": "groups"}]
        },
        "targets": [{"name": "ledger", "mode": "identityAssertion", "audiences": ["ledger-api"]}]
    })
}

fn start(idp: &MockIdp, backend: &EchoBackend, config: Value) -> Envoy {
    let spec =
        EnvoySpec::new(backend.addr()).cluster("idp", idp.addr()).filter("obo_credential_injection", config);
    Envoy::start(&spec).unwrap_or_else(|e| panic!("Envoy did not start: {e}"))
}

fn user_token(idp: &MockIdp, ttl: i64) -> String {
    let mut claims = idp.standard_claims("alice", "agent-broker", ttl);
    claims["client_id"] = json!("broker-app");
    claims["email"] = json!("alice@example.com");
    claims["roles"] = json!(["trader", "viewer"]);
    claims["name"] = json!("Alice Adams");
    idp.mint(claims)
}

/// The assertion the upstream received for `token`.
fn assertion_for(envoy: &Envoy, backend: &EchoBackend, token: &str) -> String {
    let response = envoy.get_with_token("/ledger/entries", token);
    assert_eq!(response.status, 200, "{}", response.body_str());
    let seen = backend.requests().last().unwrap().header("authorization").unwrap().to_string();
    let assertion = seen.strip_prefix("Bearer ").unwrap().to_string();
    assert_ne!(assertion, token, "the caller's token reached the upstream");
    assertion
}

/// What an upstream does: fetch the JWKS, pick the key by `kid`, verify
/// signature, issuer, audience and expiry.
fn verify(jwks: &JwkSet, assertion: &str) -> Value {
    let header = decode_header(assertion).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("the assertion's kid is served");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[GATEWAY]);
    validation.set_audience(&["ledger-api"]);
    decode::<Value>(assertion, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap_or_else(|e| panic!("the assertion does not verify: {e}"))
        .claims
}

fn served_jwks(envoy: &Envoy) -> JwkSet {
    let response = envoy.get(JWKS_PATH, &[]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/jwk-set+json"));
    serde_json::from_slice(&response.body).unwrap()
}

#[test]
fn upstreams_verify_the_gateways_assertion_with_the_served_keys() {
    let idp = idp();
    let backend = backend();
    let (old, new) = (ed25519_key("gw-2026-10"), es256_key("gw-2026-11"));
    let envoy = start(&idp, &backend, config(&idp, &[&old, &new], "gw-2026-11"));
    let jwks = served_jwks(&envoy);
    assert_eq!(jwks.keys.len(), 2);
    assert!(
        body_json(&envoy.get(JWKS_PATH, &[]))["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("d").is_none())
    );

    let token = user_token(&idp, 300);
    let assertion = assertion_for(&envoy, &backend, &token);
    assert_eq!(decode_header(&assertion).unwrap().alg, Algorithm::ES256);
    let claims = verify(&jwks, &assertion);
    let header = decode_header(&assertion).unwrap();
    println!(
        "decoded assertion: header alg={:?} kid={:?} typ={:?}; claims {claims}",
        header.alg, header.kid, header.typ
    );
    assert_eq!(claims["iss"], GATEWAY);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "ledger-api");
    assert_eq!(claims["email"], "alice@example.com", "copied");
    assert_eq!(claims["groups"], json!(["trader", "viewer"]), "copied and renamed");
    assert!(claims.get("roles").is_none() && claims.get("name").is_none(), "only chosen claims: {claims}");
    assert_eq!(claims["act"], json!({"sub": "finport-gateway", "act": {"sub": "broker-app"}}));
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 60);
    // 16 random bytes in unpadded base64url.
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(jti.len(), 22, "{jti}");
    assert!(jti.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{jti}");

    // Cached: the same assertion for the same token; a new one (new jti)
    // for another token.
    assert_eq!(assertion_for(&envoy, &backend, &token), assertion);
    let other = assertion_for(&envoy, &backend, &user_token(&idp, 300));
    assert_ne!(verify(&jwks, &other)["jti"], claims["jti"]);
    assert_eq!(envoy.counter("baton_obo.assertions.signed"), 2);
    assert_eq!(idp.calls(Endpoint::Token), 0, "no IdP call for an assertion");

    // Never beyond the source token's own expiry.
    let short = user_token(&idp, 20);
    let short_exp = mock_idp::decode_claims_unverified(&short).unwrap()["exp"].as_u64().unwrap();
    let capped = verify(&jwks, &assertion_for(&envoy, &backend, &short));
    assert_eq!(capped["exp"].as_u64(), Some(short_exp));
    assert!(short_exp < now_secs() as u64 + 60);

    // An invalid caller token gets no assertion.
    let refused = envoy.get_with_token("/ledger/entries", "not.a.token");
    assert_eq!(refused.status, 401);
}

#[test]
fn rotation_keeps_issued_assertions_verifiable() {
    let idp = idp();
    let backend = backend();
    let (old, new) = (ed25519_key("gw-old"), es256_key("gw-new"));
    let token = user_token(&idp, 300);

    // Before: only the old key, active.
    let before = start(&idp, &backend, config(&idp, &[&old], "gw-old"));
    let issued_before = assertion_for(&before, &backend, &token);
    assert_eq!(decode_header(&issued_before).unwrap().alg, Algorithm::EdDSA);
    drop(before);

    // Overlap: both keys served, the new one signs; what the old one signed
    // still verifies against the new JWKS.
    let during = start(&idp, &backend, config(&idp, &[&old, &new], "gw-new"));
    let jwks = served_jwks(&during);
    let issued_during = assertion_for(&during, &backend, &token);
    assert_eq!(decode_header(&issued_during).unwrap().kid.as_deref(), Some("gw-new"));
    assert_eq!(verify(&jwks, &issued_before)["sub"], "alice");
    assert_eq!(verify(&jwks, &issued_during)["sub"], "alice");
    drop(during);

    // After: the old key is gone from the JWKS, so its assertions no longer verify.
    let after = start(&idp, &backend, config(&idp, &[&new], "gw-new"));
    let jwks = served_jwks(&after);
    let kids: Vec<Option<&str>> = jwks.keys.iter().map(|key| key.common.key_id.as_deref()).collect();
    assert_eq!(kids, [Some("gw-new")], "the keys served");
    let request = ClientRequest::post(JWKS_PATH, "text/plain", vec![]);
    assert_eq!(after.send(&request).status, 405);
}
