//! Identity assertions: configuration, the claims they carry, the lifetime
//! cap, and the published keys.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};

const NOW: u64 = 1_800_000_000;

fn pem(der: &[u8]) -> String {
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(der))
}

fn es256_pem() -> String {
    pem(EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .unwrap()
        .as_ref())
}

fn ed25519_pem() -> String {
    pem(Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap().as_ref())
}

fn spec(extra: Value) -> Value {
    let mut spec = json!({
        "issuer": "https://gateway.test",
        "keys": [{"kid": "old", "alg": "EdDSA", "pem": ed25519_pem()}, {"kid": "new", "alg": "ES256", "pem": es256_pem()}],
        "activeKid": "new",
        "claims": [{"from": "email"}, {"from": "roles", "to": "groups"}]
    });
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    spec
}

fn issuer(extra: Value) -> Result<AssertionIssuer, ConfigError> {
    compile(serde_json::from_value(spec(extra)).unwrap())
}

fn claims(json: Value) -> Claims {
    Claims::from_object(json.as_object().unwrap().clone()).unwrap()
}

fn payload(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

fn header(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap()
}

#[test]
fn an_assertion_names_the_user_the_audience_and_the_chain() {
    let issuer = issuer(json!({})).unwrap();
    let subject =
        claims(json!({"iss": "https://idp", "sub": "alice", "exp": NOW + 600, "email": "alice@example.com",
                                "roles": ["trader"], "secret_claim": "not copied"}));
    let assertion =
        issuer.mint(&subject, &["ledger-api".to_string()], Some("agent-broker"), NOW, "j-1").unwrap();
    assert_eq!(
        payload(assertion.token.expose()),
        json!({"iss": "https://gateway.test", "sub": "alice", "aud": "ledger-api",
               "act": {"sub": "https://gateway.test", "act": {"sub": "agent-broker"}},
               "iat": NOW, "exp": NOW + 60, "jti": "j-1", "email": "alice@example.com", "groups": ["trader"]})
    );
    assert_eq!(header(assertion.token.expose()), json!({"alg": "ES256", "kid": "new", "typ": "at+jwt"}));
    assert_eq!(assertion.expires_at, NOW + 60);
}

#[test]
fn lifetime_never_outlives_the_source_token() {
    let issuer = issuer(json!({"lifetimeSeconds": 300, "actor": "finport-gateway"})).unwrap();
    let subject = claims(json!({"sub": "alice", "exp": NOW + 20}));
    let assertion = issuer.mint(&subject, &["a".into(), "b".into()], None, NOW, "j-2").unwrap();
    let body = payload(assertion.token.expose());
    assert_eq!((body["exp"].as_u64(), assertion.expires_at), (Some(NOW + 20), NOW + 20));
    assert_eq!(body["aud"], json!(["a", "b"]));
    assert_eq!(body["act"], json!({"sub": "finport-gateway"}));
}

#[test]
fn the_jwks_publishes_every_key_for_rotation() {
    let issuer = issuer(json!({})).unwrap();
    let jwks: Value = serde_json::from_str(issuer.jwks()).unwrap();
    let kids: Vec<&str> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["old", "new"]);
    assert!(jwks["keys"].as_array().unwrap().iter().all(|k| k.get("d").is_none()), "no private part");
    assert_eq!(issuer.active_kid(), "new");
}

#[test]
fn bad_settings_name_their_field() {
    for (extra, field) in [
        (json!({"activeKid": "missing"}), "identityAssertion.activeKid"),
        (json!({"lifetimeSeconds": 5}), "identityAssertion.lifetimeSeconds"),
        (json!({"claims": [{"from": "email", "to": "sub"}]}), "identityAssertion.claims[0]"),
        (json!({"keys": [{"kid": "k", "pem": es256_pem()}]}), "identityAssertion.keys[0].alg"),
        (json!({"keys": [{"kid": "k", "alg": "ES256", "pem": ed25519_pem()}]}), "identityAssertion.keys[0]"),
        (json!({"keys": [{"kid": "k", "alg": "ES256"}]}), "identityAssertion.keys[0]"),
        (
            json!({"keys": [{"kid": "k", "alg": "ES256", "pemEnv": "BATON_NO_SUCH_VARIABLE"}]}),
            "identityAssertion.keys[0].pemEnv",
        ),
        (json!({"jwksPath": "jwks.json"}), "identityAssertion.jwksPath"),
        (json!({"keys": []}), "identityAssertion.keys"),
    ] {
        let error = issuer(extra.clone()).unwrap_err();
        assert_eq!(error.field, field, "{extra}: {}", error.message);
    }
}
