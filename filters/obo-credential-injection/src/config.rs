//! The plugin configuration as written (camelCase, unknown fields refused),
//! compiled once into [`FilterConfig`] with every cross-field rule checked:
//! a bad configuration is one log line naming the field.

use std::collections::BTreeMap;
use std::rc::Rc;

use baton_filter_kit::config::{
    ConfigError, ProviderSpec, client_secret, compile_providers, fingerprint, from_json, header_name,
    output_header,
};
use baton_filter_kit::matching::{MatchInputs, MatchSpec, compile_match};
use baton_filter_kit::token_calls::TokenEndpoint;
use baton_token::TokenHash;
use baton_token::oauth::{ClientAuth, RESERVED_PARAMETERS, TOKEN_TYPE_ACCESS_TOKEN};
use baton_token::secret::Secret;
use baton_token::validation::DEFAULT_CLOCK_SKEW_SECS;
use serde::Deserialize;

use crate::assertion::{self, AssertionSpec};
use crate::model::{
    Actor, CredentialsGrant, DefaultAction, Delegation, FilterConfig, Idp, Injection, Mode, SubjectToken,
    SubjectValidation, Target,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    idps: Vec<RawIdp>,
    targets: Vec<RawTarget>,
    #[serde(default)]
    subject_token: Option<RawSubjectToken>,
    #[serde(default)]
    delegation: Option<RawDelegation>,
    #[serde(default)]
    default_action: RawDefaultAction,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    identity_assertion: Option<AssertionSpec>,
    #[serde(default = "default_true")]
    audit_log: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIdp {
    name: String,
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
    client_auth_method: RawClientAuthMethod,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
enum RawClientAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSubjectToken {
    #[serde(default = "default_token_header")]
    header: String,
    #[serde(default = "default_token_prefix")]
    prefix: String,
    validation: RawValidationMode,
    #[serde(default)]
    providers: Option<Vec<ProviderSpec>>,
    #[serde(default)]
    issuers: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    clock_skew_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum RawValidationMode {
    Jwks,
    DecodeOnly,
    ClaimEnforcement,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTarget {
    name: String,
    #[serde(default, rename = "match")]
    matcher: MatchSpec,
    mode: RawMode,
    #[serde(default)]
    idp: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    subject_token_type: Option<String>,
    #[serde(default)]
    requested_token_type: Option<String>,
    #[serde(default)]
    actor: Option<RawActor>,
    #[serde(default)]
    extra_parameters: BTreeMap<String, String>,
    #[serde(default)]
    inject: RawInject,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum RawMode {
    TokenExchange,
    EntraOnBehalfOf,
    ClientCredentials,
    IdentityAssertion,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawActor {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    client_credentials: Option<RawActorCredentials>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawActorCredentials {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawInject {
    #[serde(default = "default_token_header")]
    header: String,
    #[serde(default = "default_token_prefix")]
    prefix: String,
}

impl Default for RawInject {
    fn default() -> Self {
        Self { header: default_token_header(), prefix: default_token_prefix() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDelegation {
    #[serde(default)]
    caller_header: Option<String>,
    #[serde(default)]
    allow: Option<Vec<RawAllow>>,
    #[serde(default)]
    require_may_act: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAllow {
    caller: String,
    audiences: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
enum RawDefaultAction {
    #[default]
    Deny,
    PassThrough,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCache {
    #[serde(default = "default_cache_entries")]
    max_entries: u32,
    #[serde(default = "default_margin")]
    expiry_margin_seconds: u64,
    #[serde(default = "default_lifetime")]
    default_lifetime_seconds: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_entries: default_cache_entries(),
            expiry_margin_seconds: default_margin(),
            default_lifetime_seconds: default_lifetime(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_timeout_ms() -> u64 {
    3_000
}
fn default_token_header() -> String {
    String::from("authorization")
}
fn default_token_prefix() -> String {
    String::from("Bearer ")
}
fn default_cache_entries() -> u32 {
    10_000
}
fn default_margin() -> u64 {
    30
}
fn default_lifetime() -> u64 {
    60
}

/// Parses and compiles the plugin configuration.
pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
    compile(from_json(bytes)?, &fingerprint(bytes))
}

fn compile(raw: RawConfig, fingerprint: &str) -> Result<FilterConfig, ConfigError> {
    let needs_idp = raw.targets.iter().any(|t| t.mode != RawMode::IdentityAssertion);
    if raw.idps.is_empty() && needs_idp {
        return Err(ConfigError::new("idps", "at least one identity provider is required"));
    }
    let assertion = raw.identity_assertion.map(assertion::compile).transpose()?.map(Rc::new);
    let mut idps: Vec<Idp> = Vec::with_capacity(raw.idps.len());
    for (index, idp) in raw.idps.into_iter().enumerate() {
        let compiled = compile_idp(idp, &format!("idps[{index}]"))?;
        if idps.iter().any(|existing| existing.name == compiled.name) {
            return Err(ConfigError::new(
                format!("idps[{index}].name"),
                format!("duplicate name {:?}", compiled.name),
            ));
        }
        idps.push(compiled);
    }
    let subject = raw.subject_token.map(|s| compile_subject(s, "subjectToken")).transpose()?;

    if raw.targets.is_empty() {
        return Err(ConfigError::new("targets", "at least one target is required"));
    }
    let mut credentials: Vec<Rc<CredentialsGrant>> = Vec::new();
    let mut targets: Vec<Target> = Vec::with_capacity(raw.targets.len());
    for (index, target) in raw.targets.into_iter().enumerate() {
        let field = format!("targets[{index}]");
        if target.mode == RawMode::IdentityAssertion && assertion.is_none() {
            return Err(ConfigError::new(
                "identityAssertion",
                format!("required: target {:?} is an identity assertion", target.name),
            ));
        }
        let compiled = compile_target(target, &field, &idps, subject.as_ref(), &mut credentials)?;
        if targets.iter().any(|existing| existing.name == compiled.name) {
            return Err(ConfigError::new(
                format!("{field}.name"),
                format!("duplicate name {:?}", compiled.name),
            ));
        }
        targets.push(compiled);
    }

    let delegation = match raw.delegation {
        None => Delegation::default(),
        Some(raw) => compile_delegation(raw)?,
    };
    if raw.cache.max_entries == 0 || raw.cache.max_entries > 1_000_000 {
        return Err(ConfigError::new(
            "cache.maxEntries",
            "must be between 1 and 1000000 (issued tokens are always cached: that is what keeps the IdP out of the request path)",
        ));
    }
    if raw.cache.default_lifetime_seconds == 0 || raw.cache.default_lifetime_seconds > 3600 {
        return Err(ConfigError::new("cache.defaultLifetimeSeconds", "must be between 1 and 3600"));
    }
    if let Some(realm) = &raw.realm
        && realm.chars().any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return Err(ConfigError::new("realm", "must not contain quotes, backslashes or control characters"));
    }
    Ok(FilterConfig {
        idps,
        match_inputs: MatchInputs {
            // The assertion keys are served by path.
            path: assertion.is_some(),
            ..MatchInputs::default()
        }
        .union(MatchInputs::of(targets.iter().map(|target| &target.matcher))),
        targets,
        subject,
        delegation,
        default_action: match raw.default_action {
            RawDefaultAction::Deny => DefaultAction::Deny,
            RawDefaultAction::PassThrough => DefaultAction::PassThrough,
        },
        cache_entries: raw.cache.max_entries,
        expiry_margin_secs: raw.cache.expiry_margin_seconds,
        default_lifetime_secs: raw.cache.default_lifetime_seconds,
        realm: raw.realm,
        audit_log: raw.audit_log,
        fingerprint: fingerprint.to_string(),
        credentials,
        assertion,
    })
}

fn compile_idp(raw: RawIdp, field: &str) -> Result<Idp, ConfigError> {
    for (name, value) in [("name", &raw.name), ("cluster", &raw.cluster), ("clientId", &raw.client_id)] {
        if value.is_empty() {
            return Err(ConfigError::new(format!("{field}.{name}"), "must not be empty"));
        }
    }
    let Some(client_secret) = client_secret(raw.client_secret, raw.client_secret_env, field)? else {
        return Err(ConfigError::new(
            format!("{field}.clientSecret"),
            "clientSecret or clientSecretEnv is required",
        ));
    };
    if !raw.token_path.starts_with('/') {
        return Err(ConfigError::new(format!("{field}.tokenPath"), "must start with /"));
    }
    if raw.timeout_ms == 0 || raw.timeout_ms > 60_000 {
        return Err(ConfigError::new(format!("{field}.timeoutMs"), "must be between 1 and 60000"));
    }
    let secret = Secret::new(client_secret);
    let client_auth = match raw.client_auth_method {
        RawClientAuthMethod::ClientSecretBasic => ClientAuth::Basic { client_id: raw.client_id, secret },
        RawClientAuthMethod::ClientSecretPost => ClientAuth::Post { client_id: raw.client_id, secret },
    };
    Ok(Idp {
        name: raw.name,
        endpoint: TokenEndpoint {
            authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
            cluster: raw.cluster,
            path: raw.token_path,
            timeout_ms: raw.timeout_ms,
            client_auth,
        },
    })
}

fn compile_subject(raw: RawSubjectToken, field: &str) -> Result<SubjectToken, ConfigError> {
    let header = header_name(&raw.header, &format!("{field}.header"))?;
    let validation = match raw.validation {
        RawValidationMode::Jwks => {
            if !raw.issuers.is_empty() || !raw.audiences.is_empty() || raw.clock_skew_seconds.is_some() {
                return Err(ConfigError::new(
                    format!("{field}.validation"),
                    "with jwks validation, issuers, audiences and clock skew are set per provider",
                ));
            }
            let Some(providers) = raw.providers else {
                return Err(ConfigError::new(format!("{field}.providers"), "required with jwks validation"));
            };
            SubjectValidation::Jwks(Rc::new(compile_providers(providers, &format!("{field}.providers"))?))
        }
        mode @ (RawValidationMode::DecodeOnly | RawValidationMode::ClaimEnforcement) => {
            if raw.providers.is_some() {
                return Err(ConfigError::new(
                    format!("{field}.providers"),
                    "providers need validation jwks; decodeOnly and claimEnforcement trust an earlier filter",
                ));
            }
            let clock_skew_secs = raw.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECS);
            if clock_skew_secs > 600 {
                return Err(ConfigError::new(format!("{field}.clockSkewSeconds"), "must be at most 600"));
            }
            SubjectValidation::DecodeOnly {
                issuers: raw.issuers,
                audiences: raw.audiences,
                clock_skew_secs,
                verified_upstream: mode == RawValidationMode::ClaimEnforcement,
            }
        }
    };
    Ok(SubjectToken { header, prefix: raw.prefix, validation })
}

fn compile_target(
    raw: RawTarget,
    field: &str,
    idps: &[Idp],
    subject: Option<&SubjectToken>,
    credentials: &mut Vec<Rc<CredentialsGrant>>,
) -> Result<Target, ConfigError> {
    if raw.name.is_empty() {
        return Err(ConfigError::new(format!("{field}.name"), "must not be empty"));
    }
    let idp = match (raw.mode, &raw.idp) {
        (RawMode::IdentityAssertion, Some(_)) => {
            return Err(ConfigError::new(format!("{field}.idp"), "an identity assertion involves no IdP"));
        }
        // Never read for an identity assertion.
        (RawMode::IdentityAssertion, None) => usize::MAX,
        (_, None) => return Err(ConfigError::new(format!("{field}.idp"), "required")),
        (_, Some(name)) => match idps.iter().position(|idp| &idp.name == name) {
            Some(idp) => idp,
            None => {
                let known: Vec<&str> = idps.iter().map(|idp| idp.name.as_str()).collect();
                return Err(ConfigError::new(
                    format!("{field}.idp"),
                    format!("no idp named {name:?}; known: {}", known.join(", ")),
                ));
            }
        },
    };
    let matcher = compile_match(raw.matcher, &format!("{field}.match"))?;
    let mode = match raw.mode {
        RawMode::TokenExchange => Mode::TokenExchange,
        RawMode::EntraOnBehalfOf => Mode::EntraOnBehalfOf,
        RawMode::ClientCredentials => Mode::ClientCredentials,
        RawMode::IdentityAssertion => Mode::IdentityAssertion,
    };
    let not_for = |name: &str, present: bool| {
        if present {
            Err(ConfigError::new(format!("{field}.{name}"), format!("not used by mode {}", mode.label())))
        } else {
            Ok(())
        }
    };
    for (index, value) in raw.audiences.iter().chain(raw.resources.iter()).enumerate() {
        if value.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.audiences/resources[{index}]"),
                "must not be empty",
            ));
        }
    }
    if raw.scope.as_deref() == Some("") {
        return Err(ConfigError::new(format!("{field}.scope"), "must not be empty"));
    }
    match mode {
        Mode::TokenExchange => {
            if raw.audiences.is_empty() && raw.resources.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.audiences"),
                    "a token exchange needs at least one audience or resource for the upstream",
                ));
            }
        }
        Mode::EntraOnBehalfOf => {
            if raw.scope.is_none() {
                return Err(ConfigError::new(format!("{field}.scope"), "required for entraOnBehalfOf"));
            }
            not_for("audiences", !raw.audiences.is_empty())?;
            not_for("resources", !raw.resources.is_empty())?;
            not_for("subjectTokenType", raw.subject_token_type.is_some())?;
            not_for("requestedTokenType", raw.requested_token_type.is_some())?;
            not_for("actor", raw.actor.is_some())?;
        }
        Mode::ClientCredentials => {
            not_for("subjectTokenType", raw.subject_token_type.is_some())?;
            not_for("requestedTokenType", raw.requested_token_type.is_some())?;
            not_for("actor", raw.actor.is_some())?;
        }
        Mode::IdentityAssertion => {
            if raw.audiences.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.audiences"),
                    "an assertion needs its audience",
                ));
            }
            not_for("resources", !raw.resources.is_empty())?;
            not_for("scope", raw.scope.is_some())?;
            not_for("subjectTokenType", raw.subject_token_type.is_some())?;
            not_for("requestedTokenType", raw.requested_token_type.is_some())?;
            not_for("actor", raw.actor.is_some())?;
            not_for("extraParameters", !raw.extra_parameters.is_empty())?;
        }
    }
    if mode.needs_subject() && subject.is_none() {
        return Err(ConfigError::new(
            "subjectToken",
            format!("required: target {:?} acts for the caller's user", raw.name),
        ));
    }
    for (name, value) in
        [("subjectTokenType", &raw.subject_token_type), ("requestedTokenType", &raw.requested_token_type)]
    {
        if let Some(value) = value
            && !is_uri(value)
        {
            return Err(ConfigError::new(
                format!("{field}.{name}"),
                "must be a token type URI (RFC 8693 §3)",
            ));
        }
    }
    let mut extra_parameters = Vec::with_capacity(raw.extra_parameters.len());
    for (name, value) in raw.extra_parameters {
        if name.is_empty() || RESERVED_PARAMETERS.contains(&name.as_str()) {
            return Err(ConfigError::new(
                format!("{field}.extraParameters.{name}"),
                "is a parameter the grant sets itself and cannot be overridden",
            ));
        }
        extra_parameters.push((name, value));
    }
    let inject_header = header_name(&raw.inject.header, &format!("{field}.inject.header"))?;
    if inject_header.starts_with(':')
        || ["host", "content-length", "transfer-encoding"].contains(&inject_header.as_str())
    {
        return Err(ConfigError::new(format!("{field}.inject.header"), "cannot carry a token"));
    }

    let actor = match raw.actor {
        None => None,
        Some(actor) => Some(compile_actor(actor, &format!("{field}.actor"), idp, credentials)?),
    };
    let subject_token_type = raw.subject_token_type.unwrap_or_else(|| TOKEN_TYPE_ACCESS_TOKEN.to_string());
    let grant_for_target = (mode == Mode::ClientCredentials).then(|| {
        credentials_grant(idp, raw.audiences.clone(), raw.resources.clone(), raw.scope.clone(), credentials)
    });
    let actor_id = match &actor {
        None => String::new(),
        Some(Actor::Static { token, token_type }) => {
            format!("static:{token_type}:{}", TokenHash::of(token.expose().as_bytes()).to_hex())
        }
        Some(Actor::ClientCredentials(grant)) => format!("cc:{}", grant.key.to_hex()),
    };
    let extra: Vec<String> = extra_parameters.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let digest = TokenHash::of_parts(&[
        mode.label().as_bytes(),
        idps.get(idp).map_or("", |idp| idp.name.as_str()).as_bytes(),
        raw.audiences.join(" ").as_bytes(),
        raw.resources.join(" ").as_bytes(),
        raw.scope.as_deref().unwrap_or("").as_bytes(),
        subject_token_type.as_bytes(),
        raw.requested_token_type.as_deref().unwrap_or("").as_bytes(),
        actor_id.as_bytes(),
        extra.join("&").as_bytes(),
    ]);
    Ok(Target {
        name: raw.name,
        matcher,
        mode,
        idp,
        audiences: raw.audiences,
        resources: raw.resources,
        scope: raw.scope,
        subject_token_type,
        requested_token_type: raw.requested_token_type,
        actor,
        extra_parameters,
        inject: Injection { header: inject_header, prefix: raw.inject.prefix },
        digest,
        credentials: grant_for_target,
    })
}

fn compile_actor(
    raw: RawActor,
    field: &str,
    idp: usize,
    credentials: &mut Vec<Rc<CredentialsGrant>>,
) -> Result<Actor, ConfigError> {
    match (raw.token, raw.token_type, raw.client_credentials) {
        (Some(token), Some(token_type), None) => {
            if token.is_empty() {
                return Err(ConfigError::new(format!("{field}.token"), "must not be empty"));
            }
            if !is_uri(&token_type) {
                return Err(ConfigError::new(
                    format!("{field}.tokenType"),
                    "must be a token type URI (RFC 8693 §3)",
                ));
            }
            Ok(Actor::Static { token: Secret::new(token), token_type })
        }
        (Some(_), None, None) => Err(ConfigError::new(
            format!("{field}.tokenType"),
            "required with an actor token (RFC 8693 §2.1)",
        )),
        (None, Some(_), _) => Err(ConfigError::new(
            format!("{field}.tokenType"),
            "only with an actor token (RFC 8693 §2.1: actor_token_type without actor_token is invalid)",
        )),
        (None, None, Some(cc)) => Ok(Actor::ClientCredentials(credentials_grant(
            idp,
            cc.audiences,
            cc.resources,
            cc.scope,
            credentials,
        ))),
        (Some(_), _, Some(_)) => {
            Err(ConfigError::new(field.to_string(), "give token or clientCredentials, not both"))
        }
        (None, None, None) => {
            Err(ConfigError::new(field.to_string(), "give token (with tokenType) or clientCredentials"))
        }
    }
}

/// The grant for these parameters, shared when several targets need the
/// same client-credentials token.
fn credentials_grant(
    idp: usize,
    audiences: Vec<String>,
    resources: Vec<String>,
    scope: Option<String>,
    credentials: &mut Vec<Rc<CredentialsGrant>>,
) -> Rc<CredentialsGrant> {
    let key = TokenHash::of_parts(&[
        b"client_credentials",
        &idp.to_be_bytes(),
        audiences.join(" ").as_bytes(),
        resources.join(" ").as_bytes(),
        scope.as_deref().unwrap_or("").as_bytes(),
    ]);
    if let Some(existing) = credentials.iter().find(|grant| grant.key == key) {
        return Rc::clone(existing);
    }
    let grant = Rc::new(CredentialsGrant { key, idp, audiences, resources, scope });
    credentials.push(Rc::clone(&grant));
    grant
}

fn compile_delegation(raw: RawDelegation) -> Result<Delegation, ConfigError> {
    let caller_header = raw
        .caller_header
        .map(|name| output_header(&name, "delegation.callerHeader", "").map(|_| name.to_ascii_lowercase()))
        .transpose()?;
    let allow = match raw.allow {
        None => None,
        Some(pairs) => {
            let mut compiled = Vec::with_capacity(pairs.len());
            for (index, pair) in pairs.into_iter().enumerate() {
                if pair.caller.is_empty() {
                    return Err(ConfigError::new(
                        format!("delegation.allow[{index}].caller"),
                        "must not be empty",
                    ));
                }
                if pair.audiences.is_empty() {
                    return Err(ConfigError::new(
                        format!("delegation.allow[{index}].audiences"),
                        "list at least one audience (a caller with none would be allowed nothing)",
                    ));
                }
                compiled.push((pair.caller, pair.audiences));
            }
            Some(compiled)
        }
    };
    Ok(Delegation { caller_header, allow, require_may_act: raw.require_may_act })
}

/// A URI as RFC 8693 token types are: a scheme, a colon, something.
fn is_uri(value: &str) -> bool {
    match value.split_once(':') {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                && !rest.is_empty()
                && !value.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
