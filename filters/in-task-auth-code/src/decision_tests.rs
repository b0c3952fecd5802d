//! Decisions through the in-memory host: challenges in both A2A versions,
//! each way a credential comes back, state misuse, the stored token, and
//! agents' own challenges.

use super::*;
use crate::a2a::{INVALID_PARAMS, SERVER_ERROR};
use crate::config;
use crate::response::{self, AnswerContext, RpcAnswer, Seen};
use baton_filter_kit::runtime::AnswerChange;

/// The agent's JSON answer as the filter passes it on, when it changed.
fn on_answer(engine: &mut Engine, host: &TestHost, answer: &AnswerContext, body: &[u8]) -> Option<Vec<u8>> {
    match response::whole(engine, host, &mut answer.clone(), Some(body)) {
        AnswerChange::Keep => None,
        AnswerChange::Replace(body) => Some(body),
        AnswerChange::Refuse(reply) => panic!("refused: {reply:?}"),
    }
}

/// What a call of `user` leaves for the agent's answer.
fn rpc(user: &str, rebind: Option<Rebind>) -> AnswerContext {
    AnswerContext::Rpc(RpcAnswer { rebind, ..RpcAnswer::of(Some(user.into())) })
}
use baton_filter_kit::test_host::TestHost;
use baton_filter_kit::test_keys::TestKey;
use baton_token::form::decode as parse_query;
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const BANK: &str = "https://bank.example";
const CORP: &str = "https://corp.example";

/// The user's IdP: every test request carries a token it signed.
fn corp_key() -> &'static TestKey {
    static KEY: std::sync::OnceLock<TestKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| TestKey::es256("corp-1"))
}

/// The user's bearer token, as the agent's client sends it.
fn user_token(user: &str) -> String {
    corp_key().token(&json!({"iss": CORP, "sub": user, "aud": "agents", "exp": NOW + 600, "iat": NOW - 1}))
}

struct Setup {
    engine: Engine,
    host: TestHost,
    bank: TestKey,
}

fn setup_with(change: impl FnOnce(&mut Value)) -> Setup {
    let bank = TestKey::es256("bank-1");
    let mut config = crate::config::tests::base();
    config["secondaryIdp"]["providers"][0]["jwks"] =
        json!({"inline": serde_json::from_str::<Value>(&bank.jwks()).unwrap()});
    config["primaryIdentity"]["providers"][0]["jwks"] =
        json!({"inline": serde_json::from_str::<Value>(&corp_key().jwks()).unwrap()});
    config["identityHeader"] = json!("x-baton-user");
    change(&mut config);
    let config = Rc::new(config::parse(config.to_string().as_bytes()).unwrap());
    let (engine, host) = (Engine::new(config), TestHost::new(NOW));
    engine.init_shared_data(&host);
    Setup { engine, host, bank }
}

fn setup() -> Setup {
    setup_with(|_| {})
}

fn v03(user: Option<&str>, task: Option<&str>, parts: Value) -> Request {
    let mut message = json!({"kind": "message", "role": "user", "messageId": "m1", "parts": parts});
    if let Some(task) = task {
        message["taskId"] = json!(task);
        message["contextId"] = json!("ctx-1");
    }
    request(user, "message/send", message)
}

fn v10(user: Option<&str>, method: &str, task: Option<&str>, parts: Value) -> Request {
    let mut message = json!({"role": "ROLE_USER", "messageId": "m1", "parts": parts});
    if let Some(task) = task {
        message["taskId"] = json!(task);
    }
    let mut request = request(user, method, message);
    request.a2a_version = Some("1.0".into());
    request
}

fn request(user: Option<&str>, method: &str, message: Value) -> Request {
    let body = json!({"jsonrpc": "2.0", "id": "req-1", "method": method, "params": {"message": message}});
    Request {
        store_work: Default::default(),
        method: "POST".into(),
        path: "/".into(),
        authority: "transfer-agent".into(),
        method_override: None,
        primary: user.map_or(Credential::Absent, |u| {
            Credential::one(format!("Bearer {}", user_token(u)).into_bytes())
        }),
        verified_upstream: None,
        a2a_version: None,
        accept: None,
        cookie: None,
        body: Some(body.to_string().into_bytes()),
    }
}

fn transfer() -> Value {
    json!([{"kind": "text", "text": "send 100 to bob"}, {"kind": "data", "data": {"operation": "transfer", "amount": 100}}])
}

fn with_credentials(credentials: Value) -> Value {
    json!([{"kind": "text", "text": "send 100 to bob"},
           {"kind": "data", "data": {"operation": "transfer", "auth_credentials": credentials}}])
}

fn bank_claims(sub: &str) -> Value {
    json!({"iss": BANK, "sub": sub, "aud": "bank-api", "exp": NOW + 600, "iat": NOW - 1, "scope": "transfers:write"})
}

impl Setup {
    fn decide(&mut self, request: &Request) -> Verdict {
        self.engine.decide(&self.host, request, Round::FIRST)
    }

    fn bank_token(&self, sub: &str) -> String {
        self.bank.token(&bank_claims(sub))
    }
}

fn reply(verdict: Verdict) -> Reply {
    match verdict {
        Verdict::Reply(reply) => reply,
        other => panic!("expected a local reply, got {other:?}"),
    }
}

/// Forwarded as a message whose answer is read.
fn forward(verdict: Verdict) -> Forward {
    match verdict {
        Verdict::Forward(forward) if forward.answer.is_some() => forward,
        other => panic!("expected forwarding, got {other:?}"),
    }
}

/// Forwarded, whether or not the answer is read.
fn passed(verdict: Verdict) -> Forward {
    match verdict {
        Verdict::Forward(forward) => forward,
        other => panic!("expected forwarding, got {other:?}"),
    }
}

/// What the forward leaves for reading the agent's answer.
fn answer_of(forward: &Forward) -> &RpcAnswer {
    match forward.answer.as_ref().expect("the answer is read") {
        AnswerContext::Rpc(rpc) => rpc,
        other => panic!("expected a JSON-RPC answer, got {other:?}"),
    }
}

fn json_body(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap()
}

fn header<'a>(forward: &'a Forward, name: &str) -> Option<&'a str> {
    forward.set.iter().find(|(n, _)| n == name).map(|(_, v)| v.expose())
}

/// The `authChallenge` of a v0.3 challenge answer.
fn auth_challenge(reply: &Reply) -> Value {
    json_body(reply)["result"]["status"]["message"]["parts"][1]["data"]["authChallenge"].clone()
}

fn query_of(url: &str) -> Vec<(String, String)> {
    parse_query(url.split_once('?').unwrap().1)
}

fn param(url: &str, name: &str) -> String {
    query_of(url).into_iter().find(|(n, _)| n == name).map(|(_, v)| v).unwrap()
}

