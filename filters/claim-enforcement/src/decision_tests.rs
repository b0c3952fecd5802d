//! Decisions through the in-memory host: every status and challenge the
//! filter can answer, with tokens minted here against the test clock.

use super::*;
use crate::config;
use baton_filter_kit::keys::FetchError;
use baton_filter_kit::reply::Reply;
use baton_filter_kit::test_host::TestHost;
use baton_filter_kit::test_keys::TestKey;
use baton_token::TokenHash;
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.test";

struct Setup {
    engine: Engine,
    host: TestHost,
    key: TestKey,
}

fn setup_with(key: TestKey, routes: &str, extra: &str) -> Setup {
    let json = format!(
        r#"{{"providers":[{{"name":"corp","issuer":"{ISS}","audiences":["api"],"algorithms":["ES256"],
             "jwks":{{"inline":{}}}}}],
            "realm":"orders","routes":{routes},
            "forwardClaims":[{{"claim":"sub","header":"x-user-id"}},{{"claim":"roles","header":"x-user-roles"}},
                             {{"claim":"org","header":"x-org"}}]{extra}}}"#,
        key.jwks()
    );
    let config = Rc::new(config::parse(json.as_bytes()).unwrap());
    Setup { engine: Engine::new(config), host: TestHost::new(NOW), key }
}

fn setup() -> Setup {
    setup_with(TestKey::es256("k1"), DEFAULT_ROUTES, "")
}

const DEFAULT_ROUTES: &str = r#"[
    {"name":"health","match":{"path":"/healthz"},"action":"allow"},
    {"name":"orders-read","match":{"pathPrefix":"/orders","methods":["GET"]},"require":{"scopes":{"allOf":["orders:read"]}}},
    {"name":"orders-admin","match":{"pathPrefix":"/admin"},"require":{"claims":[{"claim":"roles","contains":"admin"}]}},
    {"name":"transfer","match":{"pathPrefix":"/transfers","methods":["POST"]},
     "require":{"scopes":{"allOf":["transfers:write"]},"stepUp":{"acrValues":["mfa"],"maxAgeSeconds":300}}}
]"#;

fn claims(sub: &str) -> Value {
    json!({"iss": ISS, "sub": sub, "aud": "api", "iat": NOW - 10, "exp": NOW + 300,
           "scope": "orders:read transfers:write", "client_id": "web", "roles": ["trader", "viewer"],
           "org": {"id": "o1"}, "acr": "mfa", "auth_time": NOW - 60})
}

fn request(method: &str, path: &str, authorization: Option<&str>) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        authority: "api.test".into(),
        method_override: None,
        credential: match authorization {
            None => Credential::Absent,
            Some(value) => Credential::one(value.as_bytes().to_vec()),
        },
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl Setup {
    fn decide(&mut self, request: &Request) -> Verdict {
        self.engine.decide(&self.host, request, KeyWait::Allowed)
    }

    fn get(&mut self, path: &str, token: &str) -> Verdict {
        self.decide(&request("GET", path, Some(&bearer(token))))
    }
}

