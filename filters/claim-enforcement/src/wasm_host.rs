//! [`Host`] over proxy-wasm host calls. No host call is unwrapped: a failed
//! call degrades (no counter, no cache entry) and never aborts the VM.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

use crate::host::{Host, LogLevel, SharedDataError};
use crate::metrics::Metric;

/// Counter ids, defined once per VM.
#[derive(Debug, Clone, Default)]
pub struct MetricIds {
    ids: Vec<Option<u32>>,
}

impl MetricIds {
    /// Defines every counter. A counter the host refuses is skipped.
    pub fn define() -> Self {
        let ids = Metric::ALL
            .iter()
            .map(|metric| hostcalls::define_metric(MetricType::Counter, metric.name()).ok())
            .collect();
        Self { ids }
    }

    fn id(&self, metric: Metric) -> Option<u32> {
        self.ids.get(metric as usize).copied().flatten()
    }
}

/// The proxy as a [`Host`].
#[derive(Debug, Clone, Copy)]
pub struct ProxyHost<'a> {
    metrics: &'a MetricIds,
}

impl<'a> ProxyHost<'a> {
    /// A host that counts into `metrics`.
    pub fn new(metrics: &'a MetricIds) -> Self {
        Self { metrics }
    }
}

/// Writes a log line with the filter's prefix.
pub fn log(level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Debug => proxy_wasm::types::LogLevel::Debug,
        LogLevel::Info => proxy_wasm::types::LogLevel::Info,
        LogLevel::Warn => proxy_wasm::types::LogLevel::Warn,
        LogLevel::Error => proxy_wasm::types::LogLevel::Error,
    };
    let _ = hostcalls::log(level, &format!("baton claim-enforcement: {message}"));
}

impl Host for ProxyHost<'_> {
    fn now_unix_secs(&self) -> u64 {
        let now = hostcalls::get_current_time().unwrap_or_else(|_| SystemTime::now());
        now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
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

    fn count(&self, metric: Metric) {
        if let Some(id) = self.metrics.id(metric) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        log(level, message);
    }
}
