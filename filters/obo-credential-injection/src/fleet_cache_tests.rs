//! With a `store` section (issue 16): exchanged tokens shared by a fleet of
//! Envoys through etcd. Each replica here is its own runtime on its own
//! host (no shared data in common); one in-memory etcd answers their calls
//! as etcd 3.4's JSON gateway writes them.

use std::cell::RefCell;
use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use baton_filter_kit::handoff::{VERIFIED_TOKEN_PROPERTY, verified_value};
use baton_filter_kit::host::{CalloutResponse, Counter};
use baton_filter_kit::runtime::{Action, Plugin, Runtime};
use baton_filter_kit::test_host::{DispatchedCall, TestHost};
use baton_filter_kit::test_keys::TestKey;
use baton_token::TokenHash;
use serde_json::{Value, json};

use super::OboCredentialInjection;
use crate::fleet_cache::MIN_TTL_SECS;
use crate::metrics;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.test";
const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const HEADER: &str = r#""header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"7","raft_term":"2"}"#;

fn config() -> Value {
    json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "clientId": "agent-broker",
                  "clientSecret": "pw"}],
        "subjectToken": {"validation": "claimEnforcement", "issuers": [ISS]},
        "targets": [
            {"name": "portfolio", "match": {"host": "portfolio.internal"}, "mode": "tokenExchange", "idp": "corp",
             "audiences": ["portfolio-agent"], "scope": "portfolio:read"},
            {"name": "ledger", "match": {"host": "ledger.internal"}, "mode": "tokenExchange", "idp": "corp",
             "audiences": ["ledger-agent"], "scope": "ledger:read"}
        ],
        "cache": {"expiryMarginSeconds": 30},
        "store": {"etcd": {"cluster": "etcd", "timeoutMs": 500},
                  "sealingKeys": [{"id": "k1", "secret": K1}], "currentKey": "k1"}
    })
}

/// How etcd fails a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// No answer (reset, connection refused, Envoy's timeout).
    NoAnswer,
    /// etcd's own refusal.
    Refused,
    /// A proxy's error page.
    Status,
    /// 200 with what is not etcd's JSON.
    Garbage,
    /// Never answered: the request waits past the store's timeout.
    Silent,
}

/// One etcd for the fleet: its keys, and the faults it is told to make.
#[derive(Default)]
struct Etcd {
    data: RefCell<HashMap<Vec<u8>, Vec<u8>>>,
    faults: RefCell<HashMap<&'static str, Fault>>,
    next_lease: RefCell<i64>,
    /// TTLs asked for.
    ttls: RefCell<Vec<u64>>,
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(value: &Value) -> Vec<u8> {
    STANDARD.decode(value.as_str().unwrap()).unwrap()
}

impl Etcd {
    fn fail(&self, path: &'static str, fault: Fault) {
        self.faults.borrow_mut().insert(path, fault);
    }

    /// The answer to `call` (`None`: it is left unanswered).
    fn answer(&self, call: &DispatchedCall) -> Option<CalloutResponse> {
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        let (status, text) = match self.faults.borrow().get(call.path.as_str()) {
            Some(Fault::Silent) => return None,
            Some(Fault::NoAnswer) => (None, String::new()),
            Some(Fault::Refused) => (
                Some(503),
                r#"{"error":"etcdserver: request timed out","code":14,"message":"etcdserver: request timed out"}"#
                    .to_string(),
            ),
            Some(Fault::Status) => (Some(502), "<html>bad gateway</html>".to_string()),
            Some(Fault::Garbage) => (Some(200), "<html>".to_string()),
            None => (Some(200), self.serve(&call.path, &body)),
        };
        Some(CalloutResponse { status, body: text.into_bytes(), body_too_large: false })
    }

