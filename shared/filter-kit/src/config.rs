//! Configuration pieces every filter shares: the error that names its field,
//! header name checks, and trusted token issuers (providers).

use std::fmt;
use std::rc::Rc;

use baton_token::TokenHash;
use baton_token::header::Algorithm;
use baton_token::jwk::JwkSet;
use baton_token::validation::{DEFAULT_CLOCK_SKEW_SECS, ValidationPolicy};
use baton_token::verify::VerifierSet;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::json_path;

/// A configuration error: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where, e.g. `providers[0].jwks.remote.cluster`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() || self.field == "." {
            write!(f, "invalid configuration: {}", self.message)
        } else {
            write!(f, "invalid configuration at {}: {}", self.field, self.message)
        }
    }
}

/// Deserializes strictly, reporting the path of the offending field (found
/// from where serde_json stopped, see [`crate::json_path`]).
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    serde_json::from_slice(bytes).map_err(|err| {
        let message = err.to_string();
        // serde_json appends "at line L column C"; the path says more.
        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
        let end = json_path::offset(bytes, err.line(), err.column());
        let field = json_path::path_at(bytes, end, message.starts_with("missing field"));
        ConfigError::new(field, message)
    })
}

/// A short digest of the configuration text: prefixes shared-data keys so a
/// new configuration never reads entries made under an old one.
pub fn fingerprint(bytes: &[u8]) -> String {
    TokenHash::of(bytes).short()
}

/// A header name as Envoy stores it: lower-case token characters.
pub fn header_name(name: &str, field: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(ConfigError::new(field, format!("{name:?} is not a valid header name")));
    }
    Ok(name.to_ascii_lowercase())
}

/// Headers a filter must never write identity into.
const RESERVED_HEADERS: [&str; 8] =
    ["host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "cookie", "authorization"];

/// A header the filter writes identity into: valid, not one Envoy depends
/// on, and not `also_reserved` (e.g. the header the token is read from).
pub fn output_header(name: &str, field: &str, also_reserved: &str) -> Result<String, ConfigError> {
    let name = header_name(name, field)?;
    if RESERVED_HEADERS.contains(&name.as_str()) || name == also_reserved {
        return Err(ConfigError::new(field, format!("{name:?} is reserved and cannot carry claims")));
    }
    Ok(name)
}

/// A client secret from `clientSecret`, or (better: the Envoy config then
/// holds no secret) from the environment variable `clientSecretEnv` names,
/// which Envoy passes to the VM through
/// `vm_config.environment_variables.host_env_keys`. `None` when neither is
/// given. `field` is the object holding both (e.g. `idps[0]`).
pub fn client_secret(
    secret: Option<String>,
    secret_env: Option<String>,
    field: &str,
) -> Result<Option<String>, ConfigError> {
    secret_setting(secret, secret_env, field, "clientSecret")
}

/// A secret given inline as `{field}.{name}` or through the VM environment
/// variable `{field}.{name}Env` names (see [`client_secret`]).
pub fn secret_setting(
    secret: Option<String>,
    secret_env: Option<String>,
    field: &str,
    name: &str,
) -> Result<Option<String>, ConfigError> {
    match (secret, secret_env) {
        (Some(secret), None) if !secret.is_empty() => Ok(Some(secret)),
        (Some(_), None) => Err(ConfigError::new(format!("{field}.{name}"), "must not be empty")),
        (None, Some(variable)) => match std::env::var(&variable) {
            Ok(secret) if !secret.is_empty() => Ok(Some(secret)),
            _ => Err(ConfigError::new(
                format!("{field}.{name}Env"),
                format!(
                    "environment variable {variable:?} is not set for the VM (vm_config.environment_variables)"
                ),
            )),
        },
        (Some(_), Some(_)) => {
            Err(ConfigError::new(format!("{field}.{name}"), format!("give {name} or {name}Env, not both")))
        }
        (None, None) => Ok(None),
    }
}

// ---------------------------------------------------------------------------
// Providers: trusted issuers and their keys.

/// A trusted issuer, as configured.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderSpec {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<String>,
    #[serde(default = "default_skew")]
    clock_skew_seconds: u64,
    #[serde(default)]
    required_typ: Option<String>,
    #[serde(default = "default_true")]
    require_expiration: bool,
    jwks: JwksSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JwksSpec {
    #[serde(default)]
    inline: Option<serde_json::Value>,
    #[serde(default)]
    remote: Option<RemoteJwksSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RemoteJwksSpec {
    cluster: String,
    path: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_refresh")]
    refresh_interval_seconds: u64,
    #[serde(default = "default_min_refetch")]
    min_refetch_interval_seconds: u64,
    #[serde(default = "default_retry")]
    retry_interval_seconds: u64,
}

fn default_skew() -> u64 {
    DEFAULT_CLOCK_SKEW_SECS
}
fn default_timeout_ms() -> u64 {
    2_000
}
fn default_refresh() -> u64 {
    300
}
fn default_min_refetch() -> u64 {
    30
}
fn default_retry() -> u64 {
    5
}

/// Where a provider's keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// Keys given in the configuration, imported once.
    Inline(Rc<VerifierSet>),
    /// Keys fetched from the IdP through an Envoy cluster.
    Remote(RemoteJwks),
}

/// How to fetch and refresh a remote key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// Envoy cluster to call.
    pub cluster: String,
    /// Request path, e.g. `/.well-known/jwks.json`.
    pub path: String,
    /// `:authority` of the request (the IdP's host name).
    pub authority: String,
    /// Call timeout.
    pub timeout_ms: u64,
    /// How often the key set is refetched.
    pub refresh_interval_secs: u64,
    /// Least time between refetches caused by an unknown `kid`.
    pub min_refetch_interval_secs: u64,
    /// First delay before retrying a failed fetch (doubles up to the refresh
    /// interval).
    pub retry_interval_secs: u64,
}

