//! The verification pipeline through the in-memory host, with tokens minted
//! here against the test clock.

use super::*;
use crate::config::{ProviderSpec, compile_providers, from_json};
use crate::keys::FetchError;
use crate::test_host::TestHost;
use crate::test_keys::TestKey;
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.test";
const METRICS: JwksMetrics = JwksMetrics {
    fetch_success: crate::host::Counter::__new("jwks.ok"),
    fetch_failure: crate::host::Counter::__new("jwks.failed"),
};

fn providers(jwks: &str) -> Rc<Vec<Provider>> {
    let specs: Vec<ProviderSpec> = from_json(
        format!(
            r#"[{{"name":"corp","issuer":"{ISS}","audiences":["api"],"algorithms":["ES256"],"jwks":{jwks}}}]"#
        )
        .as_bytes(),
    )
    .unwrap();
    Rc::new(compile_providers(specs, "providers").unwrap())
}

fn inline(key: &TestKey) -> TokenVerifier {
    TokenVerifier::new(providers(&format!(r#"{{"inline":{}}}"#, key.jwks())), "t.", 100, 16 * 1024, METRICS)
}

fn remote() -> TokenVerifier {
    let jwks = r#"{"remote":{"cluster":"idp","path":"/jwks","minRefetchIntervalSeconds":30}}"#;
    TokenVerifier::new(providers(jwks), "t.", 100, 16 * 1024, METRICS)
}

fn claims(sub: &str) -> Value {
    json!({"iss": ISS, "sub": sub, "aud": "api", "iat": NOW - 10, "exp": NOW + 300})
}

fn verify(
    verifier: &mut TokenVerifier,
    host: &TestHost,
    token: &str,
    wait: KeyWait,
) -> Result<CacheOutcome, VerifyError> {
    verifier.verify(host, token, &[], wait).map(|(_, outcome)| outcome)
}

fn invalid(result: Result<CacheOutcome, VerifyError>) -> (&'static str, String) {
    match result {
        Err(VerifyError::Invalid { reason, description }) => (reason, description),
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[test]
fn valid_token_is_verified_once_then_cached() {
    let key = TestKey::es256("k1");
    let mut verifier = inline(&key);
    let host = TestHost::new(NOW);
    let token = key.token(&claims("alice"));
    assert_eq!(verify(&mut verifier, &host, &token, KeyWait::Allowed), Ok(CacheOutcome::Miss));
    assert_eq!(verify(&mut verifier, &host, &token, KeyWait::Allowed), Ok(CacheOutcome::HitLocal));
    let (verified, _) = verifier.verify(&host, &token, &[], KeyWait::Allowed).unwrap();
    assert_eq!(verified.claims.sub.as_deref(), Some("alice"));
    assert_eq!(verified.payload_segment, token.split('.').nth(1).unwrap());
}

#[test]
fn another_worker_reads_the_shared_entry() {
    let key = TestKey::es256("k1");
    let host = TestHost::new(NOW);
    let token = key.token(&claims("alice"));
    let mut first = inline(&key);
    let mut second = TokenVerifier::new(Rc::clone(&first.providers), "t.", 100, 16 * 1024, METRICS);
    assert_eq!(verify(&mut first, &host, &token, KeyWait::Allowed), Ok(CacheOutcome::Miss));
    assert_eq!(verify(&mut second, &host, &token, KeyWait::Allowed), Ok(CacheOutcome::HitShared));
    assert_eq!(verify(&mut second, &host, &token, KeyWait::Allowed), Ok(CacheOutcome::HitLocal));
    let mut other_config = TokenVerifier::new(Rc::clone(&first.providers), "u.", 100, 16 * 1024, METRICS);
    assert_eq!(verify(&mut other_config, &host, &token, KeyWait::Allowed), Ok(CacheOutcome::Miss));
}

#[test]
fn a_cached_token_fails_from_the_second_it_expires() {
    let key = TestKey::es256("k1");
    let mut verifier = inline(&key);
    let host = TestHost::new(NOW);
    let token = key.token(&claims("alice"));
    verify(&mut verifier, &host, &token, KeyWait::Allowed).unwrap();
    host.set_now(NOW + 300 + 59);
    assert_eq!(verify(&mut verifier, &host, &token, KeyWait::Allowed), Ok(CacheOutcome::HitLocal));
    host.set_now(NOW + 300 + 60);
    assert_eq!(
        invalid(verify(&mut verifier, &host, &token, KeyWait::Allowed)),
        ("expired", "token is expired".into())
    );
}

#[test]
fn each_invalid_token_has_its_reason_and_description() {
    let key = TestKey::es256("k1");
    let mut verifier = inline(&key);
    let host = TestHost::new(NOW);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims("alice");
        change(&mut c);
        c
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (key.token(&with(&|c| c["exp"] = json!(NOW - 61))), "expired", "token is expired"),
        (key.token(&with(&|c| c["nbf"] = json!(NOW + 120))), "not_yet_valid", "token is not yet valid"),
        (
            key.token(&with(&|c| c["iat"] = json!(NOW + 3600))),
            "iat_in_future",
            "token is issued in the future",
        ),
        (
            key.token(&with(&|c| c["iss"] = json!("https://evil.test"))),
            "issuer_unknown",
            "token issuer is not accepted",
        ),
        (
            key.token(&with(&|c| c["aud"] = json!(["other"]))),
            "audience_mismatch",
            "token audience is not accepted",
        ),
        (
            key.token(&with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            })),
            "exp_missing",
            "token has no expiry",
        ),
        (TestKey::es256("k1").token(&claims("alice")), "bad_signature", "token signature is invalid"),
        (TestKey::es256("k9").token(&claims("alice")), "unknown_kid", "token signing key is unknown"),
        (key.sign(&json!({"alg": "none"}), &claims("alice")), "alg_none", "unsigned tokens are not accepted"),
        (
            key.sign(&json!({"alg": "HS256"}), &claims("alice")),
            "alg_unsupported",
            "token algorithm is not supported",
        ),
        (
            key.sign(&json!({"alg": "ES384", "kid": "k1"}), &claims("alice")),
            "alg_not_allowed",
            "token algorithm ES384 is not allowed",
        ),
        (
            key.sign(&json!({"alg": "ES256", "crit": ["b64"]}), &claims("alice")),
            "crit_unsupported",
            "token has unsupported critical header parameters",
        ),
        ("abc.def".into(), "malformed", "token has 2 segments, a signed JWT has 3"),
        (
            key.token(&claims("alice")).replacen('.', "=.", 1),
            "malformed_base64",
            "token header is not base64url",
        ),
    ];
    for (token, reason, description) in cases {
        assert_eq!(
            invalid(verify(&mut verifier, &host, &token, KeyWait::Allowed)),
            (reason, description.to_string())
        );
    }
}

#[test]
fn a_route_limited_to_other_providers_refuses_even_a_cached_token() {
    let key = TestKey::es256("k1");
    let mut verifier = inline(&key);
    let host = TestHost::new(NOW);
    let token = key.token(&claims("alice"));
    verify(&mut verifier, &host, &token, KeyWait::Allowed).unwrap();
    let result = verifier.verify(&host, &token, &[7], KeyWait::Allowed);
    assert!(matches!(result, Err(VerifyError::Invalid { reason: "issuer_not_accepted", .. })), "{result:?}");
}

#[test]
fn remote_keys_are_awaited_then_used() {
    let mut verifier = remote();
    let host = TestHost::new(NOW);
    let key = TestKey::es256("k1");
    let token = key.token(&claims("alice"));
    assert_eq!(verify(&mut verifier, &host, &token, KeyWait::Allowed), Err(VerifyError::AwaitKeys(0)));
    assert_eq!(
        verify(&mut verifier, &host, &token, KeyWait::Exhausted),
        Err(VerifyError::KeysUnavailable(0))
    );
    verifier.keys().start_fetch(0, &host).unwrap();
    verifier.keys().finish_fetch(0, &host, Ok(key.jwks().as_bytes()));
    assert_eq!(verify(&mut verifier, &host, &token, KeyWait::Exhausted), Ok(CacheOutcome::Miss));
    assert_eq!(host.counter(METRICS.fetch_success), 1);
}

#[test]
fn while_a_failed_fetch_backs_off_nobody_waits() {
    let mut verifier = remote();
    let host = TestHost::new(NOW);
    verifier.keys().start_fetch(0, &host).unwrap();
    verifier.keys().finish_fetch(0, &host, Err(FetchError::NoResponse));
    let token = TestKey::es256("k1").token(&claims("alice"));
    assert_eq!(verify(&mut verifier, &host, &token, KeyWait::Allowed), Err(VerifyError::KeysUnavailable(0)));
}

#[test]
fn unknown_kid_triggers_one_rate_limited_refetch() {
    let mut verifier = remote();
    let host = TestHost::new(NOW);
    verifier.keys().start_fetch(0, &host).unwrap();
    verifier.keys().finish_fetch(0, &host, Ok(TestKey::es256("k1").jwks().as_bytes()));
    let rotated = TestKey::es256("k2");
    let token = rotated.token(&claims("alice"));
    assert_eq!(
        invalid(verify(&mut verifier, &host, &token, KeyWait::Allowed)).0,
        "unknown_kid",
        "just fetched"
    );
    host.set_now(NOW + 30);
    assert_eq!(verify(&mut verifier, &host, &token, KeyWait::Allowed), Err(VerifyError::AwaitKeys(0)));
    verifier.keys().start_fetch(0, &host).unwrap();
    verifier.keys().finish_fetch(0, &host, Ok(rotated.jwks().as_bytes()));
    assert_eq!(verify(&mut verifier, &host, &token, KeyWait::Exhausted), Ok(CacheOutcome::Miss));
}

#[test]
fn an_unknown_kid_while_the_key_set_cannot_be_refetched_is_unavailability() {
    let mut verifier = remote();
    let host = TestHost::new(NOW);
    let known = TestKey::es256("k1");
    verifier.keys().start_fetch(0, &host).unwrap();
    verifier.keys().finish_fetch(0, &host, Ok(known.jwks().as_bytes()));
    host.set_now(NOW + 30);
    let token = TestKey::es256("k2").token(&claims("alice"));
    assert_eq!(verify(&mut verifier, &host, &token, KeyWait::Allowed), Err(VerifyError::AwaitKeys(0)));
    verifier.keys().start_fetch(0, &host).unwrap();
    verifier.keys().finish_fetch(0, &host, Err(FetchError::NoResponse));
    // The refetch failed: 503, not "unknown key" (which would blame the token).
    assert_eq!(
        verify(&mut verifier, &host, &token, KeyWait::Exhausted),
        Err(VerifyError::KeysUnavailable(0))
    );
    // The cached keys still verify the tokens they know.
    assert!(verify(&mut verifier, &host, &known.token(&claims("bob")), KeyWait::Exhausted).is_ok());
}

#[test]
fn a_cached_token_of_a_retired_key_is_verified_again() {
    let mut verifier = remote();
    let host = TestHost::new(NOW);
    let key = TestKey::es256("k1");
    verifier.keys().start_fetch(0, &host).unwrap();
    verifier.keys().finish_fetch(0, &host, Ok(key.jwks().as_bytes()));
    let token = key.token(&claims("alice"));
    verify(&mut verifier, &host, &token, KeyWait::Allowed).unwrap();
    host.set_now(NOW + 30);
    verifier.keys().want_fetch(0);
    verifier.keys().start_fetch(0, &host).unwrap();
    verifier.keys().finish_fetch(0, &host, Ok(TestKey::es256("k2").jwks().as_bytes()));
    assert_eq!(invalid(verify(&mut verifier, &host, &token, KeyWait::Exhausted)).0, "unknown_kid");
}

#[test]
fn corrupt_shared_entries_are_misses() {
    let key = TestKey::es256("k1");
    let token = VerifiedToken {
        provider: 1,
        kid: Some("k1".into()),
        claims: Claims::default(),
        payload_segment: base64url::encode(br#"{"sub":"alice"}"#),
        hash: TokenHash::of(b"t"),
    };
    let good = encode_entry(&token);
    let decoded = decode_entry(&good, token.hash).unwrap();
    assert_eq!((decoded.claims.sub.as_deref(), decoded.hash), (Some("alice"), token.hash));
    assert!(decode_entry(&good[..3], token.hash).is_none());
    let mut bad_version = good.clone();
    bad_version[0] = 9;
    assert!(decode_entry(&bad_version, token.hash).is_none());
    let mut bad_payload = good.clone();
    let last = bad_payload.len() - 1;
    bad_payload[last] = b'!';
    assert!(decode_entry(&bad_payload, token.hash).is_none());
    drop(key);
}
