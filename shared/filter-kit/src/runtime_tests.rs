//! The runtime against the in-memory proxy: single flight within a worker
//! and across workers (with the interleavings that once made a second call),
//! lease takeover, overdue and undeliverable calls, store operations (one
//! per request), requests that go away,
//! bodies read or never coming, trailers, and answers read and rewritten.

use baton_token::oauth::ClientAuth;

use super::*;
use crate::store::{EtcdOperation, LeaseId};
use crate::test_host::TestHost;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const NOW: u64 = 1_800_000_000;
const CALL_TIMEOUT_MS: u64 = 2_000;

/// A filter that needs, per request, the token named by its `x-need`
/// header: from the cache every worker shares, or from one call. `x-body`
/// makes it read the body first; `x-answer` makes it read the answer. A
/// need `mark:<name>` is a store operation instead: create-if-absent of
/// `<name>`, forwarded with `created` or `exists`.
#[derive(Debug)]
struct Fake {
    endpoint: TokenEndpoint,
    store: EtcdEndpoint,
    decisions: u32,
    /// Store operations no request waits for, queued.
    store_jobs: Vec<StoreCall>,
    /// Answers to store operations, in order.
    store_answers: Vec<Result<EtcdAnswer, EtcdError>>,
    /// Why each fleet call was made here.
    called_here: Vec<CallHere>,
}

impl Fake {
    fn new() -> Self {
        let endpoint = TokenEndpoint {
            cluster: "idp".into(),
            path: "/token".into(),
            authority: "idp".into(),
            timeout_ms: CALL_TIMEOUT_MS,
            client_auth: ClientAuth::Public { client_id: "gateway".into() },
        };
        let store = EtcdEndpoint { cluster: "etcd".into(), authority: "etcd".into(), timeout_ms: 500 };
        Self {
            endpoint,
            store,
            decisions: 0,
            store_jobs: Vec::new(),
            store_answers: Vec::new(),
            called_here: Vec::new(),
        }
    }
}

fn cache_key(key: &TokenHash) -> String {
    format!("cache.{}", key.to_hex())
}

fn key_of(need: &str) -> TokenHash {
    TokenHash::of(need.as_bytes())
}

fn call_for(need: &str) -> TokenCall {
    crate::token_calls::test_call(need.as_bytes(), &format!("token {need}"))
}

#[derive(Debug, Clone)]
struct FakeRequest {
    need: String,
    read_body: bool,
    read_answer: bool,
    body: Option<Vec<u8>>,
}

fn forward_with(token: &str, request: &FakeRequest) -> Verdict<String> {
    Verdict::Forward(Forward {
        strip: vec!["x-user".into()],
        set: vec![("x-token".into(), Secret::new(token.to_string()))],
        body: request.body.as_ref().map(|body| [b"seen:".as_slice(), body].concat()),
        answer: request.read_answer.then(|| request.need.clone()),
        ..Forward::default()
    })
}

impl Filter for Fake {
    type Request = FakeRequest;
    type Outcome = Result<String, u16>;
    type Answer = String;

    const MAKES_CALLS: bool = true;
    const READS_BODIES: bool = true;
    const READS_ANSWERS: bool = true;
    const USES_STORE: bool = true;