fn rejection(verdict: Verdict) -> Reply {
    match verdict {
        Verdict::Reply(rejection) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn forward(verdict: Verdict) -> Forward {
    match verdict {
        Verdict::Forward(forward) => forward,
        other => panic!("expected forwarding, got {other:?}"),
    }
}

/// The headers a forward sets, values exposed.
fn set_headers(forward: &Forward) -> Vec<(String, String)> {
    forward.set.iter().map(|(name, value)| (name.clone(), value.expose().to_string())).collect()
}

fn header<'a>(rejection: &'a Reply, name: &str) -> Option<&'a str> {
    rejection.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

fn assert_invalid_token(verdict: Verdict, description: &str) {
    let rejection = rejection(verdict);
    assert_eq!(rejection.status, 401);
    let challenge = header(&rejection, "www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&format!(r#"error="invalid_token", error_description="{description}""#)),
        "{challenge}"
    );
    let body: Value = serde_json::from_str(&rejection.body).unwrap();
    assert_eq!(body["error"], "invalid_token");
}

#[test]
fn valid_token_is_forwarded_with_identity_headers() {
    let mut s = setup();
    let token = s.key.token(&claims("alice"));
    let forwarded = forward(s.get("/orders/7", &token));
    assert_eq!(
        set_headers(&forwarded),
        [
            ("x-user-id".to_string(), "alice".to_string()),
            ("x-user-roles".to_string(), "trader,viewer".to_string()),
            ("x-org".to_string(), r#"{"id":"o1"}"#.to_string()),
        ]
    );
    assert!(forwarded.remove.is_empty());
    assert_eq!(forwarded.strip, ["x-user-id", "x-user-roles", "x-org"], "client copies go first");
    assert_eq!(s.host.counter(metrics::ALLOWED), 1);
    assert_eq!(s.host.counter(metrics::CACHE_MISS), 1);
}

#[test]
fn cached_token_still_fails_once_expired() {
    let mut s = setup();
    let token = s.key.token(&claims("alice"));
    forward(s.get("/orders", &token));
    s.host.set_now(NOW + 300 + 59);
    forward(s.get("/orders", &token));
    s.host.set_now(NOW + 300 + 60);
    assert_invalid_token(s.get("/orders", &token), "token is expired");
    // Only uses that passed count as cache hits.
    assert_eq!(s.host.counter(metrics::CACHE_HIT_LOCAL), 1);
    assert_eq!(s.host.counter(metrics::DENIED_INVALID_TOKEN), 1);
}

#[test]
fn missing_token_gets_a_bare_challenge() {
    let mut s = setup();
    let rejection = rejection(s.decide(&request("GET", "/orders", None)));
    assert_eq!(rejection.status, 401);
    assert_eq!(header(&rejection, "www-authenticate"), Some(r#"Bearer realm="orders""#));
    assert_eq!(header(&rejection, "cache-control"), Some("no-store"));
    assert_eq!(s.host.counter(metrics::DENIED_MISSING_TOKEN), 1);
    // Another scheme is no bearer token either.
    let basic = rejection_of(&mut s, request("GET", "/orders", Some("Basic YWxpY2U6cHc=")));
    assert_eq!(header(&basic, "www-authenticate"), Some(r#"Bearer realm="orders""#));
    let glued = rejection_of(&mut s, request("GET", "/orders", Some("Bearerabc")));
    assert_eq!(glued.status, 401);
}

fn rejection_of(s: &mut Setup, request: Request) -> Reply {
    rejection(s.decide(&request))
}

#[test]
fn malformed_credentials_are_invalid_requests() {
    let mut s = setup();
    let mut several = request("GET", "/orders", None);
    several.credential = Credential::Several;
    for (request, description) in [
        (several, "more than one credential header"),
        (request("GET", "/orders", Some("Bearer ")), "bearer credential is empty"),
        (request("GET", "/orders", Some("Bearer a b")), "bearer credential has invalid characters"),
        (request("GET", "/orders", Some("Bearer a\"b")), "bearer credential has invalid characters"),
    ] {
        let rejection = rejection_of(&mut s, request);
        assert_eq!(rejection.status, 400, "{description}");
        assert_eq!(
            header(&rejection, "www-authenticate"),
            Some(
                format!(
                    r#"Bearer realm="orders", error="invalid_request", error_description="{description}""#
                )
                .as_str()
            )
        );
    }
    let mut binary = request("GET", "/orders", None);
    binary.credential = Credential::one(b"Bearer \xff\xfe".to_vec());
    assert_eq!(rejection_of(&mut s, binary).status, 400);
}

#[test]
fn scheme_is_case_insensitive_and_whitespace_tolerated() {
    let mut s = setup();
    let token = s.key.token(&claims("alice"));
    forward(s.decide(&request("GET", "/orders", Some(&format!("bearer {token}")))));
    forward(s.decide(&request("GET", "/orders", Some(&format!("BEARER   {token}")))));
}

#[test]
fn invalid_tokens_get_an_invalid_token_challenge() {
    let mut s = setup();
    let key = TestKey::es256("k1");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims("alice");
        change(&mut c);
        c
    };
    let cases: Vec<(String, &str)> = vec![
        (s.key.token(&with(&|c| c["exp"] = json!(NOW - 61))), "token is expired"),
        (key.token(&claims("alice")), "token signature is invalid"),
        (s.key.sign(&json!({"alg": "none"}), &claims("alice")), "unsigned tokens are not accepted"),
    ];
    for (token, description) in cases {
        assert_invalid_token(s.get("/orders", &token), description);
    }
    assert_eq!(s.host.counter(metrics::DENIED_INVALID_TOKEN), 3);
    assert_eq!(s.host.counter(metrics::ALLOWED), 0);
}

#[test]
fn required_typ_is_enforced() {
    let key = TestKey::es256("k1");
    let json = format!(
        r#"{{"providers":[{{"name":"corp","issuer":"{ISS}","audiences":["api"],"algorithms":["ES256"],"requiredTyp":"at+jwt",
             "jwks":{{"inline":{}}}}}],"routes":[{{"match":{{"pathPrefix":"/"}}}}]}}"#,
        key.jwks()
    );
    let mut engine = Engine::new(Rc::new(config::parse(json.as_bytes()).unwrap()));
    let host = TestHost::new(NOW);
    let plain_jwt = key.sign(&json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}), &claims("alice"));
    let verdict = engine.decide(&host, &request("GET", "/", Some(&bearer(&plain_jwt))), KeyWait::Allowed);
    assert_eq!(rejection(verdict).status, 401);
    let access_token = key.token(&claims("alice"));
    forward(engine.decide(&host, &request("GET", "/", Some(&bearer(&access_token))), KeyWait::Allowed));
}

