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
//! Envoy still answers other requests, that no filter VM failed, and that
//! the filter recovers once the IdP does, within the documented backoff
//! where there is one.
//!
//! One test per row, named `<call>::<fault>`:
//! `cargo test -p baton-tests --test idp_faults -- obo_token_exchange::http_503`
//! runs one row, `-- http_503` that fault against every call, and
//! `--nocapture` prints each row's line of the matrix (answer, counters,
//! recovery).
//!
//! Every row starts its own IdP and its own Envoy: its counters are its
//! own, so they are checked whole, and a row runs alone or beside any
//! other, in any order. That costs about a second of CPU a row (V8
//! compiling the filter as Envoy starts): the file takes some 90
//! CPU-seconds, where four Envoys shared by all rows took 5. Key set and
//! client-credentials rows break their IdP before Envoy starts (the first
//! call fails); token exchange and code exchange rows break it once Envoy
//! is up. Rows timed against `timeoutMs` run with no Envoy starting beside
//! them (see [`ENVOY_STARTS`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/bank.rs"]
mod bank;
#[path = "common/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{PoisonError, RwLock, RwLockWriteGuard};
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

// ------------------------------------------------------------------ the rows

/// One `#[test]` per fault, each running `$row` with the fault's [`Case`].
macro_rules! rows {
    ($row:ident: $($fault:ident),+ $(,)?) => {
        $(
            #[test]
            fn $fault() {
                $row(faults::$fault());
            }
        )+
    };
}

/// The faults any IdP call can meet, whatever it asks for.
macro_rules! transport_rows {
    ($row:ident) => {
        rows!($row: connection_refused, connection_closed, timeout, slow_under_timeout, slow_over_timeout,
              http_400, http_401, http_500, http_503, html_instead_of_json, malformed_json, truncated_body);
    };
}

/// The faults of a token endpoint: the transport ones, and answers that are
/// JSON but not a usable token.
macro_rules! token_endpoint_rows {
    ($row:ident) => {
        transport_rows!($row);
        rows!($row: oversized_token_response, no_access_token, expires_in_negative, expires_in_huge,
              expires_in_string, expires_in_digit_string);
    };
}

mod claim_enforcement_jwks {
    use super::*;
    transport_rows!(jwks_row);
    rows!(jwks_row: oversized_key_set, json_without_keys, empty_key_set);
}

mod obo_token_exchange {
    use super::*;
    token_endpoint_rows!(token_exchange_row);
}

mod obo_client_credentials {
    use super::*;
    token_endpoint_rows!(client_credentials_row);
}

mod in_task_message {
    use super::*;
    fn row(case: Case) {
        code_exchange_row(Path::Message, case);
    }
    token_endpoint_rows!(row);
}

mod in_task_redirect {
    use super::*;
    fn row(case: Case) {
        code_exchange_row(Path::Redirect, case);
    }
    token_endpoint_rows!(row);
}

// ---------------------------------------------------------------- the faults

/// How a row breaks the IdP.
#[derive(Debug, Clone)]
enum Inject {
    /// The IdP is down: nothing listens on its port, connections are
    /// refused. Recovery: it comes back on the same port.
    Down,
    /// A fault the mock IdP serves on the endpoint the row calls.
    Fault(Fault),
    /// A token endpoint's 200 answer: the one the IdP would give, with
    /// these fields set (removed where `null`). See [`Case::answering`].
    TokenAnswer(Value),
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

/// A row's fault and what the filter must make of it.
#[derive(Debug, Clone)]
struct Case {
    /// The fault, as the matrix prints it.
    name: String,
    inject: Inject,
    expect: Expect,
    /// The access token the IdP serves, when the row expects that one used
    /// (a tolerated [`Inject::TokenAnswer`]).
    served: Option<String>,
}

impl Case {
    /// This case at a token endpoint whose good answer carries `token`
    /// (`token_exchange`: an RFC 8693 answer, with its issued token type):
    /// a [`Inject::TokenAnswer`] becomes that answer with the row's fields.
    fn answering(mut self, token: &str, token_exchange: bool) -> Case {
        let Inject::TokenAnswer(fields) = &self.inject else {
            return self;
        };
        let mut body = json!({"access_token": token, "token_type": "Bearer"});
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
        if self.expect == Expect::Succeeds {
            self.served = Some(token.to_string());
        }
        self.inject = Inject::Fault(Fault::Json(body));
        self
    }

