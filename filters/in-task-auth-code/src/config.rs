//! The plugin configuration as written (camelCase, unknown fields refused),
//! compiled once into [`FilterConfig`].

use std::rc::Rc;

use baton_filter_kit::config::{
    ConfigError, Provider, ProviderSpec, VerifiedCacheSpec, compile_providers, fingerprint, from_json,
    header_name, output_header,
};
use baton_filter_kit::matching::{MatchSpec, compile_match};
use baton_filter_kit::store::{StoreSpec, compile_store};
use baton_token::rules::{AccessRequirement, ClaimConditionSpec, ScopeRequirement, StepUpRequirement};
use serde::Deserialize;
use serde_json::Value;

use crate::card::CardPolicy;
use crate::model::{
    BrowserCookie, ConditionSource, FilterConfig, InvalidCredential, MessageCondition, PrimaryIdentity,
    PrimaryLogin, PrimaryVerification, Rule, UserBinding,
};
use crate::oauth_server::{self, AuthorizationServer, RawServer, origin};
use crate::store::StoreLimits;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    secondary_idp: RawServer,
    user_binding: RawUserBinding,
    #[serde(default)]
    require: RawRequire,
    rules: Vec<RawRule>,
    primary_identity: RawPrimaryIdentity,
    #[serde(default)]
    identity_header: Option<String>,
    #[serde(default)]
    inject: RawInject,
    #[serde(default = "default_state_ttl")]
    token_timeout_seconds: u64,
    #[serde(default = "default_challenge_status")]
    challenge_status: u16,
    #[serde(default)]
    on_invalid_credential: RawInvalidCredential,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default = "baton_filter_kit::config::default_true")]
    enrich_agent_challenges: bool,
    #[serde(default)]
    agent_card: RawAgentCard,
    #[serde(default = "default_task_lifetime")]
    task_lifetime_seconds: u64,
    #[serde(default)]
    cache: VerifiedCacheSpec,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default = "baton_filter_kit::config::default_true")]
    audit_log: bool,
    #[serde(default)]
    store: Option<StoreSpec>,
}

/// How the agent card names the gateway.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAgentCard {
    /// The gateway's origin as clients reach it; the origin of
    /// `secondaryIdp.redirectUri` (the gateway's own) when absent.
    #[serde(default)]
    public_url: Option<String>,
    #[serde(default = "baton_filter_kit::config::default_true")]
    declare_security: bool,
}

impl Default for RawAgentCard {
    fn default() -> Self {
        Self { public_url: None, declare_security: true }
    }
}

fn default_task_lifetime() -> u64 {
    86_400
}

/// What the store holds: in all, and per user.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_pending")]
    pending_authorizations: u32,
    #[serde(default = "default_pending")]
    stored_tokens: u32,
    #[serde(default = "default_pending_per_user")]
    pending_per_user: u32,
    #[serde(default = "default_tokens_per_user")]
    tokens_per_user: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            pending_authorizations: default_pending(),
            stored_tokens: default_pending(),
            pending_per_user: default_pending_per_user(),
            tokens_per_user: default_tokens_per_user(),
        }
    }
}

fn default_pending() -> u32 {
    10_000
}
fn default_pending_per_user() -> u32 {
    16
}
fn default_tokens_per_user() -> u32 {
    64
}

/// How the gateway knows that the person who authorizes at the secondary
/// IdP is the user who asked (RFC 9700 §4.7: a link sent to someone else
/// must not bind their authorization to the sender's task).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawUserBinding {
    #[serde(default)]
    primary_login: Option<RawServer>,
    #[serde(default = "default_start_path")]
    start_path: String,
    #[serde(default)]
    secondary_claim: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRequire {
    #[serde(default)]
    scopes: ScopeRequirement,
    #[serde(default)]
    claims: Vec<ClaimConditionSpec>,
    #[serde(default)]
    step_up: Option<StepUpRequirement>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default, rename = "match")]
    matcher: MatchSpec,
    #[serde(default)]
    when: Option<RawWhen>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawWhen {
    source: RawSource,
    pointer: String,
    #[serde(default, deserialize_with = "present")]
    equals: Option<Value>,
    #[serde(default)]
    one_of: Option<Vec<Value>>,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
enum RawSource {
    Data,
    Metadata,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPrimaryIdentity {
    #[serde(default = "default_inject_header")]
    header: String,
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default = "default_claim")]
    claim: String,
    #[serde(default)]
    providers: Option<Vec<ProviderSpec>>,
    #[serde(default)]
    verified_by: Option<RawVerifiedBy>,
}