#[test]
fn missing_scope_is_403_with_the_scope_named() {
    let mut s = setup();
    let mut c = claims("alice");
    c["scope"] = json!("profile");
    let rejection = rejection(s.get("/orders", &s.key.token(&c)));
    assert_eq!(rejection.status, 403);
    assert_eq!(
        header(&rejection, "www-authenticate"),
        Some(
            r#"Bearer realm="orders", error="insufficient_scope", error_description="token lacks a required scope", scope="orders:read""#
        )
    );
    assert_eq!(s.host.counter(metrics::DENIED_INSUFFICIENT_SCOPE), 1);
}

#[test]
fn failed_claim_condition_is_403() {
    let mut s = setup();
    let rejection = rejection(s.get("/admin/users", &s.key.token(&claims("alice"))));
    assert_eq!(rejection.status, 403);
    assert!(header(&rejection, "www-authenticate").unwrap().contains(r#"error="insufficient_scope""#));
    let mut admin = claims("root");
    admin["roles"] = json!(["admin"]);
    forward(s.get("/admin/users", &s.key.token(&admin)));
}

#[test]
fn weak_or_old_login_needs_step_up() {
    let mut s = setup();
    let post =
        |s: &mut Setup, c: &Value| s.decide(&request("POST", "/transfers", Some(&bearer(&s.key.token(c)))));
    forward(post(&mut s, &claims("alice")));
    for change in [json!({"acr": "pwd"}), json!({"auth_time": NOW - 301})] {
        let mut c = claims("alice");
        for (name, value) in change.as_object().unwrap() {
            c[name] = value.clone();
        }
        let rejection = rejection(post(&mut s, &c));
        assert_eq!(rejection.status, 401);
        assert_eq!(
            header(&rejection, "www-authenticate"),
            Some(
                r#"Bearer realm="orders", error="insufficient_user_authentication", error_description="a stronger or more recent authentication is required", acr_values="mfa", max_age="300""#
            )
        );
    }
    assert_eq!(s.host.counter(metrics::DENIED_STEP_UP), 2);
}

#[test]
fn unmatched_routes_are_denied_by_default_and_public_routes_pass() {
    let mut s = setup();
    let rejection = rejection(s.decide(&request("DELETE", "/orders", None)));
    assert_eq!(rejection.status, 403);
    assert_eq!(header(&rejection, "www-authenticate"), None);
    assert_eq!(serde_json::from_str::<Value>(&rejection.body).unwrap()["error"], "access_denied");
    // A public route sets no identity, and lets no client-sent one through.
    let public = forward(s.decide(&request("GET", "/healthz", None)));
    assert_eq!(
        public,
        Forward {
            strip: vec!["x-user-id".into(), "x-user-roles".into(), "x-org".into()],
            ..Forward::default()
        }
    );
    assert_eq!(s.host.counter(metrics::DENIED_NO_ROUTE), 1);
    assert_eq!(s.host.counter(metrics::ALLOWED_PUBLIC), 1);

    let mut open = setup_with(TestKey::es256("k1"), "[]", r#","defaultAction":"allow""#);
    let unmatched = forward(open.decide(&request("DELETE", "/anything", None)));
    assert_eq!(unmatched, Forward { strip: public.strip.clone(), ..Forward::default() });
}

#[test]
fn token_removed_when_not_forwarded_and_payload_forwarded_when_asked() {
    let mut s = setup_with(
        TestKey::es256("k1"),
        r#"[{"match":{"pathPrefix":"/"}}]"#,
        r#","forwardToken":false,"forwardPayloadHeader":"x-jwt-payload""#,
    );
    let token = s.key.token(&claims("alice"));
    let forwarded = forward(s.get("/", &token));
    assert_eq!(forwarded.remove, ["authorization"]);
    let payload = token.split('.').nth(1).unwrap();
    assert!(set_headers(&forwarded).contains(&("x-jwt-payload".to_string(), payload.to_string())));
}

#[test]
fn claims_that_cannot_be_header_values_are_skipped() {
    let mut s = setup();
    let mut c = claims("alice\r\nx-admin: true");
    c["roles"] = json!(["ok"]);
    let forwarded = forward(s.get("/orders", &s.key.token(&c)));
    assert!(set_headers(&forwarded).iter().all(|(name, _)| name != "x-user-id"));
    assert_eq!(s.host.counter(metrics::CLAIM_HEADER_SKIPPED), 1);
}

#[test]
fn resource_metadata_is_in_every_challenge() {
    let mut s = setup_with(
        TestKey::es256("k1"),
        DEFAULT_ROUTES,
        r#","resourceMetadata":"https://api.test/.well-known/oauth-protected-resource""#,
    );
    let missing = rejection(s.decide(&request("GET", "/orders", None)));
    let mut c = claims("alice");
    c["scope"] = json!("none");
    let scope = rejection(s.get("/orders", &s.key.token(&c)));
    let invalid = rejection(s.get("/orders", "a.b.c"));
    for rejection in [missing, scope, invalid] {
        assert!(
            header(&rejection, "www-authenticate")
                .unwrap()
                .ends_with(r#"resource_metadata="https://api.test/.well-known/oauth-protected-resource""#)
        );
    }
}

#[test]
fn route_restricted_to_a_provider_refuses_other_issuers() {
    let corp = TestKey::es256("c1");
    let partner = TestKey::es256("p1");
    let json = format!(
        r#"{{"providers":[
            {{"name":"corp","issuer":"{ISS}","audiences":["api"],"algorithms":["ES256"],"jwks":{{"inline":{}}}}},
            {{"name":"partner","issuer":"https://partner.test","audiences":["api"],"algorithms":["ES256"],"jwks":{{"inline":{}}}}}],
           "routes":[{{"match":{{"pathPrefix":"/internal"}},"providers":["corp"]}},{{"match":{{"pathPrefix":"/"}}}}]}}"#,
        corp.jwks(),
        partner.jwks()
    );
    let mut engine = Engine::new(Rc::new(config::parse(json.as_bytes()).unwrap()));
    let host = TestHost::new(NOW);
    let mut c = claims("carol");
    c["iss"] = json!("https://partner.test");
    let partner_token = partner.token(&c);
    let on = |engine: &mut Engine, path: &str| {
        engine.decide(&host, &request("GET", path, Some(&bearer(&partner_token))), KeyWait::Allowed)
    };
    forward(on(&mut engine, "/public"));
    // Cached now, but still not acceptable on a corp-only route.
    assert_invalid_token(on(&mut engine, "/internal"), "token issuer is not accepted for this route");
    forward(engine.decide(
        &host,
        &request("GET", "/internal", Some(&bearer(&corp.token(&claims("alice"))))),
        KeyWait::Allowed,
    ));
}

#[test]
fn audit_lines_name_the_user_never_the_token() {
    let mut s = setup();
    let token = s.key.token(&claims("alice"));
    forward(s.get("/orders", &token));
    rejection(s.get("/orders", &TestKey::es256("k1").token(&claims("mallory"))));
    let logs = s.host.logs();
    let hash = TokenHash::of(token.as_bytes()).short();
    assert_eq!(
        logs[0].1,
        format!(
            "audit route=orders-read token={hash} cache=miss provider=corp iss={ISS} sub=alice client=web decision=allow reason=granted"
        )
    );
    assert!(logs[1].1.contains("decision=deny status=401 reason=bad_signature"), "{}", logs[1].1);
    assert!(!logs[1].1.contains("mallory"), "unverified claims are not logged");
    for (_, line) in &logs {
        assert!(!line.contains(&token) && !line.contains(token.split('.').nth(2).unwrap()));
    }
}

fn remote_setup() -> Setup {
    let json = format!(
        r#"{{"providers":[{{"name":"corp","issuer":"{ISS}","audiences":["api"],"algorithms":["ES256"],
             "jwks":{{"remote":{{"cluster":"idp","path":"/jwks","minRefetchIntervalSeconds":30}}}}}}],
            "routes":[{{"match":{{"pathPrefix":"/"}}}}]}}"#
    );
    let config = Rc::new(config::parse(json.as_bytes()).unwrap());
    Setup { engine: Engine::new(config), host: TestHost::new(NOW), key: TestKey::es256("k1") }
}