    fn user_agent(&self) -> &'static str {
        "fake"
    }

    fn read_request(
        &mut self,
        _host: &dyn Host,
        headers: &RequestHeaders,
        _end_of_stream: bool,
    ) -> Result<FakeRequest, String> {
        Ok(FakeRequest {
            need: headers.text("x-need").unwrap_or_default(),
            read_body: headers.value("x-body").is_some(),
            read_answer: headers.value("x-answer").is_some(),
            body: None,
        })
    }

    fn decide(
        &mut self,
        host: &dyn Host,
        request: &FakeRequest,
        round: Round<'_, Self::Outcome>,
    ) -> Verdict<String> {
        self.decisions += 1;
        if request.read_body && request.body.is_none() {
            return Verdict::ReadBody;
        }
        let key = key_of(&request.need);
        if let Some((got, outcome)) = round.call
            && *got == key
        {
            return match outcome {
                Ok(token) => forward_with(token, request),
                Err(status) => {
                    Verdict::Reply(Reply::json(502, "server_error", &format!("idp answered {status}")))
                }
            };
        }
        if round.overdue.is_some() {
            return Verdict::Reply(Reply::json(504, "temporarily_unavailable", "waited too long"));
        }
        if let Some(name) = request.need.strip_prefix("mark:") {
            let lease = LeaseId::new(7).unwrap();
            let operation =
                EtcdOperation::CreateIfAbsent { key: name.as_bytes().to_vec(), value: b"v".to_vec(), lease };
            return Verdict::AwaitStore(Box::new(StoreCall { key, operation }));
        }
        if let Some((token, _)) = host.shared_get(&cache_key(&key)) {
            return forward_with(&String::from_utf8_lossy(&token), request);
        }
        Verdict::AwaitCall(Box::new(call_for(&request.need)))
    }

    fn trailer_names(&self) -> Vec<String> {
        vec!["x-user".into()]
    }

    fn wait_limit_secs(&self, _what: WaitFor) -> u64 {
        CALL_TIMEOUT_MS / 1000
    }

    fn endpoint(&self, _call: &TokenCall) -> Option<&TokenEndpoint> {
        Some(&self.endpoint)
    }

    fn finish_call(
        &mut self,
        host: &dyn Host,
        call: &TokenCall,
        response: &CalloutResponse,
        _: u64,
    ) -> Self::Outcome {
        match response.status {
            Some(200) => {
                let _ = host.shared_set(&cache_key(&call.key), &response.body, None);
                Ok(String::from_utf8_lossy(&response.body).into_owned())
            }
            other => Err(other.unwrap_or(0)),
        }
    }

    fn dispatch_failed(&mut self, _host: &dyn Host, _call: &TokenCall) -> Self::Outcome {
        Err(0)
    }

    fn store_endpoint(&self) -> Option<&EtcdEndpoint> {
        Some(&self.store)
    }

    fn finish_store(
        &mut self,
        _host: &dyn Host,
        _call: &StoreCall,
        answer: Result<EtcdAnswer, EtcdError>,
    ) -> Option<Self::Outcome> {
        self.store_answers.push(answer.clone());
        // A lease granted for a job: the write with it comes next.
        if let Ok(EtcdAnswer::Lease(lease)) = &answer {
            let operation = EtcdOperation::Put { key: b"w".to_vec(), value: b"v".to_vec(), lease: lease.id };
            self.store_jobs.push(StoreCall { key: key_of("write"), operation });
        }
        Some(match answer {
            Ok(EtcdAnswer::Created) => Ok("created".into()),
            Ok(EtcdAnswer::AlreadyExists(_)) => Ok("exists".into()),
            Ok(_) => Err(1),
            Err(_) => Err(0),
        })
    }

    fn store_jobs(&mut self, _host: &dyn Host) -> Vec<StoreCall> {
        std::mem::take(&mut self.store_jobs)
    }

    /// A need `fleet:<name>` is made once for the fleet, claimed under
    /// `<name>`.
    fn fleet_flight(&self, call: &TokenCall) -> Option<FleetFlight> {
        let name = call.label.strip_prefix("token fleet:")?;
        Some(FleetFlight { key: name.as_bytes().to_vec(), claim_ttl_secs: 3 })
    }

    /// `tok:<token>` is a token, cached as a call's would be.
    fn fleet_found(&mut self, host: &dyn Host, call: &TokenCall, value: &[u8]) -> Found<Self::Outcome> {
        match value.strip_prefix(b"tok:") {
            Some(token) => {
                let _ = host.shared_set(&cache_key(&call.key), token, None);
                Found::Token(Ok(String::from_utf8_lossy(token).into_owned()))
            }
            None => Found::Unusable,
        }
    }

    fn fleet_calls_here(&mut self, _host: &dyn Host, _call: &TokenCall, why: CallHere) {
        self.called_here.push(why);
    }

    fn cached(&mut self, host: &dyn Host, key: &TokenHash) -> bool {
        host.shared_get(&cache_key(key)).is_some()
    }

    fn add_body(&self, request: &mut FakeRequest, body: Vec<u8>) {
        request.body = Some(body);
    }

    fn max_body_bytes(&self) -> usize {
        16
    }

    fn answer_mode(&self, _answer: &mut String, head: &AnswerHead<'_>) -> AnswerMode {
        match head.content_type {
            Some(b"application/json") => AnswerMode::Whole,
            Some(b"text/event-stream") => AnswerMode::Events,
            _ => AnswerMode::Pass,
        }
    }

    fn rewrite_answer(&mut self, _host: &dyn Host, answer: &mut String, body: Option<&[u8]>) -> AnswerChange {
        match body {
            Some(body) => AnswerChange::Replace([body, b" for ", answer.as_bytes()].concat()),
            None => AnswerChange::Refuse(Reply::json(502, "bad_gateway", "too large to read")),
        }
    }

    fn rewrite_event(&mut self, _host: &dyn Host, answer: &mut String, data: &str) -> Option<String> {
        answer.push('+');
        data.contains("rewrite").then(|| format!("{} ({answer})", data.replace("rewrite", "done")))
    }
}

/// One worker: its proxy (sharing the Envoy's shared data with the others)
/// and its runtime.
struct Worker {
    host: TestHost,
    runtime: Runtime<Fake>,
}

impl Worker {
    fn first(host: &TestHost) -> Self {
        Self::on(host.clone())
    }

    fn another(&self) -> Self {
        Self::on(self.host.worker())
    }

    fn on(host: TestHost) -> Self {
        let leases = LeaseTable::new("lease.", 8);
        let mut runtime = Runtime::new(Fake::new(), Some(leases));
        runtime.start(&host);
        Self { host, runtime }
    }

