//! Header and body abuse inside a real Envoy: spoofed identity headers on
//! every path, ambiguous and oddly written `Authorization` headers, A2A
//! bodies that are broken or hide credentials in odd places, and OAuth
//! redirects with missing, repeated or oversized parameters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/bank.rs"]
mod bank;
#[path = "common/support.rs"]
mod support;

use baton_harness::{Envoy, EnvoySpec, body_json};
use echo_backend::EchoBackend;
use http_kit::{ClientRequest, ClientResponse};
use mock_idp::{Endpoint, MockIdp};
use serde_json::{Value, json};
use support::*;

/// Identity headers claim-enforcement sets (from `ce_config`).
const CE_IDENTITY_HEADERS: [&str; 4] = ["x-user-id", "x-user-roles", "x-client-id", "x-jwt-payload"];
const SPOOFED: &str = "spoofed-admin";

fn with_spoofs(mut request: ClientRequest, headers: &[&str]) -> ClientRequest {
    for name in headers {
        request = request.header(name, SPOOFED);
    }
    request
}

/// The spoofed value appears nowhere the backend or the client could see it.
fn assert_no_spoof(backend: &EchoBackend, response: &ClientResponse, case: &str) {
    for request in backend.requests() {
        for (name, value) in &request.headers {
            assert!(!value.contains(SPOOFED), "{case}: the upstream received {name}: {value}");
        }
    }
    assert!(!response.body_str().contains(SPOOFED), "{case}: the reply echoed a spoofed value");
}