#[test]
fn agent_cards_and_other_routes_pass() {
    let mut s = setup_with(|c| c["rules"][0]["match"] = json!({"pathPrefix": "/a2a"}));
    let mut card = v03(Some("alice"), None, transfer());
    card.path = "/.well-known/agent-card.json".into();
    card.method = "GET".into();
    // Its answer is read (to name the gateway), so it must come
    // uncompressed; the identity header no client may send goes.
    let strip = vec!["x-baton-user".to_string()];
    assert_eq!(
        s.decide(&card),
        Verdict::Forward(Forward {
            strip: strip.clone(),
            remove: vec!["accept-encoding".to_string()],
            answer: Some(AnswerContext::Card(Default::default())),
            ..Forward::default()
        })
    );
    // A card under a prefix is decided like any request, and its answer
    // is served as a card too.
    let mut prefixed = card.clone();
    prefixed.path = "/agents/transfer/.well-known/agent-card.json".into();
    let Verdict::Forward(passed) = s.decide(&prefixed) else { panic!() };
    assert_eq!(passed.answer, Some(AnswerContext::Card(Default::default())));
    assert_eq!(header(&passed, "x-baton-user"), Some("alice"));
    let mut elsewhere = v03(Some("alice"), None, transfer());
    elsewhere.path = "/health".into();
    let Verdict::Forward(passed) = s.decide(&elsewhere) else { panic!() };
    assert!(passed.answer.is_none() && passed.strip == strip);
    assert_eq!(header(&passed, "x-baton-user"), Some("alice"));
    let mut unread = v03(Some("alice"), None, transfer());
    unread.path = "/a2a".into();
    unread.body = None;
    assert_eq!(s.decide(&unread), Verdict::ReadBody);
}

#[test]
fn a_transfer_without_a_credential_gets_an_auth_required_task() {
    let mut s = setup();
    let reply = reply(s.decide(&v03(Some("alice"), None, transfer())));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers[0], ("content-type", "application/json".to_string()));
    let body = json_body(&reply);
    assert_eq!(body["id"], "req-1");
    assert_eq!(body["result"]["kind"], "task");
    assert_eq!(body["result"]["status"]["state"], "auth-required");
    let challenge = auth_challenge(&reply);
    let url = challenge["authorizationUrl"].as_str().unwrap();
    assert!(
        url.starts_with(
            "https://bank.example/authorize?response_type=code&client_id=transfer-gateway&redirect_uri="
        ),
        "{url}"
    );
    assert_eq!(param(url, "redirect_uri"), "https://gw.example/a2a/oauth/callback");
    assert_eq!(param(url, "scope"), "transfers:write");
    assert_eq!(param(url, "code_challenge_method"), "S256");
    assert_eq!(param(url, "code_challenge").len(), 43);
    let state = param(url, "state");
    assert_eq!(challenge["state"], state.as_str());
    assert_eq!(challenge["authorizationEndpoint"], "https://bank.example/authorize");
    assert_eq!(challenge["tokenEndpoint"], "https://bank.example/token");
    assert_eq!(challenge["scopes"], json!(["transfers:write"]));
    assert_eq!(challenge["audience"], "bank-api");
    assert_eq!(challenge["secondaryAuthProvider"], "bank");
    assert_eq!(challenge["expiresAt"], baton_token::clock::rfc3339(NOW + 300));
    // The gateway named the new task; it remembers the challenge for alice.
    let task = body["result"]["id"].as_str().unwrap();
    let pending = s.engine.store.peek_state(&s.host, &state).unwrap();
    assert_eq!((pending.user.as_str(), pending.task_id.as_str()), ("alice", task));
    assert_eq!(baton_token::pkce::s256_challenge(pending.verifier.expose()), param(url, "code_challenge"));
    assert!(s.engine.store.task(&s.host, "alice", task).unwrap().gateway_task);
    assert_eq!(s.host.counter(metrics::CHALLENGES), 1);
}

