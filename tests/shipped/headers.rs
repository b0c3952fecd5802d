//! Finding 5 and its siblings: a header a filter sets reaches the upstream
//! from the filter only, in every spelling a backend reads as the same name
//! (CGI, WSGI, Rack and PHP fold `x_user_id` and `X-User-Id` into one
//! variable). The shipped listeners refuse underscored header names
//! outright; and where a user's Envoy lets them through, the filters remove
//! every spelling of the headers they set.

use baton_harness::{Envoy, EnvoySpec, workspace_root};
use echo_backend::EchoBackend;
use http_kit::ClientRequest;
use serde_json::json;

use crate::bank;
use crate::world::{FINPORT_AUDIENCE, Ingress, TransferGateway, message};

/// Spellings of `x-user-id` and `x-user-roles` a client sends beside the
/// real ones, with what it claims.
const SPOOFED: [(&str, &str); 6] = [
    ("x_user_id", "admin"),
    ("X_User_Roles", "admin"),
    ("x-user_id", "admin"),
    ("X_USER-ROLES", "admin"),
    ("x_jwt_payload", "eyJzdWIiOiJhZG1pbiJ9"),
    ("x_client_id", "finport-admin"),
];

/// The names (lower case, `-` for `_`) the backend was given, with values.
fn folded_headers(request: &http_kit::Request) -> Vec<(String, String)> {
    request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase().replace('_', "-"), value.clone()))
        .collect()
}

#[test]
fn the_shipped_listeners_refuse_underscored_header_names() {
    let world = Ingress::start();
    let (envoy, backend) = (&world.envoy, &world.backend);
    let alice = world.viewer("alice");
    for (name, value) in SPOOFED {
        let response =
            envoy.get("/portfolio/summary", &[("authorization", &format!("Bearer {alice}")), (name, value)]);
        assert_eq!(response.status, 400, "{name}: {}", response.body_str());
    }
    assert!(backend.requests().is_empty());
    assert_eq!(envoy.get_with_token("/portfolio/summary", &alice).status, 200);

    // Every shipped listener says so, deliberately.
    for entry in std::fs::read_dir(workspace_root().join("envoy-configs")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let listeners = text.matches("http_connection_manager.v3.HttpConnectionManager").count();
        let refusing = text.matches("headers_with_underscores_action: REJECT_REQUEST").count();
        assert_eq!(refusing, listeners, "{}: every listener refuses underscored names", path.display());
    }
}

#[test]
fn where_envoy_lets_them_through_claim_enforcement_removes_every_spelling() {
    let idp = crate::world::finport_idp();
    let backend = EchoBackend::start().unwrap();
    // The harness's Envoy keeps Envoy's default: underscored names pass.
    let config: serde_json::Value = {
        let text =
            std::fs::read_to_string(workspace_root().join("envoy-configs/claim-enforcement.yaml")).unwrap();
        let start = text.find("value: |").unwrap() + "value: |".len();
        let end = text[start..].find("- name: envoy.filters.http.router").unwrap() + start;
        let json = text[start..end].replace("127.0.0.1:9000", &format!("127.0.0.1:{}", idp.port()));
        serde_json::from_str(&json).unwrap()
    };
    let envoy = Envoy::start(
        &EnvoySpec::new(backend.addr()).cluster("idp", idp.addr()).filter("claim_enforcement", config),
    )
    .unwrap();
    let mut claims = idp.standard_claims("alice", FINPORT_AUDIENCE, 300);
    claims["scope"] = json!("openid portfolio:read");
    claims["roles"] = json!(["viewer"]);
    claims["client_id"] = json!("finport-app");
    let alice = idp.mint(claims);
    let mut request =
        ClientRequest::get("/portfolio/summary").header("authorization", &format!("Bearer {alice}"));
    for (name, value) in SPOOFED.iter().chain(&[("x-user-id", "admin")]) {
        request = request.header(name, value);
    }
    let response = envoy.send(&request);
    assert_eq!(response.status, 200, "{}", response.body_str());
    let seen = folded_headers(&backend.requests()[0]);
    for (name, value) in [("x-user-id", "alice"), ("x-user-roles", "viewer"), ("x-client-id", "finport-app")]
    {
        let values: Vec<&str> = seen.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, [value], "{name} as the backend folds it: {seen:?}");
    }
    // On a public route as well: the client's copies go, nothing is set.
    let public = envoy
        .send(&ClientRequest::get("/healthz").header("x_user_id", "admin").header("X-User_Roles", "admin"));
    assert_eq!(public.status, 200);
    let seen = folded_headers(&backend.requests()[1]);
    assert!(!seen.iter().any(|(name, _)| name.starts_with("x-user")), "{seen:?}");
}