    /// A request `id` needing token `need`, through its headers callback.
    fn request(&mut self, id: u32, headers: &[(&str, &str)]) -> Action {
        self.host.add_request(id, headers);
        self.runtime.on_request_headers(&self.host, id, true)
    }

    fn needing(&mut self, id: u32, need: &str) -> Action {
        self.request(id, &[("x-need", need), ("x-user", "spoofed"), ("X_User", "spoofed")])
    }

    fn tick(&mut self) {
        self.runtime.on_tick(&self.host);
    }

    /// Answers dispatched call `id` with `status` and `body`.
    fn answer(&mut self, id: u32, status: u16, body: &str) {
        let response =
            CalloutResponse { status: Some(status), body: body.as_bytes().to_vec(), body_too_large: false };
        self.host.set_callout_response(response);
        self.runtime.on_callout(&self.host, id, 1, body.len());
    }

    fn token_sent(&self, id: u32) -> Option<String> {
        self.host.request(id)?.request_header("x-token")
    }
}

fn host() -> TestHost {
    TestHost::new(NOW)
}

#[test]
fn many_requests_for_one_token_make_one_call() {
    let mut worker = Worker::first(&host());
    for id in 1..=30 {
        assert_eq!(worker.needing(id, "t"), Action::Pause);
    }
    worker.tick();
    let calls = worker.host.calls();
    assert_eq!(calls.len(), 1, "one call for 30 requests");
    assert_eq!((calls[0].cluster.as_str(), calls[0].path.as_str()), ("idp", "/token"));
    worker.answer(calls[0].id, 200, "tok");
    for id in 1..=30 {
        let request = worker.host.request(id).unwrap();
        assert_eq!((request.resumed, worker.token_sent(id).as_deref()), (1, Some("tok")), "request {id}");
        // The client's copies of a header the filter sets are gone, in
        // every spelling.
        assert!(
            request
                .request_headers
                .iter()
                .all(|(name, _)| !name.eq_ignore_ascii_case("x-user") && name != "X_User")
        );
    }
    assert_eq!(worker.runtime.held(), 0);
    // Later requests find the token in the cache: no call, no wait.
    assert_eq!(worker.needing(31, "t"), Action::Continue);
    assert_eq!(worker.host.calls().len(), 1);
}

/// The interleaving an outside run once hit (30 cold requests on 2 workers,
/// 2 calls): worker B's requests miss the cache while A's call is in
/// flight; A's answer lands and its lease ends before B's tick dispatches.
#[test]
fn a_call_another_worker_finished_before_this_one_dispatched_is_not_made_again() {
    let mut a = Worker::first(&host());
    let mut b = a.another();
    for id in 1..=15 {
        a.needing(id, "t");
    }
    a.tick();
    for id in 16..=30 {
        assert_eq!(b.needing(id, "t"), Action::Pause, "B misses the cache: A's call is in flight");
    }
    let call = a.host.calls()[0].id;
    a.answer(call, 200, "tok");
    b.tick();
    assert_eq!(a.host.calls().len() + b.host.calls().len(), 1, "exactly one call for the token");
    for id in 16..=30 {
        assert_eq!(b.token_sent(id).as_deref(), Some("tok"), "request {id} on B");
        assert_eq!(b.host.request(id).unwrap().resumed, 1);
    }
    for id in 1..=15 {
        assert_eq!(a.token_sent(id).as_deref(), Some("tok"), "request {id} on A");
    }
}

/// Worker A calls for request 1's token; worker B's request 2 needs the
/// same token and B has ticked once since.
fn two_workers_one_call() -> (Worker, Worker) {
    let mut a = Worker::first(&host());
    let mut b = a.another();
    a.needing(1, "t");
    a.tick();
    b.needing(2, "t");
    b.tick();
    (a, b)
}

#[test]
fn a_worker_waits_for_the_call_another_is_making() {
    let (mut a, mut b) = two_workers_one_call();
    assert!(b.host.calls().is_empty(), "B waits for A's call");
    assert_eq!(b.host.tick_period(), Some(REMOTE_POLL), "and looks for its result often");
    a.answer(a.host.calls()[0].id, 200, "tok");
    b.tick();
    assert_eq!(b.token_sent(2).as_deref(), Some("tok"));
    assert!(b.host.calls().is_empty());
}

#[test]
fn a_lease_that_ends_without_a_result_is_taken_over() {
    let (_a, mut b) = two_workers_one_call();
    // A's worker never answers (stuck); its lease runs out.
    b.host.advance_millis(CALL_TIMEOUT_MS + 1001);
    b.tick(); // takes over: queued again
    b.tick(); // dispatched
    let calls = b.host.calls();
    assert_eq!(calls.len(), 1, "B calls itself once A's lease has ended");
    b.answer(calls[0].id, 200, "tok-b");
    assert_eq!(b.token_sent(2).as_deref(), Some("tok-b"));
}

