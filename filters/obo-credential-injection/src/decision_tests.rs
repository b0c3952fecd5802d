//! Decisions through the in-memory host: every mode, the cache, the
//! delegation policy and each IdP failure, with tokens minted here.

use super::*;
use crate::config;
use baton_filter_kit::reply::Reply;
use baton_filter_kit::test_host::TestHost;
use baton_filter_kit::test_keys::TestKey;
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.test";

struct Setup {
    engine: Engine,
    host: TestHost,
    key: TestKey,
}

fn setup(config: Value) -> Setup {
    let config = Rc::new(config::parse(config.to_string().as_bytes()).unwrap());
    Setup { engine: Engine::new(config), host: TestHost::new(NOW), key: TestKey::es256("k1") }
}

fn base() -> Value {
    json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "clientId": "agent-broker", "clientSecret": "pw"}],
        "subjectToken": {"validation": "claimEnforcement", "issuers": [ISS]},
        "targets": [
            {"name": "portfolio", "match": {"host": "portfolio.internal"}, "mode": "tokenExchange", "idp": "corp",
             "audiences": ["portfolio-agent"], "scope": "portfolio:read"},
            {"name": "market", "match": {"host": "market.internal"}, "mode": "clientCredentials", "idp": "corp",
             "audiences": ["market-data"], "scope": "quotes"},
            {"name": "graph", "match": {"host": "graph.internal"}, "mode": "entraOnBehalfOf", "idp": "corp",
             "scope": "api://graph/.default"}
        ],
        "cache": {"expiryMarginSeconds": 30}
    })
}

fn user_claims(sub: &str) -> Value {
    json!({"iss": ISS, "sub": sub, "aud": "agent-broker", "azp": "broker-app", "exp": NOW + 600, "iat": NOW - 5,
           "scope": "portfolio:read"})
}

/// A request whose token (if any) claim-enforcement verified before this
/// filter, as the base configuration expects.
fn request(host: &str, authorization: Option<&str>) -> Request {
    let verified_upstream = authorization.and_then(|a| a.strip_prefix("Bearer ")).map(|token| {
        baton_filter_kit::handoff::verified_value(&TokenHash::of(token.as_bytes())).into_bytes()
    });
    Request {
        method: "GET".into(),
        path: "/api".into(),
        authority: host.into(),
        method_override: None,
        credential: authorization.map_or(Credential::Absent, |a| Credential::one(a.as_bytes().to_vec())),
        peer_certificate: None,
        verified_upstream,
    }
}

impl Setup {
    fn first(&mut self, request: &Request) -> Verdict {
        self.engine.decide(&self.host, request, Round::FIRST)
    }

    fn user(&self, sub: &str) -> String {
        self.key.token(&user_claims(sub))
    }

    /// Runs the job the verdict asks for against a canned IdP answer, then
    /// decides again as the root context would.
    fn complete(&mut self, request: &Request, verdict: Verdict, status: u16, body: &Value) -> Verdict {
        let Verdict::AwaitCall(job) = verdict else { panic!("expected a wait for a token, got {verdict:?}") };
        let job = *job;
        match self.engine.finish_job(&self.host, &job, Some(status), body.to_string().as_bytes()) {
            Ok(token) => {
                let round = Round { number: 1, fresh: Some((&job.key, &token, 12)), ..Round::FIRST };
                self.engine.decide(&self.host, request, round)
            }
            Err(failure) => {
                let round = Round { number: 1, failed: Some((&job.key, &failure)), ..Round::FIRST };
                self.engine.decide(&self.host, request, round)
            }
        }
    }
}

fn issued(token: &str, expires_in: u64) -> Value {
    json!({"access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
           "token_type": "Bearer", "expires_in": expires_in})
}

fn job_of(verdict: &Verdict) -> &Job {
    match verdict {
        Verdict::AwaitCall(job) => job,
        other => panic!("expected a wait for a token, got {other:?}"),
    }
}

fn injected(verdict: &Verdict) -> (String, String) {
    match verdict {
        Verdict::Forward(Forward { set, .. }) if set.len() == 1 => {
            (set[0].0.clone(), set[0].1.expose().to_string())
        }
        other => panic!("expected an injected token, got {other:?}"),
    }
}

