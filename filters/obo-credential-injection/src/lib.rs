//! Baton obo-credential-injection: replaces the caller's bearer token with
//! one minted for the upstream (RFC 8693 token exchange, Microsoft Entra
//! on-behalf-of, or the gateway's own client-credentials token), obtained
//! from the IdP with `dispatch_http_call`, cached and shared by the workers.
//!
//! Layout: `config` compiles the configuration into the `model`; `subject`
//! checks the subject token and the delegation policy; `decision` decides
//! per request over the [`baton_filter_kit::Host`] trait; `jobs` builds
//! token endpoint calls and keeps one in flight per token; `issued` caches
//! the results; `filter` fits the engine into the filter-kit runtime, which
//! holds waiting requests, makes the calls and talks to the proxy.

pub mod assertion;
pub mod config;
pub mod decision;
pub mod denial;
pub mod filter;
pub mod fleet_cache;
pub mod issued;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod renewal;
pub mod subject;

/// The name this filter logs under.
pub const FILTER: &str = "obo-credential-injection";

#[cfg(feature = "module")]
baton_filter_kit::register_filter!(crate::filter::OboCredentialInjection);
