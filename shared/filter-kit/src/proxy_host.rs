//! [`Host`] over proxy-wasm host calls. No host call is unwrapped: a failed
//! call degrades (no counter, no cache entry) and never aborts the VM.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use crate::host::{
    Body, Callout, CalloutResponse, Counter, HeaderMap, Host, HostError, LogLevel, SharedDataError,
};

/// Counter ids, defined once per VM, and the counts not yet handed to the
/// proxy: a request adds to a count in memory, and the VM's tick hands the
/// sums over ([`MetricIds::flush`]), a host call per counter per tick
/// instead of one per count.
#[derive(Debug, Clone, Default)]
pub struct MetricIds {
    ids: Rc<[(&'static str, u32)]>,
    pending: Rc<[Cell<u64>]>,
    dirty: Rc<Cell<bool>>,
}

impl MetricIds {
    /// Defines every counter. A counter the host refuses is skipped.
    pub fn define(counters: &[Counter]) -> Self {
        let ids: Rc<[(&'static str, u32)]> = counters
            .iter()
            .filter_map(|counter| {
                let name = counter.name();
                hostcalls::define_metric(MetricType::Counter, name).ok().map(|id| (name, id))
            })
            .collect();
        let pending = ids.iter().map(|_| Cell::new(0)).collect();
        Self { ids, pending, dirty: Rc::new(Cell::new(false)) }
    }

    /// The slot of counter `name`. Names are the filters' constants, so the
    /// text's address usually finds it without comparing characters.
    fn slot(&self, name: &str) -> Option<usize> {
        let same_text = |(known, _): &(&str, u32)| {
            std::ptr::eq(known.as_ptr(), name.as_ptr()) && known.len() == name.len()
        };
        self.ids.iter().position(same_text).or_else(|| self.ids.iter().position(|(known, _)| *known == name))
    }

    fn add(&self, name: &str) {
        if let Some(count) = self.slot(name).and_then(|slot| self.pending.get(slot)) {
            count.set(count.get().saturating_add(1));
            self.dirty.set(true);
        }
    }

    /// Whether counts wait to be handed to the proxy.
    pub fn has_pending(&self) -> bool {
        self.dirty.get()
    }

    /// Hands every pending count to the proxy.
    pub fn flush(&self) {
        if !self.dirty.replace(false) {
            return;
        }
        for ((_, id), count) in self.ids.iter().zip(self.pending.iter()) {
            let n = count.replace(0);
            if n > 0 {
                let _ = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }
}

/// The proxy as a [`Host`], logging as `filter`. Made for one callback:
/// the clock is read once, so one decision sees one instant.
#[derive(Debug, Clone)]
pub struct ProxyHost<'a> {
    metrics: &'a MetricIds,
    log_level: LogLevel,
    filter: &'static str,
    now: Cell<Option<Duration>>,
}

impl<'a> ProxyHost<'a> {
    /// A host that counts into `metrics`, writes lines at `log_level` and
    /// above, and prefixes them with `baton <filter>:`.
    pub fn new(metrics: &'a MetricIds, log_level: LogLevel, filter: &'static str) -> Self {
        Self { metrics, log_level, filter, now: Cell::new(None) }
    }

    fn now(&self) -> Duration {
        match self.now.get() {
            Some(now) => now,
            None => {
                let now = now();
                self.now.set(Some(now));
                now
            }
        }
    }
}

/// The proxy's log level for this plugin (Debug when it cannot say, so
/// nothing is lost).
pub fn proxy_log_level() -> LogLevel {
    use proxy_wasm::types::LogLevel as Proxy;
    match hostcalls::get_log_level() {
        Ok(Proxy::Info) => LogLevel::Info,
        Ok(Proxy::Warn) => LogLevel::Warn,
        Ok(Proxy::Error | Proxy::Critical) => LogLevel::Error,
        Ok(Proxy::Trace | Proxy::Debug) | Err(_) => LogLevel::Debug,
    }
}

/// Writes a log line as `baton <filter>: <message>`.
pub fn log(filter: &str, level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Debug => proxy_wasm::types::LogLevel::Debug,
        LogLevel::Info => proxy_wasm::types::LogLevel::Info,
        LogLevel::Warn => proxy_wasm::types::LogLevel::Warn,
        LogLevel::Error => proxy_wasm::types::LogLevel::Error,
    };
    let _ = hostcalls::log(level, &format!("baton {filter}: {message}"));
}

fn now() -> Duration {
    let now = hostcalls::get_current_time().unwrap_or_else(|_| SystemTime::now());
    now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
}

impl Host for ProxyHost<'_> {
    fn now_unix_secs(&self) -> u64 {
        self.now().as_secs()
    }

    fn now_unix_millis(&self) -> u64 {
        u64::try_from(self.now().as_millis()).unwrap_or(u64::MAX)
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), cas)) => Some((value, cas.unwrap_or(0))),
            _ => None,
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SharedDataError::CasMismatch),
            Err(_) => Err(SharedDataError::Failed),
        }
    }

    fn fill_random(&self, buf: &mut [u8]) -> bool {
        getrandom::fill(buf).is_ok()
    }

    fn count(&self, counter: Counter) {
        self.metrics.add(counter.name());
    }

    fn log(&self, level: LogLevel, message: &str) {
        if self.logs_at(level) {
            log(self.filter, level, message);
        }
    }

    fn logs_at(&self, level: LogLevel) -> bool {
        level >= self.log_level
    }

    fn headers(&self, map: HeaderMap) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        hostcalls::get_map_bytes(map_type(map)).map_err(|_| HostError)
    }

    fn set_header(&self, map: HeaderMap, name: &str, value: &[u8]) -> Result<(), HostError> {
        hostcalls::set_map_value_bytes(map_type(map), name, Some(value)).map_err(|_| HostError)
    }

    fn remove_header(&self, map: HeaderMap, name: &str) -> Result<(), HostError> {
        hostcalls::remove_map_value(map_type(map), name).map_err(|_| HostError)
    }

    fn body(&self, body: Body, max: usize) -> Result<Vec<u8>, HostError> {
        hostcalls::get_buffer(buffer_type(body), 0, max).map(Option::unwrap_or_default).map_err(|_| HostError)
    }

    fn replace_body(&self, body: Body, bytes: &[u8]) -> Result<(), HostError> {
        // From 0 over at least the whole length: Envoy replaces the body.
        hostcalls::set_buffer(buffer_type(body), 0, usize::MAX, bytes).map_err(|_| HostError)
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_property(path.to_vec()).map_err(|_| HostError)
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        hostcalls::set_property(path.to_vec(), Some(value)).map_err(|_| HostError)
    }

    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
        hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body)).map_err(|_| HostError)
    }

    fn reset_request(&self) {
        let _ = hostcalls::reset_http_request();
    }

    fn resume_request(&self) -> Result<(), HostError> {
        hostcalls::resume_http_request().map_err(|_| HostError)
    }

    fn resume_answer(&self) -> Result<(), HostError> {
        hostcalls::resume_http_response().map_err(|_| HostError)
    }

    fn enter_context(&self, context_id: u32) -> bool {
        hostcalls::set_effective_context(context_id).is_ok()
    }

    fn dispatch(&self, call: &Callout<'_>) -> Result<u32, HostError> {
        let mut headers = Vec::with_capacity(3 + call.headers.len());
        headers.push((":method", call.method));
        headers.push((":path", call.path));
        headers.push((":authority", call.authority));
        headers.extend(call.headers.iter().copied());
        hostcalls::dispatch_http_call(call.cluster, headers, call.body, vec![], call.timeout).map_err(
            |status| {
                self.log(LogLevel::Debug, &format!("cluster={} dispatch refused: {status:?}", call.cluster));
                HostError
            },
        )
    }

    fn callout_response(&self, num_headers: usize, body_size: usize, max_body: usize) -> CalloutResponse {
        if num_headers == 0 {
            // A failed call (timeout, reset) has no response headers at all,
            // and asking for one makes the host answer a status the SDK
            // aborts on: do not ask.
            return CalloutResponse::default();
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
        CalloutResponse { status, body, body_too_large }
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        hostcalls::set_tick_period(period).map_err(|_| HostError)
    }
}

fn map_type(map: HeaderMap) -> MapType {
    match map {
        HeaderMap::RequestHeaders => MapType::HttpRequestHeaders,
        HeaderMap::RequestTrailers => MapType::HttpRequestTrailers,
        HeaderMap::ResponseHeaders => MapType::HttpResponseHeaders,
    }
}

fn buffer_type(body: Body) -> BufferType {
    match body {
        Body::Request => BufferType::HttpRequestBody,
        Body::Response => BufferType::HttpResponseBody,
    }
}