#[test]
fn claim_enforcement_strips_spoofed_identity_on_every_path() {
    let idp = idp();
    let backend = backend();
    let mut config = ce_config(&idp);
    config["routes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "docs", "match": {"pathPrefix": "/docs"}, "action": "allow"}));
    config["defaultAction"] = json!("allow");
    let envoy = envoy_with(config, &idp, &backend, 1);
    let token = idp.mint(claims(&idp, "alice"));
    let cases: Vec<(&str, ClientRequest, u16)> = vec![
        (
            "verified token",
            ClientRequest::get("/orders").header("authorization", &format!("Bearer {token}")),
            200,
        ),
        ("public route", ClientRequest::get("/docs/readme"), 200),
        ("unmatched, default allow", ClientRequest::get("/elsewhere"), 200),
        ("refused: no token", ClientRequest::get("/orders"), 401),
        ("refused: bad token", ClientRequest::get("/orders").header("authorization", "Bearer a.b.c"), 401),
        ("refused: admin route, no token", ClientRequest::get("/admin"), 401),
    ];
    for (case, request, status) in cases {
        let response = envoy.send(&with_spoofs(request, &CE_IDENTITY_HEADERS));
        assert_eq!(response.status, status, "{case}: {}", response.body_str());
        assert_no_spoof(&backend, &response, case);
    }
    // The verified request carried the real identity.
    let first = &backend.requests()[0];
    assert_eq!(first.header("x-user-id"), Some("alice"));
    assert_eq!(backend.requests().len(), 3);
    // Header names are case-insensitive: an upper-case spoof is the same header.
    let response = envoy.send(&ClientRequest::get("/docs/x").header("X-User-Id", SPOOFED));
    assert_eq!(response.status, 200);
    assert_no_spoof(&backend, &response, "upper-case spoof");
}

#[test]
fn authorization_headers_written_oddly() {
    let idp = idp();
    let backend = backend();
    let envoy = envoy_with(ce_config(&idp), &idp, &backend, 1);
    let token = idp.mint(claims(&idp, "alice"));
    // (case, header values, status, OAuth error in the challenge)
    let cases: Vec<(&str, Vec<String>, u16, Option<&str>)> = vec![
        ("scheme in lower case (RFC 7235 §2.1)", vec![format!("bearer {token}")], 200, None),
        ("scheme in upper case", vec![format!("BEARER {token}")], 200, None),
        ("two spaces after the scheme (1*SP)", vec![format!("Bearer  {token}")], 200, None),
        ("trailing whitespace (trimmed by HTTP)", vec![format!("Bearer {token}  ")], 200, None),
        ("tab after the scheme", vec![format!("Bearer\t{token}")], 400, Some("invalid_request")),
        ("two tokens in one header", vec![format!("Bearer {token} {token}")], 400, Some("invalid_request")),
        (
            "comma-joined credentials",
            vec![format!("Bearer {token}, Bearer {token}")],
            400,
            Some("invalid_request"),
        ),
        (
            "two Authorization headers, same token",
            vec![format!("Bearer {token}"), format!("Bearer {token}")],
            400,
            Some("invalid_request"),
        ),
        (
            "two Authorization headers, other scheme",
            vec![format!("Bearer {token}"), "Basic YTpi".into()],
            400,
            Some("invalid_request"),
        ),
        ("Basic only", vec!["Basic YWxpY2U6cGFzc3dvcmQ=".into()], 401, None),
        ("scheme without a token", vec!["Bearer".into()], 400, Some("invalid_request")),
        ("scheme and a space", vec!["Bearer ".into()], 400, Some("invalid_request")),
        ("token without a scheme", vec![token.clone()], 401, None),
        ("characters outside b64token", vec![format!("Bearer {token}\"x")], 400, Some("invalid_request")),
    ];
    let mut forwarded = 0;
    for (case, values, status, error) in &cases {
        let mut request = ClientRequest::get("/orders");
        for value in values {
            request = request.header("authorization", value);
        }
        let response = envoy.send(&request);
        assert_eq!(response.status, *status, "{case}: {}", response.body_str());
        let challenge = response.header("www-authenticate").unwrap_or_default().to_string();
        match (status, error) {
            (200, _) => forwarded += 1,
            (_, Some(error)) => {
                assert!(challenge.contains(&format!(r#"error="{error}""#)), "{case}: {challenge}")
            }
            (_, None) => assert_eq!(challenge, r#"Bearer realm="orders""#, "{case}"),
        }
    }
    assert_eq!(backend.requests().len(), forwarded, "only the accepted spellings were forwarded");
}

fn obo_envoy(idp: &MockIdp, backend: &EchoBackend) -> Envoy {
    let config = obo_exchange_config(idp);
    let spec =
        EnvoySpec::new(backend.addr()).cluster("idp", idp.addr()).filter("obo_credential_injection", config);
    Envoy::start(&spec).unwrap()
}

#[test]
fn obo_refuses_ambiguous_subject_tokens_before_any_exchange() {
    let idp = idp();
    let backend = backend();
    let envoy = obo_envoy(&idp, &backend);
    let mut user = idp.standard_claims("alice", "agent-broker", 300);
    user["scope"] = json!("portfolio:read");
    let token = idp.mint(user.clone());
    user["sub"] = json!("mallory");
    let other = idp.mint(user);
    for (case, values) in [
        ("two Authorization headers", vec![format!("Bearer {token}"), format!("Bearer {other}")]),
        ("comma-joined", vec![format!("Bearer {token}, Bearer {other}")]),
        ("tab", vec![format!("Bearer\t{token}")]),
    ] {
        let mut request = ClientRequest::get("/api/positions");
        for value in &values {
            request = request.header("authorization", value);
        }
        let response = envoy.send(&request);
        assert_eq!(response.status, 400, "{case}: {}", response.body_str());
        assert!(
            response.header("www-authenticate").unwrap().contains(r#"error="invalid_request""#),
            "{case}"
        );
    }
    assert_eq!(idp.calls(Endpoint::Token), 0);
    assert!(backend.requests().is_empty());
    // The caller's own token never reaches the upstream, whatever it is called.
    let response = envoy.send(
        &ClientRequest::get("/api/positions")
            .header("authorization", &format!("bearer {token}"))
            .header("x-forwarded-authorization", &format!("Bearer {other}")),
    );
    assert_eq!(response.status, 200, "{}", response.body_str());
    let seen = &backend.requests()[0];
    let upstream_token = seen.header("authorization").unwrap();
    assert_ne!(upstream_token, format!("Bearer {token}"));
    assert_eq!(
        mock_idp::decode_claims_unverified(upstream_token.trim_start_matches("Bearer ")).unwrap()["aud"],
        "portfolio-agent"
    );
}

struct A2a {
    bank: MockIdp,
    agent: EchoBackend,
    envoy: Envoy,
}

fn a2a() -> A2a {
    let bank = bank::bank();
    let agent = EchoBackend::start_a2a_agent().unwrap();
    let envoy = bank::in_task_envoy(&bank, agent.addr(), bank::filter_config(&bank));
    A2a { bank, agent, envoy }
}

impl A2a {
    fn post(&self, user: &str, body: &[u8], extra: &[(&str, &str)]) -> ClientResponse {
        let mut request = ClientRequest::post("/", "application/json", body.to_vec())
            .header("authorization", &bank::bearer(user));
        for (name, value) in extra {
            request = request.header(name, value);
        }
        self.envoy.send(&request)
    }

    fn bank_token(&self, user: &str) -> String {
        let mut claims = self.bank.standard_claims(user, "bank-api", 300);
        claims["scope"] = json!("transfers:write");
        self.bank.mint(claims)
    }
}

fn message(task: &str, parts: Value, metadata: Option<Value>) -> Vec<u8> {
    let mut message = json!({"kind": "message", "role": "user", "messageId": "m-1", "taskId": task, "contextId": "ctx-1", "parts": parts});
    if let Some(metadata) = metadata {
        message["metadata"] = metadata;
    }
    json!({"jsonrpc": "2.0", "id": "req-1", "method": "message/send", "params": {"message": message}})
        .to_string()
        .into_bytes()
}

fn transfer(extra: Value) -> Value {
    let mut data = json!({"operation": "transfer", "amount": 250, "to": "bob"});
    for (key, value) in extra.as_object().unwrap() {
        data[key] = value.clone();
    }
    json!([{"kind": "data", "data": data}])
}

/// An HTTP status and the JSON-RPC error code of the answer.
type JsonRpcError = (u16, Option<i64>);

fn json_rpc_error(response: &ClientResponse) -> JsonRpcError {
    (response.status, body_json(response)["error"]["code"].as_i64())
}

#[test]
fn a2a_bodies_that_are_broken_or_hide_credentials() {
    let w = a2a();
    let token = w.bank_token("alice");
    let credentials = json!({"accessToken": token});
    let whole = message("t-1", transfer(json!({})), None);
    let cases: Vec<(&str, Vec<u8>, JsonRpcError)> = vec![
        ("truncated JSON", whole[..whole.len() / 2].to_vec(), (400, Some(-32700))),
        ("not JSON", b"<xml>transfer</xml>".to_vec(), (400, Some(-32700))),
        ("JSON, not JSON-RPC", br#"{"operation":"transfer"}"#.to_vec(), (400, Some(-32600))),
        (
            "JSON-RPC without a message",
            br#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{}}"#.to_vec(),
            (400, Some(-32602)),
        ),
        (
            "two credentials in two parts",
            message(
                "t-1",
                json!([{"kind": "data", "data": {"operation": "transfer", "auth_credentials": credentials}},
                                   {"kind": "data", "data": {"auth_credentials": {"accessToken": "other"}}}]),
                None,
            ),
            (400, Some(-32602)),
        ),
        (
            "credential object of the wrong shape",
            message("t-1", transfer(json!({"auth_credentials": "Bearer x"})), None),
            (400, Some(-32602)),
        ),
        (
            "credential with both a token and a code",
            message(
                "t-1",
                transfer(json!({"auth_credentials": {"accessToken": token, "code": "c", "state": "s"}})),
                None,
            ),
            (400, Some(-32602)),
        ),
    ];
    for (case, body, expected) in &cases {
        let response = w.post("alice", body, &[]);
        assert_eq!(json_rpc_error(&response), *expected, "{case}: {}", response.body_str());
    }
    assert!(w.agent.requests().is_empty(), "a refused body reached the agent");

    // Credentials hidden where the filter does not take them from: never
    // forwarded, and the message still needs the bank's authorization.
    let hidden: Vec<(&str, Vec<u8>)> = vec![
        (
            "nested in the data",
            message("t-3", transfer(json!({"wrapper": {"auth_credentials": credentials}})), None),
        ),
        (
            "in a text part",
            message(
                "t-4",
                json!([{"kind": "text", "text": format!("auth_credentials {token}")},
                                                  {"kind": "data", "data": {"operation": "transfer"}}]),
                None,
            ),
        ),
    ];
    for (case, body) in &hidden {
        let response = w.post("alice", body, &[]);
        let seen: Vec<String> =
            w.agent.requests().iter().map(|r| String::from_utf8_lossy(&r.body).to_string()).collect();
        assert!(seen.iter().all(|b| !b.contains(&token)), "{case}: the agent received the token");
        if response.status == 200 {
            assert_eq!(
                body_json(&response)["result"]["status"]["state"],
                "auth-required",
                "{case}: {}",
                response.body_str()
            );
        } else {
            assert_eq!(response.status, 400, "{case}: {}", response.body_str());
        }
    }
    assert!(w.agent.requests().is_empty(), "no hidden credential authorized a transfer");

    // The message metadata is a place the filter does take them from:
    // validated, injected, and removed from what the agent gets.
    let in_metadata = w.post(
        "alice",
        &message("t-2", transfer(json!({})), Some(json!({"auth_credentials": credentials}))),
        &[],
    );
    assert_eq!(
        body_json(&in_metadata)["result"]["status"]["state"],
        "completed",
        "{}",
        in_metadata.body_str()
    );
    let seen = w.agent.requests().remove(0);
    assert!(!String::from_utf8_lossy(&seen.body).contains("auth_credentials"));
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {token}").as_str()));

    // A spoofed identity header is replaced by the user's id, on a message
    // that needed the bank's token and on one that did not.
    let ok = w.post(
        "alice",
        &message("t-5", transfer(json!({"auth_credentials": credentials})), None),
        &[("x-baton-user", SPOOFED)],
    );
    assert_eq!(ok.status, 200, "{}", ok.body_str());
    let balance = message("t-6", json!([{"kind": "data", "data": {"operation": "balance"}}]), None);
    let free = w.post("alice", &balance, &[("x-baton-user", SPOOFED)]);
    assert_eq!(free.status, 200, "{}", free.body_str());
    let seen = w.agent.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].header("x-baton-user"), Some("alice"));
    assert_eq!(seen[2].header("x-baton-user"), Some("alice"), "replaced on a free message too");
    assert!(!String::from_utf8_lossy(&seen[1].body).contains("auth_credentials"));
}

#[test]
fn oauth_redirects_with_bad_parameters_are_refused_and_use_up_the_state() {
    let w = a2a();
    // A real challenge, so there is a real state to misuse.
    let challenge = w.post("alice", &message("t-r", transfer(json!({})), None), &[]);
    let body = body_json(&challenge);
    let state = body["result"]["status"]["message"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|p| p.pointer("/data/authChallenge/state"))
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    let long = "s".repeat(8 * 1024);
    let cases: Vec<(&str, String)> = vec![
        ("no parameters", String::new()),
        ("state without code", format!("state={state}")),
        ("code without state", "code=abc".to_string()),
        ("unknown state", "state=not-a-state&code=abc".to_string()),
        ("overlong state", format!("state={long}&code=abc")),
        ("overlong code", format!("state=x&code={long}")),
        ("IdP error", "error=access_denied&state=x".to_string()),
        ("state twice, the real one first", format!("state={state}&state=other&code=abc")),
    ];
    for (case, query) in &cases {
        let path = if query.is_empty() {
            "/a2a/oauth/callback".to_string()
        } else {
            format!("/a2a/oauth/callback?{query}")
        };
        let response = w.envoy.send(&ClientRequest::get(&path));
        assert_eq!(response.status, 400, "{case}: {}", response.body_str());
        assert!(!response.body_str().contains(&long), "{case}: the page echoed the input");
    }
    // "state twice" used the real state up: the right redirect now fails too.
    let reused = w.envoy.send(&ClientRequest::get(&format!("/a2a/oauth/callback?state={state}&code=abc")));
    assert_eq!(reused.status, 400, "{}", reused.body_str());
    assert_eq!(w.bank.calls(Endpoint::Token), 0, "no bad redirect reached the token endpoint");
    assert!(w.agent.requests().is_empty());
}
