//! What a cached decision costs the proxy: the host calls of a request
//! whose token is already in the cache, through the whole runtime, in both
//! modes the bench measures. A budget a regression fails without timing.

use baton_filter_kit::handoff::{VERIFIED_TOKEN_PROPERTY, verified_value};
use baton_filter_kit::host::{CalloutResponse, LogLevel};
use baton_filter_kit::runtime::{Action, Plugin, Runtime};
use baton_filter_kit::test_host::TestHost;
use baton_filter_kit::test_keys::TestKey;
use baton_token::TokenHash;
use serde_json::json;

use super::OboCredentialInjection;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.test";

fn runtime() -> Runtime<OboCredentialInjection> {
    let config = json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "clientId": "agent-broker",
                  "clientSecret": "pw"}],
        "subjectToken": {"validation": "claimEnforcement", "issuers": [ISS]},
        "targets": [
            {"name": "portfolio", "match": {"host": "portfolio.internal"}, "mode": "tokenExchange", "idp": "corp",
             "audiences": ["portfolio-agent"], "scope": "portfolio:read"},
            {"name": "market", "match": {"host": "market.internal"}, "mode": "clientCredentials", "idp": "corp",
             "audiences": ["market-data"], "scope": "quotes"}
        ]
    });
    let filter = OboCredentialInjection::configure(config.to_string().as_bytes()).unwrap();
    let leases = filter.leases();
    Runtime::new(filter, leases)
}

/// The host calls of the second request to `target_host`, the first
/// having fetched the token; Envoy's log level at `level`.
fn cached_decision(target_host: &str, level: LogLevel) -> Vec<&'static str> {
    let key = TestKey::es256("k1");
    let host = TestHost::new(NOW);
    host.set_log_level(level);
    let mut runtime = runtime();
    runtime.start(&host);
    let token = key.token(&json!({"iss": ISS, "sub": "alice", "aud": "agent-broker", "azp": "broker-app",
                                 "exp": NOW + 600, "iat": NOW - 5, "scope": "portfolio:read"}));
    let bearer = format!("Bearer {token}");
    let verified = verified_value(&TokenHash::of(token.as_bytes())).into_bytes();
    let headers = [
        (":method", "GET"),
        (":path", "/api"),
        (":authority", target_host),
        ("authorization", bearer.as_str()),
    ];
    let start = |runtime: &mut Runtime<OboCredentialInjection>, id: u32| {
        host.add_request(id, &headers);
        host.with_request(id, |r| r.properties.insert(VERIFIED_TOKEN_PROPERTY.to_string(), verified.clone()));
        runtime.on_request_headers(&host, id, true)
    };
    assert_eq!(start(&mut runtime, 1), Action::Pause, "the first waits for the token");
    runtime.on_tick(&host);
    // Every call made (the request's, and the client-credentials token
    // the filter keeps fresh) gets a token.
    let body = json!({"access_token": "issued-token", "token_type": "Bearer", "expires_in": 600,
                      "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"});
    host.set_callout_response(CalloutResponse {
        status: Some(200),
        body: body.to_string().into_bytes(),
        body_too_large: false,
    });
    for call in host.calls() {
        runtime.on_callout(&host, call.id, 0, 0);
    }
    assert_eq!(
        host.request(1).unwrap().request_header("authorization").as_deref(),
        Some("Bearer issued-token")
    );
    host.take_host_calls();
    assert_eq!(start(&mut runtime, 2), Action::Continue, "the second finds it cached");
    assert_eq!(
        host.request(2).unwrap().request_header("authorization").as_deref(),
        Some("Bearer issued-token")
    );
    host.take_host_calls()
}

#[test]
fn a_cached_token_costs_five_host_calls_and_four_without_the_audit_line() {
    // The header map, read once (the authority, the token, and every
    // spelling of the header set); claim-enforcement's record; the clock;
    // the audit line; the token set over the caller's (it occurs once, so
    // setting replaces it). The counters add up in memory until the tick.
    // The same in both modes.
    let written = ["headers", "property", "now", "log", "set_header"];
    assert_eq!(cached_decision("market.internal", LogLevel::Info), written);
    assert_eq!(cached_decision("portfolio.internal", LogLevel::Info), written);
    let quiet: Vec<&str> = written.into_iter().filter(|call| *call != "log").collect();
    assert_eq!(cached_decision("market.internal", LogLevel::Warn), quiet);
    assert_eq!(cached_decision("portfolio.internal", LogLevel::Warn), quiet);
}
