//! An in-memory [`Host`] for native tests: shared data, a settable clock,
//! counters and captured log lines, and the proxy's side of requests
//! (header maps, bodies, properties, replies, resumes) and of calls (every
//! dispatched call recorded; answers delivered by the test).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use baton_token::TokenHash;

use crate::host::{
    Body, Callout, CalloutResponse, Counter, HeaderMap, Host, HostError, LogLevel, SharedDataError,
};

/// Shared-data entries with their compare-and-swap versions.
type SharedData = HashMap<String, (Vec<u8>, u32)>;

/// A header map as the proxy holds it.
pub type Headers = Vec<(String, Vec<u8>)>;

/// What the proxy holds for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRequest {
    /// Request headers.
    pub request_headers: Headers,
    /// Request trailers.
    pub request_trailers: Headers,
    /// The upstream answer's headers.
    pub response_headers: Headers,
    /// The request body buffered so far.
    pub request_body: Vec<u8>,
    /// The answer body buffered so far.
    pub response_body: Vec<u8>,
    /// Properties set or given (path elements joined with `/`).
    pub properties: HashMap<String, Vec<u8>>,
    /// The local reply sent, if any.
    pub reply: Option<TestReply>,
    /// How many times the request was resumed.
    pub resumed: u32,
    /// How many times its answer was resumed.
    pub answer_resumed: u32,
    /// Whether the request was reset.
    pub reset: bool,
}

impl TestRequest {
    /// The first value of request header `name`, as text.
    pub fn request_header(&self, name: &str) -> Option<String> {
        first(&self.request_headers, name).map(|value| String::from_utf8_lossy(value).into_owned())
    }
}

/// A local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReply {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl TestReply {
    /// The body as text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A call the filter dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchedCall {
    /// The id its answer comes back with.
    pub id: u32,
    /// Envoy cluster.
    pub cluster: String,
    /// `:path`.
    pub path: String,
    /// Headers, pseudo-headers included.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Timeout.
    pub timeout: Duration,
}

/// One worker's proxy: its requests, calls and timer.
#[derive(Debug, Default)]
struct ProxyState {
    current: Option<u32>,
    requests: HashMap<u32, TestRequest>,
    calls: Vec<DispatchedCall>,
    next_call: u32,
    refuse_dispatch: bool,
    response: CalloutResponse,
    tick_period: Option<Duration>,
}

/// Clones share everything, the way one worker's callbacks share its proxy;
/// [`TestHost::worker`] makes another worker of the same Envoy, sharing the
/// clock, shared data, counters and logs only.
#[derive(Debug, Clone, Default)]
pub struct TestHost {
    now_millis: Rc<Cell<u64>>,
    shared: Rc<RefCell<SharedData>>,
    counters: Rc<RefCell<HashMap<String, u64>>>,
    logs: Rc<RefCell<Vec<(LogLevel, String)>>>,
    random_counter: Rc<Cell<u64>>,
    proxy: Rc<RefCell<ProxyState>>,
    /// Every `Host` method called, in order (one proxy-wasm host call
    /// each in `ProxyHost`, but for `headers`' and `callout_response`'s
    /// reads): what a decision costs the proxy.
    host_calls: Rc<RefCell<Vec<&'static str>>>,
    /// Whether this callback read the clock already (`ProxyHost` reads it
    /// once per callback).
    clock_read: Rc<Cell<bool>>,
    /// The proxy's log level (Debug: every line written).
    log_level: Rc<Cell<Option<LogLevel>>>,
}

fn first<'a>(headers: &'a Headers, name: &str) -> Option<&'a Vec<u8>> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

impl TestHost {
    /// A host whose clock reads `now` (seconds).
    pub fn new(now: u64) -> Self {
        let host = Self::default();
        host.set_now(now);
        host
    }

    /// Moves the clock to `now` seconds.
    pub fn set_now(&self, now: u64) {
        self.now_millis.set(now * 1000);
    }

    /// Moves the clock forward.
    pub fn advance_millis(&self, millis: u64) {
        self.now_millis.set(self.now_millis.get() + millis);
    }

