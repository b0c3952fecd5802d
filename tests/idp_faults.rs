//! The IdP fault matrix: every call a filter makes to an IdP (the key set
//! fetch of claim-enforcement, the token exchange and client-credentials
//! grant of obo-credential-injection, the code exchange of
//! in-task-auth-code, from a message credential and from the redirect)
//! against every fault: connection refused, closed, answers on both sides
//! of `timeoutMs`, error statuses, HTML, malformed or incomplete JSON, bad
//! `expires_in`, truncated and oversized bodies.
//!
//! Each row checks the answer (status, error body, no challenge, no token
//! echoed), that the counters moved by exactly what the row explains, that
//! nothing reached the upstream with the caller's or a stale token, that
//! Envoy still answers other requests, and that the filter recovers once
//! the IdP does, within the documented backoff where there is one.
//!
//! One Envoy per table, shared by its rows; the four tables run side by
//! side. Token exchange and code exchange rows run one after another on one
//! IdP. Key set and client-credentials rows each get an IdP of their own (a
//! provider or a grant of their own in one Envoy), faulty from the start,
//! and run side by side. Rows timed against `timeoutMs` start only once
//! every Envoy is up: a starting Envoy can handle a late answer and its
//! timeout in either order. Every row runs even when one fails; the test
//! fails at the end, after printing the matrix and `N faults tried, M
//! handled` (`cargo test -p baton-tests --test idp_faults -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/bank.rs"]
mod bank;
#[path = "common/support.rs"]
mod support;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use baton_harness::{Envoy, EnvoySpec, body_json};
use echo_backend::EchoBackend;
use http_kit::{ClientRequest, ClientResponse, parse_urlencoded};
use mock_idp::{
    ClientRegistration, DEMO_BROKER_SECRET, Endpoint, Fault, MockIdp, MockIdpConfig, decode_claims_unverified,
};
use serde_json::{Value, json};

/// `timeoutMs` of every IdP call in this file.
const TIMEOUT_MS: u64 = 1000;
/// How far the slow answers are from the timeout, either side.
const MARGIN_MS: u64 = 250;
/// claim-enforcement `retryIntervalSeconds`: the first backoff step.
const RETRY_SECS: u64 = 1;
/// claim-enforcement `refreshIntervalSeconds` (the default): the backoff cap.
const REFRESH_SECS: u64 = 300;
/// Longest token endpoint answer the filters read (their
/// `MAX_TOKEN_RESPONSE_BYTES`), and longest key set (`MAX_JWKS_BYTES`).
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
const MAX_JWKS_BYTES: usize = 512 * 1024;
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const BANK_REDIRECT: &str = "https://gateway.test/a2a/oauth/callback";

// ---------------------------------------------------------------- the faults

/// How a row breaks the IdP.
#[derive(Debug, Clone)]
enum Inject {
    /// The IdP is down: nothing listens on its port, connections are
    /// refused. Recovery: it comes back on the same port.
    Down,
    /// A fault the mock IdP serves on the endpoint the row calls.
    Fault(Fault),
}

/// Which `baton_obo.idp.*` counter a failed call belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// No answer, 5xx, or a 4xx without an OAuth error.
    Unavailable,
    /// A 4xx with an RFC 6749 error (the mock's `server_error`).
    Rejected,
    /// A 200 whose body is not a usable answer.
    InvalidResponse,
}

impl Class {
    fn obo_counter(self) -> &'static str {
        match self {
            Class::Unavailable => "baton_obo.idp.unavailable",
            Class::Rejected => "baton_obo.idp.rejected",
            Class::InvalidResponse => "baton_obo.idp.invalid_response",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The call fails and is counted in this class.
    Fails(Class),
    /// The call succeeds: a slow answer within the timeout, a tolerated field.
    Succeeds,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    inject: Inject,
    expect: Expect,
    /// The access token a `Json` fault serves, when the row expects it used.
    served: Option<String>,
}

fn fails(name: impl Into<String>, inject: Inject, class: Class) -> Case {
    Case { name: name.into(), inject, expect: Expect::Fails(class), served: None }
}

fn succeeds(name: impl Into<String>, fault: Fault, served: Option<String>) -> Case {
    Case { name: name.into(), inject: Inject::Fault(fault), expect: Expect::Succeeds, served }
}

fn delay(ms: u64) -> Inject {
    Inject::Fault(Fault::Delay(Duration::from_millis(ms)))
}

/// Faults every IdP call can meet, whatever it asks for.
fn transport_cases(oversized: usize) -> Vec<Case> {
    use Class::*;
    let fault = Inject::Fault;
    vec![
        fails("connection refused (IdP down)", Inject::Down, Unavailable),
        fails("connection closed, no answer", fault(Fault::Close), Unavailable),
        fails(format!("timeout (answer after {} ms)", 2 * TIMEOUT_MS), delay(2 * TIMEOUT_MS), Unavailable),
        succeeds(
            format!("slow, {MARGIN_MS} ms under the timeout"),
            Fault::Delay(Duration::from_millis(TIMEOUT_MS - MARGIN_MS)),
            None,
        ),
        fails(format!("slow, {MARGIN_MS} ms over the timeout"), delay(TIMEOUT_MS + MARGIN_MS), Unavailable),
        fails("HTTP 400", fault(Fault::Status(400)), Rejected),
        fails("HTTP 401", fault(Fault::Status(401)), Rejected),
        fails("HTTP 500", fault(Fault::Status(500)), Unavailable),
        fails("HTTP 503", fault(Fault::Status(503)), Unavailable),
        fails("HTML instead of JSON", fault(Fault::Html), InvalidResponse),
        fails("malformed JSON", fault(Fault::MalformedJson), InvalidResponse),
        fails("truncated body", fault(Fault::Truncated), Unavailable),
        fails(
            format!("oversized body ({} KiB)", oversized / 1024),
            fault(Fault::Oversized(oversized)),
            InvalidResponse,
        ),
    ]
}

/// Faults of a token endpoint. `good` is a token the IdP could have issued:
/// the rows whose answer is acceptable expect it injected.
fn token_cases(good: &str, token_exchange: bool) -> Vec<Case> {
    let answer = |fields: Value| {
        let mut body = json!({"access_token": good, "token_type": "Bearer"});
        if token_exchange {
            body["issued_token_type"] = json!(ACCESS_TOKEN_TYPE);
        }
        for (name, value) in fields.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(name);
            } else {
                body[name] = value.clone();
            }
        }
        Fault::Json(body)
    };
    let invalid =
        |name: &str, fields: Value| fails(name, Inject::Fault(answer(fields)), Class::InvalidResponse);
    let mut cases = transport_cases(MAX_TOKEN_RESPONSE_BYTES + 36 * 1024);
    cases.extend([
        invalid("JSON without access_token", json!({"access_token": null, "expires_in": 300})),
        invalid("expires_in negative (-300)", json!({"expires_in": -300})),
        succeeds(
            "expires_in huge (10^10 s; used at most 1 day)",
            answer(json!({"expires_in": 10_000_000_000u64})),
            Some(good.to_string()),
        ),
        invalid("expires_in a string (\"soon\")", json!({"expires_in": "soon"})),
        succeeds(
            "expires_in a digit string (\"300\", Entra v1)",
            answer(json!({"expires_in": "300"})),
            Some(good.to_string()),
        ),
    ]);
    cases
}