#[test]
fn challenges_in_v10_and_as_a_stream() {
    let mut s = setup();
    let send = reply(s.decide(&v10(
        Some("alice"),
        "SendMessage",
        Some("t-1"),
        json!([{"text": "x"}, {"data": {"operation": "transfer"}}]),
    )));
    let body = json_body(&send);
    assert_eq!(body["result"]["task"]["status"]["state"], "TASK_STATE_AUTH_REQUIRED");
    assert_eq!(body["result"]["task"]["id"], "t-1", "the message's task id is kept");
    let stream = reply(s.decide(&v10(
        Some("alice"),
        "SendStreamingMessage",
        Some("t-1"),
        json!([{"data": {"operation": "transfer"}}]),
    )));
    assert_eq!(stream.headers[0], ("content-type", "text/event-stream".to_string()));
    let event: Value = serde_json::from_str(stream.body.strip_prefix("data: ").unwrap().trim_end()).unwrap();
    assert_eq!(event["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_AUTH_REQUIRED");
    let mut custom = setup_with(|c| c["challengeStatus"] = json!(401));
    assert_eq!(reply(custom.decide(&v03(Some("alice"), None, transfer()))).status, 401);
}

#[test]
fn a_token_in_the_message_is_validated_stripped_and_injected() {
    let mut s = setup();
    let token = s.bank_token("alice");
    let forwarded =
        forward(s.decide(&v03(Some("alice"), Some("t-9"), with_credentials(json!({"accessToken": token})))));
    assert_eq!(header(&forwarded, "authorization"), Some(format!("Bearer {token}").as_str()));
    assert_eq!(header(&forwarded, "x-baton-user"), Some("alice"));
    let body = String::from_utf8(forwarded.body.clone().unwrap()).unwrap();
    assert!(!body.contains(&token) && !body.contains("auth_credentials"), "{body}");
    assert!(body.contains("\"operation\":\"transfer\""));
    assert!(answer_of(&forwarded).rebind.is_none(), "t-9 is the agent's own task");
    // The token is kept for alice's task: the next message needs nothing.
    let next = forward(s.decide(&v03(Some("alice"), Some("t-9"), transfer())));
    assert_eq!(header(&next, "authorization"), Some(format!("Bearer {token}").as_str()));
    assert_eq!(next.body, None, "nothing to rewrite");
    // Bob's message for the same task id gets no token of alice's.
    let bob = reply(s.decide(&v03(Some("bob"), Some("t-9"), transfer())));
    assert_eq!(json_body(&bob)["result"]["status"]["state"], "auth-required");
    assert_eq!(s.host.counter(metrics::TOKENS_INJECTED), 2);
}

/// Alice is challenged in a new task (the gateway names it), then sends her
/// bank token in it: the task id, the token, and the message as forwarded.
fn token_for_a_gateway_task(s: &mut Setup) -> (String, String, Forward) {
    let challenge = reply(s.decide(&v03(Some("alice"), None, transfer())));
    let gateway_task = json_body(&challenge)["result"]["id"].as_str().unwrap().to_string();
    let token = s.bank_token("alice");
    let forwarded = forward(s.decide(&v03(
        Some("alice"),
        Some(&gateway_task),
        with_credentials(json!({"accessToken": token})),
    )));
    (gateway_task, token, forwarded)
}

#[test]
fn a_gateway_named_task_is_not_forwarded_and_the_agents_task_gets_the_token() {
    let mut s = setup();
    let (gateway_task, token, forwarded) = token_for_a_gateway_task(&mut s);
    let body: Value = serde_json::from_slice(forwarded.body.as_ref().unwrap()).unwrap();
    assert_eq!(body["params"]["message"].get("taskId"), None, "the agent never heard of {gateway_task}");
    let rebind = answer_of(&forwarded).rebind.clone().unwrap();
    // The agent's task goes on (a completed task takes no more messages).
    let answer = json!({"jsonrpc": "2.0", "id": "req-1", "result": {"kind": "task", "id": "agent-task-7", "contextId": "ctx-1",
                        "status": {"state": "input-required"}}});
    let context = rpc("alice", Some(rebind));
    assert_eq!(on_answer(&mut s.engine, &s.host, &context, answer.to_string().as_bytes()), None);
    let next = forward(s.decide(&v03(Some("alice"), Some("agent-task-7"), transfer())));
    assert_eq!(
        header(&next, "authorization"),
        Some(format!("Bearer {token}").as_str()),
        "second transfer, no new challenge"
    );
}

#[test]
fn an_invalid_token_gets_a_new_challenge_or_a_401() {
    let mut s = setup();
    let forged = TestKey::es256("bank-1").token(&bank_claims("alice"));
    let challenge =
        reply(s.decide(&v03(Some("alice"), Some("t-1"), with_credentials(json!({"accessToken": forged})))));
    let object = auth_challenge(&challenge);
    assert_eq!(object["error"], "invalid_token");
    assert_eq!(object["errorDescription"], "token signature is invalid");
    let mut claims = bank_claims("alice");
    claims["scope"] = json!("accounts:read");
    let mut s = setup_with(|c| {
        c["require"] = json!({"scopes": {"allOf": ["transfers:write"]}});
        c["onInvalidCredential"] = json!("reject");
    });
    let weak = s.bank.token(&claims);
    let refused =
        reply(s.decide(&v03(Some("alice"), Some("t-1"), with_credentials(json!({"accessToken": weak})))));
    assert_eq!(refused.status, 401);
    assert_eq!(json_body(&refused)["error"]["code"], SERVER_ERROR);
    assert!(refused.headers.iter().any(|(n, v)| *n == "www-authenticate" && v.contains("invalid_token")));
    assert_eq!(s.host.counter(metrics::VALIDATION_FAILURES), 1);
}

#[test]
fn a_code_in_the_message_is_exchanged_once() {
    let mut s = setup();
    let challenge = reply(s.decide(&v03(Some("alice"), Some("t-1"), transfer())));
    let state = auth_challenge(&challenge)["state"].as_str().unwrap().to_string();
    let message = v03(Some("alice"), Some("t-1"), with_credentials(json!({"code": "c0de", "state": state})));
    let Verdict::AwaitCall(call) = s.decide(&message) else { panic!("expected a code exchange") };
    let form = call.request.body.expose();
    assert!(form.starts_with("grant_type=authorization_code&code=c0de&redirect_uri="), "{form}");
    assert!(form.contains("code_verifier="));
    assert_eq!(
        call.request.authorization.as_ref().unwrap().expose(),
        "Basic dHJhbnNmZXItZ2F0ZXdheTpzM2NyM3Q="
    );
    assert_eq!(call.key, TokenHash::of(state.as_bytes()));

    let token = Secret::new(s.bank_token("alice"));
    let outcome = ExchangeOutcome::Token { access: token.clone(), id_token: None };
    let continued = Round { number: 1, keys: KeyWait::Allowed, exchange: Some((&call.key, &outcome)) };
    let forwarded = forward(s.engine.decide(&s.host, &message, continued));
    assert_eq!(header(&forwarded, "authorization"), Some(format!("Bearer {}", token.expose()).as_str()));
    assert!(!String::from_utf8(forwarded.body.unwrap()).unwrap().contains("c0de"));

    let reused = reply(s.decide(&message));
    assert_eq!((reused.status, json_body(&reused)["error"]["code"].as_i64()), (400, Some(INVALID_PARAMS)));
    assert_eq!(s.host.counter(metrics::STATE_MISUSE), 1);
}

#[test]
fn a_state_is_bound_to_its_user_task_and_lifetime() {
    let mut s = setup();
    let state = |s: &mut Setup, task: &str| {
        let challenge = reply(s.decide(&v03(Some("alice"), Some(task), transfer())));
        auth_challenge(&challenge)["state"].as_str().unwrap().to_string()
    };
    let for_alice = state(&mut s, "t-1");
    let stolen = reply(s.decide(&v03(
        Some("mallory"),
        Some("t-1"),
        with_credentials(json!({"code": "c", "state": for_alice})),
    )));
    assert_eq!(stolen.status, 403);
    let other = state(&mut s, "t-2");
    let wrong_task = reply(s.decide(&v03(
        Some("alice"),
        Some("t-1"),
        with_credentials(json!({"code": "c", "state": other})),
    )));
    assert_eq!(wrong_task.status, 403);
    // The right task in another context.
    let for_context = state(&mut s, "t-4");
    let mut other_context =
        v03(Some("alice"), Some("t-4"), with_credentials(json!({"code": "c", "state": for_context})));
    let mut body: Value = serde_json::from_slice(other_context.body.as_deref().unwrap()).unwrap();
    body["params"]["message"]["contextId"] = json!("ctx-2");
    other_context.body = Some(body.to_string().into_bytes());
    let wrong_context = reply(s.decide(&other_context));
    assert_eq!(
        (wrong_context.status, json_body(&wrong_context)["error"]["code"].as_i64()),
        (403, Some(INVALID_PARAMS))
    );
    // A misuse ends the authorization: each state is used up by it, and
    // alice's own message with it is then refused as reused.
    for (task, state) in [("t-1", &for_alice), ("t-2", &other), ("t-4", &for_context)] {
        assert!(s.engine.store.peek_state(&s.host, state).unwrap().used, "{task}");
        let message = v03(Some("alice"), Some(task), with_credentials(json!({"code": "c", "state": state})));
        let reused = reply(s.decide(&message));
        assert_eq!(
            (reused.status, json_body(&reused)["error"]["code"].as_i64()),
            (400, Some(INVALID_PARAMS)),
            "{task}"
        );
    }
    let late = state(&mut s, "t-3");
    s.host.set_now(NOW + 301);
    let expired = reply(s.decide(&v03(
        Some("alice"),
        Some("t-3"),
        with_credentials(json!({"code": "c", "state": late})),
    )));
    assert_eq!(auth_challenge(&expired)["error"], "state_expired", "a fresh challenge");
    // Three misuses, three reuses, one expired.
    assert_eq!(s.host.counter(metrics::STATE_MISUSE), 7);
}

#[test]
fn the_redirect_is_served_and_the_task_continues_with_nothing_in_the_body() {
    let mut s = setup();
    let challenge = reply(s.decide(&v03(Some("alice"), Some("t-5"), transfer())));
    let state = auth_challenge(&challenge)["state"].as_str().unwrap().to_string();
    let callback = Request {
        store_work: Default::default(),
        method: "GET".into(),
        path: format!("/a2a/oauth/callback?code=c0de&state={state}"),
        authority: "gw".into(),
        method_override: None,
        primary: Credential::Absent,
        verified_upstream: None,
        a2a_version: None,
        accept: Some("text/html".into()),
        cookie: None,
        body: None,
    };
    let Verdict::AwaitCall(call) = s.decide(&callback) else { panic!("expected a code exchange") };
    let token = Secret::new(s.bank_token("alice"));
    let outcome = ExchangeOutcome::Token { access: token.clone(), id_token: None };
    let continued = Round { number: 1, keys: KeyWait::Allowed, exchange: Some((&call.key, &outcome)) };
    let page = reply(s.engine.decide(&s.host, &callback, continued));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Authorization complete") && !page.body.contains(token.expose()));
    let next = forward(s.decide(&v03(Some("alice"), Some("t-5"), transfer())));
    assert_eq!(header(&next, "authorization"), Some(format!("Bearer {}", token.expose()).as_str()));
    // The state was used by the redirect.
    assert_eq!(reply(s.decide(&callback)).status, 400);
}

#[test]
fn bad_redirects_are_refused() {
    let mut s = setup();
    let challenge = reply(s.decide(&v03(Some("alice"), Some("t-5"), transfer())));
    let state = auth_challenge(&challenge)["state"].as_str().unwrap().to_string();
    let get = |path: String| Request {
        store_work: Default::default(),
        method: "GET".into(),
        path,
        authority: "gw".into(),
        method_override: None,
        primary: Credential::Absent,
        verified_upstream: None,
        a2a_version: None,
        accept: Some("application/json".into()),
        cookie: None,
        body: None,
    };
    // Refused with no pending state named first: nothing is used.
    for path in [
        "/a2a/oauth/callback?code=x".to_string(),
        "/a2a/oauth/callback?code=x&state=unknown".to_string(),
        format!("/a2a/oauth/callback?code=x&state=unknown&state={state}"),
        format!("/a2a/oauth/callback?state={}", "s".repeat(300)),
    ] {
        let refused = reply(s.decide(&get(path.clone())));
        assert_eq!(refused.status, 400, "{path}");
        assert!(json_body(&refused)["error"].is_string());
    }
    assert!(!s.engine.store.peek_state(&s.host, &state).unwrap().used);
    // Refused with a pending state: a misuse ends the authorization. The
    // state is used up, and the true redirect after it is refused as
    // reused, with no code exchanged.
    let cases = [
        ("code=x&state={state}&state=other", "duplicate_parameters"),
        ("code=x&code=y&state={state}", "duplicate_parameters"),
        ("error=access_denied&state={state}", "authorization_denied"),
        ("state={state}", "code_missing"),
    ];
    for (task, (query, reason)) in (10..).zip(cases) {
        let challenge = reply(s.decide(&v03(Some("alice"), Some(&format!("t-{task}")), transfer())));
        let state = auth_challenge(&challenge)["state"].as_str().unwrap().to_string();
        let query = query.replace("{state}", &state);
        let refused = reply(s.decide(&get(format!("/a2a/oauth/callback?{query}"))));
        assert_eq!((refused.status, json_body(&refused)["error"].as_str()), (400, Some(reason)), "{query}");
        assert!(s.engine.store.peek_state(&s.host, &state).unwrap().used, "{reason}");
        let after = reply(s.decide(&get(format!("/a2a/oauth/callback?code=x&state={state}"))));
        assert_eq!(
            (after.status, json_body(&after)["error"].as_str()),
            (400, Some("state_reused")),
            "{reason}"
        );
    }
    // The first state untouched by the refusals above still goes on, once.
    let Verdict::AwaitCall(_) = s.decide(&get(format!("/a2a/oauth/callback?code=x&state={state}"))) else {
        panic!("the state was still usable")
    };
    let after = reply(s.decide(&get(format!("/a2a/oauth/callback?code=x&state={state}"))));
    assert_eq!(after.status, 400, "used once");
}

#[test]
fn messages_that_are_not_transfers_pass_without_credentials() {
    let mut s = setup();
    let untouched =
        forward(s.decide(&v03(Some("alice"), Some("t-1"), json!([{"kind": "text", "text": "hello"}]))));
    assert_eq!(untouched.body, None);
    assert_eq!(header(&untouched, "authorization"), None);
    assert_eq!(header(&untouched, "x-baton-user"), Some("alice"));
    // A credential in any message is checked, never dropped unread nor
    // passed on: this one is no token, so the step is challenged.
    let balance = json!([{"kind": "data", "data": {"operation": "balance", "auth_credentials": {"accessToken": "leak"}}}]);
    let refused = reply(s.decide(&v03(Some("alice"), Some("t-2"), balance)));
    assert!(!refused.body.contains("leak"));
    let challenge = &json_body(&refused)["result"]["status"]["message"]["parts"][1]["data"]["authChallenge"];
    assert_eq!(challenge["error"], "invalid_token");
    assert_eq!(s.host.counter(metrics::VALIDATION_FAILURES), 1);
}

#[test]
fn a_valid_token_in_a_message_the_rule_does_not_name_is_checked_and_used() {
    let mut s = setup_with(|c| c["userBinding"]["secondaryClaim"] = json!("sub"));
    let token = s.bank_token("alice");
    let parts = json!([{"kind": "text", "text": "continue"}, {"kind": "data", "data": {"auth_credentials": {"accessToken": token}}}]);
    let forwarded = forward(s.decide(&v03(Some("alice"), Some("t-3"), parts)));
    assert_eq!(header(&forwarded, "authorization"), Some(format!("Bearer {token}").as_str()));
    let body = String::from_utf8(forwarded.body.clone().unwrap()).unwrap();
    assert!(!body.contains("auth_credentials") && body.contains("continue"), "{body}");
    // Kept for the task, which needs it from now on.
    let next =
        forward(s.decide(&v03(Some("alice"), Some("t-3"), json!([{"kind": "text", "text": "go on"}]))));
    assert_eq!(header(&next, "authorization"), Some(format!("Bearer {token}").as_str()));
    assert_eq!(s.host.counter(metrics::GATED_FOLLOW_UPS), 1);
}

#[test]
fn every_later_message_of_a_challenged_task_needs_the_credential_until_it_ends() {
    let mut s = setup();
    let challenge = reply(s.decide(&v03(Some("alice"), Some("t-4"), transfer())));
    assert_eq!(json_body(&challenge)["result"]["status"]["state"], "auth-required");
    // "continue" says nothing of a transfer: the task still needs it.
    let plain = json!([{"kind": "text", "text": "continue"}]);
    let again = reply(s.decide(&v03(Some("alice"), Some("t-4"), plain.clone())));
    assert_eq!(json_body(&again)["result"]["status"]["state"], "auth-required");
    // So does bob's message in it: challenged for himself, never given
    // anything of alice's.
    let bob = reply(s.decide(&v03(Some("bob"), Some("t-4"), plain.clone())));
    assert_eq!(json_body(&bob)["result"]["status"]["state"], "auth-required");
    assert_eq!(s.host.counter(metrics::GATED_FOLLOW_UPS), 2);
    // The agent ends the task: its messages need nothing any more.
    let done = json!({"jsonrpc": "2.0", "id": 1, "result": {"kind": "task", "id": "t-4", "status": {"state": "canceled"}}});
    assert_eq!(on_answer(&mut s.engine, &s.host, &rpc("alice", None), done.to_string().as_bytes()), None);
    assert_eq!(s.host.counter(metrics::TASKS_ENDED), 1);
    let after = forward(s.decide(&v03(Some("alice"), Some("t-4"), plain)));
    assert_eq!(header(&after, "authorization"), None);
}

#[test]
fn malformed_and_ambiguous_bodies_are_json_rpc_errors() {
    let mut s = setup();
    let mut broken = v03(Some("alice"), None, transfer());
    broken.body = Some(b"{\"jsonrpc\":".to_vec());
    assert_eq!(json_body(&reply(s.decide(&broken)))["error"]["code"], a2a::PARSE_ERROR);
    broken.body = Some(br#"{"hello":"world"}"#.to_vec());
    assert_eq!(json_body(&reply(s.decide(&broken)))["error"]["code"], a2a::INVALID_REQUEST);
    let two = json!([{"kind": "data", "data": {"operation": "transfer", "auth_credentials": {"accessToken": "a"}}},
                     {"kind": "data", "data": {"auth_credentials": {"accessToken": "b"}}}]);
    assert_eq!(json_body(&reply(s.decide(&v03(Some("alice"), None, two))))["error"]["code"], INVALID_PARAMS);
    let odd = with_credentials(json!({"accessToken": 42}));
    assert_eq!(json_body(&reply(s.decide(&v03(Some("alice"), None, odd))))["error"]["code"], INVALID_PARAMS);
    let nobody = reply(s.decide(&v03(None, None, transfer())));
    assert_eq!(nobody.status, 401);
    assert_eq!(s.host.counter(metrics::JSON_RPC_ERRORS), 4);
}

#[test]
fn agents_own_challenges_get_a_ready_to_open_url() {
    let mut s = setup();
    let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"kind": "task", "id": "agent-task", "contextId": "c",
        "status": {"state": "auth-required", "message": {"kind": "message", "role": "agent", "messageId": "a",
            "parts": [{"kind": "text", "text": "I need the bank"}]}}}});
    let context = rpc("alice", None);
    let rewritten = on_answer(&mut s.engine, &s.host, &context, answer.to_string().as_bytes()).unwrap();
    let rewritten: Value = serde_json::from_slice(&rewritten).unwrap();
    let challenge = &rewritten["result"]["status"]["message"]["parts"][1]["data"]["authChallenge"];
    let state = param(challenge["authorizationUrl"].as_str().unwrap(), "state");
    let pending = s.engine.store.peek_state(&s.host, &state).unwrap();
    assert_eq!((pending.user.as_str(), pending.task_id.as_str()), ("alice", "agent-task"));
    assert_eq!(s.host.counter(metrics::AGENT_CHALLENGES_ENRICHED), 1);
    let complete = json!({"jsonrpc": "2.0", "id": 1, "result": {"kind": "task", "id": "t", "status": {"state": "completed"}}});
    assert_eq!(on_answer(&mut s.engine, &s.host, &context, complete.to_string().as_bytes()), None);
}

