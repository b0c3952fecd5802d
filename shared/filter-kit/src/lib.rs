//! What every Baton filter needs around the token library.
//!
//! Pure parts (tested natively through [`host::Host`]):
//! - [`config`]: errors naming their field, header checks, providers;
//! - [`keys`]: key sets per provider, fetched once for all workers;
//! - [`verifier`]: the verification pipeline with its shared cache;
//! - [`cache`]: two-level caches (worker memory, shared-data slots);
//! - [`audit`]: audit lines that never hold a token.
//!
//! Proxy glue (proxy-wasm host calls, never unwrapped):
//! [`proxy_host`], [`callout`], [`key_fetches`], [`reply`], [`waiters`],
//! [`ticker`].

pub mod audit;
pub mod cache;
pub mod callout;
pub mod config;
pub mod credential;
pub mod handoff;
pub mod host;
pub mod json_path;
pub mod key_fetches;
pub mod keys;
pub mod lease;
pub mod matching;
pub mod plugin;
pub mod proxy_host;
pub mod query;
pub mod reply;
pub mod request_headers;
pub mod slot_table;
pub mod ticker;
pub mod token_calls;
pub mod verifier;
pub mod waiters;

#[cfg(feature = "test-host")]
pub mod test_host;
#[cfg(feature = "test-host")]
pub mod test_keys;

pub use host::{Host, LogLevel, SharedDataError};
