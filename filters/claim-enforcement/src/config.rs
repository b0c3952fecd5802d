//! Filter configuration: the JSON Envoy passes as plugin configuration,
//! parsed strictly (camelCase, unknown fields refused) and compiled once into
//! [`FilterConfig`]. Any error names the field it is about, so the one log
//! line `on_configure` writes tells the operator what to fix.

use std::rc::Rc;

use baton_filter_kit::config::{
    ConfigError, Provider, ProviderSpec, VerifiedCacheSpec, compile_providers, find_named, fingerprint,
    from_json, header_name, output_header,
};
use baton_filter_kit::matching::{MatchInputs, MatchSpec, compile_match};
use baton_token::jwt::DEFAULT_MAX_TOKEN_BYTES;
use baton_token::rules::{AccessRequirement, ClaimConditionSpec, ScopeRequirement, StepUpRequirement};
use serde::Deserialize;

use crate::protected_resource::{self, ProtectedResource, ProtectedResourceSpec};
use crate::routes::{Route, RouteAction};

// ---------------------------------------------------------------------------
// The configuration as written.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    providers: Vec<ProviderSpec>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    default_action: RawDefaultAction,
    #[serde(default)]
    token_source: RawTokenSource,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    resource_metadata: Option<String>,
    #[serde(default)]
    protected_resource: Option<ProtectedResourceSpec>,
    #[serde(default)]
    forward_claims: Vec<RawClaimHeader>,
    #[serde(default)]
    forward_payload_header: Option<String>,
    #[serde(default = "baton_filter_kit::config::default_true")]
    forward_token: bool,
    #[serde(default)]
    share_verified_token: bool,
    #[serde(default)]
    cache: VerifiedCacheSpec,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default = "baton_filter_kit::config::default_true")]
    audit_log: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "match")]
    matcher: MatchSpec,
    #[serde(default)]
    action: RawRouteAction,
    #[serde(default)]
    providers: Vec<String>,
    #[serde(default)]
    require: RawRequire,
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

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
enum RawRouteAction {
    #[default]
    RequireToken,
    Allow,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
enum RawDefaultAction {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTokenSource {
    #[serde(default = "default_token_header")]
    header: String,
    #[serde(default = "default_token_prefix")]
    prefix: String,
}

impl Default for RawTokenSource {
    fn default() -> Self {
        Self { header: default_token_header(), prefix: default_token_prefix() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawClaimHeader {
    claim: String,
    header: String,
}

fn default_max_token_bytes() -> usize {
    DEFAULT_MAX_TOKEN_BYTES
}
fn default_token_header() -> String {
    String::from("authorization")
}
fn default_token_prefix() -> String {
    String::from("Bearer ")
}

// ---------------------------------------------------------------------------
// The compiled configuration.

/// A claim copied into a request header for the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    /// Claim name or JSON Pointer.
    pub claim: String,
    /// Header name (lower case).
    pub header: String,
}

/// Where the token is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSource {
    /// Header name (lower case).
    pub header: String,
    /// Scheme prefix including its separator, matched case-insensitively,
    /// e.g. `Bearer `; empty for a header holding the bare token.
    pub prefix: String,
}

/// The validated, compiled configuration.
#[derive(Debug)]
pub struct FilterConfig {
    /// Trusted issuers.
    pub providers: Rc<Vec<Provider>>,
    /// Ordered routes; the first match applies.
    pub routes: Vec<Route>,
    /// The request attributes the routes look at.
    pub match_inputs: MatchInputs,
    /// Whether requests matching no route pass (without any check).
    pub allow_unmatched: bool,
    /// Token location.
    pub token_source: TokenSource,
    /// `realm` of challenges.
    pub realm: Option<String>,
    /// RFC 9728 metadata URL for challenges: `resourceMetadata`, else the
    /// one `protectedResource` derives.
    pub resource_metadata: Option<String>,
    /// The RFC 9728 document this filter serves, if configured.
    pub protected_resource: Option<ProtectedResource>,
    /// Claims to forward as headers.
    pub forward_claims: Vec<ClaimHeader>,
    /// Header carrying the verified payload (base64url), if any.
    pub forward_payload_header: Option<String>,
    /// Whether the token itself is forwarded upstream.
    pub forward_token: bool,
    /// Whether to record the verified token's hash for a later filter
    /// (obo-credential-injection's `claimEnforcement` validation).
    pub share_verified_token: bool,
    /// Verified-token cache slots shared by the workers (0 disables).
    pub cache_entries: u32,
    /// Longest token accepted.
    pub max_token_bytes: usize,
    /// Whether each decision is logged.
    pub audit_log: bool,
    /// A digest of the configuration text: prefixes shared-data keys so that
    /// a new configuration never reads entries made under an old one.
    pub fingerprint: String,
}

impl FilterConfig {
    /// Every header the filter may set: the ones stripped from each incoming
    /// request so a client cannot supply them.
    pub fn identity_headers(&self) -> impl Iterator<Item = &str> {
        self.forward_claims
            .iter()
            .map(|claim| claim.header.as_str())
            .chain(self.forward_payload_header.as_deref())
    }
}

/// Parses and compiles the plugin configuration.
pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
    compile(from_json(bytes)?, &fingerprint(bytes))
}

fn compile(raw: RawConfig, fingerprint: &str) -> Result<FilterConfig, ConfigError> {
    let providers = compile_providers(raw.providers, "providers")?;
    let token_source = TokenSource {
        header: header_name(&raw.token_source.header, "tokenSource.header")?,
        prefix: raw.token_source.prefix,
    };
    if token_source.prefix.trim().len() != token_source.prefix.len() && token_source.prefix.trim().is_empty()
    {
        return Err(ConfigError::new("tokenSource.prefix", "prefix must not be only whitespace"));
    }

    let mut forward_claims = Vec::with_capacity(raw.forward_claims.len());
    for (index, claim) in raw.forward_claims.into_iter().enumerate() {
        let field = format!("forwardClaims[{index}]");
        if claim.claim.is_empty() {
            return Err(ConfigError::new(format!("{field}.claim"), "must not be empty"));
        }
        let header = output_header(&claim.header, &format!("{field}.header"), &token_source.header)?;
        if forward_claims.iter().any(|c: &ClaimHeader| c.header == header) {
            return Err(ConfigError::new(
                format!("{field}.header"),
                format!("header {header:?} is used twice"),
            ));
        }
        forward_claims.push(ClaimHeader { claim: claim.claim, header });
    }
    let forward_payload_header = match raw.forward_payload_header {
        None => None,
        Some(name) => {
            let header = output_header(&name, "forwardPayloadHeader", &token_source.header)?;
            if forward_claims.iter().any(|c| c.header == header) {
                return Err(ConfigError::new("forwardPayloadHeader", "also used by forwardClaims"));
            }
            Some(header)
        }
    };

    let mut routes = Vec::with_capacity(raw.routes.len());
    for (index, route) in raw.routes.into_iter().enumerate() {
        routes.push(compile_route(route, index, &providers)?);
    }

    let protected_resource = match raw.protected_resource {
        Some(spec) => {
            let mut scopes: Vec<String> = Vec::new();
            for route in &routes {
                if let RouteAction::RequireToken { requirement, .. } = &route.action {
                    for scope in requirement.scopes.named() {
                        if !scopes.iter().any(|s| s == scope) {
                            scopes.push(scope.to_string());
                        }
                    }
                }
            }
            Some(protected_resource::compile(spec, scopes)?)
        }
        None => None,
    };
    if let Some(url) = &raw.resource_metadata
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(ConfigError::new("resourceMetadata", "must be an absolute http(s) URL"));
    }
    if let Some(realm) = &raw.realm
        && realm.chars().any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return Err(ConfigError::new("realm", "must not contain quotes, backslashes or control characters"));
    }
    if raw.share_verified_token && !raw.forward_token {
        return Err(ConfigError::new(
            "shareVerifiedToken",
            "needs forwardToken: a later filter can only use a token that is still in the request",
        ));
    }
    if raw.max_token_bytes < 64 || raw.max_token_bytes > 1024 * 1024 {
        return Err(ConfigError::new("maxTokenBytes", "must be between 64 and 1048576"));
    }
    if raw.cache.max_entries > 1_000_000 {
        return Err(ConfigError::new("cache.maxEntries", "must be at most 1000000"));
    }

