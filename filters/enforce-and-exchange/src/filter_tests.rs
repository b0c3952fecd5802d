//! The composite through the whole runtime over the in-memory proxy:
//! what it refuses at load, the one-pass flow, and what a cached request
//! costs the proxy.

use baton_filter_kit::host::{CalloutResponse, LogLevel};
use baton_filter_kit::runtime::{Action, Plugin, Runtime};
use baton_filter_kit::test_host::TestHost;
use baton_filter_kit::test_keys::TestKey;
use serde_json::{Value, json};

use super::EnforceAndExchange;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.test";

fn config(key: &TestKey) -> Value {
    json!({
        "claimEnforcement": {
            "providers": [{"name": "corp", "issuer": ISS, "audiences": ["agent-broker"], "algorithms": ["ES256"],
                           "jwks": {"inline": serde_json::from_str::<Value>(&key.jwks()).unwrap()}}],
            "routes": [{"name": "portfolio", "match": {"pathPrefix": "/"},
                        "require": {"scopes": {"allOf": ["portfolio:read"]}}}],
            "auditLog": false
        },
        "oboCredentialInjection": {
            "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "clientId": "agent-broker",
                      "clientSecret": "pw"}],
            "subjectToken": {"validation": "claimEnforcement", "issuers": [ISS]},
            "targets": [{"name": "portfolio", "mode": "tokenExchange", "idp": "corp",
                         "audiences": ["portfolio-agent"], "scope": "portfolio:read"}],
            "auditLog": false
        }
    })
}

fn configure(config: &Value) -> Result<EnforceAndExchange, String> {
    EnforceAndExchange::configure(config.to_string().as_bytes())
}

fn token(key: &TestKey, scope: &str) -> String {
    key.token(&json!({"iss": ISS, "sub": "alice", "aud": "agent-broker", "azp": "web",
                      "iat": NOW - 5, "exp": NOW + 600, "scope": scope}))
}

struct World {
    host: TestHost,
    runtime: Runtime<EnforceAndExchange>,
}

fn world(key: &TestKey, level: LogLevel) -> World {
    let host = TestHost::new(NOW);
    host.set_log_level(level);
    let filter = configure(&config(key)).unwrap();
    let leases = filter.leases();
    let mut runtime = Runtime::new(filter, leases);
    runtime.start(&host);
    World { host, runtime }
}

impl World {
    fn send(&mut self, id: u32, authorization: Option<&str>) -> Action {
        let mut headers =
            vec![(":method", "GET"), (":path", "/holdings"), (":authority", "portfolio.internal")];
        if let Some(value) = authorization {
            headers.push(("authorization", value));
        }
        self.host.add_request(id, &headers);
        self.runtime.on_request_headers(&self.host, id, true)
    }

    /// Answers every call made so far with an issued token.
    fn answer_calls(&mut self) {
        self.runtime.on_tick(&self.host);
        let body = json!({"access_token": "issued-token", "token_type": "Bearer", "expires_in": 600,
                          "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"});
        self.host.set_callout_response(CalloutResponse {
            status: Some(200),
            body: body.to_string().into_bytes(),
            body_too_large: false,
        });
        for call in self.host.calls() {
            self.runtime.on_callout(&self.host, call.id, 0, 0);
        }
    }
}