#[test]
fn in_task_removes_every_spelling_of_its_identity_header() {
    let bank = bank::bank();
    let agent = EchoBackend::start_a2a_agent().unwrap();
    let envoy = bank::in_task_envoy(&bank, agent.addr(), bank::filter_config(&bank));
    let body = message(Some("t-1"), json!([{"kind": "data", "data": {"operation": "balance"}}]));
    let mut request = ClientRequest::post("/", "application/json", body.to_string().into_bytes())
        .header("authorization", &bank::bearer("alice"));
    for name in ["x_baton_user", "X_Baton-User", "x-baton_user", "x-baton-user"] {
        request = request.header(name, "mallory");
    }
    let response = envoy.send(&request);
    assert_eq!(response.status, 200, "{}", response.body_str());
    let seen = folded_headers(&agent.requests()[0]);
    let users: Vec<&str> =
        seen.iter().filter(|(n, _)| n == "x-baton-user").map(|(_, v)| v.as_str()).collect();
    assert_eq!(users, ["alice"], "{seen:?}");
    // The shipped gateway refuses them before the filter.
    let gateway = TransferGateway::start();
    let refused = gateway.post(
        Some(&format!("Bearer {}", gateway.token("alice"))),
        &body,
        &[("x_baton_user", "mallory")],
    );
    assert_eq!(refused.status, 400);
}

#[test]
fn obo_removes_every_spelling_of_the_header_it_injects() {
    let idp = crate::world::finport_idp();
    let backend = EchoBackend::start().unwrap();
    let config = json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "clientId": "agent-broker",
                  "clientSecret": mock_idp::DEMO_BROKER_SECRET}],
        "subjectToken": {"validation": "jwks", "providers": [{"name": "corp", "issuer": idp.issuer(),
            "audiences": [FINPORT_AUDIENCE], "algorithms": ["ES256"], "jwks": {"remote": {"cluster": "idp", "path": "/jwks"}}}]},
        "targets": [{"name": "portfolio", "mode": "tokenExchange", "idp": "corp", "audiences": ["portfolio-agent"],
                     "inject": {"header": "x-upstream-token", "prefix": ""}}]
    });
    let envoy = Envoy::start(
        &EnvoySpec::new(backend.addr()).cluster("idp", idp.addr()).filter("obo_credential_injection", config),
    )
    .unwrap();
    let alice = idp.mint(idp.standard_claims("alice", FINPORT_AUDIENCE, 300));
    let forged = idp.mint(idp.standard_claims("admin", "portfolio-agent", 300));
    let response = envoy.send(
        &ClientRequest::get("/api")
            .header("authorization", &format!("Bearer {alice}"))
            .header("x_upstream_token", &forged)
            .header("X-Upstream_Token", &forged)
            .header("x-upstream-token", &forged),
    );
    assert_eq!(response.status, 200, "{}", response.body_str());
    let seen = folded_headers(&backend.requests()[0]);
    let tokens: Vec<&str> =
        seen.iter().filter(|(n, _)| n == "x-upstream-token").map(|(_, v)| v.as_str()).collect();
    assert_eq!(tokens.len(), 1, "{seen:?}");
    assert_eq!(mock_idp::decode_claims_unverified(tokens[0]).unwrap()["sub"], "alice");
    assert!(!seen.iter().any(|(n, _)| n == "authorization"), "the subject token reached the upstream");
}
