//! The root context: configuration, code exchanges (dispatched here so a
//! departing request never cancels a call another request waits on), key
//! set fetches for the secondary IdP, and waking the waiting requests.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use baton_filter_kit::callout::CalloutResponse;
use baton_filter_kit::host::{Host, LogLevel};
use baton_filter_kit::key_fetches::KeyFetches;
use baton_filter_kit::plugin::load_config;
use baton_filter_kit::proxy_host::{MetricIds, ProxyHost, log};
use baton_filter_kit::ticker::{FAST_TICK, Ticker};
use baton_filter_kit::token_calls::Flights;
use baton_filter_kit::verifier::KeyWait;
use baton_filter_kit::waiters::{Waiter, Waiters, WaitingRequests, enter_context};
use baton_token::TokenHash;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::decision::{Engine, ExchangeOutcome, Reply, Request, Round, Verdict};
use crate::http::{InTaskHttp, apply_after_wait};
use crate::response::AnswerContext;
use crate::{FILTER, config, metrics};

/// Largest token endpoint answer read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// Extra time a request may wait beyond the call timeout.
const WAIT_GRACE_SECS: u64 = 3;

/// What a paused request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// The secondary IdP's keys.
    Keys(usize),
    /// A code exchange, by `state` hash.
    Exchange(TokenHash),
}

/// A paused request.
#[derive(Debug)]
pub struct Pending {
    /// The request (body included), to decide again.
    pub request: Request,
    /// What it waits for.
    pub waiting_for: WaitFor,
    /// How many times it already waited.
    pub round: u8,
    /// A code exchange outcome it already has (kept while it then waits
    /// for keys to validate the token).
    pub exchange: Option<(TokenHash, ExchangeOutcome)>,
}

/// Everything a VM keeps once configured.
#[derive(Debug)]
pub struct Vm {
    /// Decisions, verification, state and task store.
    pub engine: Engine,
    /// Counter ids.
    pub metrics: MetricIds,
    /// Paused requests by context id.
    pub waiters: Waiters<Pending>,
    /// What each forwarded request left for the agent's answer.
    pub answers: HashMap<u32, AnswerContext>,
    /// Requests whose body is awaited, since when.
    pub reading: HashMap<u32, u64>,
    /// The root context's timer.
    pub ticker: Ticker,
    /// Code exchanges, one per state.
    pub flights: Flights,
    key_fetches: KeyFetches,
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
        exchange: Option<(TokenHash, ExchangeOutcome)>,
        now: u64,
    ) -> Result<(), Box<Verdict>> {
        let waiting_for = match verdict {
            Verdict::AwaitKeys(provider) => WaitFor::Keys(provider),
            Verdict::AwaitToken(call) => {
                let key = call.key;
                self.flights.request(*call);
                WaitFor::Exchange(key)
            }
            other => return Err(Box::new(other)),
        };
        self.waiters.insert(context_id, Pending { request, waiting_for, round, exchange }, now);
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
        self.answers.remove(&context_id);
        self.reading.remove(&context_id);
    }
}

/// State shared by the root context and the request contexts of one VM.
pub type SharedVm = Rc<RefCell<Option<Vm>>>;

/// The filter's root context.
#[derive(Debug)]
pub struct InTaskRoot {
    context_id: u32,
    vm: SharedVm,
}

impl InTaskRoot {
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
                "configured version={} secondary_idp={} rules={} fingerprint={}",
                env!("CARGO_PKG_VERSION"),
                config.idp.name,
                config.rules.len(),
                config.fingerprint
            ),
        );
        let mut vm = Vm {
            engine: Engine::new(Rc::new(config)),
            metrics: MetricIds::define(&metrics::ALL),
            waiters: Waiters::default(),
            answers: HashMap::new(),
            reading: HashMap::new(),
            ticker: Ticker::new(),
            flights: Flights::default(),
            key_fetches: KeyFetches::default(),
        };
        vm.ticker.set(FAST_TICK);
        // The store's slots exist before this VM serves a request.
        vm.engine.init_shared_data(&ProxyHost::new(&vm.metrics, FILTER));
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
        for provider in vm.key_fetches.poll(vm.engine.verifier.keys(), &host, "baton-in-task-auth-code") {
            wake(vm, &host, WaitFor::Keys(provider), None);
        }
        dispatch_queued(vm, &host);
        answer_overdue(vm, &host);
        answer_bodiless(vm, &host);
        let busy = !vm.waiters.is_empty()
            || !vm.reading.is_empty()
            || vm.flights.busy()
            || vm.key_fetches.busy()
            || vm.engine.verifier.keys().needs_attention();
        vm.ticker.settle(busy);
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
            if let Some(provider) =
                vm.key_fetches.complete(token, num_headers, body_size, vm.engine.verifier.keys(), &host)
            {
                wake(vm, &host, WaitFor::Keys(provider), None);
            }
        } else if let Some((call, _)) = vm.flights.complete(token) {
            let response = CalloutResponse::read(num_headers, body_size, MAX_TOKEN_RESPONSE_BYTES);
            let body: &[u8] = if response.body_too_large { b"too large" } else { &response.body };
            let outcome = vm.engine.exchange_outcome(&host, &call, response.status, body);
            wake(vm, &host, WaitFor::Exchange(call.key), Some(outcome));
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }
}

