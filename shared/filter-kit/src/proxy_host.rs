//! [`Host`] over proxy-wasm host calls. No host call is unwrapped: a failed
//! call degrades (no counter, no cache entry) and never aborts the VM.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

use crate::host::{Host, LogLevel, SharedDataError};

/// Counter ids, defined once per VM; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct MetricIds {
    ids: Rc<[(&'static str, u32)]>,
}

impl MetricIds {
    /// Defines every counter. A counter the host refuses is skipped.
    pub fn define(names: &[&'static str]) -> Self {
        let ids = names
            .iter()
            .filter_map(|name| hostcalls::define_metric(MetricType::Counter, name).ok().map(|id| (*name, id)))
            .collect();
        Self { ids }
    }

    /// The id of counter `name`. Names are the filters' constants, so the
    /// text's address usually finds it without comparing characters.
    fn id(&self, name: &str) -> Option<u32> {
        let same_text = |(known, _): &&(&str, u32)| {
            std::ptr::eq(known.as_ptr(), name.as_ptr()) && known.len() == name.len()
        };
        self.ids
            .iter()
            .find(same_text)
            .or_else(|| self.ids.iter().find(|(known, _)| *known == name))
            .map(|(_, id)| *id)
    }
}

/// The proxy as a [`Host`], logging as `filter`. Made for one callback:
/// the clock is read once, so one decision sees one instant.
#[derive(Debug, Clone)]
pub struct ProxyHost<'a> {
    metrics: &'a MetricIds,
    filter: &'static str,
    now: Cell<Option<Duration>>,
}

impl<'a> ProxyHost<'a> {
    /// A host that counts into `metrics` and prefixes log lines with
    /// `baton <filter>:`.
    pub fn new(metrics: &'a MetricIds, filter: &'static str) -> Self {
        Self { metrics, filter, now: Cell::new(None) }
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

    fn count(&self, metric: &str) {
        if let Some(id) = self.metrics.id(metric) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        log(self.filter, level, message);
    }
}
