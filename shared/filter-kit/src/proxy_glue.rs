//! The proxy-wasm SDK's context traits, implemented once for every filter:
//! a root context per VM and a context per request, each handing its
//! callbacks to the VM's [`Runtime`] with a [`ProxyHost`]. Besides
//! [`crate::proxy_host`], the only code that touches the SDK.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as ProxyAction, BufferType, ContextType};

use crate::host::{Host, LogLevel};
use crate::proxy_host::{MetricIds, ProxyHost, log, proxy_log_level};
use crate::runtime::{Action, Plugin, Runtime, fail_closed};

/// How late a count may reach the proxy's stats.
const COUNTER_FLUSH: std::time::Duration = crate::ticker::FAST_TICK;

/// A configured VM.
struct Vm<P: Plugin> {
    runtime: Runtime<P>,
    metrics: MetricIds,
    /// The proxy's log level, read at each tick (a host call saved on
    /// every line that would not be written).
    log_level: LogLevel,
}

/// What the root context and the request contexts of one VM share.
type SharedVm<P> = Rc<RefCell<Option<Vm<P>>>>;

/// A filter's root context.
pub struct Root<P: Plugin> {
    context_id: u32,
    vm: SharedVm<P>,
}

impl<P: Plugin> std::fmt::Debug for Root<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root").field("filter", &P::NAME).field("context_id", &self.context_id).finish()
    }
}

impl<P: Plugin> Root<P> {
    /// A root context before configuration.
    pub fn new(context_id: u32) -> Self {
        Self { context_id, vm: Rc::new(RefCell::new(None)) }
    }

    fn configure(&mut self) -> bool {
        let Some(filter) = load_config(P::NAME, P::configure) else {
            return false;
        };
        log(P::NAME, LogLevel::Info, &filter.summary());
        let metrics = MetricIds::define(P::COUNTERS);
        let leases = filter.leases();
        let mut runtime = Runtime::new(filter, leases);
        let log_level = proxy_log_level();
        let host = ProxyHost::new(&metrics, log_level, P::NAME);
        runtime.filter.start(&host);
        runtime.start(&host);
        match self.vm.try_borrow_mut() {
            Ok(mut slot) => {
                *slot = Some(Vm { runtime, metrics, log_level });
                true
            }
            Err(_) => false,
        }
    }

    /// Runs `act` on the VM, hands the counts made so far to the proxy,
    /// then makes the root context current again.
    fn with_vm(&self, act: impl FnOnce(&mut Runtime<P>, &dyn Host)) {
        if let Ok(mut slot) = self.vm.try_borrow_mut()
            && let Some(vm) = slot.as_mut()
        {
            let host = ProxyHost::new(&vm.metrics, vm.log_level, P::NAME);
            act(&mut vm.runtime, &host);
            vm.metrics.flush();
            let _ = host.enter_context(self.context_id);
        }
    }
}

impl<P: Plugin> Context for Root<P> {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.with_vm(|runtime, host| runtime.on_callout(host, token_id, num_headers, body_size));
    }
}

impl<P: Plugin> RootContext for Root<P> {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        log(P::NAME, LogLevel::Info, &format!("vm started, version {}", P::VERSION));
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.configure()
    }

    fn on_tick(&mut self) {
        if let Ok(mut slot) = self.vm.try_borrow_mut()
            && let Some(vm) = slot.as_mut()
        {
            vm.log_level = proxy_log_level();
        }
        self.with_vm(|runtime, host| runtime.on_tick(host));
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::<P> { context_id, vm: Rc::clone(&self.vm) }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// A filter's context for one request.
pub struct Http<P: Plugin> {
    context_id: u32,
    vm: SharedVm<P>,
}

impl<P: Plugin> std::fmt::Debug for Http<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("filter", &P::NAME).field("context_id", &self.context_id).finish()
    }
}

/// A request callback, as the proxy delivered it.
#[derive(Debug, Clone, Copy)]
enum Event {
    RequestHeaders { end_of_stream: bool },
    RequestBody { size: usize, end_of_stream: bool },
    RequestTrailers,
    ResponseHeaders { end_of_stream: bool },
    ResponseBody { size: Option<usize>, end_of_stream: bool },
}