fn dispatch_queued(vm: &mut Vm, host: &dyn Host) {
    let config = vm.engine.shared_config();
    for call in vm.flights.take_queued() {
        let endpoint = match (call.endpoint, &config.binding.primary_login) {
            (crate::login::LOGIN_ENDPOINT, Some(login)) => &login.server.token_endpoint,
            _ => &config.idp.token_endpoint,
        };
        match endpoint.dispatch(&call, "baton-in-task-auth-code") {
            Ok(token) => vm.flights.dispatched(call, token, host.now_unix_millis()),
            Err(status) => {
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "cluster={} token call ({}) dispatch failed: {status:?}",
                        endpoint.cluster, call.label
                    ),
                );
                vm.flights.abandoned(&call.key);
                let outcome = ExchangeOutcome::Unavailable("dispatch_failed".into());
                wake(vm, host, WaitFor::Exchange(call.key), Some(outcome));
            }
        }
    }
}

fn answer_overdue(vm: &mut Vm, host: &dyn Host) {
    let now = host.now_unix_secs();
    let longest = vm.engine.config().idp.token_endpoint.timeout_ms.div_ceil(1000).max(5);
    let overdue = vm.waiters.take(|waiter: &Waiter<Pending>| now > waiter.since + longest + WAIT_GRACE_SECS);
    for (id, _) in overdue {
        host.count(metrics::IDP_UNAVAILABLE);
        if enter_context(id) {
            let reply = Reply::rpc_error(
                503,
                &serde_json::Value::Null,
                crate::a2a::SERVER_ERROR,
                "authorization timed out",
            );
            crate::http::send_reply(&reply);
        }
    }
}

/// How long a protected request may wait for its first body bytes.
const BODY_WAIT_SECS: u64 = 10;

/// Answers requests whose body never came. With Envoy's default for Wasm
/// filters, holding the headers also withholds the body from the filter;
/// the filter needs `allow_on_headers_stop_iteration: true` in its plugin
/// config. Rather than hang, such requests fail closed with a clear log.
fn answer_bodiless(vm: &mut Vm, host: &dyn Host) {
    let now = host.now_unix_secs();
    let stuck: Vec<u32> =
        vm.reading.iter().filter(|(_, since)| now > **since + BODY_WAIT_SECS).map(|(id, _)| *id).collect();
    for id in stuck {
        vm.reading.remove(&id);
        host.log(
            LogLevel::Error,
            "a protected request's body never reached the filter: set allow_on_headers_stop_iteration: true in the \
             Wasm plugin config (Envoy >= 1.35); answering 500",
        );
        if enter_context(id) {
            let reply = Reply::rpc_error(
                500,
                &serde_json::Value::Null,
                crate::a2a::SERVER_ERROR,
                "the gateway could not read the request",
            );
            crate::http::send_reply(&reply);
        }
    }
}

/// Decides again every request waiting for `what`, in its own context.
fn wake(vm: &mut Vm, host: &dyn Host, what: WaitFor, outcome: Option<ExchangeOutcome>) {
    for (id, waiter) in vm.waiters.take(|waiter| waiter.request.waiting_for == what) {
        if !enter_context(id) {
            vm.answers.remove(&id);
            continue; // the request is gone
        }
        let pending = waiter.request;
        let exchange = match (what, &outcome) {
            (WaitFor::Exchange(key), Some(outcome)) => Some((key, outcome.clone())),
            _ => pending.exchange,
        };
        let round = Round {
            number: pending.round + 1,
            keys: if matches!(what, WaitFor::Keys(_)) { KeyWait::Exhausted } else { KeyWait::Allowed },
            exchange: exchange.as_ref().map(|(key, outcome)| (key, outcome)),
        };
        let verdict = vm.engine.decide(host, &pending.request, round);
        match vm.park(id, pending.request, verdict, pending.round + 1, exchange, host.now_unix_secs()) {
            Ok(()) => {}
            Err(verdict) => {
                if let Verdict::Forward(forward) = verdict.as_ref() {
                    vm.answers.insert(id, AnswerContext::of(forward));
                }
                apply_after_wait(*verdict);
            }
        }
    }
}

impl Context for InTaskRoot {
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

impl RootContext for InTaskRoot {
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
        Some(Box::new(InTaskHttp::new(context_id, Rc::clone(&self.vm))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
