//! in-task-auth-code inside a real Envoy, with the mock IdP as the user's
//! bank and an A2A echo agent: challenges in both versions, the three ways
//! a credential comes back, what the agent received, misuse and faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/support.rs"]
mod support;

use std::time::Duration;

use baton_harness::{Envoy, EnvoySpec, body_json};
use echo_backend::EchoBackend;
use http_kit::{ClientRequest, ClientResponse};
use mock_idp::{Endpoint, Fault, MockIdp};
use serde_json::{Value, json};

#[path = "common/bank.rs"]
mod bank;
use bank::{REDIRECT, bank, filter_config};

struct World {
    bank: MockIdp,
    agent: EchoBackend,
    envoy: Envoy,
}

fn world() -> World {
    world_with(|_| {})
}

fn world_with(change: impl FnOnce(&mut Value)) -> World {
    let bank = bank();
    let agent = EchoBackend::start_a2a_agent().unwrap();
    let mut config = filter_config(&bank);
    change(&mut config);
    let envoy = bank::in_task_envoy(&bank, agent.addr(), config);
    World { bank, agent, envoy }
}

fn transfer_parts(extra: Option<Value>) -> Value {
    let mut data = json!({"operation": "transfer", "amount": 250, "to": "bob"});
    if let Some(credentials) = extra {
        data["auth_credentials"] = credentials;
    }
    json!([{"kind": "text", "text": "send 250 to bob"}, {"kind": "data", "data": data}])
}

fn v03(method: &str, task: Option<&str>, parts: Value) -> Vec<u8> {
    let mut message = json!({"kind": "message", "role": "user", "messageId": "m-1", "parts": parts});
    if let Some(task) = task {
        message["taskId"] = json!(task);
        message["contextId"] = json!("ctx-1");
    }
    json!({"jsonrpc": "2.0", "id": "req-1", "method": method, "params": {"message": message}})
        .to_string()
        .into_bytes()
}

fn v10(method: &str, parts: Value) -> Vec<u8> {
    let message = json!({"role": "ROLE_USER", "messageId": "m-1", "parts": parts});
    json!({"jsonrpc": "2.0", "id": 42, "method": method, "params": {"message": message}})
        .to_string()
        .into_bytes()
}

impl World {
    fn post(&self, user: Option<&str>, body: Vec<u8>) -> ClientResponse {
        let mut request = ClientRequest::post("/", "application/json", body);
        if let Some(user) = user {
            request = request.header("authorization", &bank::bearer(user));
        }
        self.envoy.send(&request)
    }

    /// The user authorizes at the bank (auto-approved by the mock) and the
    /// browser is sent back: returns the code and state of the redirect.
    fn authorize(&self, authorization_url: &str, user: &str) -> (String, String) {
        let (location, code, state) = bank::approve(&self.bank, authorization_url, user);
        assert!(location.starts_with(REDIRECT), "{location}");
        (code, state)
    }

    fn agent_saw(&self) -> Vec<http_kit::Request> {
        self.agent.requests()
    }
}

fn challenge_of(response: &ClientResponse) -> Value {
    bank::auth_challenge(response)
}