/// Faults of a key set fetch: the transport ones, and content that is JSON
/// but no usable key set (the JWKS counterpart of a missing access_token).
fn jwks_cases() -> Vec<Case> {
    let mut cases = transport_cases(MAX_JWKS_BYTES + 88 * 1024);
    cases.extend([
        fails(
            "JSON without keys",
            Inject::Fault(Fault::Json(json!({"issuer": "https://elsewhere"}))),
            Class::InvalidResponse,
        ),
        fails("empty key set", Inject::Fault(Fault::Json(json!({"keys": []}))), Class::InvalidResponse),
    ]);
    cases
}

/// Whether the row's fault is timed against `timeoutMs`.
fn timed(case: &Case) -> bool {
    matches!(case.inject, Inject::Fault(Fault::Delay(_)))
}

/// What an IdP serves while Envoy starts, for the tables whose IdPs are
/// faulty from the start: the row's own fault, except that a timed one
/// waits until Envoy has settled (an Envoy busy starting can handle a late
/// answer and its timeout in either order); a 503 stands in until then.
fn startup_inject(case: &Case) -> Inject {
    if timed(case) { Inject::Fault(Fault::Status(503)) } else { case.inject.clone() }
}

/// Switches a timed row's fault on once Envoy has settled, and waits for
/// the IdP to be called with it.
fn arm_timed(idp: &mut Idp, case: &Case, endpoint: Endpoint) {
    if !timed(case) {
        return;
    }
    let seen = idp.up().calls(endpoint);
    idp.arm(&case.inject, endpoint);
    wait_until(Duration::from_secs(15), "a call with the timed fault", || idp.up().calls(endpoint) > seen);
}

fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Holds every table until all Envoys are up, so that no timed row runs
/// while another Envoy starts. Passed on drop too: a table that fails
/// during setup does not hold the others forever.
struct Gate<'a> {
    barrier: &'a Barrier,
    passed: Cell<bool>,
}

impl Gate<'_> {
    fn pass(&self) {
        if !self.passed.replace(true) {
            self.barrier.wait();
        }
    }
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        self.pass();
    }
}

// ------------------------------------------------------------------ the IdPs

/// A mock IdP that can be down (connections refused) and come back on the
/// same port, with the same issuer, keys and clients.
///
/// Only an IdP no Envoy has connected to yet is stopped: stopping an
/// `http_kit` server while a client holds an idle keep-alive connection can
/// hang (its stop signal is `ErrorKind::Interrupted`, which std's buffered
/// reads retry forever). An IdP that goes down while Envoy runs is an
/// [`Idp::outage_of`] instead: a port nobody listens on until it comes back.
struct Idp {
    server: Option<MockIdp>,
    config: MockIdpConfig,
    addr: SocketAddr,
}

impl Idp {
    fn start(config: MockIdpConfig) -> Idp {
        let server = support::idp_with(config);
        let mut config = server.config().clone();
        config.port = server.port();
        config.keys = ["ES256", "RS256"].into_iter().filter_map(|alg| server.active_key(alg)).collect();
        Idp { addr: server.addr(), server: Some(server), config }
    }

    /// A stand-in for `template` that is down: nothing listens on its port
    /// until [`Idp::disarm`] starts it (same issuer, keys and clients).
    fn outage_of(template: &Idp) -> Idp {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = template.config.clone();
        config.port = port;
        config.issuer = Some(template.up().issuer());
        Idp { server: None, config, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    }

    fn up(&self) -> &MockIdp {
        self.server.as_ref().expect("the IdP is up")
    }

    fn arm(&mut self, inject: &Inject, endpoint: Endpoint) {
        match inject {
            Inject::Down => {
                if let Some(server) = self.server.take() {
                    server.shutdown();
                }
            }
            Inject::Fault(fault) => self.up().set_fault(endpoint, fault.clone(), None),
        }
    }

    /// Clears the fault, or starts the IdP again.
    fn disarm(&mut self) {
        match &self.server {
            Some(server) => server.clear_faults(),
            None => {
                self.server = Some(MockIdp::start(self.config.clone()).expect("the IdP starts again"));
            }
        }
    }
}

// ------------------------------------------------------------- the results

/// One row of the printed matrix.
#[derive(Debug)]
struct Row {
    filter: &'static str,
    call: &'static str,
    fault: String,
    answer: String,
    counters: String,
    recovery: String,
    error: Option<String>,
}

/// What a row saw, and what it did to the table's counters.
#[derive(Debug, Default)]
struct Observed {
    answer: String,
    counters: String,
    recovery: String,
    tally: Tally,
}

/// Requests and calls of a row, summed to check a shared Envoy's totals.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Requests answered 503.
    denied: u64,
    /// Requests forwarded.
    allowed: u64,
    /// Requests answered by the filter for other reasons (liveness probes).
    other: u64,
    /// IdP calls made.
    calls: u64,
    /// Failed IdP calls.
    failures: u64,
    /// Class of the failures.
    class: Option<Class>,
}

#[derive(Debug, Default)]
struct Table {
    rows: Vec<Row>,
    /// Totals that did not add up.
    problems: Vec<String>,
}

impl Row {
    /// Runs a recovery check of a row whose attempt was handled: its text
    /// becomes the row's recovery, a panic its error.
    fn then(mut self, recovery: impl FnOnce() -> String) -> Row {
        if self.error.is_none() {
            match panic::catch_unwind(AssertUnwindSafe(recovery)) {
                Ok(text) => self.recovery = text,
                Err(payload) => self.error = Some(panic_message(&*payload)),
            }
        }
        self
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "panicked".to_string())
}

fn run_row(
    filter: &'static str,
    call: &'static str,
    case: &Case,
    row: impl FnOnce() -> Observed,
) -> (Row, Tally) {
    let result = panic::catch_unwind(AssertUnwindSafe(row));
    let fault = case.name.clone();
    match result {
        Ok(seen) => (
            Row {
                filter,
                call,
                fault,
                answer: seen.answer,
                counters: seen.counters,
                recovery: seen.recovery,
                error: None,
            },
            seen.tally,
        ),
        Err(payload) => {
            let message = panic_message(&*payload);
            let unknown = || "?".to_string();
            let row = Row {
                filter,
                call,
                fault,
                answer: unknown(),
                counters: unknown(),
                recovery: unknown(),
                error: Some(message),
            };
            (row, Tally::default())
        }
    }
}

// ------------------------------------------------------------------ helpers

