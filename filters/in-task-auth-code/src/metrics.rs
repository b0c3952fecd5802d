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
/// A path another hop or the agent could read differently (refused before
/// any rule decides on it).
pub const AMBIGUOUS_PATH: &str = "baton_itac.ambiguous_path";
/// A request naming a second method the agent may act on instead (when
/// rules match methods).
pub const AMBIGUOUS_METHOD: &str = "baton_itac.ambiguous_method";
/// The user's bearer token refused (signature, claims, malformed).
pub const PRIMARY_REFUSED: &str = "baton_itac.primary_refused";
/// A browser's step refused because it is not the one that signed in as
/// the user who asked (another browser, another user, login CSRF).
pub const BINDING_REFUSED: &str = "baton_itac.binding_refused";
/// A redirect whose RFC 9207 `iss` names another server, or lacks it.
pub const ISSUER_MISMATCH: &str = "baton_itac.issuer_mismatch";
/// An authorization or token not stored because the store is full of live
/// ones (none is pushed out; the request gets 503).
pub const STORE_FULL: &str = "baton_itac.store_full";
/// Browser sign-ins at the users' IdP started (`primaryLogin`).
pub const SIGN_INS_STARTED: &str = "baton_itac.sign_ins_started";
/// Browser sign-ins that named the user who asked.
pub const SIGN_INS_COMPLETED: &str = "baton_itac.sign_ins_completed";
/// An IdP refused the gateway's own request (client, grant, redirect URI):
/// 502, a configuration fault.
pub const GATEWAY_REFUSED: &str = "baton_itac.gateway_refused";
/// The secondary IdP unreachable or answering garbage.
pub const IDP_UNAVAILABLE: &str = "baton_itac.idp_unavailable";
/// Key set fetches of the secondary IdP.
pub const JWKS: JwksMetrics = JwksMetrics {
    fetch_success: "baton_itac.jwks.fetch_success",
    fetch_failure: "baton_itac.jwks.fetch_failure",
};

/// Every counter, for definition at start.
pub const ALL: [&str; 19] = [
    GATEWAY_REFUSED,
    STORE_FULL,
    AMBIGUOUS_PATH,
    AMBIGUOUS_METHOD,
    PRIMARY_REFUSED,
    BINDING_REFUSED,
    ISSUER_MISMATCH,
    SIGN_INS_STARTED,
    SIGN_INS_COMPLETED,
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