    /// Whether the fault is timed against `timeoutMs`.
    fn timed(&self) -> bool {
        matches!(self.inject, Inject::Fault(Fault::Delay(_)))
    }

    /// What the IdP serves while Envoy starts, for the rows whose IdP is
    /// faulty from the start: the row's own fault, except that a timed one
    /// waits until Envoy has settled (an Envoy busy starting can handle a
    /// late answer and its timeout in either order); a 503 stands in until
    /// then.
    fn startup_inject(&self) -> Inject {
        if self.timed() { Inject::Fault(Fault::Status(503)) } else { self.inject.clone() }
    }
}

/// The faults, one function a row; the test of a row is named after its
/// function.
mod faults {
    use super::Class::*;
    use super::*;

    fn fails(name: impl Into<String>, inject: Inject, class: Class) -> Case {
        Case { name: name.into(), inject, expect: Expect::Fails(class), served: None }
    }

    fn succeeds(name: impl Into<String>, inject: Inject) -> Case {
        Case { name: name.into(), inject, expect: Expect::Succeeds, served: None }
    }

    fn delay(ms: u64) -> Inject {
        Inject::Fault(Fault::Delay(Duration::from_millis(ms)))
    }

    fn status(code: u16) -> Case {
        // A 4xx carries the mock's RFC 6749 error; a 5xx is unavailability.
        let class = if code < 500 { Rejected } else { Unavailable };
        fails(format!("HTTP {code}"), Inject::Fault(Fault::Status(code)), class)
    }

    fn oversized(limit: usize, over: usize) -> Case {
        let size = limit + over;
        fails(
            format!("oversized body ({} KiB)", size / 1024),
            Inject::Fault(Fault::Oversized(size)),
            InvalidResponse,
        )
    }

    pub fn connection_refused() -> Case {
        fails("connection refused (IdP down)", Inject::Down, Unavailable)
    }

    pub fn connection_closed() -> Case {
        fails("connection closed, no answer", Inject::Fault(Fault::Close), Unavailable)
    }

    pub fn timeout() -> Case {
        fails(format!("timeout (answer after {} ms)", 2 * TIMEOUT_MS), delay(2 * TIMEOUT_MS), Unavailable)
    }

    pub fn slow_under_timeout() -> Case {
        succeeds(format!("slow, {MARGIN_MS} ms under the timeout"), delay(TIMEOUT_MS - MARGIN_MS))
    }

    pub fn slow_over_timeout() -> Case {
        fails(format!("slow, {MARGIN_MS} ms over the timeout"), delay(TIMEOUT_MS + MARGIN_MS), Unavailable)
    }

    pub fn http_400() -> Case {
        status(400)
    }

    pub fn http_401() -> Case {
        status(401)
    }

    pub fn http_500() -> Case {
        status(500)
    }

    pub fn http_503() -> Case {
        status(503)
    }

    pub fn html_instead_of_json() -> Case {
        fails("HTML instead of JSON", Inject::Fault(Fault::Html), InvalidResponse)
    }

    pub fn malformed_json() -> Case {
        fails("malformed JSON", Inject::Fault(Fault::MalformedJson), InvalidResponse)
    }

    pub fn truncated_body() -> Case {
        fails("truncated body", Inject::Fault(Fault::Truncated), Unavailable)
    }

    pub fn oversized_token_response() -> Case {
        oversized(MAX_TOKEN_RESPONSE_BYTES, 36 * 1024)
    }

    pub fn oversized_key_set() -> Case {
        oversized(MAX_JWKS_BYTES, 88 * 1024)
    }

    pub fn no_access_token() -> Case {
        let answer = json!({"access_token": null, "expires_in": 300});
        fails("JSON without access_token", Inject::TokenAnswer(answer), InvalidResponse)
    }

    pub fn expires_in_negative() -> Case {
        fails("expires_in negative (-300)", Inject::TokenAnswer(json!({"expires_in": -300})), InvalidResponse)
    }

    pub fn expires_in_huge() -> Case {
        let answer = json!({"expires_in": 10_000_000_000u64});
        succeeds("expires_in huge (10^10 s; used at most 1 day)", Inject::TokenAnswer(answer))
    }

