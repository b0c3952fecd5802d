//! Counters, exported as Envoy stats (`wasmcustom.baton_itac.*` in `/stats`).

use baton_filter_kit::keys::JwksMetrics;

/// Auth-required answers sent by the gateway.
pub const CHALLENGES: &str = "baton_itac.challenges";
/// Agents' own auth-required answers completed with a challenge.
pub const AGENT_CHALLENGES_ENRICHED: &str = "baton_itac.agent_challenges_enriched";
/// Authorization codes exchanged for tokens.
pub const CODES_EXCHANGED: &str = "baton_itac.codes_exchanged";
/// Messages forwarded with the secondary token injected.
pub const TOKENS_INJECTED: &str = "baton_itac.tokens_injected";
/// Secondary tokens refused (signature, claims, requirements).
pub const VALIDATION_FAILURES: &str = "baton_itac.validation_failures";
/// `state` unknown, expired, reused, or presented by another user or task.
pub const STATE_MISUSE: &str = "baton_itac.state_misuse";
/// Bodies refused as JSON-RPC errors (parse, invalid request, params).
pub const JSON_RPC_ERRORS: &str = "baton_itac.json_rpc_errors";
/// The user's bearer token refused (signature, claims, malformed).
pub const PRIMARY_REFUSED: &str = "baton_itac.primary_refused";
/// The secondary IdP unreachable or answering garbage.
pub const IDP_UNAVAILABLE: &str = "baton_itac.idp_unavailable";
/// Key set fetches of the secondary IdP.
pub const JWKS: JwksMetrics = JwksMetrics {
    fetch_success: "baton_itac.jwks.fetch_success",
    fetch_failure: "baton_itac.jwks.fetch_failure",
};

/// Every counter, for definition at start.
pub const ALL: [&str; 11] = [
    PRIMARY_REFUSED,
    CHALLENGES,
    AGENT_CHALLENGES_ENRICHED,
    CODES_EXCHANGED,
    TOKENS_INJECTED,
    VALIDATION_FAILURES,
    STATE_MISUSE,
    JSON_RPC_ERRORS,
    IDP_UNAVAILABLE,
    JWKS.fetch_success,
    JWKS.fetch_failure,
];