#[test]
fn each_section_is_checked_and_errors_name_the_field_within_it() {
    let key = TestKey::es256("k1");
    let refused = |edit: &dyn Fn(&mut Value)| {
        let mut config = config(&key);
        edit(&mut config);
        configure(&config).unwrap_err()
    };
    assert!(
        refused(&|c| c.as_object_mut().unwrap().remove("claimEnforcement").map(drop).unwrap_or(()))
            .contains("claimEnforcement: is required")
    );
    assert!(
        refused(&|c| c["claimEnforcement"]["routes"] = json!("none")).contains("at claimEnforcement.routes")
    );
    assert!(
        refused(&|c| c["oboCredentialInjection"]["targets"] = json!([]))
            .contains("at oboCredentialInjection")
    );
    assert!(refused(&|c| c["extra"] = json!(1)).contains("at extra: unknown field"));
    // The exchange must take the token this pass verified, not verify
    // (or trust) it again on its own.
    let error = refused(&|c| {
        c["oboCredentialInjection"]["subjectToken"] = json!({"validation": "jwks", "providers": [{
            "name": "corp", "issuer": ISS, "audiences": ["agent-broker"], "algorithms": ["ES256"],
            "jwks": {"inline": serde_json::from_str::<Value>(&key.jwks()).unwrap()}}]})
    });
    assert!(
        error.contains("at oboCredentialInjection.subjectToken.validation: must be claimEnforcement"),
        "{error}"
    );
    // The exchange's shared store is checked as obo-credential-injection
    // checks it, and named within its section.
    let mut with_store = config(&key);
    with_store["oboCredentialInjection"]["store"] = json!({"etcd": {"cluster": "etcd"}, "currentKey": "k1",
        "sealingKeys": [{"id": "k1", "secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]});
    assert!(configure(&with_store).is_ok());
    let error = refused(&|c| {
        c["oboCredentialInjection"]["store"] = json!({"etcd": {"cluster": "etcd"}, "currentKey": "k2",
            "sealingKeys": [{"id": "k1", "secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]})
    });
    assert!(error.contains("at oboCredentialInjection.store.currentKey"), "{error}");
}

#[test]
fn a_verified_token_with_the_scope_is_exchanged_in_the_same_pass() {
    let key = TestKey::es256("k1");
    let mut w = world(&key, LogLevel::Info);
    let bearer = format!("Bearer {}", token(&key, "portfolio:read"));
    assert_eq!(w.send(1, Some(&bearer)), Action::Pause, "waits for the exchange");
    w.answer_calls();
    let calls = w.host.calls();
    assert_eq!(calls.len(), 1);
    let form = String::from_utf8(calls[0].body.clone()).unwrap();
    assert!(form.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"), "{form}");
    let forwarded = w.host.request(1).unwrap();
    assert_eq!(forwarded.request_header("authorization").as_deref(), Some("Bearer issued-token"));
    assert!(forwarded.properties.is_empty(), "no record for later filters unless asked");
    assert_eq!(
        w.host.counter(claim_enforcement::metrics::ALLOWED),
        1,
        "checked once, not again after the wait"
    );
    assert_eq!(w.host.counter(obo_credential_injection::metrics::INJECTED), 1);
    // The next request finds the exchanged token cached: no wait, no call.
    assert_eq!(w.send(2, Some(&bearer)), Action::Continue);
    assert_eq!(w.host.calls().len(), 1);
    assert_eq!(
        w.host.request(2).unwrap().request_header("authorization").as_deref(),
        Some("Bearer issued-token")
    );
}

#[test]
fn what_claim_enforcement_refuses_never_reaches_the_token_endpoint() {
    let key = TestKey::es256("k1");
    let stranger = TestKey::es256("k1");
    let mut w = world(&key, LogLevel::Info);
    let cases = [
        (None, 401),
        (Some("Bearer not-a-jwt".to_string()), 401),
        (Some(format!("Bearer {}", token(&stranger, "portfolio:read"))), 401),
        (Some(format!("Bearer {}", token(&key, "quotes"))), 403),
    ];
    for (id, (authorization, status)) in (1..).zip(cases) {
        assert_eq!(w.send(id, authorization.as_deref()), Action::Pause);
        let reply = w.host.request(id).unwrap().reply.expect("answered");
        assert_eq!(reply.status, status, "{authorization:?}");
        w.answer_calls();
    }
    assert!(w.host.calls().is_empty(), "no exchange for a refused request");
}

#[test]
fn a_cached_request_costs_three_host_calls_and_one_per_audit_line() {
    // One header map read, one clock read, the token set (it replaces the
    // caller's, which occurs once). With the audit logs on and Envoy at
    // info, each engine writes its line.
    let cached = |level: LogLevel, audit: bool| {
        let key = TestKey::es256("k1");
        let host = TestHost::new(NOW);
        host.set_log_level(level);
        let mut config = config(&key);
        config["claimEnforcement"]["auditLog"] = json!(audit);
        config["oboCredentialInjection"]["auditLog"] = json!(audit);
        let filter = configure(&config).unwrap();
        let leases = filter.leases();
        let mut runtime = Runtime::new(filter, leases);
        runtime.start(&host);
        let mut w = World { host, runtime };
        let bearer = format!("Bearer {}", token(&key, "portfolio:read"));
        w.send(1, Some(&bearer));
        w.answer_calls();
        w.host.take_host_calls();
        assert_eq!(w.send(2, Some(&bearer)), Action::Continue);
        w.host.take_host_calls()
    };
    assert_eq!(cached(LogLevel::Warn, true), ["headers", "now", "set_header"]);
    assert_eq!(cached(LogLevel::Info, false), ["headers", "now", "set_header"]);
    assert_eq!(cached(LogLevel::Info, true), ["headers", "now", "log", "log", "set_header"]);
}

#[test]
fn a_route_claim_enforcement_lets_through_unchecked_gives_the_exchange_no_token_to_trust() {
    let key = TestKey::es256("k1");
    let mut config = config(&key);
    config["claimEnforcement"]["routes"] =
        json!([{"name": "public", "match": {"pathPrefix": "/"}, "action": "allow"}]);
    let host = TestHost::new(NOW);
    let filter = configure(&config).unwrap();
    let leases = filter.leases();
    let mut w = World { host, runtime: Runtime::new(filter, leases) };
    w.runtime.start(&w.host);
    // A token claim-enforcement did not verify (a public route), even a
    // valid one: the exchange refuses it and makes no call.
    let bearer = format!("Bearer {}", token(&key, "portfolio:read"));
    assert_eq!(w.send(1, Some(&bearer)), Action::Pause);
    let reply = w.host.request(1).unwrap().reply.expect("answered");
    assert_eq!(reply.status, 401);
    w.answer_calls();
    assert!(w.host.calls().is_empty());
}
