//! Token endpoint request checks and client authentication.

use http_kit::{ClientRequest, send};

use crate::common::*;

const CC: (&str, &str) = ("grant_type", "client_credentials");

#[test]
fn client_secret_basic_and_post_both_work() {
    let idp = start();
    let basic = token_request(&idp, &[CC], Some(BROKER));
    assert_eq!(basic.status, 200, "{}", basic.body_str());
    let post = token_request(&idp, &[CC, ("client_id", BROKER.0), ("client_secret", BROKER.1)], None);
    assert_eq!(post.status, 200, "{}", post.body_str());
    let methods: Vec<Option<String>> = idp.token_requests().into_iter().map(|r| r.auth_method).collect();
    assert_eq!(
        methods,
        vec![Some("client_secret_basic".to_string()), Some("client_secret_post".to_string())]
    );
}

#[test]
fn basic_credentials_are_form_urlencoded_before_base64() {
    let idp = start();
    let response = token_request(&idp, &[CC], Some(("odd client", "s3cr3t: with+&%")));
    assert_eq!(response.status, 200, "{}", response.body_str());
}

#[test]
fn wrong_secret_is_invalid_client_with_a_basic_challenge() {
    let idp = start();
    let response = token_request(&idp, &[CC], Some((BROKER.0, "wrong")));
    assert_oauth_error(&response, 401, "invalid_client");
    assert!(response.header("www-authenticate").unwrap().starts_with("Basic realm="));
    let post = token_request(&idp, &[CC, ("client_id", BROKER.0), ("client_secret", "wrong")], None);
    assert_oauth_error(&post, 401, "invalid_client");
    assert!(post.header("www-authenticate").is_none(), "no Basic challenge when Basic was not used");
}

#[test]
fn unknown_client_missing_auth_and_disallowed_method_are_invalid_client() {
    let idp = start();
    assert_oauth_error(&token_request(&idp, &[CC], Some(("ghost", "x"))), 401, "invalid_client");
    assert_oauth_error(&token_request(&idp, &[CC], None), 401, "invalid_client");
    // A confidential client cannot pass as public by omitting its secret.
    assert_oauth_error(&token_request(&idp, &[CC, ("client_id", BROKER.0)], None), 401, "invalid_client");
    // restricted-agent is registered for client_secret_post only.
    let basic = token_request(&idp, &[CC], Some(("restricted-agent", "restricted-secret")));
    assert_oauth_error(&basic, 401, "invalid_client");
    let post = token_request(
        &idp,
        &[CC, ("client_id", "restricted-agent"), ("client_secret", "restricted-secret")],
        None,
    );
    assert_eq!(post.status, 200, "{}", post.body_str());
}

#[test]
fn two_authentication_methods_at_once_are_refused() {
    let idp = start();
    let response = token_request(&idp, &[CC, ("client_secret", BROKER.1)], Some(BROKER));
    assert_oauth_error(&response, 401, "invalid_client");
}

