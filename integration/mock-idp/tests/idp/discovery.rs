//! Discovery, JWKS, key rotation, minting and userinfo.

use http_kit::{ClientRequest, send};
use mock_idp::{MockIdp, MockIdpConfig};
use serde_json::json;

use crate::common::*;

#[test]
fn discovery_documents_describe_every_endpoint_from_the_issuer() {
    let idp = start();
    let base = idp.base_url();
    for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let doc = get(&idp, path).json().unwrap();
        assert_eq!(doc["issuer"], idp.issuer().as_str());
        assert_eq!(doc["authorization_endpoint"], format!("{base}/authorize"));
        assert_eq!(doc["token_endpoint"], format!("{base}/token"));
        assert_eq!(doc["jwks_uri"], format!("{base}/jwks"));
        assert_eq!(doc["userinfo_endpoint"], format!("{base}/userinfo"));
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post"])
        );
        let grants = doc["grant_types_supported"].to_string();
        for grant in [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
        ] {
            assert!(grants.contains(grant), "{grant}");
        }
        let algs = doc["id_token_signing_alg_values_supported"].to_string();
        assert!(algs.contains("ES256") && algs.contains("RS256"), "{algs}");
        assert!(doc["scopes_supported"].to_string().contains("openid"));
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
    }
    assert_eq!(idp.calls(mock_idp::Endpoint::Discovery), 2);
}

#[test]
fn configured_issuer_is_used_in_metadata_and_tokens() {
    let config =
        MockIdpConfig { issuer: Some("https://idp.example.test/realms/baton".to_string()), ..test_config() };
    let idp = MockIdp::start(config).unwrap();
    let doc = get(&idp, "/.well-known/openid-configuration").json().unwrap();
    assert_eq!(doc["issuer"], "https://idp.example.test/realms/baton");
    assert_eq!(doc["token_endpoint"], "https://idp.example.test/realms/baton/token");
    let token = idp.mint(idp.standard_claims("alice", "api", 60));
    assert_eq!(claims(&token)["iss"], "https://idp.example.test/realms/baton");
    assert_eq!(idp.base_url(), format!("http://127.0.0.1:{}", idp.port()));
}

#[test]
fn jwks_publishes_es256_and_rs256_with_their_members() {
    let idp = start();
    let response = get(&idp, "/jwks");
    assert_eq!(response.header("content-type"), Some("application/json"));
    let jwks = response.json().unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    let es = keys.iter().find(|k| k["alg"] == "ES256").unwrap();
    assert_eq!(
        (es["kty"].as_str(), es["crv"].as_str(), es["use"].as_str()),
        (Some("EC"), Some("P-256"), Some("sig"))
    );
    assert!(es["x"].is_string() && es["y"].is_string() && es["kid"].is_string());
    assert!(es.get("d").is_none(), "private part must not be published");
    let rs = keys.iter().find(|k| k["alg"] == "RS256").unwrap();
    assert_eq!(
        (rs["kty"].as_str(), rs["e"].as_str(), rs["use"].as_str()),
        (Some("RSA"), Some("AQAB"), Some("sig"))
    );
    assert!(rs["n"].is_string() && rs.get("d").is_none());
    assert_eq!(jwks, idp.jwks());
}

