//! The official MCP SDK's long tool call through
//! `envoy-configs/mcp-resource.yaml` (claim-enforcement in front of an MCP
//! server), ports changed only: the answer streams for longer than Envoy's
//! default route timeout (15 s) and arrives whole.

use std::time::{Duration, Instant};

use baton_harness::ShippedConfig;
use mock_idp::{MockIdp, MockIdpConfig};
use serde_json::json;

use crate::sdk::{PythonServer, mcp_client};

#[test]
fn a_long_tool_call_outlives_envoys_default_route_timeout() {
    let idp = MockIdp::start(MockIdpConfig::default()).expect("mock IdP starts");
    let server = PythonServer::start("mcp_server.py", |_| Vec::new());
    let envoy = ShippedConfig::new("mcp-resource.yaml")
        .port(9000, idp.port())
        .port(9001, server.port())
        .start()
        .unwrap_or_else(|e| panic!("mcp-resource.yaml did not start: {e}"));
    let mut claims = idp.standard_claims("alice", "https://mcp.finport.example/mcp", 300);
    claims["scope"] = json!("mcp:tools");
    let token = idp.mint(claims);
    let started = Instant::now();
    let answer = mcp_client(&json!({
        "url": format!("http://{}/mcp", envoy.addr()),
        "token": token,
        "tool": "slow_report",
        "arguments": {"seconds": 17},
    }));
    assert_eq!(answer.get("error"), None, "{answer}");
    assert_eq!(answer["result"], "report ready after 17 s", "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(17));
    // With a token it cannot verify, the same call is refused (401): the
    // route is claim-enforcement's.
    let refused = mcp_client(&json!({
        "url": format!("http://{}/mcp", envoy.addr()),
        "token": "not-a-token",
        "tool": "slow_report",
        "arguments": {"seconds": 1},
    }));
    assert!(refused["error"].is_string(), "{refused}");
    // Two requests, both refused: the SDK's `server/discover` probe, then
    // its fallback `initialize`.
    assert_eq!(envoy.counter("baton_ce.denied.invalid_token"), 2);
}
