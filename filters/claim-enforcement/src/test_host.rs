//! An in-memory [`Host`] for native tests: shared data, a settable clock,
//! counters and captured log lines.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::host::{Host, LogLevel, SharedDataError};
use crate::metrics::Metric;

/// Shared-data entries with their compare-and-swap versions.
type SharedData = HashMap<String, (Vec<u8>, u32)>;

/// Shared data is shared between [`TestHost`]s cloned from one another, the
/// way workers share it in Envoy.
#[derive(Debug, Clone, Default)]
pub struct TestHost {
    now: Rc<Cell<u64>>,
    shared: Rc<RefCell<SharedData>>,
    counters: Rc<RefCell<HashMap<Metric, u64>>>,
    logs: Rc<RefCell<Vec<(LogLevel, String)>>>,
}

impl TestHost {
    /// A host whose clock reads `now`.
    pub fn new(now: u64) -> Self {
        let host = Self::default();
        host.now.set(now);
        host
    }

    /// Moves the clock.
    pub fn set_now(&self, now: u64) {
        self.now.set(now);
    }

    /// A counter's value.
    pub fn counter(&self, metric: Metric) -> u64 {
        self.counters.borrow().get(&metric).copied().unwrap_or(0)
    }

    /// Log lines so far.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }

    /// Number of shared-data entries.
    pub fn shared_len(&self) -> usize {
        self.shared.borrow().len()
    }
}

impl Host for TestHost {
    fn now_unix_secs(&self) -> u64 {
        self.now.get()
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.borrow().get(key).cloned()
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, version)| *version);
        // As in Envoy: a zero or absent cas writes unconditionally.
        if let Some(expected) = cas.filter(|cas| *cas != 0)
            && current != Some(expected)
        {
            return Err(SharedDataError::CasMismatch);
        }
        shared.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }

    fn count(&self, metric: Metric) {
        *self.counters.borrow_mut().entry(metric).or_default() += 1;
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}