#[test]
fn request_shape_errors() {
    let idp = start();
    let json = ClientRequest::post("/token", "application/json", r#"{"grant_type":"client_credentials"}"#)
        .header("Authorization", &basic(BROKER.0, BROKER.1));
    assert_oauth_error(&send(idp.addr(), &json, TIMEOUT).unwrap(), 400, "invalid_request");
    let duplicated = token_request(&idp, &[CC, ("scope", "a"), ("scope", "b")], Some(BROKER));
    assert_oauth_error(&duplicated, 400, "invalid_request");
    let get = send(idp.addr(), &ClientRequest::get("/token"), TIMEOUT).unwrap();
    assert_eq!(get.status, 405);
    assert_oauth_error(
        &token_request(&idp, &[("grant_type", "password")], Some(BROKER)),
        400,
        "unsupported_grant_type",
    );
    assert_oauth_error(&token_request(&idp, &[], Some(BROKER)), 400, "invalid_request");
    // finport-app is a public client registered for the code flow only.
    let public_cc = token_request(&idp, &[CC, ("client_id", "finport-app")], None);
    assert_oauth_error(&public_cc, 400, "unauthorized_client");
    // charset parameters on the media type are fine.
    let with_charset = ClientRequest::post(
        "/token",
        "application/x-www-form-urlencoded; charset=UTF-8",
        "grant_type=client_credentials",
    )
    .header("Authorization", &basic(BROKER.0, BROKER.1));
    assert_eq!(send(idp.addr(), &with_charset, TIMEOUT).unwrap().status, 200);
}

#[test]
fn client_credentials_audiences_and_scopes() {
    let idp = start();
    let token_claims = |pairs: &[(&str, &str)]| {
        let response = token_request(&idp, pairs, Some(BROKER));
        assert_eq!(response.status, 200, "{}", response.body_str());
        claims(response.json().unwrap()["access_token"].as_str().unwrap())
    };
    let single = token_claims(&[CC, ("audience", "portfolio-api")]);
    assert_eq!(
        (single["sub"].as_str(), single["aud"].as_str()),
        (Some("agent-broker"), Some("portfolio-api"))
    );
    assert_eq!(single["client_id"], "agent-broker");
    let several =
        token_claims(&[CC, ("audience", "a"), ("resource", "https://r.example"), ("audience", "b")]);
    assert_eq!(several["aud"], serde_json::json!(["a", "b", "https://r.example"]));
    assert_eq!(token_claims(&[CC])["aud"], "agent-broker", "no default audience: the client id");

    let restricted = |pairs: &[(&str, &str)]| {
        let mut all = vec![CC, ("client_id", "restricted-agent"), ("client_secret", "restricted-secret")];
        all.extend_from_slice(pairs);
        token_request(&idp, &all, None)
    };
    let ok = restricted(&[("scope", "portfolio.read")]).json().unwrap();
    assert_eq!(ok["scope"], "portfolio.read");
    assert_eq!(claims(ok["access_token"].as_str().unwrap())["aud"], "portfolio-api");
    assert_oauth_error(&restricted(&[("scope", "portfolio.write")]), 400, "invalid_scope");
    assert_oauth_error(&restricted(&[("audience", "ledger-api")]), 400, "invalid_target");
    let defaulted = restricted(&[]).json().unwrap();
    assert_eq!(defaulted["scope"], "portfolio.read", "all allowed scopes when none requested");
}

#[test]
fn token_requests_are_recorded_without_secrets_or_tokens() {
    let idp = start();
    let subject = idp.mint(idp.standard_claims("alice", "finport-api", 60));
    token_request(
        &idp,
        &[
            ("grant_type", mock_idp::GRANT_TOKEN_EXCHANGE),
            ("subject_token", &subject),
            ("subject_token_type", mock_idp::TOKEN_TYPE_ACCESS_TOKEN),
            ("audience", "portfolio-api"),
            ("resource", "https://r.example"),
            ("scope", "x"),
        ],
        Some(BROKER),
    );
    let recorded = idp.token_requests();
    assert_eq!(recorded.len(), 1);
    let record = &recorded[0];
    assert_eq!(record.grant_type.as_deref(), Some(mock_idp::GRANT_TOKEN_EXCHANGE));
    assert_eq!(record.client_id.as_deref(), Some("agent-broker"));
    assert_eq!(record.audiences, vec!["portfolio-api"]);
    assert_eq!(record.resources, vec!["https://r.example"]);
    assert_eq!(record.scope.as_deref(), Some("x"));
    assert!(record.has_subject_token && !record.has_actor_token);
    assert_eq!(record.status, Some(400), "x is not in the subject's scope");
    assert_eq!(record.error.as_deref(), Some("invalid_scope"));
    let dump = format!("{recorded:?}");
    assert!(!dump.contains(BROKER.1) && !dump.contains(&subject));
}