fn rejected(verdict: Verdict) -> Reply {
    match verdict {
        Verdict::Reply(rejection) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn body_error(rejection: &Reply) -> String {
    serde_json::from_str::<Value>(&rejection.body).unwrap()["error"].as_str().unwrap().to_string()
}

#[test]
fn a_token_exchange_is_made_once_then_served_from_the_cache() {
    let mut s = setup(base());
    let alice = s.user("alice");
    let req = request("portfolio.internal", Some(&format!("Bearer {alice}")));
    let verdict = s.first(&req);
    let job = job_of(&verdict).clone();
    let body = job.request.body.expose();
    assert!(body.contains(&format!("subject_token={alice}")), "{body}");
    assert!(body.contains("audience=portfolio-agent") && body.contains("scope=portfolio%3Aread"), "{body}");
    assert_eq!(job.not_after, Some(NOW + 600));

    let forwarded = s.complete(&req, verdict, 200, &issued("exchanged-for-alice", 300));
    assert_eq!(injected(&forwarded), ("authorization".to_string(), "Bearer exchanged-for-alice".to_string()));
    assert_eq!(s.host.counter(metrics::CACHE_MISS), 1);

    // The next request for the same user and target is a cache hit, with
    // no call; another user needs a call of their own.
    assert_eq!(injected(&s.first(&req)).1, "Bearer exchanged-for-alice");
    assert_eq!(s.host.counter(metrics::CACHE_HIT_LOCAL), 1);
    let bob = s.user("bob");
    let other = s.first(&request("portfolio.internal", Some(&format!("Bearer {bob}"))));
    assert_ne!(job_of(&other).key, job.key);
    assert_eq!(s.host.counter(metrics::INJECTED), 2);
}

#[test]
fn a_cached_token_expires_with_its_margin() {
    let mut s = setup(base());
    let req = request("portfolio.internal", Some(&format!("Bearer {}", s.user("alice"))));
    let verdict = s.first(&req);
    injected(&s.complete(&req, verdict, 200, &issued("short", 100)));
    s.host.set_now(NOW + 69);
    injected(&s.first(&req));
    s.host.set_now(NOW + 70);
    job_of(&s.first(&req));
}

#[test]
fn the_issued_token_never_outlives_the_subject_token() {
    let mut s = setup(base());
    let mut claims = user_claims("alice");
    claims["exp"] = json!(NOW + 100);
    let req = request("portfolio.internal", Some(&format!("Bearer {}", s.key.token(&claims))));
    let verdict = s.first(&req);
    injected(&s.complete(&req, verdict, 200, &issued("long-lived", 3600)));
    s.host.set_now(NOW + 69);
    injected(&s.first(&req));
    s.host.set_now(NOW + 70);
    job_of(&s.first(&req));
}

#[test]
fn subject_token_problems_never_reach_the_idp() {
    let mut s = setup(base());
    let missing = rejected(s.first(&request("portfolio.internal", None)));
    assert_eq!(missing.status, 401);
    assert_eq!(missing.headers[0], ("www-authenticate", "Bearer".to_string()));
    let mut claims = user_claims("alice");
    claims["exp"] = json!(NOW - 120);
    let expired =
        rejected(s.first(&request("portfolio.internal", Some(&format!("Bearer {}", s.key.token(&claims))))));
    assert_eq!(expired.status, 401);
    assert!(expired.headers[0].1.contains("token is expired"));
    let mut claims = user_claims("alice");
    claims["iss"] = json!("https://evil.test");
    let foreign =
        rejected(s.first(&request("portfolio.internal", Some(&format!("Bearer {}", s.key.token(&claims))))));
    assert_eq!(foreign.status, 401);
    let garbage = rejected(s.first(&request("portfolio.internal", Some("Bearer not.a.jwt"))));
    assert_eq!(garbage.status, 401);
    let mut two = request("portfolio.internal", None);
    two.credential = Credential::Several;
    assert_eq!(rejected(s.first(&two)).status, 400);
    assert_eq!(s.host.counter(metrics::DENIED_INVALID_TOKEN), 3);
    assert_eq!(s.host.counter(metrics::CACHE_MISS), 0);
}

#[test]
fn client_credentials_serve_verified_callers_only() {
    let mut s = setup(base());
    let req = request("market.internal", Some(&format!("Bearer {}", s.user("alice"))));
    let verdict = s.first(&req);
    assert_eq!(
        job_of(&verdict).request.body.expose(),
        "grant_type=client_credentials&audience=market-data&scope=quotes"
    );
    let forwarded = s.complete(
        &req,
        verdict,
        200,
        &json!({"access_token": "gateway-token", "token_type": "Bearer", "expires_in": 300}),
    );
    assert_eq!(injected(&forwarded).1, "Bearer gateway-token");
    // The gateway's own token is no prize for a caller nobody identified:
    // no token, a token nobody verified, or a garbage one.
    let no_token = rejected(s.first(&request("market.internal", None)));
    assert_eq!(no_token.status, 401);
    let mut unverified = request("market.internal", Some(&format!("Bearer {}", s.user("bob"))));
    unverified.verified_upstream = None;
    assert_eq!(rejected(s.first(&unverified)).status, 401);
    let garbage = Request { verified_upstream: None, ..request("market.internal", Some("Bearer garbage")) };
    assert_eq!(rejected(s.first(&garbage)).status, 401);

    // Unless the configuration says, by name, that anyone may have it.
    let mut config = base();
    config["targets"][1]["dangerouslyAllowUnauthenticatedCallers"] = json!(true);
    let mut open = setup(config);
    let verdict = open.first(&request("market.internal", None));
    let forwarded = open.complete(
        &request("market.internal", None),
        verdict,
        200,
        &json!({"access_token": "gateway-token", "token_type": "Bearer", "expires_in": 300}),
    );
    assert_eq!(injected(&forwarded).1, "Bearer gateway-token");
}

#[test]
fn a_verified_client_certificate_names_the_caller() {
    let mut config = base();
    config["delegation"] = json!({"caller": "peerCertificate", "allow": [
        {"caller": "spiffe://mesh/ns/finport/sa/broker", "targets": ["portfolio", "market", "graph"]}
    ]});
    let mut s = setup(config);
    let broker = Some("spiffe://mesh/ns/finport/sa/broker".to_string());
    // The gateway's own token: the certificate is enough, no token needed.
    let cc = Request { peer_certificate: broker.clone(), ..request("market.internal", None) };
    job_of(&s.first(&cc));
    // Acting for a user: the user's verified token, and the caller from the
    // certificate (not from the token's client).
    let alice = format!("Bearer {}", s.user("alice"));
    let exchange = Request { peer_certificate: broker, ..request("portfolio.internal", Some(&alice)) };
    job_of(&s.first(&exchange));
    for peer in [None, Some("spiffe://mesh/ns/finport/sa/rogue".to_string())] {
        let denied = rejected(
            s.first(&Request { peer_certificate: peer.clone(), ..request("market.internal", None) }),
        );
        assert_eq!(denied.status, 403, "{peer:?}");
        let denied = rejected(s.first(&Request {
            peer_certificate: peer.clone(),
            ..request("portfolio.internal", Some(&alice))
        }));
        assert_eq!(denied.status, 403, "{peer:?}");
    }
}

#[test]
fn entra_on_behalf_of() {
    let mut s = setup(base());
    let alice = s.user("alice");
    let req = request("graph.internal", Some(&format!("Bearer {alice}")));
    let verdict = s.first(&req);
    let body = job_of(&verdict).request.body.expose().to_string();
    assert!(
        body.starts_with("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="),
        "{body}"
    );
    assert!(
        body.contains("requested_token_use=on_behalf_of")
            && body.contains("scope=api%3A%2F%2Fgraph%2F.default")
    );
    let obo_answer = json!({"access_token": "graph-token", "token_type": "Bearer", "expires_in": "3599", "ext_expires_in": 3599});
    assert_eq!(injected(&s.complete(&req, verdict, 200, &obo_answer)).1, "Bearer graph-token");
}

#[test]
fn an_actor_client_credentials_token_is_obtained_first() {
    let mut config = base();
    config["targets"][0]["actor"] = json!({"clientCredentials": {"scope": "actor"}});
    let mut s = setup(config);
    let req = request("portfolio.internal", Some(&format!("Bearer {}", s.user("alice"))));
    let first = s.first(&req);
    assert_eq!(job_of(&first).request.body.expose(), "grant_type=client_credentials&scope=actor");
    let second = s.complete(
        &req,
        first,
        200,
        &json!({"access_token": "broker-actor", "token_type": "Bearer", "expires_in": 300}),
    );
    let body = job_of(&second).request.body.expose().to_string();
    assert!(body.contains("actor_token=broker-actor"), "{body}");
    assert!(
        body.contains("actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"),
        "{body}"
    );
}

#[test]
fn no_target_is_denied_or_passed_without_the_token() {
    let mut s = setup(base());
    let denied = rejected(s.first(&request("elsewhere.internal", Some("Bearer x"))));
    assert_eq!((denied.status, body_error(&denied)), (403, "access_denied".to_string()));
    let mut config = base();
    config["defaultAction"] = json!("passThrough");
    let mut s = setup(config);
    assert_eq!(
        s.first(&request("elsewhere.internal", Some("Bearer x"))),
        Verdict::Forward(Forward { strip: vec!["authorization".into()], ..Forward::default() })
    );
}

#[test]
fn delegation_policy_refuses_other_callers() {
    let mut config = base();
    config["delegation"] = json!({"allow": [{"caller": "broker-app", "audiences": ["portfolio-agent", "market-data"]},
                                            {"caller": "graph-app", "targets": ["graph"]}]});
    let mut s = setup(config);
    job_of(&s.first(&request("portfolio.internal", Some(&format!("Bearer {}", s.user("alice"))))));
    let mut claims = user_claims("alice");
    claims["azp"] = json!("rogue-app");
    let denied =
        rejected(s.first(&request("portfolio.internal", Some(&format!("Bearer {}", s.key.token(&claims))))));
    assert_eq!(denied.status, 403);
    assert!(
        denied.body.contains("caller rogue-app may not obtain tokens for target portfolio"),
        "{}",
        denied.body
    );
    // Every target is covered by the policy: the scope-only Entra target and
    // the gateway's own token are refused to a caller not listed for them.
    let rogue = format!("Bearer {}", s.key.token(&claims));
    for host in ["graph.internal", "market.internal"] {
        assert_eq!(rejected(s.first(&request(host, Some(&rogue)))).status, 403, "{host}");
    }
    assert_eq!(
        rejected(s.first(&request("graph.internal", Some(&format!("Bearer {}", s.user("alice")))))).status,
        403
    );
    assert_eq!(s.host.counter(metrics::DENIED_DELEGATION), 4);
}

#[test]
fn idp_failures_have_their_status() {
    let cases: Vec<(u16, Value, u16, &str)> = vec![
        (
            400,
            json!({"error": "invalid_grant", "error_description": "subject token revoked"}),
            401,
            "invalid_token",
        ),
        (400, json!({"error": "invalid_target"}), 403, "access_denied"),
        (400, json!({"error": "invalid_scope"}), 403, "access_denied"),
        // The IdP refusing the gateway itself is the gateway's fault.
        (
            400,
            json!({"error": "invalid_request", "error_description": "grant type is not allowed"}),
            502,
            "server_error",
        ),
        (400, json!({"error": "unauthorized_client"}), 502, "server_error"),
        (401, json!({"error": "invalid_client"}), 502, "server_error"),
        (400, json!({"error": "unsupported_grant_type"}), 502, "server_error"),
        (500, json!({"error": "server_error"}), 503, "temporarily_unavailable"),
        (503, json!("busy"), 503, "temporarily_unavailable"),
        (200, json!({"token_type": "Bearer"}), 503, "temporarily_unavailable"),
        (200, json!({"access_token": "t", "token_type": "Bearer"}), 503, "temporarily_unavailable"),
        (
            200,
            json!({"access_token": "t", "token_type": "Bearer", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "expires_in": -1}),
            503,
            "temporarily_unavailable",
        ),
    ];
    for (status, body, expected, error) in cases {
        let mut s = setup(base());
        let req = request("portfolio.internal", Some(&format!("Bearer {}", s.user("alice"))));
        let verdict = s.first(&req);
        let rejection = rejected(s.complete(&req, verdict, status, &body));
        assert_eq!((rejection.status, body_error(&rejection).as_str()), (expected, error), "{status} {body}");
        assert!(!rejection.body.contains("eyJ"), "no token in an error body");
    }
}

#[test]
fn no_response_is_unavailable() {
    let mut s = setup(base());
    let req = request("portfolio.internal", Some(&format!("Bearer {}", s.user("alice"))));
    let Verdict::AwaitCall(job) = s.first(&req) else { panic!() };
    let job = *job;
    let failure = s.engine.finish_job(&s.host, &job, None, b"").unwrap_err();
    let round = Round { number: 1, failed: Some((&job.key, &failure)), ..Round::FIRST };
    assert_eq!(rejected(s.engine.decide(&s.host, &req, round)).status, 503);
    assert_eq!(s.host.counter(metrics::IDP_UNAVAILABLE), 1);
}

#[test]
fn the_gateways_own_token_refused_is_the_gateways_fault_with_a_full_audit_line() {
    // The client-credentials target and the actor of an exchange: no
    // caller's token was sent, so no refusal is the caller's, even
    // invalid_grant.
    let mut config = base();
    config["targets"][0]["actor"] = json!({"clientCredentials": {"scope": "actor"}});
    let mut s = setup(config);
    let alice = format!("Bearer {}", s.user("alice"));
    for (host, code) in [("market.internal", "invalid_grant"), ("portfolio.internal", "unauthorized_client")]
    {
        let req = request(host, Some(&alice));
        let verdict = s.first(&req);
        assert_eq!(
            job_of(&verdict).request.body.expose().split('&').next(),
            Some("grant_type=client_credentials")
        );
        let refused =
            rejected(s.complete(&req, verdict, 400, &json!({"error": code, "error_description": "no"})));
        assert_eq!((refused.status, body_error(&refused).as_str()), (502, "server_error"), "{host}");
    }
    assert_eq!(s.host.counter(metrics::DENIED_GATEWAY_REFUSED), 2);
    let logs = s.host.logs();
    let errors: Vec<&String> =
        logs.iter().filter(|(level, _)| *level == LogLevel::Error).map(|(_, line)| line).collect();
    assert_eq!(errors.len(), 2, "{logs:?}");
    assert!(
        errors[0].contains("idp=corp")
            && errors[0].contains("\"no\"")
            && errors[0].contains("client registration"),
        "{errors:?}"
    );
    // Every refusal's audit line names the target, the mode and the user.
    let denials: Vec<&String> = logs
        .iter()
        .map(|(_, line)| line)
        .filter(|line| line.starts_with("audit ") && line.contains("decision=deny"))
        .collect();
    assert_eq!(denials.len(), 2, "{logs:?}");
    for line in denials {
        assert!(
            line.contains("target=")
                && line.contains("mode=")
                && line.contains("sub=alice")
                && line.contains("status=502"),
            "{line}"
        );
    }
}

#[test]
fn audit_lines_name_the_parties_never_the_tokens() {
    let mut s = setup(base());
    let alice = s.user("alice");
    let req = request("portfolio.internal", Some(&format!("Bearer {alice}")));
    let verdict = s.first(&req);
    let exchanged = s.key.token(
        &json!({"sub": "alice", "aud": "portfolio-agent", "act": {"sub": "broker"}, "exp": NOW + 300}),
    );
    injected(&s.complete(&req, verdict, 200, &issued(&exchanged, 300)));
    let line = &s.host.logs()[0].1;
    let subject_hash = TokenHash::of(alice.as_bytes()).short();
    let issued_hash = TokenHash::of(exchanged.as_bytes()).short();
    assert_eq!(
        line,
        &format!(
            "audit target=portfolio mode=token_exchange audience=portfolio-agent subject={subject_hash} sub=alice \
             caller=broker-app cache=miss idp_ms=12 issued={issued_hash} act=broker decision=allow reason=injected"
        )
    );
    assert!(!line.contains(&alice) && !line.contains(&exchanged));
}

#[test]
fn jwks_validation_waits_for_keys() {
    let mut config = base();
    config["subjectToken"] = json!({"validation": "jwks", "providers": [{
        "name": "corp", "issuer": ISS, "audiences": ["agent-broker"], "algorithms": ["ES256"],
        "jwks": {"remote": {"cluster": "idp", "path": "/jwks"}}}]});
    let mut s = setup(config);
    let req = request("portfolio.internal", Some(&format!("Bearer {}", s.user("alice"))));
    assert_eq!(s.first(&req), Verdict::AwaitKeys(0));
    let verifier = s.engine.verifier.as_mut().unwrap();
    verifier.keys().start_fetch(0, &s.host).unwrap();
    verifier.keys().finish_fetch(0, &s.host, Ok(s.key.jwks().as_bytes()));
    let after_keys = Round { number: 1, keys: KeyWait::Exhausted, ..Round::FIRST };
    job_of(&s.engine.decide(&s.host, &req, after_keys));
    // A forged token (right kid, other key) is refused before any call.
    let forged = TestKey::es256("k1").token(&user_claims("mallory"));
    let refused = rejected(s.first(&request("portfolio.internal", Some(&format!("Bearer {forged}")))));
    assert_eq!(refused.status, 401);
    assert!(refused.headers[0].1.contains("token signature is invalid"));
}

#[test]
fn the_subject_header_is_removed_when_another_header_carries_the_token() {
    let mut config = base();
    config["targets"][1]["inject"] = json!({"header": "x-upstream-token", "prefix": ""});
    let mut s = setup(config);
    let req = request("market.internal", Some(&format!("Bearer {}", s.user("alice"))));
    let verdict = s.first(&req);
    let forwarded = s.complete(
        &req,
        verdict,
        200,
        &json!({"access_token": "svc", "token_type": "Bearer", "expires_in": 300}),
    );
    assert_eq!(
        forwarded,
        Verdict::Forward(Forward {
            strip: vec!["authorization".into(), "x-upstream-token".into()],
            set: vec![("x-upstream-token".into(), Secret::new("svc"))],
            ..Forward::default()
        })
    );
}

#[test]
fn claim_enforcement_validation_needs_the_record_of_this_very_token() {
    let mut config = base();
    config["subjectToken"]["validation"] = json!("claimEnforcement");
    let mut s = setup(config);
    let token = s.user("alice");
    let bearer = format!("Bearer {token}");
    let record =
        |t: &str| Some(baton_filter_kit::handoff::verified_value(&TokenHash::of(t.as_bytes())).into_bytes());

    // No record (claim-enforcement absent, after this filter, or it did not
    // verify this request): refused before any IdP call.
    for (case, verified_upstream) in [
        ("no record", None),
        ("another token's record", record(&s.user("mallory"))),
        ("empty record", Some(vec![])),
    ] {
        let request = Request { verified_upstream, ..request("portfolio.internal", Some(&bearer)) };
        let Verdict::Reply(rejection) = s.first(&request) else { panic!("{case}: not refused") };
        assert_eq!(rejection.status, 401, "{case}");
        let challenge =
            rejection.headers.iter().find(|(name, _)| *name == "www-authenticate").map(|(_, v)| v);
        assert!(challenge.is_some_and(|c| c.contains(r#"error="invalid_token""#)), "{case}: {challenge:?}");
    }
    assert_eq!(s.host.counter(metrics::DENIED_INVALID_TOKEN), 3);

    // The record of this token: the exchange goes ahead.
    let accepted =
        Request { verified_upstream: record(&token), ..request("portfolio.internal", Some(&bearer)) };
    assert!(matches!(s.first(&accepted), Verdict::AwaitCall(_)));

    // Remembered now, the token still needs its record on every request.
    for (case, verified_upstream) in
        [("no record", None), ("another token's record", record(&s.user("mallory")))]
    {
        let request = Request { verified_upstream, ..request("portfolio.internal", Some(&bearer)) };
        assert!(matches!(s.first(&request), Verdict::Reply(ref r) if r.status == 401), "remembered, {case}");
    }
    assert!(matches!(s.first(&accepted), Verdict::AwaitCall(_)), "remembered, with its record");
    // And its times are checked again: once expired it is refused.
    s.host.set_now(NOW + 24 * 3600);
    assert!(matches!(s.first(&accepted), Verdict::Reply(ref r) if r.status == 401), "remembered, expired");
}

#[test]
fn identity_assertions_are_signed_here_cached_and_never_asked_of_the_idp() {
    let mut config = base();
    let seed = [3u8; 32];
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let b64 = |bytes: &[u8]| baton_token::base64url::encode(bytes);
    config["identityAssertion"] = json!({
        "issuer": "https://gateway.test",
        "keys": [{"jwk": {"kty": "OKP", "crv": "Ed25519", "kid": "gw-1", "d": b64(&seed),
                          "x": b64(ring::signature::KeyPair::public_key(&pair).as_ref())}}],
        "activeKid": "gw-1"
    });
    config["targets"].as_array_mut().unwrap().push(json!(
        {"name": "ledger", "match": {"host": "ledger.internal"}, "mode": "identityAssertion", "audiences": ["ledger-api"]}));
    let mut s = setup(config);
    let alice = s.user("alice");
    let req = request("ledger.internal", Some(&format!("Bearer {alice}")));
    let first = injected(&s.first(&req)).1;
    let assertion = first.strip_prefix("Bearer ").unwrap();
    let claims: Value = serde_json::from_slice(
        &baton_token::base64url::decode(assertion.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str()),
        (Some("https://gateway.test"), Some("alice"))
    );
    assert_eq!(claims["aud"], "ledger-api");
    assert_eq!(claims["act"], json!({"sub": "https://gateway.test", "act": {"sub": "broker-app"}}));
    // The same token again: the cached assertion, not a new signature.
    assert_eq!(injected(&s.first(&req)).1, first);
    assert_eq!(s.host.counter(metrics::ASSERTIONS_SIGNED), 1);
    assert_eq!(s.host.counter(metrics::IDP_CALLS), 0);
}

#[test]
fn a_path_another_hop_could_read_differently_is_refused_before_any_target() {
    let mut config = base();
    config["targets"][0]["match"] = json!({"host": "portfolio.internal", "pathPrefix": "/api"});
    let mut s = setup(config);
    let alice = format!("Bearer {}", s.user("alice"));
    for path in ["/api/..;/admin", "/api/%2e%2e;/admin", "/api//x", "/%61pi/x"] {
        let req = Request { path: path.into(), ..request("portfolio.internal", Some(&alice)) };
        let refused = rejected(s.first(&req));
        assert_eq!(refused.status, 400, "{path}");
    }
    assert_eq!(s.host.counter(metrics::DENIED_AMBIGUOUS_PATH), 4);
    // Targets chosen by host alone do not look at the path.
    let mut by_host = setup(base());
    let req = Request { path: "/api/..;/admin".into(), ..request("portfolio.internal", Some(&alice)) };
    assert!(matches!(by_host.first(&req), Verdict::AwaitCall(_)));
}

#[test]
fn a_token_for_another_audience_is_never_injected_nor_cached() {
    let mut config = base();
    config["idps"][0]["issuer"] = json!(ISS);
    let mut s = setup(config);
    let alice = format!("Bearer {}", s.user("alice"));
    for (host, claims, why) in [
        (
            "market.internal",
            json!({"iss": ISS, "aud": "default-api", "sub": "agent-broker"}),
            "the IdP's default",
        ),
        (
            "market.internal",
            json!({"iss": ISS, "aud": ["market-data", "ledger"], "sub": "agent-broker"}),
            "one more",
        ),
        ("market.internal", json!({"iss": "https://other-idp", "aud": "market-data"}), "another issuer"),
        ("portfolio.internal", json!({"iss": ISS, "aud": "ledger-api", "sub": "alice"}), "an exchange"),
        ("graph.internal", json!({"iss": ISS, "aud": "api://other", "sub": "alice"}), "on-behalf-of"),
    ] {
        let req = request(host, Some(&alice));
        let verdict = s.first(&req);
        let mut claims = claims;
        claims["exp"] = json!(NOW + 300);
        let token = s.key.token(&claims);
        let refused = rejected(s.complete(&req, verdict, 200, &issued(&token, 300)));
        assert_eq!((refused.status, body_error(&refused).as_str()), (502, "server_error"), "{why}");
        assert!(!refused.body.contains(&token));
        // Not cached: the next request asks again.
        assert!(matches!(s.first(&req), Verdict::AwaitCall(_)), "{why}: cached");
    }
    assert_eq!(s.host.counter(metrics::IDP_WRONG_AUDIENCE), 5);
    assert!(s.host.logs().iter().any(|(level, line)| *level == LogLevel::Error
        && line.contains("call for client_credentials for target market issued a token not used")
        && line.contains("default-api")));
    // What was asked passes: the target's audience, Entra's scope resource.
    for (host, aud) in [("market.internal", "market-data"), ("graph.internal", "api://graph")] {
        let req = request(host, Some(&alice));
        let verdict = s.first(&req);
        let token = s.key.token(&json!({"iss": ISS, "aud": aud, "exp": NOW + 300}));
        assert_eq!(
            injected(&s.complete(&req, verdict, 200, &issued(&token, 300))).1,
            format!("Bearer {token}")
        );
    }
}
