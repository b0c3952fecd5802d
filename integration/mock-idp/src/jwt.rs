//! Verification of tokens presented back to the IdP (token exchange
//! subjects and actors, OBO assertions, userinfo bearers): signature
//! against the IdP's own published keys, then `iss`, `exp` and `nbf`.

use serde_json::{Map, Value};

use crate::keyring::KeyRing;
use crate::keys::{KeyAlg, b64url_decode};

/// Allowed clock skew for `nbf`, in seconds.
const NBF_LEEWAY_SECS: i64 = 30;

/// Verifies `token` and returns its claims, or a reason for the error description.
pub(crate) fn verify_own_token(
    keys: &KeyRing,
    issuer: &str,
    token: &str,
    now: i64,
) -> Result<Map<String, Value>, String> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS".to_string());
    };
    let header = decode_object(header_b64).ok_or("malformed JOSE header")?;
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    let alg: KeyAlg = alg_name.parse().map_err(|_| format!("algorithm {alg_name:?} is not accepted"))?;
    let candidates = match header.get("kid").and_then(Value::as_str) {
        Some(kid) => keys.published(kid).into_iter().collect(),
        None => keys.published_for(alg),
    };
    let signature = b64url_decode(signature_b64).ok_or("malformed signature encoding")?;
    let signing_input = &token[..header_b64.len() + 1 + claims_b64.len()];
    let verified = candidates
        .iter()
        .filter(|key| key.key_alg() == alg)
        .any(|key| key.verify_bytes(signing_input.as_bytes(), &signature));
    if !verified {
        return Err("signature does not verify against a published key".to_string());
    }
    let claims = decode_object(claims_b64).ok_or("malformed claims")?;
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err("issuer mismatch".to_string());
    }
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or("missing or non-integer exp")?;
    if exp <= now {
        return Err("token expired".to_string());
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_i64().ok_or("non-integer nbf")?;
        if nbf > now + NBF_LEEWAY_SECS {
            return Err("token not yet valid".to_string());
        }
    }
    Ok(claims)
}

fn decode_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = b64url_decode(segment)?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Decodes the payload of a compact JWS without any verification.
pub fn decode_claims_unverified(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&b64url_decode(payload)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{SigningKey, sign_hs256};
    use serde_json::json;
    use std::sync::Arc;

    const ISS: &str = "http://issuer.test";

    fn ring() -> KeyRing {
        KeyRing::new(&[Arc::new(SigningKey::es256("k1").unwrap())], &[KeyAlg::Es256]).unwrap()
    }

    fn claims(exp: i64) -> Value {
        json!({"iss": ISS, "sub": "alice", "exp": exp, "nbf": 0})
    }

    #[test]
    fn accepts_own_valid_token_and_rejects_tampering() {
        let keys = ring();
        let key = keys.active(KeyAlg::Es256).unwrap();
        let token = key.sign_compact(&json!({"alg": "ES256", "kid": "k1"}), &claims(2000));
        assert_eq!(verify_own_token(&keys, ISS, &token, 1000).unwrap()["sub"], "alice");
        assert!(verify_own_token(&keys, ISS, &token, 2000).unwrap_err().contains("expired"));
        assert!(verify_own_token(&keys, "http://other", &token, 1000).is_err());
        let unknown_kid = key.sign_compact(&json!({"alg": "ES256", "kid": "nope"}), &claims(2000));
        assert!(verify_own_token(&keys, ISS, &unknown_kid, 1000).is_err());
        let no_kid = key.sign_compact(&json!({"alg": "ES256"}), &claims(2000));
        assert!(verify_own_token(&keys, ISS, &no_kid, 1000).is_ok());
    }

    #[test]
    fn rejects_foreign_keys_and_hmac() {
        let keys = ring();
        let foreign = SigningKey::es256("k1").unwrap();
        let forged = foreign.sign_compact(&json!({"alg": "ES256", "kid": "k1"}), &claims(2000));
        assert!(verify_own_token(&keys, ISS, &forged, 1000).is_err());
        let hs = sign_hs256(b"secret", &json!({"alg": "HS256", "kid": "k1"}), &claims(2000));
        assert!(verify_own_token(&keys, ISS, &hs, 1000).unwrap_err().contains("not accepted"));
    }
}
