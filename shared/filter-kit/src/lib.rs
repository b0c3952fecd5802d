//! What every Baton filter needs around the token library.
//!
//! Everything here but two modules runs natively, through the [`host::Host`]
//! trait (an in-memory `TestHost` in tests):
//! - [`runtime`]: the life of a request (held for its body, waiting for
//!   keys or a call, decided again, answered when overdue), calls made once
//!   per key and across workers, key fetches, the timer;
//! - [`config`]: errors naming their field, header checks, providers;
//! - [`keys`], [`key_fetches`]: key sets per provider, fetched once for all
//!   workers;
//! - [`verifier`]: the verification pipeline with its shared cache;
//! - [`cache`], [`lease`], [`slot_table`]: shared-data structures;
//! - [`token_calls`]: token endpoint calls and single flight in a worker;
//! - [`store`]: the shared store across Envoy replicas (etcd, sealed
//!   values); [`fleet`]: a token call made once for the fleet through it;
//! - [`matching`], [`request_headers`], [`credential`]: reading
//!   requests;
//! - [`reply`], [`audit`]: answers and audit lines that never hold a token.
//!
//! The proxy-wasm SDK is touched only by [`proxy_host`] (the [`host::Host`]
//! over host calls, never unwrapped) and [`proxy_glue`] (the context traits
//! over [`runtime::Runtime`]).

pub mod audit;
pub mod cache;
pub mod config;
pub mod credential;
pub mod fleet;
pub mod handoff;
pub mod host;
pub mod json_path;
pub mod key_fetches;
pub mod keys;
pub mod lease;
pub mod matching;
pub mod proxy_glue;
pub mod proxy_host;
pub mod reply;
pub mod request_headers;
pub mod runtime;
pub mod slot_table;
pub mod sse;
pub mod store;
pub mod ticker;
pub mod token_calls;
pub mod verifier;

#[cfg(feature = "test-host")]
pub mod test_host;
#[cfg(feature = "test-host")]
pub mod test_keys;

pub use host::{Host, LogLevel, SharedDataError};
