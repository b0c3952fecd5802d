//! Compact JWT parsing, header and claim decoding, and signature
//! verification with a fixed key set, on arbitrary bytes.
//!
//! Asserts: nothing panics; a parsed token re-encodes to exactly its own
//! segments (canonical base64url, so one token has one spelling) and its
//! claims survive a decode/re-read round trip; an error has a reason and a
//! message; baton-token's ES256 verifier agrees with RustCrypto's on the
//! token's own signature, accepts a fresh valid signature over the token's
//! signing input and refuses it once altered; the filters' verification
//! pipeline never accepts what the key set refuses, re-checks to an
//! accepted token's claims, and gives the same answer from its worker cache
//! and from shared data as from a fresh verification.

use std::rc::Rc;

use crate::fixtures::{ES256_KID, NOW, es256_signing_key, providers, verifier_set};
use baton_filter_kit::keys::JwksMetrics;
use baton_filter_kit::test_host::TestHost;
use baton_filter_kit::verifier::{CacheOutcome, KeyWait, TokenVerifier, VerifyError};
use baton_token::base64url;
use baton_token::claims::Claims;
use baton_token::header::Algorithm;
use baton_token::json;
use baton_token::jwt::{DEFAULT_MAX_TOKEN_BYTES, JwtError, UnverifiedJwt};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, VerifyingKey};

const METRICS: JwksMetrics = JwksMetrics {
    fetch_success: baton_filter_kit::host::Counter::__new("fuzz.jwks.ok"),
    fetch_failure: baton_filter_kit::host::Counter::__new("fuzz.jwks.failed"),
};

/// The target's one call: checks `data` as the module documentation says.
pub fn check(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = UnverifiedJwt::parse(token, DEFAULT_MAX_TOKEN_BYTES);
    // A tighter limit refuses by length alone, before any parsing.
    if token.len() > 64 {
        assert!(matches!(UnverifiedJwt::parse(token, 64), Err(JwtError::TooLarge { .. })));
    }
    match &parsed {
        Ok(jwt) => check_parsed(token, jwt),
        Err(error) => {
            assert!(!error.reason().is_empty());
            assert!(!error.to_string().is_empty());
        }
    }
    check_pipeline(token, parsed.as_ref().ok());
}