#[test]
fn remote_keys_are_awaited_then_used() {
    let mut s = remote_setup();
    let token = s.key.token(&claims("alice"));
    assert_eq!(s.get("/", &token), Verdict::AwaitKeys(0));
    s.engine.verifier.keys().start_fetch(0, &s.host).unwrap();
    s.engine.verifier.keys().finish_fetch(0, &s.host, Ok(s.key.jwks().as_bytes()));
    forward(s.engine.decide(&s.host, &request("GET", "/", Some(&bearer(&token))), KeyWait::Exhausted));
}

#[test]
fn keys_still_missing_after_a_fetch_mean_503() {
    let mut s = remote_setup();
    let token = s.key.token(&claims("alice"));
    let verdict = s.engine.decide(&s.host, &request("GET", "/", Some(&bearer(&token))), KeyWait::Exhausted);
    let unavailable = rejection(verdict);
    assert_eq!(unavailable.status, 503);
    assert_eq!(header(&unavailable, "www-authenticate"), None);
    assert_eq!(header(&unavailable, "retry-after"), Some("5"));
    assert_eq!(s.host.counter(metrics::DENIED_KEYS_UNAVAILABLE), 1);
    // While a failed fetch is backed off, requests do not wait either.
    s.engine.verifier.keys().start_fetch(0, &s.host).unwrap();
    s.engine.verifier.keys().finish_fetch(0, &s.host, Err(FetchError::NoResponse));
    assert_eq!(rejection(s.get("/", &token)).status, 503);
}