/// The filter's counters under `prefix` (e.g. `baton_obo`), by name without
/// `wasmcustom.`; one admin call.
fn counters(envoy: &Envoy, prefix: &str) -> BTreeMap<String, u64> {
    let response = envoy.admin_get(&format!("/stats?format=json&filter={prefix}")).expect("admin answers");
    let stats = response.json().expect("stats are JSON");
    stats["stats"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|stat| {
            let name = stat["name"].as_str()?.strip_prefix("wasmcustom.")?;
            Some((name.to_string(), stat["value"].as_u64()?))
        })
        .collect()
}

/// Counters that moved between two readings, by how much.
fn changes(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(name, value)| {
            let moved = value - before.get(name).copied().unwrap_or(0);
            (moved > 0).then(|| (name.clone(), moved))
        })
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().filter(|(_, n)| *n > 0).map(|(name, n)| ((*name).to_string(), *n)).collect()
}

/// Nonzero counters only.
fn nonzero(all: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    all.into_iter().filter(|(_, n)| *n > 0).collect()
}

/// `503 temporarily_unavailable` with `retry-after: 5`, no challenge, and
/// nothing of `token` in the body.
fn assert_temporarily_unavailable(response: &ClientResponse, token: &str) {
    assert_eq!(response.status, 503, "{}", response.body_str());
    let body = body_json(response);
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert_eq!(response.header("retry-after"), Some("5"), "retry-after");
    assert!(response.header("www-authenticate").is_none(), "a 503 is not an authentication challenge");
    assert!(!response.body_str().contains(token), "the answer echoes the token");
}

/// Log lines of a filter VM that panicked or trapped (aborted): none may
/// appear, whatever the IdP did.
fn vm_failures(envoy: &Envoy) -> Vec<String> {
    envoy
        .logs()
        .lines()
        .filter(|line| line.contains(": panic: ") || line.contains("Uncaught") || line.contains("wasm trap"))
        .map(String::from)
        .collect()
}

fn check_vms(envoy: &Envoy, table: &mut Table, name: &str) {
    for line in vm_failures(envoy) {
        table.problems.push(format!("{name}: a filter VM failed: {line}"));
    }
}

/// Envoy log lines containing `needle`.
fn log_lines(envoy: &Envoy, needle: &str) -> Vec<String> {
    envoy.logs().lines().filter(|line| line.contains(needle)).map(String::from).collect()
}

/// What a failure line says after `marker`, up to `;`.
fn reason_of(line: &str, marker: &str) -> String {
    line.split_once(marker)
        .map(|(_, rest)| rest.split(';').next().unwrap_or(rest).trim().to_string())
        .unwrap_or_default()
}

/// Polls `request` every 50 ms until it is forwarded (200); counts the 503s
/// on the way, checking each. Returns the time it took.
fn until_recovered(tally: &mut Tally, token: &str, mut request: impl FnMut() -> ClientResponse) -> Duration {
    let cleared = Instant::now();
    loop {
        let response = request();
        match response.status {
            200 => break,
            503 => {
                assert_temporarily_unavailable(&response, token);
                tally.denied += 1;
            }
            other => panic!("while recovering: {other} {}", response.body_str()),
        }
        assert!(cleared.elapsed() < Duration::from_secs(30), "no recovery after 30 s");
        thread::sleep(Duration::from_millis(50));
    }
    tally.allowed += 1;
    cleared.elapsed()
}

fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}

// ------------------------------------------------ claim-enforcement (JWKS)

/// claim-enforcement's documented retry delay after `failures` failed
/// fetches: `retryIntervalSeconds`, doubling, at most the refresh interval.
fn jwks_backoff_secs(failures: u64) -> u64 {
    let doubled = RETRY_SECS.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(REFRESH_SECS)
}

fn claim_enforcement_table(gate: &Gate) -> Table {
    let cases = jwks_cases();
    let mut idps: Vec<Idp> = cases.iter().map(|_| Idp::start(MockIdpConfig::default())).collect();
    let tokens: Vec<String> =
        idps.iter().map(|idp| idp.up().mint(support::claims(idp.up(), "alice"))).collect();
    let backend = support::backend();
    let mut config = support::ce_config(idps[0].up());
    config["providers"] = idps
        .iter()
        .enumerate()
        .map(|(i, idp)| {
            json!({
                "name": format!("p{i}"),
                "issuer": idp.up().issuer(),
                "audiences": [support::AUDIENCE],
                "algorithms": ["ES256", "RS256"],
                "jwks": {"remote": {"cluster": format!("idp_{i}"), "path": "/jwks", "timeoutMs": TIMEOUT_MS,
                                    "minRefetchIntervalSeconds": 1, "retryIntervalSeconds": RETRY_SECS,
                                    "refreshIntervalSeconds": REFRESH_SECS}}
            })
        })
        .collect();
    // Faulty before Envoy starts: no provider has keys yet.
    for (idp, case) in idps.iter_mut().zip(&cases) {
        idp.arm(&startup_inject(case), Endpoint::Jwks);
    }
    let mut spec = EnvoySpec::new(backend.addr()).filter("claim_enforcement", config);
    for (i, idp) in idps.iter().enumerate() {
        spec = spec.cluster(&format!("idp_{i}"), idp.addr);
    }
    let envoy = Envoy::start(&spec).unwrap_or_else(|e| panic!("Envoy did not start: {e}"));
    for (i, _) in cases.iter().enumerate().filter(|(_, case)| timed(case)) {
        let marker = format!("jwks provider=p{i} fetch failed");
        wait_until(Duration::from_secs(10), "the first fetch", || !log_lines(&envoy, &marker).is_empty());
    }
    gate.pass();

    let results: Vec<(Row, Tally)> = thread::scope(|scope| {
        let rows: Vec<_> = idps
            .iter_mut()
            .zip(&cases)
            .zip(&tokens)
            .enumerate()
            .map(|(i, ((idp, case), token))| {
                let (envoy, backend) = (&envoy, &backend);
                scope.spawn(move || {
                    run_row("claim-enforcement", "JWKS fetch", case, || {
                        ce_row(envoy, backend, idp, case, i, token)
                    })
                })
            })
            .collect();
        rows.into_iter().map(|row| row.join().expect("row thread")).collect()
    });

    let mut table = Table::default();
    let all_handled = results.iter().all(|(row, _)| row.error.is_none());
    let sum = |f: fn(&Tally) -> u64| results.iter().map(|(_, tally)| f(tally)).sum::<u64>();
    if all_handled {
        // Every request and every fetch of the shared Envoy, accounted for.
        let expected = counts(&[
            ("baton_ce.allowed", sum(|t| t.allowed)),
            ("baton_ce.allowed_public", sum(|t| t.other)),
            ("baton_ce.cache.miss", sum(|t| t.allowed)),
            ("baton_ce.denied.keys_unavailable", sum(|t| t.denied)),
            ("baton_ce.jwks.fetch_failure", sum(|t| t.failures)),
            ("baton_ce.jwks.fetch_success", cases.len() as u64),
        ]);
        let actual = nonzero(counters(&envoy, "baton_ce"));
        if actual != expected {
            table.problems.push(format!("claim-enforcement totals: expected {expected:?}, got {actual:?}"));
        }
    }
    table.rows = results.into_iter().map(|(row, _)| row).collect();
    check_vms(&envoy, &mut table, "claim-enforcement");
    // Envoy goes first, closing its connections to the IdPs.
    drop(envoy);
    table
}

