//! Baton claim-enforcement: validates the bearer JWT of each request inside
//! Envoy and enforces per-route scope, claim and step-up rules.
//!
//! Layout: `config` compiles the plugin configuration; `routes` picks the
//! rule; `decision` holds the per-request logic over the
//! [`baton_filter_kit::Host`] trait (token verification itself is the kit's
//! `TokenVerifier`); `protected_resource` is the RFC 9728 metadata it
//! serves; `filter` fits the engine into the filter-kit runtime, which
//! holds requests while keys are fetched and talks to the proxy.

pub mod config;
pub mod decision;
pub mod denial;
pub mod filter;
pub mod metrics;
pub mod protected_resource;
pub mod routes;

/// The name this filter logs under.
pub const FILTER: &str = "claim-enforcement";

#[cfg(feature = "module")]
baton_filter_kit::register_filter!(crate::filter::ClaimEnforcement);
