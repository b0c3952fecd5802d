//! The root context: configuration, the token endpoint calls requests wait
//! for (one per token, dispatched here so a departing request never cancels
//! a call others wait on), client-credentials tokens kept fresh, key set
//! fetches, and waking the waiting requests.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use baton_filter_kit::callout::CalloutResponse;
use baton_filter_kit::host::{Host, LogLevel};
use baton_filter_kit::key_fetches::KeyFetches;
use baton_filter_kit::lease::{Lease, LeaseTable};
use baton_filter_kit::plugin::load_config;
use baton_filter_kit::proxy_host::{MetricIds, ProxyHost, log};
use baton_filter_kit::ticker::{FAST_TICK, Ticker};
use baton_filter_kit::verifier::KeyWait;
use baton_filter_kit::waiters::{Waiter, Waiters, WaitingRequests, enter_context};
use baton_token::TokenHash;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::decision::{Engine, JobFailure, Request, Round, Verdict};
use crate::http::{OboHttp, apply_after_wait};
use crate::issued::IssuedToken;
use crate::jobs::{Job, credentials_job};
use crate::renewal::RenewalBackoff;
use crate::{FILTER, config, metrics};
use baton_filter_kit::token_calls::Flights;

/// Largest token endpoint answer read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// Extra time a request may wait beyond the call timeout.
const WAIT_GRACE_SECS: u64 = 3;
/// Cross-worker lease slots for token endpoint calls.
const LEASE_SLOTS: u32 = 64;
/// How often a worker looks for a result another worker is fetching.
const REMOTE_POLL: Duration = Duration::from_millis(10);

/// What a paused request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// A provider's keys (subject validation `jwks`).
    Keys(usize),
    /// A token (exchange or client credentials) by cache key.
    Token(TokenHash),
}

/// A paused request.
#[derive(Debug)]
pub struct Pending {
    /// The request, to decide again.
    pub request: Request,
    /// What it waits for.
    pub waiting_for: WaitFor,
    /// How many times it already waited.
    pub round: u8,
}

/// Everything a VM keeps once configured.
#[derive(Debug)]
pub struct Vm {
    /// Decisions, subject verification, issued-token cache.
    pub engine: Engine,
    /// Counter ids.
    pub metrics: MetricIds,
    /// Paused requests by context id.
    pub waiters: Waiters<Pending>,
    /// The root context's timer.
    pub ticker: Ticker,
    /// Token endpoint calls, one per token.
    pub flights: Flights,
    key_fetches: KeyFetches,
    /// Leases that make one worker of all call for a given token.
    leases: LeaseTable,
    /// Calls another worker is making: this worker waits for their result.
    remote: HashMap<TokenHash, Job>,
    /// Client-credentials renewals that failed, and when to try again.
    renewals: RenewalBackoff,
}

impl Vm {
    /// Pauses request `context_id` until what `verdict` waits for arrives;
    /// hands back a verdict that does not wait.
    pub fn park(
        &mut self,
        context_id: u32,
        request: Request,
        verdict: Verdict,
        round: u8,
        now: u64,
    ) -> Result<(), Verdict> {
        let waiting_for = match verdict {
            Verdict::AwaitKeys(provider) => WaitFor::Keys(provider),
            Verdict::AwaitToken(job) => {
                let key = job.key;
                self.flights.request(*job);
                WaitFor::Token(key)
            }
            other => return Err(other),
        };
        self.waiters.insert(context_id, Pending { request, waiting_for, round }, now);
        // Start the work now rather than at the next regular tick.
        self.ticker.tick_now();
        Ok(())
    }
}

impl WaitingRequests for Vm {
    fn is_waiting(&self, context_id: u32) -> bool {
        self.waiters.contains(context_id)
    }

    fn forget(&mut self, context_id: u32) {
        self.waiters.remove(context_id);
    }
}

/// State shared by the root context and the request contexts of one VM.
pub type SharedVm = Rc<RefCell<Option<Vm>>>;

/// The filter's root context.
#[derive(Debug)]
pub struct OboRoot {
    context_id: u32,
    vm: SharedVm,
}

impl OboRoot {
    /// A root context before configuration.
    pub fn new(context_id: u32) -> Self {
        Self { context_id, vm: Rc::new(RefCell::new(None)) }
    }

    fn configure(&mut self) -> bool {
        let Some(config) = load_config(FILTER, config::parse) else {
            return false;
        };
        log(
            FILTER,
            LogLevel::Info,
            &format!(
                "configured version={} idps={} targets={} fingerprint={}",
                env!("CARGO_PKG_VERSION"),
                config.idps.len(),
                config.targets.len(),
                config.fingerprint
            ),
        );
        let leases = LeaseTable::new(format!("baton.obo.{}.flight.", config.fingerprint), LEASE_SLOTS);
        let mut vm = Vm {
            engine: Engine::new(Rc::new(config)),
            metrics: MetricIds::define(&metrics::ALL),
            waiters: Waiters::default(),
            ticker: Ticker::new(),
            flights: Flights::default(),
            key_fetches: KeyFetches::default(),
            leases,
            remote: HashMap::new(),
            renewals: RenewalBackoff::default(),
        };
        vm.leases.init(&ProxyHost::new(&vm.metrics, FILTER));
        // The first tick fetches key sets and client-credentials tokens.
        vm.ticker.set(FAST_TICK);
        match self.vm.try_borrow_mut() {
            Ok(mut slot) => {
                *slot = Some(vm);
                true
            }
            Err(_) => false,
        }
    }