fn ce_row(
    envoy: &Envoy,
    backend: &EchoBackend,
    idp: &mut Idp,
    case: &Case,
    i: usize,
    token: &str,
) -> Observed {
    let failure_marker = format!("jwks provider=p{i} fetch failed");
    let forwarded = || backend.requests().iter().filter(|r| r.bearer_token() == Some(token)).count();
    let mut tally = Tally::default();
    arm_timed(idp, case, Endpoint::Jwks);
    let first = envoy.get_with_token("/orders", token);
    if case.expect == Expect::Succeeds {
        assert_eq!(first.status, 200, "{}", first.body_str());
        tally.allowed += 1;
        assert_eq!(forwarded(), 1);
        // A timed row failed with the stand-in 503 while Envoy started.
        let failed = log_lines(envoy, &failure_marker).len() as u64;
        assert_eq!(failed > 0, timed(case), "failed fetches");
        assert_eq!(idp.up().calls(Endpoint::Jwks), failed + 1, "fetches");
        tally.failures = failed;
        return Observed {
            answer: "200 forwarded".into(),
            counters: "jwks.fetch_success +1".into(),
            recovery: "-".into(),
            tally,
        };
    }
    assert_temporarily_unavailable(&first, token);
    tally.denied += 1;
    assert_eq!(forwarded(), 0, "forwarded without keys");
    assert_eq!(envoy.get("/healthz", &[]).status, 200, "Envoy still serves");
    tally.other += 1;

    idp.disarm();
    let recovery = until_recovered(&mut tally, token, || envoy.get_with_token("/orders", token));
    assert_eq!(forwarded(), 1, "forwarded once, after recovery");
    let failures = log_lines(envoy, &failure_marker);
    let failed = failures.len() as u64;
    assert!(failed >= 1, "no failed fetch logged");
    // Every faulted call the IdP saw was one failure; the next one succeeded.
    let calls = idp.up().calls(Endpoint::Jwks);
    match case.inject {
        Inject::Down => assert_eq!(calls, 1, "the restarted IdP served the keys once"),
        Inject::Fault(_) => assert_eq!(calls, failed + 1, "faulted calls vs failures logged"),
    }
    // Retried after the documented backoff; a fetch in flight when the
    // fault was cleared may still fail first (timeout), seconds are whole.
    let backoff = jwks_backoff_secs(failed);
    let bound = Duration::from_millis(backoff * 1000 + TIMEOUT_MS + 1000);
    assert!(recovery <= bound, "recovered after {recovery:?}, backoff {backoff} s ({failed} failures)");
    tally.failures = failed;
    let reason = reason_of(failures.last().unwrap(), "fetch failed:");
    Observed {
        answer: "503 temporarily_unavailable".into(),
        counters: format!("jwks.fetch_failure +{failed} ({reason}); denied.keys_unavailable"),
        recovery: format!("{} ms (backoff {backoff} s after {failed})", ms(recovery)),
        tally,
    }
}

// --------------------------------------------- obo-credential-injection

fn obo_user_token(idp: &MockIdp, sub: &str) -> String {
    let mut claims = idp.standard_claims(sub, "agent-broker", 300);
    claims["scope"] = json!("portfolio:read openid");
    claims["azp"] = json!("broker-app");
    idp.mint(claims)
}

fn obo_call(envoy: &Envoy, host: &str, token: Option<&str>) -> ClientResponse {
    let mut request = ClientRequest::get("/api/positions").header("host", host);
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    envoy.send(&request)
}

/// Requests the backend received for `host`.
fn upstream(backend: &EchoBackend, host: &str) -> Vec<http_kit::Request> {
    backend.requests().into_iter().filter(|r| r.header("host") == Some(host)).collect()
}

/// Targets of the token exchange table: by host, one per IdP.
const PORTFOLIO: &str = "portfolio.internal";
const PORTFOLIO_VIA_OUTAGE: &str = "portfolio-down.internal";

fn obo_exchange_table(gate: &Gate) -> Table {
    let mut idp = Idp::start(MockIdpConfig::default());
    // The IdP that is down: a second token endpoint for the same issuer,
    // reached by its own target, where nothing listens until it comes back.
    let mut outage = Idp::outage_of(&idp);
    let backend = support::backend();
    let idp_entry = |name: &str, cluster: &str| {
        json!({"name": name, "cluster": cluster, "tokenPath": "/token", "timeoutMs": TIMEOUT_MS,
               "clientId": "agent-broker", "clientSecret": DEMO_BROKER_SECRET})
    };
    let config = json!({
        "idps": [idp_entry("corp", "idp"), idp_entry("corp-down", "idp_down")],
        "subjectToken": {"validation": "jwks", "providers": [{
            "name": "corp", "issuer": idp.up().issuer(), "audiences": ["agent-broker"], "algorithms": ["ES256", "RS256"],
            "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": TIMEOUT_MS}}}]},
        "targets": [
            {"name": "portfolio", "match": {"host": PORTFOLIO}, "mode": "tokenExchange", "idp": "corp",
             "audiences": ["portfolio-agent"], "scope": "portfolio:read"},
            {"name": "portfolio-down", "match": {"host": PORTFOLIO_VIA_OUTAGE}, "mode": "tokenExchange",
             "idp": "corp-down", "audiences": ["portfolio-agent"], "scope": "portfolio:read"},
            // The matrix is about the IdP; callers of the gateway's own
            // token are not what it tests.
            {"name": "market", "match": {"host": "market.internal"}, "mode": "clientCredentials", "idp": "corp",
             "audiences": ["market-data"], "scope": "quotes", "dangerouslyAllowUnauthenticatedCallers": true}
        ]
    });
    let spec = EnvoySpec::new(backend.addr())
        .cluster("idp", idp.addr)
        .cluster("idp_down", outage.addr)
        .filter("obo_credential_injection", config);
    let envoy = Envoy::start(&spec).unwrap_or_else(|e| panic!("Envoy did not start: {e}"));
    // Subject keys and the market token are in before the faults begin.
    assert!(
        envoy.wait_for(Duration::from_secs(10), |e| obo_call(e, "market.internal", None).status == 200),
        "obo Envoy not ready"
    );
    gate.pass();
    let served = idp.up().mint(idp.up().standard_claims("served-by-fault", "portfolio-agent", 300));
    let cases = token_cases(&served, true);
    let mut table = Table::default();
    for (i, case) in cases.iter().enumerate() {
        let (row, _) = run_row("obo-credential-injection", "token exchange (RFC 8693)", case, || {
            let subject = obo_user_token(idp.up(), &format!("exchange-user-{i}"));
            match case.inject {
                Inject::Down => {
                    exchange_row(&envoy, &backend, &mut outage, PORTFOLIO_VIA_OUTAGE, case, &subject)
                }
                Inject::Fault(_) => exchange_row(&envoy, &backend, &mut idp, PORTFOLIO, case, &subject),
            }
        });
        // Whatever happened, the next row starts from a working IdP.
        idp.disarm();
        table.rows.push(row);
    }
    check_vms(&envoy, &mut table, "obo token exchange");
    // Envoy goes first, closing its connections to the IdPs.
    drop(envoy);
    table
}

