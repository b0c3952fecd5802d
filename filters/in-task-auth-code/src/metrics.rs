//! Counters, exported as Envoy stats (`wasmcustom.baton_itac.*` in `/stats`).

use baton_filter_kit::keys::JwksMetrics;

baton_filter_kit::counters! {
    /// Auth-required answers sent by the gateway.
    CHALLENGES = "baton_itac.challenges";
    /// Agents' own auth-required answers completed with a challenge.
    AGENT_CHALLENGES_ENRICHED = "baton_itac.agent_challenges_enriched";
    /// Authorization codes exchanged for tokens.
    CODES_EXCHANGED = "baton_itac.codes_exchanged";
    /// Messages forwarded with the secondary token injected.
    TOKENS_INJECTED = "baton_itac.tokens_injected";
    /// Secondary tokens refused (signature, claims, requirements).
    VALIDATION_FAILURES = "baton_itac.validation_failures";
    /// `state` unknown, expired, reused, or presented by another user or task.
    STATE_MISUSE = "baton_itac.state_misuse";
    /// Bodies refused as JSON-RPC errors (parse, invalid request, params).
    JSON_RPC_ERRORS = "baton_itac.json_rpc_errors";
    /// A path another hop or the agent could read differently (refused before
    /// any rule decides on it).
    AMBIGUOUS_PATH = "baton_itac.ambiguous_path";
    /// A request naming a second method the agent may act on instead (when
    /// rules match methods).
    AMBIGUOUS_METHOD = "baton_itac.ambiguous_method";
    /// The user's bearer token refused (signature, claims, malformed).
    PRIMARY_REFUSED = "baton_itac.primary_refused";
    /// A browser's step refused because it is not the one that signed in as
    /// the user who asked (another browser, another user, login CSRF).
    BINDING_REFUSED = "baton_itac.binding_refused";
    /// A redirect whose RFC 9207 `iss` names another server, or lacks it.
    ISSUER_MISMATCH = "baton_itac.issuer_mismatch";
    /// With a shared store: authorizations ended in the store after a
    /// sign-in by someone other than the user who asked.
    AUTHORIZATIONS_ENDED = "baton_itac.store.authorizations_ended";
    /// An authorization or token not stored because the store is full of live
    /// ones (none is pushed out; the request gets 503).
    STORE_FULL = "baton_itac.store_full";
    /// The shared store (`store`) did not answer, refused or answered garbage
    /// while a `state`'s single use was settled: 503, no code exchanged.
    STORE_UNAVAILABLE = "baton_itac.store.unavailable";
    /// A task's bank token kept in this Envoy but not written to the shared
    /// store (no answer, a refusal, garbage): the request still succeeds;
    /// the task's next message on another replica is challenged again.
    STORE_WRITE_FAILED = "baton_itac.store.write_failed";
    /// Browser sign-ins at the users' IdP started (`primaryLogin`).
    SIGN_INS_STARTED = "baton_itac.sign_ins_started";
    /// Browser sign-ins that named the user who asked.
    SIGN_INS_COMPLETED = "baton_itac.sign_ins_completed";
    /// An IdP refused the gateway's own request (client, grant, redirect URI):
    /// 502, a configuration fault.
    GATEWAY_REFUSED = "baton_itac.gateway_refused";
    /// The secondary IdP unreachable or answering garbage.
    IDP_UNAVAILABLE = "baton_itac.idp_unavailable";
    /// Agent cards (and extended cards) served naming the gateway.
    AGENT_CARDS_REWRITTEN = "baton_itac.agent_cards_rewritten";
    /// Agent cards not served (502): not JSON, compressed, redirected, or
    /// without a JSON-RPC interface the gateway could name.
    AGENT_CARDS_REFUSED = "baton_itac.agent_cards_refused";
    /// Agent cards whose signatures were removed (they sign the agent's URL).
    AGENT_CARD_SIGNATURES_DROPPED = "baton_itac.agent_card_signatures_dropped";
    /// Messages that needed the credential because their task does (the
    /// gateway challenged it), though the rules' condition did not hold.
    GATED_FOLLOW_UPS = "baton_itac.gated_follow_ups";
    /// Tasks the agent ended (or the user canceled): their tokens dropped.
    TASKS_ENDED = "baton_itac.tasks_ended";
    /// Calls on a task only the gateway knows, answered by the gateway
    /// (`GetTask`, `CancelTask`, `SubscribeToTask`).
    GATEWAY_TASK_CALLS = "baton_itac.gateway_task_calls";
    /// A key set was fetched and loaded.
    JWKS_FETCH_SUCCESS = "baton_itac.jwks.fetch_success";
    /// A key set fetch failed (transport, status or content).
    JWKS_FETCH_FAILURE = "baton_itac.jwks.fetch_failure";
}

/// Key set fetches of the secondary IdP.
pub const JWKS: JwksMetrics =
    JwksMetrics { fetch_success: JWKS_FETCH_SUCCESS, fetch_failure: JWKS_FETCH_FAILURE };
