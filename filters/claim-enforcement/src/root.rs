//! The root context: configuration, key set fetches on a timer, and waking
//! requests that wait for keys. One per VM (Envoy's main thread and each
//! worker), sharing its state with the VM's request contexts.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use crate::config;
use crate::decision::{Engine, KeyWait, Request};
use crate::host::{Host, LogLevel};
use crate::http::{ClaimEnforcementHttp, apply_after_wait};
use crate::keys::{FetchError, MAX_JWKS_BYTES};
use crate::wasm_host::{MetricIds, ProxyHost, log};

/// Tick period while keys are missing or requests wait.
const FAST_TICK: Duration = Duration::from_millis(100);
/// Tick period otherwise: refresh checks and picking up other workers' fetches.
const SLOW_TICK: Duration = Duration::from_secs(1);
/// Tick period a waiting request asks for, so the fetch starts at once.
const IMMEDIATE_TICK: Duration = Duration::from_millis(1);
/// Extra time a request may wait beyond the fetch timeout.
const WAIT_GRACE_SECS: u64 = 3;

/// A request held until keys arrive.
#[derive(Debug)]
pub struct Waiter {
    /// What to decide once keys are there.
    pub request: Request,
    /// The provider whose keys it needs.
    pub provider: usize,
    /// When it started waiting.
    pub since: u64,
}

/// Everything a VM keeps once configured.
#[derive(Debug)]
pub struct Vm {
    /// Decisions, keys and cache.
    pub engine: Engine,
    /// Counter ids.
    pub metrics: MetricIds,
    /// Requests waiting for keys, by context id.
    pub waiters: HashMap<u32, Waiter>,
    /// Key set fetches in flight: callout token to provider.
    fetches: HashMap<u32, usize>,
    tick: Duration,
}