#[test]
fn challenges_in_both_versions_and_streams_without_calling_the_agent() {
    let w = world();
    let send03 = w.post(Some("alice"), v03("message/send", None, transfer_parts(None)));
    assert_eq!(send03.status, 200, "{}", send03.body_str());
    let body = body_json(&send03);
    assert_eq!((body["id"].as_str(), body["result"]["kind"].as_str()), (Some("req-1"), Some("task")));
    assert_eq!(body["result"]["status"]["state"], "auth-required");
    let challenge = challenge_of(&send03);
    for field in [
        "authorizationUrl",
        "authorizationEndpoint",
        "tokenEndpoint",
        "scopes",
        "audience",
        "secondaryAuthProvider",
        "expiresAt",
    ] {
        assert!(!challenge[field].is_null(), "authChallenge.{field} missing: {challenge}");
    }
    let url = challenge["authorizationUrl"].as_str().unwrap();
    for part in [
        "response_type=code",
        "client_id=transfer-gateway",
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "scope=transfers%3Awrite",
    ] {
        assert!(url.contains(part), "{part} missing in {url}");
    }

    let send10 = w.post(Some("alice"), v10("SendMessage", json!([{"data": {"operation": "transfer"}}])));
    let body = body_json(&send10);
    assert_eq!(
        (body["id"].as_i64(), body["result"]["task"]["status"]["state"].as_str()),
        (Some(42), Some("TASK_STATE_AUTH_REQUIRED"))
    );
    let stream10 =
        w.post(Some("alice"), v10("SendStreamingMessage", json!([{"data": {"operation": "transfer"}}])));
    assert_eq!(stream10.header("content-type"), Some("text/event-stream"));
    let event: Value =
        serde_json::from_str(stream10.body_str().strip_prefix("data: ").unwrap().trim()).unwrap();
    assert_eq!(event["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_AUTH_REQUIRED");
    let stream03 = w.post(Some("alice"), v03("message/stream", Some("t-1"), transfer_parts(None)));
    let event: Value =
        serde_json::from_str(stream03.body_str().strip_prefix("data: ").unwrap().trim()).unwrap();
    assert_eq!(
        (event["result"]["kind"].as_str(), event["result"]["final"].as_bool()),
        (Some("status-update"), Some(true))
    );
    assert_eq!(event["result"]["taskId"], "t-1");

    assert!(w.agent_saw().is_empty(), "the agent was called");
    assert_eq!(w.envoy.counter("baton_itac.challenges"), 4);
}

#[test]
fn the_redirect_flow_then_the_next_messages_carry_the_bank_token() {
    let w = world();
    let challenge = w.post(Some("alice"), v03("message/send", None, transfer_parts(None)));
    let gateway_task = body_json(&challenge)["result"]["id"].as_str().unwrap().to_string();
    let (code, state) = w.authorize(challenge_of(&challenge)["authorizationUrl"].as_str().unwrap(), "alice");

    let page =
        w.envoy.get(&format!("/a2a/oauth/callback?code={code}&state={state}"), &[("accept", "text/html")]);
    assert_eq!(page.status, 200, "{}", page.body_str());
    assert!(page.body_str().contains("Authorization complete"));
    assert_eq!(w.envoy.counter("baton_itac.codes_exchanged"), 1);

    // The task continues with nothing in the body (and the agent keeps
    // its task open for more).
    let mut keep_open = transfer_parts(None);
    keep_open[1]["data"]["keepOpen"] = json!(true);
    let answer = w.post(Some("alice"), v03("message/send", Some(&gateway_task), keep_open));
    assert_eq!(answer.status, 200, "{}", answer.body_str());
    let seen = w.agent_saw();
    assert_eq!(seen.len(), 1);
    let token = seen[0].header("authorization").unwrap().strip_prefix("Bearer ").unwrap().to_string();
    let claims = mock_idp::decode_claims_unverified(&token).unwrap();
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str(), claims["aud"].as_str()),
        (Some(w.bank.issuer().as_str()), Some("alice"), Some("bank-api"))
    );
    assert_eq!(seen[0].header("x-baton-user"), Some("alice"));
    let forwarded: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(forwarded["params"]["message"].get("taskId"), None, "the gateway's task id is not forwarded");
    let agent_task = body_json(&answer)["result"]["id"].as_str().unwrap().to_string();

    // A second transfer in the agent's task needs no new challenge.
    let second = w.post(Some("alice"), v03("message/send", Some(&agent_task), transfer_parts(None)));
    assert_eq!(body_json(&second)["result"]["status"]["state"], "completed", "{}", second.body_str());
    assert_eq!(w.agent_saw().len(), 2);
    // Another user cannot use it.
    let bob = w.post(Some("bob"), v03("message/send", Some(&agent_task), transfer_parts(None)));
    assert_eq!(body_json(&bob)["result"]["status"]["state"], "auth-required");
    assert_eq!(w.agent_saw().len(), 2);
    // The task completed: its token is gone with it, so a later message
    // naming it (which the agent would refuse) gets a new challenge.
    let after = w.post(Some("alice"), v03("message/send", Some(&agent_task), transfer_parts(None)));
    assert_eq!(body_json(&after)["result"]["status"]["state"], "auth-required");
    assert_eq!(w.envoy.counter("baton_itac.tasks_ended"), 1);
    // The redirect cannot be replayed.
    let replay = w.envoy.get(&format!("/a2a/oauth/callback?code={code}&state={state}"), &[]);
    assert_eq!(replay.status, 400);
}