#[test]
fn code_exchange_answers_are_interpreted() {
    let s = setup();
    let call =
        code_exchange(&s.engine.config().idp, 0, "state", &Secret::new("code"), &Secret::new("v".repeat(43)));
    let outcome =
        |status, body: &str| s.engine.exchange_outcome(&s.host, &call, Some(status), body.as_bytes());
    assert!(matches!(
        outcome(200, r#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#),
        ExchangeOutcome::Token { .. }
    ));
    assert!(matches!(outcome(400, r#"{"error":"invalid_grant"}"#), ExchangeOutcome::Refused(_)));
    // The IdP refusing the gateway's own client or request: the gateway's
    // fault, logged as an error naming the bank.
    for body in [
        r#"{"error":"invalid_request","error_description":"redirect_uri is not registered"}"#,
        r#"{"error":"unauthorized_client"}"#,
        r#"{"error":"invalid_client"}"#,
    ] {
        assert!(matches!(outcome(400, body), ExchangeOutcome::GatewayRefused(_)), "{body}");
    }
    assert_eq!(s.host.counter(metrics::GATEWAY_REFUSED), 3);
    assert!(s.host.logs().iter().any(|(level, line)| *level == LogLevel::Error
        && line.contains("idp=bank")
        && line.contains("redirect_uri is not registered")));
    assert!(matches!(outcome(503, "busy"), ExchangeOutcome::Unavailable(_)));
    assert!(matches!(outcome(200, "<html>"), ExchangeOutcome::Unavailable(_)));
    assert!(matches!(s.engine.exchange_outcome(&s.host, &call, None, b""), ExchangeOutcome::Unavailable(_)));
}

#[test]
fn audit_lines_never_hold_credentials() {
    let mut s = setup();
    let token = s.bank_token("alice");
    forward(s.decide(&v03(Some("alice"), Some("t-9"), with_credentials(json!({"accessToken": token})))));
    let challenge = reply(s.decide(&v03(Some("alice"), Some("t-10"), transfer())));
    let state = auth_challenge(&challenge)["state"].as_str().unwrap().to_string();
    for (_, line) in s.host.logs() {
        assert!(!line.contains(&token) && !line.contains(&state), "{line}");
    }
    let logs: Vec<String> = s.host.logs().into_iter().map(|(_, l)| l).collect();
    assert!(
        logs[0].contains("user=alice task=t-9") && logs[0].contains("decision=allow reason=injected"),
        "{}",
        logs[0]
    );
}

/// `tasks/get` (not a message: never needs the secondary credential).
fn get_task() -> Request {
    let mut request = v03(None, None, json!([]));
    request.body = Some(
        json!({"jsonrpc": "2.0", "id": 7, "method": "tasks/get", "params": {"id": "t-1"}})
            .to_string()
            .into_bytes(),
    );
    request
}

/// A request as `v03` makes it for alice, with this bearer credential instead.
fn with_bearer(mut request: Request, credential: &str) -> Request {
    request.primary = Credential::one(credential.as_bytes().to_vec());
    request
}

#[test]
fn only_a_verified_token_names_the_user() {
    let mut s = setup();
    // alice's task holds her bank token.
    let bank = s.bank_token("alice");
    forward(s.decide(&v03(Some("alice"), Some("t-1"), with_credentials(json!({"accessToken": bank})))));
    let alice = user_token("alice");
    let (jose, payload) = {
        let parts: Vec<&str> = alice.split('.').collect();
        (parts[0].to_string(), parts[1].to_string())
    };
    let stranger = TestKey::es256("corp-1");
    let expired = corp_key().token(&json!({"iss": CORP, "sub": "alice", "aud": "agents", "exp": NOW - 120}));
    let other_audience =
        corp_key().token(&json!({"iss": CORP, "sub": "alice", "aud": "elsewhere", "exp": NOW + 60}));
    let unsigned = format!("{}.{payload}.", baton_token::base64url::encode(br#"{"alg":"none"}"#));
    for (name, credential) in [
        ("garbage signature", format!("Bearer {jose}.{payload}.c2lnbmF0dXJl")),
        ("alg none", format!("Bearer {unsigned}")),
        (
            "signed by another key with the same kid",
            format!(
                "Bearer {}",
                stranger.token(&json!({"iss": CORP, "sub": "alice", "aud": "agents", "exp": NOW + 60}))
            ),
        ),
        ("expired", format!("Bearer {expired}")),
        ("another audience", format!("Bearer {other_audience}")),
        ("the bank's token as the user's", format!("Bearer {bank}")),
    ] {
        for request in [
            v03(Some("alice"), Some("t-1"), transfer()),
            v03(Some("alice"), Some("t-1"), json!([{"kind": "text", "text": "balance?"}])),
        ] {
            let refused = reply(s.decide(&with_bearer(request, &credential)));
            assert_eq!(refused.status, 401, "{name}: {}", refused.body);
            let challenge = refused.headers.iter().find(|(n, _)| *n == "www-authenticate").unwrap();
            assert!(challenge.1.contains("invalid_token"), "{name}: {challenge:?}");
            assert!(!refused.body.contains(&bank), "{name}");
        }
    }
    assert_eq!(s.host.counter(metrics::PRIMARY_REFUSED), 12);
    // Two credential headers, or one that breaks the syntax: 400.
    let mut twice = v03(Some("alice"), Some("t-1"), transfer());
    twice.primary = Credential::Several;
    assert_eq!(reply(s.decide(&twice)).status, 400);
    // No token at all: nobody; a protected message gets 401, another passes
    // without an identity.
    assert_eq!(reply(s.decide(&v03(None, Some("t-1"), transfer()))).status, 401);
    let anonymous = passed(s.decide(&with_bearer(get_task(), "Basic YWxpY2U6cHc=")));
    assert_eq!(header(&anonymous, "x-baton-user"), None);
}

#[test]
fn claim_enforcements_record_must_name_this_very_token() {
    let mut s = setup_with(|c| {
        c["primaryIdentity"] = json!({"verifiedBy": "claimEnforcement"});
    });
    let alice = user_token("alice");
    let record = baton_filter_kit::handoff::verified_value(&TokenHash::of(alice.as_bytes()));
    let mut verified = get_task();
    verified.primary = Credential::one(format!("Bearer {alice}").into_bytes());
    verified.verified_upstream = Some(record.clone().into_bytes());
    assert_eq!(header(&passed(s.decide(&verified)), "x-baton-user"), Some("alice"));

    // The record of another token, or none: the token names nobody, even
    // with a valid signature; a protected message is refused.
    let mut forged_claims = v03(Some("bob"), None, transfer());
    forged_claims.verified_upstream = Some(record.into_bytes());
    let refused = reply(s.decide(&forged_claims));
    assert_eq!(
        (refused.status, json_body(&refused)["error"]["message"].as_str()),
        (401, Some("the caller's user is not identified"))
    );
    let mut unrecorded = get_task();
    unrecorded.primary = Credential::one(format!("Bearer {alice}").into_bytes());
    assert_eq!(header(&passed(s.decide(&unrecorded)), "x-baton-user"), None);
}

#[test]
fn a_path_another_hop_could_read_differently_is_refused_before_any_rule() {
    let mut s = setup();
    for path in ["/a2a/..;/x", "/.well-known/agent-card.json/..;/a2a", "/a2a/oauth/%63allback", "/a2a//x"] {
        let mut message = v03(Some("alice"), None, transfer());
        message.path = path.into();
        let refused = reply(s.decide(&message));
        assert_eq!(refused.status, 400, "{path}");
        assert_eq!(json_body(&refused)["error"], "invalid_request", "{path}");
    }
    assert_eq!(s.host.counter(metrics::AMBIGUOUS_PATH), 4);
}

#[test]
fn a_rule_matches_any_part_an_agent_could_act_on() {
    let mut s = setup();
    // A new task each time: a task once challenged needs the credential in
    // every later message, whatever it says.
    let challenged = |s: &mut Setup, parts: Value| {
        let verdict = s.decide(&v03(Some("alice"), None, parts));
        matches!(&verdict, Verdict::Reply(reply) if reply.body.contains("auth-required"))
    };
    for (name, parts) in [
        (
            "second data part",
            json!([{"kind": "data", "data": {"operation": "balance"}}, {"kind": "data", "data": {"operation": "transfer"}}]),
        ),
        (
            "a data part without kind",
            json!([{"kind": "data", "data": {"operation": "balance"}}, {"data": {"operation": "transfer"}}]),
        ),
        ("capitalised", json!([{"kind": "data", "data": {"operation": "Transfer"}}])),
        ("upper case with spaces", json!([{"kind": "data", "data": {"operation": "  TRANSFER\n"}}])),
        ("a one-element list", json!([{"kind": "data", "data": {"operation": ["transfer"]}}])),
        ("a list holding it", json!([{"kind": "data", "data": {"operation": ["balance", "transfer"]}}])),
        (
            "zero-width characters",
            json!([{"kind": "data", "data": {"operation": "trans\u{200b}fer\u{feff}"}}]),
        ),
        ("full-width letters", json!([{"kind": "data", "data": {"operation": "ｔｒａｎｓｆｅｒ"}}])),
    ] {
        assert!(challenged(&mut s, parts), "{name}: not treated as a transfer");
    }
    for (name, parts) in [
        ("balance only", json!([{"kind": "data", "data": {"operation": "balance"}}])),
        ("a word containing it", json!([{"kind": "data", "data": {"operation": "transfers-history"}}])),
        ("another member", json!([{"kind": "data", "data": {"note": "transfer"}}])),
    ] {
        assert!(!challenged(&mut s, parts), "{name}: challenged");
    }
    // Numbers and booleans written as text count as the value they show.
    let mut amounts = setup_with(|c| {
        c["rules"][0]["when"] = json!({"source": "data", "pointer": "/amount", "oneOf": [1000, true]})
    });
    assert!(challenged(&mut amounts, json!([{"kind": "data", "data": {"amount": "1000"}}])));
    assert!(challenged(&mut amounts, json!([{"kind": "data", "data": {"amount": " TRUE "}}])));
    assert!(!challenged(&mut amounts, json!([{"kind": "data", "data": {"amount": "999"}}])));
    // The request's metadata as well as the message's.
    let mut by_metadata = setup_with(|c| {
        c["rules"][0]["when"] = json!({"source": "metadata", "pointer": "/skill", "equals": "pay"})
    });
    let mut request = v03(Some("alice"), Some("t-m"), json!([{"kind": "text", "text": "hi"}]));
    let mut body: Value = serde_json::from_slice(request.body.as_ref().unwrap()).unwrap();
    body["params"]["metadata"] = json!({"skill": "PAY"});
    request.body = Some(body.to_string().into_bytes());
    assert!(
        matches!(by_metadata.decide(&request), Verdict::Reply(reply) if reply.body.contains("auth-required"))
    );
}

/// A task call (`GetTask`, `tasks/cancel`, ...) of `user` on `task`.
fn task_call(user: &str, method: &str, task: &str) -> Request {
    let mut call = request(Some(user), method, Value::Null);
    call.body = Some(
        json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": {"id": task}}).to_string().into_bytes(),
    );
    call
}

#[test]
fn the_gateway_answers_get_and_cancel_for_the_task_only_it_knows() {
    let mut s = setup();
    let challenge = reply(s.decide(&v03(Some("alice"), None, transfer())));
    let task = json_body(&challenge)["result"]["id"].as_str().unwrap().to_string();
    let url = json_body(&challenge)["result"]["status"]["message"]["parts"][1]["data"]["authChallenge"]["authorizationUrl"]
        .as_str()
        .unwrap()
        .to_string();
    // GetTask: the same challenge, as a task waiting for authorization.
    let got = json_body(&reply(s.decide(&task_call("alice", "tasks/get", &task))));
    assert_eq!(got["id"], 9);
    assert_eq!(got["result"]["id"], task.as_str());
    assert_eq!(got["result"]["kind"], "task");
    assert_eq!(got["result"]["status"]["state"], "auth-required");
    assert_eq!(
        got["result"]["status"]["message"]["parts"][1]["data"]["authChallenge"]["authorizationUrl"],
        url.as_str()
    );
    // Bob does not see alice's task: his call goes to the agent.
    let bob = forward(s.decide(&task_call("bob", "tasks/get", &task)));
    assert!(matches!(bob.answer, Some(AnswerContext::Rpc(_))));
    // CancelTask ends it, and its authorization can no longer complete.
    let canceled = json_body(&reply(s.decide(&task_call("alice", "tasks/cancel", &task))));
    assert_eq!(canceled["result"]["status"]["state"], "canceled");
    let state = param(&url, "state");
    assert!(s.engine.store.peek_state(&s.host, &state).unwrap().used);
    assert!(s.engine.store.task(&s.host, "alice", &task).is_none());
    assert!(!s.engine.store.task_gated(&s.host, &task));
    assert_eq!(s.host.counter(metrics::GATEWAY_TASK_CALLS), 2);
    // Once canceled, the task is the agent's business again.
    assert!(matches!(s.decide(&task_call("alice", "tasks/get", &task)), Verdict::Forward(_)));
}

#[test]
fn a_v10_subscription_to_a_gateway_task_is_one_event() {
    let mut s = setup();
    let mut first = v10(Some("alice"), "SendMessage", None, json!([{"data": {"operation": "transfer"}}]));
    first.a2a_version = Some("1.0".into());
    let challenge = reply(s.decide(&first));
    let task = json_body(&challenge)["result"]["task"]["id"].as_str().unwrap().to_string();
    let mut subscribe = task_call("alice", "SubscribeToTask", &task);
    subscribe.a2a_version = Some("1.0".into());
    let answer = reply(s.decide(&subscribe));
    assert!(answer.headers.contains(&("content-type", "text/event-stream".to_string())));
    let event: Value = serde_json::from_str(answer.body.strip_prefix("data: ").unwrap().trim_end()).unwrap();
    assert_eq!(event["result"]["task"]["status"]["state"], "TASK_STATE_AUTH_REQUIRED");
    let mut get = task_call("alice", "GetTask", &task);
    get.a2a_version = Some("1.0".into());
    let got = json_body(&reply(s.decide(&get)));
    assert_eq!(got["result"]["id"], task.as_str(), "a v1.0 GetTask result is the task itself");
}

#[test]
fn a_streamed_answer_rebinds_the_token_and_ends_the_task() {
    let mut s = setup();
    let (gateway_task, token, forwarded) = token_for_a_gateway_task(&mut s);
    let mut answer = forwarded.answer.clone().unwrap();
    // The agent's events: its task, working; then (a later stream) done.
    let working = json!({"jsonrpc": "2.0", "id": 1, "result": {"kind": "status-update", "taskId": "agent-9",
        "contextId": "c", "status": {"state": "working"}, "final": false}});
    assert_eq!(response::event(&mut s.engine, &s.host, &mut answer, &working.to_string()), None);
    let next = forward(s.decide(&v03(
        Some("alice"),
        Some("agent-9"),
        json!([{"kind": "text", "text": "and again"}]),
    )));
    assert_eq!(
        header(&next, "authorization"),
        Some(format!("Bearer {token}").as_str()),
        "gated, token rebound"
    );
    assert!(s.engine.store.task(&s.host, "alice", &gateway_task).is_none(), "the gateway's task is done");
    let mut later = next.answer.clone().unwrap();
    let done = json!({"jsonrpc": "2.0", "id": 2, "result": {"kind": "status-update", "taskId": "agent-9",
        "contextId": "c", "status": {"state": "completed"}, "final": true}});
    assert_eq!(response::event(&mut s.engine, &s.host, &mut later, &done.to_string()), None);
    assert!(s.engine.store.task(&s.host, "alice", "agent-9").is_none());
    assert!(!s.engine.store.task_gated(&s.host, "agent-9"));
}

#[test]
fn an_agents_streamed_challenge_gets_a_url() {
    let mut s = setup();
    let mut answer = rpc("alice", None);
    let event = json!({"jsonrpc": "2.0", "id": 1, "result": {"statusUpdate": {"taskId": "agent-5", "contextId": "c",
        "status": {"state": "TASK_STATE_AUTH_REQUIRED"}}}});
    let rewritten = response::event(&mut s.engine, &s.host, &mut answer, &event.to_string()).unwrap();
    let rewritten: Value = serde_json::from_str(&rewritten).unwrap();
    let url = rewritten["result"]["statusUpdate"]["status"]["message"]["parts"][0]["data"]["authChallenge"]
        ["authorizationUrl"]
        .as_str()
        .unwrap();
    let pending = s.engine.store.peek_state(&s.host, &param(url, "state")).unwrap();
    assert_eq!((pending.user.as_str(), pending.task_id.as_str()), ("alice", "agent-5"));
    assert!(s.engine.store.task_gated(&s.host, "agent-5"));
}

#[test]
fn the_agent_card_names_the_gateway_or_is_not_served() {
    let mut s = setup();
    let card =
        json!({"name": "Transfer", "url": "http://10.1.1.1:9011/", "signatures": [{"signature": "x"}]});
    let seen = Seen { status: 200, encoded: false, json: true };
    let served = match response::whole(
        &mut s.engine,
        &s.host,
        &mut AnswerContext::Card(seen),
        Some(card.to_string().as_bytes()),
    ) {
        AnswerChange::Replace(body) => serde_json::from_slice::<Value>(&body).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(served["url"], "https://gw.example/");
    assert!(served.get("signatures").is_none());
    assert_eq!(s.host.counter(metrics::AGENT_CARD_SIGNATURES_DROPPED), 1);
    // Compressed, not JSON, a redirect, or no interface: 502, never the
    // agent's card.
    for (seen, body) in [
        (Seen { encoded: true, ..seen }, card.to_string()),
        (Seen { json: false, ..seen }, card.to_string()),
        (Seen { status: 302, ..seen }, String::new()),
        (seen, "{\"name\": \"no url\"}".to_string()),
        (seen, "not json".to_string()),
    ] {
        match response::whole(&mut s.engine, &s.host, &mut AnswerContext::Card(seen), Some(body.as_bytes())) {
            AnswerChange::Refuse(reply) => assert_eq!(reply.status, 502),
            other => panic!("{seen:?} {body}: {other:?}"),
        }
    }
    // Too large to read: refused as well.
    assert!(matches!(
        response::whole(&mut s.engine, &s.host, &mut AnswerContext::Card(seen), None),
        AnswerChange::Refuse(_)
    ));
    assert_eq!(s.host.counter(metrics::AGENT_CARDS_REFUSED), 6);
    // The extended card, a JSON-RPC result, likewise.
    let extended = json!({"jsonrpc": "2.0", "id": 3, "result": card});
    let mut answer =
        AnswerContext::Rpc(RpcAnswer { card: true, seen, ..RpcAnswer::of(Some("alice".into())) });
    match response::whole(&mut s.engine, &s.host, &mut answer, Some(extended.to_string().as_bytes())) {
        AnswerChange::Replace(body) => {
            assert_eq!(
                serde_json::from_slice::<Value>(&body).unwrap()["result"]["url"],
                "https://gw.example/"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_request_without_a_body_is_decided_at_once_whatever_its_method() {
    use baton_filter_kit::runtime::{Action, Runtime};
    for method in ["GET", "HEAD", "POST", "DELETE"] {
        let s = setup();
        let host = s.host.clone();
        let mut runtime = Runtime::new(crate::filter::InTaskAuthCode { engine: s.engine }, None);
        let bearer = format!("Bearer {}", user_token("alice"));
        host.add_request(
            1,
            &[
                (":method", method),
                (":path", "/"),
                (":authority", "agent.test"),
                ("authorization", bearer.as_str()),
            ],
        );
        // Answered now (an empty body is no JSON-RPC message), not held for
        // a body that never comes.
        assert_eq!(runtime.on_request_headers(&host, 1, true), Action::Pause, "{method}");
        assert_eq!(runtime.held(), 0, "{method}");
        let reply = host.request(1).unwrap().reply.expect("answered");
        assert_eq!(reply.status, 400, "{method}");
    }
}

/// The host calls of a message that gets its task's stored token, through
/// the whole runtime: headers, body, and the agent's answer read.
fn stored_token_message(level: baton_filter_kit::host::LogLevel) -> Vec<&'static str> {
    use baton_filter_kit::runtime::{Action, Runtime};
    let s = setup_with(|c| c["userBinding"]["secondaryClaim"] = json!("sub"));
    let host = s.host.clone();
    host.set_log_level(level);
    let token = s.bank_token("alice");
    let mut runtime = Runtime::new(crate::filter::InTaskAuthCode { engine: s.engine }, None);
    let bearer = format!("Bearer {}", user_token("alice"));
    let headers = [
        (":method", "POST"),
        (":path", "/"),
        (":authority", "agent.test"),
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let send = |runtime: &mut Runtime<crate::filter::InTaskAuthCode>, id: u32, parts: Value| {
        host.add_request(id, &headers);
        assert_eq!(runtime.on_request_headers(&host, id, false), Action::Pause);
        let body = request(
            Some("alice"),
            "message/send",
            json!({"kind": "message", "role": "user", "messageId": "m",
            "taskId": "t-1", "contextId": "c", "parts": parts}),
        )
        .body
        .unwrap();
        let size = body.len();
        host.with_request(id, |r| r.request_body = body);
        assert_eq!(runtime.on_request_body(&host, id, Some(size), true), Action::Continue);
        let answer = json!({"jsonrpc": "2.0", "id": "req-1", "result": {"kind": "task", "id": "t-1",
            "contextId": "c", "status": {"state": "input-required"}}})
        .to_string()
        .into_bytes();
        let size = answer.len();
        host.with_request(id, |r| {
            r.response_headers = vec![
                (":status".into(), b"200".to_vec()),
                ("content-type".into(), b"application/json".to_vec()),
            ];
            r.response_body = answer;
        });
        assert_eq!(runtime.on_response_headers(&host, id, false), Action::Pause);
        assert_eq!(runtime.on_response_body(&host, id, Some(size), true), Action::Continue);
    };
    send(
        &mut runtime,
        1,
        json!([{"kind": "data", "data": {"operation": "transfer", "auth_credentials": {"accessToken": token}}}]),
    );
    host.take_host_calls();
    send(&mut runtime, 2, json!([{"kind": "text", "text": "and again"}]));
    let forwarded = host.request(2).unwrap();
    assert_eq!(forwarded.request_header("authorization"), Some(format!("Bearer {token}")));
    host.take_host_calls()
}

#[test]
fn a_stored_token_costs_ten_host_calls_and_nine_without_the_audit_line() {
    use baton_filter_kit::host::LogLevel;
    // The header map, read once (also every spelling of the identity
    // header); the clock (the double counts it once for the request); the
    // body; the user's record of the task; the audit line; accept-encoding
    // removed, the identity and the token set; the answer's header map and
    // body. The counters add up in memory until the tick.
    let written = [
        "headers",
        "now",
        "body",
        "shared_get",
        "log",
        "remove_header",
        "set_header",
        "set_header",
        "headers",
        "body",
    ];
    assert_eq!(stored_token_message(LogLevel::Info), written);
    let quiet: Vec<&str> = written.into_iter().filter(|call| *call != "log").collect();
    assert_eq!(stored_token_message(LogLevel::Warn), quiet);
}

#[path = "shared_store_tests.rs"]
mod shared_store;
