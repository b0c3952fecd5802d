//! RFC 9728 protected resource metadata from claim-enforcement in a real
//! Envoy, and the discovery walk an MCP client makes: 401 -> metadata ->
//! authorization server metadata (RFC 8414) -> authorization code + PKCE
//! with a resource indicator (RFC 8707) -> the call succeeds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/support.rs"]
mod support;

use std::time::Duration;

use baton_harness::{Envoy, body_json};
use http_kit::{ClientRequest, ClientResponse, form_urlencode, parse_urlencoded};
use mock_idp::{DEMO_REDIRECT_URI, MockIdp, decode_claims_unverified, s256_challenge};
use serde_json::{Value, json};
use support::*;

const RESOURCE: &str = "https://mcp.example.com/mcp";
const HOST: &str = "mcp.example.com";
const METADATA_URL: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

fn mcp_envoy(idp: &MockIdp) -> (Envoy, echo_backend::EchoBackend) {
    let backend = backend();
    let config = json!({
        "realm": "mcp",
        "providers": [{"name": "idp", "issuer": idp.issuer(), "audiences": [RESOURCE], "algorithms": ["ES256"],
                       "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": 1000}}}],
        "routes": [{"name": "mcp", "match": {"pathPrefix": "/mcp"}, "require": {"scopes": {"allOf": ["mcp:tools"]}}},
                   {"name": "admin", "match": {"pathPrefix": "/admin"}, "require": {"scopes": {"allOf": ["mcp:admin"]}}}],
        "protectedResource": {"resource": RESOURCE, "authorizationServers": [idp.issuer()],
                              "resourceName": "FinPort MCP server", "resourceDocumentation": "https://docs.example.com/mcp"}
    });
    let envoy = envoy_with(config, idp, &backend, 1);
    (envoy, backend)
}

/// A request to the resource, as a client that resolved `mcp.example.com`
/// to this Envoy would send it.
fn to_resource(envoy: &Envoy, request: ClientRequest) -> ClientResponse {
    envoy.send(&request.header("host", HOST))
}

fn initialize() -> ClientRequest {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}});
    ClientRequest::post("/mcp", "application/json", body.to_string().into_bytes())
}

/// A parameter of a `WWW-Authenticate` challenge.
fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let end = challenge[start..].find('"')? + start;
    Some(challenge[start..end].to_string())
}

#[test]
fn the_metadata_document_and_its_headers() {
    let idp = idp();
    let (envoy, backend) = mcp_envoy(&idp);
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let response = to_resource(&envoy, ClientRequest::get(path));
        assert_eq!(response.status, 200, "{path}: {}", response.body_str());
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            body_json(&response),
            json!({"resource": RESOURCE, "authorization_servers": [idp.issuer()],
                   "scopes_supported": ["mcp:tools", "mcp:admin"], "bearer_methods_supported": ["header"],
                   "resource_name": "FinPort MCP server", "resource_documentation": "https://docs.example.com/mcp"})
        );
    }
    let post = to_resource(
        &envoy,
        ClientRequest::post("/.well-known/oauth-protected-resource", "text/plain", vec![]),
    );
    assert_eq!((post.status, post.header("allow")), (405, Some("GET, HEAD")));
    assert!(backend.requests().is_empty(), "the metadata is answered by the filter");
}

#[test]
fn an_mcp_client_discovers_how_to_get_a_token_and_gets_in() {
    let idp = idp();
    let (envoy, backend) = mcp_envoy(&idp);

    // 1. No token: 401, and the challenge says where the metadata is.
    let refused = to_resource(&envoy, initialize());
    assert_eq!(refused.status, 401);
    let challenge = refused.header("www-authenticate").unwrap().to_string();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let metadata_url = challenge_param(&challenge, "resource_metadata").unwrap();
    assert_eq!(metadata_url, METADATA_URL);

    // 2. The metadata, from the URL's path on the same host; the client
    // checks it is about the resource it called (RFC 9728 §3.3).
    let path = metadata_url.strip_prefix("https://mcp.example.com").unwrap();
    let metadata = body_json(&to_resource(&envoy, ClientRequest::get(path)));
    println!("challenge: {challenge}\nmetadata at {metadata_url}: {metadata}");
    assert_eq!(metadata["resource"], RESOURCE);
    let issuer = metadata["authorization_servers"][0].as_str().unwrap().to_string();

    // 3. The authorization server's metadata (RFC 8414), from its issuer.
    let well_known = format!("{}/.well-known/oauth-authorization-server", issuer.trim_end_matches('/'));
    let as_path =
        well_known.split_once("://").unwrap().1.split_once('/').map(|(_, p)| format!("/{p}")).unwrap();
    let server = http_kit::send(idp.addr(), &ClientRequest::get(&as_path), Duration::from_secs(5)).unwrap();
    let server: Value = server.json().unwrap();
    assert_eq!(server["issuer"], issuer.as_str());
    assert!(server["code_challenge_methods_supported"].as_array().unwrap().contains(&json!("S256")));
    let endpoint_path = |url: &Value| {
        url.as_str()
            .unwrap()
            .split_once("://")
            .unwrap()
            .1
            .split_once('/')
            .map(|(_, p)| format!("/{p}"))
            .unwrap()
    };

    // 4. Authorization code + PKCE, for this resource (RFC 8707).
    let verifier = "mcp-client-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
    let challenge = s256_challenge(verifier);
    let query = form_urlencode(&[
        ("response_type", "code"),
        ("client_id", "finport-app"),
        ("redirect_uri", DEMO_REDIRECT_URI),
        ("scope", "mcp:tools"),
        ("state", "s-1"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("resource", RESOURCE),
        ("login_hint", "alice"),
    ]);
    let authorize = format!("{}?{query}", endpoint_path(&server["authorization_endpoint"]));
    let redirect =
        http_kit::send(idp.addr(), &ClientRequest::get(&authorize), Duration::from_secs(5)).unwrap();
    let location = redirect.header("location").unwrap().to_string();
    let params = parse_urlencoded(location.split_once('?').unwrap().1);
    let code = params.iter().find(|(n, _)| n == "code").map(|(_, v)| v.clone()).unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", DEMO_REDIRECT_URI),
        ("client_id", "finport-app"),
        ("code_verifier", verifier),
        ("resource", RESOURCE),
    ];
    let token_path = endpoint_path(&server["token_endpoint"]);
    let tokens =
        http_kit::send(idp.addr(), &ClientRequest::post_form(&token_path, &form), Duration::from_secs(5))
            .unwrap();
    let token = tokens.json().unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(decode_claims_unverified(&token).unwrap()["aud"], RESOURCE);

    // 5. In.
    let response = to_resource(&envoy, initialize().header("authorization", &format!("Bearer {token}")));
    assert_eq!(response.status, 200, "{}", response.body_str());
    assert_eq!(backend.requests().len(), 1);

    // Every other refusal names the metadata too: a token for another
    // audience (401) and a missing scope (403).
    let other = idp.mint(idp.standard_claims("alice", "finport-api", 300));
    let wrong_audience =
        to_resource(&envoy, initialize().header("authorization", &format!("Bearer {other}")));
    assert_eq!(wrong_audience.status, 401);
    let narrow =
        to_resource(&envoy, ClientRequest::get("/admin").header("authorization", &format!("Bearer {token}")));
    assert_eq!(narrow.status, 403);
    for refusal in [&wrong_audience, &narrow] {
        let challenge = refusal.header("www-authenticate").unwrap();
        assert_eq!(
            challenge_param(challenge, "resource_metadata").as_deref(),
            Some(METADATA_URL),
            "{challenge}"
        );
    }
}
