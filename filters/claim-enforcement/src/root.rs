//! The root context: configuration, key set fetches on a timer, and waking
//! requests that wait for keys. One per VM (Envoy's main thread and each
//! worker), sharing its state with the VM's request contexts.

use std::cell::RefCell;
use std::rc::Rc;

use baton_filter_kit::config::KeySource;
use baton_filter_kit::host::{Host, LogLevel};
use baton_filter_kit::key_fetches::KeyFetches;
use baton_filter_kit::plugin::load_config;
use baton_filter_kit::proxy_host::{MetricIds, ProxyHost, log};
use baton_filter_kit::ticker::{FAST_TICK, Ticker};
use baton_filter_kit::verifier::KeyWait;
use baton_filter_kit::waiters::{Waiter, Waiters, WaitingRequests, enter_context};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::decision::{Engine, Request};
use crate::http::{ClaimEnforcementHttp, apply_after_wait};
use crate::{FILTER, config, metrics};

/// Extra time a request may wait beyond the fetch timeout.
const WAIT_GRACE_SECS: u64 = 3;

/// A request held until keys arrive.
#[derive(Debug)]
pub struct PendingRequest {
    /// What to decide once keys are there.
    pub request: Request,
    /// The provider whose keys it needs.
    pub provider: usize,
}

/// Everything a VM keeps once configured.
#[derive(Debug)]
pub struct Vm {
    /// Decisions, keys and cache.
    pub engine: Engine,
    /// Counter ids.
    pub metrics: MetricIds,
    /// Requests waiting for keys, by context id.
    pub waiters: Waiters<PendingRequest>,
    /// The root context's timer.
    pub ticker: Ticker,
    fetches: KeyFetches,
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
pub struct ClaimEnforcementRoot {
    context_id: u32,
    vm: SharedVm,
}

impl ClaimEnforcementRoot {
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
                "configured version={} providers={} routes={} fingerprint={}",
                env!("CARGO_PKG_VERSION"),
                config.providers.len(),
                config.routes.len(),
                config.fingerprint
            ),
        );
        let mut vm = Vm {
            engine: Engine::new(Rc::new(config)),
            metrics: MetricIds::define(&metrics::ALL),
            waiters: Waiters::default(),
            ticker: Ticker::new(),
            fetches: KeyFetches::default(),
        };
        let keys = vm.engine.verifier.keys();
        if (0..keys.len()).any(|p| keys.is_remote(p)) {
            // The first tick fetches the key sets, then keeps them fresh. Not
            // fetched here: Envoy may configure a root context that it then
            // discards, and its call would hold the fetch lease for nothing.
            vm.ticker.set(FAST_TICK);
        }
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
        for provider in vm.fetches.poll(vm.engine.verifier.keys(), &host, "baton-claim-enforcement") {
            wake(vm, &host, |waiter| waiter.request.provider == provider);
        }
        let now = host.now_unix_secs();
        let timeouts: Vec<u64> = vm
            .engine
            .config()
            .providers
            .iter()
            .map(|p| match &p.keys {
                KeySource::Remote(remote) => remote.timeout_ms.div_ceil(1000),
                KeySource::Inline(_) => 0,
            })
            .collect();
        let overdue = move |waiter: &Waiter<PendingRequest>| {
            let timeout = timeouts.get(waiter.request.provider).copied().unwrap_or(0);
            now > waiter.since + timeout + WAIT_GRACE_SECS
        };
        wake(vm, &host, overdue);
        let busy = vm.engine.verifier.keys().needs_attention() || !vm.waiters.is_empty() || vm.fetches.busy();
        vm.ticker.settle(busy);
        let _ = hostcalls::set_effective_context(self.context_id);
    }

    fn fetch_done(&mut self, token: u32, num_headers: usize, body_size: usize) {
        let Ok(mut slot) = self.vm.try_borrow_mut() else {
            return;
        };
        let Some(vm) = slot.as_mut() else {
            return;
        };
        let metrics = vm.metrics.clone();
        let host = ProxyHost::new(&metrics, FILTER);
        if let Some(provider) =
            vm.fetches.complete(token, num_headers, body_size, vm.engine.verifier.keys(), &host)
        {
            wake(vm, &host, |waiter| waiter.request.provider == provider);
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }
}

/// Decides again each waiting request `select` picks, in that request's own
/// context, and lets it go or answers it.
fn wake(vm: &mut Vm, host: &dyn Host, select: impl Fn(&Waiter<PendingRequest>) -> bool) {
    for (id, waiter) in vm.waiters.take(select) {
        if !enter_context(id) {
            continue; // the request is gone (client went away)
        }
        let verdict = vm.engine.decide(host, &waiter.request.request, KeyWait::Exhausted);
        apply_after_wait(verdict, vm.engine.config());
    }
}

impl Context for ClaimEnforcementRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.fetch_done(token_id, num_headers, body_size);
    }
}

impl RootContext for ClaimEnforcementRoot {
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
        Some(Box::new(ClaimEnforcementHttp::new(context_id, Rc::clone(&self.vm))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
