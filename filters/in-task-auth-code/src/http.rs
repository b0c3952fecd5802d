//! The request context: holds a protected request until its body is read,
//! asks the [`Engine`](crate::decision::Engine), applies the verdict
//! (headers, rewritten body, local reply), and reads the agent's JSON answer
//! when the request phase asked for it.

use std::rc::Rc;

use baton_filter_kit::credential::Credential;
use baton_filter_kit::handoff::VERIFIED_TOKEN_PROPERTY;
use baton_filter_kit::host::Host;
use baton_filter_kit::matching::method_override;
use baton_filter_kit::proxy_host::{ProxyHost, log};
use baton_filter_kit::reply::fail_closed;
use baton_filter_kit::request_headers;
use baton_filter_kit::waiters::{PauseGuard, resume_request};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use serde_json::Value;

use crate::FILTER;
use crate::a2a;
use crate::decision::{Forward, Reply, Request, Round, Verdict};
use crate::model::{FilterConfig, PrimaryVerification};
use crate::response::{AnswerContext, on_answer};
use crate::root::{SharedVm, Vm};

/// Per-request context.
#[derive(Debug)]
pub struct InTaskHttp {
    context_id: u32,
    vm: SharedVm,
    pause: PauseGuard<Vm>,
    /// The request, while its body is being read.
    reading: Option<Request>,
    /// Whether the answer body is being read.
    reading_answer: bool,
    /// Whether a body callback came.
    body_seen: bool,
}

impl InTaskHttp {
    /// A context for one request.
    pub fn new(context_id: u32, vm: SharedVm) -> Self {
        Self {
            context_id,
            pause: PauseGuard::new(Rc::clone(&vm), context_id),
            vm,
            reading: None,
            reading_answer: false,
            body_seen: false,
        }
    }

    fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        let shared = Rc::clone(&self.vm);
        let Ok(mut slot) = shared.try_borrow_mut() else {
            return fail_closed(FILTER, "filter state busy");
        };
        let Some(vm) = slot.as_mut() else {
            return fail_closed(FILTER, "filter not configured");
        };
        let Ok(headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
            return fail_closed(FILTER, "request headers unreadable");
        };
        let config = vm.engine.shared_config();
        // The identity header (and an injected one other than the user's
        // own token header) come from this filter only, in no spelling a
        // backend reads as the same name (`x_baton_user`).
        let mut ours: Vec<&str> = config.identity_header.iter().map(String::as_str).collect();
        if config.inject_header != config.primary.header {
            ours.push(&config.inject_header);
        }
        for name in request_headers::spellings_of(headers.iter().map(|(name, _)| name.as_str()), &ours) {
            if hostcalls::remove_map_value(MapType::HttpRequestHeaders, &name).is_err() {
                return fail_closed(FILTER, "identity header could not be removed");
            }
        }
        let mut request = gather(&headers, &config);
        if end_of_stream {
            request.body = Some(Vec::new()).filter(|_| request.method != "GET" && request.method != "HEAD");
        }
        self.decide(vm, request)
    }

    /// The request body so far (`size` bytes, or all Envoy buffered when
    /// `None`); `complete` when the stream ended, with the last data frame
    /// or with trailers.
    fn on_request_body(&mut self, size: Option<usize>, complete: bool) -> Action {
        if self.reading.is_none() {
            return self.pause.data_action();
        }
        let shared = Rc::clone(&self.vm);
        let Ok(mut slot) = shared.try_borrow_mut() else {
            return fail_closed(FILTER, "filter state busy");
        };
        let Some(vm) = slot.as_mut() else {
            return fail_closed(FILTER, "filter not configured");
        };
        // The body arrives: Envoy lets this filter hold the headers.
        vm.reading.remove(&self.context_id);
        let body = match (size, complete) {
            (size, false) => {
                if size.is_some_and(|size| size > vm.engine.config().max_body_bytes) {
                    return self.too_large(vm);
                }
                return Action::Pause; // buffered by Envoy until the whole body is here
            }
            (size, true) => hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size.unwrap_or(usize::MAX))
                .ok()
                .flatten()
                .unwrap_or_default(),
        };
        if body.len() > vm.engine.config().max_body_bytes {
            return self.too_large(vm);
        }
        let Some(mut request) = self.reading.take() else {
            return Action::Continue;
        };
        request.body = Some(body);
        self.decide(vm, request)
    }

    fn too_large(&mut self, vm: &mut Vm) -> Action {
        self.reading = None;
        let metrics = vm.metrics.clone();
        ProxyHost::new(&metrics, FILTER).count(crate::metrics::JSON_RPC_ERRORS);
        send_reply(&Reply::rpc_error(
            413,
            &Value::Null,
            a2a::INVALID_REQUEST,
            "Invalid Request: the body is too large",
        ));
        Action::Pause
    }

    /// Trailers end the request: a body being read is complete now (h2, or
    /// chunked HTTP/1.1, ends a message with trailers rather than with its
    /// last data frame). The identity header is no more accepted there than
    /// among the headers.
    fn on_request_trailers(&mut self) -> Action {
        let ours = self.vm.try_borrow().ok().and_then(|slot| {
            slot.as_ref().map(|vm| {
                let config = vm.engine.config();
                config.identity_header.iter().chain([&config.inject_header]).cloned().collect::<Vec<String>>()
            })
        });
        let Some(ours) = ours else {
            return fail_closed(FILTER, "filter state busy");
        };
        let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
        if request_headers::remove_spellings(MapType::HttpRequestTrailers, &ours).is_err() {
            return fail_closed(FILTER, "identity trailers could not be removed");
        }
        if self.reading.is_some() { self.on_request_body(None, true) } else { self.pause.data_action() }
    }

    fn decide(&mut self, vm: &mut Vm, request: Request) -> Action {
        let metrics = vm.metrics.clone();
        let host = ProxyHost::new(&metrics, FILTER);
        let verdict = vm.engine.decide(&host, &request, Round::FIRST);
        if verdict == Verdict::ReadBody {
            self.reading = Some(request);
            if !self.body_seen {
                vm.reading.insert(self.context_id, host.now_unix_secs());
                vm.ticker.tick_now();
            }
            return Action::Pause;
        }
        match vm.park(self.context_id, request, verdict, 0, None, host.now_unix_secs()) {
            Ok(()) => {
                self.pause.mark_waiting();
                Action::Pause
            }
            Err(verdict) => {
                if let Verdict::Forward(forward) = verdict.as_ref() {
                    vm.answers.insert(self.context_id, AnswerContext::of(forward));
                }
                apply(*verdict)
            }
        }
    }

    fn on_answer_headers(&mut self) -> Action {
        let Ok(slot) = self.vm.try_borrow() else {
            return Action::Continue;
        };
        let Some(vm) = slot.as_ref() else {
            return Action::Continue;
        };
        let Some(context) = vm.answers.get(&self.context_id) else {
            return Action::Continue;
        };
        let json = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, "content-type")
            .ok()
            .flatten()
            .is_some_and(|value| value.starts_with(b"application/json"));
        if json && context.wants_body(vm.engine.config().enrich_agent_challenges) {
            self.reading_answer = true;
            Action::Pause
        } else {
            Action::Continue
        }
    }

    /// The agent's answer so far (`size` bytes, or all Envoy buffered when
    /// `None`); `complete` when it ended, with its last data frame or with
    /// trailers.
    fn on_answer_body(&mut self, size: Option<usize>, complete: bool) -> Action {
        if !self.reading_answer {
            return Action::Continue;
        }
        let Ok(mut slot) = self.vm.try_borrow_mut() else {
            return Action::Continue;
        };
        let Some(vm) = slot.as_mut() else {
            return Action::Continue;
        };
        let max = vm.engine.config().max_body_bytes;
        if size.is_some_and(|size| size > max) {
            // Too large to rewrite: pass it on as it is.
            self.reading_answer = false;
            vm.answers.remove(&self.context_id);
            return Action::Continue;
        }
        if !complete {
            return Action::Pause;
        }
        self.reading_answer = false;
        let Some(context) = vm.answers.remove(&self.context_id) else {
            return Action::Continue;
        };
        let body = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size.unwrap_or(usize::MAX))
            .ok()
            .flatten()
            .unwrap_or_default();
        if body.len() > max {
            return Action::Continue;
        }
        let metrics = vm.metrics.clone();
        let host = ProxyHost::new(&metrics, FILTER);
        if let Some(rewritten) = on_answer(&mut vm.engine, &host, &context, &body) {
            let length = rewritten.len().to_string();
            let replaced = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body.len(), &rewritten)
                .is_ok()
                && hostcalls::set_map_value(MapType::HttpResponseHeaders, "content-length", Some(&length))
                    .is_ok();
            if !replaced {
                log(FILTER, baton_filter_kit::LogLevel::Warn, "agent answer could not be rewritten");
            }
        }
        Action::Continue
    }
}