#[test]
fn minted_tokens_verify_against_the_published_jwk() {
    let idp = start();
    let claims_in = idp.standard_claims("alice", json!(["a", "b"]), 120);
    let token = idp.mint(claims_in.clone());
    let key = idp.active_key("ES256").unwrap();
    assert_eq!(header(&token), json!({"alg": "ES256", "kid": key.kid(), "typ": "at+jwt"}));
    assert_eq!(claims(&token), claims_in);
    let exp = claims_in["exp"].as_i64().unwrap();
    assert_eq!(exp - claims_in["iat"].as_i64().unwrap(), 120);
    assert!((claims_in["iat"].as_i64().unwrap() - mock_idp::now_secs()).abs() <= 2);
    assert!(verify_with_published_jwk(&idp, &token));

    let rs = idp.mint_with("RS256", json!({"typ": "JWT"}), claims_in.clone()).unwrap();
    assert_eq!(header(&rs)["alg"], "RS256");
    assert_eq!(header(&rs)["typ"], "JWT");
    assert!(verify_with_published_jwk(&idp, &rs));

    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = mock_idp::b64url(json!({"sub": "mallory"}).to_string().as_bytes());
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert!(!verify_with_published_jwk(&idp, &tampered));
    let no_kid = idp.mint_with("ES256", json!({"kid": null, "typ": null}), claims_in).unwrap();
    assert_eq!(header(&no_kid), json!({"alg": "ES256"}));
    assert!(idp.mint_with("ES384", json!({}), json!({})).is_err(), "no ES384 key before rotation");
}

#[test]
fn rotation_adds_keys_and_retire_removes_them() {
    let idp = start();
    let old_kid = idp.active_key("ES256").unwrap().kid().to_string();
    let new_kid = idp.rotate("ES256").unwrap();
    assert_ne!(old_kid, new_kid);
    let token = idp.mint(idp.standard_claims("alice", "api", 60));
    assert_eq!(header(&token)["kid"], new_kid.as_str());
    let kids = |idp: &MockIdp| -> Vec<String> {
        idp.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(kids(&idp).contains(&old_kid) && kids(&idp).contains(&new_kid));
    assert!(idp.retire(&old_kid));
    assert!(!kids(&idp).contains(&old_kid));
    assert!(!idp.retire(&old_kid));

    let ed_kid = idp.rotate("EdDSA").unwrap();
    let ed = idp.mint_with("EdDSA", json!({}), json!({"sub": "x"})).unwrap();
    assert_eq!(header(&ed)["kid"], ed_kid.as_str());
    let jwk =
        idp.jwks()["keys"].as_array().unwrap().iter().find(|k| k["kid"] == ed_kid.as_str()).cloned().unwrap();
    assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    assert!(idp.rotate("HS256").is_err());

    let rotated = send(idp.addr(), &ClientRequest::new("POST", "/admin/rotate?alg=ES384"), TIMEOUT).unwrap();
    let kid = rotated.json().unwrap()["kid"].as_str().unwrap().to_string();
    assert!(kids(&idp).contains(&kid));
}

#[test]
fn two_idps_have_distinct_kids_even_with_a_shared_rsa_key_source() {
    let (a, b) = (start(), start());
    assert_ne!(a.active_key("ES256").unwrap().kid(), b.active_key("ES256").unwrap().kid());
    let from_a = a.mint(a.standard_claims("alice", "api", 60));
    assert!(!verify_with_published_jwk(&b, &from_a));
}

#[test]
fn userinfo_returns_user_claims_for_a_valid_bearer() {
    let idp = start();
    let token = idp.mint(idp.standard_claims("alice", "api", 60));
    let response = send(
        idp.addr(),
        &ClientRequest::get("/userinfo").header("Authorization", &format!("Bearer {token}")),
        TIMEOUT,
    )
    .unwrap();
    let body = response.json().unwrap();
    assert_eq!((body["sub"].as_str(), body["email"].as_str()), (Some("alice"), Some("alice@example.com")));

    let missing = get(&idp, "/userinfo");
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer realm=\"mock-idp\""));
    let expired = idp.mint(idp.standard_claims("alice", "api", -10));
    let response = send(
        idp.addr(),
        &ClientRequest::get("/userinfo").header("Authorization", &format!("Bearer {expired}")),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(response.status, 401);
    assert!(response.header("www-authenticate").unwrap().contains("error=\"invalid_token\""));
}

#[test]
fn unknown_paths_and_methods() {
    let idp = start();
    assert_eq!(get(&idp, "/nope").status, 404);
    let post = send(idp.addr(), &ClientRequest::post("/jwks", "text/plain", "x"), TIMEOUT).unwrap();
    assert_eq!(post.status, 405);
}