/// One trusted token issuer.
#[derive(Debug)]
pub struct Provider {
    /// Name used by rules and in logs.
    pub name: String,
    /// What its tokens must satisfy.
    pub policy: ValidationPolicy,
    /// Its keys.
    pub keys: KeySource,
}

/// Compiles a list of providers; names and issuers must be unique.
pub fn compile_providers(specs: Vec<ProviderSpec>, field: &str) -> Result<Vec<Provider>, ConfigError> {
    if specs.is_empty() {
        return Err(ConfigError::new(field, "at least one provider is required"));
    }
    let mut providers: Vec<Provider> = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let field = format!("{field}[{index}]");
        let provider = compile_provider(spec, &field)?;
        if providers.iter().any(|p| p.name == provider.name) {
            return Err(ConfigError::new(
                format!("{field}.name"),
                format!("duplicate provider name {:?}", provider.name),
            ));
        }
        if providers.iter().any(|p| p.policy.issuer == provider.policy.issuer) {
            return Err(ConfigError::new(
                format!("{field}.issuer"),
                "two providers with the same issuer: tokens could not be attributed",
            ));
        }
        providers.push(provider);
    }
    Ok(providers)
}

/// Compiles one provider: algorithms known, at least one audience, keys
/// usable for at least one configured algorithm.
pub fn compile_provider(spec: ProviderSpec, field: &str) -> Result<Provider, ConfigError> {
    if spec.name.is_empty() {
        return Err(ConfigError::new(format!("{field}.name"), "must not be empty"));
    }
    if spec.issuer.is_empty() {
        return Err(ConfigError::new(format!("{field}.issuer"), "must not be empty"));
    }
    if spec.audiences.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.audiences"),
            "at least one audience is required (RFC 8725 §3.9: a token for another service must not be accepted)",
        ));
    }
    if let Some(index) = spec.audiences.iter().position(String::is_empty) {
        return Err(ConfigError::new(format!("{field}.audiences[{index}]"), "must not be empty"));
    }
    if spec.algorithms.is_empty() {
        return Err(ConfigError::new(format!("{field}.algorithms"), "at least one algorithm is required"));
    }
    let mut algorithms = Vec::with_capacity(spec.algorithms.len());
    for (index, name) in spec.algorithms.iter().enumerate() {
        let Some(alg) = Algorithm::from_name(name) else {
            let valid: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
            return Err(ConfigError::new(
                format!("{field}.algorithms[{index}]"),
                format!("unknown or unsupported algorithm {name:?}; valid: {}", valid.join(", ")),
            ));
        };
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if spec.clock_skew_seconds > 600 {
        return Err(ConfigError::new(format!("{field}.clockSkewSeconds"), "must be at most 600"));
    }
    if spec.required_typ.as_deref() == Some("") {
        return Err(ConfigError::new(format!("{field}.requiredTyp"), "must not be empty"));
    }
    let keys = match (spec.jwks.inline, spec.jwks.remote) {
        (Some(inline), None) => {
            let text = serde_json::to_vec(&inline).unwrap_or_default();
            let set = JwkSet::parse_strict(&text)
                .map_err(|err| ConfigError::new(format!("{field}.jwks.inline"), err.to_string()))?;
            let verifiers = VerifierSet::import(&set)
                .map_err(|err| ConfigError::new(format!("{field}.jwks.inline"), err.to_string()))?;
            if !algorithms.iter().any(|alg| set.keys.iter().any(|key| key.accepts(*alg))) {
                return Err(ConfigError::new(
                    format!("{field}.jwks.inline"),
                    "no key can verify any of the configured algorithms",
                ));
            }
            KeySource::Inline(Rc::new(verifiers))
        }
        (None, Some(remote)) => KeySource::Remote(compile_remote(remote, &format!("{field}.jwks.remote"))?),
        _ => {
            return Err(ConfigError::new(
                format!("{field}.jwks"),
                "exactly one of inline or remote is required",
            ));
        }
    };
    let mut policy = ValidationPolicy::new(spec.issuer, spec.audiences, algorithms);
    policy.clock_skew_secs = spec.clock_skew_seconds;
    policy.required_typ = spec.required_typ;
    policy.require_exp = spec.require_expiration;
    Ok(Provider { name: spec.name, policy, keys })
}

