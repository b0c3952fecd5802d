//! What a cached decision costs the proxy: the host calls of a request
//! whose token is already verified, through the whole runtime. A budget a
//! regression fails without any timing (`make bench` shows the time).

use baton_filter_kit::host::LogLevel;
use baton_filter_kit::runtime::{Action, Plugin, Runtime};
use baton_filter_kit::test_host::TestHost;
use baton_filter_kit::test_keys::TestKey;
use serde_json::json;

use super::ClaimEnforcement;

const NOW: u64 = 1_800_000_000;

/// The bench's claim-enforcement row: one ES256 token, a scope rule, the
/// user's id forwarded.
fn runtime(key: &TestKey) -> Runtime<ClaimEnforcement> {
    let config = json!({
        "providers": [{"name": "corp", "issuer": "https://idp.test", "audiences": ["api"],
                       "algorithms": ["ES256"],
                       "jwks": {"inline": serde_json::from_str::<serde_json::Value>(&key.jwks()).unwrap()}}],
        "routes": [{"name": "orders", "match": {"pathPrefix": "/orders"},
                    "require": {"scopes": {"allOf": ["orders:read"]}}}],
        "forwardClaims": [{"claim": "sub", "header": "x-user-id"}]
    });
    let filter = ClaimEnforcement::configure(config.to_string().as_bytes()).unwrap();
    Runtime::new(filter, None)
}

/// The host calls of a request with a token verified earlier, Envoy's log
/// level at `level`.
fn cached_decision(level: LogLevel) -> Vec<&'static str> {
    let key = TestKey::es256("k1");
    let host = TestHost::new(NOW);
    host.set_log_level(level);
    let mut runtime = runtime(&key);
    runtime.start(&host);
    let token = key.token(&json!({"iss": "https://idp.test", "sub": "alice", "aud": "api",
                                 "iat": NOW - 10, "exp": NOW + 300, "scope": "orders:read"}));
    let bearer = format!("Bearer {token}");
    let headers = [
        (":method", "GET"),
        (":path", "/orders/7"),
        (":authority", "api.test"),
        ("authorization", bearer.as_str()),
    ];
    host.add_request(1, &headers);
    assert_eq!(runtime.on_request_headers(&host, 1, true), Action::Continue);
    host.take_host_calls();
    host.add_request(2, &headers);
    assert_eq!(runtime.on_request_headers(&host, 2, true), Action::Continue);
    assert_eq!(host.request(2).unwrap().request_header("x-user-id").as_deref(), Some("alice"));
    host.take_host_calls()
}

#[test]
fn a_cached_token_costs_four_host_calls_and_three_without_the_audit_line() {
    // The header map, read once (:path, the token, and every spelling of
    // x-user-id); the clock; the audit line; the header set. The counters
    // add up in memory until the tick.
    let written = ["headers", "now", "log", "set_header"];
    assert_eq!(cached_decision(LogLevel::Info), written);
    // Envoy above info: the audit line is neither written nor assembled.
    let quiet: Vec<&str> = written.into_iter().filter(|call| *call != "log").collect();
    assert_eq!(cached_decision(LogLevel::Warn), quiet);
}