#[test]
fn a_path_another_hop_could_read_differently_is_refused_before_any_route() {
    let mut s = setup();
    let viewer = s.key.token(&claims("alice"));
    for path in ["/orders/..;/admin", "/orders/%2e%2e;/admin", "/orders;x/..", "/orders//admin", "/ord%65rs"]
    {
        let refused = rejection(s.get(path, &viewer));
        assert_eq!(refused.status, 400, "{path}");
        assert!(refused.body.contains("invalid_request"), "{path}: {}", refused.body);
    }
    // Even a public route and an unmatched path with defaultAction allow.
    let mut open = setup_with(TestKey::es256("k1"), DEFAULT_ROUTES, r#","defaultAction":"allow""#);
    assert_eq!(rejection(open.decide(&request("GET", "/healthz/..;/admin", None))).status, 400);
    assert_eq!(rejection(open.decide(&request("GET", "/public/%2e%2e;/admin", None))).status, 400);
    assert_eq!(s.host.counter(metrics::DENIED_AMBIGUOUS_PATH), 5);
    assert!(matches!(s.get("/orders/1?next=/..;/x", &viewer), Verdict::Forward(_)), "the query is data");
}

#[test]
fn a_second_method_is_refused_where_routes_match_methods() {
    let mut s = setup();
    let token = s.key.token(&claims("alice"));
    // POST /transfers needs step-up; a GET naming DELETE must not reach a
    // backend that honours the override under the GET rules.
    let mut overridden = request("GET", "/orders?_method=DELETE", Some(&bearer(&token)));
    overridden.method_override = Some("_method");
    let refused = rejection(s.decide(&overridden));
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("second method (_method)"), "{}", refused.body);
    assert_eq!(s.host.counter(metrics::DENIED_AMBIGUOUS_METHOD), 1);
    // Routes that never look at methods have nothing to be misled about.
    let mut s = setup_with(TestKey::es256("k1"), r#"[{"name":"all","match":{"pathPrefix":"/"}}]"#, "");
    let token = s.key.token(&claims("alice"));
    let mut overridden = request("POST", "/orders", Some(&bearer(&token)));
    overridden.method_override = Some("x-http-method-override");
    forward(s.decide(&overridden));
}
