//! The fixed world every target runs in: the clock, the key set (and the
//! ES256 private key behind its first key, to mint valid signatures over
//! fuzzed input), compiled providers and an in-task-auth-code
//! configuration.
//!
//! The key set and the seed corpora come from `seeds/make_corpus.py`; every
//! key there is derived from a fixed label, so nothing secret is stored.

use std::rc::Rc;
use std::sync::OnceLock;

use baton_filter_kit::config::{Provider, ProviderSpec, compile_providers, from_json};
use baton_token::base64url;
use baton_token::jwk::JwkSet;
use baton_token::verify::VerifierSet;
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::PrimeField;
use p256::elliptic_curve::ops::Reduce;
use p256::{FieldBytes, Scalar};
use sha2::{Digest, Sha256};

/// The clock of every target (seconds since the epoch, in 2027). The seed
/// tokens are valid at this time.
pub const NOW: u64 = 1_800_000_000;

/// The issuer the seed tokens name.
pub const ISSUER: &str = "https://idp.example";

/// The audience the seed tokens carry.
pub const AUDIENCE: &str = "api";

/// The fixed key set: ES256 `ec-1`, ES384 `ec384-1`, RSA `rsa-1`, Ed25519 `ed-1`.
pub const JWKS: &str = include_str!("jwks.json");

/// The key id of the ES256 key whose private half [`es256_signing_key`] is.
pub const ES256_KID: &str = "ec-1";

/// The parsed key set.
pub fn jwk_set() -> &'static JwkSet {
    static SET: OnceLock<JwkSet> = OnceLock::new();
    SET.get_or_init(|| JwkSet::parse_strict(JWKS.as_bytes()).expect("fuzz/src/jwks.json is a valid key set"))
}

/// The key set imported for verification (the ES256 tables are computed once).
pub fn verifier_set() -> &'static VerifierSet {
    static SET: OnceLock<VerifierSet> = OnceLock::new();
    SET.get_or_init(|| VerifierSet::import(jwk_set()).expect("every fuzz key imports"))
}

/// The private key of `ec-1`: the scalar `SHA-256("baton-fuzz es256") + 1`,
/// as `seeds/make_corpus.py` derives it. Checked against the key set.
pub fn es256_signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let digest = Sha256::digest(b"baton-fuzz es256");
        let bytes = FieldBytes::try_from(digest.as_slice()).expect("32 bytes");
        let scalar = <Scalar as Reduce<FieldBytes>>::reduce(&bytes) + Scalar::ONE;
        let key = SigningKey::from_bytes(&scalar.to_repr()).expect("a non-zero scalar");
        let point = key.verifying_key().to_sec1_point(false);
        let jwks: serde_json::Value = serde_json::from_str(JWKS).expect("JSON");
        let published = &jwks["keys"][0];
        assert_eq!(published["kid"], ES256_KID);
        assert_eq!(published["x"], base64url::encode(&point.as_bytes()[1..33]));
        assert_eq!(published["y"], base64url::encode(&point.as_bytes()[33..65]));
        key
    })
}

/// The provider list every filter would compile from configuration: the
/// fixed issuer, audience and key set, every algorithm of the key set.
pub fn provider_spec_json() -> String {
    format!(
        r#"[{{"name":"corp","issuer":"{ISSUER}","audiences":["{AUDIENCE}"],
             "algorithms":["ES256","ES384","RS256","PS256","EdDSA"],"jwks":{{"inline":{JWKS}}}}}]"#
    )
}

thread_local! {
    static PROVIDERS: Rc<Vec<Provider>> = Rc::new(
        compile_providers(
            from_json::<Vec<ProviderSpec>>(provider_spec_json().as_bytes()).expect("provider JSON"),
            "providers",
        )
        .expect("the fuzz provider compiles"),
    );
}

/// The compiled providers (one per thread: providers hold `Rc`s).
pub fn providers() -> Rc<Vec<Provider>> {
    PROVIDERS.with(Rc::clone)
}

/// The secondary issuer of the in-task-auth-code configuration.
pub const BANK: &str = "https://bank.example";

/// An in-task-auth-code configuration: the bank as secondary IdP (its keys
/// are the fixed ES256 key), transfers (`/operation` = `transfer` in a data
/// part) need its credential, the user is named by a token claim-enforcement
/// verified on the request.
pub fn in_task_config_json() -> String {
    let jwks: serde_json::Value = serde_json::from_str(JWKS).expect("JSON");
    serde_json::json!({
        "secondaryIdp": {
            "name": "bank",
            "authorizationEndpoint": format!("{BANK}/authorize"),
            "tokenEndpoint": format!("{BANK}/token"),
            "cluster": "bank_idp",
            "tokenPath": "/token",
            "clientId": "transfer-gateway",
            "clientSecret": "s3cr3t",
            "redirectUri": "https://gw.example/a2a/oauth/callback",
            "scopes": ["transfers:write"],
            "audience": "bank-api",
            "providers": [{
                "name": "bank", "issuer": BANK, "audiences": ["bank-api"], "algorithms": ["ES256"],
                "jwks": {"inline": {"keys": [jwks["keys"][0]]}}
            }]
        },
        "rules": [{"name": "transfers", "match": {"pathPrefix": "/"},
                   "when": {"source": "data", "pointer": "/operation", "equals": "transfer"}}],
        "primaryIdentity": {"verifiedBy": "claimEnforcement"},
        "userBinding": {"secondaryClaim": "sub"},
        // Small tables: each run creates their slots.
        "limits": {"pendingAuthorizations": 64, "storedTokens": 64},
        "identityHeader": "x-baton-user"
    })
    .to_string()
}

thread_local! {
    static IN_TASK_CONFIG: Rc<in_task_auth_code::model::FilterConfig> = Rc::new(
        in_task_auth_code::config::parse(in_task_config_json().as_bytes()).expect("the fuzz configuration compiles"),
    );
}

/// The compiled in-task-auth-code configuration (one per thread).
pub fn in_task_config() -> Rc<in_task_auth_code::model::FilterConfig> {
    IN_TASK_CONFIG.with(Rc::clone)
}
