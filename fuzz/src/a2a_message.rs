//! A2A JSON-RPC messages (v0.3 and v1.0) through in-task-auth-code: parsing
//! and rewriting (`a2a.rs`), the decision on a message, and the agent's
//! answer (`response.rs`).
//!
//! Input: byte 0 holds flags (bit 0: the body is an agent's answer rather
//! than a request; bit 1: `A2A-Version: 1.0`; bit 2: no user identity), the
//! rest is the body.
//!
//! Asserts, for requests: nothing panics; parsing is deterministic and a
//! parsed call survives `to_bytes` and a new parse unchanged (floats aside,
//! see `has_float`); stripping credentials leaves none, is idempotent, keeps
//! id, method, task and parts, and changes nothing when there was none; a
//! challenge answer is a
//! JSON-RPC response with the call's id (one `data:` event when streamed)
//! whose task is complete (has an authorization URL). Through the
//! decision: a message call is never forwarded with a credential in it;
//! an injected token is one the bank's key signed for the bank's audience;
//! local answers are well-formed; a token accepted for one user's task is
//! used again for that task and never for another user.
//! For answers: an auth-required task without an authorization URL is
//! always completed when the filter rewrites it, and nothing else is
//! rewritten.

use crate::fixtures::{BANK, NOW, in_task_config, verifier_set};
use crate::has_float;
use baton_filter_kit::credential::Credential;
use baton_filter_kit::handoff;
use baton_filter_kit::runtime::AnswerChange;
use baton_filter_kit::test_host::TestHost;
use baton_token::jwt::{DEFAULT_MAX_TOKEN_BYTES, UnverifiedJwt};
use baton_token::{TokenHash, base64url};
use in_task_auth_code::a2a::{
    self, Call, TaskIds, agent_challenge, challenge_answer, enrich_agent_challenge, parse_call,
};
use in_task_auth_code::decision::{Engine, Forward, Reply, Request, Round, Verdict};
use in_task_auth_code::response::{self, AnswerContext, RpcAnswer};
use serde_json::{Value, json};

/// The target's one call: checks `data` as the module documentation says.
pub fn check(data: &[u8]) {
    let [flags, body @ ..] = data else {
        return;
    };
    let version = (flags & 2 != 0).then_some("1.0");
    let user = (flags & 4 == 0).then_some("alice");
    if flags & 1 == 0 {
        check_call(body, version);
        check_decision(body, version, user);
    } else {
        check_answer(body, user);
    }
}

fn check_call(body: &[u8], version: Option<&str>) {
    let parsed = parse_call(body, version);
    assert_eq!(parsed, parse_call(body, version), "parsing is deterministic");
    let call = match parsed {
        Ok(call) => call,
        Err(error) => {
            let answer: Value = serde_json::from_str(&a2a::error_body(&error.id, error.code, &error.message))
                .expect("an error answer is JSON");
            assert!(same(&answer["id"], &error.id));
            assert_eq!(answer["error"]["code"], error.code);
            return;
        }
    };
    assert!(matches!(call.id, Value::String(_) | Value::Number(_) | Value::Null));
    if call.kind.sends_message() {
        assert!(call.message().and_then(|m| m.get("parts")).is_some_and(Value::is_array));
    }
    // Floats may come back one ulp off (see has_float): calls holding one
    // are not compared whole.
    let exact = !has_float(&Value::Object(call.body.clone()));
    let reparsed = parse_call(&call.to_bytes(), version).expect("a call's bytes parse");
    if exact {
        assert_eq!(reparsed, call, "to_bytes round trip");
    }

    let mut stripped = call.clone();
    stripped.strip_credentials();
    assert!(!stripped.mentions_credentials() && stripped.credentials().is_empty());
    let reparsed = parse_call(&stripped.to_bytes(), version).expect("a stripped call parses");
    assert!(!reparsed.mentions_credentials());
    if exact {
        assert_eq!(reparsed, stripped);
    }
    assert!(same(&reparsed.id, &call.id));
    assert_eq!((reparsed.kind, reparsed.version), (call.kind, call.version));
    assert_eq!((reparsed.task_id(), reparsed.context_id()), (call.task_id(), call.context_id()));
    if call.message().and_then(|m| m.get("parts")).is_some_and(Value::is_array) {
        let parts = reparsed.message().and_then(|m| m.get("parts")).and_then(Value::as_array);
        assert!(parts.is_some_and(|parts| !parts.is_empty()), "a message keeps at least one part");
    }
    let mut twice = stripped.clone();
    twice.strip_credentials();
    assert_eq!(twice, stripped, "stripping is idempotent");
    if !call.mentions_credentials() {
        assert_eq!(stripped, call, "nothing to strip, nothing changed");
    }

    if !call.kind.sends_message() {
        return;
    }
    let ids = TaskIds {
        task_id: call.task_id().unwrap_or("task-new").to_string(),
        context_id: call.context_id().unwrap_or("ctx-new").to_string(),
    };
    let challenge = json!({"authorizationUrl": format!("{BANK}/authorize?state=s")});
    let answer = challenge_answer(&call, &ids, "msg-1", "authorize", challenge, "2027-01-15T08:00:00Z");
    let text = if answer.stream {
        let event = a2a::event_stream_body(&call.id, &answer.result);
        let data = event.strip_prefix("data: ").and_then(|e| e.strip_suffix("\n\n")).expect("one SSE event");
        assert!(!data.contains(['\n', '\r']), "the event is one line");
        data.to_string()
    } else {
        a2a::response_body(&call.id, &answer.result)
    };
    let response: Value = serde_json::from_str(&text).expect("the answer is JSON");
    assert_eq!(response["jsonrpc"], "2.0");
    assert!(same(&response["id"], &call.id));
    if !answer.stream {
        assert!(agent_challenge(&response).is_none(), "the gateway's own challenge is complete");
    }
}