/// A request for `host` whose exchange `idp` answers with `case`'s fault.
fn exchange_row(
    envoy: &Envoy,
    backend: &EchoBackend,
    idp: &mut Idp,
    host: &str,
    case: &Case,
    subject: &str,
) -> Observed {
    backend.clear();
    let user = decode_claims_unverified(subject).unwrap()["sub"].as_str().unwrap().to_string();
    let before = counters(envoy, "baton_obo");
    idp.arm(&case.inject, Endpoint::Token);
    let response = obo_call(envoy, host, Some(subject));
    let changed = changes(&before, &counters(envoy, "baton_obo"));
    let never_the_callers = |backend: &EchoBackend| {
        assert!(
            backend.requests().iter().all(|r| r.bearer_token() != Some(subject)),
            "the caller's token reached the upstream"
        );
    };
    let class = match case.expect {
        Expect::Succeeds => {
            assert_eq!(response.status, 200, "{}", response.body_str());
            assert_eq!(
                changed,
                counts(&[
                    ("baton_obo.idp.calls", 1),
                    ("baton_obo.idp.success", 1),
                    ("baton_obo.cache.miss", 1),
                    ("baton_obo.injected", 1)
                ])
            );
            let seen = upstream(backend, host);
            assert_eq!(seen.len(), 1);
            let injected = seen[0].bearer_token().unwrap();
            match &case.served {
                Some(served) => assert_eq!(injected, served),
                None => assert_eq!(decode_claims_unverified(injected).unwrap()["sub"], user.as_str()),
            }
            never_the_callers(backend);
            idp.disarm();
            return Observed {
                answer: "200 injected".into(),
                counters: "idp.success +1, injected +1".into(),
                recovery: "-".into(),
                tally: Tally::default(),
            };
        }
        Expect::Fails(class) => class,
    };
    assert_temporarily_unavailable(&response, subject);
    assert_eq!(
        changed,
        counts(&[("baton_obo.idp.calls", 1), (class.obo_counter(), 1), ("baton_obo.denied.unavailable", 1)]),
        "counters"
    );
    assert!(upstream(backend, host).is_empty(), "forwarded without an exchanged token");
    // Envoy still serves: the market target's cached token needs no IdP.
    assert_eq!(obo_call(envoy, "market.internal", None).status, 200, "Envoy still serves");

    // No backoff and no negative caching: the first request after the IdP
    // is back makes a new call.
    idp.disarm();
    let mut tally = Tally::default();
    let recovery = until_recovered(&mut tally, subject, || obo_call(envoy, host, Some(subject)));
    assert_eq!(tally.denied, 0, "the first request after recovery failed");
    let seen = upstream(backend, host);
    assert_eq!(seen.len(), 1);
    let claims = decode_claims_unverified(seen[0].bearer_token().unwrap()).unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str()),
        (Some(user.as_str()), Some("portfolio-agent")),
        "the token of this user, for this upstream"
    );
    never_the_callers(backend);
    let counter = class.obo_counter().trim_start_matches("baton_obo.");
    Observed {
        answer: "503 temporarily_unavailable".into(),
        counters: format!("{counter} +1, denied.unavailable +1"),
        recovery: format!("{} ms (next request)", ms(recovery)),
        tally,
    }
}

fn obo_client_credentials_table(gate: &Gate) -> Table {
    let probe = Idp::start(MockIdpConfig::default());
    let served = probe.up().mint(probe.up().standard_claims("agent-broker", "market-data", 300));
    let cases = token_cases(&served, false);
    let mut idps: Vec<Idp> = cases.iter().map(|_| Idp::start(MockIdpConfig::default())).collect();
    // A user token the caller sends along: it must never be forwarded.
    let callers: Vec<String> = idps.iter().map(|idp| obo_user_token(idp.up(), "alice")).collect();
    let backend = support::backend();
    let config = json!({
        "idps": (0..cases.len()).map(|i| json!({
            "name": format!("cc{i}"), "cluster": format!("cc_{i}"), "tokenPath": "/token", "timeoutMs": TIMEOUT_MS,
            "clientId": "agent-broker", "clientSecret": DEMO_BROKER_SECRET})).collect::<Vec<_>>(),
        "targets": (0..cases.len()).map(|i| json!({
            "name": format!("cc{i}"), "match": {"host": format!("cc{i}.internal")}, "mode": "clientCredentials",
            "idp": format!("cc{i}"), "audiences": ["market-data"], "scope": "quotes",
            // The matrix is about the IdP, not the callers.
            "dangerouslyAllowUnauthenticatedCallers": true})).collect::<Vec<_>>()
    });
    // Faulty before Envoy starts: the tokens fetched at start fail.
    for (idp, case) in idps.iter_mut().zip(&cases) {
        idp.arm(&startup_inject(case), Endpoint::Token);
    }
    let mut spec = EnvoySpec::new(backend.addr()).filter("obo_credential_injection", config);
    for (i, idp) in idps.iter().enumerate() {
        spec = spec.cluster(&format!("cc_{i}"), idp.addr);
    }
    let started = Instant::now();
    let envoy = Envoy::start(&spec).unwrap_or_else(|e| panic!("Envoy did not start: {e}"));
    for (i, _) in cases.iter().enumerate().filter(|(_, case)| timed(case)) {
        let marker = format!("idp=cc{i} call for client_credentials for target cc{i} failed");
        wait_until(Duration::from_secs(10), "the first call", || !log_lines(&envoy, &marker).is_empty());
    }
    gate.pass();

    let results: Vec<(Row, Tally)> = thread::scope(|scope| {
        let rows: Vec<_> = idps
            .iter_mut()
            .zip(&cases)
            .zip(&callers)
            .enumerate()
            .map(|(i, ((idp, case), caller))| {
                let (envoy, backend) = (&envoy, &backend);
                scope.spawn(move || {
                    run_row("obo-credential-injection", "client credentials", case, || {
                        cc_row(envoy, backend, idp, case, i, caller, started)
                    })
                })
            })
            .collect();
        rows.into_iter().map(|row| row.join().expect("row thread")).collect()
    });

    let mut table = Table::default();
    if results.iter().all(|(row, _)| row.error.is_none()) {
        let sum = |f: &dyn Fn(&Tally) -> u64| results.iter().map(|(_, tally)| f(tally)).sum::<u64>();
        let of_class = |class: Class| sum(&|t| if t.class == Some(class) { t.failures } else { 0 });
        let mut actual = nonzero(counters(&envoy, "baton_obo"));
        // Cache outcomes depend on whether a request or the background
        // renewal got the token first: only their sum is fixed.
        let cache: u64 = ["hit_local", "hit_shared", "miss"]
            .iter()
            .filter_map(|kind| actual.remove(&format!("baton_obo.cache.{kind}")))
            .sum();
        if cache > 0 {
            actual.insert("baton_obo.cache.*".to_string(), cache);
        }
        let expected = counts(&[
            ("baton_obo.idp.calls", sum(&|t| t.calls)),
            ("baton_obo.idp.success", sum(&|t| t.calls - t.failures)),
            ("baton_obo.idp.unavailable", of_class(Class::Unavailable)),
            ("baton_obo.idp.rejected", of_class(Class::Rejected)),
            ("baton_obo.idp.invalid_response", of_class(Class::InvalidResponse)),
            ("baton_obo.denied.unavailable", sum(&|t| t.denied)),
            ("baton_obo.denied.no_target", sum(&|t| t.other)),
            ("baton_obo.injected", sum(&|t| t.allowed)),
            ("baton_obo.cache.*", sum(&|t| t.allowed)),
        ]);
        if actual != expected {
            table.problems.push(format!("client credentials totals: expected {expected:?}, got {actual:?}"));
        }
    }
    table.rows = results.into_iter().map(|(row, _)| row).collect();
    check_vms(&envoy, &mut table, "obo client credentials");
    // Envoy goes first, closing its connections to the IdPs.
    drop(envoy);
    table
}