impl Vm {
    /// Makes the root context tick at once (a request waits for keys). The
    /// next tick sets the period back.
    pub fn tick_now(&mut self) {
        if self.tick != IMMEDIATE_TICK && hostcalls::set_tick_period(IMMEDIATE_TICK).is_ok() {
            self.tick = IMMEDIATE_TICK;
        }
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
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            _ => {
                log(LogLevel::Error, "invalid configuration: no plugin configuration given");
                return false;
            }
        };
        let config = match config::parse(&bytes) {
            Ok(config) => config,
            Err(error) => {
                log(LogLevel::Error, &error.to_string());
                return false;
            }
        };
        log(
            LogLevel::Info,
            &format!(
                "configured version={} providers={} routes={} fingerprint={}",
                env!("CARGO_PKG_VERSION"),
                config.providers.len(),
                config.routes.len(),
                config.fingerprint
            ),
        );
        let engine = Engine::new(Rc::new(config));
        let vm = Vm {
            engine,
            metrics: MetricIds::define(),
            waiters: HashMap::new(),
            fetches: HashMap::new(),
            tick: Duration::ZERO,
        };
        let has_remote = (0..vm.engine.keys.len()).any(|p| vm.engine.keys.is_remote(p));
        match self.vm.try_borrow_mut() {
            Ok(mut slot) => *slot = Some(vm),
            Err(_) => return false,
        }
        if has_remote {
            // The first tick fetches the key sets, then keeps them fresh. Not
            // fetched here: Envoy may configure a root context that it then
            // discards, and its call would hold the fetch lease for nothing.
            let _ = hostcalls::set_tick_period(FAST_TICK);
        }
        true
    }

    fn tick(&mut self) {
        let Ok(mut slot) = self.vm.try_borrow_mut() else {
            return;
        };
        let Some(vm) = slot.as_mut() else {
            return;
        };
        let metrics = vm.metrics.clone();
        let host = ProxyHost::new(&metrics);
        let now = host.now_unix_secs();
        for provider in 0..vm.engine.keys.len() {
            if !vm.engine.keys.is_remote(provider) {
                continue;
            }
            if vm.engine.keys.sync(provider, &host) {
                wake_waiters(vm, &host, |_, waiter| waiter.provider == provider);
            }
            if let Some(request) = vm.engine.keys.start_fetch(provider, &host) {
                let headers = vec![
                    (":method", "GET"),
                    (":path", request.path.as_str()),
                    (":authority", request.authority.as_str()),
                    ("accept", "application/json"),
                    ("user-agent", "baton-claim-enforcement"),
                ];
                let timeout = Duration::from_millis(request.timeout_ms);
                match hostcalls::dispatch_http_call(&request.cluster, headers, None, vec![], timeout) {
                    Ok(token) => {
                        vm.fetches.insert(token, provider);
                    }
                    Err(status) => {
                        host.log(
                            LogLevel::Warn,
                            &format!(
                                "jwks provider={provider} cluster={} dispatch failed: {status:?}",
                                request.cluster
                            ),
                        );
                        vm.engine.keys.finish_fetch(provider, &host, Err(FetchError::Dispatch));
                        wake_waiters(vm, &host, |_, waiter| waiter.provider == provider);
                    }
                }
            }
            // A fetch failed (here or in another worker) after these requests
            // began to wait: there is nothing more to wait for.
            if vm.engine.keys.backing_off(provider, &host, now) {
                wake_waiters(vm, &host, |_, waiter| waiter.provider == provider);
            }
        }
        let fetch_timeout = |provider: usize| {
            vm.engine.config().providers.get(provider).map_or(0, |p| match &p.keys {
                config::KeySource::Remote(remote) => remote.timeout_ms.div_ceil(1000),
                config::KeySource::Inline(_) => 0,
            })
        };
        let overdue: Vec<u32> = vm
            .waiters
            .iter()
            .filter(|(_, waiter)| now > waiter.since + fetch_timeout(waiter.provider) + WAIT_GRACE_SECS)
            .map(|(id, _)| *id)
            .collect();
        if !overdue.is_empty() {
            wake_waiters(vm, &host, |id, _| overdue.contains(&id));
        }
        let wanted =
            if vm.engine.keys.needs_attention() || !vm.waiters.is_empty() { FAST_TICK } else { SLOW_TICK };
        if wanted != vm.tick {
            vm.tick = wanted;
            let _ = hostcalls::set_tick_period(wanted);
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }

    fn fetch_done(&mut self, token: u32, body_size: usize) {
        let Ok(mut slot) = self.vm.try_borrow_mut() else {
            return;
        };
        let Some(vm) = slot.as_mut() else {
            return;
        };
        let Some(provider) = vm.fetches.remove(&token) else {
            return;
        };
        let metrics = vm.metrics.clone();
        let host = ProxyHost::new(&metrics);
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|status| std::str::from_utf8(&status).ok().and_then(|s| s.parse::<u16>().ok()));
        let body = if body_size > MAX_JWKS_BYTES {
            None
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten()
        };
        let result = match (status, body) {
            (None, _) => Err(FetchError::NoResponse),
            (Some(200), _) if body_size > MAX_JWKS_BYTES => Err(FetchError::TooLarge),
            (Some(200), Some(body)) => Ok(body),
            (Some(200), None) => Ok(Vec::new()),
            (Some(status), _) => Err(FetchError::Status(status)),
        };
        vm.engine.keys.finish_fetch(provider, &host, result.as_deref().map_err(Clone::clone));
        wake_waiters(vm, &host, |_, waiter| waiter.provider == provider);
        let _ = hostcalls::set_effective_context(self.context_id);
    }
}

/// Decides again for each waiting request that `select` picks, in that
/// request's own context, and lets it go or answers it.
fn wake_waiters(vm: &mut Vm, host: &dyn Host, select: impl Fn(u32, &Waiter) -> bool) {
    let ids: Vec<u32> =
        vm.waiters.iter().filter(|(id, waiter)| select(**id, waiter)).map(|(id, _)| *id).collect();
    for id in ids {
        let Some(waiter) = vm.waiters.remove(&id) else {
            continue;
        };
        if hostcalls::set_effective_context(id).is_err() {
            // The request is gone (client went away).
            continue;
        }
        let verdict = vm.engine.decide(host, &waiter.request, KeyWait::Exhausted);
        apply_after_wait(verdict, vm.engine.config());
    }
}

impl Context for ClaimEnforcementRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.fetch_done(token_id, body_size);
    }
}

impl RootContext for ClaimEnforcementRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        log(LogLevel::Info, &format!("vm started, version {}", env!("CARGO_PKG_VERSION")));
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
