//! The plugin configuration as written (camelCase, unknown fields refused),
//! compiled once into [`FilterConfig`] with every cross-field rule checked:
//! a bad configuration is one log line naming the field.

use std::collections::BTreeMap;
use std::rc::Rc;

use baton_filter_kit::config::{
    ConfigError, ProviderSpec, client_secret, compile_providers, default_cache_entries, find_named,
    fingerprint, from_json, header_name,
};
use baton_filter_kit::matching::{MatchInputs, MatchSpec, compile_match};
use baton_filter_kit::store::{StoreSpec, compile_store};
use baton_filter_kit::token_calls::TokenEndpoint;
use baton_token::TokenHash;
use baton_token::oauth::{ClientAuth, RESERVED_PARAMETERS, TOKEN_TYPE_ACCESS_TOKEN};
use baton_token::secret::Secret;
use baton_token::validation::DEFAULT_CLOCK_SKEW_SECS;
use serde::Deserialize;

use crate::assertion::{self, AssertionSpec};
use crate::model::{
    Actor, AllowEntry, CallerSource, CredentialsGrant, DefaultAction, Delegation, Exchange, FilterConfig,
    Idp, Injection, Mode, OnBehalfOf, SubjectToken, SubjectValidation, Target, TargetGrant,
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
    #[serde(default = "baton_filter_kit::config::default_true")]
    audit_log: bool,
    #[serde(default)]
    store: Option<StoreSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIdp {
    name: String,
    #[serde(default)]
    issuer: Option<String>,
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
    ClaimEnforcement,
    /// Refused with an explanation (it trusted a token nobody verified).
    DecodeOnly,
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
    #[serde(default)]
    dangerously_allow_unauthenticated_callers: bool,
    #[serde(default)]
    expected_audiences: Vec<String>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDelegation {
    #[serde(default)]
    caller: RawCallerSource,
    /// Refused with an explanation: a header names nobody a client cannot.
    #[serde(default)]
    caller_header: Option<String>,
    #[serde(default)]
    allow: Option<Vec<RawAllow>>,
    #[serde(default)]
    require_may_act: bool,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum RawCallerSource {
    #[default]
    TokenClient,
    PeerCertificate,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAllow {
    caller: String,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
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

fn default_timeout_ms() -> u64 {
    3_000
}
fn default_token_header() -> String {
    String::from("authorization")
}
fn default_token_prefix() -> String {
    String::from("Bearer ")
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

    let delegation = compile_delegation(raw.delegation.unwrap_or_default(), &targets)?;
    check_callers(&targets, subject.as_ref(), &delegation)?;
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
    let store = raw.store.map(|spec| compile_store(spec, "store")).transpose()?;
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
        store,
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
    if raw.issuer.as_deref() == Some("") {
        return Err(ConfigError::new(format!("{field}.issuer"), "must not be empty"));
    }
    Ok(Idp {
        name: raw.name,
        issuer: raw.issuer,
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
        RawValidationMode::DecodeOnly => {
            return Err(ConfigError::new(
                format!("{field}.validation"),
                "decodeOnly trusted a token nobody verified (its claims decide the delegation policy and \
                 identity assertions); use jwks (this filter verifies it) or claimEnforcement \
                 (claim-enforcement verified it on the same request, with shareVerifiedToken)",
            ));
        }
        RawValidationMode::ClaimEnforcement => {
            if raw.providers.is_some() {
                return Err(ConfigError::new(
                    format!("{field}.providers"),
                    "providers need validation jwks; claimEnforcement relies on claim-enforcement's verification",
                ));
            }
            let clock_skew_secs = raw.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECS);
            if clock_skew_secs > 600 {
                return Err(ConfigError::new(format!("{field}.clockSkewSeconds"), "must be at most 600"));
            }
            SubjectValidation::ClaimEnforcement {
                issuers: raw.issuers,
                audiences: raw.audiences,
                clock_skew_secs,
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
    let mode = match raw.mode {
        RawMode::TokenExchange => Mode::TokenExchange,
        RawMode::EntraOnBehalfOf => Mode::EntraOnBehalfOf,
        RawMode::ClientCredentials => Mode::ClientCredentials,
        RawMode::IdentityAssertion => Mode::IdentityAssertion,
    };
    if let Some(name) = raw.given_fields().into_iter().find(|name| !mode.uses(name)) {
        return Err(ConfigError::new(
            format!("{field}.{name}"),
            format!("not used by mode {}", mode.label()),
        ));
    }
    if mode.needs_subject() && subject.is_none() {
        return Err(ConfigError::new(
            "subjectToken",
            format!("required: target {:?} acts for the caller's user", raw.name),
        ));
    }
    check_target_values(&raw, field)?;
    // What each mode cannot do without.
    match mode {
        Mode::TokenExchange if raw.audiences.is_empty() && raw.resources.is_empty() => {
            return Err(ConfigError::new(
                format!("{field}.audiences"),
                "a token exchange needs at least one audience or resource for the upstream",
            ));
        }
        Mode::EntraOnBehalfOf if raw.scope.is_none() => {
            return Err(ConfigError::new(format!("{field}.scope"), "required for entraOnBehalfOf"));
        }
        Mode::IdentityAssertion if raw.audiences.is_empty() => {
            return Err(ConfigError::new(format!("{field}.audiences"), "an assertion needs its audience"));
        }
        _ => {}
    }
    let matcher = compile_match(raw.matcher, &format!("{field}.match"))?;
    let asked =
        Asked { expected: &raw.expected_audiences, audiences: &raw.audiences, resources: &raw.resources };
    let expected_audiences = expected_audiences(asked, raw.scope.as_deref(), mode, field)?;
    let inject_header = header_name(&raw.inject.header, &format!("{field}.inject.header"))?;
    if inject_header.starts_with(':')
        || ["host", "content-length", "transfer-encoding"].contains(&inject_header.as_str())
    {
        return Err(ConfigError::new(format!("{field}.inject.header"), "cannot carry a token"));
    }
    let extra_parameters: Vec<(String, String)> = raw.extra_parameters.into_iter().collect();
    let idp = match mode {
        Mode::IdentityAssertion => None,
        _ => Some(idp_index(raw.idp.as_deref(), idps, field)?),
    };
    let idp_name = idp.and_then(|idp| idps.get(idp)).map_or("", |idp| idp.name.as_str());
    let mut digest: Vec<String> = vec![mode.label().into(), idp_name.into()];
    let grant = match (mode, idp) {
        (Mode::TokenExchange, Some(idp)) => {
            let actor = match raw.actor {
                None => None,
                Some(actor) => {
                    Some(compile_actor(actor, &format!("{field}.actor"), &raw.name, idp, credentials)?)
                }
            };
            let exchange = Exchange {
                idp,
                audiences: raw.audiences,
                resources: raw.resources,
                scope: raw.scope,
                subject_token_type: raw
                    .subject_token_type
                    .unwrap_or_else(|| TOKEN_TYPE_ACCESS_TOKEN.to_string()),
                requested_token_type: raw.requested_token_type,
                actor,
                extra_parameters,
            };
            digest.extend(exchange_digest(&exchange));
            TargetGrant::TokenExchange(exchange)
        }
        (Mode::EntraOnBehalfOf, Some(idp)) => {
            let scope = raw.scope.unwrap_or_default();
            digest.extend([scope.clone(), parameters(&extra_parameters)]);
            TargetGrant::EntraOnBehalfOf(OnBehalfOf { idp, scope, extra_parameters })
        }
        (Mode::ClientCredentials, Some(idp)) => {
            let spec = GrantSpec {
                idp,
                audiences: raw.audiences,
                resources: raw.resources,
                scope: raw.scope,
                expected_audiences: expected_audiences.clone(),
                label: format!("client_credentials for target {}", raw.name),
            };
            let grant = credentials_grant(spec, credentials);
            digest.push(grant.key.to_hex());
            TargetGrant::ClientCredentials {
                grant,
                unauthenticated_callers: raw.dangerously_allow_unauthenticated_callers,
            }
        }
        _ => {
            digest.push(raw.audiences.join(" "));
            TargetGrant::IdentityAssertion { audiences: raw.audiences }
        }
    };
    let digest: Vec<&[u8]> = digest.iter().map(String::as_bytes).collect();
    Ok(Target {
        name: raw.name,
        matcher,
        grant,
        inject: Injection { header: inject_header, prefix: raw.inject.prefix },
        expected_audiences,
        digest: TokenHash::of_parts(&digest),
    })
}

impl RawTarget {
    /// The optional fields this target gives.
    fn given_fields(&self) -> Vec<&'static str> {
        [
            ("idp", self.idp.is_some()),
            ("audiences", !self.audiences.is_empty()),
            ("resources", !self.resources.is_empty()),
            ("scope", self.scope.is_some()),
            ("subjectTokenType", self.subject_token_type.is_some()),
            ("requestedTokenType", self.requested_token_type.is_some()),
            ("actor", self.actor.is_some()),
            ("extraParameters", !self.extra_parameters.is_empty()),
            ("expectedAudiences", !self.expected_audiences.is_empty()),
            ("dangerouslyAllowUnauthenticatedCallers", self.dangerously_allow_unauthenticated_callers),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

/// Values every mode checks the same way.
fn check_target_values(raw: &RawTarget, field: &str) -> Result<(), ConfigError> {
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
    for name in raw.extra_parameters.keys() {
        if name.is_empty() || RESERVED_PARAMETERS.contains(&name.as_str()) {
            return Err(ConfigError::new(
                format!("{field}.extraParameters.{name}"),
                "is a parameter the grant sets itself and cannot be overridden",
            ));
        }
    }
    Ok(())
}

/// The index of IdP `name`.
fn idp_index(name: Option<&str>, idps: &[Idp], field: &str) -> Result<usize, ConfigError> {
    let Some(name) = name else {
        return Err(ConfigError::new(format!("{field}.idp"), "required"));
    };
    find_named(idps.iter().map(|idp| idp.name.as_str()), name, &format!("{field}.idp"), "idp")
}

/// What of an exchange shapes the issued token.
fn exchange_digest(exchange: &Exchange) -> [String; 7] {
    let actor = match &exchange.actor {
        None => String::new(),
        Some(Actor::Static { token, token_type }) => {
            format!("static:{token_type}:{}", TokenHash::of(token.expose().as_bytes()).to_hex())
        }
        Some(Actor::ClientCredentials(grant)) => format!("cc:{}", grant.key.to_hex()),
    };
    [
        exchange.audiences.join(" "),
        exchange.resources.join(" "),
        exchange.scope.clone().unwrap_or_default(),
        exchange.subject_token_type.clone(),
        exchange.requested_token_type.clone().unwrap_or_default(),
        actor,
        parameters(&exchange.extra_parameters),
    ]
}

fn parameters(extra: &[(String, String)]) -> String {
    extra.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("&")
}

fn compile_actor(
    raw: RawActor,
    field: &str,
    target: &str,
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
        (None, None, Some(cc)) => {
            // The actor's token goes to the IdP only: what it asked for is
            // what it may name, if anything.
            let expected_audiences: Vec<String> = cc.audiences.iter().chain(&cc.resources).cloned().collect();
            let spec = GrantSpec {
                idp,
                audiences: cc.audiences,
                resources: cc.resources,
                scope: cc.scope,
                expected_audiences,
                label: format!("client_credentials, the actor of target {target}"),
            };
            Ok(Actor::ClientCredentials(credentials_grant(spec, credentials)))
        }
        (Some(_), _, Some(_)) => {
            Err(ConfigError::new(field.to_string(), "give token or clientCredentials, not both"))
        }
        (None, None, None) => {
            Err(ConfigError::new(field.to_string(), "give token (with tokenType) or clientCredentials"))
        }
    }
}

/// What a target asks for: `expectedAudiences`, `audiences`, `resources`.
#[derive(Clone, Copy)]
struct Asked<'a> {
    expected: &'a [String],
    audiences: &'a [String],
    resources: &'a [String],
}

/// The audiences a target's issued token may name: `expectedAudiences`
/// when given (an IdP that names its APIs otherwise, such as Entra v2's
/// application ids), else the audiences and resources asked for, else, for
/// Entra on-behalf-of, the resource of a `<resource>/.default` scope. A
/// target with none cannot have its token checked, and is refused.
fn expected_audiences(
    asked: Asked<'_>,
    scope: Option<&str>,
    mode: Mode,
    field: &str,
) -> Result<Vec<String>, ConfigError> {
    if let Some(index) = asked.expected.iter().position(String::is_empty) {
        return Err(ConfigError::new(format!("{field}.expectedAudiences[{index}]"), "must not be empty"));
    }
    if mode == Mode::IdentityAssertion {
        if !asked.expected.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.expectedAudiences"),
                "an identity assertion is signed here, for its audiences",
            ));
        }
        return Ok(Vec::new());
    }
    let expected: Vec<String> = if !asked.expected.is_empty() {
        asked.expected.to_vec()
    } else if mode == Mode::EntraOnBehalfOf {
        scope
            .iter()
            .flat_map(|scope| scope.split(' '))
            .filter_map(|scope| scope.strip_suffix("/.default"))
            .map(String::from)
            .collect()
    } else {
        asked.audiences.iter().chain(asked.resources).cloned().collect()
    };
    if expected.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.expectedAudiences"),
            "name the audience the issued token must carry (the target asks for none): a token for another \
             audience would otherwise reach this upstream unchecked",
        ));
    }
    Ok(expected)
}

/// What a client-credentials grant asks for, and what it is for in logs.
struct GrantSpec {
    idp: usize,
    audiences: Vec<String>,
    resources: Vec<String>,
    scope: Option<String>,
    expected_audiences: Vec<String>,
    label: String,
}

/// The grant for these parameters, shared when several targets need the
/// same client-credentials token.
fn credentials_grant(spec: GrantSpec, credentials: &mut Vec<Rc<CredentialsGrant>>) -> Rc<CredentialsGrant> {
    let GrantSpec { idp, audiences, resources, scope, expected_audiences, label } = spec;
    let key = TokenHash::of_parts(&[
        b"client_credentials",
        &idp.to_be_bytes(),
        audiences.join(" ").as_bytes(),
        resources.join(" ").as_bytes(),
        scope.as_deref().unwrap_or("").as_bytes(),
        expected_audiences.join(" ").as_bytes(),
    ]);
    if let Some(existing) = credentials.iter().find(|grant| grant.key == key) {
        return Rc::clone(existing);
    }
    let grant =
        Rc::new(CredentialsGrant { key, idp, audiences, resources, scope, expected_audiences, label });
    credentials.push(Rc::clone(&grant));
    grant
}

fn compile_delegation(raw: RawDelegation, targets: &[Target]) -> Result<Delegation, ConfigError> {
    if raw.caller_header.is_some() {
        return Err(ConfigError::new(
            "delegation.callerHeader",
            "a header names the caller only if no client can send it, which this filter cannot check; \
             use caller: peerCertificate (the client certificate Envoy verified) or tokenClient (the \
             verified token's client_id or azp)",
        ));
    }
    let allow = match raw.allow {
        None => None,
        Some(entries) => {
            let mut compiled = Vec::with_capacity(entries.len());
            for (index, entry) in entries.into_iter().enumerate() {
                let field = format!("delegation.allow[{index}]");
                if entry.caller.is_empty() {
                    return Err(ConfigError::new(format!("{field}.caller"), "must not be empty"));
                }
                if entry.targets.is_empty() && entry.audiences.is_empty() {
                    return Err(ConfigError::new(
                        field,
                        "list the targets (by name) or audiences the caller may obtain tokens for",
                    ));
                }
                let mut target_ids = Vec::with_capacity(entry.targets.len());
                for (t, name) in entry.targets.iter().enumerate() {
                    let names = targets.iter().map(|target| target.name.as_str());
                    target_ids.push(find_named(names, name, &format!("{field}.targets[{t}]"), "target")?);
                }
                compiled.push(AllowEntry {
                    caller: entry.caller,
                    targets: target_ids,
                    audiences: entry.audiences,
                });
            }
            Some(compiled)
        }
    };
    let caller = match raw.caller {
        RawCallerSource::TokenClient => CallerSource::TokenClient,
        RawCallerSource::PeerCertificate => CallerSource::PeerCertificate,
    };
    Ok(Delegation { caller, allow, require_may_act: raw.require_may_act })
}

/// Who may call each target, decided at load: a target that hands out a
/// token must identify its caller (a verified subject token, or the client
/// certificate Envoy verified), and with an allow list every target must be
/// allowed to someone, by name or by all its destinations, so that no
/// target is open by omission. Handing the gateway's own token to anyone
/// must be said in so many words.
fn check_callers(
    targets: &[Target],
    subject: Option<&SubjectToken>,
    delegation: &Delegation,
) -> Result<(), ConfigError> {
    for (index, target) in targets.iter().enumerate() {
        if matches!(target.grant, TargetGrant::ClientCredentials { unauthenticated_callers: true, .. }) {
            continue;
        }
        let identified = subject.is_some() || delegation.caller == CallerSource::PeerCertificate;
        if !identified {
            return Err(ConfigError::new(
                format!("targets[{index}]"),
                format!(
                    "target {:?} hands out the gateway's own token but nothing identifies its callers: add \
                     subjectToken (callers present a token this filter verifies), or delegation.caller: \
                     peerCertificate, or say dangerouslyAllowUnauthenticatedCallers: true",
                    target.name
                ),
            ));
        }
        if let Some(allow) = &delegation.allow
            && !allow.iter().any(|entry| entry.covers(index, target))
        {
            return Err(ConfigError::new(
                "delegation.allow",
                format!(
                    "no entry allows target {:?} (a target with no audience or resource is allowed only by \
                     name, in an entry's targets)",
                    target.name
                ),
            ));
        }
    }
    Ok(())
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