#[test]
fn a_failed_call_answers_every_request_that_waited_for_it() {
    let mut worker = Worker::first(&host());
    worker.needing(1, "t");
    worker.needing(2, "t");
    worker.tick();
    worker.answer(worker.host.calls()[0].id, 500, "down");
    for id in [1, 2] {
        let reply = worker.host.request(id).unwrap().reply.unwrap();
        assert_eq!(reply.status, 502, "{}", reply.body_text());
        assert!(reply.body_text().contains("idp answered 500"));
    }
    assert_eq!(worker.runtime.held(), 0);
}

/// etcd's answers to a create-if-absent: created, or taken (read back).
const MARK_CREATED: &str = r#"{"header":{"revision":"3"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"3"}}}]}"#;
const MARK_TAKEN: &str = r#"{"header":{"revision":"3"},"responses":[{"response_range":{"header":{"revision":"3"},"kvs":[{"key":"bQ==","create_revision":"3","mod_revision":"3","value":"dg==","lease":"7"}],"count":"1"}}]}"#;

#[test]
fn each_request_waits_for_its_own_store_operation() {
    let mut worker = Worker::first(&host());
    // Two requests marking the same name: two operations, not one shared
    // (a single-use mark answers one request, never both).
    assert_eq!(worker.needing(1, "mark:m"), Action::Pause);
    assert_eq!(worker.needing(2, "mark:m"), Action::Pause);
    let calls = worker.host.calls();
    assert_eq!(calls.len(), 2, "dispatched at once, one each");
    assert!(calls.iter().all(|call| (call.cluster.as_str(), call.path.as_str()) == ("etcd", "/v3/kv/txn")));
    worker.answer(calls[1].id, 200, MARK_TAKEN);
    assert_eq!(worker.token_sent(2).as_deref(), Some("exists"));
    assert_eq!(worker.token_sent(1), None, "request 1 still waits for its own answer");
    worker.answer(calls[0].id, 200, MARK_CREATED);
    assert_eq!(worker.token_sent(1).as_deref(), Some("created"));
    assert_eq!(worker.runtime.held(), 0);
    // Garbage is no answer.
    worker.needing(3, "mark:m");
    let garbage = worker.host.calls().last().map(|call| call.id).unwrap();
    worker.answer(garbage, 200, "<html>");
    assert_eq!(worker.host.request(3).unwrap().reply.unwrap().status, 502);
}

#[test]
fn a_store_operation_that_cannot_be_dispatched_is_decided_at_once() {
    let mut worker = Worker::first(&host());
    worker.host.refuse_dispatch(true);
    assert_eq!(worker.needing(1, "mark:m"), Action::Pause);
    assert_eq!(worker.host.request(1).unwrap().reply.unwrap().status, 502);
    assert_eq!(worker.runtime.held(), 0);
    assert!(
        worker.host.logs().iter().any(|(_, line)| line.contains("store call (/v3/kv/txn) dispatch failed"))
    );
}

#[test]
fn a_store_operation_never_answered_is_overdue() {
    let mut worker = Worker::first(&host());
    worker.needing(1, "mark:m");
    worker.host.set_now(NOW + CALL_TIMEOUT_MS / 1000 + WAIT_GRACE_SECS + 1);
    worker.tick();
    assert_eq!(worker.host.request(1).unwrap().reply.unwrap().status, 504);
    // Its answer, arriving late, finds no one.
    let call = worker.host.calls()[0].id;
    worker.answer(call, 200, MARK_CREATED);
    assert_eq!(worker.token_sent(1), None);
}

#[test]
fn store_operations_no_request_waits_for_are_made_and_chained() {
    let mut worker = Worker::first(&host());
    let grant = StoreCall { key: key_of("write"), operation: EtcdOperation::GrantLease { ttl_secs: 60 } };
    worker.runtime.filter.store_jobs.push(grant);
    worker.tick();
    let calls = worker.host.calls();
    let [lease] = calls.as_slice() else { panic!("{calls:?}") };
    assert_eq!((lease.cluster.as_str(), lease.path.as_str()), ("etcd", "/v3/lease/grant"));
    // The lease's answer (delivered to the root context, which sent it)
    // queues the write, sent from there at once: no tick in between.
    worker.answer(lease.id, 200, r#"{"header":{"revision":"3"},"ID":"7","TTL":"60"}"#);
    let calls = worker.host.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].path, "/v3/kv/put");
    worker.answer(calls[1].id, 200, r#"{"header":{"revision":"4"}}"#);
    assert_eq!(worker.runtime.filter.store_answers.len(), 2);
    assert_eq!(worker.runtime.filter.store_answers[1], Ok(EtcdAnswer::Written));
    assert_eq!(worker.runtime.held(), 0);
    // A dispatch refused is an answer of no response, at once.
    worker.host.refuse_dispatch(true);
    let grant = StoreCall { key: key_of("write"), operation: EtcdOperation::GrantLease { ttl_secs: 60 } };
    worker.runtime.filter.store_jobs.push(grant);
    worker.tick();
    assert_eq!(worker.runtime.filter.store_answers.last(), Some(&Err(EtcdError::NoResponse)));
}

