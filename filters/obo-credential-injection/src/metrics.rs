//! Counters, exported as Envoy stats (`wasmcustom.baton_obo.*` in `/stats`).

use baton_filter_kit::keys::JwksMetrics;

baton_filter_kit::counters! {
    /// Request forwarded with an injected token.
    INJECTED = "baton_obo.injected";
    /// Request matching no target, forwarded without a token (`passThrough`).
    PASS_THROUGH = "baton_obo.pass_through";
    /// No target matches (`deny`).
    DENIED_NO_TARGET = "baton_obo.denied.no_target";
    /// No subject token.
    DENIED_MISSING_TOKEN = "baton_obo.denied.missing_token";
    /// Malformed credential header(s).
    DENIED_INVALID_REQUEST = "baton_obo.denied.invalid_request";
    /// The IdP refused the gateway's own request (its client, grant or
    /// parameters): 502, a configuration fault.
    DENIED_GATEWAY_REFUSED = "baton_obo.denied.gateway_refused";
    /// An issued token named another audience or issuer: not used (502).
    DENIED_WRONG_AUDIENCE = "baton_obo.denied.wrong_audience";
    /// Calls whose issued token named another audience or issuer.
    IDP_WRONG_AUDIENCE = "baton_obo.idp.wrong_audience";
    /// A path another hop or the upstream could read differently (refused
    /// before any target decides on it).
    DENIED_AMBIGUOUS_PATH = "baton_obo.denied.ambiguous_path";
    /// 400: the request names a second method a backend may act on instead.
    DENIED_AMBIGUOUS_METHOD = "baton_obo.denied.ambiguous_method";
    /// Subject token refused before any IdP call, or by the IdP (`invalid_grant`).
    DENIED_INVALID_TOKEN = "baton_obo.denied.invalid_token";
    /// Delegation policy refused the caller.
    DENIED_DELEGATION = "baton_obo.denied.delegation";
    /// The IdP refused the target (`invalid_target`, `unauthorized_client`, ...).
    DENIED_IDP_REFUSED = "baton_obo.denied.idp_refused";
    /// No token could be obtained (IdP down, slow, garbage, keys missing): 503.
    DENIED_UNAVAILABLE = "baton_obo.denied.unavailable";
    /// Issued token found in this worker's cache.
    CACHE_HIT_LOCAL = "baton_obo.cache.hit_local";
    /// Issued token found in the cache shared by the workers.
    CACHE_HIT_SHARED = "baton_obo.cache.hit_shared";
    /// No cached token: a call to the IdP was needed.
    CACHE_MISS = "baton_obo.cache.miss";
    /// Calls made to token endpoints.
    IDP_CALLS = "baton_obo.idp.calls";
    /// Calls that returned a token.
    IDP_SUCCESS = "baton_obo.idp.success";
    /// Calls refused with an OAuth error.
    IDP_REJECTED = "baton_obo.idp.rejected";
    /// Calls without a usable answer (no response, 5xx).
    IDP_UNAVAILABLE = "baton_obo.idp.unavailable";
    /// Calls answered 200 with an unusable body.
    IDP_INVALID_RESPONSE = "baton_obo.idp.invalid_response";
    /// Client-credentials tokens renewed before expiry.
    CREDENTIALS_REFRESHED = "baton_obo.credentials.refreshed";
    /// Identity assertions signed by the gateway (cache misses of
    /// `identityAssertion` targets).
    ASSERTIONS_SIGNED = "baton_obo.assertions.signed";
    /// JWKS documents served (`identityAssertion.jwksPath`).
    JWKS_SERVED = "baton_obo.assertions.jwks_served";
    /// Exchanged token found in the fleet's store (`store`): no IdP call.
    STORE_HIT = "baton_obo.store.hit";
    /// Nothing usable in the store (absent, or expired): exchanged at the IdP.
    STORE_MISS = "baton_obo.store.miss";
    /// A stored value that did not open or was for another exchange: not
    /// used, exchanged at the IdP (another key, tampering).
    STORE_REJECTED = "baton_obo.store.rejected";
    /// The store did not answer, refused, answered garbage or too late, or
    /// the read could not be dispatched: exchanged at the IdP.
    STORE_UNAVAILABLE = "baton_obo.store.unavailable";
    /// Exchanges this replica claimed in the store and made for the fleet
    /// (the one IdP call across the replicas).
    STORE_FLIGHT_LED = "baton_obo.store.flight_led";
    /// Exchanges another replica was making, waited for and taken from the
    /// store: no IdP call here.
    STORE_FLIGHT_FOLLOWED = "baton_obo.store.flight_followed";
    /// Exchanged tokens written to the store.
    STORE_WRITTEN = "baton_obo.store.written";
    /// Writes that failed (the lease or the put): the request had its token.
    STORE_WRITE_FAILED = "baton_obo.store.write_failed";
    /// A key set was fetched and loaded.
    JWKS_FETCH_SUCCESS = "baton_obo.jwks.fetch_success";
    /// A key set fetch failed (transport, status or content).
    JWKS_FETCH_FAILURE = "baton_obo.jwks.fetch_failure";
}

/// Key set fetches (subject validation `jwks`).
pub const JWKS: JwksMetrics =
    JwksMetrics { fetch_success: JWKS_FETCH_SUCCESS, fetch_failure: JWKS_FETCH_FAILURE };