fn cc_row(
    envoy: &Envoy,
    backend: &EchoBackend,
    idp: &mut Idp,
    case: &Case,
    i: usize,
    caller: &str,
    started: Instant,
) -> Observed {
    let host = format!("cc{i}.internal");
    let failure_marker = format!("idp=cc{i} call for client_credentials for target cc{i} failed");
    let check_upstream = |expected: usize| {
        let seen = upstream(backend, &host);
        assert_eq!(seen.len(), expected, "requests forwarded to {host}");
        for request in &seen {
            let token = request.bearer_token().expect("a token injected");
            assert_ne!(token, caller, "the caller's token reached the upstream");
            match &case.served {
                Some(served) => assert_eq!(token, served),
                None => {
                    let claims = decode_claims_unverified(token).expect("a JWT from the IdP");
                    assert_eq!(
                        (claims["sub"].as_str(), claims["aud"].as_str()),
                        (Some("agent-broker"), Some("market-data"))
                    );
                }
            }
        }
    };
    let mut tally = Tally::default();
    arm_timed(idp, case, Endpoint::Token);
    let first = obo_call(envoy, &host, Some(caller));
    let class = match case.expect {
        Expect::Succeeds => {
            assert_eq!(first.status, 200, "{}", first.body_str());
            tally.allowed += 1;
            check_upstream(1);
            // A timed row failed with the stand-in 503 while Envoy started.
            let failed = log_lines(envoy, &failure_marker).len() as u64;
            assert_eq!(failed > 0, timed(case), "failed calls");
            // Grants whose lease slots collide are called by more than one
            // VM (main thread and worker): at least one success each.
            let calls = idp.up().calls(Endpoint::Token);
            assert!(calls > failed, "{calls} calls, {failed} failed");
            tally.calls = calls;
            tally.failures = failed;
            tally.class = Some(Class::Unavailable);
            return Observed {
                answer: "200 injected".into(),
                counters: "idp.success +1".into(),
                recovery: "-".into(),
                tally,
            };
        }
        Expect::Fails(class) => class,
    };
    assert_temporarily_unavailable(&first, caller);
    tally.denied += 1;
    check_upstream(0);
    let other = obo_call(envoy, "nowhere.internal", None);
    assert_eq!(
        (other.status, body_json(&other)["error"].as_str()),
        (403, Some("access_denied")),
        "Envoy still serves"
    );
    tally.other += 1;

    let down_for = started.elapsed();
    let failed_while_down = log_lines(envoy, &failure_marker).len();
    idp.disarm();
    let recovery = until_recovered(&mut tally, caller, || obo_call(envoy, &host, Some(caller)));
    check_upstream(1);
    // Not documented: the token is asked for again at each tick while it is
    // missing (no backoff), and at once by a request.
    let bound = Duration::from_millis(TIMEOUT_MS + 2000);
    assert!(recovery <= bound, "recovered after {recovery:?}");
    let failed = log_lines(envoy, &failure_marker).len() as u64;
    assert!(failed >= 1);
    // Every call either failed (logged once) or succeeded; a grant whose
    // lease slot another grant shares can be called by both VMs at once.
    let calls = idp.up().calls(Endpoint::Token);
    tally.calls = match case.inject {
        Inject::Down => calls + failed,
        Inject::Fault(_) => calls,
    };
    assert!(tally.calls > failed, "{calls} calls, {failed} failed");
    tally.failures = failed;
    tally.class = Some(class);
    let counter = class.obo_counter().trim_start_matches("baton_obo.");
    Observed {
        answer: "503 temporarily_unavailable".into(),
        counters: format!(
            "{counter} +{failed} ({failed_while_down} calls in {:.1} s down); denied.unavailable",
            down_for.as_secs_f64()
        ),
        recovery: format!("{} ms", ms(recovery)),
        tally,
    }
}

// ------------------------------------------------------- in-task-auth-code

fn bank_config() -> MockIdpConfig {
    MockIdpConfig {
        clients: vec![ClientRegistration::bank_gateway("transfer-gateway", "bank-secret", BANK_REDIRECT)],
        ..MockIdpConfig::default()
    }
}

/// The filter in front of the agent: the bank's keys through `bank_keys`,
/// its token endpoint through `bank_token`.
fn in_task_filter(bank: &MockIdp) -> Value {
    json!({
        "secondaryIdp": {
            "name": "bank",
            "authorizationEndpoint": bank.authorization_endpoint(),
            "tokenEndpoint": bank.token_endpoint(),
            "cluster": "bank_token", "tokenPath": "/token", "timeoutMs": TIMEOUT_MS,
            "clientId": "transfer-gateway", "clientSecret": "bank-secret",
            "redirectUri": BANK_REDIRECT,
            "scopes": ["transfers:write"],
            "audience": "bank-api",
            "providers": [{"name": "bank", "issuer": bank.issuer(), "audiences": ["bank-api"], "algorithms": ["ES256", "RS256"],
                           "jwks": {"remote": {"cluster": "bank_keys", "path": "/jwks", "timeoutMs": TIMEOUT_MS}}}]
        },
        "rules": [{"name": "transfers", "match": {"pathPrefix": "/"},
                   "when": {"source": "data", "pointer": "/operation", "equals": "transfer"}}],
        "primaryIdentity": bank::primary_identity(),
        "userBinding": {"secondaryClaim": "sub"},
        "identityHeader": "x-baton-user"
    })
}