#[test]
fn a_call_that_cannot_be_dispatched_answers_its_waiters() {
    let mut worker = Worker::first(&host());
    worker.host.refuse_dispatch(true);
    worker.needing(1, "t");
    worker.tick();
    let reply = worker.host.request(1).unwrap().reply.unwrap();
    assert_eq!(reply.status, 502);
    assert!(
        worker
            .host
            .logs()
            .iter()
            .any(|(_, line)| line.contains("cluster=idp token call (token t) dispatch failed"))
    );
}

#[test]
fn a_request_that_waited_too_long_gets_a_last_decision() {
    let mut worker = Worker::first(&host());
    worker.needing(1, "t");
    worker.tick();
    worker.host.advance_millis(CALL_TIMEOUT_MS + WAIT_GRACE_SECS * 1000 + 1000);
    worker.tick();
    let reply = worker.host.request(1).unwrap().reply.unwrap();
    assert_eq!(reply.status, 504);
    assert_eq!(worker.runtime.held(), 0);
    // Its call's late answer finds no one waiting.
    worker.answer(worker.host.calls()[0].id, 200, "late");
    assert_eq!(worker.host.request(1).unwrap().resumed, 0);
}

#[test]
fn a_request_whose_client_went_away_is_forgotten() {
    let mut worker = Worker::first(&host());
    worker.needing(1, "t");
    worker.needing(2, "t");
    worker.tick();
    worker.host.remove_request(1);
    worker.runtime.on_done(1);
    assert_eq!(worker.runtime.held(), 1);
    worker.answer(worker.host.calls()[0].id, 200, "tok");
    assert_eq!(worker.token_sent(2).as_deref(), Some("tok"));
    // Gone without the context saying so: the answer skips it.
    worker.needing(3, "u");
    worker.tick();
    worker.host.remove_request(3);
    worker.answer(worker.host.calls()[1].id, 200, "tok-u");
    assert_eq!(worker.runtime.held(), 0);
}

#[test]
fn a_body_is_read_before_the_decision() {
    let mut worker = Worker::first(&host());
    worker.host.add_request(1, &[("x-need", "t"), ("x-body", "1")]);
    assert_eq!(worker.runtime.on_request_headers(&worker.host, 1, false), Action::Pause);
    worker.host.with_request(1, |request| request.request_body = b"abc".to_vec());
    assert_eq!(
        worker.runtime.on_request_body(&worker.host, 1, Some(3), false),
        Action::Pause,
        "not complete"
    );
    worker.host.with_request(1, |request| request.request_body = b"abcdef".to_vec());
    assert_eq!(
        worker.runtime.on_request_body(&worker.host, 1, Some(6), true),
        Action::Pause,
        "waits for the token"
    );
    worker.tick();
    worker.answer(worker.host.calls()[0].id, 200, "tok");
    let request = worker.host.request(1).unwrap();
    assert_eq!(request.request_body, b"seen:abcdef");
    assert_eq!(request.request_header("content-length").as_deref(), Some("11"));
    assert_eq!(request.resumed, 1);
}

#[test]
fn trailers_end_a_body_and_carry_no_header_the_filter_sets() {
    let mut worker = Worker::first(&host());
    worker.host.add_request(1, &[("x-need", "t"), ("x-body", "1")]);
    worker.runtime.on_request_headers(&worker.host, 1, false);
    worker.host.with_request(1, |request| {
        request.request_body = b"abc".to_vec();
        request.request_trailers =
            vec![("x_user".into(), b"admin".to_vec()), ("grpc-status".into(), b"0".to_vec())];
    });
    assert_eq!(worker.runtime.on_request_body(&worker.host, 1, Some(3), false), Action::Pause);
    assert_eq!(
        worker.runtime.on_request_trailers(&worker.host, 1),
        Action::Pause,
        "decided: waits for the token"
    );
    let request = worker.host.request(1).unwrap();
    assert_eq!(request.request_trailers, vec![("grpc-status".to_string(), b"0".to_vec())]);
    assert_eq!(worker.runtime.held(), 1);
}

#[test]
fn bodies_too_large_or_never_coming_are_answered() {
    let mut worker = Worker::first(&host());
    worker.host.add_request(1, &[("x-need", "t"), ("x-body", "1")]);
    worker.runtime.on_request_headers(&worker.host, 1, false);
    assert_eq!(worker.runtime.on_request_body(&worker.host, 1, Some(17), false), Action::Pause);
    assert_eq!(worker.host.request(1).unwrap().reply.unwrap().status, 500, "the default body reply");
    worker.host.add_request(2, &[("x-need", "t"), ("x-body", "1")]);
    worker.runtime.on_request_headers(&worker.host, 2, false);
    worker.host.advance_millis(BODY_WAIT_SECS * 1000 + 1000);
    worker.tick();
    assert_eq!(worker.host.request(2).unwrap().reply.unwrap().status, 500);
    assert!(worker.host.logs().iter().any(|(_, line)| line.contains("allow_on_headers_stop_iteration")));
    assert_eq!(worker.runtime.held(), 0);
}