    fn tick(&mut self) {
        let Ok(mut slot) = self.vm.try_borrow_mut() else {
            return;
        };
        let Some(vm) = slot.as_mut() else {
            return;
        };
        let metrics = vm.metrics.clone();
        let host = ProxyHost::new(&metrics, FILTER);
        if let Some(verifier) = vm.engine.verifier.as_mut() {
            for provider in vm.key_fetches.poll(verifier.keys(), &host, "baton-obo-credential-injection") {
                wake_for(vm, &host, WaitFor::Keys(provider), None);
            }
        }
        refresh_credentials(vm, &host);
        poll_remote(vm, &host);
        dispatch_queued(vm, &host);
        answer_overdue(vm, &host);
        if vm.remote.is_empty() {
            let busy = !vm.waiters.is_empty() || vm.flights.busy() || vm.key_fetches.busy();
            vm.ticker.settle(busy);
        } else {
            vm.ticker.set(REMOTE_POLL);
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }

    fn call_done(&mut self, token: u32, num_headers: usize, body_size: usize) {
        let Ok(mut slot) = self.vm.try_borrow_mut() else {
            return;
        };
        let Some(vm) = slot.as_mut() else {
            return;
        };
        let metrics = vm.metrics.clone();
        let host = ProxyHost::new(&metrics, FILTER);
        if vm.key_fetches.owns(token) {
            if let Some(verifier) = vm.engine.verifier.as_mut()
                && let Some(provider) =
                    vm.key_fetches.complete(token, num_headers, body_size, verifier.keys(), &host)
            {
                wake_for(vm, &host, WaitFor::Keys(provider), None);
            }
        } else if let Some((job, started)) = vm.flights.complete(token) {
            let response = CalloutResponse::read(num_headers, body_size, MAX_TOKEN_RESPONSE_BYTES);
            let idp_ms = host.now_unix_millis().saturating_sub(started);
            let result = if response.body_too_large {
                vm.engine.finish_job(&host, &job, response.status, b"too large")
            } else {
                vm.engine.finish_job(&host, &job, response.status, &response.body)
            };
            // The result is in the shared cache (or was a failure): other
            // workers waiting on this lease stop waiting.
            vm.leases.release(&host, &job.key);
            if vm.engine.config().credentials.iter().any(|grant| grant.key == job.key) {
                match &result {
                    Ok(_) => vm.renewals.succeeded(&job.key),
                    Err(_) => vm.renewals.failed(&job.key, host.now_unix_secs()),
                }
            }
            match result {
                Ok(token) => wake_for(vm, &host, WaitFor::Token(job.key), Some((&token, idp_ms))),
                Err(failure) => fail_waiting(vm, &host, job.key, &failure),
            }
            // A request woken above may have queued the next call it needs.
            dispatch_queued(vm, &host);
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }
}

/// Dispatches the queued token endpoint calls; a call another worker is
/// already making is waited for instead.
fn dispatch_queued(vm: &mut Vm, host: &dyn Host) {
    let config = vm.engine.shared_config();
    for job in vm.flights.take_queued() {
        let Some(idp) = config.idps.get(job.endpoint) else {
            vm.flights.abandoned(&job.key);
            continue;
        };
        let lease = vm.leases.acquire(host, &job.key, host.now_unix_millis(), idp.endpoint.timeout_ms + 1000);
        if lease == Lease::HeldElsewhere {
            vm.remote.insert(job.key, job);
            continue;
        }
        host.count(metrics::IDP_CALLS);
        match idp.endpoint.dispatch(&job, "baton-obo-credential-injection") {
            Ok(token) => vm.flights.dispatched(job, token, host.now_unix_millis()),
            Err(status) => {
                vm.flights.abandoned(&job.key);
                let failure = vm.engine.finish_job(host, &job, None, b"");
                host.log(
                    LogLevel::Warn,
                    &format!("idp={} cluster={} dispatch failed: {status:?}", idp.name, idp.endpoint.cluster),
                );
                if let Err(failure) = failure {
                    fail_waiting(vm, host, job.key, &failure);
                }
            }
        }
    }
}

/// Picks up results other workers fetched for this worker's waiting
/// requests; takes over a call whose lease ended without a result.
fn poll_remote(vm: &mut Vm, host: &dyn Host) {
    let now_ms = host.now_unix_millis();
    let keys: Vec<TokenHash> = vm.remote.keys().copied().collect();
    for key in keys {
        if vm.engine.cache.get(&key, host).is_some() {
            vm.remote.remove(&key);
            vm.flights.abandoned(&key);
            wake_for(vm, host, WaitFor::Token(key), None);
        } else if !vm.leases.held(host, &key, now_ms)
            && let Some(job) = vm.remote.remove(&key)
        {
            vm.flights.abandoned(&key);
            vm.flights.request(job);
        }
    }
}

/// Queues a renewal for each client-credentials token that is missing or
/// past its refresh time. When several workers queue the same renewal, the
/// lease in `dispatch_queued` lets one of them call.
fn refresh_credentials(vm: &mut Vm, host: &dyn Host) {
    let config = vm.engine.shared_config();
    let now = host.now_unix_secs();
    for grant in &config.credentials {
        if vm.flights.pending(&grant.key) || !vm.renewals.may_try(&grant.key, now) {
            continue;
        }
        let Some(idp) = config.idps.get(grant.idp) else {
            continue;
        };
        match vm.engine.cache.get(&grant.key, host) {
            None => {
                vm.flights.request(credentials_job(grant, idp));
            }
            Some((token, _)) if now >= token.refresh_at => {
                host.count(metrics::CREDENTIALS_REFRESHED);
                vm.flights.request(credentials_job(grant, idp));
            }
            Some(_) => {}
        }
    }
}

/// Answers requests that waited longer than any call could take: decided
/// again as if their call had failed (or their keys could not be had), so
/// the answer carries the same audit line as any other.
fn answer_overdue(vm: &mut Vm, host: &dyn Host) {
    let now = host.now_unix_secs();
    let longest =
        vm.engine.config().idps.iter().map(|idp| idp.endpoint.timeout_ms.div_ceil(1000)).max().unwrap_or(0);
    let overdue = vm.waiters.take(|waiter: &Waiter<Pending>| now > waiter.since + longest + WAIT_GRACE_SECS);
    let timeout = JobFailure::wait_timeout();
    for (id, waiter) in overdue {
        let pending = waiter.request;
        let round = match &pending.waiting_for {
            WaitFor::Token(key) => Round { failed: Some((key, &timeout)), ..next_round(&pending) },
            WaitFor::Keys(_) => Round { keys: KeyWait::Exhausted, ..next_round(&pending) },
        };
        decide_again(vm, host, id, &pending, round);
    }
}

/// The round after `pending` waited.
fn next_round(pending: &Pending) -> Round<'static> {
    Round { number: pending.round + 1, ..Round::FIRST }
}

/// Decides a waiting request again, in its own context: it goes on, waits
/// again, or gets its answer.
fn decide_again(vm: &mut Vm, host: &dyn Host, id: u32, pending: &Pending, round: Round<'_>) {
    if !enter_context(id) {
        return; // the request is gone
    }
    let verdict = vm.engine.decide(host, &pending.request, round);
    if let Err(verdict) =
        vm.park(id, pending.request.clone(), verdict, pending.round + 1, host.now_unix_secs())
    {
        apply_after_wait(verdict);
    }
}

/// Decides again every request waiting for `what`, with the token that just
/// arrived, in each request's own context.
fn wake_for(vm: &mut Vm, host: &dyn Host, what: WaitFor, fresh: Option<(&Rc<IssuedToken>, u64)>) {
    let fresh_key = match what {
        WaitFor::Token(key) => Some(key),
        WaitFor::Keys(_) => None,
    };
    for (id, waiter) in vm.waiters.take(|waiter| waiter.request.waiting_for == what) {
        let pending = waiter.request;
        let round = Round {
            keys: if matches!(what, WaitFor::Keys(_)) { KeyWait::Exhausted } else { KeyWait::Allowed },
            fresh: match (&fresh_key, fresh) {
                (Some(key), Some((token, idp_ms))) => Some((key, token, idp_ms)),
                _ => None,
            },
            ..next_round(&pending)
        };
        decide_again(vm, host, id, &pending, round);
    }
}

/// Decides again every request waiting for `key`, whose call failed: each
/// is answered with the failure, with its own audit line (target, mode,
/// user, caller).
fn fail_waiting(vm: &mut Vm, host: &dyn Host, key: TokenHash, failure: &JobFailure) {
    for (id, waiter) in vm.waiters.take(|waiter| waiter.request.waiting_for == WaitFor::Token(key)) {
        let pending = waiter.request;
        let round = Round { failed: Some((&key, failure)), ..next_round(&pending) };
        decide_again(vm, host, id, &pending, round);
    }
}

impl Context for OboRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.call_done(token_id, num_headers, body_size);
    }
}

impl RootContext for OboRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        log(FILTER, LogLevel::Info, &format!("vm started, version {}", env!("CARGO_PKG_VERSION")));
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.configure()
    }

    fn on_tick(&mut self) {
        self.tick();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(OboHttp::new(context_id, Rc::clone(&self.vm))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
