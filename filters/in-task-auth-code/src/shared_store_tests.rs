//! With a shared store (`store`, issue 16): the pending authorization is
//! sealed into its `state`, opened on any replica, and used once across the
//! fleet through a leased create-if-absent mark in etcd, read first (a used
//! `state` costs a read, never a lease). Each replica here
//! is its own engine and its own host (no shared data in common); the etcd
//! callouts are answered with etcd 3.4's own JSON.

use super::*;
use baton_filter_kit::host::CalloutResponse;
use baton_filter_kit::runtime::{Action, Runtime};
use baton_filter_kit::test_host::DispatchedCall;

use crate::filter::InTaskAuthCode;
use baton_filter_kit::store::{EtcdOperation, StoreCall};

use crate::sealed_state::{self, MARK_MARGIN_SECS, StoreOutcome};

// Two sealing keys, base64 of 32 bytes.
const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

const HEADER: &str = r#""header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"}"#;

/// A range that found nothing: etcd 3.4 leaves `kvs` and `count` out.
fn mark_absent() -> String {
    format!("{{{HEADER}}}")
}

/// A range that found the mark.
fn mark_found(key_b64: &str) -> String {
    format!(
        r#"{{{HEADER},"kvs":[{{"key":"{key_b64}","create_revision":"3","mod_revision":"3","version":"1","value":"dXNlZA==","lease":"7587883316386093063"}}],"count":"1"}}"#
    )
}

