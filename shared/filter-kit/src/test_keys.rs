//! Signing keys for native tests: tokens are minted in the test, with the
//! test's clock, never baked in.

use baton_token::base64url::encode;
use jwt_simple::prelude::{ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair};
use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};

/// An ES256 key with a `kid`.
#[derive(Debug)]
pub struct TestKey {
    kid: String,
    key: ES256KeyPair,
}

impl TestKey {
    /// A fresh P-256 key.
    pub fn es256(kid: &str) -> Self {
        Self { kid: kid.to_string(), key: ES256KeyPair::generate() }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        let point = self.key.public_key().public_key().to_bytes_uncompressed();
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "x": encode(&point[1..33]), "y": encode(&point[33..])})
    }

    /// A key set holding only this key.
    pub fn jwks(&self) -> String {
        json!({"keys": [self.jwk()]}).to_string()
    }

    /// Signs exactly this header and these claims.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input =
            format!("{}.{}", encode(header.to_string().as_bytes()), encode(claims.to_string().as_bytes()));
        let signature: p256::ecdsa::Signature = self.key.key_pair().as_ref().sign(input.as_bytes());
        format!("{input}.{}", encode(&signature.to_bytes()))
    }

    /// A token with the usual header (`ES256`, this `kid`, `at+jwt`).
    pub fn token(&self, claims: &Value) -> String {
        self.sign(&json!({"alg": "ES256", "kid": self.kid, "typ": "at+jwt"}), claims)
    }
}
