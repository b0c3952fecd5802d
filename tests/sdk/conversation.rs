//! The conversation as an SDK client has it: the card, the challenge, the
//! authorization, plain follow-ups, the agent's own challenge, task calls
//! on the gateway's task, two users, and a stream longer than Envoy's
//! default route timeout. Each step asserts what the agent received and
//! what the client's SDK made of the answer.

use serde_json::{Value, json};

use crate::sdk::{SdkAgent, a2a_call, body, header};
use crate::world::TransferGateway;

struct World {
    agent: SdkAgent,
    gateway: TransferGateway,
}

fn world() -> World {
    let agent = SdkAgent::start();
    let gateway = TransferGateway::start_in_front_of(agent.port());
    World { agent, gateway }
}

impl World {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway.port)
    }

    /// One SDK call of `user` (`op` and the rest of `spec`).
    fn call(&self, user: Option<&str>, version: &str, stream: bool, spec: Value) -> Value {
        a2a_call(&self.url(), user.map(|user| self.gateway.token(user)), version, stream, spec)
    }

    fn send(&self, user: &str, version: &str, stream: bool, message: Value) -> Value {
        let mut spec = message;
        spec["op"] = json!("send");
        self.call(Some(user), version, stream, spec)
    }
}

/// The task state the SDK's last event reports.
pub(crate) fn last_state(answer: &Value) -> String {
    let events = answer["events"].as_array().unwrap_or_else(|| panic!("no events: {answer}"));
    let event = events.last().unwrap_or_else(|| panic!("no events: {answer}"));
    let status = event.pointer("/task/status").or_else(|| event.pointer("/statusUpdate/status"));
    status
        .and_then(|status| status["state"].as_str())
        .unwrap_or_else(|| panic!("no state: {answer}"))
        .to_string()
}

/// The task (and context) the SDK's first event names.
pub(crate) fn task_of(answer: &Value) -> (String, String) {
    let event = &answer["events"][0];
    let (task, context) = match event.get("task") {
        Some(task) => (&task["id"], &task["contextId"]),
        None => (&event["statusUpdate"]["taskId"], &event["statusUpdate"]["contextId"]),
    };
    (task.as_str().unwrap().to_string(), context.as_str().unwrap().to_string())
}

/// The `authChallenge` in the SDK's last event's status message.
pub(crate) fn challenge_of(answer: &Value) -> Value {
    let event = answer["events"].as_array().unwrap().last().unwrap().clone();
    let status =
        event.pointer("/task/status").or_else(|| event.pointer("/statusUpdate/status")).unwrap().clone();
    let parts =
        status["message"]["parts"].as_array().unwrap_or_else(|| panic!("no message: {answer}")).clone();
    parts
        .iter()
        .find_map(|part| part.pointer("/data/authChallenge").cloned())
        .unwrap_or_else(|| panic!("no authChallenge: {answer}"))
}

/// The claims of the bearer token a logged request carried.
pub(crate) fn bearer_claims(request: &Value) -> Value {
    let token = header(request, "authorization").unwrap();
    mock_idp::decode_claims_unverified(token.strip_prefix("Bearer ").unwrap()).unwrap()
}

pub(crate) fn transfer() -> Value {
    json!({"text": "send 250 EUR to bob", "data": {"operation": "transfer", "amount": 250, "to": "bob"}})
}

#[test]
fn the_card_a_client_finds_through_the_gateway_names_the_gateway() {
    let w = world();
    let answer = w.call(None, "1.0", false, json!({"op": "card"}));
    let card = &answer["card"];
    let interfaces = card["supportedInterfaces"].as_array().unwrap();
    assert_eq!(interfaces.len(), 1, "{card}");
    assert_eq!(interfaces[0]["url"], format!("{}/", w.url()), "the SDK would call the agent directly");
    assert_eq!(interfaces[0]["protocolBinding"], "JSONRPC");
    // The user's bearer token, as the gateway requires it, is declared.
    assert_eq!(card["securityRequirements"][0]["schemes"]["baton-user"], json!({}), "{card}");
    assert_eq!(card["securitySchemes"]["baton-user"]["httpAuthSecurityScheme"]["scheme"], "Bearer");
    // It came through the gateway, asked uncompressed.
    let requests = w.agent.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["path"], "/.well-known/agent-card.json");
    assert_eq!(header(&requests[0], "accept-encoding"), None);
    assert_eq!(w.gateway.envoy.counter("baton_itac.agent_cards_rewritten"), 1);
}