    Ok(FilterConfig {
        providers: Rc::new(providers),
        match_inputs: MatchInputs {
            // The metadata document is served by path.
            path: protected_resource.is_some(),
            ..MatchInputs::default()
        }
        .union(MatchInputs::of(routes.iter().map(|route| &route.matcher))),
        routes,
        allow_unmatched: matches!(raw.default_action, RawDefaultAction::Allow),
        token_source,
        realm: raw.realm,
        resource_metadata: raw
            .resource_metadata
            .or_else(|| protected_resource.as_ref().map(|metadata| metadata.metadata_url.clone())),
        protected_resource,
        forward_claims,
        forward_payload_header,
        forward_token: raw.forward_token,
        share_verified_token: raw.share_verified_token,
        cache_entries: raw.cache.max_entries,
        max_token_bytes: raw.max_token_bytes,
        audit_log: raw.audit_log,
        fingerprint: fingerprint.to_string(),
    })
}

fn compile_route(raw: RawRoute, index: usize, providers: &[Provider]) -> Result<Route, ConfigError> {
    let field = format!("routes[{index}]");
    let name = raw.name.unwrap_or_else(|| format!("route-{index}"));
    let matcher = compile_match(raw.matcher, &format!("{field}.match"))?;
    let mut provider_ids = Vec::with_capacity(raw.providers.len());
    for (p, provider_name) in raw.providers.iter().enumerate() {
        let names = providers.iter().map(|provider| provider.name.as_str());
        provider_ids.push(find_named(names, provider_name, &format!("{field}.providers[{p}]"), "provider")?);
    }
    let action = match raw.action {
        RawRouteAction::Allow => {
            let require = &raw.require;
            if !require.scopes.all_of.is_empty()
                || !require.scopes.any_of.is_empty()
                || !require.claims.is_empty()
                || require.step_up.is_some()
                || !provider_ids.is_empty()
            {
                return Err(ConfigError::new(
                    format!("{field}.action"),
                    "an allow route takes no requirements or providers: it is not checked at all",
                ));
            }
            RouteAction::Allow
        }
        RawRouteAction::RequireToken => {
            let requirement =
                AccessRequirement::compile(raw.require.scopes, raw.require.claims, raw.require.step_up)
                    .map_err(|err| ConfigError::new(format!("{field}.require"), err.to_string()))?;
            RouteAction::RequireToken { providers: provider_ids, requirement }
        }
    };
    Ok(Route { name, matcher, action })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}"#;

    fn with(extra: &str) -> String {
        format!(
            r#"{{"providers":[{{"name":"corp","issuer":"https://idp","audiences":["api"],"algorithms":["ES256"],
               "jwks":{{"inline":{EC_JWKS}}}}}]{extra}}}"#
        )
    }

    fn error(json: &str) -> ConfigError {
        match parse(json.as_bytes()) {
            Ok(_) => panic!("configuration was accepted: {json}"),
            Err(err) => err,
        }
    }

    #[test]
    fn minimal_config_has_secure_defaults() {
        let config = parse(with("").as_bytes()).unwrap();
        assert!(!config.allow_unmatched);
        assert_eq!(
            config.token_source,
            TokenSource { header: "authorization".into(), prefix: "Bearer ".into() }
        );
        assert_eq!(config.providers[0].policy.clock_skew_secs, 60);
        assert!(config.forward_token);
        assert_eq!(config.fingerprint.len(), 12);
    }

    #[test]
    fn full_config_compiles() {
        let config = parse(
            with(
                r#","routes":[{"name":"health","match":{"path":"/healthz"},"action":"allow"},
                   {"name":"orders","match":{"pathPrefix":"/orders","methods":["get","POST"],"host":"API.example"},
                    "providers":["corp"],
                    "require":{"scopes":{"allOf":["orders:read"]},"claims":[{"claim":"tenant","equals":"acme"}],
                               "stepUp":{"acrValues":["mfa"],"maxAgeSeconds":300}}}],
                 "defaultAction":"allow","realm":"orders","resourceMetadata":"https://api.example/.well-known/oauth-protected-resource",
                 "forwardClaims":[{"claim":"sub","header":"X-User-Id"}],"forwardPayloadHeader":"x-jwt-payload",
                 "forwardToken":false,"cache":{"maxEntries":100},"maxTokenBytes":8192,"auditLog":false,
                 "tokenSource":{"header":"x-token","prefix":""}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(config.routes.len(), 2);
        assert_eq!(config.routes[1].matcher.methods, ["GET", "POST"]);
        assert_eq!(config.routes[1].matcher.host.as_deref(), Some("api.example"));
        assert_eq!(config.identity_headers().collect::<Vec<_>>(), ["x-user-id", "x-jwt-payload"]);
        assert!(config.allow_unmatched && !config.forward_token && !config.audit_log);
    }

    #[test]
    fn unknown_or_misspelled_fields_are_named() {
        let err = error(&with(r#","rutes":[]"#));
        assert_eq!(err.field, "rutes");
        assert!(err.message.contains("unknown field `rutes`"), "{err}");
        let err = error(&with(r#","routes":[{"match":{"pathprefix":"/x"}}]"#));
        assert_eq!(err.field, "routes[0].match.pathprefix");
        assert!(err.message.contains("expected one of `pathPrefix`, `path`, `methods`, `host`"), "{err}");
        let err = error(&with(r#","routes":[{"require":{"scopes":{"allof":["a"]}}}]"#));
        assert_eq!(err.field, "routes[0].require.scopes.allof");
        assert_eq!(
            err.to_string(),
            "invalid configuration at routes[0].require.scopes.allof: unknown field `allof`, expected `allOf` or `anyOf`"
        );
    }

    #[test]
    fn rule_referencing_nothing_is_refused() {
        let err = error(&with(r#","routes":[{"providers":["nobody"]}]"#));
        assert_eq!(err.field, "routes[0].providers[0]");
        assert!(err.message.contains("known: corp"), "{err}");
        let err = error(&with(r#","routes":[{"require":{"claims":[{"claim":"a"}]}}]"#));
        assert_eq!(err.field, "routes[0].require");
        let err = error(&with(r#","routes":[{"action":"allow","require":{"scopes":{"allOf":["x"]}}}]"#));
        assert_eq!(err.field, "routes[0].action");
        let err = error(&with(r#","routes":[{"action":"permit"}]"#));
        assert_eq!(err.field, "routes[0].action");
    }

    #[test]
    fn output_headers_are_checked() {
        let err = error(&with(r#","forwardClaims":[{"claim":"sub","header":"authorization"}]"#));
        assert_eq!(err.field, "forwardClaims[0].header");
        let err = error(&with(r#","forwardClaims":[{"claim":"sub","header":"x user"}]"#));
        assert_eq!(err.field, "forwardClaims[0].header");
        let err = error(&with(
            r#","forwardClaims":[{"claim":"sub","header":"x-a"},{"claim":"iss","header":"X-A"}]"#,
        ));
        assert_eq!(err.field, "forwardClaims[1].header");
        let err = error(&with(
            r#","tokenSource":{"header":"x-token","prefix":""},"forwardPayloadHeader":"x-token""#,
        ));
        assert_eq!(err.field, "forwardPayloadHeader");
    }

    #[test]
    fn sharing_the_verified_token_needs_it_forwarded() {
        let err = error(&with(r#","shareVerifiedToken":true,"forwardToken":false"#));
        assert_eq!(err.field, "shareVerifiedToken");
        assert!(parse(with(r#","shareVerifiedToken":true"#).as_bytes()).unwrap().share_verified_token);
    }

    #[test]
    fn not_json_is_refused() {
        assert!(parse(b"providers: []").is_err());
        assert!(parse(b"").is_err());
    }
}
