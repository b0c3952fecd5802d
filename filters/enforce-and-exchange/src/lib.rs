//! Baton enforce-and-exchange: claim-enforcement and
//! obo-credential-injection in one pass of one filter. The token is
//! verified and the route's rules applied by claim-enforcement's engine;
//! its verdict is handed to obo-credential-injection's engine in memory
//! (the record `shareVerifiedToken` would put in filter state), which
//! swaps the token for the one the upstream gets. One VM entry, one header
//! read and one clock read per request instead of two of each.
//!
//! The two filters stay usable alone; this module is for the chain of the
//! two (the agent-broker shape), configured with both sections:
//!
//! ```json
//! {"claimEnforcement": {...}, "oboCredentialInjection": {...}}
//! ```
//!
//! Layout: `filter` is the composite [`baton_filter_kit::runtime::Filter`];
//! each engine is its own crate's, unchanged.

pub mod filter;
pub mod metrics;

/// The name this filter logs under.
pub const FILTER: &str = "enforce-and-exchange";

baton_filter_kit::register_filter!(crate::filter::EnforceAndExchange);