fn check_parsed(token: &str, jwt: &UnverifiedJwt<'_>) {
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3);
    assert_eq!(jwt.signing_input(), &token[..segments[0].len() + 1 + segments[1].len()]);
    assert_eq!(jwt.payload_segment(), segments[1]);
    assert_eq!(base64url::encode(jwt.signature()), segments[2], "signature spelling is canonical");
    for segment in &segments[..2] {
        let bytes = base64url::decode(segment).expect("parsed segments decode");
        assert_eq!(&base64url::encode(&bytes), segment, "header and payload spelling is canonical");
    }
    assert_eq!(Algorithm::from_name(jwt.header().alg.name()), Some(jwt.header().alg));

    // Claims: decoding the payload again gives the same object and claims.
    let payload = base64url::decode(segments[1]).expect("payload decodes");
    let object = json::parse_object(&payload).expect("payload is an object");
    assert_eq!(&object, jwt.claims().object());
    let again = Claims::from_object(jwt.claims().object().clone()).expect("claims re-read");
    assert_eq!(&again, jwt.claims());

    // Signature path: the token's own signature, garbage or not.
    let keys = verifier_set();
    let kid = jwt.header().kid.as_deref();
    let alg = jwt.header().alg;
    let input = jwt.signing_input().as_bytes();
    let verdict = keys.verify(kid, alg, input, jwt.signature());
    assert_eq!(verdict, keys.verify(kid, alg, input, jwt.signature()), "verification is deterministic");
    if alg == Algorithm::ES256 && kid == Some(ES256_KID) {
        let reference = Signature::from_slice(jwt.signature())
            .is_ok_and(|signature| es256_signing_key().verifying_key().verify(input, &signature).is_ok());
        assert_eq!(verdict.is_ok(), reference, "ES256 verifier disagrees with p256");
    }

    // A valid ES256 signature over this signing input (a fresh nonce per
    // input, so the verifier's tables see scalars all over the range).
    let signature: Signature = es256_signing_key().sign(input);
    let bytes = signature.to_bytes();
    assert_eq!(keys.verify(Some(ES256_KID), Algorithm::ES256, input, &bytes), Ok(()));
    assert_eq!(keys.verify(None, Algorithm::ES256, input, &bytes), Ok(()));
    // (r, n - s) is the same signature for ECDSA; both verifiers must agree.
    let high_s = Signature::from_scalars(signature.r(), -*signature.s()).expect("valid scalars");
    let reference: &VerifyingKey = es256_signing_key().verifying_key();
    assert_eq!(
        keys.verify(Some(ES256_KID), Algorithm::ES256, input, &high_s.to_bytes()).is_ok(),
        reference.verify(input, &high_s).is_ok(),
    );
    // Any altered byte, of the signature or of the signed input, breaks it.
    let flip = input.len() % bytes.len();
    let mut altered = bytes.to_vec();
    altered[flip] ^= 1 << (input.len() % 8);
    assert!(keys.verify(Some(ES256_KID), Algorithm::ES256, input, &altered).is_err());
    let mut other_input = input.to_vec();
    other_input.push(b'.');
    assert!(keys.verify(Some(ES256_KID), Algorithm::ES256, &other_input, &bytes).is_err());
    // The wrong key family never verifies.
    assert!(keys.verify(Some(ES256_KID), Algorithm::RS256, input, &bytes).is_err());
}

fn check_pipeline(token: &str, parsed: Option<&UnverifiedJwt<'_>>) {
    let host = TestHost::new(NOW);
    let providers = providers();
    let mut verifier =
        TokenVerifier::new(Rc::clone(&providers), "fuzz.", 64, DEFAULT_MAX_TOKEN_BYTES, METRICS);
    match verifier.verify(&host, token, &[], KeyWait::Allowed) {
        Ok((verified, outcome)) => {
            assert_eq!(outcome, CacheOutcome::Miss);
            let jwt = parsed.expect("an accepted token parses");
            let provider = &providers[verified.provider];
            assert!(provider.policy.check_header(jwt.header()).is_ok());
            assert!(provider.policy.check_claims(&verified.claims, NOW).is_ok());
            assert_eq!(&verified.claims, jwt.claims());
            assert_eq!(verified.payload_segment, jwt.payload_segment());
            assert_eq!(verified.kid.as_deref(), jwt.header().kid.as_deref());
            assert!(
                verifier_set()
                    .verify(
                        jwt.header().kid.as_deref(),
                        jwt.header().alg,
                        jwt.signing_input().as_bytes(),
                        jwt.signature()
                    )
                    .is_ok(),
                "the pipeline accepted a signature the key set refuses"
            );

            let (cached, outcome) = verifier.verify(&host, token, &[], KeyWait::Allowed).expect("cached");
            assert_eq!(outcome, CacheOutcome::HitLocal);
            assert_eq!(*cached, *verified);

            let mut other_worker =
                TokenVerifier::new(Rc::clone(&providers), "fuzz.", 64, DEFAULT_MAX_TOKEN_BYTES, METRICS);
            let (shared, outcome) = other_worker.verify(&host, token, &[], KeyWait::Allowed).expect("shared");
            assert_eq!(outcome, CacheOutcome::HitShared);
            assert_eq!(*shared, *verified, "the shared cache entry decodes to the verified token");
        }
        Err(VerifyError::Invalid { reason, description }) => {
            assert!(!reason.is_empty() && !description.is_empty());
        }
        Err(other) => panic!("inline keys never need waiting: {other:?}"),
    }
}
