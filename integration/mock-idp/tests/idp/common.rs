//! Shared test setup: an IdP with extra test clients, token requests, and
//! signature checks written against the crypto crates directly.

use core::time::Duration;
use std::sync::{Arc, OnceLock};

use http_kit::{ClientRequest, ClientResponse, send};
use mock_idp::{
    AuthMethod, ClientRegistration, DEMO_REDIRECT_URI, MockIdp, MockIdpConfig, SigningKey, b64url_decode,
    s256_challenge,
};
use serde_json::Value;

pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const BROKER: (&str, &str) = ("agent-broker", mock_idp::DEMO_BROKER_SECRET);
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// One RSA key for every IdP in this binary: generating one per test is slow.
pub fn shared_rsa_key() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    Arc::clone(KEY.get_or_init(|| Arc::new(SigningKey::rs256("shared-rsa").unwrap())))
}

/// The default config plus clients exercising restrictions.
pub fn test_config() -> MockIdpConfig {
    let mut config = MockIdpConfig { keys: vec![shared_rsa_key()], ..MockIdpConfig::default() };
    config.clients.extend([
        ClientRegistration::confidential("restricted-agent", "restricted-secret")
            .with_auth_methods(&[AuthMethod::ClientSecretPost])
            .with_allowed_audiences(&["portfolio-api"])
            .with_default_audience("portfolio-api")
            .with_allowed_scopes(&["portfolio.read"]),
        // Characters that RFC 6749 §2.3.1 form-encodes inside Basic credentials.
        ClientRegistration::confidential("odd client", "s3cr3t: with+&%")
            .with_auth_methods(&[AuthMethod::ClientSecretBasic]),
    ]);
    config
}

pub fn start() -> MockIdp {
    MockIdp::start(test_config()).unwrap()
}

pub fn get(idp: &MockIdp, target: &str) -> ClientResponse {
    send(idp.addr(), &ClientRequest::get(target), TIMEOUT).unwrap()
}

/// `Authorization: Basic` value with RFC 6749 §2.3.1 form-encoding of both parts.
pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    let encode = |s: &str| http_kit::percent_encode(s).replace("%20", "+");
    let pair = format!("{}:{}", encode(id), encode(secret));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// POSTs a form to /token, with HTTP Basic credentials when given.
pub fn token_request(
    idp: &MockIdp,
    pairs: &[(&str, &str)],
    credentials: Option<(&str, &str)>,
) -> ClientResponse {
    let mut request = ClientRequest::post_form("/token", pairs);
    if let Some((id, secret)) = credentials {
        request = request.header("Authorization", &basic(id, secret));
    }
    send(idp.addr(), &request, TIMEOUT).unwrap()
}

/// Asserts an RFC 6749 error response and returns its body.
pub fn assert_oauth_error(response: &ClientResponse, status: u16, error: &str) -> Value {
    let body = response.json().unwrap();
    assert_eq!((response.status, body["error"].as_str()), (status, Some(error)), "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    assert_eq!(response.header("cache-control"), Some("no-store"));
    body
}

pub fn decode_segment(token: &str, index: usize) -> Value {
    serde_json::from_slice(&b64url_decode(token.split('.').nth(index).unwrap()).unwrap()).unwrap()
}

pub fn claims(token: &str) -> Value {
    decode_segment(token, 1)
}

pub fn header(token: &str) -> Value {
    decode_segment(token, 0)
}

/// Verifies a token's signature with the JWK published under its kid,
/// using `p256`/`rsa` directly (independent of the IdP's own verification).
pub fn verify_with_published_jwk(idp: &MockIdp, token: &str) -> bool {
    let jwks = get(idp, "/jwks").json().unwrap();
    let kid = header(token)["kid"].as_str().unwrap().to_string();
    let Some(jwk) = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()) else {
        return false;
    };
    let (input, signature) = token.rsplit_once('.').unwrap();
    let signature = b64url_decode(signature).unwrap();
    let member = |name: &str| b64url_decode(jwk[name].as_str().unwrap()).unwrap();
    match jwk["kty"].as_str().unwrap() {
        "EC" => {
            use p256::ecdsa::signature::Verifier;
            let mut sec1 = vec![0x04];
            sec1.extend(member("x"));
            sec1.extend(member("y"));
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
            let signature = p256::ecdsa::Signature::from_slice(&signature).unwrap();
            key.verify(input.as_bytes(), &signature).is_ok()
        }
        "RSA" => {
            use sha2::Digest;
            let key = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&member("n")),
                rsa::BigUint::from_bytes_be(&member("e")),
            )
            .unwrap();
            let digest = sha2::Sha256::digest(input.as_bytes());
            key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, &signature).is_ok()
        }
        other => panic!("unexpected kty {other}"),
    }
}

/// `/authorize?...` for `finport-app` with the test PKCE challenge,
/// `state=xyz` and `extra`.
pub fn authorize_target(extra: &[(&str, &str)]) -> String {
    let challenge = s256_challenge(VERIFIER);
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", "finport-app"),
        ("redirect_uri", DEMO_REDIRECT_URI),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "xyz"),
    ];
    pairs.extend_from_slice(extra);
    format!("/authorize?{}", http_kit::form_urlencode(&pairs))
}

/// Runs /authorize for `finport-app` and returns the redirect's query params.
pub fn authorize(idp: &MockIdp, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    redirect_params(&get(idp, &authorize_target(extra)))
}

/// Asserts a redirect to the demo redirect URI; returns its query params.
pub fn redirect_params(response: &ClientResponse) -> Vec<(String, String)> {
    assert_eq!(response.status, 302, "{}", response.body_str());
    let location = response.header("location").unwrap();
    let (base, query) = location.split_once('?').unwrap();
    assert_eq!(base, DEMO_REDIRECT_URI);
    http_kit::parse_urlencoded(query)
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A code for `finport-app`, via /authorize.
pub fn code(idp: &MockIdp, extra: &[(&str, &str)]) -> String {
    param(&authorize(idp, extra), "code").unwrap().to_string()
}

/// Redeems `code` with the test verifier.
pub fn redeem(idp: &MockIdp, code: &str) -> ClientResponse {
    token_request(
        idp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "finport-app"),
            ("code", code),
            ("redirect_uri", DEMO_REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
}