fn compile_remote(spec: RemoteJwksSpec, field: &str) -> Result<RemoteJwks, ConfigError> {
    if spec.cluster.is_empty() {
        return Err(ConfigError::new(format!("{field}.cluster"), "must not be empty"));
    }
    if !spec.path.starts_with('/') {
        return Err(ConfigError::new(format!("{field}.path"), "must start with /"));
    }
    if spec.timeout_ms == 0 || spec.timeout_ms > 60_000 {
        return Err(ConfigError::new(format!("{field}.timeoutMs"), "must be between 1 and 60000"));
    }
    if spec.refresh_interval_seconds < 1 {
        return Err(ConfigError::new(format!("{field}.refreshIntervalSeconds"), "must be at least 1"));
    }
    if spec.retry_interval_seconds < 1 {
        return Err(ConfigError::new(format!("{field}.retryIntervalSeconds"), "must be at least 1"));
    }
    let authority = spec.authority.unwrap_or_else(|| spec.cluster.clone());
    Ok(RemoteJwks {
        cluster: spec.cluster,
        path: spec.path,
        authority,
        timeout_ms: spec.timeout_ms,
        refresh_interval_secs: spec.refresh_interval_seconds,
        min_refetch_interval_secs: spec.min_refetch_interval_seconds,
        retry_interval_secs: spec.retry_interval_seconds,
    })
}

/// Entries of a cache of verified tokens unless configured.
pub const DEFAULT_CACHE_ENTRIES: u32 = 10_000;

/// `cache` of a filter that keeps verified tokens: how many, shared by the
/// VM's workers.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifiedCacheSpec {
    /// Slots in shared data.
    #[serde(default = "default_cache_entries")]
    pub max_entries: u32,
}

impl Default for VerifiedCacheSpec {
    fn default() -> Self {
        Self { max_entries: DEFAULT_CACHE_ENTRIES }
    }
}

/// `#[serde(default = "...")]` for [`DEFAULT_CACHE_ENTRIES`].
pub fn default_cache_entries() -> u32 {
    DEFAULT_CACHE_ENTRIES
}

/// `#[serde(default = "...")]` for flags that are on unless turned off.
pub fn default_true() -> bool {
    true
}