#[test]
fn a_code_in_the_message_is_exchanged_inside_envoy() {
    let w = world();
    let challenge = w.post(Some("alice"), v03("message/send", Some("t-7"), transfer_parts(None)));
    let (code, state) = w.authorize(challenge_of(&challenge)["authorizationUrl"].as_str().unwrap(), "alice");
    let answer = w.post(
        Some("alice"),
        v03("message/send", Some("t-7"), transfer_parts(Some(json!({"code": code, "state": state})))),
    );
    assert_eq!(answer.status, 200, "{}", answer.body_str());
    let report = &body_json(&answer)["result"]["status"]["message"]["parts"][1]["data"];
    assert_eq!(report["bearer_claims"]["sub"], "alice");
    assert_eq!(report["auth_credentials_seen"], false, "the credential was stripped from the body");
    assert_eq!(report["parts_received"], 2);
    let body = String::from_utf8(w.agent_saw()[0].body.clone()).unwrap();
    assert!(!body.contains(&code) && !body.contains(&state));
    let forwarded: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(w.agent_saw()[0].header("content-length").map(str::to_string), Some(body.len().to_string()));
    assert_eq!(forwarded["params"]["message"]["taskId"], "t-7");

    // Reused code and state: refused, nothing forwarded.
    let reused = w.post(
        Some("alice"),
        v03("message/send", Some("t-7"), transfer_parts(Some(json!({"code": code, "state": state})))),
    );
    assert_eq!(reused.status, 400);
    assert_eq!(w.agent_saw().len(), 1);
}

#[test]
fn a_token_in_the_message_is_validated_before_it_is_injected() {
    let w = world();
    let mut claims = w.bank.standard_claims("alice", "bank-api", 300);
    claims["scope"] = json!("transfers:write");
    let token = w.bank.mint(claims);
    let answer = w.post(
        Some("alice"),
        v03("message/send", Some("t-3"), transfer_parts(Some(json!({"accessToken": token})))),
    );
    assert_eq!(answer.status, 200);
    assert_eq!(w.agent_saw()[0].header("authorization"), Some(format!("Bearer {token}").as_str()));

    let forged = mock_idp::SigningKey::es256(w.bank.active_key("ES256").unwrap().kid()).unwrap();
    let forged = forged.sign_compact(
        &json!({"alg": "ES256", "kid": forged.kid()}),
        &w.bank.standard_claims("alice", "bank-api", 300),
    );
    let refused = w.post(
        Some("alice"),
        v03("message/send", Some("t-4"), transfer_parts(Some(json!({"accessToken": forged})))),
    );
    let challenge = challenge_of(&refused);
    assert_eq!(challenge["error"], "invalid_token");
    let mut expired = w.bank.standard_claims("alice", "bank-api", 300);
    expired["exp"] = json!(mock_idp::now_secs() - 600);
    let refused = w.post(
        Some("alice"),
        v03("message/send", Some("t-4"), transfer_parts(Some(json!({"accessToken": w.bank.mint(expired)})))),
    );
    assert_eq!(challenge_of(&refused)["errorDescription"], "token is expired");
    assert_eq!(w.agent_saw().len(), 1, "refused credentials reach no agent");
    assert_eq!(w.envoy.counter("baton_itac.validation_failures"), 2);
}

#[test]
fn a_state_belongs_to_one_user_and_one_task() {
    let w = world();
    let challenge = w.post(Some("alice"), v03("message/send", Some("t-1"), transfer_parts(None)));
    let (code, state) = w.authorize(challenge_of(&challenge)["authorizationUrl"].as_str().unwrap(), "alice");
    let mallory = w.post(
        Some("mallory"),
        v03("message/send", Some("t-1"), transfer_parts(Some(json!({"code": code, "state": state})))),
    );
    assert_eq!(mallory.status, 403, "{}", mallory.body_str());
    // The state is used up by the attempt.
    let alice = w.post(
        Some("alice"),
        v03("message/send", Some("t-1"), transfer_parts(Some(json!({"code": code, "state": state})))),
    );
    assert_eq!(alice.status, 400);
    let other = w.post(Some("alice"), v03("message/send", Some("t-2"), transfer_parts(None)));
    let (code, state) = w.authorize(challenge_of(&other)["authorizationUrl"].as_str().unwrap(), "alice");
    let wrong_task = w.post(
        Some("alice"),
        v03("message/send", Some("t-1"), transfer_parts(Some(json!({"code": code, "state": state})))),
    );
    assert_eq!(wrong_task.status, 403);
    assert!(w.agent_saw().is_empty());
    assert_eq!(w.envoy.counter("baton_itac.state_misuse"), 3);
}

