//! Everything a filter does to the proxy, as one trait: implemented over
//! proxy-wasm host calls ([`crate::proxy_host::ProxyHost`], the only code
//! that calls the SDK) and in memory for native tests (`TestHost`, feature
//! `test-host`).

use std::time::Duration;

/// Severity of a log line (ordered: `Debug` < `Info` < `Warn` < `Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Diagnostics.
    Debug,
    /// Audit lines and state changes.
    Info,
    /// Something an operator should look at.
    Warn,
    /// The filter cannot do its job.
    Error,
}

/// A shared-data write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDataError {
    /// The entry changed since it was read (compare-and-swap lost).
    CasMismatch,
    /// The host refused the write.
    Failed,
}

/// A counter (an Envoy stat). Only [`counters!`](crate::counters) makes
/// one, and it lists each in the filter's `ALL`, which the VM registers at
/// start: a counter a filter uses is always registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Counter(&'static str);

impl Counter {
    #[doc(hidden)]
    pub const fn __new(name: &'static str) -> Self {
        Counter(name)
    }

    /// Its stat name (e.g. `baton_ce.allowed`).
    pub const fn name(self) -> &'static str {
        self.0
    }
}

/// Defines a filter's counters and `ALL`, every one of them:
///
/// ```text
/// baton_filter_kit::counters! {
///     /// Requests allowed.
///     ALLOWED = "baton_ce.allowed";
/// }
/// ```
#[macro_export]
macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident = $stat:literal; )*) => {
        $( $(#[$doc])* pub const $name: $crate::host::Counter = $crate::host::Counter::__new($stat); )*
        /// Every counter, registered when the VM starts.
        pub const ALL: &[$crate::host::Counter] = &[$($name),*];
    };
}

/// The proxy refused a call (the request may be gone, the map read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError;

impl core::fmt::Display for HostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the proxy refused the call")
    }
}

/// One of the current request's header maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderMap {
    /// The request's headers.
    RequestHeaders,
    /// The request's trailers.
    RequestTrailers,
    /// The upstream answer's headers.
    ResponseHeaders,
}

/// One of the current request's bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// What the client sends.
    Request,
    /// What the upstream answers.
    Response,
}

/// An HTTP call to make from inside the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The answer to a call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CalloutResponse {
    /// `:status`, or `None` when there was no response (timeout, reset).
    pub status: Option<u16>,
    /// The body, when not over the limit.
    pub body: Vec<u8>,
    /// Whether the body was over the limit (and not read).
    pub body_too_large: bool,
}

impl CalloutResponse {
    /// The body as a token endpoint answer's reader takes it: one that was
    /// too large to read is no token response (`too large`).
    pub fn body_for_parsing(&self) -> &[u8] {
        if self.body_too_large { b"too large" } else { &self.body }
    }
}

/// The proxy, as the filters see it. Request methods act on the current
/// request (the effective context); calls and the timer belong to the VM.
pub trait Host {
    /// Current time, whole seconds since the epoch.
    fn now_unix_secs(&self) -> u64;
    /// Current time, milliseconds since the epoch (latency measurement).
    fn now_unix_millis(&self) -> u64;
    /// Reads a shared-data entry (visible to every worker of this VM id)
    /// with its compare-and-swap version.
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes a shared-data entry; with a non-zero `cas`, only if unchanged
    /// since it was read.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError>;
    /// Fills `buf` with cryptographically secure random bytes; false when
    /// no randomness is available (the caller must then refuse to proceed).
    fn fill_random(&self, buf: &mut [u8]) -> bool;
    /// Adds one to a counter. The proxy's stats may show it up to one
    /// fast tick (100 ms) later: counts are handed over per tick.
    fn count(&self, counter: Counter);
    /// Writes a log line.
    fn log(&self, level: LogLevel, message: &str);
    /// Whether a line at `level` would be written (the proxy's log level,
    /// as of the last tick): one that would not is not even formatted.
    fn logs_at(&self, level: LogLevel) -> bool;

    /// Every header of a map, in order, names lower-case.
    fn headers(&self, map: HeaderMap) -> Result<Vec<(String, Vec<u8>)>, HostError>;
    /// Sets a header (replacing every value it had).
    fn set_header(&self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), HostError>;
    /// Removes a header (every value).
    fn remove_header(&self, map: HeaderMap, name: &str) -> Result<(), HostError>;
    /// The body buffered so far, at most `max` bytes.
    fn body(&self, body: Body, max: usize) -> Result<Vec<u8>, HostError>;
    /// Replaces the whole buffered body.
    fn replace_body(&self, body: Body, bytes: &[u8]) -> Result<(), HostError>;
    /// A property of the request or connection (e.g. filter state).
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    /// Sets a property (filter state a later filter reads).
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError>;
    /// Answers the current request instead of forwarding it.
    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError>;
    /// Resets the current request (when even a reply fails).
    fn reset_request(&self);
    /// Lets the paused current request go on.
    fn resume_request(&self) -> Result<(), HostError>;
    /// Lets the paused answer of the current request go on.
    fn resume_answer(&self) -> Result<(), HostError>;
    /// Makes request `context_id` the current one; false when it is gone.
    fn enter_context(&self, context_id: u32) -> bool;
    /// Starts an HTTP call; its answer comes to the VM with the returned id.
    fn dispatch(&self, call: &Callout<'_>) -> Result<u32, HostError>;
    /// Reads the answer being delivered (inside the call-response callback,
    /// with the counts it was given), the body only up to `max_body`.
    fn callout_response(&self, num_headers: usize, body_size: usize, max_body: usize) -> CalloutResponse;
    /// How often the VM's timer ticks.
    fn set_tick_period(&self, period: Duration) -> Result<(), HostError>;
}