/// Equal, or a float (which may come back one ulp off, see has_float).
fn same(got: &Value, sent: &Value) -> bool {
    got == sent || has_float(sent)
}

/// A request of `user`, whose token claim-enforcement verified (the fuzz
/// configuration trusts its record).
fn request(body: &[u8], version: Option<&str>, user: Option<&str>) -> Request {
    let token = user.map(|user| {
        let claims = json!({"sub": user, "iss": "https://corp.example", "exp": NOW + 300}).to_string();
        format!("{}.{}.c2ln", base64url::encode(br#"{"alg":"ES256"}"#), base64url::encode(claims.as_bytes()))
    });
    Request {
        store_work: Default::default(),
        method: "POST".into(),
        path: "/".into(),
        authority: "transfer-agent".into(),
        method_override: None,
        primary: token
            .as_ref()
            .map_or(Credential::Absent, |token| Credential::one(format!("Bearer {token}").into_bytes())),
        verified_upstream: token
            .as_ref()
            .map(|token| handoff::verified_value(&TokenHash::of(token.as_bytes())).into_bytes()),
        a2a_version: version.map(String::from),
        accept: None,
        cookie: None,
        body: Some(body.to_vec()),
    }
}

fn check_decision(body: &[u8], version: Option<&str>, user: Option<&str>) {
    let mut engine = Engine::new(in_task_config());
    let host = TestHost::new(NOW);
    engine.init_shared_data(&host);
    let verdict = engine.decide(&host, &request(body, version, user), Round::FIRST);
    let call = parse_call(body, version).ok();
    let injected = check_verdict(&verdict, body, call.as_ref(), version);

    // A second message of the same task, without any credential: alice
    // gets the token she already gave for the task, anyone else does not.
    let Some(call) = call.filter(|call| call.kind.sends_message()) else {
        return;
    };
    let mut bare = call.clone();
    bare.strip_credentials();
    let bare = bare.to_bytes();
    let stored_for_task = injected.is_some() && call.task_id().is_some_and(|task| !task.is_empty());
    let other = engine.decide(&host, &request(&bare, version, Some("mallory")), Round::FIRST);
    assert_eq!(check_verdict(&other, &bare, parse_call(&bare, version).ok().as_ref(), version), None);
    if let (Some(user), true) = (user, stored_for_task) {
        let again = engine.decide(&host, &request(&bare, version, Some(user)), Round::FIRST);
        let reused = check_verdict(&again, &bare, parse_call(&bare, version).ok().as_ref(), version);
        assert_eq!(reused, injected, "the token kept for the task is used again");
    }
}

/// Checks one verdict; returns the token injected, if any.
fn check_verdict(
    verdict: &Verdict,
    body: &[u8],
    call: Option<&Call>,
    version: Option<&str>,
) -> Option<String> {
    match verdict {
        Verdict::Forward(forward) => {
            check_forward(forward, body, call, version);
            let config = in_task_config();
            let token = forward.set.iter().find(|(name, _)| *name == config.inject_header)?;
            let token = token.1.expose().strip_prefix(&config.inject_prefix).expect("configured prefix");
            check_injected(token);
            Some(token.to_string())
        }
        Verdict::Reply(reply) => {
            check_reply(reply, call);
            None
        }
        Verdict::AwaitCall(_) => None,
        Verdict::ReadBody => panic!("the body was given"),
        Verdict::AwaitKeys(_) => panic!("the bank's keys are inline"),
        Verdict::AwaitStore(_) | Verdict::ReplyWhenStored(..) => panic!("no store is configured"),
    }
}

fn check_forward(forward: &Forward, body: &[u8], call: Option<&Call>, version: Option<&str>) {
    for (name, value) in &forward.set {
        assert!(!value.expose().contains(['\r', '\n', '\0']), "header {name} can carry its value");
    }
    let sent = forward.body.as_deref().unwrap_or(body);
    if let Some(call) = call
        && call.kind.sends_message()
    {
        let sent = parse_call(sent, version).expect("a forwarded message is a call");
        assert!(!sent.mentions_credentials(), "a credential reached the agent");
        assert!(same(&sent.id, &call.id));
    }
}

/// An injected token: signed by the bank's key, for the bank's audience,
/// valid now.
fn check_injected(token: &str) {
    let jwt = UnverifiedJwt::parse(token, DEFAULT_MAX_TOKEN_BYTES).expect("an injected token parses");
    let header = jwt.header();
    assert!(
        verifier_set()
            .verify(header.kid.as_deref(), header.alg, jwt.signing_input().as_bytes(), jwt.signature())
            .is_ok(),
        "an injected token's signature does not verify"
    );
    let claims = jwt.claims();
    assert_eq!(claims.iss.as_deref(), Some(BANK));
    assert!(claims.aud.contains("bank-api"));
    assert!(claims.exp.is_some_and(|exp| exp + 60 >= NOW as i64));
}

fn check_reply(reply: &Reply, call: Option<&Call>) {
    assert!((200..=599).contains(&reply.status));
    for (name, value) in &reply.headers {
        assert!(!value.contains(['\r', '\n', '\0']), "header {name} can carry its value");
    }
    let event_stream = reply.headers.iter().any(|(n, v)| *n == "content-type" && v == "text/event-stream");
    let text = if event_stream {
        reply.body.strip_prefix("data: ").and_then(|b| b.strip_suffix("\n\n")).expect("one SSE event")
    } else {
        &reply.body
    };
    let answer: Value = serde_json::from_str(text).expect("a local answer is JSON");
    assert_eq!(answer["jsonrpc"], "2.0");
    if let Some(call) = call {
        assert!(same(&answer["id"], &call.id));
    }
}

fn check_answer(body: &[u8], user: Option<&str>) {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let found = agent_challenge(&answer);
    assert_eq!(found, agent_challenge(&answer));
    if let Some(found) = &found {
        let mut enriched = answer.clone();
        let challenge = json!({"authorizationUrl": format!("{BANK}/authorize?state=s")});
        enrich_agent_challenge(&mut enriched, found, "msg-1", challenge);
        assert!(agent_challenge(&enriched).is_none(), "enriched, still incomplete: {enriched}");
    }

    let mut engine = Engine::new(in_task_config());
    let host = TestHost::new(NOW);
    engine.init_shared_data(&host);
    let mut context = AnswerContext::Rpc(RpcAnswer::of(user.map(String::from)));
    match response::whole(&mut engine, &host, &mut context, Some(body)) {
        AnswerChange::Refuse(reply) => panic!("a JSON-RPC answer was refused: {reply:?}"),
        AnswerChange::Replace(rewritten) => {
            assert!(user.is_some() && found.is_some(), "only incomplete challenges are rewritten");
            let rewritten: Value = serde_json::from_slice(&rewritten).expect("a rewritten answer is JSON");
            assert!(agent_challenge(&rewritten).is_none(), "rewritten, still incomplete: {rewritten}");
            assert!(same(&rewritten["id"], &answer["id"]));
        }
        AnswerChange::Keep => {
            assert!(user.is_none() || found.is_none(), "an incomplete challenge was passed on: {answer}")
        }
    }
}
