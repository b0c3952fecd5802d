//! The store as a call site of the fault matrix (issue 16): every fault
//! an etcd answer can have, between a real Envoy and a real etcd, against
//! each filter that uses the store.
//!
//! A small HTTP front stands where etcd is and forwards to it, or answers
//! with the fault armed: an error status, an HTML page, malformed JSON,
//! JSON of the wrong shape, the connection closed, a truncated body, an
//! answer on either side of `timeoutMs`. Each row checks what the filter
//! promises for a store it cannot use, then that it recovers once the
//! store answers again:
//! - in-task-auth-code, the bank's redirect with a sealed `state`: its
//!   single use cannot be agreed, so 503 and no code exchanged; the same
//!   redirect goes through once the store is back.
//! - obo-credential-injection, a token to exchange: the store only saves
//!   IdP calls, so the request is exchanged at the IdP and succeeds; the
//!   token is shared again once the store is back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/bank.rs"]
mod bank;
#[path = "common/support.rs"]
mod support;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use baton_harness::{Envoy, EnvoySpec, Etcd};
use echo_backend::EchoBackend;
use http_kit::{ClientRequest, Reply, Request, Response, Server};
use mock_idp::{Endpoint, MockIdp, MockIdpConfig};
use ring::rand::SecureRandom;
use serde_json::{Value, json};
use support::obo_exchange_config;

/// `timeoutMs` of the store in this file.
const TIMEOUT_MS: u64 = 1000;

/// What the front answers instead of etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Status(u16),
    Html,
    MalformedJson,
    /// Valid JSON, but no answer of etcd's to any operation.
    WrongShape,
    Close,
    /// etcd's answer, its body cut in half.
    Truncated,
    /// etcd's answer, after this many milliseconds.
    Delay(u64),
}

/// Where the filters reach "etcd": forwards to the real one unless a fault
/// is armed.
struct StoreFront {
    server: Server,
    fault: Arc<Mutex<Option<Fault>>>,
}