#[test]
fn the_bank_failing_during_the_code_exchange_answers_503_and_forwards_nothing() {
    let w = world();
    for (name, fault) in [
        ("503", Fault::Status(503)),
        ("garbage", Fault::Html),
        ("closed", Fault::Close),
        ("slow", Fault::Delay(Duration::from_millis(1500))),
    ] {
        let challenge = w.post(Some("alice"), v03("message/send", Some("t-f"), transfer_parts(None)));
        let (code, state) =
            w.authorize(challenge_of(&challenge)["authorizationUrl"].as_str().unwrap(), "alice");
        w.bank.set_fault(Endpoint::Token, fault, Some(1));
        let answer = w.post(
            Some("alice"),
            v03("message/send", Some("t-f"), transfer_parts(Some(json!({"code": code, "state": state})))),
        );
        assert_eq!(answer.status, 503, "{name}: {}", answer.body_str());
        assert_eq!(body_json(&answer)["error"]["code"], -32000, "{name}");
        assert!(w.agent_saw().is_empty(), "{name}: forwarded");
    }
    assert_eq!(w.envoy.counter("baton_itac.idp_unavailable"), 4);
}

#[test]
fn an_agents_own_challenge_gets_a_ready_to_open_url() {
    let w = world();
    let parts = json!([{"kind": "data", "data": {"operation": "needs-bank-auth"}}]);
    let answer = w.post(Some("alice"), v03("message/send", Some("t-x"), parts));
    assert_eq!(answer.status, 200, "{}", answer.body_str());
    assert_eq!(w.agent_saw().len(), 1, "the agent answered itself");
    let body = body_json(&answer);
    assert_eq!(body["result"]["status"]["state"], "auth-required");
    assert_eq!(
        body["result"]["status"]["message"]["parts"][0]["text"],
        "I need your bank's authorization to continue."
    );
    let challenge = challenge_of(&answer);
    let (code, state) = w.authorize(challenge["authorizationUrl"].as_str().unwrap(), "alice");
    let page = w
        .envoy
        .get(&format!("/a2a/oauth/callback?code={code}&state={state}"), &[("accept", "application/json")]);
    assert_eq!(body_json(&page)["taskId"], "t-x");
    assert_eq!(w.envoy.counter("baton_itac.agent_challenges_enriched"), 1);
}

#[test]
fn agent_cards_pass_and_bad_bodies_are_refused() {
    let w = world_with(|c| c["maxBodyBytes"] = json!(4096));
    let card = w.envoy.get("/.well-known/agent-card.json", &[]);
    assert_eq!(card.status, 200);
    assert_eq!(body_json(&card)["name"], "Transfer Agent");
    let broken = w.post(Some("alice"), b"{\"jsonrpc\": \"2.0\", \"method\": ".to_vec());
    assert_eq!((broken.status, body_json(&broken)["error"]["code"].as_i64()), (400, Some(-32700)));
    let not_rpc = w.post(Some("alice"), br#"{"hello": "agent"}"#.to_vec());
    assert_eq!(body_json(&not_rpc)["error"]["code"], -32600);
    let huge = w.post(
        Some("alice"),
        v03("message/send", None, json!([{"kind": "text", "text": "x".repeat(10_000)}])),
    );
    assert_eq!(huge.status, 413);
    let spoofed = w.envoy.send(
        &ClientRequest::post(
            "/",
            "application/json",
            v03("message/send", Some("t"), json!([{"kind": "text", "text": "hi"}])),
        )
        .header("authorization", &bank::bearer("alice"))
        .header("x-baton-user", "admin"),
    );
    assert_eq!(spoofed.status, 200);
    assert_eq!(w.agent_saw().last().unwrap().header_all("x-baton-user"), ["alice"]);
    assert_eq!(w.agent_saw().len(), 2, "only the card and the plain message reached the agent");
}

#[test]
fn without_header_stop_iteration_a_protected_request_fails_closed_not_forever() {
    let bank = bank();
    let agent = EchoBackend::start_a2a_agent().unwrap();
    let spec = EnvoySpec::new(agent.addr())
        .cluster("bank_idp", bank.addr())
        .filter("in_task_auth_code", filter_config(&bank))
        .without_header_stop_iteration();
    let envoy = Envoy::start(&spec).unwrap();
    let started = std::time::Instant::now();
    let response = envoy.send(
        &ClientRequest::post("/", "application/json", v03("message/send", None, transfer_parts(None)))
            .header("authorization", &bank::bearer("alice")),
    );
    assert_eq!(response.status, 500, "{}", response.body_str());
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(agent.requests().is_empty());
    let logs = envoy.logs();
    assert!(logs.contains("set allow_on_headers_stop_iteration: true"), "the log names the setting");
}
