//! An in-memory [`Host`] for native tests: shared data, a settable clock,
//! counters and captured log lines.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use baton_token::TokenHash;

use crate::host::{Host, LogLevel, SharedDataError};

/// Shared-data entries with their compare-and-swap versions.
type SharedData = HashMap<String, (Vec<u8>, u32)>;

/// Clones share shared data, counters and logs, the way the workers of one
/// Envoy share shared data.
#[derive(Debug, Clone, Default)]
pub struct TestHost {
    now_millis: Rc<Cell<u64>>,
    shared: Rc<RefCell<SharedData>>,
    counters: Rc<RefCell<HashMap<String, u64>>>,
    logs: Rc<RefCell<Vec<(LogLevel, String)>>>,
    random_counter: Rc<Cell<u64>>,
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
    pub fn counter(&self, metric: &str) -> u64 {
        self.counters.borrow().get(metric).copied().unwrap_or(0)
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
        self.now_millis.get() / 1000
    }

    fn now_unix_millis(&self) -> u64 {
        self.now_millis.get()
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.borrow().get(key).cloned()
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
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
        // Distinct, repeatable bytes: tests see stable values, never the same
        // value twice.
        let seed = TokenHash::of(&self.random_counter.get().to_be_bytes());
        self.random_counter.set(self.random_counter.get() + 1);
        for (index, byte) in buf.iter_mut().enumerate() {
            *byte = seed.as_bytes()[index % 32] ^ u8::try_from(index / 32 % 256).unwrap_or(0);
        }
        true
    }

    fn count(&self, metric: &str) {
        *self.counters.borrow_mut().entry(metric.to_string()).or_default() += 1;
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}