/// The whole round trip in one protocol version and mode: challenge,
/// authorization in the user's browser, then plain follow-ups.
fn round_trip(version: &str, stream: bool) {
    let w = world();
    let a2a_version = version;
    // 1. A transfer: the gateway answers with a challenge the SDK reads as
    //    a task waiting for authorization; the agent hears nothing.
    let challenge = w.send("alice", version, stream, transfer());
    assert_eq!(challenge.get("error"), None, "{challenge}");
    assert_eq!(last_state(&challenge), "TASK_STATE_AUTH_REQUIRED", "{challenge}");
    let (gateway_task, context) = task_of(&challenge);
    let link = challenge_of(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
    assert!(w.agent.calls().is_empty());
    // GetTask on it: the gateway's task, still waiting.
    let got = w.call(Some("alice"), version, false, json!({"op": "get", "task": gateway_task}));
    assert_eq!(got.get("error"), None, "{got}");
    assert_eq!(got["events"][0]["task"]["id"], gateway_task.as_str());
    assert_eq!(last_state(&got), "TASK_STATE_AUTH_REQUIRED");
    // 2. Alice authorizes in her browser (signed in at FinPort, then the bank).
    let hops = w.gateway.open_link_as(&mut baton_harness::RedirectWalk::new(), &link, "alice");
    assert_eq!(hops.last().unwrap().response.status, 200);
    // 3. "continue", nothing else: the agent gets the bank's token.
    let mut go_on =
        json!({"text": "continue", "task": gateway_task, "context": context, "data": {"keepOpen": true}});
    let done = w.send("alice", version, stream, go_on.take());
    assert_eq!(done.get("error"), None, "{done}");
    assert_eq!(last_state(&done), "TASK_STATE_INPUT_REQUIRED", "{done}");
    let (agent_task, _) = task_of(&done);
    assert_ne!(agent_task, gateway_task);
    let calls = w.agent.calls();
    assert_eq!(calls.len(), 1);
    let claims = bearer_claims(&calls[0]);
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("alice"), Some("bank-api")));
    assert_eq!(header(&calls[0], "x-baton-user").as_deref(), Some("alice"));
    assert_eq!(header(&calls[0], "a2a-version").as_deref(), Some(a2a_version));
    let sent = body(&calls[0]);
    assert!(sent["params"]["message"].get("taskId").is_none(), "the agent never heard of the gateway's task");
    assert!(!sent["params"]["message"]["parts"].as_array().unwrap().is_empty());
    // 4. A plain follow-up in the agent's task: still the bank's token
    //    (the task needs it until it ends), and then it completes.
    let again = w.send("alice", version, stream, json!({"text": "and 100 more", "task": agent_task}));
    assert_eq!(last_state(&again), "TASK_STATE_COMPLETED", "{again}");
    let calls = w.agent.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(bearer_claims(&calls[1])["aud"], "bank-api");
    for call in &calls {
        assert!(!call["body"].as_str().unwrap().contains("auth_credentials"));
    }
    assert!(!again.to_string().contains("auth_credentials"), "in the task's history");
    // The task is over: its token went with it.
    assert_eq!(w.gateway.envoy.counter("baton_itac.tasks_ended"), 1);
    assert_eq!(w.gateway.envoy.counter("baton_itac.gated_follow_ups"), 2);
}

#[test]
fn v10_blocking_round_trip() {
    round_trip("1.0", false);
}

#[test]
fn v10_streaming_round_trip() {
    round_trip("1.0", true);
}

#[test]
fn v03_blocking_round_trip() {
    round_trip("0.3", false);
}

#[test]
fn v03_streaming_round_trip() {
    round_trip("0.3", true);
}

#[test]
fn the_agents_own_challenge_gets_a_url_blocking_and_streaming() {
    let w = world();
    for (version, stream) in [("1.0", false), ("0.3", true)] {
        let answer = w.send(
            "alice",
            version,
            stream,
            json!({"text": "pay the bill", "data": {"operation": "needs-bank-auth"}}),
        );
        assert_eq!(answer.get("error"), None, "{answer}");
        assert_eq!(last_state(&answer), "TASK_STATE_AUTH_REQUIRED", "{answer}");
        let url = challenge_of(&answer)["authorizationUrl"].as_str().unwrap().to_string();
        assert!(url.starts_with(&format!("{}/a2a/oauth/start?state=", w.url())), "{url}");
    }
    assert_eq!(w.gateway.envoy.counter("baton_itac.agent_challenges_enriched"), 2);
    // The agent was called as the user, with the user's own token.
    for call in w.agent.calls() {
        assert_eq!(header(&call, "x-baton-user").as_deref(), Some("alice"));
        assert_eq!(bearer_claims(&call)["aud"], "finport-api");
    }
}