/// The index of the item named `wanted` among `names`; otherwise an error
/// at `field` listing the known names (`what`: `provider`, `target`, ...).
pub fn find_named<'a>(
    names: impl Iterator<Item = &'a str> + Clone,
    wanted: &str,
    field: &str,
    what: &str,
) -> Result<usize, ConfigError> {
    names.clone().position(|name| name == wanted).ok_or_else(|| {
        let known: Vec<&str> = names.collect();
        ConfigError::new(field, format!("no {what} named {wanted:?}; known: {}", known.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}"#;

    fn provider(json: &str) -> Result<Provider, ConfigError> {
        compile_provider(from_json::<ProviderSpec>(json.as_bytes())?, "p")
    }

    fn base() -> String {
        format!(
            r#"{{"name":"corp","issuer":"https://idp","audiences":["api"],"algorithms":["ES256"],"jwks":{{"inline":{EC_JWKS}}}}}"#
        )
    }

    #[test]
    fn a_provider_compiles_with_secure_defaults() {
        let p = provider(&base()).unwrap();
        assert_eq!(p.policy.clock_skew_secs, 60);
        assert!(p.policy.require_exp);
        assert!(matches!(p.keys, KeySource::Inline(_)));
    }

    #[test]
    fn provider_errors_name_the_field() {
        let err = provider(&base().replace(r#"["ES256"]"#, r#"["ES256","HS256"]"#)).unwrap_err();
        assert_eq!(err.field, "p.algorithms[1]");
        assert!(err.message.contains("HS256") && err.message.contains("valid: ES256"), "{err}");
        let err = provider(&base().replace(r#""issuer":"https://idp""#, r#""issuer":"""#)).unwrap_err();
        assert_eq!(err.field, "p.issuer");
        let err = provider(&base().replace(r#"["api"]"#, "[]")).unwrap_err();
        assert_eq!(err.field, "p.audiences");
        let err = provider(&base().replace(r#"["ES256"]"#, r#"["RS256"]"#)).unwrap_err();
        assert!(err.message.contains("no key can verify"), "{err}");
        let err = provider(&base().replace("\"kid\":\"k1\",", "\"kid\":\"k1\",\"d\":\"AA\",")).unwrap_err();
        assert_eq!(err.field, "p.jwks.inline");
        let mut misspelled: serde_json::Value = serde_json::from_str(&base()).unwrap();
        misspelled["clockSkew"] = serde_json::json!(5);
        let err = provider(&misspelled.to_string()).unwrap_err();
        assert_eq!(err.field, "clockSkew");
        assert!(err.message.starts_with("unknown field `clockSkew`, expected one of"), "{err}");
    }

    #[test]
    fn jwks_needs_exactly_one_source() {
        let both = base().replace(
            r#""jwks":{"inline":"#,
            r#""jwks":{"remote":{"cluster":"idp","path":"/jwks"},"inline":"#,
        );
        assert_eq!(provider(&both).unwrap_err().field, "p.jwks");
        let inline = format!(r#"{{"inline":{EC_JWKS}}}"#);
        let bad_path = base().replace(&inline, r#"{"remote":{"cluster":"idp","path":"jwks"}}"#);
        assert_eq!(provider(&bad_path).unwrap_err().field, "p.jwks.remote.path");
        let remote = base().replace(&inline, r#"{"remote":{"cluster":"idp","path":"/jwks"}}"#);
        match provider(&remote).unwrap().keys {
            KeySource::Remote(remote) => {
                assert_eq!(remote.authority, "idp");
                assert_eq!(remote.refresh_interval_secs, 300);
            }
            KeySource::Inline(_) => panic!("expected remote"),
        }
    }

    #[test]
    fn providers_must_be_distinct() {
        let two = |a: &str, b: &str| {
            let specs: Vec<ProviderSpec> = from_json(format!("[{a},{b}]").as_bytes()).unwrap();
            compile_providers(specs, "providers")
        };
        assert_eq!(two(&base(), &base()).unwrap_err().field, "providers[1].name");
        assert_eq!(
            two(&base(), &base().replacen("corp", "other", 1)).unwrap_err().field,
            "providers[1].issuer"
        );
        assert_eq!(compile_providers(vec![], "providers").unwrap_err().field, "providers");
    }

    #[test]
    fn output_headers_are_checked() {
        assert_eq!(output_header("X-User", "f", "authorization").unwrap(), "x-user");
        assert!(output_header("authorization", "f", "x-token").is_err());
        assert!(output_header("x-token", "f", "x-token").is_err());
        assert!(output_header("x user", "f", "authorization").is_err());
    }
}