/// A v0.3 `message/send` of a transfer in `task`, with `credentials` in
/// its data part.
fn transfer(task: &str, credentials: Option<Value>) -> Vec<u8> {
    let mut data = json!({"operation": "transfer", "amount": 250, "to": "bob"});
    if let Some(credentials) = credentials {
        data["auth_credentials"] = credentials;
    }
    let message = json!({"kind": "message", "role": "user", "messageId": "m-1", "taskId": task, "contextId": "ctx-1",
                         "parts": [{"kind": "text", "text": "send 250 to bob"}, {"kind": "data", "data": data}]});
    json!({"jsonrpc": "2.0", "id": "req-1", "method": "message/send", "params": {"message": message}})
        .to_string()
        .into_bytes()
}

/// The in-task world: Envoy, the agent, and the bank, whose token endpoint
/// rows break.
struct Bank<'a> {
    envoy: &'a Envoy,
    agent: &'a EchoBackend,
}

impl Bank<'_> {
    fn post_transfer(&self, task: &str, credentials: Option<Value>) -> ClientResponse {
        self.envoy.send(
            &ClientRequest::post("/", "application/json", transfer(task, credentials))
                .header("authorization", &bank::bearer("alice")),
        )
    }

    fn callback(&self, code: &str, state: &str) -> ClientResponse {
        self.envoy
            .get(&format!("/a2a/oauth/callback?code={code}&state={state}"), &[("accept", "application/json")])
    }

    /// Alice is challenged in `task`, authorizes at `bank` (auto-approved by
    /// the mock), and the browser comes back: the code and state of the
    /// redirect.
    fn authorized(&self, bank: &MockIdp, task: &str) -> (String, String) {
        let challenge = self.post_transfer(task, None);
        assert_eq!(challenge.status, 200, "{}", challenge.body_str());
        let body = body_json(&challenge);
        let url = body["result"]["status"]["message"]["parts"]
            .as_array()
            .expect("a status message")
            .iter()
            .find_map(|part| part.pointer("/data/authChallenge/authorizationUrl"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no authorization URL in {body}"))
            .to_string();
        let target = url.split_once("://").unwrap().1;
        let target = &target[target.find('/').unwrap()..];
        let redirect = http_kit::send(
            bank.addr(),
            &ClientRequest::get(&format!("{target}&login_hint=alice")),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(redirect.status, 302, "{}", redirect.body_str());
        let location = redirect.header("location").unwrap();
        let params = parse_urlencoded(location.split_once('?').unwrap().1);
        let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap();
        (get("code"), get("state"))
    }

    /// The agent received exactly one message, with a bank token for alice
    /// (`served` when the fault served one) and no credential in its body.
    fn assert_injected(&self, issuer: &str, served: Option<&str>, code: &str) {
        let seen: Vec<_> = self.agent.requests().into_iter().filter(|r| r.method == "POST").collect();
        assert_eq!(seen.len(), 1, "messages the agent received");
        let token = seen[0].bearer_token().expect("a bank token injected");
        if let Some(served) = served {
            assert_eq!(token, served);
        }
        let claims = decode_claims_unverified(token).unwrap();
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str(), claims["aud"].as_str()),
            (Some(issuer), Some("alice"), Some("bank-api"))
        );
        assert!(!seen[0].body_str().contains(code), "the code reached the agent");
    }

    fn assert_still_serves(&self) {
        assert_eq!(self.envoy.get("/.well-known/agent-card.json", &[]).status, 200, "Envoy still serves");
        self.agent.clear();
    }

    /// The task continues with nothing in its body once the redirect worked.
    fn continue_task(&self, task: &str) {
        let answer = self.post_transfer(task, None);
        assert_eq!(answer.status, 200, "{}", answer.body_str());
        assert_eq!(body_json(&answer)["result"]["status"]["state"], "completed", "{}", answer.body_str());
    }
}

/// How a row's code exchange is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// `auth_credentials: {code, state}` in the message.
    Message,
    /// The browser's redirect to the callback path.
    Redirect,
}

impl Path {
    fn call(self) -> &'static str {
        match self {
            Path::Message => "code exchange (message)",
            Path::Redirect => "code exchange (redirect)",
        }
    }

    fn task(self, row: usize) -> String {
        match self {
            Path::Message => format!("t-msg-{row}"),
            Path::Redirect => format!("t-cb-{row}"),
        }
    }
}

/// A failed attempt, for its recovery: the task and the credential used.
struct Attempt {
    task: String,
    code: String,
    state: String,
}

/// Authorizes at `authorize_at` (by default the bank whose token endpoint
/// is `token`), breaks `token` with `case`, and exchanges the code through
/// `path`. A failure must be a 503 that forwards nothing.
fn code_exchange_attempt(
    world: &Bank,
    authorize_at: Option<&MockIdp>,
    token: &mut Idp,
    path: Path,
    case: &Case,
    task: String,
) -> (Observed, Option<Attempt>) {
    world.agent.clear();
    let authorize_at = authorize_at.unwrap_or_else(|| token.up());
    let (code, state) = world.authorized(authorize_at, &task);
    let issuer = authorize_at.issuer();
    let before = counters(world.envoy, "baton_itac");
    token.arm(&case.inject, Endpoint::Token);
    let answer = match path {
        Path::Message => world.post_transfer(&task, Some(json!({"code": code, "state": state}))),
        Path::Redirect => world.callback(&code, &state),
    };
    let changed = changes(&before, &counters(world.envoy, "baton_itac"));
    if case.expect == Expect::Succeeds {
        assert_eq!(answer.status, 200, "{}", answer.body_str());
        let (answer, moved) = match path {
            Path::Message => {
                assert_eq!(
                    changed,
                    counts(&[("baton_itac.codes_exchanged", 1), ("baton_itac.tokens_injected", 1)])
                );
                ("200 forwarded, token injected", "codes_exchanged +1, tokens_injected +1")
            }
            Path::Redirect => {
                assert_eq!(body_json(&answer)["status"], "authorized", "{}", answer.body_str());
                assert_eq!(changed, counts(&[("baton_itac.codes_exchanged", 1)]));
                world.continue_task(&task);
                ("200 authorized", "codes_exchanged +1")
            }
        };
        world.assert_injected(&issuer, case.served.as_deref(), &code);
        let seen = Observed {
            answer: answer.into(),
            counters: moved.into(),
            recovery: "-".into(),
            ..Observed::default()
        };
        return (seen, None);
    }
    assert_eq!(answer.status, 503, "{}", answer.body_str());
    let body = body_json(&answer);
    let shown = match path {
        Path::Message => {
            assert_eq!(
                (body["id"].as_str(), body["error"]["code"].as_i64()),
                (Some("req-1"), Some(-32000)),
                "{body}"
            );
            "503 JSON-RPC -32000"
        }
        Path::Redirect => {
            assert_eq!(body["error"], "idp_unavailable", "{body}");
            "503 idp_unavailable"
        }
    };
    assert!(!answer.body_str().contains(&code) && !answer.body_str().contains(&state), "credential echoed");
    assert_eq!(changed, counts(&[("baton_itac.idp_unavailable", 1)]), "counters");
    assert!(world.agent.requests().is_empty(), "forwarded to the agent");
    world.assert_still_serves();
    let seen = Observed {
        answer: format!("{shown} (same code again: 400)"),
        counters: "idp_unavailable +1".into(),
        ..Observed::default()
    };
    (seen, Some(Attempt { task, code, state }))
}