#[test]
fn cancel_ends_the_gateways_task_and_its_authorization() {
    let w = world();
    let challenge = w.send("alice", "1.0", false, transfer());
    let (task, _) = task_of(&challenge);
    let link = challenge_of(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
    let canceled = w.call(Some("alice"), "0.3", false, json!({"op": "cancel", "task": task}));
    assert_eq!(canceled.get("error"), None, "{canceled}");
    assert_eq!(last_state(&canceled), "TASK_STATE_CANCELED");
    // Its link no longer completes.
    let hops = w.gateway.open_link_as(&mut baton_harness::RedirectWalk::new(), &link, "alice");
    assert_ne!(hops.last().unwrap().response.status, 200);
    assert!(w.agent.calls().is_empty());
    assert_eq!(w.gateway.envoy.counter("baton_itac.gateway_task_calls"), 1);
}

#[test]
fn two_users_on_one_task_each_need_their_own_authorization() {
    let w = world();
    let challenge = w.send("alice", "1.0", false, transfer());
    let (task, context) = task_of(&challenge);
    // Bob, in alice's task, with a plain message: challenged for himself.
    let bob = w.send("bob", "1.0", false, json!({"text": "continue", "task": task, "context": context}));
    assert_eq!(last_state(&bob), "TASK_STATE_AUTH_REQUIRED", "{bob}");
    assert_ne!(challenge_of(&bob)["state"], challenge_of(&challenge)["state"]);
    assert!(w.agent.calls().is_empty());
    // Alice authorizes and continues; bob, in the agent's task, still gets
    // nothing of hers.
    let link = challenge_of(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
    w.gateway.open_link_as(&mut baton_harness::RedirectWalk::new(), &link, "alice");
    let done = w.send(
        "alice",
        "1.0",
        false,
        json!({"text": "continue", "task": task, "context": context, "data": {"keepOpen": true}}),
    );
    let (agent_task, _) = task_of(&done);
    let bob = w.send("bob", "1.0", false, json!({"text": "me too", "task": agent_task}));
    assert_eq!(last_state(&bob), "TASK_STATE_AUTH_REQUIRED", "{bob}");
    let calls = w.agent.calls();
    assert_eq!(calls.len(), 1, "only alice's message reached the agent");
    assert_eq!(bearer_claims(&calls[0])["sub"], "alice");
}

#[test]
fn a_bank_token_handed_over_in_a_message_is_refused_as_a_typed_error() {
    let w = world();
    let challenge = w.send("alice", "1.0", false, transfer());
    let (task, context) = task_of(&challenge);
    let token = w.gateway.bank.mint(w.gateway.bank.standard_claims("alice", "bank-api", 300));
    let answer = w.send(
        "alice",
        "1.0",
        false,
        json!({"text": "here is my token", "task": task, "context": context,
               "data": {"auth_credentials": {"accessToken": token}}}),
    );
    // Nothing ties a handed-over token to alice (primaryLogin): refused.
    let error = answer["error"].as_str().unwrap_or_else(|| panic!("accepted: {answer}"));
    assert!(!error.contains(&token));
    assert!(w.agent.calls().is_empty());
}

#[test]
fn a_stream_outlives_envoys_default_route_timeout() {
    let w = world();
    let started = std::time::Instant::now();
    let answer = w.send("alice", "1.0", true, json!({"text": "slow report", "data": {"seconds": 17}}));
    assert_eq!(answer.get("error"), None, "{answer}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(17));
    let states: Vec<String> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| {
            event.pointer("/statusUpdate/status/state").and_then(Value::as_str).map(String::from)
        })
        .collect();
    assert_eq!(states, ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"], "{answer}");
}

#[test]
fn a_code_the_client_caught_is_sent_with_its_state_in_the_task() {
    let w = world();
    let challenge = w.send("alice", "0.3", false, transfer());
    let (task, context) = task_of(&challenge);
    let link = challenge_of(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
    // Alice's browser signs in and approves; the bank's redirect back to
    // the gateway is caught (an app holding the redirect would get it) and
    // goes nowhere instead, so the code is still unused.
    let idps = [
        format!("//127.0.0.1:{}/authorize?", w.gateway.idp.port()),
        format!("//127.0.0.1:{}/authorize?", w.gateway.bank.port()),
    ];
    let mut caught = None;
    let mut walk = baton_harness::RedirectWalk::new();
    walk.follow(&link, 10, |url| {
        if idps.iter().any(|idp| url.contains(idp.as_str())) {
            format!("{url}&login_hint=alice")
        } else if url.contains("/a2a/oauth/callback?") {
            caught = Some(url.to_string());
            format!("{}/.well-known/agent-card.json", w.url())
        } else {
            url.to_string()
        }
    })
    .unwrap();
    let redirect = caught.expect("the bank redirected back with a code");
    let query = |name: &str| {
        redirect
            .split(['?', '&'])
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
            .map(|value| value.replace("%2B", "+").replace("%2F", "/").replace("%3D", "="))
            .unwrap()
    };
    let (code, state) = (query("code"), query("state"));
    let answer = w.send(
        "alice",
        "0.3",
        false,
        json!({"text": "here is the code", "task": task, "context": context,
               "data": {"auth_credentials": {"code": code, "state": state}}}),
    );
    assert_eq!(answer.get("error"), None, "{answer}");
    assert_eq!(last_state(&answer), "TASK_STATE_COMPLETED", "{answer}");
    let calls = w.agent.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(bearer_claims(&calls[0])["aud"], "bank-api");
    assert!(!calls[0]["body"].as_str().unwrap().contains("auth_credentials"));
    assert!(calls[0]["body"].as_str().unwrap().contains("here is the code"), "the text part is kept");
    // The sign-in's code (at FinPort) and the bank's, sent in the message.
    assert_eq!(w.gateway.envoy.counter("baton_itac.codes_exchanged"), 2);
}
