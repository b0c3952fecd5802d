//! Counters, exported as Envoy stats (`wasmcustom.baton_ce.*` in `/stats`).

/// Every counter the filter keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Request allowed with a valid token.
    Allowed,
    /// Request passed on a public route or unmatched with `defaultAction: allow`.
    AllowedPublic,
    /// No token.
    DeniedMissingToken,
    /// Malformed request (several credentials, bad `Authorization` syntax).
    DeniedInvalidRequest,
    /// Token failed parsing, signature or claim validation.
    DeniedInvalidToken,
    /// Token lacks a scope or fails a claim condition.
    DeniedInsufficientScope,
    /// Step-up required.
    DeniedStepUp,
    /// No route allows the request.
    DeniedNoRoute,
    /// Keys could not be obtained: 503.
    DeniedKeysUnavailable,
    /// Verified token found in this worker's cache.
    CacheHitLocal,
    /// Verified token found in the cache shared by the workers.
    CacheHitShared,
    /// Token verified from scratch.
    CacheMiss,
    /// Key set fetched and loaded.
    JwksFetchSuccess,
    /// Key set fetch failed (transport, status, or unusable content).
    JwksFetchFailure,
    /// A claim could not be forwarded (its value cannot be a header value).
    ClaimHeaderSkipped,
}

impl Metric {
    /// Every counter, for definition at start.
    pub const ALL: [Metric; 15] = [
        Metric::Allowed,
        Metric::AllowedPublic,
        Metric::DeniedMissingToken,
        Metric::DeniedInvalidRequest,
        Metric::DeniedInvalidToken,
        Metric::DeniedInsufficientScope,
        Metric::DeniedStepUp,
        Metric::DeniedNoRoute,
        Metric::DeniedKeysUnavailable,
        Metric::CacheHitLocal,
        Metric::CacheHitShared,
        Metric::CacheMiss,
        Metric::JwksFetchSuccess,
        Metric::JwksFetchFailure,
        Metric::ClaimHeaderSkipped,
    ];

    /// The stat name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Allowed => "baton_ce.allowed",
            Metric::AllowedPublic => "baton_ce.allowed_public",
            Metric::DeniedMissingToken => "baton_ce.denied.missing_token",
            Metric::DeniedInvalidRequest => "baton_ce.denied.invalid_request",
            Metric::DeniedInvalidToken => "baton_ce.denied.invalid_token",
            Metric::DeniedInsufficientScope => "baton_ce.denied.insufficient_scope",
            Metric::DeniedStepUp => "baton_ce.denied.step_up_required",
            Metric::DeniedNoRoute => "baton_ce.denied.no_route",
            Metric::DeniedKeysUnavailable => "baton_ce.denied.keys_unavailable",
            Metric::CacheHitLocal => "baton_ce.cache.hit_local",
            Metric::CacheHitShared => "baton_ce.cache.hit_shared",
            Metric::CacheMiss => "baton_ce.cache.miss",
            Metric::JwksFetchSuccess => "baton_ce.jwks.fetch_success",
            Metric::JwksFetchFailure => "baton_ce.jwks.fetch_failure",
            Metric::ClaimHeaderSkipped => "baton_ce.claim_header_skipped",
        }
    }
}
