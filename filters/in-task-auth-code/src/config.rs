//! The plugin configuration as written (camelCase, unknown fields refused),
//! compiled once into [`FilterConfig`].

use std::collections::BTreeMap;
use std::rc::Rc;

use baton_filter_kit::config::{
    ConfigError, Provider, ProviderSpec, client_secret, compile_providers, fingerprint, from_json,
    header_name, output_header,
};
use baton_filter_kit::matching::{MatchSpec, compile_match};
use baton_filter_kit::token_calls::TokenEndpoint;
use baton_token::oauth::ClientAuth;
use baton_token::rules::{AccessRequirement, ClaimConditionSpec, ScopeRequirement, StepUpRequirement};
use baton_token::secret::Secret;
use serde::Deserialize;
use serde_json::Value;

use crate::model::{
    ConditionSource, FilterConfig, InvalidCredential, MessageCondition, PrimaryIdentity, PrimaryVerification,
    Rule, SecondaryIdp,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    secondary_idp: RawIdp,
    #[serde(default)]
    require: RawRequire,
    rules: Vec<RawRule>,
    primary_identity: RawPrimaryIdentity,
    #[serde(default)]
    identity_header: Option<String>,
    #[serde(default)]
    inject: RawInject,
    #[serde(default = "default_callback")]
    callback_path: String,
    #[serde(default = "default_state_ttl")]
    token_timeout_seconds: u64,
    #[serde(default = "default_challenge_status")]
    challenge_status: u16,
    #[serde(default)]
    on_invalid_credential: RawInvalidCredential,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default = "default_true")]
    enrich_agent_challenges: bool,
    #[serde(default)]
    cache: RawCache,
    #[serde(default = "default_true")]
    audit_log: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIdp {
    name: String,
    authorization_endpoint: String,
    token_endpoint: String,
    cluster: String,
    token_path: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    client_secret_env: Option<String>,
    #[serde(default)]
    client_auth_method: Option<RawClientAuthMethod>,
    redirect_uri: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    extra_authorize_parameters: BTreeMap<String, String>,
    providers: Vec<ProviderSpec>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum RawClientAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCache {
    #[serde(default = "default_cache_entries")]
    max_entries: u32,
}

impl Default for RawCache {
    fn default() -> Self {
        Self { max_entries: default_cache_entries() }
    }
}

fn default_true() -> bool {
    true
}
fn default_callback() -> String {
    String::from("/a2a/oauth/callback")
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
fn default_timeout_ms() -> u64 {
    3_000
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
fn default_cache_entries() -> u32 {
    10_000
}

/// Parses and compiles the plugin configuration.
pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
    compile(from_json(bytes)?, &fingerprint(bytes))
}

fn compile(raw: RawConfig, fingerprint: &str) -> Result<FilterConfig, ConfigError> {
    let (idp, idp_providers) = compile_idp(raw.secondary_idp)?;
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
    let mut providers = idp_providers;
    let primary = compile_primary(raw.primary_identity, &mut providers)?;
    let identity_header =
        raw.identity_header.map(|name| output_header(&name, "identityHeader", &inject_header)).transpose()?;
    if identity_header.as_deref() == Some(primary.header.as_str()) {
        return Err(ConfigError::new(
            "identityHeader",
            "must differ from primaryIdentity.header (incoming copies of it are removed)",
        ));
    }
    if !raw.callback_path.starts_with('/') {
        return Err(ConfigError::new("callbackPath", "must start with /"));
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
    Ok(FilterConfig {
        idp,
        providers: Rc::new(providers),
        requirement,
        rules,
        primary,
        identity_header,
        inject_header,
        inject_prefix: raw.inject.prefix,
        callback_path: raw.callback_path,
        state_ttl_secs: raw.token_timeout_seconds,
        challenge_status: raw.challenge_status,
        on_invalid_credential: match raw.on_invalid_credential {
            RawInvalidCredential::Challenge => InvalidCredential::Challenge,
            RawInvalidCredential::Reject => InvalidCredential::Reject,
        },
        max_body_bytes: raw.max_body_bytes,
        enrich_agent_challenges: raw.enrich_agent_challenges,
        cache_entries: raw.cache.max_entries,
        audit_log: raw.audit_log,
        fingerprint: fingerprint.to_string(),
    })
}

/// Authorization request parameters the gateway sets itself.
const AUTHORIZE_PARAMETERS: [&str; 7] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// A query component as the IdP reads it: `+` is a space, `%XX` a byte
/// (a malformed escape is kept as it is).
fn query_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The secondary IdP, and its token providers (the first entries of the
/// filter's provider list).
fn compile_idp(raw: RawIdp) -> Result<(SecondaryIdp, Vec<Provider>), ConfigError> {
    let field = "secondaryIdp";
    for (name, value) in [("name", &raw.name), ("cluster", &raw.cluster), ("clientId", &raw.client_id)] {
        if value.is_empty() {
            return Err(ConfigError::new(format!("{field}.{name}"), "must not be empty"));
        }
    }
    for (name, value) in [
        ("authorizationEndpoint", &raw.authorization_endpoint),
        ("tokenEndpoint", &raw.token_endpoint),
        ("redirectUri", &raw.redirect_uri),
    ] {
        if !(value.starts_with("https://") || value.starts_with("http://"))
            || value.contains(char::is_whitespace)
        {
            return Err(ConfigError::new(format!("{field}.{name}"), "must be an absolute http(s) URL"));
        }
    }
    if !raw.token_path.starts_with('/') {
        return Err(ConfigError::new(format!("{field}.tokenPath"), "must start with /"));
    }
    if raw.timeout_ms == 0 || raw.timeout_ms > 60_000 {
        return Err(ConfigError::new(format!("{field}.timeoutMs"), "must be between 1 and 60000"));
    }
    if let Some(index) = raw.scopes.iter().position(|s| s.is_empty() || s.contains(' ')) {
        return Err(ConfigError::new(format!("{field}.scopes[{index}]"), "must be one non-empty scope"));
    }
    // What the gateway sets cannot come from the endpoint's own query either
    // (RFC 6749 §3.1: no parameter twice), and a fragment would swallow the
    // gateway's query.
    let endpoint = raw.authorization_endpoint.as_str();
    if endpoint.contains('#') {
        return Err(ConfigError::new(
            format!("{field}.authorizationEndpoint"),
            "must not have a fragment (RFC 6749 §3.1): the parameters would not reach the IdP",
        ));
    }
    if let Some((_, query)) = endpoint.split_once('?') {
        for pair in query.split('&') {
            let name = query_component(pair.split('=').next().unwrap_or(pair));
            if AUTHORIZE_PARAMETERS.contains(&name.as_str()) {
                return Err(ConfigError::new(
                    format!("{field}.authorizationEndpoint"),
                    format!("its query sets {name:?}, which the gateway sets"),
                ));
            }
        }
    }
    for name in raw.extra_authorize_parameters.keys() {
        if AUTHORIZE_PARAMETERS.contains(&name.as_str()) {
            return Err(ConfigError::new(
                format!("{field}.extraAuthorizeParameters.{name}"),
                "is set by the gateway and cannot be overridden",
            ));
        }
    }
    let secret = client_secret(raw.client_secret, raw.client_secret_env, field)?;
    let client_auth = match (raw.client_auth_method, secret) {
        (None | Some(RawClientAuthMethod::ClientSecretBasic), Some(secret)) => {
            ClientAuth::Basic { client_id: raw.client_id, secret: Secret::new(secret) }
        }
        (Some(RawClientAuthMethod::ClientSecretPost), Some(secret)) => {
            ClientAuth::Post { client_id: raw.client_id, secret: Secret::new(secret) }
        }
        (None | Some(RawClientAuthMethod::None), None) => ClientAuth::Public { client_id: raw.client_id },
        (Some(RawClientAuthMethod::None), Some(_)) => {
            return Err(ConfigError::new(format!("{field}.clientAuthMethod"), "none takes no client secret"));
        }
        (Some(_), None) => {
            return Err(ConfigError::new(
                format!("{field}.clientSecret"),
                "required by the client authentication method",
            ));
        }
    };
    let providers = compile_providers(raw.providers, &format!("{field}.providers"))?;
    let provider_ids = (0..providers.len()).collect();
    let idp = SecondaryIdp {
        name: raw.name,
        authorization_endpoint: raw.authorization_endpoint,
        token_endpoint_url: raw.token_endpoint,
        token_endpoint: TokenEndpoint {
            authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
            cluster: raw.cluster,
            path: raw.token_path,
            timeout_ms: raw.timeout_ms,
            client_auth,
        },
        redirect_uri: raw.redirect_uri,
        scopes: raw.scopes,
        audience: raw.audience,
        extra_authorize_parameters: raw.extra_authorize_parameters.into_iter().collect(),
        provider_ids,
    };
    Ok((idp, providers))
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