impl StoreFront {
    fn start(etcd: &Etcd) -> StoreFront {
        let fault: Arc<Mutex<Option<Fault>>> = Arc::new(Mutex::new(None));
        let armed = Arc::clone(&fault);
        let etcd = etcd.addr();
        let handler = Arc::new(move |request: &Request| -> Reply {
            let forward = || {
                let mut to_etcd =
                    ClientRequest::new(&request.method, &request.target).body(request.body.clone());
                for (name, value) in &request.headers {
                    to_etcd = to_etcd.header(name, value);
                }
                match http_kit::send(etcd, &to_etcd, Duration::from_secs(5)) {
                    Ok(answer) => {
                        let mut response = Response::new(answer.status, "application/json", answer.body);
                        response.headers.retain(|(name, _)| name != "content-type");
                        for (name, value) in answer.headers.iter().filter(|(n, _)| n == "content-type") {
                            response = response.with_header(name, value);
                        }
                        response
                    }
                    Err(_) => Response::empty(502),
                }
            };
            let fault = *armed.lock().unwrap_or_else(PoisonError::into_inner);
            match fault {
                None => Reply::Respond(forward()),
                Some(Fault::Status(status)) => Reply::Respond(Response::json(
                    status,
                    &json!({"error": "injected", "code": 14, "message": "injected fault"}),
                )),
                Some(Fault::Html) => Reply::Respond(Response::new(
                    200,
                    "text/html; charset=utf-8",
                    "<!DOCTYPE html><html><body><h1>Please sign in</h1></body></html>",
                )),
                Some(Fault::MalformedJson) => {
                    Reply::Respond(Response::new(200, "application/json", r#"{"header": {"revision": "3""#))
                }
                Some(Fault::WrongShape) => Reply::Respond(Response::json(200, &json!({"result": [1, 2, 3]}))),
                Some(Fault::Close) => Reply::Close,
                Some(Fault::Truncated) => Reply::Truncated(forward()),
                Some(Fault::Delay(ms)) => Reply::Delayed(Duration::from_millis(ms), forward()),
            }
        });
        let server = Server::start("127.0.0.1:0", handler).unwrap();
        StoreFront { server, fault }
    }

    fn arm(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }
}

/// Every fault of the matrix, and whether a request that meets it should
/// still find the store usable (an answer inside `timeoutMs`).
fn faults() -> Vec<(&'static str, Fault, bool)> {
    vec![
        ("http_503", Fault::Status(503), false),
        ("http_500", Fault::Status(500), false),
        ("http_404", Fault::Status(404), false),
        ("html", Fault::Html, false),
        ("malformed_json", Fault::MalformedJson, false),
        ("wrong_shape", Fault::WrongShape, false),
        ("closed", Fault::Close, false),
        ("truncated", Fault::Truncated, false),
        ("slower_than_timeout", Fault::Delay(TIMEOUT_MS + 250), false),
        ("inside_timeout", Fault::Delay(TIMEOUT_MS - 250), true),
    ]
}

fn store_section(front: &StoreFront) -> Value {
    let mut secret = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut secret).unwrap();
    json!({"etcd": {"cluster": "etcd", "authority": front.addr().to_string(), "timeoutMs": TIMEOUT_MS},
           "sealingKeys": [{"id": "k1", "secret": STANDARD.encode(secret)}], "currentKey": "k1"})
}

fn assert_no_vm_failed(envoy: &Envoy) {
    let logs = envoy.logs();
    assert!(!logs.contains("panicked") && !logs.contains("Function: proxy_on"), "a filter VM failed");
}

#[test]
fn in_task_redirect_meets_every_store_fault_then_recovers() {
    let etcd = Etcd::start().unwrap_or_else(|e| panic!("{e}"));
    let front = StoreFront::start(&etcd);
    let bank = bank::bank();
    let agent = EchoBackend::start_a2a_agent().unwrap();
    let mut config = bank::filter_config(&bank);
    config["store"] = store_section(&front);
    let spec = EnvoySpec::new(agent.addr())
        .cluster("bank_idp", bank.addr())
        .cluster("etcd", front.addr())
        .filter("in_task_auth_code", config);
    let envoy = Envoy::start(&spec).unwrap_or_else(|e| panic!("Envoy did not start: {e}"));
    let redirect = |code: &str, state: &str| {
        envoy.get(&format!("/a2a/oauth/callback?code={code}&state={state}"), &[("accept", "text/html")])
    };
    let mut exchanged = 0;
    for (name, fault, usable) in faults() {
        let message = json!({"jsonrpc": "2.0", "id": "1", "method": "message/send", "params": {"message": {
            "kind": "message", "role": "user", "messageId": "m-1",
            "parts": [{"kind": "data", "data": {"operation": "transfer", "amount": 1, "to": "bob"}}]}}});
        let challenge = envoy.send(
            &ClientRequest::post("/", "application/json", message.to_string())
                .header("authorization", &bank::bearer("alice")),
        );
        let url = bank::auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
        let (_, code, state) = bank::approve(&bank, &url, "alice");
        let unavailable = envoy.counter("baton_itac.store.unavailable");

        front.arm(Some(fault));
        let page = redirect(&code, &state);
        front.arm(None);
        if usable {
            assert_eq!(page.status, 200, "{name}: {}", page.body_str());
            exchanged += 1;
        } else {
            assert_eq!(page.status, 503, "{name}: {}", page.body_str());
            assert!(page.body_str().contains("try again"), "{name}: {}", page.body_str());
            assert_eq!(
                bank.calls(Endpoint::Token),
                exchanged,
                "{name}: a code exchanged without its single use"
            );
            assert_eq!(envoy.counter("baton_itac.store.unavailable"), unavailable + 1, "{name}");
            // The store answers again: the same redirect goes through, once.
            let page = redirect(&code, &state);
            assert_eq!(page.status, 200, "{name}, after: {}", page.body_str());
            exchanged += 1;
        }
        assert_eq!(bank.calls(Endpoint::Token), exchanged, "{name}");
        assert_eq!(redirect(&code, &state).status, 400, "{name}: used once");
        assert!(!envoy.logs().contains(&state) && !envoy.logs().contains(&code), "{name}: logged");
        assert_no_vm_failed(&envoy);
        eprintln!("in-task redirect, store {name}: {}", if usable { "200" } else { "503, then 200" });
    }
    assert!(agent.requests().is_empty());
}

#[test]
fn obo_exchange_meets_every_store_fault_at_the_idp_then_shares_again() {
    let etcd = Etcd::start().unwrap_or_else(|e| panic!("{e}"));
    let front = StoreFront::start(&etcd);
    let idp = MockIdp::start(MockIdpConfig::default()).unwrap();
    let backend = EchoBackend::start().unwrap();
    let mut config = obo_exchange_config(&idp);
    config["store"] = store_section(&front);
    let replica = || {
        let spec = EnvoySpec::new(backend.addr())
            .cluster("idp", idp.addr())
            .cluster("etcd", front.addr())
            .filter("obo_credential_injection", config.clone());
        Envoy::start(&spec).unwrap_or_else(|e| panic!("Envoy did not start: {e}"))
    };
    let (a, b) = (replica(), replica());
    let token_of = |user: &str| {
        let mut claims = idp.standard_claims(user, "agent-broker", 300);
        claims["scope"] = json!("portfolio:read");
        idp.mint(claims)
    };
    let call = |envoy: &Envoy, token: &str| {
        envoy.send(&ClientRequest::get("/api/positions").header("authorization", &format!("Bearer {token}")))
    };
    for (round, (name, fault, usable)) in faults().into_iter().enumerate() {
        let user = format!("user-{round}");
        let token = token_of(&user);
        let (exchanges, unavailable) = (idp.calls(Endpoint::Token), a.counter("baton_obo.store.unavailable"));
        front.arm(Some(fault));
        let answer = call(&a, &token);
        assert_eq!(answer.status, 200, "{name}: {}", answer.body_str());
        let seen = backend.requests();
        let upstream = seen.last().unwrap().header("authorization").unwrap().to_string();
        let claims = mock_idp::decode_claims_unverified(upstream.strip_prefix("Bearer ").unwrap()).unwrap();
        assert_eq!(
            (claims["sub"].as_str(), claims["aud"].as_str()),
            (Some(user.as_str()), Some("portfolio-agent"))
        );
        assert_eq!(idp.calls(Endpoint::Token), exchanges + 1, "{name}: one exchange at the IdP");
        if !usable {
            assert!(
                a.counter("baton_obo.store.unavailable") > unavailable,
                "{name}: the fault was not counted"
            );
        }
        // Wait out the write that follows the exchange (it may meet the
        // fault too), then the store answers again.
        std::thread::sleep(Duration::from_millis(TIMEOUT_MS + 500));
        front.arm(None);
        // A new exchange on A is written and shared with B: the store works
        // again.
        let (written, hits) = (a.counter("baton_obo.store.written"), b.counter("baton_obo.store.hit"));
        let fresh = token_of(&format!("{user}-after"));
        assert_eq!(call(&a, &fresh).status, 200, "{name}");
        assert!(
            a.wait_for(Duration::from_secs(5), |a| a.counter("baton_obo.store.written") > written),
            "{name}: A wrote nothing after the fault"
        );
        let exchanged = idp.calls(Endpoint::Token);
        assert_eq!(call(&b, &fresh).status, 200, "{name}");
        assert_eq!(idp.calls(Endpoint::Token), exchanged, "{name}: B exchanged again");
        assert_eq!(
            b.counter("baton_obo.store.hit"),
            hits + 1,
            "{name}: B did not take A's token from the store"
        );
        assert_no_vm_failed(&a);
        assert_no_vm_failed(&b);
        eprintln!("obo exchange, store {name}: 200 via the IdP, then shared");
    }
}
