//! Counters, exported as Envoy stats (`wasmcustom.baton_obo.*` in `/stats`).

use baton_filter_kit::keys::JwksMetrics;

/// Request forwarded with an injected token.
pub const INJECTED: &str = "baton_obo.injected";
/// Request matching no target, forwarded without a token (`passThrough`).
pub const PASS_THROUGH: &str = "baton_obo.pass_through";
/// No target matches (`deny`).
pub const DENIED_NO_TARGET: &str = "baton_obo.denied.no_target";
/// No subject token.
pub const DENIED_MISSING_TOKEN: &str = "baton_obo.denied.missing_token";
/// Malformed credential header(s).
pub const DENIED_INVALID_REQUEST: &str = "baton_obo.denied.invalid_request";
/// The IdP refused the gateway's own request (its client, grant or
/// parameters): 502, a configuration fault.
pub const DENIED_GATEWAY_REFUSED: &str = "baton_obo.denied.gateway_refused";
/// An issued token named another audience or issuer: not used (502).
pub const DENIED_WRONG_AUDIENCE: &str = "baton_obo.denied.wrong_audience";
/// Calls whose issued token named another audience or issuer.
pub const IDP_WRONG_AUDIENCE: &str = "baton_obo.idp.wrong_audience";
/// A path another hop or the upstream could read differently (refused
/// before any target decides on it).
pub const DENIED_AMBIGUOUS_PATH: &str = "baton_obo.denied.ambiguous_path";
/// 400: the request names a second method a backend may act on instead.
pub const DENIED_AMBIGUOUS_METHOD: &str = "baton_obo.denied.ambiguous_method";
/// Subject token refused before any IdP call, or by the IdP (`invalid_grant`).
pub const DENIED_INVALID_TOKEN: &str = "baton_obo.denied.invalid_token";
/// Delegation policy refused the caller.
pub const DENIED_DELEGATION: &str = "baton_obo.denied.delegation";
/// The IdP refused the target (`invalid_target`, `unauthorized_client`, ...).
pub const DENIED_IDP_REFUSED: &str = "baton_obo.denied.idp_refused";
/// No token could be obtained (IdP down, slow, garbage, keys missing): 503.
pub const DENIED_UNAVAILABLE: &str = "baton_obo.denied.unavailable";
/// Issued token found in this worker's cache.
pub const CACHE_HIT_LOCAL: &str = "baton_obo.cache.hit_local";
/// Issued token found in the cache shared by the workers.
pub const CACHE_HIT_SHARED: &str = "baton_obo.cache.hit_shared";
/// No cached token: a call to the IdP was needed.
pub const CACHE_MISS: &str = "baton_obo.cache.miss";
/// Calls made to token endpoints.
pub const IDP_CALLS: &str = "baton_obo.idp.calls";
/// Calls that returned a token.
pub const IDP_SUCCESS: &str = "baton_obo.idp.success";
/// Calls refused with an OAuth error.
pub const IDP_REJECTED: &str = "baton_obo.idp.rejected";
/// Calls without a usable answer (no response, 5xx).
pub const IDP_UNAVAILABLE: &str = "baton_obo.idp.unavailable";
/// Calls answered 200 with an unusable body.
pub const IDP_INVALID_RESPONSE: &str = "baton_obo.idp.invalid_response";
/// Client-credentials tokens renewed before expiry.
pub const CREDENTIALS_REFRESHED: &str = "baton_obo.credentials.refreshed";
/// Identity assertions signed by the gateway (cache misses of
/// `identityAssertion` targets).
pub const ASSERTIONS_SIGNED: &str = "baton_obo.assertions.signed";
/// JWKS documents served (`identityAssertion.jwksPath`).
pub const JWKS_SERVED: &str = "baton_obo.assertions.jwks_served";
/// Key set fetches (subject validation `jwks`).
pub const JWKS: JwksMetrics = JwksMetrics {
    fetch_success: "baton_obo.jwks.fetch_success",
    fetch_failure: "baton_obo.jwks.fetch_failure",
};

/// Every counter, for definition at start.
pub const ALL: [&str; 27] = [
    DENIED_WRONG_AUDIENCE,
    IDP_WRONG_AUDIENCE,
    DENIED_GATEWAY_REFUSED,
    DENIED_AMBIGUOUS_PATH,
    DENIED_AMBIGUOUS_METHOD,
    INJECTED,
    PASS_THROUGH,
    DENIED_NO_TARGET,
    DENIED_MISSING_TOKEN,
    DENIED_INVALID_REQUEST,
    DENIED_INVALID_TOKEN,
    DENIED_DELEGATION,
    DENIED_IDP_REFUSED,
    DENIED_UNAVAILABLE,
    CACHE_HIT_LOCAL,
    CACHE_HIT_SHARED,
    CACHE_MISS,
    IDP_CALLS,
    IDP_SUCCESS,
    IDP_REJECTED,
    IDP_UNAVAILABLE,
    IDP_INVALID_RESPONSE,
    CREDENTIALS_REFRESHED,
    ASSERTIONS_SIGNED,
    JWKS_SERVED,
    JWKS.fetch_success,
    JWKS.fetch_failure,
];
