//! Finding 4 and its siblings: a path that passes one hop and means another
//! path at the next. The shipped claim-enforcement listener forwards to a
//! second Envoy with the same path settings (`normalize_path`,
//! `merge_slashes`, `path_with_escaped_slashes_action`), which forwards to
//! the backend: no path the first hop allowed for one route may reach the
//! backend as another. Every filter that matches paths refuses such paths
//! (400) instead of matching them.

use baton_harness::{Envoy, EnvoySpec, ShippedConfig, body_json};
use echo_backend::EchoBackend;
use serde_json::json;

use crate::world::{FINPORT_AUDIENCE, TransferGateway, finport_idp, message};

/// The paths the review and its siblings use to reach `/admin` from the
/// `portfolio` route, and how a backend could read them.
const ESCAPES: [&str; 16] = [
    "/portfolio/%2e%2e;/admin",
    "/portfolio/.%2e;/admin",
    "/portfolio/%2e.;/admin",
    "/portfolio/..%3b/admin",
    "/portfolio/%2e%2e%3b/admin",
    "/portfolio/..;/admin",
    "/portfolio/..;x=1/admin",
    "/portfolio;/../admin",
    "/portfolio/summary/..;/..;/admin",
    "/portfolio/%252e%252e;/admin",
    "/portfolio/%252e%252e/admin",
    "/portfolio/%5c..%5cadmin",
    "/portfolio/..%5cadmin",
    "/portfolio/%2e%2e%2fadmin",
    "/portfolio/.%252e/admin",
    "/portfolio/%2E%2E;/admin",
];

#[test]
fn no_path_passes_the_portfolio_route_and_reaches_the_backend_as_another() {
    let idp = finport_idp();
    let backend = EchoBackend::start().unwrap();
    // The second hop: an Envoy with the same path settings, no filter.
    let second = Envoy::start(&EnvoySpec::new(backend.addr())).unwrap();
    let first = ShippedConfig::new("claim-enforcement.yaml")
        .port(9000, idp.port())
        .port(9001, second.addr().port())
        .start()
        .unwrap_or_else(|e| panic!("claim-enforcement.yaml did not start: {e}"));
    let mut claims = idp.standard_claims("alice", FINPORT_AUDIENCE, 300);
    claims["scope"] = json!("openid portfolio:read");
    claims["roles"] = json!(["viewer"]);
    let viewer = idp.mint(claims);

    // The control: the route works through both hops.
    let summary = first.get_with_token("/portfolio/summary", &viewer);
    assert_eq!(summary.status, 200, "{}", summary.body_str());
    assert_eq!(backend.requests().last().unwrap().target, "/portfolio/summary");
    backend.clear();

    let mut reached = Vec::new();
    let mut refused_by_filter = 0;
    for path in ESCAPES {
        let response = first.get_with_token(path, &viewer);
        if response.status == 400 && body_json(&response)["error"] == "invalid_request" {
            refused_by_filter += 1;
        }
        // Envoy resolves some itself (then the admin route refuses the
        // viewer: 403) or redirects an escaped slash (UNESCAPE_AND_REDIRECT);
        // the filter refuses what Envoy left ambiguous with 400.
        if ![400, 301, 302, 307, 308, 403, 404].contains(&response.status) {
            reached.push(format!("{path}: {} {}", response.status, response.body_str()));
        }
    }
    let seen: Vec<String> = backend.requests().iter().map(|r| r.target.clone()).collect();
    assert!(reached.is_empty(), "passed the first hop:\n{}\nbackend saw {seen:?}", reached.join("\n"));
    assert!(seen.is_empty(), "the backend received {seen:?}");
    // With Envoy's path settings as shipped: 9 reach the filter ambiguous,
    // 4 are resolved by Envoy to /admin (403), 3 redirected (307).
    assert_eq!(refused_by_filter, 9, "paths that reached the filter ambiguous");
    assert_eq!(first.counter("baton_ce.denied.ambiguous_path"), refused_by_filter);
    // The identity headers never went anywhere either.
    assert_eq!(first.counter("baton_ce.allowed"), 1);
}

#[test]
fn the_in_task_gateway_refuses_them_too() {
    let gateway = TransferGateway::start();
    let alice = format!("Bearer {}", gateway.token("alice"));
    for path in [
        "/a2a/%2e%2e;/admin",
        "/a2a;x=1",
        "/.well-known/agent-card.json;/a2a",
        "/a2a/oauth/callback;x?code=x&state=y",
        "/a2a/%252e%252e/x",
    ] {
        let body = message(None, json!([{"kind": "data", "data": {"operation": "transfer"}}]));
        let request = http_kit::ClientRequest::post(path, "application/json", body.to_string().into_bytes())
            .header("authorization", &alice);
        let refused = gateway.envoy.send(&request);
        assert_eq!(refused.status, 400, "{path}: {}", refused.body_str());
        assert_eq!(body_json(&refused)["error"], "invalid_request", "{path}");
    }
    assert!(gateway.agent.requests().is_empty(), "an ambiguous path reached the agent");
    assert_eq!(gateway.envoy.counter("baton_itac.ambiguous_path"), 5);
}
