//! claim-enforcement inside a real Envoy: what passes, what is refused with
//! which status and challenge, and what the upstream sees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/support.rs"]
mod support;

use std::time::Duration;

use baton_harness::body_json;
use http_kit::ClientRequest;
use mock_idp::{b64url, now_secs};
use serde_json::json;
use support::*;

#[test]
fn valid_es256_and_rs256_tokens_pass_with_claims_forwarded_and_spoofs_stripped() {
    let idp = idp();
    let backend = backend();
    let envoy = envoy_with(ce_config(&idp), &idp, &backend, 1);

    let es256 = idp.mint(claims(&idp, "alice"));
    let response = envoy.send(
        &ClientRequest::get("/orders/42")
            .header("Authorization", &format!("Bearer {es256}"))
            .header("x-user-id", "admin")
            .header("X-User-Roles", "admin")
            .header("x-jwt-payload", "eyJzdWIiOiJhZG1pbiJ9"),
    );
    assert_eq!(response.status, 200, "{}", response.body_str());
    let seen = backend.requests();
    let request = seen.last().unwrap();
    assert_eq!(request.header_all("x-user-id"), ["alice"]);
    assert_eq!(request.header_all("x-user-roles"), ["trader,viewer"]);
    assert_eq!(request.header("x-client-id"), Some("web-app"));
    assert_eq!(request.header("x-jwt-payload"), es256.split('.').nth(1));
    assert_eq!(request.header("authorization"), Some(format!("Bearer {es256}").as_str()));

    let mut rs_claims = claims(&idp, "bob");
    rs_claims["roles"] = json!("viewer");
    let rs256 = idp.mint_with("RS256", json!({}), rs_claims).unwrap();
    assert!(rs256.starts_with(&b64url(br#"{"alg":"RS256""#)[..10]));
    let response = envoy.get_with_token("/orders", &rs256);
    assert_eq!(response.status, 200, "{}", response.body_str());
    assert_eq!(backend_header(&backend, "x-user-id").as_deref(), Some("bob"));
    assert_eq!(backend_header(&backend, "x-user-roles").as_deref(), Some("viewer"));

    // A public route needs no token, and still strips spoofed identity.
    let response = envoy.get("/healthz", &[("x-user-id", "admin")]);
    assert_eq!(response.status, 200);
    assert_eq!(backend_header(&backend, "x-user-id"), None);

    assert_eq!(envoy.counter("baton_ce.allowed"), 2);
    assert_eq!(envoy.counter("baton_ce.allowed_public"), 1);
}

#[test]
fn every_refusal_has_its_status_and_challenge_and_nothing_is_forwarded() {
    let idp = idp();
    let backend = backend();
    let envoy = envoy_with(ce_config(&idp), &idp, &backend, 1);
    let now = now_secs();
    let token = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims(&idp, "alice");
        change(&mut c);
        idp.mint(c)
    };
    let valid = token(&|_| {});
    let (header_b64, payload_b64) = {
        let mut parts = valid.split('.');
        (parts.next().unwrap().to_string(), parts.next().unwrap().to_string())
    };
    let mut admin_claims = claims(&idp, "alice");
    admin_claims["sub"] = json!("admin");
    let tampered_payload = b64url(admin_claims.to_string().as_bytes());
    let stranger = mock_idp::SigningKey::es256(idp.active_key("ES256").unwrap().kid()).unwrap();
    let es384 = mock_idp::SigningKey::es384("p384").unwrap();

    let invalid = |description: &str| {
        format!(r#"Bearer realm="orders", error="invalid_token", error_description="{description}""#)
    };
    let cases: Vec<(&str, String, &str, u16, String)> = vec![
        ("missing", String::new(), "/orders", 401, r#"Bearer realm="orders""#.to_string()),
        ("not a jwt", "Bearer a.b.c".into(), "/orders", 401, invalid("token header is not base64url")),
        ("expired", format!("Bearer {}", token(&|c| c["exp"] = json!(now - 120))), "/orders", 401, invalid("token is expired")),
        ("not yet valid", format!("Bearer {}", token(&|c| c["nbf"] = json!(now + 600))), "/orders", 401, invalid("token is not yet valid")),
        ("wrong issuer", format!("Bearer {}", token(&|c| c["iss"] = json!("https://evil.example"))), "/orders", 401, invalid("token issuer is not accepted")),
        ("wrong audience", format!("Bearer {}", token(&|c| c["aud"] = json!(["ledger", "payments"]))), "/orders", 401, invalid("token audience is not accepted")),
        ("bad signature", format!("Bearer {}", stranger.sign_compact(&json!({"alg": "ES256", "kid": stranger.kid(), "typ": "at+jwt"}), &claims(&idp, "alice"))), "/orders", 401, invalid("token signature is invalid")),
        ("tampered payload", format!("Bearer {header_b64}.{tampered_payload}.{}", valid.split('.').nth(2).unwrap()), "/orders", 401, invalid("token signature is invalid")),
        ("algorithm not allowed", format!("Bearer {}", es384.sign_compact(&json!({"alg": "ES384", "kid": "p384"}), &claims(&idp, "alice"))), "/orders", 401, invalid("token algorithm ES384 is not allowed")),
        ("alg none", format!("Bearer {}.{payload_b64}.", b64url(br#"{"alg":"none"}"#)), "/orders", 401, invalid("unsigned tokens are not accepted")),
        ("unknown kid", format!("Bearer {}", stranger.sign_compact(&json!({"alg": "ES256", "kid": "no-such-key"}), &claims(&idp, "alice"))), "/orders", 401, invalid("token signing key is unknown")),
        ("missing scope", format!("Bearer {}", token(&|c| c["scope"] = json!("profile"))), "/orders", 403,
         r#"Bearer realm="orders", error="insufficient_scope", error_description="token lacks a required scope", scope="orders:read""#.into()),
        ("claim rule", format!("Bearer {valid}"), "/admin/users", 403,
         r#"Bearer realm="orders", error="insufficient_scope", error_description="token claim roles does not satisfy the route policy""#.into()),
    ];
    for (name, authorization, path, status, challenge) in &cases {
        let mut request = ClientRequest::get(path);
        if !authorization.is_empty() {
            request = request.header("authorization", authorization);
        }
        let response = envoy.send(&request);
        assert_eq!(response.status, *status, "{name}: {}", response.body_str());
        assert_eq!(response.header("www-authenticate"), Some(challenge.as_str()), "{name}");
        assert_eq!(response.header("content-type"), Some("application/json"), "{name}");
        // The body says what the challenge says; without a token, there is
        // no error in the challenge (RFC 6750 §3.1) but there is in the body.
        let body = body_json(&response);
        let expected =
            match (challenge_param(challenge, "error"), challenge_param(challenge, "error_description")) {
                (Some(error), Some(description)) => json!({"error": error, "error_description": description}),
                _ => json!({"error": "unauthorized", "error_description": "a bearer token is required"}),
            };
        assert_eq!(body, expected, "{name}");
    }

    // Step-up: a password-only login, or one too old, for a transfer.
    for (name, change) in
        [("weak login", json!({"acr": "pwd"})), ("old login", json!({"auth_time": now - 3600}))]
    {
        let stale = token(&|c| {
            for (claim, value) in change.as_object().unwrap() {
                c[claim] = value.clone();
            }
        });
        let response = envoy.send(
            &ClientRequest::post("/transfers", "application/json", b"{}".to_vec())
                .header("authorization", &format!("Bearer {stale}")),
        );
        assert_eq!(response.status, 401, "{name}");
        assert_eq!(
            response.header("www-authenticate"),
            Some(
                r#"Bearer realm="orders", error="insufficient_user_authentication", error_description="a stronger or more recent authentication is required", acr_values="mfa", max_age="300""#
            ),
            "{name}"
        );
    }

    // Two credentials are ambiguous: 400 invalid_request.
    let response = envoy.send(
        &ClientRequest::get("/orders")
            .header("authorization", &format!("Bearer {valid}"))
            .header("authorization", "Bearer other"),
    );
    assert_eq!(response.status, 400);
    assert!(response.header("www-authenticate").unwrap().contains(r#"error="invalid_request""#));

    // No route: 403 without a challenge.
    let response = envoy.get_with_token("/elsewhere", &valid);
    assert_eq!(response.status, 403);
    assert_eq!(body_json(&response)["error"], "access_denied");
    assert_eq!(response.header("www-authenticate"), None);

    assert!(backend.requests().is_empty(), "a refused request reached the backend");
    assert_eq!(envoy.counter("baton_ce.denied.invalid_token"), 10);
    assert_eq!(envoy.counter("baton_ce.denied.missing_token"), 1);
    assert_eq!(envoy.counter("baton_ce.denied.insufficient_scope"), 2);
    assert_eq!(envoy.counter("baton_ce.denied.step_up_required"), 2);
    assert_eq!(envoy.counter("baton_ce.denied.invalid_request"), 1);
    assert_eq!(envoy.counter("baton_ce.denied.no_route"), 1);

    // One audit line per decision, none with a token in it.
    let audit: Vec<String> =
        envoy.filter_logs().into_iter().filter(|line| line.contains(" audit ")).collect();
    assert_eq!(audit.len(), cases.len() + 2 + 1 + 1, "{audit:#?}");
    let logs = envoy.logs();
    assert!(
        !logs.contains(&payload_b64) && !logs.contains(valid.split('.').nth(2).unwrap()),
        "a token reached the log"
    );
}

#[test]
fn a_cached_token_is_refused_once_it_expires() {
    let idp = idp();
    let backend = backend();
    let mut config = ce_config(&idp);
    config["providers"][0]["clockSkewSeconds"] = json!(0);
    let envoy = envoy_with(config, &idp, &backend, 1);
    let mut c = claims(&idp, "alice");
    c["exp"] = json!(now_secs() + 2);
    let token = idp.mint(c);
    assert_eq!(envoy.get_with_token("/orders", &token).status, 200);
    assert_eq!(envoy.get_with_token("/orders", &token).status, 200);
    assert_eq!(envoy.counter("baton_ce.cache.hit_local"), 1, "second use served from the cache");
    std::thread::sleep(Duration::from_millis(3100));
    let response = envoy.get_with_token("/orders", &token);
    assert_eq!(response.status, 401);
    assert!(response.header("www-authenticate").unwrap().contains("token is expired"));
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn verified_tokens_are_shared_by_the_workers() {
    let idp = idp();
    let backend = backend();
    let envoy = envoy_with(ce_config(&idp), &idp, &backend, 2);
    let token = idp.mint(claims(&idp, "alice"));
    for _ in 0..20 {
        // Each request is a new connection, spread over both workers.
        assert_eq!(envoy.get_with_token("/orders", &token).status, 200);
    }
    assert_eq!(envoy.counter("baton_ce.cache.miss"), 1, "verified once for both workers");
    assert_eq!(envoy.counter("baton_ce.cache.hit_local") + envoy.counter("baton_ce.cache.hit_shared"), 19);
}

#[test]
fn forward_token_false_removes_it_and_default_allow_passes_unmatched() {
    let idp = idp();
    let backend = backend();
    let mut config = ce_config(&idp);
    config["forwardToken"] = json!(false);
    config["defaultAction"] = json!("allow");
    let envoy = envoy_with(config, &idp, &backend, 1);
    let token = idp.mint(claims(&idp, "alice"));
    assert_eq!(envoy.get_with_token("/orders", &token).status, 200);
    assert_eq!(backend_header(&backend, "authorization"), None);
    assert_eq!(backend_header(&backend, "x-user-id").as_deref(), Some("alice"));
    let response = envoy.get("/unlisted", &[("x-user-id", "admin")]);
    assert_eq!(response.status, 200);
    assert_eq!(backend_header(&backend, "x-user-id"), None);
}

#[test]
fn a_host_rule_holds_in_every_spelling_of_the_host() {
    let idp = idp();
    let backend = backend();
    let mut config = ce_config(&idp);
    // A strict rule for one host, everything else public: the kind of
    // policy a host spelled another way would slip past.
    config["routes"] = json!([
        {"name": "admin-host", "match": {"host": "admin.internal"},
         "require": {"claims": [{"claim": "roles", "contains": "admin"}]}},
        {"name": "public", "action": "allow"}
    ]);
    let envoy = envoy_with(config, &idp, &backend, 1);
    let viewer = idp.mint(claims(&idp, "alice"));
    for host in
        ["admin.internal", "ADMIN.internal", "admin.internal.", "admin.internal.:443", "Admin.Internal.:80"]
    {
        let refused = envoy.send(
            &ClientRequest::get("/")
                .header("host", host)
                .header("authorization", &format!("Bearer {viewer}")),
        );
        assert_eq!(refused.status, 403, "{host}: {}", refused.body_str());
    }
    assert!(backend.requests().is_empty(), "a spelling of the host passed its rule");
    let other = envoy.send(&ClientRequest::get("/").header("host", "www.internal"));
    assert_eq!(other.status, 200, "the public route still serves other hosts");
}

/// The value of `name="…"` in a `WWW-Authenticate` challenge.
fn challenge_param<'a>(challenge: &'a str, name: &str) -> Option<&'a str> {
    let start = challenge.find(&format!(" {name}=\""))? + name.len() + 3;
    challenge[start..].split('"').next()
}