    pub fn expires_in_string() -> Case {
        let answer = json!({"expires_in": "soon"});
        fails("expires_in a string (\"soon\")", Inject::TokenAnswer(answer), InvalidResponse)
    }

    pub fn expires_in_digit_string() -> Case {
        let answer = json!({"expires_in": "300"});
        succeeds("expires_in a digit string (\"300\", Entra v1)", Inject::TokenAnswer(answer))
    }

    /// JSON, but no key set (the JWKS counterpart of a missing access_token).
    pub fn json_without_keys() -> Case {
        let answer = Fault::Json(json!({"issuer": "https://elsewhere"}));
        fails("JSON without keys", Inject::Fault(answer), InvalidResponse)
    }

    pub fn empty_key_set() -> Case {
        fails("empty key set", Inject::Fault(Fault::Json(json!({"keys": []}))), InvalidResponse)
    }
}

// ------------------------------------------------------ starts and timing

/// Envoy starts and the calls timed against `timeoutMs` exclude each
/// other. Rows run side by side (one test thread per core), and an Envoy
/// busy starting (compiling the filters) takes the cores: the Envoy of a
/// timed call could then handle a late answer and its timeout in either
/// order. Starts share the lock; a timed call holds it alone.
static ENVOY_STARTS: RwLock<()> = RwLock::new(());

/// [`ENVOY_STARTS`] held alone by a timed row until it drops it.
type Alone = Option<RwLockWriteGuard<'static, ()>>;

/// For a timed row: no Envoy starts until the guard is dropped.
fn alone_if_timed(case: &Case) -> Alone {
    case.timed().then(|| ENVOY_STARTS.write().unwrap_or_else(PoisonError::into_inner))
}

/// Starts the row's Envoy, beside other starts.
fn start_envoy(spec: &EnvoySpec) -> Envoy {
    let _starting = ENVOY_STARTS.read().unwrap_or_else(PoisonError::into_inner);
    Envoy::start(spec).unwrap_or_else(|e| panic!("Envoy did not start: {e}"))
}

/// Starts the Envoy of a row whose IdP is faulty from the start. A timed
/// row holds [`ENVOY_STARTS`] alone from before its start: its timed call
/// is the retry of the call that failed at start, and claim-enforcement
/// backs off further for each fetch that fails while a row waits.
fn start_envoy_faulty_idp(spec: &EnvoySpec, case: &Case) -> (Envoy, Alone) {
    let alone = alone_if_timed(case);
    let envoy = match alone {
        Some(_) => Envoy::start(spec).unwrap_or_else(|e| panic!("Envoy did not start: {e}")),
        None => start_envoy(spec),
    };
    (envoy, alone)
}

/// Switches a timed row's fault on once Envoy has settled, and waits for
/// the IdP to be called with it.
fn arm_timed(idp: &mut Idp, case: &Case, endpoint: Endpoint) {
    if !case.timed() {
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

// ------------------------------------------------------------------ the IdPs

/// A mock IdP that can be down (connections refused) and come back on the
/// same port, with the same issuer, keys and clients.
///
/// Only an IdP no Envoy has connected to yet is stopped: stopping an
/// `http_kit` server while a client holds an idle keep-alive connection can
/// hang (its stop signal is `ErrorKind::Interrupted`, which std's buffered
/// reads retry forever). An IdP that goes down while Envoy runs is an
/// [`Idp::outage_of`] instead: a port nobody listens on until it comes back.
/// For the same reason a row's Envoy is dropped before its IdPs: declared
/// after them.
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
            Inject::TokenAnswer(_) => panic!("{inject:?} is completed by Case::answering first"),
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

/// What a row saw, for its line of the matrix.
#[derive(Debug)]
struct Observed {
    answer: String,
    counters: String,
    recovery: String,
}

/// Prints the row's line of the matrix (seen with `--nocapture`).
fn report(filter: &str, call: &str, case: &Case, seen: &Observed) {
    println!(
        "{filter:<25} {call:<26} {:<46} {:<42} {:<68} {}",
        case.name, seen.answer, seen.counters, seen.recovery
    );
}

/// Requests and IdP calls of a row, to check its Envoy's counters against.
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
}

// ------------------------------------------------------------------ helpers

/// The filter's counters under `prefix` (e.g. `baton_obo`), by name without
/// `wasmcustom.`; one admin call.
fn counters(envoy: &Envoy, prefix: &str) -> BTreeMap<String, u64> {
    std::thread::sleep(baton_harness::COUNTER_FLUSH_WAIT);
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

/// No filter VM panicked or trapped (aborted), whatever the IdP did.
fn assert_no_vm_failed(envoy: &Envoy) {
    let failures: Vec<String> = envoy
        .logs()
        .lines()
        .filter(|line| line.contains(": panic: ") || line.contains("Uncaught") || line.contains("wasm trap"))
        .map(String::from)
        .collect();
    assert_eq!(failures, Vec::<String>::new(), "a filter VM failed");
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

/// claim-enforcement whose one provider's key set is faulty from the start:
/// no keys until the IdP recovers.
fn jwks_row(case: Case) {
    let mut idp = Idp::start(MockIdpConfig::default());
    let token = idp.up().mint(support::claims(idp.up(), "alice"));
    let backend = support::backend();
    let mut config = support::ce_config(idp.up());
    config["providers"][0]["jwks"]["remote"] = json!({
        "cluster": "idp", "path": "/jwks", "timeoutMs": TIMEOUT_MS, "minRefetchIntervalSeconds": 1,
        "retryIntervalSeconds": RETRY_SECS, "refreshIntervalSeconds": REFRESH_SECS
    });
    let provider = config["providers"][0]["name"].as_str().unwrap().to_string();
    idp.arm(&case.startup_inject(), Endpoint::Jwks);
    let spec = EnvoySpec::new(backend.addr()).cluster("idp", idp.addr).filter("claim_enforcement", config);
    let (envoy, alone) = start_envoy_faulty_idp(&spec, &case);
    let failure_marker = format!("jwks provider={provider} fetch failed");
    if case.timed() {
        wait_until(Duration::from_secs(10), "the first fetch", || {
            !log_lines(&envoy, &failure_marker).is_empty()
        });
    }

    let forwarded = || backend.requests().iter().filter(|r| r.bearer_token() == Some(token.as_str())).count();
    let mut tally = Tally::default();
    arm_timed(&mut idp, &case, Endpoint::Jwks);
    let first = envoy.get_with_token("/orders", &token);
    drop(alone);
    let seen = if case.expect == Expect::Succeeds {
        assert_eq!(first.status, 200, "{}", first.body_str());
        tally.allowed += 1;
        assert_eq!(forwarded(), 1);
        // A timed row failed with the stand-in 503 while Envoy started.
        let failed = log_lines(&envoy, &failure_marker).len() as u64;
        assert_eq!(failed > 0, case.timed(), "failed fetches");
        assert_eq!(idp.up().calls(Endpoint::Jwks), failed + 1, "fetches");
        tally.failures = failed;
        Observed {
            answer: "200 forwarded".into(),
            counters: "jwks.fetch_success +1".into(),
            recovery: "-".into(),
        }
    } else {
        assert_temporarily_unavailable(&first, &token);
        tally.denied += 1;
        assert_eq!(forwarded(), 0, "forwarded without keys");
        assert_eq!(envoy.get("/healthz", &[]).status, 200, "Envoy still serves");
        tally.other += 1;

        idp.disarm();
        let recovery = until_recovered(&mut tally, &token, || envoy.get_with_token("/orders", &token));
        assert_eq!(forwarded(), 1, "forwarded once, after recovery");
        let failures = log_lines(&envoy, &failure_marker);
        let failed = failures.len() as u64;
        // How many fetches failed depends on how long the first request and
        // the recovery took against the backoff: at least the first did.
        assert!(failed >= 1, "no failed fetch logged");
        // Every faulted call the IdP saw was one failure; the next one succeeded.
        let calls = idp.up().calls(Endpoint::Jwks);
        match case.inject {
            Inject::Down => assert_eq!(calls, 1, "the restarted IdP served the keys once"),
            _ => assert_eq!(calls, failed + 1, "faulted calls vs failures logged"),
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
        }
    };
    // Every request and every fetch of the row's Envoy, accounted for.
    let expected = counts(&[
        ("baton_ce.allowed", tally.allowed),
        ("baton_ce.allowed_public", tally.other),
        ("baton_ce.cache.miss", tally.allowed),
        ("baton_ce.denied.keys_unavailable", tally.denied),
        ("baton_ce.jwks.fetch_failure", tally.failures),
        ("baton_ce.jwks.fetch_success", 1),
    ]);
    assert_eq!(nonzero(counters(&envoy, "baton_ce")), expected, "the row's counters");
    assert_no_vm_failed(&envoy);
    report("claim-enforcement", "JWKS fetch", &case, &seen);
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

/// An IdP entry of obo-credential-injection's configuration.
fn obo_idp(name: &str, cluster: &str) -> Value {
    json!({"name": name, "cluster": cluster, "tokenPath": "/token", "timeoutMs": TIMEOUT_MS,
           "clientId": "agent-broker", "clientSecret": DEMO_BROKER_SECRET})
}

/// A client-credentials target for `host`, open to any caller: the matrix
/// is about the IdP, not the callers.
fn obo_market_target(name: &str, host: &str, idp: &str) -> Value {
    json!({"name": name, "match": {"host": host}, "mode": "clientCredentials", "idp": idp,
           "audiences": ["market-data"], "scope": "quotes", "dangerouslyAllowUnauthenticatedCallers": true})
}

/// The target whose token exchange a row breaks.
const PORTFOLIO: &str = "portfolio.internal";
/// A target whose token was fetched before the fault: it needs no IdP.
const MARKET: &str = "market.internal";

/// A request for the portfolio target whose token exchange `case` breaks
/// once Envoy is up. The IdP that is down is a second token endpoint for
/// the same issuer, where nothing listens until it comes back; the subject
/// keys and the market token stay at the IdP.
fn token_exchange_row(case: Case) {
    let mut idp = Idp::start(MockIdpConfig::default());
    let mut outage = matches!(case.inject, Inject::Down).then(|| Idp::outage_of(&idp));
    let served = idp.up().mint(idp.up().standard_claims("served-by-fault", "portfolio-agent", 300));
    let case = case.answering(&served, true);
    let subject = obo_user_token(idp.up(), "exchange-user");
    let backend = support::backend();
    let config = json!({
        "idps": [obo_idp("corp", "idp"), obo_idp("exchange", "exchange_idp")],
        "subjectToken": {"validation": "jwks", "providers": [{
            "name": "corp", "issuer": idp.up().issuer(), "audiences": ["agent-broker"], "algorithms": ["ES256", "RS256"],
            "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": TIMEOUT_MS}}}]},
        "targets": [
            {"name": "portfolio", "match": {"host": PORTFOLIO}, "mode": "tokenExchange", "idp": "exchange",
             "audiences": ["portfolio-agent"], "scope": "portfolio:read"},
            obo_market_target("market", MARKET, "corp")
        ]
    });
    let spec = EnvoySpec::new(backend.addr())
        .cluster("idp", idp.addr)
        .cluster("exchange_idp", outage.as_ref().unwrap_or(&idp).addr)
        .filter("obo_credential_injection", config);
    let envoy = start_envoy(&spec);
    // Subject keys and the market token are in before the fault.
    assert!(
        envoy.wait_for(Duration::from_secs(10), |e| {
            e.counter("baton_obo.jwks.fetch_success") == 1 && obo_call(e, MARKET, None).status == 200
        }),
        "obo Envoy not ready"
    );
    let alone = alone_if_timed(&case);
    let token_endpoint = outage.as_mut().unwrap_or(&mut idp);

    let user = "exchange-user";
    let before = counters(&envoy, "baton_obo");
    token_endpoint.arm(&case.inject, Endpoint::Token);
    let response = obo_call(&envoy, PORTFOLIO, Some(&subject));
    drop(alone);
    let changed = changes(&before, &counters(&envoy, "baton_obo"));
    let never_the_callers = || {
        assert!(
            backend.requests().iter().all(|r| r.bearer_token() != Some(subject.as_str())),
            "the caller's token reached the upstream"
        );
    };
    let seen = match case.expect {
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
            let seen = upstream(&backend, PORTFOLIO);
            assert_eq!(seen.len(), 1);
            let injected = seen[0].bearer_token().unwrap();
            match &case.served {
                Some(served) => assert_eq!(injected, served),
                None => assert_eq!(decode_claims_unverified(injected).unwrap()["sub"], user),
            }
            never_the_callers();
            Observed {
                answer: "200 injected".into(),
                counters: "idp.success +1, injected +1".into(),
                recovery: "-".into(),
            }
        }
        Expect::Fails(class) => {
            assert_temporarily_unavailable(&response, &subject);
            assert_eq!(
                changed,
                counts(&[
                    ("baton_obo.idp.calls", 1),
                    (class.obo_counter(), 1),
                    ("baton_obo.denied.unavailable", 1)
                ]),
                "counters"
            );
            assert_eq!(upstream(&backend, PORTFOLIO).len(), 0, "forwarded without an exchanged token");
            // Envoy still serves: the market target's cached token needs no IdP.
            assert_eq!(obo_call(&envoy, MARKET, None).status, 200, "Envoy still serves");

            // No backoff and no negative caching: the first request after
            // the IdP is back makes a new call.
            token_endpoint.disarm();
            let mut tally = Tally::default();
            let recovery =
                until_recovered(&mut tally, &subject, || obo_call(&envoy, PORTFOLIO, Some(&subject)));
            assert_eq!(tally.denied, 0, "the first request after recovery failed");
            let seen = upstream(&backend, PORTFOLIO);
            assert_eq!(seen.len(), 1);
            let claims = decode_claims_unverified(seen[0].bearer_token().unwrap()).unwrap();
            assert_eq!(
                (claims["sub"].as_str(), claims["aud"].as_str()),
                (Some(user), Some("portfolio-agent")),
                "the token of this user, for this upstream"
            );
            never_the_callers();
            let counter = class.obo_counter().trim_start_matches("baton_obo.");
            Observed {
                answer: "503 temporarily_unavailable".into(),
                counters: format!("{counter} +1, denied.unavailable +1"),
                recovery: format!("{} ms (next request)", ms(recovery)),
            }
        }
    };
    assert_no_vm_failed(&envoy);
    report("obo-credential-injection", "token exchange (RFC 8693)", &case, &seen);
}

/// A client-credentials grant whose IdP is faulty from the start: the
/// token fetched at start fails, and so do the requests until the IdP
/// recovers.
fn client_credentials_row(case: Case) {
    let mut idp = Idp::start(MockIdpConfig::default());
    let served = idp.up().mint(idp.up().standard_claims("agent-broker", "market-data", 300));
    let case = case.answering(&served, false);
    // A user token the caller sends along: it must never be forwarded.
    let caller = obo_user_token(idp.up(), "alice");
    let backend = support::backend();
    let config = json!({"idps": [obo_idp("market", "idp")], "targets": [obo_market_target("market", MARKET, "market")]});
    idp.arm(&case.startup_inject(), Endpoint::Token);
    let spec =
        EnvoySpec::new(backend.addr()).cluster("idp", idp.addr).filter("obo_credential_injection", config);
    let started = Instant::now();
    let (envoy, alone) = start_envoy_faulty_idp(&spec, &case);
    let failure_marker = "idp=market call for client_credentials for target market failed";
    if case.timed() {
        wait_until(Duration::from_secs(10), "the first call", || {
            !log_lines(&envoy, failure_marker).is_empty()
        });
    }

    let check_upstream = |expected: usize| {
        let seen = upstream(&backend, MARKET);
        assert_eq!(seen.len(), expected, "requests forwarded to {MARKET}");
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
    arm_timed(&mut idp, &case, Endpoint::Token);
    let first = obo_call(&envoy, MARKET, Some(&caller));
    drop(alone);
    let (class, seen) = match case.expect {
        Expect::Succeeds => {
            assert_eq!(first.status, 200, "{}", first.body_str());
            tally.allowed += 1;
            check_upstream(1);
            // A timed row failed with the stand-in 503 while Envoy started.
            let failed = log_lines(&envoy, failure_marker).len() as u64;
            assert_eq!(failed > 0, case.timed(), "failed calls");
            // One grant, one lease: every call but the last failed.
            let calls = idp.up().calls(Endpoint::Token);
            assert_eq!(calls, failed + 1, "calls vs failures logged");
            tally.calls = calls;
            tally.failures = failed;
            let seen = Observed {
                answer: "200 injected".into(),
                counters: "idp.success +1".into(),
                recovery: "-".into(),
            };
            (Class::Unavailable, seen)
        }
        Expect::Fails(class) => {
            assert_temporarily_unavailable(&first, &caller);
            tally.denied += 1;
            check_upstream(0);
            let other = obo_call(&envoy, "nowhere.internal", None);
            assert_eq!(
                (other.status, body_json(&other)["error"].as_str()),
                (403, Some("access_denied")),
                "Envoy still serves"
            );
            tally.other += 1;

            let down_for = started.elapsed();
            let failed_while_down = log_lines(&envoy, failure_marker).len();
            idp.disarm();
            let recovery = until_recovered(&mut tally, &caller, || obo_call(&envoy, MARKET, Some(&caller)));
            check_upstream(1);
            // Not documented: the token is asked for again at each tick while
            // it is missing (no backoff), and at once by a request.
            let bound = Duration::from_millis(TIMEOUT_MS + 2000);
            assert!(recovery <= bound, "recovered after {recovery:?}");
            // How many calls failed depends on the ticks while the IdP was
            // faulty: at least the one at start.
            let failed = log_lines(&envoy, failure_marker).len() as u64;
            assert!(failed >= 1, "no failed call logged");
            // One grant, one lease: every call failed (logged once) but the
            // last, which the IdP answered once it was back.
            let calls = idp.up().calls(Endpoint::Token);
            tally.calls = match case.inject {
                Inject::Down => {
                    assert_eq!(calls, 1, "the restarted IdP was called once");
                    calls + failed
                }
                _ => {
                    assert_eq!(calls, failed + 1, "calls vs failures logged");
                    calls
                }
            };
            tally.failures = failed;
            let counter = class.obo_counter().trim_start_matches("baton_obo.");
            let seen = Observed {
                answer: "503 temporarily_unavailable".into(),
                counters: format!(
                    "{counter} +{failed} ({failed_while_down} calls in {:.1} s down); denied.unavailable",
                    down_for.as_secs_f64()
                ),
                recovery: format!("{} ms", ms(recovery)),
            };
            (class, seen)
        }
    };
    // Every request and every call of the row's Envoy, accounted for.
    let mut actual = nonzero(counters(&envoy, "baton_obo"));
    // Cache outcomes depend on whether a request or the background renewal
    // got the token first: only their sum is fixed.
    let cache: u64 = ["hit_local", "hit_shared", "miss"]
        .iter()
        .filter_map(|kind| actual.remove(&format!("baton_obo.cache.{kind}")))
        .sum();
    if cache > 0 {
        actual.insert("baton_obo.cache.*".to_string(), cache);
    }
    let expected = counts(&[
        ("baton_obo.idp.calls", tally.calls),
        ("baton_obo.idp.success", tally.calls - tally.failures),
        (class.obo_counter(), tally.failures),
        ("baton_obo.denied.unavailable", tally.denied),
        ("baton_obo.denied.no_target", tally.other),
        ("baton_obo.injected", tally.allowed),
        ("baton_obo.cache.*", tally.allowed),
    ]);
    assert_eq!(actual, expected, "the row's counters");
    assert_no_vm_failed(&envoy);
    report("obo-credential-injection", "client credentials", &case, &seen);
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
}

/// The task of a code exchange row.
const TASK: &str = "t-transfer";

/// A failed attempt, for its recovery: the credential used.
struct Attempt {
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
) -> (Observed, Option<Attempt>) {
    let authorize_at = authorize_at.unwrap_or_else(|| token.up());
    let (code, state) = world.authorized(authorize_at, TASK);
    let issuer = authorize_at.issuer();
    let before = counters(world.envoy, "baton_itac");
    token.arm(&case.inject, Endpoint::Token);
    let answer = match path {
        Path::Message => world.post_transfer(TASK, Some(json!({"code": code, "state": state}))),
        Path::Redirect => world.callback(&code, &state),
    };
    let changed = changes(&before, &counters(world.envoy, "baton_itac"));
    if case.expect == Expect::Succeeds {
        assert_eq!(answer.status, 200, "{}", answer.body_str());
        let (answer, moved) = match path {
            Path::Message => {
                assert_eq!(
                    changed,
                    counts(&[
                        ("baton_itac.codes_exchanged", 1),
                        ("baton_itac.tokens_injected", 1),
                        // The agent completed the task: its token goes.
                        ("baton_itac.tasks_ended", 1),
                    ])
                );
                ("200 forwarded, token injected", "codes_exchanged +1, tokens_injected +1, tasks_ended +1")
            }
            Path::Redirect => {
                assert_eq!(body_json(&answer)["status"], "authorized", "{}", answer.body_str());
                assert_eq!(changed, counts(&[("baton_itac.codes_exchanged", 1)]));
                world.continue_task(TASK);
                ("200 authorized", "codes_exchanged +1")
            }
        };
        world.assert_injected(&issuer, case.served.as_deref(), &code);
        let seen = Observed { answer: answer.into(), counters: moved.into(), recovery: "-".into() };
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
    assert_eq!(world.agent.requests().len(), 0, "forwarded to the agent");
    world.assert_still_serves();
    let seen = Observed {
        answer: format!("{shown} (same code again: 400)"),
        counters: "idp_unavailable +1".into(),
        // Filled in by code_exchange_recovery once the bank is back.
        recovery: String::new(),
    };
    (seen, Some(Attempt { code, state }))
}

/// Once the bank is back: the failed attempt's state is used up (the same
/// credential again is a 400 that forwards nothing); a new authorization
/// goes through. Returns the recovery text.
fn code_exchange_recovery(world: &Bank, bank: &MockIdp, path: Path, attempt: &Attempt) -> String {
    let again = match path {
        Path::Message => {
            world.post_transfer(TASK, Some(json!({"code": attempt.code, "state": attempt.state})))
        }
        Path::Redirect => world.callback(&attempt.code, &attempt.state),
    };
    assert_eq!(again.status, 400, "the state was used: {}", again.body_str());
    if path == Path::Message {
        assert_eq!(body_json(&again)["error"]["code"], -32602, "{}", again.body_str());
    }
    assert_eq!(world.agent.requests().len(), 0, "the used credential was forwarded");
    let cleared = Instant::now();
    let (code, state) = world.authorized(bank, TASK);
    let recovery = match path {
        Path::Message => {
            let answer = world.post_transfer(TASK, Some(json!({"code": code, "state": state})));
            assert_eq!(answer.status, 200, "{}", answer.body_str());
            cleared.elapsed()
        }
        Path::Redirect => {
            let page = world.callback(&code, &state);
            assert_eq!(page.status, 200, "{}", page.body_str());
            let took = cleared.elapsed();
            world.continue_task(TASK);
            took
        }
    };
    world.assert_injected(&bank.issuer(), None, &code);
    format!("{} ms (new authorization)", ms(recovery))
}

/// in-task-auth-code in front of the agent, the bank's token endpoint broken
/// by `case` once Envoy is up, the code reaching it through `path`. The
/// bank's keys and authorization endpoint stay up; the token endpoint that
/// is down is a second one for the same bank (issuer, keys, clients), where
/// nothing listens until it comes back.
fn code_exchange_row(path: Path, case: Case) {
    let mut keys = Idp::start(bank_config());
    let mut outage = matches!(case.inject, Inject::Down).then(|| Idp::outage_of(&keys));
    let mut claims = keys.up().standard_claims("alice", "bank-api", 300);
    claims["scope"] = json!("transfers:write");
    let served = keys.up().mint(claims);
    let case = case.answering(&served, false);
    let agent = EchoBackend::start_a2a_agent().unwrap();
    let spec = EnvoySpec::new(agent.addr())
        .cluster("bank_keys", keys.addr)
        .cluster("bank_token", outage.as_ref().unwrap_or(&keys).addr)
        .filter("in_task_auth_code", in_task_filter(keys.up()));
    let envoy = start_envoy(&spec);
    assert!(
        envoy.wait_for(Duration::from_secs(10), |e| e.counter("baton_itac.jwks.fetch_success") == 1),
        "the bank's keys"
    );
    let alone = alone_if_timed(&case);
    let world = Bank { envoy: &envoy, agent: &agent };

    let (mut seen, attempt) = match outage.as_mut() {
        Some(outage) => code_exchange_attempt(&world, Some(keys.up()), outage, path, &case),
        None => code_exchange_attempt(&world, None, &mut keys, path, &case),
    };
    drop(alone);
    if let Some(attempt) = attempt {
        let bank = outage.as_mut().unwrap_or(&mut keys);
        bank.disarm();
        seen.recovery = code_exchange_recovery(&world, bank.up(), path, &attempt);
    }
    assert_no_vm_failed(&envoy);
    report("in-task-auth-code", path.call(), &case, &seen);
}
