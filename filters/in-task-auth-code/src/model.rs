//! The compiled configuration: the secondary IdP (where the user authorizes,
//! where codes are exchanged, how its tokens are validated), which A2A
//! messages need its credential, and how the result reaches the agent.

use std::rc::Rc;

use baton_filter_kit::config::Provider;
use baton_filter_kit::matching::RequestMatch;
use baton_token::rules::AccessRequirement;
use serde_json::Value;

pub use crate::oauth_server::AuthorizationServer;

/// How the gateway knows that the person who authorizes at the secondary IdP
/// is the user who asked for it.
#[derive(Debug)]
pub struct UserBinding {
    /// The browser signs in at the users' IdP, as the user who asked,
    /// before it is sent to the secondary IdP; the secondary IdP's redirect
    /// is accepted only in that browser.
    pub primary_login: Option<PrimaryLogin>,
    /// The secondary token's claim that must equal the user.
    pub secondary_claim: Option<String>,
}

/// The sign-in at the users' IdP that proves who holds the browser.
#[derive(Debug)]
pub struct PrimaryLogin {
    /// The users' IdP, with the gateway as its (OpenID Connect) client.
    pub server: AuthorizationServer,
    /// Where an authorization link starts: the filter serves it.
    pub start_path: String,
}

/// The cookie that ties one browser's steps together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserCookie {
    /// `__Host-baton-itac` over https (bound to this origin, `Secure`).
    pub name: String,
    /// Whether it is `Secure` (https redirect URIs).
    pub secure: bool,
}

impl BrowserCookie {
    /// The cookie for a gateway whose redirect URI is `redirect_uri`.
    pub fn for_redirect(redirect_uri: &str) -> Self {
        let secure = redirect_uri.starts_with("https://");
        let name = if secure { "__Host-baton-itac" } else { "baton-itac" };
        Self { name: name.to_string(), secure }
    }
}

/// Which part of a message a condition reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionSource {
    /// Every data part holding the pointer.
    Data,
    /// The message's and the request's metadata.
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
    /// The second IdP (the user's bank): where the user authorizes, where
    /// codes are exchanged.
    pub idp: AuthorizationServer,
    /// How the person who authorizes is known to be the user who asked.
    pub binding: UserBinding,
    /// The browser cookie of the authorization flow.
    pub cookie: BrowserCookie,
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
    /// How the agent card served through the gateway names it.
    pub agent_card: crate::card::CardPolicy,
    /// How long a task the gateway challenged keeps needing the credential
    /// after its last challenge or credential, unless the agent ends it.
    pub task_lifetime_secs: u64,
    /// Shared slots of the verified-token cache.
    pub cache_entries: u32,
    /// What the store of pending authorizations and tokens holds.
    pub store_limits: crate::store::StoreLimits,
    /// The store every replica shares (`store`): with it, a pending
    /// authorization is sealed into its `state` and used once fleet-wide
    /// ([`crate::sealed_state`]). Stored tokens stay in each Envoy.
    pub shared_store: Option<baton_filter_kit::store::StoreConfig>,
    /// Whether each decision is logged.
    pub audit_log: bool,
    /// Digest of the configuration text (shared-data key prefix).
    pub fingerprint: String,
}

/// Where an agent publishes its card (A2A v1.0 and v0.3).
pub const AGENT_CARD_PATHS: [&str; 2] = ["/.well-known/agent-card.json", "/.well-known/agent.json"];

/// Whether the request reads the agent card at the root: a `GET` (or
/// `HEAD`) of one of the well-known paths exactly. These are public (no
/// rule decides on them); anything else, even a path ending the same way,
/// is decided like any request.
pub fn is_agent_card(method: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    (method == "GET" || method == "HEAD") && AGENT_CARD_PATHS.contains(&path)
}

/// Whether the request may read an agent card: a `GET` (or `HEAD`) of a
/// path ending in a well-known card path, under any prefix (an agent
/// published at `/agents/transfer/`). Its answer is served as a card (naming
/// the gateway), whatever rules decide about the request itself.
pub fn may_read_agent_card(method: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    (method == "GET" || method == "HEAD") && AGENT_CARD_PATHS.iter().any(|card| path.ends_with(card))
}
