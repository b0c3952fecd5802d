//! The compiled configuration: the secondary IdP (where the user authorizes,
//! where codes are exchanged, how its tokens are validated), which A2A
//! messages need its credential, and how the result reaches the agent.

use std::rc::Rc;

use baton_filter_kit::config::Provider;
use baton_filter_kit::matching::RequestMatch;
use baton_filter_kit::token_calls::TokenEndpoint;
use baton_token::rules::AccessRequirement;
use serde_json::Value;

/// The second IdP (e.g. the user's bank).
#[derive(Debug)]
pub struct SecondaryIdp {
    /// Name shown to clients (`secondaryAuthProvider`).
    pub name: String,
    /// Authorization endpoint URL the user opens.
    pub authorization_endpoint: String,
    /// Token endpoint URL, as published in challenges.
    pub token_endpoint_url: String,
    /// Token endpoint as the gateway calls it (cluster, path, client auth).
    pub token_endpoint: TokenEndpoint,
    /// Where the IdP sends the user back (`redirect_uri`).
    pub redirect_uri: String,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// Audience of the secondary token, shown in challenges.
    pub audience: Option<String>,
    /// Further authorization request parameters (e.g. `acr_values`).
    pub extra_authorize_parameters: Vec<(String, String)>,
    /// Who may issue secondary tokens: indexes into
    /// [`FilterConfig::providers`].
    pub provider_ids: Vec<usize>,
}

/// Which part of a message a condition reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionSource {
    /// The first data part holding the pointer.
    Data,
    /// The message metadata.
    Metadata,
}

/// A condition on the message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageCondition {
    /// Where to look.
    pub source: ConditionSource,
    /// JSON Pointer.
    pub pointer: String,
    /// Accepted values.
    pub values: Vec<Value>,
}

/// Which messages need the secondary credential.
#[derive(Debug)]
pub struct Rule {
    /// Name for logs.
    pub name: String,
    /// Path, method, host.
    pub matcher: RequestMatch,
    /// Optional condition on the message.
    pub when: Option<MessageCondition>,
}

/// How the user is identified: a claim of the bearer token in `header`,
/// verified by this filter or, on the same request, by claim-enforcement.
/// Nothing else names the user (a header or an unverified claim can come
/// from any client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryIdentity {
    /// Header carrying the user's token.
    pub header: String,
    /// Its scheme prefix.
    pub prefix: String,
    /// The claim naming the user (a name or a JSON Pointer).
    pub claim: String,
    /// Who verifies the token.
    pub verification: PrimaryVerification,
}

/// Who verifies the user's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimaryVerification {
    /// This filter, against these providers (indexes into
    /// [`FilterConfig::providers`]).
    Providers(Vec<usize>),
    /// claim-enforcement, earlier on the same request: its
    /// `shareVerifiedToken` record must name this very token.
    ClaimEnforcement,
}

/// What happens when a credential sent in a message is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidCredential {
    /// A new auth-required challenge, with `error` in `authChallenge`.
    Challenge,
    /// 401 with a JSON-RPC error.
    Reject,
}

/// The validated, compiled configuration.
#[derive(Debug)]
pub struct FilterConfig {
    /// The second IdP.
    pub idp: SecondaryIdp,
    /// Every token issuer the filter verifies (secondary tokens, and the
    /// user's tokens when it verifies them itself), with their keys.
    pub providers: Rc<Vec<Provider>>,
    /// What the secondary token must satisfy beyond validity.
    pub requirement: AccessRequirement,
    /// Which messages need the credential.
    pub rules: Vec<Rule>,
    /// The user.
    pub primary: PrimaryIdentity,
    /// Header carrying the user's id to the agent (stripped first).
    pub identity_header: Option<String>,
    /// Header the secondary token is injected into.
    pub inject_header: String,
    /// Its scheme prefix.
    pub inject_prefix: String,
    /// Path of the OAuth redirect the filter serves.
    pub callback_path: String,
    /// How long a challenge (`state`) is valid.
    pub state_ttl_secs: u64,
    /// HTTP status of challenge answers.
    pub challenge_status: u16,
    /// Invalid credential handling.
    pub on_invalid_credential: InvalidCredential,
    /// Largest request or response body read.
    pub max_body_bytes: usize,
    /// Whether agents' own auth-required answers get a ready-to-open URL.
    pub enrich_agent_challenges: bool,
    /// Shared slots for pending authorizations and stored tokens.
    pub cache_entries: u32,
    /// Whether each decision is logged.
    pub audit_log: bool,
    /// Digest of the configuration text (shared-data key prefix).
    pub fingerprint: String,
}

/// Whether `path` is an agent card request: these always pass untouched.
pub fn is_agent_card(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    path == "/.well-known/agent.json" || path.ends_with("agent-card.json")
}
