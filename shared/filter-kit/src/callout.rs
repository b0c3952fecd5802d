//! HTTP calls from inside Envoy (`dispatch_http_call`) and reading their
//! answers, without unwrapping a host call.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};

/// A call to make.
#[derive(Debug, Clone)]
pub struct Callout<'a> {
    /// Envoy cluster.
    pub cluster: &'a str,
    /// `:method`.
    pub method: &'a str,
    /// `:path`.
    pub path: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// Further headers.
    pub headers: Vec<(&'a str, &'a str)>,
    /// Body, for POST.
    pub body: Option<&'a [u8]>,
    /// Timeout.
    pub timeout: Duration,
}

impl Callout<'_> {
    /// Dispatches the call; the answer arrives in `on_http_call_response`
    /// of the calling context with the returned token.
    pub fn dispatch(&self) -> Result<u32, Status> {
        let mut headers = Vec::with_capacity(3 + self.headers.len());
        headers.push((":method", self.method));
        headers.push((":path", self.path));
        headers.push((":authority", self.authority));
        headers.extend(self.headers.iter().copied());
        hostcalls::dispatch_http_call(self.cluster, headers, self.body, vec![], self.timeout)
    }
}

/// The answer to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalloutResponse {
    /// `:status`, or `None` when there was no response (timeout, reset).
    pub status: Option<u16>,
    /// The body, when not over the limit.
    pub body: Vec<u8>,
    /// Whether the body was over the limit (and not read).
    pub body_too_large: bool,
}

impl CalloutResponse {
    /// Reads the current call response (inside `on_http_call_response`,
    /// with the counts it was given).
    pub fn read(num_headers: usize, body_size: usize, max_body: usize) -> Self {
        if num_headers == 0 {
            // A failed call (timeout, reset) has no response headers at all,
            // and asking for one makes the host answer a status the SDK
            // aborts on: do not ask.
            return Self { status: None, body: Vec::new(), body_too_large: false };
        }
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|status| std::str::from_utf8(&status).ok().and_then(|s| s.parse::<u16>().ok()));
        let body_too_large = body_size > max_body;
        let body = if body_too_large || body_size == 0 {
            Vec::new()
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        Self { status, body, body_too_large }
    }
}
