//! The request context: strips spoofable identity headers, gathers the
//! request, asks the [`Engine`](crate::decision::Engine), and applies the
//! verdict. A request waiting for keys stays paused, body included, until
//! the root context decides it.

use baton_filter_kit::handoff::{VERIFIED_TOKEN_PROPERTY, verified_value};
use baton_filter_kit::host::Host;
use baton_filter_kit::proxy_host::{ProxyHost, log};
use baton_filter_kit::reply::fail_closed;
use baton_filter_kit::request_headers;
use baton_filter_kit::verifier::KeyWait;
use std::rc::Rc;

use baton_filter_kit::waiters::{PauseGuard, resume_request};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType, Status};

use crate::FILTER;
use crate::config::FilterConfig;
use crate::decision::{Request, Verdict};
use crate::protected_resource::{ProtectedResource, WELL_KNOWN};
use crate::root::{PendingRequest, SharedVm, Vm};

/// Per-request context.
#[derive(Debug)]
pub struct ClaimEnforcementHttp {
    context_id: u32,
    vm: SharedVm,
    pause: PauseGuard<Vm>,
}

impl ClaimEnforcementHttp {
    /// A context for one request.
    pub fn new(context_id: u32, vm: SharedVm) -> Self {
        Self { context_id, pause: PauseGuard::new(Rc::clone(&vm), context_id), vm }
    }

    fn on_headers(&mut self) -> Action {
        let Ok(mut slot) = self.vm.try_borrow_mut() else {
            return fail_closed(FILTER, "filter state busy");
        };
        let Some(vm) = slot.as_mut() else {
            return fail_closed(FILTER, "filter not configured");
        };
        let config = vm.engine.shared_config();
        let Ok(request) = read_request(&config) else {
            return fail_closed(FILTER, "request headers unreadable");
        };
        if let Some(metadata) = &config.protected_resource {
            match serve_metadata(metadata, &request) {
                Ok(Some(action)) => return action,
                Ok(None) => {}
                Err(_) => return fail_closed(FILTER, "request headers unreadable"),
            }
        }
        let metrics = vm.metrics.clone();
        let host = ProxyHost::new(&metrics, FILTER);
        match vm.engine.decide(&host, &request, KeyWait::Allowed) {
            Verdict::AwaitKeys { provider } => {
                vm.waiters.insert(
                    self.context_id,
                    PendingRequest { request, provider },
                    host.now_unix_secs(),
                );
                self.pause.mark_waiting();
                // Let the root context start the fetch now rather than at its
                // next regular tick.
                vm.ticker.tick_now();
                Action::Pause
            }
            verdict => apply(verdict, &config),
        }
    }
}

/// Answers a request for the RFC 9728 metadata document; `None` for any
/// other request.
/// (`:path` is always read when metadata is served; `:method` only for a
/// well-known path the routes did not already need it for.)
fn serve_metadata(metadata: &ProtectedResource, request: &Request) -> Result<Option<Action>, Status> {
    if !request.path.starts_with(WELL_KNOWN) {
        return Ok(None);
    }
    let method = match request.method.as_str() {
        "" => request_headers::header(":method")?.unwrap_or_default(),
        read => read.to_string(),
    };
    let Some(answer) = metadata.answer(&method, &request.path) else {
        return Ok(None);
    };
    let body = (!answer.body.is_empty()).then_some(answer.body.as_bytes());
    if hostcalls::send_http_response(answer.status, answer.headers, body).is_err() {
        return Err(Status::InternalFailure);
    }
    Ok(Some(Action::Pause))
}

/// The attributes the decision needs: the token header, and only the
/// request attributes the routes look at.
fn read_request(config: &FilterConfig) -> Result<Request, Status> {
    let attributes = request_headers::match_attributes(config.match_inputs)?;
    Ok(Request {
        method: attributes.method,
        path: attributes.path,
        authority: attributes.authority,
        method_override: attributes.method_override,
        credential: request_headers::credential(&config.token_source.header)?,
    })
}

/// Applies a verdict in the current request's context; returns what the
/// header callback should answer.
fn apply(verdict: Verdict, config: &FilterConfig) -> Action {
    match verdict {
        Verdict::Forward(forward) => {
            // Identity headers come from this filter only: every client copy,
            // in any spelling a backend reads as the same name (`x_user_id`
            // for `x-user-id`), goes; then each is set or stays absent.
            let names: Vec<&str> = config.identity_headers().collect();
            if request_headers::remove_spellings(MapType::HttpRequestHeaders, &names).is_err() {
                return fail_closed(FILTER, "identity headers could not be removed");
            }
            for name in names {
                let value =
                    forward.set_headers.iter().find(|(header, _)| header == name).map(|(_, v)| v.as_bytes());
                if let Some(value) = value
                    && hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value)).is_err()
                {
                    return fail_closed(FILTER, "identity header could not be set");
                }
            }
            if let Some(hash) = &forward.share_verified
                && hostcalls::set_property(
                    vec![VERIFIED_TOKEN_PROPERTY],
                    Some(verified_value(hash).as_bytes()),
                )
                .is_err()
            {
                return fail_closed(FILTER, "verified token could not be recorded");
            }
            if forward.remove_token
                && hostcalls::remove_map_value(MapType::HttpRequestHeaders, &config.token_source.header)
                    .is_err()
            {
                return fail_closed(FILTER, "token header could not be removed");
            }
            Action::Continue
        }
        Verdict::Reject(rejection) => {
            rejection.send(FILTER);
            Action::Pause
        }
        Verdict::AwaitKeys { .. } => fail_closed(FILTER, "keys still unavailable"),
    }
}

/// Applies a verdict to a request that waited for keys (the root context
/// has made it the effective context).
pub fn apply_after_wait(verdict: Verdict, config: &FilterConfig) {
    if let Action::Continue = apply(verdict, config)
        && !resume_request()
    {
        log(FILTER, baton_filter_kit::LogLevel::Warn, "waiting request could not be resumed");
    }
}

impl Context for ClaimEnforcementHttp {}

impl HttpContext for ClaimEnforcementHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.on_headers()
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.pause.data_action()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // A backend that merges trailers into headers must not find an
        // identity header there either.
        let names: Option<Vec<String>> = self.vm.try_borrow().ok().and_then(|slot| {
            slot.as_ref().map(|vm| vm.engine.config().identity_headers().map(String::from).collect())
        });
        let Some(names) = names else {
            return fail_closed(FILTER, "filter state busy");
        };
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        if request_headers::remove_spellings(MapType::HttpRequestTrailers, &names).is_err() {
            return fail_closed(FILTER, "identity trailers could not be removed");
        }
        self.pause.data_action()
    }
}
