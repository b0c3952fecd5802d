//! Counters, exported as Envoy stats (`wasmcustom.baton_ce.*` in `/stats`).

use baton_filter_kit::keys::JwksMetrics;

/// Request allowed with a valid token.
pub const ALLOWED: &str = "baton_ce.allowed";
/// Request passed on a public route, or unmatched with `defaultAction: allow`.
pub const ALLOWED_PUBLIC: &str = "baton_ce.allowed_public";
/// No token.
pub const DENIED_MISSING_TOKEN: &str = "baton_ce.denied.missing_token";
/// Malformed request (several credentials, bad `Authorization` syntax).
pub const DENIED_INVALID_REQUEST: &str = "baton_ce.denied.invalid_request";
/// A path another hop or the backend could read differently (refused
/// before any route decides on it).
pub const DENIED_AMBIGUOUS_PATH: &str = "baton_ce.denied.ambiguous_path";
/// 400: the request names a second method a backend may act on instead.
pub const DENIED_AMBIGUOUS_METHOD: &str = "baton_ce.denied.ambiguous_method";
/// Token failed parsing, signature or claim validation.
pub const DENIED_INVALID_TOKEN: &str = "baton_ce.denied.invalid_token";
/// Token lacks a scope or fails a claim condition.
pub const DENIED_INSUFFICIENT_SCOPE: &str = "baton_ce.denied.insufficient_scope";
/// Step-up required.
pub const DENIED_STEP_UP: &str = "baton_ce.denied.step_up_required";
/// No route allows the request.
pub const DENIED_NO_ROUTE: &str = "baton_ce.denied.no_route";
/// Keys could not be obtained: 503.
pub const DENIED_KEYS_UNAVAILABLE: &str = "baton_ce.denied.keys_unavailable";
/// Verified token found in this worker's cache.
pub const CACHE_HIT_LOCAL: &str = "baton_ce.cache.hit_local";
/// Verified token found in the cache shared by the workers.
pub const CACHE_HIT_SHARED: &str = "baton_ce.cache.hit_shared";
/// Token verified from scratch.
pub const CACHE_MISS: &str = "baton_ce.cache.miss";
/// A claim could not be forwarded (its value cannot be a header value).
pub const CLAIM_HEADER_SKIPPED: &str = "baton_ce.claim_header_skipped";
/// Key set fetches.
pub const JWKS: JwksMetrics = JwksMetrics {
    fetch_success: "baton_ce.jwks.fetch_success",
    fetch_failure: "baton_ce.jwks.fetch_failure",
};

/// Every counter, for definition at start.
pub const ALL: [&str; 17] = [
    ALLOWED,
    DENIED_AMBIGUOUS_PATH,
    DENIED_AMBIGUOUS_METHOD,
    ALLOWED_PUBLIC,
    DENIED_MISSING_TOKEN,
    DENIED_INVALID_REQUEST,
    DENIED_INVALID_TOKEN,
    DENIED_INSUFFICIENT_SCOPE,
    DENIED_STEP_UP,
    DENIED_NO_ROUTE,
    DENIED_KEYS_UNAVAILABLE,
    CACHE_HIT_LOCAL,
    CACHE_HIT_SHARED,
    CACHE_MISS,
    CLAIM_HEADER_SKIPPED,
    JWKS.fetch_success,
    JWKS.fetch_failure,
];