    /// A counter's value.
    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters.borrow().get(counter.name()).copied().unwrap_or(0)
    }

    /// Log lines so far.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }

    /// Number of shared-data entries.
    pub fn shared_len(&self) -> usize {
        self.shared.borrow().len()
    }

    /// Another worker of the same Envoy: same clock, shared data, counters
    /// and logs; its own requests, calls and timer.
    pub fn worker(&self) -> TestHost {
        TestHost { proxy: Rc::default(), host_calls: Rc::default(), ..self.clone() }
    }

    /// Sets the proxy's log level: lines below it are not written.
    pub fn set_log_level(&self, level: LogLevel) {
        self.log_level.set(Some(level));
    }

    /// The `Host` methods called since the last call of this, in order
    /// (the clock once per callback, as `ProxyHost` reads it). Starts a new
    /// callback.
    pub fn take_host_calls(&self) -> Vec<&'static str> {
        self.clock_read.set(false);
        std::mem::take(&mut *self.host_calls.borrow_mut())
    }

    /// A clock read: a host call the first time in a callback.
    fn clock_call(&self) {
        if !self.clock_read.replace(true) {
            self.host_calls.borrow_mut().push("now");
        }
    }

    /// A new request `id` with these headers (names lower-case), made the
    /// current one.
    pub fn add_request(&self, id: u32, headers: &[(&str, &str)]) {
        let request = TestRequest {
            request_headers: headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect(),
            ..TestRequest::default()
        };
        let mut proxy = self.proxy.borrow_mut();
        proxy.requests.insert(id, request);
        proxy.current = Some(id);
        self.clock_read.set(false);
    }

    /// Changes what the proxy holds for request `id` (e.g. its body).
    pub fn with_request<T>(&self, id: u32, change: impl FnOnce(&mut TestRequest) -> T) -> Option<T> {
        self.proxy.borrow_mut().requests.get_mut(&id).map(change)
    }

    /// Makes request `id` the current one (a callback of its context).
    pub fn set_current(&self, id: u32) {
        self.proxy.borrow_mut().current = Some(id);
        self.clock_read.set(false);
    }

    /// What the proxy holds for request `id`.
    pub fn request(&self, id: u32) -> Option<TestRequest> {
        self.proxy.borrow().requests.get(&id).cloned()
    }

    /// The client of request `id` went away.
    pub fn remove_request(&self, id: u32) {
        self.proxy.borrow_mut().requests.remove(&id);
    }

    /// Every call dispatched so far.
    pub fn calls(&self) -> Vec<DispatchedCall> {
        self.proxy.borrow().calls.clone()
    }

    /// Whether dispatches are refused (a missing cluster).
    pub fn refuse_dispatch(&self, refuse: bool) {
        self.proxy.borrow_mut().refuse_dispatch = refuse;
    }

    /// What [`Host::callout_response`] reads next.
    pub fn set_callout_response(&self, response: CalloutResponse) {
        self.proxy.borrow_mut().response = response;
    }

    /// The timer's period, if set.
    pub fn tick_period(&self) -> Option<Duration> {
        self.proxy.borrow().tick_period
    }

    fn on_current<T>(&self, act: impl FnOnce(&mut TestRequest) -> T) -> Result<T, HostError> {
        let mut proxy = self.proxy.borrow_mut();
        let current = proxy.current.ok_or(HostError)?;
        proxy.requests.get_mut(&current).map(act).ok_or(HostError)
    }
}

fn map_of(request: &mut TestRequest, map: HeaderMap) -> &mut Headers {
    match map {
        HeaderMap::RequestHeaders => &mut request.request_headers,
        HeaderMap::RequestTrailers => &mut request.request_trailers,
        HeaderMap::ResponseHeaders => &mut request.response_headers,
    }
}

fn body_of(request: &mut TestRequest, body: Body) -> &mut Vec<u8> {
    match body {
        Body::Request => &mut request.request_body,
        Body::Response => &mut request.response_body,
    }
}

impl Host for TestHost {
    fn now_unix_secs(&self) -> u64 {
        self.clock_call();
        self.now_millis.get() / 1000
    }