/// Who verified the user's token before this filter, on the same request.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum RawVerifiedBy {
    ClaimEnforcement,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawInject {
    #[serde(default = "default_inject_header")]
    header: String,
    #[serde(default = "default_prefix")]
    prefix: String,
}

impl Default for RawInject {
    fn default() -> Self {
        Self { header: default_inject_header(), prefix: default_prefix() }
    }
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
enum RawInvalidCredential {
    #[default]
    Challenge,
    Reject,
}

fn default_state_ttl() -> u64 {
    300
}
fn default_challenge_status() -> u16 {
    200
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_start_path() -> String {
    String::from("/a2a/oauth/start")
}
fn default_prefix() -> String {
    String::from("Bearer ")
}
fn default_claim() -> String {
    String::from("sub")
}
fn default_inject_header() -> String {
    String::from("authorization")
}

/// Parses and compiles the plugin configuration.
pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
    compile(from_json(bytes)?, &fingerprint(bytes))
}

fn compile(raw: RawConfig, fingerprint: &str) -> Result<FilterConfig, ConfigError> {
    let mut providers = Vec::new();
    let idp = oauth_server::compile(raw.secondary_idp, "secondaryIdp", &mut providers)?;
    let requirement = AccessRequirement::compile(raw.require.scopes, raw.require.claims, raw.require.step_up)
        .map_err(|error| ConfigError::new("require", error.to_string()))?;
    if raw.rules.is_empty() {
        return Err(ConfigError::new(
            "rules",
            "at least one rule is required (which messages need the credential)",
        ));
    }
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (index, rule) in raw.rules.into_iter().enumerate() {
        rules.push(compile_rule(rule, &format!("rules[{index}]"))?);
    }
    let inject_header = header_name(&raw.inject.header, "inject.header")?;
    let primary = compile_primary(raw.primary_identity, &mut providers)?;
    let binding = compile_binding(raw.user_binding, &idp, &mut providers)?;
    let identity_header =
        raw.identity_header.map(|name| output_header(&name, "identityHeader", &inject_header)).transpose()?;
    if identity_header.as_deref() == Some(primary.header.as_str()) {
        return Err(ConfigError::new(
            "identityHeader",
            "must differ from primaryIdentity.header (incoming copies of it are removed)",
        ));
    }
    if !(30..=3600).contains(&raw.token_timeout_seconds) {
        return Err(ConfigError::new("tokenTimeoutSeconds", "must be between 30 and 3600"));
    }
    if !(200..=599).contains(&raw.challenge_status) {
        return Err(ConfigError::new(
            "challengeStatus",
            "must be an HTTP status (200 is the JSON-RPC convention)",
        ));
    }
    if !(1024..=16 * 1024 * 1024).contains(&raw.max_body_bytes) {
        return Err(ConfigError::new("maxBodyBytes", "must be between 1024 and 16777216"));
    }
    if raw.cache.max_entries == 0 || raw.cache.max_entries > 1_000_000 {
        return Err(ConfigError::new("cache.maxEntries", "must be between 1 and 1000000"));
    }
    let limits = raw.limits;
    for (name, value, max) in [
        ("pendingAuthorizations", limits.pending_authorizations, 100_000),
        ("storedTokens", limits.stored_tokens, 100_000),
        ("pendingPerUser", limits.pending_per_user, 1_000),
        ("tokensPerUser", limits.tokens_per_user, 10_000),
    ] {
        if value == 0 || value > max {
            return Err(ConfigError::new(format!("limits.{name}"), format!("must be between 1 and {max}")));
        }
    }
    let store_limits = StoreLimits {
        pending: limits.pending_authorizations,
        tokens: limits.stored_tokens,
        pending_per_user: limits.pending_per_user as usize,
        tokens_per_user: limits.tokens_per_user as usize,
    };
    let cookie = BrowserCookie::for_redirect(&idp.redirect_uri);
    let agent_card = compile_agent_card(raw.agent_card, &idp.redirect_uri)?;
    if !(60..=30 * 86_400).contains(&raw.task_lifetime_seconds) {
        return Err(ConfigError::new("taskLifetimeSeconds", "must be between 60 and 2592000"));
    }
    let shared_store = raw.store.map(|spec| compile_store(spec, "store")).transpose()?;
    Ok(FilterConfig {
        providers: Rc::new(providers),
        idp,
        requirement,
        rules,
        primary,
        identity_header,
        inject_header,
        inject_prefix: raw.inject.prefix,
        cookie,
        binding,
        state_ttl_secs: raw.token_timeout_seconds,
        challenge_status: raw.challenge_status,
        on_invalid_credential: match raw.on_invalid_credential {
            RawInvalidCredential::Challenge => InvalidCredential::Challenge,
            RawInvalidCredential::Reject => InvalidCredential::Reject,
        },
        max_body_bytes: raw.max_body_bytes,
        enrich_agent_challenges: raw.enrich_agent_challenges,
        agent_card,
        task_lifetime_secs: raw.task_lifetime_seconds,
        cache_entries: raw.cache.max_entries,
        store_limits,
        shared_store,
        audit_log: raw.audit_log,
        fingerprint: fingerprint.to_string(),
    })
}

/// The gateway's public origin for the agent card: an absolute http(s)
/// origin (https unless on this machine), nothing after it.
fn compile_agent_card(raw: RawAgentCard, redirect_uri: &str) -> Result<CardPolicy, ConfigError> {
    let field = "agentCard.publicUrl";
    let public_origin = match raw.public_url {
        None => oauth_server::origin(redirect_uri).to_string(),
        Some(url) => {
            let url = url.trim_end_matches('/').to_string();
            let allowed = url.starts_with("https://")
                || (url.starts_with("http://") && oauth_server::is_loopback(&url));
            if !allowed {
                return Err(ConfigError::new(field, "must be an https:// origin (http:// only on loopback)"));
            }
            if oauth_server::origin(&url) != url || url.ends_with("://") {
                return Err(ConfigError::new(
                    field,
                    "must be an origin (scheme, host, port) only: the agent's paths are kept",
                ));
            }
            url
        }
    };
    Ok(CardPolicy { public_origin, declare_security: raw.declare_security })
}

/// How the person at the secondary IdP is tied to the user who asked: at
/// least one way, or the configuration is refused.
fn compile_binding(
    raw: RawUserBinding,
    idp: &AuthorizationServer,
    providers: &mut Vec<Provider>,
) -> Result<UserBinding, ConfigError> {
    let field = "userBinding";
    if raw.primary_login.is_none() && raw.secondary_claim.is_none() {
        return Err(ConfigError::new(
            field,
            "name how the person who authorizes at the secondary IdP is known to be the user who asked: \
             primaryLogin (the browser signs in at the users' IdP first) and/or secondaryClaim (the \
             secondary token's claim that names the user); without either, a link sent to someone else \
             binds their authorization to the sender's task",
        ));
    }
    if raw.secondary_claim.as_deref() == Some("") {
        return Err(ConfigError::new(format!("{field}.secondaryClaim"), "must not be empty"));
    }
    let primary_login = match raw.primary_login {
        None => None,
        Some(raw_login) => {
            let login_field = format!("{field}.primaryLogin");
            let server = oauth_server::compile(raw_login, &login_field, providers)?;
            if !server.scopes.iter().any(|scope| scope == "openid") {
                return Err(ConfigError::new(
                    format!("{login_field}.scopes"),
                    "must include openid: the sign-in is proven by an ID token",
                ));
            }
            let client_id = server.token_endpoint.client_auth.client_id();
            if let Some(index) = server
                .provider_ids
                .iter()
                .position(|id| !providers[*id].policy.audiences.iter().any(|aud| aud == client_id))
            {
                return Err(ConfigError::new(
                    format!("{login_field}.providers[{index}].audiences"),
                    format!("must include the client id {client_id:?}: an ID token is issued to the client"),
                ));
            }
            if origin(&server.redirect_uri) != origin(&idp.redirect_uri) {
                return Err(ConfigError::new(
                    format!("{login_field}.redirectUri"),
                    "must be on the same origin as secondaryIdp.redirectUri: one browser cookie ties the two",
                ));
            }
            if !raw.start_path.starts_with('/') || raw.start_path.contains(['?', '#']) {
                return Err(ConfigError::new(format!("{field}.startPath"), "must be a path starting with /"));
            }
            let paths = [&raw.start_path, &server.redirect_path, &idp.redirect_path];
            if paths[0] == paths[1] || paths[0] == paths[2] || paths[1] == paths[2] {
                return Err(ConfigError::new(
                    format!("{login_field}.redirectUri"),
                    "the start path and the two redirect URIs' paths must all differ",
                ));
            }
            Some(PrimaryLogin { server, start_path: raw.start_path })
        }
    };
    Ok(UserBinding { primary_login, secondary_claim: raw.secondary_claim })
}

/// The user's identity: a claim of a token this filter verifies itself, or
/// of a token claim-enforcement verified on the same request. A plain
/// header or an unverified claim is refused: a client can send either.
fn compile_primary(
    raw: RawPrimaryIdentity,
    providers: &mut Vec<Provider>,
) -> Result<PrimaryIdentity, ConfigError> {
    let field = "primaryIdentity";
    let header = header_name(&raw.header, &format!("{field}.header"))?;
    if raw.claim.is_empty() {
        return Err(ConfigError::new(format!("{field}.claim"), "must not be empty"));
    }
    let verification = match (raw.providers, raw.verified_by) {
        (Some(specs), None) => {
            let own = compile_providers(specs, &format!("{field}.providers"))?;
            let first = providers.len();
            providers.extend(own);
            PrimaryVerification::Providers((first..providers.len()).collect())
        }
        (None, Some(RawVerifiedBy::ClaimEnforcement)) => PrimaryVerification::ClaimEnforcement,
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(field, "give providers or verifiedBy, not both"));
        }
        (None, None) => {
            return Err(ConfigError::new(
                field,
                "name who verifies the user's token: providers (this filter verifies it) or verifiedBy: \
                 claimEnforcement (claim-enforcement verified it on this request, with shareVerifiedToken); \
                 a header or an unverified token claim is not accepted, since any client can send one",
            ));
        }
    };
    Ok(PrimaryIdentity { header, prefix: raw.prefix, claim: raw.claim, verification })
}

fn compile_rule(raw: RawRule, field: &str) -> Result<Rule, ConfigError> {
    if raw.name.is_empty() {
        return Err(ConfigError::new(format!("{field}.name"), "must not be empty"));
    }
    let matcher = compile_match(raw.matcher, &format!("{field}.match"))?;
    let when = match raw.when {
        None => None,
        Some(when) => {
            if !when.pointer.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{field}.when.pointer"),
                    "must be a JSON Pointer (starting with /)",
                ));
            }
            let values = match (when.equals, when.one_of) {
                (Some(value), None) => vec![value],
                (None, Some(values)) if !values.is_empty() => values,
                _ => {
                    return Err(ConfigError::new(
                        format!("{field}.when"),
                        "needs exactly one of equals or a non-empty oneOf",
                    ));
                }
            };
            let source = match when.source {
                RawSource::Data => ConditionSource::Data,
                RawSource::Metadata => ConditionSource::Metadata,
            };
            Some(MessageCondition { source, pointer: when.pointer, values })
        }
    };
    Ok(Rule { name: raw.name, matcher, when })
}

#[cfg(test)]
#[path = "config_tests.rs"]
pub(crate) mod tests;