fn lease_granted() -> String {
    format!(r#"{{{HEADER},"ID":"7587883316386093063","TTL":"360"}}"#)
}

fn mark_created() -> String {
    format!(
        r#"{{{HEADER},"succeeded":true,"responses":[{{"response_put":{{"header":{{"revision":"3"}}}}}}]}}"#
    )
}

/// A failed transaction: the mark exists (read back, as etcd does).
fn mark_exists(key_b64: &str) -> String {
    format!(
        r#"{{{HEADER},"responses":[{{"response_range":{{"header":{{"revision":"3"}},"kvs":[{{"key":"{key_b64}","create_revision":"3","mod_revision":"3","version":"1","value":"dXNlZA==","lease":"7587883316386093063"}}],"count":"1"}}}}]}}"#
    )
}

fn store_section(keys: &[(&str, &str)], current: &str) -> Value {
    let keys: Vec<Value> = keys.iter().map(|(id, secret)| json!({"id": id, "secret": secret})).collect();
    json!({"etcd": {"cluster": "etcd", "timeoutMs": 500}, "sealingKeys": keys, "currentKey": current})
}

/// One Envoy of the fleet: its own engine, its own host.
struct Replica {
    runtime: Runtime<InTaskAuthCode>,
    host: TestHost,
    bank: TestKey,
    /// The calls answered so far.
    answered: Vec<u32>,
}

fn replica_with(store: Value) -> Replica {
    let s = setup_with(|c| c["store"] = store);
    Replica {
        runtime: Runtime::new(InTaskAuthCode { engine: s.engine }, None),
        host: s.host,
        bank: s.bank,
        answered: Vec::new(),
    }
}

fn replica() -> Replica {
    replica_with(store_section(&[("k1", K1)], "k1"))
}

impl Replica {
    fn engine(&mut self) -> &mut Engine {
        &mut self.runtime.filter.engine
    }

    /// A challenge for alice's task: its `state`.
    fn issue(&mut self, task: &str) -> String {
        let host = self.host.clone();
        let challenge = reply(self.decide_past_a_miss(&host, &v03(Some("alice"), Some(task), transfer())));
        // The task's gate, written for every replica (as the runtime does
        // before the reply goes).
        self.engine().take_fresh();
        self.settle();
        auth_challenge(&challenge)["state"].as_str().unwrap().to_string()
    }

    /// Decides `message`; a read of the task's record in the store (the
    /// message finds no token in this Envoy) is answered "absent".
    fn decide_past_a_miss(&mut self, host: &TestHost, message: &Request) -> Verdict {
        match self.engine().decide(host, message, Round::FIRST) {
            Verdict::AwaitStore(read) if matches!(read.operation, EtcdOperation::Get { .. }) => {
                let absent = etcd_says(host, &read, 200, &mark_absent());
                self.engine().decide(host, message, after(1, &read, &absent))
            }
            verdict => verdict,
        }
    }

    /// The bank's redirect arrives as request `id`.
    fn callback(&mut self, id: u32, state: &str) -> Action {
        let path = format!("/a2a/oauth/callback?code=c0de&state={state}");
        self.host.add_request(
            id,
            &[
                (":method", "GET"),
                (":path", &path),
                (":authority", "gw.example"),
                ("accept", "application/json"),
            ],
        );
        self.runtime.on_request_headers(&self.host, id, true)
    }

    /// `user`'s message `message` arrives as request `id`, through the
    /// whole runtime (headers, then body).
    fn send(&mut self, id: u32, user: &str, message: &Request) -> Action {
        let bearer = format!("Bearer {}", user_token(user));
        self.host.add_request(
            id,
            &[
                (":method", "POST"),
                (":path", "/"),
                (":authority", "transfer-agent"),
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
        );
        assert_eq!(self.runtime.on_request_headers(&self.host, id, false), Action::Pause);
        let body = message.body.clone().expect("a message has a body");
        let size = body.len();
        self.host.with_request(id, |request| request.request_body = body);
        self.runtime.on_request_body(&self.host, id, Some(size), true)
    }

    /// The reasons of the audit lines so far.
    fn reasons(&self) -> Vec<String> {
        self.host
            .logs()
            .into_iter()
            .filter_map(|(_, line)| {
                line.split(' ').find_map(|field| field.strip_prefix("reason=")).map(String::from)
            })
            .collect()
    }

    /// The last call dispatched.
    fn last_call(&self) -> DispatchedCall {
        self.host.calls().last().cloned().expect("a call was dispatched")
    }

    /// Answers call `call` with `status` and `body`.
    fn answer(&mut self, call: &DispatchedCall, status: Option<u16>, body: &str) {
        self.answered.push(call.id);
        self.host.set_callout_response(CalloutResponse {
            status,
            body: body.as_bytes().to_vec(),
            body_too_large: false,
        });
        self.runtime.on_callout(&self.host, call.id, 3, body.len());
    }

    fn calls_to(&self, cluster: &str) -> usize {
        self.host.calls().iter().filter(|call| call.cluster == cluster).count()
    }

    /// The background writes (the store's leases, puts and deletes no
    /// request asked for), sent at each tick and answered as etcd does
    /// until none is left, `check` run before each answer; the writes, in
    /// the order sent.
    fn answer_background_writes(&mut self, check: impl Fn(&Replica, &DispatchedCall)) -> Vec<DispatchedCall> {
        let mut sent = Vec::new();
        for _ in 0..8 {
            self.runtime.on_tick(&self.host);
            let pending: Vec<DispatchedCall> = self
                .host
                .calls()
                .into_iter()
                .filter(|call| call.cluster == "etcd" && !self.answered.contains(&call.id))
                .filter(|call| {
                    ["/v3/lease/grant", "/v3/kv/put", "/v3/kv/deleterange"].contains(&call.path.as_str())
                })
                .collect();
            if pending.is_empty() {
                break;
            }
            for call in pending {
                check(self, &call);
                let body = match call.path.as_str() {
                    "/v3/lease/grant" => lease_granted(),
                    "/v3/kv/deleterange" => format!(r#"{{{HEADER},"deleted":"1"}}"#),
                    _ => format!("{{{HEADER}}}"),
                };
                self.answer(&call, Some(200), &body);
                sent.push(call);
            }
        }
        sent
    }

    /// [`Replica::answer_background_writes`], checking nothing.
    fn settle(&mut self) -> Vec<DispatchedCall> {
        self.answer_background_writes(|_, _| {})
    }

    /// Request `id`'s held answer goes on only once the last background
    /// write it waits for is answered; the writes, in the order sent.
    fn answer_waits_for_every_write(&mut self, id: u32) -> Vec<DispatchedCall> {
        let sent = self.answer_background_writes(|r, call| {
            assert_eq!(r.answer_resumed(id), 0, "let go before {} was answered", call.path);
        });
        assert_eq!(self.answer_resumed(id), 1);
        sent
    }

    /// Request `id`'s reply, once the background writes it waits for are
    /// done.
    fn reply_of(&mut self, id: u32) -> (u16, Value) {
        if self.host.request(id).unwrap().reply.is_none() {
            self.settle();
        }
        let reply = self.host.request(id).unwrap().reply.expect("answered");
        (reply.status, serde_json::from_slice(&reply.body).unwrap_or(Value::Null))
    }
}

fn body_json(call: &DispatchedCall) -> Value {
    serde_json::from_slice(&call.body).unwrap()
}

/// The bank's redirect on `r` up to its read of the mark; returns the
/// read.
fn up_to_the_read(r: &mut Replica, id: u32, state: &str) -> DispatchedCall {
    assert_eq!(r.callback(id, state), Action::Pause);
    let read = r.last_call();
    assert_eq!((read.cluster.as_str(), read.path.as_str()), ("etcd", "/v3/kv/range"));
    read
}

/// The bank's redirect on `r` up to its mark: the mark read and found
/// absent, the lease asked for and granted; returns the mark's
/// create-if-absent call.
fn up_to_the_mark(r: &mut Replica, id: u32, state: &str) -> DispatchedCall {
    let read = up_to_the_read(r, id, state);
    r.answer(&read, Some(200), &mark_absent());
    let grant = r.last_call();
    assert_eq!((grant.cluster.as_str(), grant.path.as_str()), ("etcd", "/v3/lease/grant"));
    assert_eq!(body_json(&grant), json!({"TTL": (300 + MARK_MARGIN_SECS).to_string()}));
    r.answer(&grant, Some(200), &lease_granted());
    let create = r.last_call();
    assert_eq!(create.path, "/v3/kv/txn");
    assert_eq!(body_json(&create)["success"][0]["request_put"]["lease"], "7587883316386093063");
    // The key read is the key created.
    assert_eq!(body_json(&create)["compare"][0]["key"], body_json(&read)["key"]);
    create
}

/// Pass `number` of a decision that waited for store step `call`.
fn after<'a>(number: u8, call: &'a StoreCall, outcome: &'a ExchangeOutcome) -> Round<'a> {
    Round { number, keys: KeyWait::Allowed, exchange: Some((&call.key, outcome)) }
}

/// What etcd's answer `body` to `call` is to the engine.
fn etcd_says(host: &TestHost, call: &StoreCall, status: u16, body: &str) -> ExchangeOutcome {
    ExchangeOutcome::Store(sealed_state::outcome(host, "etcd", call.operation.parse(status, body.as_bytes())))
}

/// A message relaying a code on `r` up to its mark: the mark read and
/// found absent, the lease asked for and granted; returns the mark's
/// create-if-absent (its outcome is for pass 3).
fn message_up_to_the_mark(r: &mut Replica, message: &Request) -> StoreCall {
    let host = r.host.clone();
    let Verdict::AwaitStore(read) = r.engine().decide(&host, message, Round::FIRST) else {
        panic!("a read first")
    };
    assert!(matches!(read.operation, EtcdOperation::Get { .. }));
    let absent = etcd_says(&host, &read, 200, &mark_absent());
    assert_eq!(absent, ExchangeOutcome::Store(StoreOutcome::Unused));
    let Verdict::AwaitStore(grant) = r.engine().decide(&host, message, after(1, &read, &absent)) else {
        panic!("then a lease")
    };
    assert!(matches!(grant.operation, EtcdOperation::GrantLease { .. }));
    let lease = etcd_says(&host, &grant, 200, &lease_granted());
    let Verdict::AwaitStore(create) = r.engine().decide(&host, message, after(2, &grant, &lease)) else {
        panic!("then the mark")
    };
    *create
}

#[test]
fn a_state_issued_by_one_replica_is_used_on_another() {
    let mut a = replica();
    let state = a.issue("t-5");
    // Nothing of it is kept where it was issued.
    let host = a.host.clone();
    assert!(a.engine().store.peek_state(&host, &state).is_none());
    assert!(state.len() > 43 && state.len() <= sealed_state::MAX_SEALED_STATE_CHARS, "{}", state.len());

    let mut b = replica();
    let create = up_to_the_mark(&mut b, 1, &state);
    assert_eq!(b.calls_to("bank_idp"), 0, "no code exchange before the state is marked used");
    b.answer(&create, Some(200), &mark_created());
    let exchange = b.last_call();
    assert_eq!(exchange.cluster, "bank_idp");
    let form = String::from_utf8(exchange.body.clone()).unwrap();
    assert!(form.contains("code=c0de") && form.contains("code_verifier="), "{form}");
    let token = b.bank.token(&bank_claims("alice"));
    let answer = json!({"access_token": token, "token_type": "Bearer", "expires_in": 600}).to_string();
    b.answer(&exchange, Some(200), &answer);
    // The token kept for the task is written to the store (lease, put).
    the_record_is_written(&mut b);
    let (status, body) = b.reply_of(1);
    assert_eq!((status, body["status"].as_str()), (200, Some("authorized")), "{body}");
    assert_eq!(body["taskId"], "t-5");

    // The next message of the task, on the replica that has the token: no
    // read of the store.
    let host = b.host.clone();
    let next = forward(b.engine().decide(&host, &v03(Some("alice"), Some("t-5"), transfer()), Round::FIRST));
    assert_eq!(header(&next, "authorization"), Some(format!("Bearer {token}").as_str()));
}

#[test]
fn a_state_used_on_one_replica_is_refused_on_every_other() {
    let mut a = replica();
    let state = a.issue("t-5");
    let mut b = replica();
    let create = up_to_the_mark(&mut b, 1, &state);
    b.answer(&create, Some(200), &mark_created());
    assert_eq!(b.calls_to("bank_idp"), 1);

    // On a third replica, the same state: the read finds the mark, and
    // that is all a replay costs: one read, no lease, no mark, no exchange.
    let mut c = replica();
    let read = up_to_the_read(&mut c, 1, &state);
    // The same mark, whichever replica names it.
    let key = body_json(&create)["compare"][0]["key"].as_str().unwrap().to_string();
    assert_eq!(body_json(&read), json!({"key": key}));
    c.answer(&read, Some(200), &mark_found(&key));
    let (status, body) = c.reply_of(1);
    assert_eq!((status, body["error"].as_str()), (400, Some("state_reused")), "{body}");
    let paths: Vec<String> = c.host.calls().into_iter().map(|call| call.path).collect();
    assert_eq!(paths, ["/v3/kv/range"]);
    assert_eq!(c.host.counter(metrics::STATE_MISUSE), 1);
    assert_eq!(c.runtime.held(), 0);
    // And as a code in a message, through the whole runtime, too.
    let message = v03(Some("alice"), Some("t-5"), with_credentials(json!({"code": "c0de", "state": state})));
    c.send(2, "alice", &message);
    let read = c.last_call();
    assert_eq!((read.path.as_str(), body_json(&read)), ("/v3/kv/range", json!({"key": key})));
    c.answer(&read, Some(200), &mark_found(&key));
    let (status, body) = c.reply_of(2);
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(INVALID_PARAMS)), "{body}");
    let paths: Vec<String> = c.host.calls().into_iter().map(|call| call.path).collect();
    assert_eq!(paths, ["/v3/kv/range", "/v3/kv/range"], "a read each, never a lease");
    assert_eq!(c.host.counter(metrics::STATE_MISUSE), 2);
}

#[test]
fn two_first_uses_racing_on_two_replicas_use_the_state_once() {
    let mut a = replica();
    let state = a.issue("t-5");
    let (mut b, mut c) = (replica(), replica());
    // Both read the mark before either writes it: both find it absent and
    // go on to the create-if-absent, which alone decides.
    let create_b = up_to_the_mark(&mut b, 1, &state);
    let create_c = up_to_the_mark(&mut c, 1, &state);
    assert_eq!(body_json(&create_b)["compare"], body_json(&create_c)["compare"]);
    let key = body_json(&create_c)["compare"][0]["key"].as_str().unwrap().to_string();
    b.answer(&create_b, Some(200), &mark_created());
    c.answer(&create_c, Some(200), &mark_exists(&key));
    assert_eq!((b.calls_to("bank_idp"), c.calls_to("bank_idp")), (1, 0), "one code exchange");
    let (status, body) = c.reply_of(1);
    assert_eq!((status, body["error"].as_str()), (400, Some("state_reused")), "{body}");
    // The same race between two messages relaying the code.
    let message = v03(Some("alice"), Some("t-5"), with_credentials(json!({"code": "c0de", "state": state})));
    let (mut d, mut e) = (replica(), replica());
    let (host_d, host_e) = (d.host.clone(), e.host.clone());
    let mark_d = message_up_to_the_mark(&mut d, &message);
    let mark_e = message_up_to_the_mark(&mut e, &message);
    let won = etcd_says(&host_d, &mark_d, 200, &mark_created());
    let lost = etcd_says(&host_e, &mark_e, 200, &mark_exists(&key));
    let Verdict::AwaitCall(_) = d.engine().decide(&host_d, &message, after(3, &mark_d, &won)) else {
        panic!("the winner exchanges the code")
    };
    let refused = reply(e.engine().decide(&host_e, &message, after(3, &mark_e, &lost)));
    assert_eq!((refused.status, json_body(&refused)["error"]["code"].as_i64()), (400, Some(INVALID_PARAMS)));
}

#[test]
fn a_code_in_a_message_is_exchanged_on_any_replica_once_marked() {
    let mut a = replica();
    let state = a.issue("t-1");
    let mut b = replica();
    let host = b.host.clone();
    let message = v03(Some("alice"), Some("t-1"), with_credentials(json!({"code": "c0de", "state": state})));
    let create = message_up_to_the_mark(&mut b, &message);
    let marked = etcd_says(&host, &create, 200, &mark_created());
    assert_eq!(marked, ExchangeOutcome::Store(StoreOutcome::Marked));
    let Verdict::AwaitCall(call) = b.engine().decide(&host, &message, after(3, &create, &marked)) else {
        panic!("then the exchange")
    };
    assert_eq!(call.key, TokenHash::of(state.as_bytes()));
    let token = Secret::new(b.bank.token(&bank_claims("alice")));
    let outcome = ExchangeOutcome::Token { access: token.clone(), id_token: None };
    let round = Round { number: 4, keys: KeyWait::Allowed, exchange: Some((&call.key, &outcome)) };
    // Kept here, and written to the store before the message goes on.
    let Verdict::AwaitStore(grant) = b.engine().decide(&host, &message, round) else { panic!("a lease") };
    let lease = etcd_says(&host, &grant, 200, &lease_granted());
    let Verdict::AwaitStore(put) = b.engine().decide(&host, &message, after(5, &grant, &lease)) else {
        panic!("then the put")
    };
    assert!(matches!(put.operation, EtcdOperation::Put { .. }));
    let written = etcd_says(&host, &put, 200, &format!("{{{HEADER}}}"));
    let forwarded = forward(b.engine().decide(&host, &message, after(6, &put, &written)));
    assert_eq!(header(&forwarded, "authorization"), Some(format!("Bearer {}", token.expose()).as_str()));
    // Another user's message with alice's state: never her code exchanged.
    let mallory = v03(Some("mallory"), Some("t-1"), with_credentials(json!({"code": "c", "state": state})));
    let stolen = reply(b.engine().decide(&host, &mallory, after(3, &create, &marked)));
    assert_eq!(stolen.status, 403);
}

/// A message of `user` in `task` relaying alice's code and `state` (and
/// `iss`, if given), in context `context`.
fn relaying(user: &str, task: &str, context: &str, state: &str, iss: Option<&str>) -> Request {
    let mut credentials = json!({"code": "c0de", "state": state});
    if let Some(iss) = iss {
        credentials["iss"] = json!(iss);
    }
    let mut message = v03(Some(user), Some(task), with_credentials(credentials));
    let mut body: Value = serde_json::from_slice(message.body.as_deref().unwrap()).unwrap();
    body["params"]["message"]["contextId"] = json!(context);
    message.body = Some(body.to_string().into_bytes());
    message
}

/// A request on `r` whose last call is the read of a mark, through the
/// rest of a use: the mark found absent, a lease granted, the mark created.
/// Returns the mark's key, as etcd names it.
fn through_the_mark(r: &mut Replica) -> String {
    let read = r.last_call();
    assert_eq!(read.path, "/v3/kv/range");
    r.answer(&read, Some(200), &mark_absent());
    let grant = r.last_call();
    assert_eq!(grant.path, "/v3/lease/grant");
    r.answer(&grant, Some(200), &lease_granted());
    let create = r.last_call();
    assert_eq!(create.path, "/v3/kv/txn");
    assert_eq!(body_json(&create)["compare"][0]["key"], body_json(&read)["key"]);
    r.answer(&create, Some(200), &mark_created());
    body_json(&create)["compare"][0]["key"].as_str().unwrap().to_string()
}

/// The owner's use of a `state` on a fresh replica, after a misuse marked
/// it (`key`): one read finds the mark, and the use is refused as reused.
fn the_owner_then_finds_it_used(key: &str, owner_uses: impl FnOnce(&mut Replica) -> u32) -> (u16, Value) {
    let mut c = replica();
    let id = owner_uses(&mut c);
    let read = c.last_call();
    assert_eq!((read.path.as_str(), body_json(&read)), ("/v3/kv/range", json!({"key": key})));
    c.answer(&read, Some(200), &mark_found(key));
    let paths: Vec<String> = c.host.calls().into_iter().map(|call| call.path).collect();
    assert_eq!(paths, ["/v3/kv/range"], "one read, no lease, no exchange");
    c.reply_of(id)
}

#[test]
fn a_misused_state_in_a_message_is_marked_used_and_its_owner_then_refused() {
    let mut a = replica();
    // The context alice's challenge names (v03's).
    let context = "ctx-1";
    let cases = [
        ("mallory", "t-1", context, None::<&str>, 403, "state_other_user"),
        ("alice", "t-2", context, None, 403, "state_other_task"),
        ("alice", "t-1", "ctx-2", None, 403, "state_other_task"),
        ("alice", "t-1", context, Some("https://evil.example"), 400, "issuer_mismatch"),
    ];
    for (user, task, in_context, iss, status, reason) in cases {
        let state = a.issue("t-1");
        let mut b = replica();
        b.send(1, user, &relaying(user, task, in_context, &state, iss));
        // The misuse takes the steps of a use (read, lease, mark), then is
        // refused; no code is exchanged.
        let key = through_the_mark(&mut b);
        let (answered, body) = b.reply_of(1);
        assert_eq!(answered, status, "{reason}: {body}");
        assert_eq!(b.reasons().last().map(String::as_str), Some(reason));
        assert_eq!((b.calls_to("bank_idp"), b.runtime.held()), (0, 0), "{reason}");
        assert_eq!(b.host.counter(metrics::STORE_UNAVAILABLE), 0);
        // alice's own message with it, on another replica: state_reused.
        let (answered, body) = the_owner_then_finds_it_used(&key, |c| {
            c.send(2, "alice", &relaying("alice", "t-1", context, &state, Some(BANK)));
            2
        });
        assert_eq!(
            (answered, body["error"]["code"].as_i64()),
            (400, Some(INVALID_PARAMS)),
            "{reason}: {body}"
        );
    }
}

#[test]
fn a_misused_state_at_the_redirect_is_marked_used_and_the_bank_redirect_then_refused() {
    let mut a = replica();
    let cases = [
        ("code=c0de&state={state}&iss=https%3A%2F%2Fevil.example", "issuer_mismatch"),
        ("code=c0de&state={state}&state=other", "duplicate_parameters"),
        ("error=access_denied&state={state}", "authorization_denied"),
        ("state={state}", "code_missing"),
    ];
    for (query, reason) in cases {
        let state = a.issue("t-1");
        let mut b = replica();
        let path = format!("/a2a/oauth/callback?{}", query.replace("{state}", &state));
        b.host.add_request(
            1,
            &[
                (":method", "GET"),
                (":path", &path),
                (":authority", "gw.example"),
                ("accept", "application/json"),
            ],
        );
        assert_eq!(b.runtime.on_request_headers(&b.host, 1, true), Action::Pause);
        let key = through_the_mark(&mut b);
        let (status, body) = b.reply_of(1);
        assert_eq!((status, body["error"].as_str()), (400, Some(reason)), "{body}");
        assert_eq!(b.calls_to("bank_idp"), 0, "{reason}");
        // The bank's own redirect, on another replica: state_reused.
        let (status, body) = the_owner_then_finds_it_used(&key, |c| {
            assert_eq!(c.callback(2, &state), Action::Pause);
            2
        });
        assert_eq!((status, body["error"].as_str()), (400, Some("state_reused")), "{reason}: {body}");
    }
}

#[test]
fn a_misuse_the_store_cannot_mark_is_still_refused_as_a_misuse() {
    let mut a = replica();
    let down =
        r#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#;
    // The store fails at each step in turn: mallory's message is still
    // refused as hers (403, not 503), with nothing exchanged or forwarded.
    for failing in ["/v3/kv/range", "/v3/lease/grant", "/v3/kv/txn"] {
        let state = a.issue("t-1");
        let mut b = replica();
        b.send(1, "mallory", &relaying("mallory", "t-1", "ctx-1", &state, None));
        let mut call = b.last_call();
        for (step, answer) in [("/v3/kv/range", mark_absent()), ("/v3/lease/grant", lease_granted())] {
            if call.path == step && step != failing {
                b.answer(&call, Some(200), &answer);
                call = b.last_call();
            }
        }
        assert_eq!(call.path, failing);
        b.answer(&call, Some(503), down);
        let (status, body) = b.reply_of(1);
        assert_eq!(
            (status, body["error"]["code"].as_i64()),
            (403, Some(INVALID_PARAMS)),
            "{failing}: {body}"
        );
        assert_eq!(b.reasons().last().map(String::as_str), Some("state_other_user"), "{failing}");
        assert_eq!(b.last_call().path, failing, "no step after the fault");
        assert_eq!((b.calls_to("bank_idp"), b.runtime.held()), (0, 0), "{failing}");
        assert_eq!(b.host.counter(metrics::STORE_UNAVAILABLE), 1, "{failing}");
        let logs: Vec<String> = b.host.logs().into_iter().map(|(_, line)| line).collect();
        assert!(logs.iter().any(|line| line.contains("store=store_refused")), "{failing}: {logs:?}");
    }
    // A mix-up redirect with no etcd at all: its own 400, not 503.
    let state = a.issue("t-1");
    let mut b = replica();
    b.host.refuse_dispatch(true);
    let path = format!("/a2a/oauth/callback?code=c0de&state={state}&iss=https%3A%2F%2Fevil.example");
    b.host.add_request(
        1,
        &[(":method", "GET"), (":path", &path), (":authority", "gw.example"), ("accept", "application/json")],
    );
    assert_eq!(b.runtime.on_request_headers(&b.host, 1, true), Action::Pause);
    let (status, body) = b.reply_of(1);
    assert_eq!((status, body["error"].as_str()), (400, Some("issuer_mismatch")), "{body}");
    assert_eq!((b.calls_to("bank_idp"), b.host.counter(metrics::STORE_UNAVAILABLE)), (0, 1));
}

#[test]
fn a_state_not_sealed_for_this_use_with_a_configured_key_is_unknown() {
    let mut a = replica();
    let state = a.issue("t-5");
    let refused_at_once = |r: &mut Replica, state: &str| {
        assert_eq!(r.callback(1, state), Action::Pause);
        let (status, body) = r.reply_of(1);
        assert_eq!((status, body["error"].as_str()), (400, Some("state_unknown")), "{body}");
        assert!(r.host.calls().is_empty(), "nothing asked of the store or the bank");
    };
    // Rotated out: a fleet that no longer lists k1.
    refused_at_once(&mut replica_with(store_section(&[("k2", K2)], "k2")), &state);
    // The same id with another secret.
    refused_at_once(&mut replica_with(store_section(&[("k1", K2)], "k1")), &state);
    // Tampered with, anywhere.
    for at in [0, 5, state.len() / 2, state.len() - 1] {
        let mut tampered = state.clone().into_bytes();
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        refused_at_once(&mut replica(), &String::from_utf8(tampered).unwrap());
    }
    // Sealed with the fleet's key for another purpose.
    let host = a.host.clone();
    let shared = a.engine().config().shared_store.as_ref().unwrap();
    let plaintext = json!({"u": "alice", "t": "t-5", "c": "ctx-1", "v": "v".repeat(43), "e": NOW + 300});
    let other = shared.keys.seal(&host, b"baton store token", plaintext.to_string().as_bytes()).unwrap();
    refused_at_once(&mut replica(), &baton_token::base64url::encode(&other));
    // A state of a store-less gateway.
    refused_at_once(&mut replica(), "x".repeat(43).as_str());
}

#[test]
fn a_state_sealed_before_a_rotation_is_used_once_and_marked_under_its_own_key() {
    let mut old = replica();
    let state = old.issue("t-5");
    let mut same = replica();
    let before = up_to_the_mark(&mut same, 1, &state);
    // k2 now seals; k1 still opens, and names the mark of what it sealed.
    let mut rotated = replica_with(store_section(&[("k2", K2), ("k1", K1)], "k2"));
    let after = up_to_the_mark(&mut rotated, 1, &state);
    assert_eq!(body_json(&after)["compare"], body_json(&before)["compare"]);
}

/// A faulty etcd answer: its status (none: no answer) and body.
type Fault = (Option<u16>, &'static str);

#[test]
fn a_store_fault_is_a_503_and_no_code_is_exchanged() {
    let refusal =
        r#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#;
    let lease_gone = r#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
    let read_faults: [Fault; 4] = [
        (None, ""),
        (Some(503), refusal),
        (Some(200), "not json"),
        // A range without its header is no answer, never "absent".
        (Some(200), "{}"),
    ];
    let lease_faults: [Fault; 5] = [
        (None, ""),
        (Some(503), "upstream connect error or disconnect/reset before headers"),
        (Some(200), "not json"),
        (Some(200), r#"{"header":{"revision":"2"},"ID":"0","TTL":"360"}"#),
        (Some(503), refusal),
    ];
    let mark_faults: [Fault; 3] = [
        (None, ""),
        (Some(404), lease_gone),
        (Some(200), r#"{"header":{"revision":"2"},"succeeded":"yes"}"#),
    ];
    let mut a = replica();
    let check = |r: &mut Replica, case: &str| {
        let (status, body) = r.reply_of(1);
        assert_eq!((status, body["error"].as_str()), (503, Some("store_unavailable")), "{case}: {body}");
        assert_eq!(r.calls_to("bank_idp"), 0, "{case}");
        assert_eq!(r.host.counter(metrics::STORE_UNAVAILABLE), 1, "{case}");
        assert_eq!(r.runtime.held(), 0, "{case}");
    };
    let steps: [(&str, &[Fault]); 3] =
        [("/v3/kv/range", &read_faults), ("/v3/lease/grant", &lease_faults), ("/v3/kv/txn", &mark_faults)];
    for (path, faults) in steps {
        for &(status, body) in faults {
            let state = a.issue("t-5");
            let mut b = replica();
            // The steps before this one, answered as etcd does.
            let mut call = up_to_the_read(&mut b, 1, &state);
            for (before, answer) in [("/v3/kv/range", mark_absent()), ("/v3/lease/grant", lease_granted())] {
                if call.path == before && path != before {
                    b.answer(&call, Some(200), &answer);
                    call = b.last_call();
                }
            }
            assert_eq!(call.path, path);
            b.answer(&call, status, body);
            check(&mut b, body);
            assert_eq!(b.last_call().path, path, "{body}: no step after a fault");
        }
    }
    // No etcd cluster (the dispatch refused): answered at once.
    let state = a.issue("t-5");
    let mut b = replica();
    b.host.refuse_dispatch(true);
    assert_eq!(b.callback(1, &state), Action::Pause);
    check(&mut b, "dispatch refused");
    // etcd never answers: the request is answered when its wait is over.
    let state = a.issue("t-5");
    let mut b = replica();
    assert_eq!(b.callback(1, &state), Action::Pause);
    b.host.set_now(NOW + 10);
    b.runtime.on_tick(&b.host);
    check(&mut b, "etcd never answered");
    // A message's code: 503, the JSON-RPC way, with nothing exchanged.
    let state = a.issue("t-5");
    let mut b = replica();
    let host = b.host.clone();
    let message = v03(Some("alice"), Some("t-5"), with_credentials(json!({"code": "c0de", "state": state})));
    let Verdict::AwaitStore(read) = b.engine().decide(&host, &message, Round::FIRST) else {
        panic!("a read first")
    };
    let down = etcd_says(&host, &read, 503, "");
    let refused = reply(b.engine().decide(&host, &message, after(1, &read, &down)));
    assert_eq!((refused.status, json_body(&refused)["error"]["code"].as_i64()), (503, Some(SERVER_ERROR)));
    assert_eq!(
        refused.headers.iter().find(|(name, _)| *name == "retry-after").map(|(_, v)| v.as_str()),
        Some("5")
    );
    assert_eq!(b.host.counter(metrics::STORE_UNAVAILABLE), 1);
}

#[test]
fn an_expired_sealed_state_gets_a_fresh_challenge_and_asks_nothing_of_the_store() {
    let mut a = replica();
    let state = a.issue("t-3");
    let mut b = replica();
    b.host.set_now(NOW + 300);
    let host = b.host.clone();
    let message = v03(Some("alice"), Some("t-3"), with_credentials(json!({"code": "c", "state": state})));
    let expired = reply(b.engine().decide(&host, &message, Round::FIRST));
    assert_eq!(auth_challenge(&expired)["error"], "state_expired");
    assert!(b.host.calls().is_empty());
}

#[test]
fn an_expired_sealed_state_at_the_redirect_is_refused_and_asks_nothing_of_the_store() {
    let mut a = replica();
    let state = a.issue("t-3");
    let mut b = replica();
    b.host.set_now(NOW + 300);
    assert_eq!(b.callback(1, &state), Action::Pause);
    let (status, body) = b.reply_of(1);
    assert_eq!((status, body["error"].as_str()), (400, Some("state_expired")), "{body}");
    assert!(b.host.calls().is_empty(), "nothing asked of the store or the bank");
}

#[test]
fn the_logs_show_what_kind_of_store_fault_and_never_the_state_or_the_mark() {
    let mut a = replica();
    let state = a.issue("t-5");
    let mut b = replica();
    let create = up_to_the_mark(&mut b, 1, &state);
    let key = body_json(&create)["compare"][0]["key"].as_str().unwrap().to_string();
    let refusal =
        r#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#;
    b.answer(&create, Some(503), refusal);
    let (status, _) = b.reply_of(1);
    assert_eq!(status, 503);
    let logs: Vec<String> = b.host.logs().into_iter().map(|(_, line)| line).collect();
    assert!(logs.iter().any(|line| line.contains("store=store_refused")), "{logs:?}");
    // The fault by its kind and status, not etcd's words (they may quote
    // what it was sent).
    assert!(logs.iter().any(|line| line.contains("store call failed: store_refused status=503")), "{logs:?}");
    assert!(!logs.iter().any(|line| line.contains("etcdserver")), "{logs:?}");
    for line in &logs {
        assert!(!line.contains(&state[..40]), "{line}");
        // A store key, in etcd's base64 or as written (prefix and name).
        assert!(!line.contains(&key) && !line.contains("baton/"), "{line}");
        assert!(!line.contains("c0de"), "{line}");
    }
}

#[test]
fn the_store_section_is_checked_at_load() {
    let mut config = crate::config::tests::base();
    config["store"] = store_section(&[("k1", K1)], "k1");
    assert!(crate::config::parse(config.to_string().as_bytes()).unwrap().shared_store.is_some());
    config["store"]["etcd"]["cluster"] = json!("");
    let error = crate::config::parse(config.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "store.etcd.cluster");
    config["store"] = store_section(&[("k1", "c2hvcnQ=")], "k1");
    let error = crate::config::parse(config.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "store.sealingKeys[0].secret");
    // A misspelled field is refused, not ignored.
    config["store"] = store_section(&[("k1", K1)], "k1");
    config["store"]["etcd"]["timeoutMS"] = json!(500);
    let error = crate::config::parse(config.to_string().as_bytes()).unwrap_err();
    assert!(error.field.starts_with("store"), "{error}");
    assert!(error.to_string().contains("timeoutMS"), "{error}");
    config["store"] = store_section(&[("k1", K1)], "k2");
    let error = crate::config::parse(config.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "store.currentKey");
    // With the browser sign-in too: its sign-in travels sealed in its own
    // `state` (sealed_login.rs).
    config["store"] = store_section(&[("k1", K1)], "k1");
    config["userBinding"]["primaryLogin"] = json!({
        "name": "Corp", "authorizationEndpoint": "https://corp.example/authorize",
        "tokenEndpoint": "https://corp.example/token", "cluster": "corp_idp", "tokenPath": "/token",
        "clientId": "gateway-login", "clientSecret": "pw", "redirectUri": "https://gw.example/a2a/oauth/signed-in",
        "scopes": ["openid"],
        "providers": [{"name": "corp-login", "issuer": CORP, "audiences": ["gateway-login"], "algorithms": ["ES256"],
                       "jwks": {"remote": {"cluster": "corp_idp", "path": "/jwks"}}}]
    });
    let both = crate::config::parse(config.to_string().as_bytes()).unwrap();
    assert!(both.shared_store.is_some() && both.binding.primary_login.is_some());
    // Without it, no store: exactly as before.
    assert!(
        crate::config::parse(crate::config::tests::base().to_string().as_bytes())
            .unwrap()
            .shared_store
            .is_none()
    );
}

#[test]
fn a_task_id_too_long_for_a_sealed_state_is_refused_when_challenged() {
    let mut a = replica();
    let host = a.host.clone();
    let long = "t".repeat(900);
    let refused = reply(a.decide_past_a_miss(&host, &v03(Some("alice"), Some(&long), transfer())));
    assert_eq!((refused.status, json_body(&refused)["error"]["code"].as_i64()), (400, Some(INVALID_PARAMS)));
}

/// The token kept for a task on `r`, whose last call is the record's lease,
/// written to the store: the lease granted (for the token's remaining
/// lifetime), the put done. Returns the put's body (key and value, as
/// etcd's JSON gateway has them: base64).
fn the_record_is_written(r: &mut Replica) -> Value {
    let grant = r.last_call();
    assert_eq!((grant.cluster.as_str(), grant.path.as_str()), ("etcd", "/v3/lease/grant"));
    assert_eq!(body_json(&grant), json!({"TTL": "600"}), "the token's remaining lifetime");
    r.answer(&grant, Some(200), &lease_granted());
    let put = r.last_call();
    assert_eq!(put.path, "/v3/kv/put");
    let body = body_json(&put);
    assert_eq!(body["lease"], "7587883316386093063");
    r.answer(&put, Some(200), &format!("{{{HEADER}}}"));
    body
}

/// The `authChallenge` of a v0.3 challenge answer's JSON, if it is one.
fn auth_challenge_of(body: &Value) -> Option<Value> {
    let challenge = &body["result"]["status"]["message"]["parts"][1]["data"]["authChallenge"];
    challenge.get("state").map(|_| challenge.clone())
}

/// A range that found `value` under `key` (both base64).
fn record_found(key: &Value, value: &Value) -> String {
    format!(
        r#"{{{HEADER},"kvs":[{{"key":{key},"create_revision":"4","mod_revision":"4","version":"1","value":{value},"lease":"7587883316386093063"}}],"count":"1"}}"#
    )
}

/// alice is challenged for task `task` on a fresh replica A, and the bank's
/// redirect (request 1) comes to a fresh replica B, which exchanges the
/// code: A, B (whose last call is the lease of the record), the token and
/// the `state`.
fn exchanged_on_another_replica(task: &str) -> (Replica, Replica, String, String) {
    let mut a = replica();
    let state = a.issue(task);
    let mut b = replica();
    let token = b.redirect_exchanged(&state);
    (a, b, token, state)
}

/// As [`exchanged_on_another_replica`], B then writing her token to the
/// store: A, B, the token, the `state` and the put's body.
fn authorized_on_another_replica(task: &str) -> (Replica, Replica, String, String, Value) {
    let (a, mut b, token, state) = exchanged_on_another_replica(task);
    let put = the_record_is_written(&mut b);
    let (status, body) = b.reply_of(1);
    assert_eq!((status, body["status"].as_str()), (200, Some("authorized")), "{body}");
    (a, b, token, state, put)
}

impl Replica {
    /// alice's message in `task` arrives as request `id`, finds no token
    /// here, reads the store under the key of `put` (a put's body), and
    /// goes with `token`.
    fn served_from_the_store(&mut self, id: u32, task: &str, put: &Value, token: &str) {
        self.send(id, "alice", &v03(Some("alice"), Some(task), transfer()));
        let read = self.last_call();
        assert_eq!(body_json(&read), json!({"key": put["key"]}));
        self.answer(&read, Some(200), &record_found(&put["key"], &put["value"]));
        assert_eq!(self.forwarded_with(id), Some(format!("Bearer {token}")));
    }

    /// The bank's redirect with alice's `state` arrives as request 1, is
    /// marked used and its code exchanged for alice's token (returned);
    /// the last call is then the lease of her task's record.
    fn redirect_exchanged(&mut self, state: &str) -> String {
        let create = up_to_the_mark(self, 1, state);
        self.answer(&create, Some(200), &mark_created());
        let exchange = self.last_call();
        let token = self.bank.token(&bank_claims("alice"));
        let answer = json!({"access_token": token, "token_type": "Bearer", "expires_in": 600}).to_string();
        self.answer(&exchange, Some(200), &answer);
        token
    }

    /// What request `id` was forwarded with, if it was: its
    /// `authorization` header.
    fn forwarded_with(&self, id: u32) -> Option<String> {
        let request = self.host.request(id).unwrap();
        assert!(request.reply.is_none(), "answered: {:?}", request.reply.map(|r| r.body_text()));
        request.request_header("authorization")
    }
}

#[test]
fn a_token_kept_on_one_replica_serves_the_next_message_on_another() {
    let (mut a, _b, token, state, put) = authorized_on_another_replica("t-5");
    // alice's next message lands on A, which has no token: one read of the
    // store, under the key B wrote, and the message goes with the token.
    a.send(2, "alice", &v03(Some("alice"), Some("t-5"), transfer()));
    let read = a.last_call();
    assert_eq!((read.cluster.as_str(), read.path.as_str()), ("etcd", "/v3/kv/range"));
    assert_eq!(body_json(&read), json!({"key": put["key"]}));
    a.answer(&read, Some(200), &record_found(&put["key"], &put["value"]));
    assert_eq!(a.forwarded_with(2), Some(format!("Bearer {token}")));
    assert_eq!(a.runtime.held(), 0);
    assert!(a.reasons().contains(&"injected".to_string()), "{:?}", a.reasons());
    // Kept on A from then on: the next message asks the store nothing.
    let calls = a.host.calls().len();
    a.send(3, "alice", &v03(Some("alice"), Some("t-5"), transfer()));
    assert_eq!(a.forwarded_with(3), Some(format!("Bearer {token}")));
    assert_eq!(a.host.calls().len(), calls);
    // What etcd holds shows no user, task, token or state.
    let written = put.to_string();
    for secret in ["alice", "t-5", &token[..40], &state[..40]] {
        assert!(!written.contains(secret), "the put shows {secret}");
    }
}

#[test]
fn another_user_never_gets_alices_token_from_the_store() {
    let (mut a, _b, token, _, put) = authorized_on_another_replica("t-5");
    // bob, in alice's task, on A: his own record's key is read (not
    // alice's); absent, he is challenged as without a store.
    a.send(2, "bob", &v03(Some("bob"), Some("t-5"), transfer()));
    let read = a.last_call();
    assert_ne!(body_json(&read)["key"], put["key"]);
    a.answer(&read, Some(200), &mark_absent());
    let (status, body) = a.reply_of(2);
    assert_eq!(status, 200);
    assert!(auth_challenge_of(&body).is_some(), "{body}");
    // alice's record copied under bob's key: it does not open (bound to
    // its key), and bob is challenged.
    a.send(3, "bob", &v03(Some("bob"), Some("t-5"), transfer()));
    let read = a.last_call();
    a.answer(&read, Some(200), &record_found(&body_json(&read)["key"], &put["value"]));
    let (status, body) = a.reply_of(3);
    assert_eq!(status, 200);
    assert!(auth_challenge_of(&body).is_some(), "{body}");
    assert!(!body.to_string().contains(&token[..40]));
    // alice's record of another task (t-6), copied under her t-5 key,
    // does not open either (a record sealed inside for another user or
    // task is refused by what it names: sealed_task's tests).
    let (_, _d, _, _, other_task) = authorized_on_another_replica("t-6");
    a.send(4, "alice", &v03(Some("alice"), Some("t-5"), transfer()));
    let read = a.last_call();
    assert_eq!(body_json(&read)["key"], put["key"]);
    a.answer(&read, Some(200), &record_found(&put["key"], &other_task["value"]));
    let (status, body) = a.reply_of(4);
    assert_eq!(status, 200);
    assert!(auth_challenge_of(&body).is_some(), "{body}");
}

#[test]
fn an_expired_record_in_the_store_is_a_miss() {
    let (mut a, _b, _, _, put) = authorized_on_another_replica("t-5");
    // The token expired (etcd's lease outlived it, or clocks differ).
    a.host.set_now(NOW + 600);
    a.send(2, "alice", &v03(Some("alice"), Some("t-5"), transfer()));
    let read = a.last_call();
    a.answer(&read, Some(200), &record_found(&put["key"], &put["value"]));
    let (status, body) = a.reply_of(2);
    assert_eq!(status, 200);
    assert!(auth_challenge_of(&body).is_some(), "{body}");
}

#[test]
fn a_store_fault_on_the_read_is_503_and_nothing_is_forwarded() {
    let refused =
        r#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#;
    let faults =
        [(Some(503), ""), (Some(503), refused), (Some(200), "garbage"), (None, ""), (Some(200), "{}")];
    for (status, body) in faults {
        let (mut a, _b, token, _, _) = authorized_on_another_replica("t-5");
        a.send(2, "alice", &v03(Some("alice"), Some("t-5"), transfer()));
        let read = a.last_call();
        a.answer(&read, status, body);
        let (answered, json) = a.reply_of(2);
        assert_eq!((answered, json["error"]["code"].as_i64()), (503, Some(SERVER_ERROR)), "{body}: {json}");
        assert_eq!(a.host.request(2).unwrap().resumed, 0, "{body}: forwarded");
        assert_eq!(a.host.counter(metrics::STORE_UNAVAILABLE), 1, "{body}");
        assert_eq!(a.reasons().last().map(String::as_str), Some("store_unavailable"));
        assert!(!a.host.logs().iter().any(|(_, line)| line.contains(&token[..40])));
    }
    // No etcd cluster: answered at once.
    let (mut a, _b, _, _, _) = authorized_on_another_replica("t-5");
    a.host.refuse_dispatch(true);
    a.send(2, "alice", &v03(Some("alice"), Some("t-5"), transfer()));
    assert_eq!(a.reply_of(2).0, 503);
    // etcd never answers: 503 when the wait is over.
    let (mut a, _b, _, _, _) = authorized_on_another_replica("t-5");
    a.send(2, "alice", &v03(Some("alice"), Some("t-5"), transfer()));
    a.host.set_now(NOW + 10);
    a.runtime.on_tick(&a.host);
    assert_eq!(a.reply_of(2).0, 503);
    assert_eq!(a.host.request(2).unwrap().resumed, 0);
}

#[test]
fn a_failed_write_does_not_fail_the_redirect_and_logs_nothing_secret() {
    let refused =
        r#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#;
    // At the lease, or at the put.
    for at_the_put in [false, true] {
        let (_a, mut b, token, state) = exchanged_on_another_replica("t-5");
        let grant = b.last_call();
        assert_eq!(grant.path, "/v3/lease/grant");
        if at_the_put {
            b.answer(&grant, Some(200), &lease_granted());
            let put = b.last_call();
            assert_eq!(put.path, "/v3/kv/put");
            b.answer(&put, Some(503), refused);
        } else {
            b.answer(&grant, Some(503), refused);
        }
        let (status, body) = b.reply_of(1);
        assert_eq!((status, body["status"].as_str()), (200, Some("authorized")), "{body}");
        assert_eq!(b.host.counter(metrics::STORE_WRITE_FAILED), 1);
        assert_eq!(b.host.counter(metrics::STORE_UNAVAILABLE), 0);
        // Kept on B all the same.
        b.send(2, "alice", &v03(Some("alice"), Some("t-5"), transfer()));
        assert_eq!(b.forwarded_with(2), Some(format!("Bearer {token}")));
        let logs: Vec<String> = b.host.logs().into_iter().map(|(_, line)| line).collect();
        assert!(logs.iter().any(|line| line.contains("store write failed")), "{logs:?}");
        let key = String::from_utf8(crate::sealed_task::key(
            b.engine().config().shared_store.as_ref().unwrap(),
            "alice",
            "t-5",
        ))
        .unwrap();
        let name = key.rsplit('/').next().unwrap().to_string();
        for line in &logs {
            assert!(!line.contains(&token[..40]), "{line}");
            assert!(!line.contains(&state[..40]), "{line}");
            assert!(!line.contains(&name) && !line.contains("baton/"), "{line}");
        }
    }
}

/// The store key an etcd call's body names (etcd's standard base64, read
/// as base64url).
fn key_of_body(body: &Value) -> Vec<u8> {
    let text = body["key"].as_str().unwrap_or("").replace('+', "-").replace('/', "_");
    baton_token::base64url::decode(text.trim_end_matches('=')).unwrap_or_default()
}

/// The body of the put of store key `key` among `sent`.
fn put_of(sent: &[DispatchedCall], key: &[u8]) -> Value {
    sent.iter()
        .filter(|call| call.path == "/v3/kv/put")
        .map(body_json)
        .find(|body| key_of_body(body) == key)
        .unwrap_or_else(|| panic!("no put of the key among {sent:?}"))
}

/// The store keys of alice's record of `task` and of its gate.
fn record_and_gate_keys(r: &mut Replica, task: &str) -> (Vec<u8>, Vec<u8>) {
    let store = r.engine().config().shared_store.as_ref().unwrap();
    (crate::sealed_task::key(store, "alice", task), crate::sealed_task::gate_key(store, task))
}

impl Replica {
    /// The agent answers request `id` with its task `task` in `state`;
    /// what the filter does with the answer's end.
    fn agent_answers(&mut self, id: u32, task: &str, state: &str) -> Action {
        let answer = json!({"jsonrpc": "2.0", "id": "req-1", "result": {"kind": "task", "id": task,
            "contextId": "ctx-1", "status": {"state": state}}})
        .to_string()
        .into_bytes();
        let size = answer.len();
        self.host.with_request(id, |r| {
            r.response_headers = vec![
                (":status".into(), b"200".to_vec()),
                ("content-type".into(), b"application/json".to_vec()),
            ];
            r.response_body = answer;
        });
        assert_eq!(self.runtime.on_response_headers(&self.host, id, false), Action::Pause);
        self.runtime.on_response_body(&self.host, id, Some(size), true)
    }

    /// The agent streams `events` to request `id`, one chunk each, the
    /// last ending the stream; what the filter does with each chunk.
    fn agent_streams(&mut self, id: u32, events: &[Value]) -> Vec<Action> {
        self.host.with_request(id, |r| {
            r.response_headers = vec![
                (":status".into(), b"200".to_vec()),
                ("content-type".into(), b"text/event-stream".to_vec()),
            ];
        });
        assert_eq!(self.runtime.on_response_headers(&self.host, id, false), Action::Continue);
        let mut actions = Vec::new();
        for (at, event) in events.iter().enumerate() {
            let chunk = format!("data: {event}\n\n").into_bytes();
            let size = chunk.len();
            self.host.with_request(id, |r| r.response_body = chunk);
            actions.push(self.runtime.on_response_body(&self.host, id, Some(size), at + 1 == events.len()));
        }
        actions
    }

    /// alice's message naming no task, as request `id`: the gateway names
    /// a task and challenges, and the reply waits until the task's record
    /// (its context and challenge, no token) is in etcd, where any replica
    /// finds it. The reply's JSON.
    fn challenged_in_a_new_task(&mut self, id: u32) -> Value {
        self.send(id, "alice", &v03(Some("alice"), None, transfer()));
        self.the_reply_waits_for_the_gateways_task(id)
    }

    /// Request `id`'s challenge is held until the gateway's task record and
    /// the task's gate are written (each a lease, then the put); then
    /// sent. The reply's JSON.
    fn the_reply_waits_for_the_gateways_task(&mut self, id: u32) -> Value {
        let sent = self.answer_background_writes(|r, call| {
            assert!(
                r.host.request(id).unwrap().reply.is_none(),
                "answered before {} was answered",
                call.path
            );
        });
        let paths: Vec<&str> = sent.iter().map(|call| call.path.as_str()).collect();
        assert_eq!(paths, ["/v3/lease/grant", "/v3/lease/grant", "/v3/kv/put", "/v3/kv/put"]);
        let (status, body) = self.reply_of(id);
        assert_eq!(status, 200, "{body}");
        let task = body["result"]["id"].as_str().unwrap().to_string();
        let (record, gate) = record_and_gate_keys(self, &task);
        put_of(&sent, &record);
        put_of(&sent, &gate);
        body
    }

    /// How many times request `id`'s held answer was let go.
    fn answer_resumed(&self, id: u32) -> u32 {
        self.host.request(id).map_or(0, |request| request.answer_resumed)
    }
}

#[test]
fn a_task_the_agent_ends_has_its_record_deleted_from_the_store() {
    let (mut a, _b, token, _, put) = authorized_on_another_replica("t-5");
    a.served_from_the_store(2, "t-5", &put, &token);
    // The agent completes the task: the record goes here, and its delete
    // is sent at the next tick, made at once (from the root context: a
    // call of the request's context ends with it).
    let calls = a.host.calls().len();
    assert_eq!(
        a.agent_answers(2, "t-5", "completed"),
        Action::Pause,
        "the answer's end waits for the delete"
    );
    assert_eq!(a.host.calls().len(), calls, "nothing sent from the answer's context");
    assert_eq!(a.host.tick_period(), Some(baton_filter_kit::ticker::IMMEDIATE_TICK));
    a.runtime.on_tick(&a.host);
    // The task's gate and alice's record, each deleted once.
    let deletes: Vec<DispatchedCall> = a.host.calls()[calls..].to_vec();
    let (record, gate) = record_and_gate_keys(&mut a, "t-5");
    assert!(
        deletes
            .iter()
            .all(|call| (call.cluster.as_str(), call.path.as_str()) == ("etcd", "/v3/kv/deleterange"))
    );
    let mut keys: Vec<Vec<u8>> = deletes.iter().map(|call| key_of_body(&body_json(call))).collect();
    keys.sort();
    let mut expected = vec![record, gate];
    expected.sort();
    assert_eq!(keys, expected);
    assert!(deletes.iter().any(|call| body_json(call)["key"] == put["key"]), "under the key the put used");
    a.runtime.on_tick(&a.host);
    assert_eq!(a.host.calls().len(), calls + 2);
    assert_eq!(a.answer_resumed(2), 0);
    // Both deleted: the client gets the answer's end, once.
    a.answer(&deletes[0], Some(200), &format!(r#"{{{HEADER},"deleted":"1"}}"#));
    assert_eq!(a.answer_resumed(2), 0, "let go before the second delete was done");
    a.answer(&deletes[1], Some(200), &format!(r#"{{{HEADER},"deleted":"1"}}"#));
    assert_eq!(a.answer_resumed(2), 1);
    a.runtime.on_tick(&a.host);
    assert_eq!(a.answer_resumed(2), 1);
    assert_eq!(a.runtime.held(), 0);
}

#[test]
fn an_answer_whose_delete_fails_goes_on_all_the_same() {
    let (mut a, _b, token, _, put) = authorized_on_another_replica("t-5");
    a.served_from_the_store(2, "t-5", &put, &token);
    assert_eq!(a.agent_answers(2, "t-5", "completed"), Action::Pause);
    let before = a.host.calls().len();
    a.runtime.on_tick(&a.host);
    // etcd fails the deletes: the records lapse with their leases, and the
    // agent's answer is not lost for it.
    for delete in a.host.calls()[before..].to_vec() {
        assert_eq!(delete.path, "/v3/kv/deleterange");
        a.answer(&delete, Some(503), "unavailable");
    }
    assert_eq!(a.answer_resumed(2), 1);
}

#[test]
fn an_answer_whose_store_work_never_ends_goes_on_after_the_store_timeouts() {
    let (mut a, _b, token, _, put) = authorized_on_another_replica("t-5");
    a.served_from_the_store(2, "t-5", &put, &token);
    assert_eq!(a.agent_answers(2, "t-5", "completed"), Action::Pause);
    a.runtime.on_tick(&a.host);
    assert_eq!(a.last_call().path, "/v3/kv/deleterange");
    // No answer ever comes (a host that loses it): within two store
    // timeouts and the grace, the answer goes on.
    a.host.advance_millis(2_000);
    a.runtime.on_tick(&a.host);
    assert_eq!(a.answer_resumed(2), 0, "released before the store could answer");
    a.host.advance_millis(10_000);
    a.runtime.on_tick(&a.host);
    assert_eq!(a.answer_resumed(2), 1);
    assert!(a.host.logs().iter().any(|(_, line)| line.contains("went on without them")));
}

#[test]
fn a_client_gone_while_its_answer_is_held_leaves_nothing_to_resume() {
    let (mut a, _b, token, _, put) = authorized_on_another_replica("t-5");
    a.served_from_the_store(2, "t-5", &put, &token);
    assert_eq!(a.agent_answers(2, "t-5", "completed"), Action::Pause);
    a.runtime.on_tick(&a.host);
    let delete = a.last_call();
    a.runtime.on_done(2);
    a.answer(&delete, Some(200), &format!(r#"{{{HEADER},"deleted":"1"}}"#));
    assert_eq!(a.answer_resumed(2), 0);
}

#[test]
fn without_a_store_an_ended_task_asks_nothing_of_any_store() {
    let s = setup();
    let mut runtime = Runtime::new(InTaskAuthCode { engine: s.engine }, None);
    runtime.filter.engine.end_task(&s.host, Some("alice"), "t-5");
    assert!(!runtime.filter.engine.has_background());
    runtime.on_tick(&s.host);
    assert!(s.host.calls().is_empty());
}

/// alice starts a new task on A, which names it in its challenge; the
/// bank's redirect lands on B, which writes her token for the gateway's
/// task to etcd. A, the task, the token and the record B wrote.
fn a_gateway_task_authorized_on_another_replica() -> (Replica, String, String, Value) {
    let mut a = replica();
    let challenge = a.challenged_in_a_new_task(90);
    let state = auth_challenge_of(&challenge).unwrap()["state"].as_str().unwrap().to_string();
    let gateway_task = challenge["result"]["id"].as_str().unwrap().to_string();
    let mut b = replica();
    let token = b.redirect_exchanged(&state);
    let record = the_record_is_written(&mut b);
    (a, gateway_task, token, record)
}

#[test]
fn a_token_the_agent_moves_to_its_own_task_is_written_for_every_replica() {
    let (mut a, gateway_task, token, first) = a_gateway_task_authorized_on_another_replica();
    // Her message in the gateway's task on A: the token from etcd; the
    // agent names its own task for it.
    a.served_from_the_store(2, &gateway_task, &first, &token);
    // The answer's end waits until the token is in etcd under the agent's
    // task: alice's next message may land on any replica.
    assert_eq!(a.agent_answers(2, "agent-7", "input-required"), Action::Pause);
    // From the root context at once: the gateway's task's record deleted;
    // the agent's task's record (a lease of the token's lifetime, then its
    // put) and its gate written. The answer goes on after the last.
    let sent = a.answer_waits_for_every_write(2);
    let paths: Vec<&str> = sent.iter().map(|call| call.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v3/kv/deleterange",
            "/v3/kv/deleterange",
            "/v3/lease/grant",
            "/v3/lease/grant",
            "/v3/kv/put",
            "/v3/kv/put"
        ]
    );
    // The gateway's task's gate and record.
    assert_eq!(body_json(&sent[1]), json!({"key": first["key"]}));
    let leases: Vec<Value> =
        sent.iter().filter(|call| call.path == "/v3/lease/grant").map(body_json).collect();
    assert!(leases.contains(&json!({"TTL": "600"})), "the token's lifetime: {leases:?}");
    assert!(leases.contains(&json!({"TTL": "86400"})), "the task's (taskLifetimeSeconds): {leases:?}");
    let (record, gate) = record_and_gate_keys(&mut a, "agent-7");
    let moved = put_of(&sent, &record);
    put_of(&sent, &gate);
    a.runtime.on_tick(&a.host);
    assert_eq!(a.host.calls().len(), a.answered.len(), "nothing more");
    assert_eq!(a.host.counter(metrics::STORE_WRITE_FAILED), 0);
    // alice's next message, in the agent's task, on a third replica: the
    // token from etcd.
    replica().served_from_the_store(1, "agent-7", &moved, &token);
}

#[test]
fn a_task_the_gateway_named_is_the_gateways_on_replicas_that_never_saw_it() {
    // alice is challenged on A, which names the task and writes its record.
    let mut a = replica();
    let challenge = a.challenged_in_a_new_task(90);
    let gateway_task = challenge["result"]["id"].as_str().unwrap().to_string();
    let context = challenge["result"]["contextId"].as_str().unwrap().to_string();
    let (record, _) = record_and_gate_keys(&mut a, &gateway_task);
    let puts: Vec<DispatchedCall> =
        a.host.calls().into_iter().filter(|call| call.path == "/v3/kv/put").collect();
    let sealed = put_of(&puts, &record);
    // Her client asks C for the task (GetTask): C never saw it and reads
    // A's record from etcd: the gateway's task, waiting, with A's link.
    let mut c = replica();
    c.send(3, "alice", &task_call("alice", "tasks/get", &gateway_task));
    let read = c.last_call();
    assert_eq!(body_json(&read), json!({"key": sealed["key"]}));
    c.answer(&read, Some(200), &record_found(&sealed["key"], &sealed["value"]));
    let (status, got) = c.reply_of(3);
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (got["result"]["id"].as_str(), got["result"]["contextId"].as_str()),
        (Some(&*gateway_task), Some(&*context))
    );
    assert_eq!(auth_challenge_of(&got), auth_challenge_of(&challenge), "{got}");
    assert!(
        !c.host.calls().iter().any(|call| call.cluster != "etcd"),
        "asked the agent about the gateway's task"
    );
    // She says "continue" on C before authorizing: C has the task's record
    // but no token, nor has etcd; it challenges in the same task.
    c.send(1, "alice", &v03(Some("alice"), Some(&gateway_task), transfer()));
    let read = c.last_call();
    assert_eq!(read.path, "/v3/kv/range");
    c.answer(&read, Some(200), &record_found(&sealed["key"], &sealed["value"]));
    let again = c.the_reply_waits_for_the_gateways_task(1);
    assert_eq!(again["result"]["id"], gateway_task.as_str(), "{again}");
    let state = auth_challenge_of(&again).unwrap()["state"].as_str().unwrap().to_string();
    // She authorizes through C's link; the bank's redirect lands on B,
    // which never saw the task either: the record it writes says the task
    // is the gateway's.
    let mut b = replica();
    let token = b.redirect_exchanged(&state);
    let put = the_record_is_written(&mut b);
    // Her next message lands on D: the token goes to the agent without the
    // gateway's task id (the agent would not know it), and the agent's own
    // task takes the token on.
    let mut d = replica();
    d.served_from_the_store(2, &gateway_task, &put, &token);
    let forwarded: Value = serde_json::from_slice(&d.host.request(2).unwrap().request_body).unwrap();
    assert_eq!(forwarded["params"]["message"].get("taskId"), None, "{forwarded}");
    assert_eq!(d.agent_answers(2, "agent-7", "input-required"), Action::Pause, "the token moves on");
}

#[test]
fn a_call_on_a_gateway_task_named_elsewhere_is_503_while_etcd_fails_and_the_agents_once_it_is_gone() {
    let mut a = replica();
    let task = a.challenged_in_a_new_task(90)["result"]["id"].as_str().unwrap().to_string();
    let mut c = replica();
    c.send(1, "alice", &task_call("alice", "tasks/get", &task));
    let read = c.last_call();
    c.answer(&read, Some(503), "unavailable");
    let (status, body) = c.reply_of(1);
    assert_eq!(status, 503, "{body}");
    // Gone from etcd (ended, or its lease over): the call goes to the
    // agent, as on the replica that named it once its record is gone.
    c.send(2, "alice", &task_call("alice", "tasks/get", &task));
    let read = c.last_call();
    c.answer(&read, Some(200), &format!("{{{HEADER}}}"));
    assert!(c.host.request(2).unwrap().reply.is_none(), "answered by the gateway");
    // bob naming it: not a task the fleet named for him; no store read.
    let calls = c.host.calls().len();
    c.send(3, "bob", &task_call("bob", "tasks/get", &task));
    assert_eq!(c.host.calls().len(), calls);
    assert!(c.host.request(3).unwrap().reply.is_none());
}

#[test]
fn a_follow_up_whose_rule_does_not_hold_reads_the_tasks_gate_on_a_replica_that_never_saw_it() {
    let (mut a, gateway_task, token, first) = a_gateway_task_authorized_on_another_replica();
    a.served_from_the_store(2, &gateway_task, &first, &token);
    assert_eq!(a.agent_answers(2, "agent-7", "input-required"), Action::Pause);
    let sent = a.answer_waits_for_every_write(2);
    let (record, gate) = record_and_gate_keys(&mut a, "agent-7");
    let (record, gate) = (put_of(&sent, &record), put_of(&sent, &gate));
    let plain = || json!([{"kind": "text", "text": "and again"}]);
    // "and again" in the agent's task on C (no transfer in it): C reads the
    // task's gate, then alice's record, and sends the bank's token.
    let mut c = replica();
    c.send(1, "alice", &v03(Some("alice"), Some("agent-7"), plain()));
    let read = c.last_call();
    assert_eq!(body_json(&read), json!({"key": gate["key"]}));
    c.answer(&read, Some(200), &record_found(&gate["key"], &gate["value"]));
    let read = c.last_call();
    assert_eq!(body_json(&read), json!({"key": record["key"]}));
    c.answer(&read, Some(200), &record_found(&record["key"], &record["value"]));
    assert_eq!(c.forwarded_with(1), Some(format!("Bearer {token}")));
    assert_eq!(c.host.counter(metrics::GATED_FOLLOW_UPS), 1);
    // bob's plain message in it on D: gated for him too; challenged, not
    // sent without the credential.
    let mut d = replica();
    d.send(1, "bob", &v03(Some("bob"), Some("agent-7"), plain()));
    let read = d.last_call();
    d.answer(&read, Some(200), &record_found(&gate["key"], &gate["value"]));
    let read = d.last_call();
    d.answer(&read, Some(200), &format!("{{{HEADER}}}"));
    let (status, body) = d.reply_of(1);
    assert_eq!(status, 200, "{body}");
    assert!(auth_challenge_of(&body).is_some(), "{body}");
    // A task nobody gated: one read, then to the agent as is.
    let mut e = replica();
    e.send(1, "alice", &v03(Some("alice"), Some("chat-1"), plain()));
    let read = e.last_call();
    e.answer(&read, Some(200), &format!("{{{HEADER}}}"));
    assert_eq!(e.calls_to("etcd"), 1);
    assert!(e.host.request(1).unwrap().reply.is_none(), "answered: not forwarded");
    // etcd failing: 503, nothing forwarded (it may be gated).
    let mut f = replica();
    f.send(1, "alice", &v03(Some("alice"), Some("agent-7"), plain()));
    let read = f.last_call();
    f.answer(&read, Some(503), "unavailable");
    assert_eq!(f.reply_of(1).0, 503);
}

#[test]
fn a_streamed_answer_that_moves_the_token_ends_once_the_token_is_in_etcd() {
    let (mut a, gateway_task, token, first) = a_gateway_task_authorized_on_another_replica();
    a.served_from_the_store(2, &gateway_task, &first, &token);
    // The agent's stream: its own task, working (passes at once), then
    // waiting for alice (the stream's end, which waits for the write).
    let event = |state: &str, last: bool| {
        json!({"jsonrpc": "2.0", "id": "req-1", "result": {"kind": "status-update", "taskId": "agent-7",
            "contextId": "ctx-1", "status": {"state": state}, "final": last}})
    };
    let actions = a.agent_streams(2, &[event("working", false), event("input-required", true)]);
    assert_eq!(actions, [Action::Continue, Action::Pause]);
    let sent = a.answer_waits_for_every_write(2);
    let moved = put_of(&sent, &record_and_gate_keys(&mut a, "agent-7").0);
    replica().served_from_the_store(1, "agent-7", &moved, &token);
}

#[test]
fn a_background_write_that_fails_is_counted_and_the_token_stays_here() {
    let (mut a, _b, token, _, put) = authorized_on_another_replica("t-5");
    a.served_from_the_store(2, "t-5", &put, &token);
    // Not a task the gateway named: nothing moves, nothing is written,
    // nothing held.
    assert_eq!(a.agent_answers(2, "t-5", "input-required"), Action::Continue);
    let before = a.host.calls().len();
    a.runtime.on_tick(&a.host);
    assert_eq!(a.host.calls().len(), before);
    // A refused dispatch of a background write: counted, no retry loop.
    let mut b = replica();
    let record = crate::store::TaskRecord {
        user: "alice".into(),
        task_id: "agent-9".into(),
        gateway_task: false,
        token: Some(Secret::new(token.clone())),
        expires_at: NOW + 600,
        context_id: "ctx-1".into(),
        challenge: None,
    };
    let host = b.host.clone();
    b.engine().share_in_background(&host, &record);
    b.host.refuse_dispatch(true);
    b.runtime.on_tick(&b.host);
    b.runtime.on_tick(&b.host);
    assert_eq!(b.host.counter(metrics::STORE_WRITE_FAILED), 1);
    assert!(!b.engine().has_background());
    assert!(!b.host.logs().iter().any(|(_, line)| line.contains(&token[..40]) || line.contains("agent-9")));
}

#[test]
fn canceling_a_task_the_gateway_named_deletes_its_record_from_the_store() {
    let mut a = replica();
    let challenge = a.challenged_in_a_new_task(90);
    let task = challenge["result"]["id"].as_str().unwrap().to_string();
    let host = a.host.clone();
    let canceled = reply(a.engine().decide(&host, &task_call("alice", "tasks/cancel", &task), Round::FIRST));
    assert_eq!(json_body(&canceled)["result"]["status"]["state"], "canceled");
    assert!(a.engine().has_background());
    let before = a.host.calls().len();
    a.runtime.on_tick(&a.host);
    // Its authorization is ended for every replica (a lease, then its
    // single-use mark), and its record deleted.
    let sent: Vec<String> = a.host.calls()[before..].iter().map(|call| call.path.clone()).collect();
    assert_eq!(sent, ["/v3/lease/grant", "/v3/kv/deleterange", "/v3/kv/deleterange"]);
    let delete = a.last_call();
    assert_eq!(delete.path, "/v3/kv/deleterange");
    let key = String::from_utf8(crate::sealed_task::key(
        a.engine().config().shared_store.as_ref().unwrap(),
        "alice",
        &task,
    ))
    .unwrap();
    assert_eq!(String::from_utf8(key_of_body(&body_json(&delete))).unwrap(), key);
    assert!(!key.contains("alice") && !key.contains(&task));
    // bob's cancel of alice's task goes to the agent: nothing deleted.
    let bob = forward(a.engine().decide(&host, &task_call("bob", "tasks/cancel", &task), Round::FIRST));
    assert!(bob.answer.is_some());
    assert!(!a.engine().has_background());
}