    fn now_unix_millis(&self) -> u64 {
        self.clock_call();
        self.now_millis.get()
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.host_calls.borrow_mut().push("shared_get");
        self.shared.borrow().get(key).cloned()
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        self.host_calls.borrow_mut().push("shared_set");
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, version)| *version);
        // As in Envoy: a zero or absent cas writes unconditionally, and so
        // does any write of an entry that does not exist yet.
        if let (Some(expected), Some(current)) = (cas.filter(|cas| *cas != 0), current)
            && current != expected
        {
            return Err(SharedDataError::CasMismatch);
        }
        shared.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }

    fn fill_random(&self, buf: &mut [u8]) -> bool {
        self.host_calls.borrow_mut().push("fill_random");
        // Distinct, repeatable bytes: tests see stable values, never the same
        // value twice.
        let seed = TokenHash::of(&self.random_counter.get().to_be_bytes());
        self.random_counter.set(self.random_counter.get() + 1);
        for (index, byte) in buf.iter_mut().enumerate() {
            *byte = seed.as_bytes()[index % 32] ^ u8::try_from(index / 32 % 256).unwrap_or(0);
        }
        true
    }

    // Not a host call: the proxy's host adds counts up in memory and hands
    // them over at the tick.
    fn count(&self, counter: Counter) {
        *self.counters.borrow_mut().entry(counter.name().to_string()).or_default() += 1;
    }

    fn log(&self, level: LogLevel, message: &str) {
        if !self.logs_at(level) {
            return;
        }
        self.host_calls.borrow_mut().push("log");
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn logs_at(&self, level: LogLevel) -> bool {
        level >= self.log_level.get().unwrap_or(LogLevel::Debug)
    }

    fn headers(&self, map: HeaderMap) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        self.host_calls.borrow_mut().push("headers");
        self.on_current(|request| map_of(request, map).clone())
    }

    fn set_header(&self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.host_calls.borrow_mut().push("set_header");
        self.on_current(|request| {
            let headers = map_of(request, map);
            headers.retain(|(n, _)| n != name);
            headers.push((name.to_string(), value.to_vec()));
        })
    }

    fn remove_header(&self, map: HeaderMap, name: &str) -> Result<(), HostError> {
        self.host_calls.borrow_mut().push("remove_header");
        self.on_current(|request| map_of(request, map).retain(|(n, _)| n != name))
    }

    fn body(&self, body: Body, max: usize) -> Result<Vec<u8>, HostError> {
        self.host_calls.borrow_mut().push("body");
        self.on_current(|request| {
            let bytes = body_of(request, body);
            bytes[..bytes.len().min(max)].to_vec()
        })
    }

    fn replace_body(&self, body: Body, bytes: &[u8]) -> Result<(), HostError> {
        self.host_calls.borrow_mut().push("replace_body");
        self.on_current(|request| *body_of(request, body) = bytes.to_vec())
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.host_calls.borrow_mut().push("property");
        self.on_current(|request| request.properties.get(&path.join("/")).cloned())
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        self.host_calls.borrow_mut().push("set_property");
        self.on_current(|request| {
            request.properties.insert(path.join("/"), value.to_vec());
        })
    }

    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
        self.host_calls.borrow_mut().push("send_reply");
        self.on_current(|request| {
            request.reply = Some(TestReply {
                status,
                headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
                body: body.to_vec(),
            });
        })
    }

    fn reset_request(&self) {
        self.host_calls.borrow_mut().push("reset_request");
        let _ = self.on_current(|request| request.reset = true);
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.host_calls.borrow_mut().push("resume_request");
        self.on_current(|request| request.resumed += 1)
    }

    fn resume_answer(&self) -> Result<(), HostError> {
        self.host_calls.borrow_mut().push("resume_answer");
        self.on_current(|request| request.answer_resumed += 1)
    }

    fn enter_context(&self, context_id: u32) -> bool {
        self.host_calls.borrow_mut().push("enter_context");
        let mut proxy = self.proxy.borrow_mut();
        if proxy.requests.contains_key(&context_id) {
            proxy.current = Some(context_id);
            true
        } else {
            false
        }
    }

    fn dispatch(&self, call: &Callout<'_>) -> Result<u32, HostError> {
        self.host_calls.borrow_mut().push("dispatch");
        let mut proxy = self.proxy.borrow_mut();
        if proxy.refuse_dispatch {
            return Err(HostError);
        }
        proxy.next_call += 1;
        let id = proxy.next_call;
        let mut headers = vec![
            (":method".to_string(), call.method.to_string()),
            (":path".to_string(), call.path.to_string()),
            (":authority".to_string(), call.authority.to_string()),
        ];
        headers.extend(call.headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        proxy.calls.push(DispatchedCall {
            id,
            cluster: call.cluster.to_string(),
            path: call.path.to_string(),
            headers,
            body: call.body.map(<[u8]>::to_vec).unwrap_or_default(),
            timeout: call.timeout,
        });
        Ok(id)
    }

    fn callout_response(&self, _num_headers: usize, _body_size: usize, max_body: usize) -> CalloutResponse {
        self.host_calls.borrow_mut().push("callout_response");
        let mut response = self.proxy.borrow().response.clone();
        if response.body.len() > max_body {
            response.body.clear();
            response.body_too_large = true;
        }
        response
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        self.host_calls.borrow_mut().push("set_tick_period");
        self.proxy.borrow_mut().tick_period = Some(period);
        Ok(())
    }
}