#[test]
fn an_answer_the_filter_reads_is_rewritten() {
    let mut worker = Worker::first(&host());
    worker.host.add_request(1, &[("x-need", "t"), ("x-answer", "1")]);
    let _ = worker.host.shared_set(&cache_key(&key_of("t")), b"tok", None);
    assert_eq!(worker.runtime.on_request_headers(&worker.host, 1, true), Action::Continue);
    worker.host.with_request(1, |request| {
        request.response_headers = vec![("content-type".into(), b"application/json".to_vec())];
        request.response_body = b"{}".to_vec();
    });
    assert_eq!(worker.runtime.on_response_headers(&worker.host, 1, false), Action::Pause);
    assert_eq!(worker.runtime.on_response_body(&worker.host, 1, Some(2), false), Action::Pause);
    assert_eq!(worker.runtime.on_response_body(&worker.host, 1, Some(2), true), Action::Continue);
    let request = worker.host.request(1).unwrap();
    assert_eq!(request.response_body, b"{} for t");
    assert!(request.response_headers.contains(&("content-length".to_string(), b"8".to_vec())));
    // An answer of another type passes untouched.
    worker.host.add_request(2, &[("x-need", "t"), ("x-answer", "1")]);
    worker.runtime.on_request_headers(&worker.host, 2, true);
    worker.host.with_request(2, |request| {
        request.response_headers = vec![("content-type".into(), b"text/plain".to_vec())];
    });
    assert_eq!(worker.runtime.on_response_headers(&worker.host, 2, false), Action::Continue);
    assert_eq!(worker.runtime.on_response_body(&worker.host, 2, Some(2), true), Action::Continue);
}

/// Request `id` forwarded with its answer to be read; the answer's headers
/// (with `content-type`) arrive.
fn answered(worker: &mut Worker, id: u32, content_type: &str, end_of_stream: bool) -> Action {
    worker.host.add_request(id, &[("x-need", "t"), ("x-answer", "1")]);
    let _ = worker.host.shared_set(&cache_key(&key_of("t")), b"tok", None);
    assert_eq!(worker.runtime.on_request_headers(&worker.host, id, true), Action::Continue);
    worker.host.with_request(id, |request| {
        request.response_headers = vec![
            (":status".into(), b"200".to_vec()),
            ("content-type".into(), content_type.as_bytes().to_vec()),
            ("content-length".into(), b"99".to_vec()),
        ];
    });
    worker.runtime.on_response_headers(&worker.host, id, end_of_stream)
}

/// Chunk `bytes` of request `id`'s answer arrives; returns what goes on.
fn chunk(worker: &mut Worker, id: u32, bytes: &[u8], end: bool) -> Vec<u8> {
    worker.host.with_request(id, |request| request.response_body = bytes.to_vec());
    assert_eq!(worker.runtime.on_response_body(&worker.host, id, Some(bytes.len()), end), Action::Continue);
    worker.host.request(id).unwrap().response_body
}

#[test]
fn events_are_read_and_forwarded_as_they_complete() {
    let mut worker = Worker::first(&host());
    assert_eq!(answered(&mut worker, 1, "text/event-stream", false), Action::Continue);
    // Its length is unknown once events may change.
    let headers = worker.host.request(1).unwrap().response_headers;
    assert!(!headers.iter().any(|(name, _)| name == "content-length"));
    // A complete event goes on at once, rewritten; the start of the next
    // waits for its end (an event split within its CRLF included).
    assert_eq!(chunk(&mut worker, 1, b"data: rewrite 1\n\nda", false), b"data: done 1 (t+)\n\n");
    assert_eq!(chunk(&mut worker, 1, b"ta: x\r\n\r", false), b"");
    assert_eq!(chunk(&mut worker, 1, b"\n: ping\n\n", false), b"data: x\r\n\r\n: ping\n\n");
    // An unterminated end of the stream passes as it is.
    assert_eq!(chunk(&mut worker, 1, b"data: rewrite", true), b"data: rewrite");
    assert_eq!(worker.runtime.held(), 0);
    // Once done, nothing of it is kept.
    assert!(worker.runtime.held.is_empty());
}

#[test]
fn an_event_larger_than_the_limit_stops_the_reading() {
    let mut worker = Worker::first(&host());
    answered(&mut worker, 1, "text/event-stream", false);
    // The limit is 16 bytes: this event's start is larger, so it and all
    // that follows pass unread.
    assert_eq!(chunk(&mut worker, 1, b"data: rewrite-this-is-long", false), b"data: rewrite-this-is-long");
    assert_eq!(chunk(&mut worker, 1, b"\n\ndata: rewrite\n\n", true), b"\n\ndata: rewrite\n\n");
    assert!(worker.runtime.held.is_empty());
}