impl<P: Plugin> Http<P> {
    /// Hands a callback to the VM. A request callback that cannot reach it
    /// fails closed; an answer callback lets the answer through.
    fn on(&self, event: Event) -> ProxyAction {
        let request_phase = matches!(
            event,
            Event::RequestHeaders { .. } | Event::RequestBody { .. } | Event::RequestTrailers
        );
        let id = self.context_id;
        let action = match self.vm.try_borrow_mut() {
            Ok(mut slot) => match slot.as_mut() {
                Some(vm) => {
                    let host = ProxyHost::new(&vm.metrics, vm.log_level, P::NAME);
                    let runtime = &mut vm.runtime;
                    let action = match event {
                        Event::RequestHeaders { end_of_stream } => {
                            runtime.on_request_headers(&host, id, end_of_stream)
                        }
                        Event::RequestBody { size, end_of_stream } => {
                            runtime.on_request_body(&host, id, Some(size), end_of_stream)
                        }
                        Event::RequestTrailers => runtime.on_request_trailers(&host, id),
                        Event::ResponseHeaders { end_of_stream } => {
                            runtime.on_response_headers(&host, id, end_of_stream)
                        }
                        Event::ResponseBody { size, end_of_stream } => {
                            runtime.on_response_body(&host, id, size, end_of_stream)
                        }
                    };
                    // Counts wait for the tick: make it come soon.
                    if vm.metrics.has_pending() {
                        runtime.tick_within(&host, COUNTER_FLUSH);
                    }
                    action
                }
                None if request_phase => unreachable_vm::<P>("filter not configured"),
                None => Action::Continue,
            },
            Err(_) if request_phase => unreachable_vm::<P>("filter state busy"),
            Err(_) => Action::Continue,
        };
        match action {
            Action::Continue => ProxyAction::Continue,
            Action::Pause => ProxyAction::Pause,
        }
    }
}

fn unreachable_vm<P: Plugin>(why: &str) -> Action {
    fail_closed(&ProxyHost::new(&MetricIds::default(), LogLevel::Debug, P::NAME), why)
}

// A store operation is dispatched by the request that waits for it (its
// answer is for that request alone), so Envoy delivers the answer to this
// context, not to the root's: it goes to the runtime all the same.
impl<P: Plugin> Context for Http<P> {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Ok(mut slot) = self.vm.try_borrow_mut()
            && let Some(vm) = slot.as_mut()
        {
            let host = ProxyHost::new(&vm.metrics, vm.log_level, P::NAME);
            vm.runtime.on_callout(&host, token_id, num_headers, body_size);
            if vm.metrics.has_pending() {
                vm.runtime.tick_within(&host, COUNTER_FLUSH);
            }
            let _ = host.enter_context(self.context_id);
        }
    }
}

impl<P: Plugin> HttpContext for Http<P> {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> ProxyAction {
        self.on(Event::RequestHeaders { end_of_stream })
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> ProxyAction {
        self.on(Event::RequestBody { size, end_of_stream })
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> ProxyAction {
        self.on(Event::RequestTrailers)
    }

    // A filter that never reads answers lets them pass without reaching
    // its VM (and without the code to, in its .wasm).
    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> ProxyAction {
        if !P::READS_ANSWERS {
            return ProxyAction::Continue;
        }
        self.on(Event::ResponseHeaders { end_of_stream })
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> ProxyAction {
        if !P::READS_ANSWERS {
            return ProxyAction::Continue;
        }
        self.on(Event::ResponseBody { size: Some(size), end_of_stream })
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> ProxyAction {
        if !P::READS_ANSWERS {
            return ProxyAction::Continue;
        }
        self.on(Event::ResponseBody { size: None, end_of_stream: true })
    }
}

impl<P: Plugin> Drop for Http<P> {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.vm.try_borrow_mut()
            && let Some(vm) = slot.as_mut()
        {
            vm.runtime.on_done(self.context_id);
        }
    }
}

/// Reads the plugin configuration and compiles it with `parse`. On any
/// error, logs one line and returns `None`: `on_configure` then returns
/// false and Envoy refuses the listener.
fn load_config<T>(filter: &str, parse: impl FnOnce(&[u8]) -> Result<T, String>) -> Option<T> {
    let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
        Ok(Some(bytes)) => bytes,
        _ => {
            log(filter, LogLevel::Error, "invalid configuration: no plugin configuration given");
            return None;
        }
    };
    match parse(&bytes) {
        Ok(config) => Some(config),
        Err(error) => {
            log(filter, LogLevel::Error, &error);
            None
        }
    }
}

/// Registers a filter (for `wasm32` builds): a panic hook that logs at
/// critical level (with `panic = "abort"` it is the VM's last word), then
/// the root context of the filter's [`Plugin`].
///
/// ```text
/// baton_filter_kit::register_filter!(crate::filter::MyFilter);
/// ```
#[macro_export]
macro_rules! register_filter {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        mod registration {
            use proxy_wasm::traits::RootContext;

            proxy_wasm::main! {{
                std::panic::set_hook(Box::new(|info| {
                    let _ = proxy_wasm::hostcalls::log(
                        proxy_wasm::types::LogLevel::Critical,
                        &format!("baton {}: panic: {info}", <$plugin as $crate::runtime::Plugin>::NAME),
                    );
                }));
                proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
                    Box::new($crate::proxy_glue::Root::<$plugin>::new(context_id))
                });
            }}
        }
    };
}