/// Once the bank is back: the failed attempt's state is used up (the same
/// credential again is a 400 that forwards nothing); a new authorization
/// goes through. Returns the recovery text.
fn code_exchange_recovery(world: &Bank, bank: &MockIdp, path: Path, attempt: &Attempt) -> String {
    // The attempt checked that it forwarded nothing; other rows may have since.
    world.agent.clear();
    let again = match path {
        Path::Message => {
            world.post_transfer(&attempt.task, Some(json!({"code": attempt.code, "state": attempt.state})))
        }
        Path::Redirect => world.callback(&attempt.code, &attempt.state),
    };
    assert_eq!(again.status, 400, "the state was used: {}", again.body_str());
    if path == Path::Message {
        assert_eq!(body_json(&again)["error"]["code"], -32602, "{}", again.body_str());
    }
    assert!(world.agent.requests().is_empty(), "the used credential was forwarded");
    let cleared = Instant::now();
    let (code, state) = world.authorized(bank, &attempt.task);
    let recovery = match path {
        Path::Message => {
            let answer = world.post_transfer(&attempt.task, Some(json!({"code": code, "state": state})));
            assert_eq!(answer.status, 200, "{}", answer.body_str());
            cleared.elapsed()
        }
        Path::Redirect => {
            let page = world.callback(&code, &state);
            assert_eq!(page.status, 200, "{}", page.body_str());
            let took = cleared.elapsed();
            world.continue_task(&attempt.task);
            took
        }
    };
    world.assert_injected(&bank.issuer(), None, &code);
    format!("{} ms (new authorization)", ms(recovery))
}

fn in_task_table(gate: &Gate) -> Table {
    // The bank's keys and its authorization endpoint stay up. Its token
    // endpoint is first down (nothing listens), then comes back on the same
    // port as the bank itself (same issuer, keys, clients): the rows after
    // the outage break that one.
    let keys = Idp::start(bank_config());
    let mut bank = Idp::outage_of(&keys);
    let agent = EchoBackend::start_a2a_agent().unwrap();
    let spec = EnvoySpec::new(agent.addr())
        .cluster("bank_keys", keys.addr)
        .cluster("bank_token", bank.addr)
        .filter("in_task_auth_code", in_task_filter(keys.up()));
    let envoy = Envoy::start(&spec).unwrap_or_else(|e| panic!("Envoy did not start: {e}"));
    assert!(
        envoy.wait_for(Duration::from_secs(10), |e| e.counter("baton_itac.jwks.fetch_success") >= 1),
        "the bank's keys"
    );
    gate.pass();
    let world = Bank { envoy: &envoy, agent: &agent };
    let mut claims = keys.up().standard_claims("alice", "bank-api", 300);
    claims["scope"] = json!("transfers:write");
    let served = keys.up().mint(claims);
    let cases = token_cases(&served, false);
    let paths = [Path::Message, Path::Redirect];
    let mut table = Table::default();

    // The outage: both paths fail while the bank's token endpoint is down,
    // then recover once it is back.
    let (outage, rest) = cases.split_first().unwrap();
    assert!(matches!(outage.inject, Inject::Down));
    let attempts: Vec<(Path, Row, Option<Attempt>)> = paths
        .iter()
        .map(|&path| {
            let mut attempt = None;
            let (row, _) = run_row("in-task-auth-code", path.call(), outage, || {
                let (seen, failed) =
                    code_exchange_attempt(&world, Some(keys.up()), &mut bank, path, outage, path.task(0));
                attempt = failed;
                seen
            });
            (path, row, attempt)
        })
        .collect();
    bank.disarm();
    let mut rows: Vec<Vec<Row>> = attempts
        .into_iter()
        .map(|(path, row, attempt)| {
            let row = row.then(|| code_exchange_recovery(&world, bank.up(), path, attempt.as_ref().unwrap()));
            vec![row]
        })
        .collect();

    for (rows, &path) in rows.iter_mut().zip(&paths) {
        for (i, case) in rest.iter().enumerate() {
            let mut attempt = None;
            let (row, _) = run_row("in-task-auth-code", path.call(), case, || {
                let (seen, failed) =
                    code_exchange_attempt(&world, None, &mut bank, path, case, path.task(i + 1));
                attempt = failed;
                seen
            });
            bank.disarm();
            let row = match &attempt {
                Some(attempt) => row.then(|| code_exchange_recovery(&world, bank.up(), path, attempt)),
                None => row,
            };
            rows.push(row);
        }
    }
    table.rows = rows.into_iter().flatten().collect();
    check_vms(&envoy, &mut table, "in-task-auth-code");
    // Envoy goes first, closing its connections to the IdPs.
    drop(envoy);
    table
}

// ------------------------------------------------------------------ matrix

/// A table: sets up its Envoy, passes the gate, runs its rows.
type TableFn = fn(&Gate) -> Table;

#[test]
fn idp_fault_matrix() {
    let started = Instant::now();
    let tables: [(&str, TableFn); 4] = [
        ("claim-enforcement", claim_enforcement_table),
        ("obo token exchange", obo_exchange_table),
        ("obo client credentials", obo_client_credentials_table),
        ("in-task-auth-code", in_task_table),
    ];
    let barrier = Barrier::new(tables.len());
    let results: Vec<(&str, thread::Result<Table>)> = thread::scope(|scope| {
        let running: Vec<_> = tables
            .iter()
            .map(|(name, table)| {
                let barrier = &barrier;
                let run = move || table(&Gate { barrier, passed: Cell::new(false) });
                (*name, scope.spawn(run))
            })
            .collect();
        running.into_iter().map(|(name, handle)| (name, handle.join())).collect()
    });

    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (name, result) in results {
        match result {
            Ok(table) => {
                rows.extend(table.rows);
                problems.extend(table.problems);
            }
            Err(_) => problems.push(format!("the {name} table could not run (see its panic above)")),
        }
    }
    println!(
        "\n{:<25} {:<26} {:<46} {:<42} {:<68} recovery",
        "filter", "IdP call", "fault", "answer", "counters"
    );
    for row in &rows {
        println!(
            "{:<25} {:<26} {:<46} {:<42} {:<68} {}",
            row.filter, row.call, row.fault, row.answer, row.counters, row.recovery
        );
        if let Some(error) = &row.error {
            println!("    NOT HANDLED: {error}");
        }
    }
    let tried = rows.len();
    let handled = rows.iter().filter(|row| row.error.is_none()).count();
    for problem in &problems {
        println!("PROBLEM: {problem}");
    }
    println!("{tried} faults tried, {handled} handled ({:.1} s)", started.elapsed().as_secs_f64());
    assert!(
        handled == tried && problems.is_empty(),
        "{} rows not handled, {} problems",
        tried - handled,
        problems.len()
    );
}
