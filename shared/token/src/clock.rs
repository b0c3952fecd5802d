//! Time is injected, never read from the system here: the filters read it from
//! the host (`proxy_get_current_time`), tests pin it.

/// A source of the current time, in whole seconds since the Unix epoch.
pub trait Clock {
    /// Seconds since 1970-01-01T00:00:00Z.
    fn now_unix_secs(&self) -> u64;
}

/// A clock that always answers the same instant (tests, replay of a decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedClock(pub u64);

impl Clock for FixedClock {
    fn now_unix_secs(&self) -> u64 {
        self.0
    }
}

/// The operating system's clock.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[cfg(feature = "std")]
impl Clock for SystemClock {
    fn now_unix_secs(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}
