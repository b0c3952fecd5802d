//! Counters, exported as Envoy stats (`wasmcustom.baton_ce.*` in `/stats`).

use baton_filter_kit::keys::JwksMetrics;

baton_filter_kit::counters! {
    /// Request allowed with a valid token.
    ALLOWED = "baton_ce.allowed";
    /// Request passed on a public route, or unmatched with `defaultAction: allow`.
    ALLOWED_PUBLIC = "baton_ce.allowed_public";
    /// No token.
    DENIED_MISSING_TOKEN = "baton_ce.denied.missing_token";
    /// Malformed request (several credentials, bad `Authorization` syntax).
    DENIED_INVALID_REQUEST = "baton_ce.denied.invalid_request";
    /// A path another hop or the backend could read differently (refused
    /// before any route decides on it).
    DENIED_AMBIGUOUS_PATH = "baton_ce.denied.ambiguous_path";
    /// 400: the request names a second method a backend may act on instead.
    DENIED_AMBIGUOUS_METHOD = "baton_ce.denied.ambiguous_method";
    /// Token failed parsing, signature or claim validation.
    DENIED_INVALID_TOKEN = "baton_ce.denied.invalid_token";
    /// Token lacks a scope or fails a claim condition.
    DENIED_INSUFFICIENT_SCOPE = "baton_ce.denied.insufficient_scope";
    /// Step-up required.
    DENIED_STEP_UP = "baton_ce.denied.step_up_required";
    /// No route allows the request.
    DENIED_NO_ROUTE = "baton_ce.denied.no_route";
    /// Keys could not be obtained: 503.
    DENIED_KEYS_UNAVAILABLE = "baton_ce.denied.keys_unavailable";
    /// Verified token found in this worker's cache.
    CACHE_HIT_LOCAL = "baton_ce.cache.hit_local";
    /// Verified token found in the cache shared by the workers.
    CACHE_HIT_SHARED = "baton_ce.cache.hit_shared";
    /// Token verified from scratch.
    CACHE_MISS = "baton_ce.cache.miss";
    /// A claim could not be forwarded (its value cannot be a header value).
    CLAIM_HEADER_SKIPPED = "baton_ce.claim_header_skipped";
    /// A key set was fetched and loaded.
    JWKS_FETCH_SUCCESS = "baton_ce.jwks.fetch_success";
    /// A key set fetch failed (transport, status or content).
    JWKS_FETCH_FAILURE = "baton_ce.jwks.fetch_failure";
}

/// Key set fetches.
pub const JWKS: JwksMetrics =
    JwksMetrics { fetch_success: JWKS_FETCH_SUCCESS, fetch_failure: JWKS_FETCH_FAILURE };