/// The attributes the decision needs, from the request headers.
fn gather(headers: &[(String, Vec<u8>)], config: &FilterConfig) -> Request {
    let text = |name: &str| {
        headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    };
    let mut primary = headers.iter().filter(|(name, _)| *name == config.primary.header);
    let primary = match (primary.next(), primary.next()) {
        (None, _) => Credential::Absent,
        (Some((_, value)), None) => Credential::One(value.clone()),
        (Some(_), Some(_)) => Credential::Several,
    };
    Request {
        method: text(":method").unwrap_or_default(),
        path: text(":path").unwrap_or_default(),
        authority: text(":authority").unwrap_or_default(),
        method_override: {
            let path = text(":path").unwrap_or_default();
            method_override(&path, |name| headers.iter().any(|(header, _)| header == name))
        },
        primary,
        verified_upstream: match config.primary.verification {
            PrimaryVerification::ClaimEnforcement => {
                hostcalls::get_property(vec![VERIFIED_TOKEN_PROPERTY]).ok().flatten()
            }
            PrimaryVerification::Providers(_) => None,
        },
        a2a_version: text("a2a-version"),
        accept: text("accept"),
        cookie: text("cookie"),
        body: None,
    }
}

/// Sends a local reply in the current request's context.
pub fn send_reply(reply: &Reply) {
    let headers: Vec<(&str, &str)> =
        reply.headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
    if hostcalls::send_http_response(u32::from(reply.status), headers, Some(reply.body.as_bytes())).is_err() {
        log(
            FILTER,
            baton_filter_kit::LogLevel::Error,
            "local reply could not be sent; resetting the request",
        );
        let _ = hostcalls::reset_http_request();
    }
}

fn apply_forward(forward: &Forward) -> Result<(), &'static str> {
    for (name, value) in &forward.set {
        hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value.expose().as_bytes()))
            .map_err(|_| "header could not be set")?;
    }
    if let Some(body) = &forward.body {
        hostcalls::set_buffer(BufferType::HttpRequestBody, 0, usize::MAX, body)
            .map_err(|_| "body could not be rewritten")?;
        hostcalls::set_map_value(
            MapType::HttpRequestHeaders,
            "content-length",
            Some(&body.len().to_string()),
        )
        .map_err(|_| "content-length could not be set")?;
    }
    Ok(())
}

/// Applies a verdict in the current request's context.
fn apply(verdict: Verdict) -> Action {
    match verdict {
        Verdict::Continue(forward) | Verdict::Forward(forward) => match apply_forward(&forward) {
            Ok(()) => Action::Continue,
            Err(why) => fail_closed(FILTER, why),
        },
        Verdict::Reply(reply) => {
            send_reply(&reply);
            Action::Pause
        }
        Verdict::ReadBody | Verdict::AwaitKeys(_) | Verdict::AwaitToken(_) => {
            fail_closed(FILTER, "decision still waiting")
        }
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

impl Context for InTaskHttp {}

impl HttpContext for InTaskHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.on_request_headers(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_seen = true;
        self.on_request_body(Some(body_size), end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_request_trailers()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.on_answer_headers()
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_answer_body(Some(body_size), end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_answer_body(None, true)
    }
}