    /// A range answer for `key`.
    fn range(&self, key: &[u8]) -> String {
        match self.data.borrow().get(key) {
            // etcd 3.4 leaves `kvs` and `count` out when nothing is found.
            None => format!("{{{HEADER}}}"),
            Some(value) => format!(
                r#"{{{HEADER},"kvs":[{{"key":"{}","create_revision":"5","mod_revision":"5","version":"1","value":"{}","lease":"7587883316386093063"}}],"count":"1"}}"#,
                b64(key),
                b64(value)
            ),
        }
    }

    fn serve(&self, path: &str, body: &Value) -> String {
        match path {
            "/v3/kv/range" => self.range(&unb64(&body["key"])),
            "/v3/kv/txn" => {
                // Create-if-absent: the put if the key was never created,
                // else the range of what is there.
                let put = &body["success"][0]["request_put"];
                let key = unb64(&put["key"]);
                assert_eq!(unb64(&body["compare"][0]["key"]), key);
                assert!(put["lease"].as_str().is_some_and(|lease| lease != "0"), "claimed with a lease");
                if self.data.borrow().contains_key(&key) {
                    return format!(
                        r#"{{{HEADER},"responses":[{{"response_range":{}}}]}}"#,
                        self.range(&key)
                    );
                }
                self.data.borrow_mut().insert(key, unb64(&put["value"]));
                format!(r#"{{{HEADER},"succeeded":true,"responses":[{{"response_put":{{{HEADER}}}}}]}}"#)
            }
            "/v3/kv/deleterange" => {
                let deleted = self.data.borrow_mut().remove(&unb64(&body["key"])).is_some();
                if deleted { format!(r#"{{{HEADER},"deleted":"1"}}"#) } else { format!("{{{HEADER}}}") }
            }
            "/v3/lease/grant" => {
                let ttl: u64 = body["TTL"].as_str().unwrap().parse().unwrap();
                self.ttls.borrow_mut().push(ttl);
                *self.next_lease.borrow_mut() += 1;
                let id = 7_587_883_316_386_093_000 + *self.next_lease.borrow();
                format!(r#"{{{HEADER},"ID":"{id}","TTL":"{ttl}"}}"#)
            }
            "/v3/kv/put" => {
                assert!(body["lease"].as_str().is_some_and(|lease| lease != "0"), "written with a lease");
                self.data.borrow_mut().insert(unb64(&body["key"]), unb64(&body["value"]));
                format!("{{{HEADER}}}")
            }
            other => panic!("unexpected etcd call {other}"),
        }
    }
}

/// One Envoy of the fleet: its own runtime, its own host.
struct Replica {
    name: &'static str,
    runtime: Runtime<OboCredentialInjection>,
    host: TestHost,
    answered: Vec<u32>,
    /// Tokens this replica's IdP issued.
    issued: Vec<String>,
}

impl Replica {
    fn new(name: &'static str) -> Self {
        Self::with(name, config())
    }

    fn with(name: &'static str, config: Value) -> Self {
        let host = TestHost::new(NOW);
        let filter = OboCredentialInjection::configure(config.to_string().as_bytes()).unwrap();
        let leases = filter.leases();
        let mut runtime = Runtime::new(filter, leases);
        runtime.start(&host);
        Self { name, runtime, host, answered: Vec::new(), issued: Vec::new() }
    }

    /// `subject` calls `target_host` as request `id`.
    fn start(&mut self, id: u32, subject: &str, target_host: &str) -> Action {
        let bearer = format!("Bearer {subject}");
        let verified = verified_value(&TokenHash::of(subject.as_bytes())).into_bytes();
        self.host.add_request(
            id,
            &[(":method", "GET"), (":path", "/api"), (":authority", target_host), ("authorization", &bearer)],
        );
        self.host.with_request(id, |r| r.properties.insert(VERIFIED_TOKEN_PROPERTY.to_string(), verified));
        self.runtime.on_request_headers(&self.host, id, true)
    }

    /// Ticks and answers every call (the IdP with a new token each time,
    /// etcd as `etcd` does) until nothing is left to answer.
    fn settle(&mut self, etcd: &Etcd) {
        self.settle_with(etcd, true);
    }

    /// As [`Replica::settle`]; with `idp` false the IdP's calls are left
    /// unanswered (still out).
    fn settle_with(&mut self, etcd: &Etcd, idp: bool) {
        let mut quiet_ticks = 0;
        for _ in 0..20 {
            self.runtime.on_tick(&self.host);
            let pending: Vec<DispatchedCall> = self
                .host
                .calls()
                .into_iter()
                .filter(|call| !self.answered.contains(&call.id) && (idp || call.cluster != "idp"))
                .collect();
            if pending.is_empty() {
                // A tick may have queued a call the next one dispatches.
                quiet_ticks += 1;
                if quiet_ticks == 2 {
                    return;
                }
                continue;
            }
            quiet_ticks = 0;
            for call in pending {
                self.answered.push(call.id);
                let response = match call.cluster.as_str() {
                    "idp" => {
                        let token = format!("issued-{}-{}", self.name, self.issued.len() + 1);
                        self.issued.push(token.clone());
                        let body = json!({"access_token": token, "token_type": "Bearer", "expires_in": 600,
                                          "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"});
                        Some(CalloutResponse {
                            status: Some(200),
                            body: body.to_string().into_bytes(),
                            body_too_large: false,
                        })
                    }
                    "etcd" => etcd.answer(&call),
                    other => panic!("unexpected cluster {other}"),
                };
                if let Some(response) = response {
                    let size = response.body.len();
                    self.host.set_callout_response(response);
                    self.runtime.on_callout(&self.host, call.id, 3, size);
                }
            }
        }
        panic!("calls never settled");
    }

    /// The token request `id` went upstream with.
    fn injected(&self, id: u32) -> Option<String> {
        let request = self.host.request(id).unwrap();
        assert!(request.reply.is_none(), "request {id} answered locally: {:?}", request.reply);
        request
            .request_header("authorization")
            .and_then(|value| value.strip_prefix("Bearer ").map(String::from))
    }

    fn calls_to(&self, cluster: &str) -> usize {
        self.host.calls().iter().filter(|call| call.cluster == cluster).count()
    }

    fn count(&self, counter: Counter) -> u64 {
        self.host.counter(counter)
    }

    /// The etcd key of the last store read.
    fn last_read_key(&self) -> Vec<u8> {
        let read = self.host.calls().into_iter().rev().find(|call| call.path == "/v3/kv/range").unwrap();
        unb64(&serde_json::from_slice::<Value>(&read.body).unwrap()["key"])
    }
}

/// A user's token, as claim-enforcement verified it.
fn user(sub: &str) -> String {
    TestKey::es256("k1").token(&json!({"iss": ISS, "sub": sub, "aud": "agent-broker", "azp": "broker-app",
                                       "exp": NOW + 3600, "iat": NOW - 5}))
}

/// No log line of any replica holds a token, a subject token or a store
/// key (as written or as sent).
fn assert_nothing_secret_logged(replicas: &[&Replica], etcd: &Etcd, subjects: &[&str]) {
    let mut secrets: Vec<String> = subjects.iter().map(|s| s.to_string()).collect();
    for replica in replicas {
        secrets.extend(replica.issued.iter().cloned());
        for call in replica.host.calls().iter().filter(|call| call.cluster == "etcd") {
            if let Some(key) = serde_json::from_slice::<Value>(&call.body).unwrap()["key"].as_str() {
                secrets.push(key.to_string());
                secrets.push(String::from_utf8_lossy(&STANDARD.decode(key).unwrap()).into_owned());
            }
        }
    }
    for key in etcd.data.borrow().keys() {
        secrets.push(String::from_utf8_lossy(key).into_owned());
    }
    assert!(secrets.len() > subjects.len(), "the check has something to look for");
    for replica in replicas {
        for (_, line) in replica.host.logs() {
            for secret in &secrets {
                assert!(!line.contains(secret.as_str()), "{} logged a secret: {line}", replica.name);
            }
        }
    }
}

/// Replica `r` serves `subject`'s request to `target` as request `id`.
fn serve(r: &mut Replica, etcd: &Etcd, id: u32, subject: &str, target: &str) -> String {
    assert_eq!(r.start(id, subject, target), Action::Pause, "a local miss waits (for the store)");
    r.settle(etcd);
    r.injected(id).expect("a token was injected")
}

#[test]
fn a_token_exchanged_on_one_replica_is_served_from_the_store_on_another() {
    let etcd = Etcd::default();
    let alice = user("alice");
    let mut a = Replica::new("a");
    let token = serve(&mut a, &etcd, 1, &alice, "portfolio.internal");
    assert_eq!(token, "issued-a-1");
    assert_eq!(a.calls_to("idp"), 1);
    assert_eq!((a.count(metrics::STORE_MISS), a.count(metrics::STORE_WRITTEN)), (1, 1));
    // Claimed for as long as the IdP's call may take (3 s, and one more),
    // then leased for its usable life: expires_in 600 less the 30 s margin.
    assert_eq!(*etcd.ttls.borrow(), [4, 570]);
    assert_eq!(a.count(metrics::STORE_FLIGHT_LED), 1);
    // Stored sealed, under a keyed name: neither the token nor the subject
    // token (nor its hash) in the clear.
    let data = etcd.data.borrow().clone();
    let [(key, value)] = data.iter().collect::<Vec<_>>()[..] else { panic!("{data:?}") };
    let subject_hash = TokenHash::of(alice.as_bytes()).to_hex();
    let key_text = String::from_utf8_lossy(key);
    assert!(key_text.starts_with("baton/") && !key_text.contains(&subject_hash), "{key_text}");
    assert!(!value.windows(token.len()).any(|w| w == token.as_bytes()), "the token is sealed");

    let mut b = Replica::new("b");
    assert_eq!(serve(&mut b, &etcd, 1, &alice, "portfolio.internal"), "issued-a-1");
    assert_eq!(b.calls_to("idp"), 0, "no exchange on the second replica");
    assert_eq!(b.count(metrics::STORE_HIT), 1);
    assert_eq!(b.count(metrics::STORE_WRITTEN), 0, "a token read is not written back");
    // Then from B's own cache: no store call.
    let etcd_calls = b.calls_to("etcd");
    assert_eq!(b.start(2, &alice, "portfolio.internal"), Action::Continue);
    assert_eq!(b.injected(2).as_deref(), Some("issued-a-1"));
    assert_eq!(b.calls_to("etcd"), etcd_calls);
    assert_nothing_secret_logged(&[&a, &b], &etcd, &[&alice]);
}

#[test]
fn another_users_or_another_targets_token_is_not_served() {
    let etcd = Etcd::default();
    let (alice, bob) = (user("alice"), user("bob"));
    let mut a = Replica::new("a");
    assert_eq!(serve(&mut a, &etcd, 1, &alice, "portfolio.internal"), "issued-a-1");
    let alice_key = a.last_read_key();

    let mut b = Replica::new("b");
    assert_eq!(serve(&mut b, &etcd, 1, &bob, "portfolio.internal"), "issued-b-1", "another user");
    assert_ne!(b.last_read_key(), alice_key);
    assert_eq!(serve(&mut b, &etcd, 2, &alice, "ledger.internal"), "issued-b-2", "another target");
    assert_ne!(b.last_read_key(), alice_key);
    assert_eq!((b.calls_to("idp"), b.count(metrics::STORE_MISS), b.count(metrics::STORE_HIT)), (2, 2, 0));

    // Alice's sealed token copied under carol's key does not open there.
    let carol = user("carol");
    let mut c = Replica::new("c");
    assert_eq!(c.start(1, &carol, "portfolio.internal"), Action::Pause);
    let carol_key = c.last_read_key();
    let alice_value = etcd.data.borrow()[&alice_key].clone();
    etcd.data.borrow_mut().insert(carol_key, alice_value);
    c.settle(&etcd);
    assert_eq!(c.injected(1).as_deref(), Some("issued-c-1"), "exchanged for carol, not alice's");
    // Rejected at the read, and again where the claim finds it.
    assert_eq!((c.count(metrics::STORE_REJECTED), c.calls_to("idp")), (2, 1));
    assert_nothing_secret_logged(&[&a, &b, &c], &etcd, &[&alice, &bob, &carol]);
}

#[test]
fn a_value_under_its_own_key_sealed_with_another_key_set_is_not_served() {
    let etcd = Etcd::default();
    let alice = user("alice");
    let mut a = Replica::new("a");
    serve(&mut a, &etcd, 1, &alice, "portfolio.internal");
    let mut other_keys = config();
    other_keys["store"]["sealingKeys"][0]["secret"] = json!("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=");
    let mut b = Replica::with("b", other_keys);
    assert_eq!(b.start(1, &alice, "portfolio.internal"), Action::Pause);
    // B names entries with its own key: give it A's value under B's name.
    let value = etcd.data.borrow().values().next().unwrap().clone();
    etcd.data.borrow_mut().insert(b.last_read_key(), value);
    b.settle(&etcd);
    assert_eq!(b.injected(1).as_deref(), Some("issued-b-1"));
    assert_eq!(b.count(metrics::STORE_REJECTED), 2, "at the read, and where the claim finds it");
}

#[test]
fn a_token_expired_in_the_store_is_a_miss() {
    let etcd = Etcd::default();
    let alice = user("alice");
    let mut a = Replica::new("a");
    serve(&mut a, &etcd, 1, &alice, "portfolio.internal");
    // Past its usable life (600 s less the margin), still in the store (a
    // lease granted longer, or a clock ahead of etcd's).
    let mut b = Replica::new("b");
    b.host.set_now(NOW + 570);
    assert_eq!(serve(&mut b, &etcd, 1, &alice, "portfolio.internal"), "issued-b-1");
    assert_eq!((b.count(metrics::STORE_MISS), b.count(metrics::STORE_HIT), b.calls_to("idp")), (1, 0, 1));
    // One second earlier it is served.
    let mut c = Replica::new("c");
    c.host.set_now(NOW + 569);
    assert_eq!(serve(&mut c, &etcd, 1, &alice, "portfolio.internal"), "issued-b-1");
    assert_eq!(c.calls_to("idp"), 0);
}

#[test]
fn each_store_fault_on_the_read_is_a_miss_then_one_exchange() {
    let alice = user("alice");
    for fault in [Fault::NoAnswer, Fault::Refused, Fault::Status, Fault::Garbage, Fault::Silent] {
        let etcd = Etcd::default();
        etcd.fail("/v3/kv/range", fault);
        let mut r = Replica::new("r");
        assert_eq!(r.start(1, &alice, "portfolio.internal"), Action::Pause);
        if fault == Fault::Silent {
            r.settle(&etcd);
            assert_eq!(r.calls_to("idp"), 0, "waits for the store");
            // Past the store's timeout (0.5 s, a second) and the grace.
            r.host.set_now(NOW + 5);
        }
        r.settle(&etcd);
        assert_eq!(r.injected(1).as_deref(), Some("issued-r-1"), "{fault:?}");
        assert_eq!(r.calls_to("idp"), 1, "{fault:?}");
        assert_eq!((r.count(metrics::STORE_UNAVAILABLE), r.count(metrics::STORE_HIT)), (1, 0), "{fault:?}");
        assert_eq!(r.count(metrics::STORE_WRITTEN), 1, "{fault:?}: written once etcd takes writes");
        assert_nothing_secret_logged(&[&r], &etcd, &[&alice]);
    }
}

#[test]
fn a_store_read_that_cannot_be_dispatched_is_a_miss_then_one_exchange() {
    let etcd = Etcd::default();
    let alice = user("alice");
    let mut r = Replica::new("r");
    r.host.refuse_dispatch(true);
    assert_eq!(r.start(1, &alice, "portfolio.internal"), Action::Pause);
    assert_eq!(r.count(metrics::STORE_UNAVAILABLE), 1);
    r.host.refuse_dispatch(false);
    r.settle(&etcd);
    assert_eq!(r.injected(1).as_deref(), Some("issued-r-1"));
    assert_eq!(
        (r.calls_to("idp"), r.calls_to("etcd")),
        (1, 4),
        "the claim (a lease, the create), the exchange, then the lease and the put"
    );
}

#[test]
fn a_failed_write_does_not_fail_the_request() {
    let alice = user("alice");
    for (path, fault) in [
        ("/v3/lease/grant", Fault::Refused),
        ("/v3/lease/grant", Fault::Garbage),
        ("/v3/kv/put", Fault::NoAnswer),
        ("/v3/kv/put", Fault::Status),
    ] {
        let etcd = Etcd::default();
        etcd.fail(path, fault);
        let mut a = Replica::new("a");
        assert_eq!(serve(&mut a, &etcd, 1, &alice, "portfolio.internal"), "issued-a-1", "{path} {fault:?}");
        assert_eq!((a.count(metrics::STORE_WRITE_FAILED), a.count(metrics::STORE_WRITTEN)), (1, 0));
        assert!(etcd.data.borrow().is_empty());
        // Served from A's cache meanwhile; B exchanges its own.
        assert_eq!(a.start(2, &alice, "portfolio.internal"), Action::Continue);
        let mut b = Replica::new("b");
        assert_eq!(serve(&mut b, &etcd, 1, &alice, "portfolio.internal"), "issued-b-1");
        assert_nothing_secret_logged(&[&a, &b], &etcd, &[&alice]);
    }
}

#[test]
fn a_token_usable_for_less_than_etcds_minimum_ttl_is_not_written() {
    let etcd = Etcd::default();
    // The subject token expires 31 s from now: with the 30 s margin the
    // token is usable for 1 s.
    let short = TestKey::es256("k1").token(&json!({"iss": ISS, "sub": "alice", "aud": "agent-broker",
                                                   "exp": NOW + 30 + MIN_TTL_SECS - 1, "iat": NOW - 5}));
    let mut a = Replica::new("a");
    assert_eq!(serve(&mut a, &etcd, 1, &short, "portfolio.internal"), "issued-a-1");
    assert_eq!(a.calls_to("etcd"), 4, "the read, the claim (lease, create), its release");
    assert_eq!(*etcd.ttls.borrow(), [4], "the claim's lease only");
    assert!(etcd.data.borrow().is_empty(), "the claim released");
}

#[test]
fn without_a_store_nothing_is_asked_of_etcd() {
    let etcd = Etcd::default();
    let mut without = config();
    without.as_object_mut().unwrap().remove("store");
    let mut r = Replica::with("r", without);
    assert_eq!(serve(&mut r, &etcd, 1, &user("alice"), "portfolio.internal"), "issued-r-1");
    assert_eq!((r.calls_to("etcd"), r.calls_to("idp")), (0, 1));
}

#[test]
fn a_replica_whose_idp_of_that_name_is_another_does_not_read_the_token() {
    let etcd = Etcd::default();
    let alice = user("alice");
    let mut a = Replica::new("a");
    serve(&mut a, &etcd, 1, &alice, "portfolio.internal");
    let mut elsewhere = config();
    elsewhere["idps"][0]["tokenPath"] = json!("/oauth2/token");
    let mut b = Replica::with("b", elsewhere);
    assert_eq!(serve(&mut b, &etcd, 1, &alice, "portfolio.internal"), "issued-b-1");
    assert_ne!(b.last_read_key(), a.last_read_key());
    assert_eq!((b.count(metrics::STORE_MISS), b.calls_to("idp")), (1, 1));
}

/// Three replicas, each with requests for alice's exchange at once: one
/// claims it and calls the IdP, the other two follow its claim and take
/// its token from the store.
fn storm() -> (Etcd, String, [Replica; 3]) {
    let etcd = Etcd::default();
    let alice = user("alice");
    let mut replicas = [Replica::new("a"), Replica::new("b"), Replica::new("c")];
    for replica in &mut replicas {
        for id in 1..=5 {
            assert_eq!(replica.start(id, &alice, "portfolio.internal"), Action::Pause);
        }
    }
    // Every replica reads (a miss) and claims before any IdP answers.
    for replica in &mut replicas {
        replica.settle_with(&etcd, false);
    }
    (etcd, alice, replicas)
}

#[test]
fn an_exchange_storm_across_three_replicas_makes_one_idp_call() {
    let (etcd, alice, [mut a, mut b, mut c]) = storm();
    assert_eq!((a.calls_to("idp"), b.calls_to("idp"), c.calls_to("idp")), (1, 0, 0), "A claimed first");
    assert_eq!(a.count(metrics::STORE_FLIGHT_LED), 1);
    a.settle(&etcd);
    for follower in [&mut b, &mut c] {
        follower.host.advance_millis(30);
        follower.settle(&etcd);
    }
    for replica in [&a, &b, &c] {
        for id in 1..=5 {
            assert_eq!(replica.injected(id).as_deref(), Some("issued-a-1"), "{} request {id}", replica.name);
        }
    }
    assert_eq!(a.calls_to("idp") + b.calls_to("idp") + c.calls_to("idp"), 1, "one IdP call for 15 requests");
    assert_eq!((b.count(metrics::STORE_FLIGHT_FOLLOWED), c.count(metrics::STORE_FLIGHT_FOLLOWED)), (1, 1));
    assert_nothing_secret_logged(&[&a, &b, &c], &etcd, &[&alice]);
}

#[test]
fn a_failed_exchange_releases_the_claim_and_a_follower_exchanges_next() {
    let (etcd, alice, [mut a, mut b, _c]) = storm();
    // The IdP is down for A: its requests get 503, the claim is released.
    let call = a.host.calls().into_iter().find(|call| call.cluster == "idp").unwrap();
    a.answered.push(call.id);
    let failed = CalloutResponse { status: Some(503), body: b"down".to_vec(), body_too_large: false };
    a.host.set_callout_response(failed);
    a.runtime.on_callout(&a.host, call.id, 3, 4);
    a.settle_with(&etcd, false);
    assert_eq!(a.host.request(1).unwrap().reply.unwrap().status, 503);
    assert!(etcd.data.borrow().is_empty(), "the claim is gone at once");
    // B, following, finds the key gone, claims it and exchanges.
    b.host.advance_millis(30);
    b.settle(&etcd);
    assert_eq!(b.injected(1).as_deref(), Some("issued-b-1"));
    assert_eq!((b.calls_to("idp"), b.count(metrics::STORE_FLIGHT_LED)), (1, 1));
    assert_nothing_secret_logged(&[&a, &b], &etcd, &[&alice]);
}

#[test]
fn a_follower_whose_store_fails_exchanges_itself() {
    let (etcd, _alice, [_a, mut b, _c]) = storm();
    etcd.fail("/v3/kv/range", Fault::Refused);
    b.host.advance_millis(30);
    b.settle(&etcd);
    assert_eq!(b.injected(1).as_deref(), Some("issued-b-1"), "the IdP is the authority");
    assert_eq!((b.calls_to("idp"), b.count(metrics::STORE_UNAVAILABLE)), (1, 1));
}
