//! The root context's timer: slow when idle, fast while something is being
//! fetched or waited for, immediate when a request asks for it.

use std::time::Duration;

use crate::host::Host;

/// Tick period while keys are missing or requests wait.
pub const FAST_TICK: Duration = Duration::from_millis(100);
/// Tick period otherwise.
pub const SLOW_TICK: Duration = Duration::from_secs(1);
/// Tick period a waiting request asks for, so work starts at once.
pub const IMMEDIATE_TICK: Duration = Duration::from_millis(1);

/// The period the VM's root context ticks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticker {
    period: Option<Duration>,
}

impl Default for Ticker {
    fn default() -> Self {
        Self::new()
    }
}

impl Ticker {
    /// No timer yet.
    pub fn new() -> Self {
        Self { period: None }
    }

    /// Sets the period (a host call only when it changes).
    pub fn set(&mut self, host: &dyn Host, period: Duration) {
        if self.period != Some(period) && host.set_tick_period(period).is_ok() {
            self.period = Some(period);
        }
    }

    /// Ticks at once; the next tick sets a regular period again. Works from
    /// a request context too: the period is the VM root context's.
    pub fn tick_now(&mut self, host: &dyn Host) {
        self.set(host, IMMEDIATE_TICK);
    }

    /// Ticks within `period` from now on: a host call only when the timer
    /// is slower (or not set).
    pub fn at_most(&mut self, host: &dyn Host, period: Duration) {
        if self.period.is_none_or(|current| current > period) {
            self.set(host, period);
        }
    }

    /// Fast while `busy`, slow otherwise.
    pub fn settle(&mut self, host: &dyn Host, busy: bool) {
        self.set(host, if busy { FAST_TICK } else { SLOW_TICK });
    }
}