#[test]
fn a_refused_answer_becomes_the_filters_reply_and_nothing_of_it_follows() {
    let mut worker = Worker::first(&host());
    assert_eq!(answered(&mut worker, 1, "application/json", false), Action::Pause);
    worker.host.with_request(1, |request| request.response_body = b"{\"more than sixteen bytes\"".to_vec());
    assert_eq!(worker.runtime.on_response_body(&worker.host, 1, Some(26), false), Action::Continue);
    let request = worker.host.request(1).unwrap();
    assert!(request.response_headers.contains(&(":status".to_string(), b"502".to_vec())));
    assert!(String::from_utf8_lossy(&request.response_body).contains("too large to read"));
    // The rest of the upstream's answer is dropped.
    assert_eq!(chunk(&mut worker, 1, b"...}", true), b"");
    assert!(worker.runtime.held.is_empty());
}

#[test]
fn an_answer_without_a_body_is_not_held() {
    let mut worker = Worker::first(&host());
    assert_eq!(answered(&mut worker, 1, "application/json", true), Action::Continue);
    assert!(worker.runtime.held.is_empty());
}

// ---- calls made once for the fleet ----

const LEASE_GRANTED: &str = r#"{"header":{"revision":"3"},"ID":"7","TTL":"3"}"#;

/// etcd's answer to a read of `key` holding `value` (`None`: absent).
fn range_answer(key: &str, value: Option<&[u8]>) -> String {
    match value {
        None => r#"{"header":{"revision":"3"}}"#.to_string(),
        Some(value) => format!(
            r#"{{"header":{{"revision":"3"}},"kvs":[{{"key":"{}","create_revision":"3","mod_revision":"3","value":"{}","lease":"7"}}],"count":"1"}}"#,
            STANDARD.encode(key),
            STANDARD.encode(value)
        ),
    }
}

/// etcd's answer to a create-if-absent of `key` that found `value` there.
fn claim_taken(key: &str, value: &[u8]) -> String {
    format!(
        r#"{{"header":{{"revision":"3"}},"responses":[{{"response_range":{}}}]}}"#,
        range_answer(key, Some(value))
    )
}

/// The calls dispatched since `seen`, as (path, id).
fn new_calls(worker: &Worker, seen: &mut usize) -> Vec<(String, u32)> {
    let calls = worker.host.calls();
    let new = calls[*seen..].iter().map(|call| (call.path.clone(), call.id)).collect();
    *seen = calls.len();
    new
}

/// A worker whose requests 1 and 2 need `fleet:t`, its claim's lease
/// granted: the claim is out. Returns the claim's callout.
fn claiming(worker: &mut Worker, seen: &mut usize) -> u32 {
    worker.needing(1, "fleet:t");
    worker.needing(2, "fleet:t");
    worker.tick();
    let [(path, lease)] = &new_calls(worker, seen)[..] else { panic!("one lease first") };
    assert_eq!(path, "/v3/lease/grant");
    worker.answer(*lease, 200, LEASE_GRANTED);
    let [(path, claim)] = &new_calls(worker, seen)[..] else { panic!("then the claim, at once") };
    assert_eq!(path, "/v3/kv/txn");
    *claim
}

#[test]
fn a_fleet_call_this_replica_claims_is_made_here_once() {
    let mut worker = Worker::first(&host());
    let mut seen = 0;
    let claim = claiming(&mut worker, &mut seen);
    let sent = worker.host.calls().last().unwrap().body.clone();
    let sent = String::from_utf8(sent).unwrap();
    assert!(sent.contains(&STANDARD.encode(crate::fleet::PENDING)), "the claim is the marker: {sent}");
    worker.answer(claim, 200, MARK_CREATED);
    let [(path, call)] = &new_calls(&worker, &mut seen)[..] else { panic!("then the IdP") };
    assert_eq!(path, "/token");
    worker.answer(*call, 200, "tok");
    for id in [1, 2] {
        assert_eq!(worker.token_sent(id).as_deref(), Some("tok"));
    }
    assert_eq!(worker.runtime.filter.called_here, [CallHere::Claimed]);
}

