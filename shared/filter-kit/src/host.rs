//! What a filter's decisions need from the proxy, as a trait: implemented
//! over proxy-wasm host calls ([`crate::proxy_host::ProxyHost`]) and in
//! memory for native tests (`TestHost`, feature `test-host`).

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The proxy, as the decisions see it.
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
    /// Adds one to a counter, by stat name (e.g. `baton_ce.allowed`).
    fn count(&self, metric: &str);
    /// Writes a log line.
    fn log(&self, level: LogLevel, message: &str);
}
