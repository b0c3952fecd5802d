//! The request context: gathers the request, asks the
//! [`Engine`](crate::decision::Engine), and applies the verdict. A request
//! waiting for a token or keys stays paused, body included, until the root
//! context decides it.

use baton_filter_kit::credential::Credential;
use baton_filter_kit::handoff::VERIFIED_TOKEN_PROPERTY;
use baton_filter_kit::host::Host;
use baton_filter_kit::proxy_host::{ProxyHost, log};
use baton_filter_kit::reply::fail_closed;
use baton_filter_kit::request_headers;
use std::rc::Rc;

use baton_filter_kit::waiters::{PauseGuard, resume_request};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType, Status};

use crate::assertion::AssertionIssuer;
use crate::decision::{Request, Round, Verdict};
use crate::model::{CallerSource, FilterConfig, SubjectToken, SubjectValidation};
use crate::root::{SharedVm, Vm};
use crate::{FILTER, metrics};

/// Per-request context.
#[derive(Debug)]
pub struct OboHttp {
    context_id: u32,
    vm: SharedVm,
    pause: PauseGuard<Vm>,
}

impl OboHttp {
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
        let metrics = vm.metrics.clone();
        let host = ProxyHost::new(&metrics, FILTER);
        let Ok(request) = read_request(vm.engine.config()) else {
            return fail_closed(FILTER, "request headers unreadable");
        };
        if let Some(issuer) = &vm.engine.config().assertion {
            match serve_jwks(issuer, &request) {
                Ok(false) => {}
                Ok(true) => {
                    host.count(metrics::JWKS_SERVED);
                    return Action::Pause;
                }
                Err(_) => return fail_closed(FILTER, "request headers unreadable"),
            }
        }
        let verdict = vm.engine.decide(&host, &request, Round::FIRST);
        match vm.park(self.context_id, request, verdict, 0, host.now_unix_secs()) {
            Ok(()) => {
                self.pause.mark_waiting();
                Action::Pause
            }
            Err(verdict) => apply(verdict),
        }
    }
}

/// Answers `GET`/`HEAD` on the assertion keys' JWKS path; `false` for any
/// other request. (`:path` is always read when assertions are configured;
/// `:method` only for the JWKS path, if the targets did not need it.)
fn serve_jwks(issuer: &AssertionIssuer, request: &Request) -> Result<bool, Status> {
    if request.path.split('?').next() != Some(issuer.jwks_path.as_str()) {
        return Ok(false);
    }
    let method = match request.method.as_str() {
        "" => request_headers::header(":method")?.unwrap_or_default(),
        read => read.to_string(),
    };
    let (status, headers, body) = match method.as_str() {
        "GET" | "HEAD" => (
            200,
            vec![("content-type", "application/jwk-set+json"), ("cache-control", "public, max-age=300")],
            (method == "GET").then_some(issuer.jwks().as_bytes()),
        ),
        _ => (405, vec![("allow", "GET, HEAD")], None),
    };
    hostcalls::send_http_response(status, headers, body)?;
    Ok(true)
}

/// The attributes the decision needs, each read from the proxy only when
/// the configuration uses it.
fn read_request(config: &FilterConfig) -> Result<Request, Status> {
    let attributes = request_headers::match_attributes(config.match_inputs)?;
    let credential = match &config.subject {
        None => Credential::Absent,
        Some(subject) => request_headers::credential(&subject.header)?,
    };
    // Envoy's own record of the TLS handshake, which no client can write.
    let peer_certificate = match config.delegation.caller {
        CallerSource::PeerCertificate => {
            hostcalls::get_property(vec!["connection", "uri_san_peer_certificate"])?
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        }
        CallerSource::TokenClient => None,
    };
    let verified_upstream = match &config.subject {
        Some(SubjectToken { validation: SubjectValidation::ClaimEnforcement { .. }, .. }) => {
            hostcalls::get_property(vec![VERIFIED_TOKEN_PROPERTY])?
        }
        _ => None,
    };
    Ok(Request {
        method: attributes.method,
        path: attributes.path,
        authority: attributes.authority,
        method_override: attributes.method_override,
        credential,
        peer_certificate,
        verified_upstream,
    })
}

/// Applies a verdict in the current request's context; returns what the
/// header callback should answer.
fn apply(verdict: Verdict) -> Action {
    match verdict {
        Verdict::Forward(forward) => {
            // The subject token and the injected header reach the upstream
            // from this filter only, in no other spelling a backend reads as
            // the same name (`x_upstream_token` for `x-upstream-token`).
            let mut names: Vec<&str> = forward.remove.iter().map(String::as_str).collect();
            names.extend(forward.inject.as_ref().map(|(name, _)| name.as_str()));
            if request_headers::remove_spellings(MapType::HttpRequestHeaders, &names).is_err() {
                return fail_closed(FILTER, "subject token header could not be removed");
            }
            if let Some((name, value)) = &forward.inject
                && hostcalls::set_map_value_bytes(
                    MapType::HttpRequestHeaders,
                    name,
                    Some(value.expose().as_bytes()),
                )
                .is_err()
            {
                return fail_closed(FILTER, "token could not be injected");
            }
            Action::Continue
        }
        Verdict::Reject(rejection) => {
            rejection.send(FILTER);
            Action::Pause
        }
        Verdict::AwaitKeys(_) | Verdict::AwaitToken(_) => fail_closed(FILTER, "decision still waiting"),
    }
}

/// Applies a verdict to a request that waited (the root context has made it
/// the effective context).
pub fn apply_after_wait(verdict: Verdict) {
    if let Action::Continue = apply(verdict)
        && !resume_request()
    {
        log(FILTER, baton_filter_kit::LogLevel::Warn, "waiting request could not be resumed");
    }
}

impl Context for OboHttp {}

impl HttpContext for OboHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.on_headers()
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.pause.data_action()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Nor in trailers, for a backend that merges them into headers.
        let names: Option<Vec<String>> = self.vm.try_borrow().ok().and_then(|slot| {
            slot.as_ref().map(|vm| {
                let config = vm.engine.config();
                config
                    .targets
                    .iter()
                    .map(|t| t.inject.header.clone())
                    .chain(config.subject.iter().map(|s| s.header.clone()))
                    .collect()
            })
        });
        let Some(names) = names else {
            return fail_closed(FILTER, "filter state busy");
        };
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        if request_headers::remove_spellings(MapType::HttpRequestTrailers, &names).is_err() {
            return fail_closed(FILTER, "token trailers could not be removed");
        }
        self.pause.data_action()
    }
}