#[test]
fn a_fleet_call_another_replica_claimed_is_followed_until_its_token_is_there() {
    let mut worker = Worker::first(&host());
    let mut seen = 0;
    let claim = claiming(&mut worker, &mut seen);
    worker.answer(claim, 200, &claim_taken("t", crate::fleet::PENDING));
    assert!(new_calls(&worker, &mut seen).is_empty(), "no IdP call: another replica makes it");
    worker.tick();
    assert_eq!(worker.host.tick_period(), Some(FOLLOW_POLL), "and reads the key that often");
    assert!(new_calls(&worker, &mut seen).is_empty(), "not before the poll is due");
    // Still pending, then the token.
    worker.host.advance_millis(30);
    worker.tick();
    let [(path, read)] = &new_calls(&worker, &mut seen)[..] else { panic!("a read") };
    assert_eq!(path, "/v3/kv/range");
    worker.answer(*read, 200, &range_answer("t", Some(crate::fleet::PENDING)));
    worker.host.advance_millis(30);
    worker.tick();
    let [(_, read)] = &new_calls(&worker, &mut seen)[..] else { panic!("another read") };
    worker.answer(*read, 200, &range_answer("t", Some(b"tok:remote")));
    for id in [1, 2] {
        assert_eq!(worker.token_sent(id).as_deref(), Some("remote"), "request {id}");
    }
    assert!(worker.host.calls().iter().all(|call| call.cluster == "etcd"), "never the IdP");
    assert!(worker.runtime.filter.called_here.is_empty());
    // The next request finds it cached.
    assert_eq!(worker.needing(3, "fleet:t"), Action::Continue);
    assert_eq!(worker.runtime.held(), 0);
}

#[test]
fn a_claim_that_goes_away_is_claimed_again_and_a_stuck_one_is_not_waited_for() {
    // The claimant failed: the key is gone, this replica claims and calls.
    let mut worker = Worker::first(&host());
    let mut seen = 0;
    let claim = claiming(&mut worker, &mut seen);
    worker.answer(claim, 200, &claim_taken("t", crate::fleet::PENDING));
    worker.host.advance_millis(30);
    worker.tick();
    let [(_, read)] = &new_calls(&worker, &mut seen)[..] else { panic!("a read") };
    worker.answer(*read, 200, &range_answer("t", None));
    worker.tick();
    let [(path, lease)] = &new_calls(&worker, &mut seen)[..] else { panic!("a new claim") };
    assert_eq!(path, "/v3/lease/grant");
    worker.answer(*lease, 200, LEASE_GRANTED);
    let [(_, claim)] = &new_calls(&worker, &mut seen)[..] else { panic!("its claim") };
    worker.answer(*claim, 200, MARK_CREATED);
    let [(path, _)] = &new_calls(&worker, &mut seen)[..] else { panic!("the IdP") };
    assert_eq!(path, "/token");
    assert_eq!(worker.runtime.filter.called_here, [CallHere::Claimed]);

    // A claim still there after its lease could have ended is no live
    // call's: this replica calls.
    let mut worker = Worker::first(&host());
    let mut seen = 0;
    let claim = claiming(&mut worker, &mut seen);
    worker.answer(claim, 200, &claim_taken("t", crate::fleet::PENDING));
    worker.host.advance_millis(4_100);
    worker.tick();
    let [(_, read)] = &new_calls(&worker, &mut seen)[..] else { panic!("a read") };
    worker.answer(*read, 200, &range_answer("t", Some(crate::fleet::PENDING)));
    let [(path, _)] = &new_calls(&worker, &mut seen)[..] else { panic!("the IdP") };
    assert_eq!(path, "/token");
    assert_eq!(worker.runtime.filter.called_here, [CallHere::NoUsableClaim]);
}

#[test]
fn a_store_fault_or_an_unusable_value_makes_the_replica_call_the_idp() {
    for (step, answer) in [
        (0, (503, "unavailable".to_string())),
        (1, (200, "<html>".to_string())),
        (1, (200, claim_taken("t", b"garbage"))),
    ] {
        let mut worker = Worker::first(&host());
        let mut seen = 0;
        worker.needing(1, "fleet:t");
        worker.tick();
        let [(_, lease)] = &new_calls(&worker, &mut seen)[..] else { panic!("a lease") };
        if step == 0 {
            worker.answer(*lease, answer.0, &answer.1);
        } else {
            worker.answer(*lease, 200, LEASE_GRANTED);
            let [(_, claim)] = &new_calls(&worker, &mut seen)[..] else { panic!("a claim") };
            worker.answer(*claim, answer.0, &answer.1);
        }
        let [(path, call)] = &new_calls(&worker, &mut seen)[..] else { panic!("the IdP, for {answer:?}") };
        assert_eq!(path, "/token");
        worker.answer(*call, 200, "tok");
        assert_eq!(worker.token_sent(1).as_deref(), Some("tok"), "{answer:?}");
        let why = &worker.runtime.filter.called_here;
        assert!(
            matches!(why[..], [CallHere::StoreFault(_)] | [CallHere::NoUsableClaim]),
            "{answer:?}: {why:?}"
        );
    }
    // The store cannot even be reached: called at once.
    let mut worker = Worker::first(&host());
    worker.needing(1, "fleet:t");
    worker.host.refuse_dispatch(true);
    worker.tick();
    assert_eq!(worker.runtime.filter.called_here, [CallHere::StoreFault("store_no_response")]);
}
