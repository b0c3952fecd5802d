//! An OAuth authorization server the gateway is a client of: the user's
//! bank (`secondaryIdp`), and the users' own IdP when the browser signs in
//! there to prove who it is (`userBinding.primaryLogin`). As configured,
//! compiled, and turned into the URLs the user's browser is sent to.

use std::collections::BTreeMap;

use baton_filter_kit::config::{ConfigError, Provider, ProviderSpec, client_secret, compile_providers};
use baton_filter_kit::token_calls::TokenEndpoint;
use baton_token::oauth::{ClientAuth, form_urlencode};
use baton_token::secret::Secret;
use serde::Deserialize;

/// An authorization server as configured.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawServer {
    name: String,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    require_issuer_in_response: bool,
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

fn default_timeout_ms() -> u64 {
    3_000
}

/// An authorization server, compiled.
#[derive(Debug)]
pub struct AuthorizationServer {
    /// Name shown to users and clients (`secondaryAuthProvider`).
    pub name: String,
    /// Its issuer identifier: the RFC 9207 `iss` its redirects must carry
    /// (when they carry one, or always with `requireIssuerInResponse`).
    pub issuer: String,
    /// Whether a redirect without `iss` is refused (the server supports
    /// RFC 9207, so a redirect without it did not come from it).
    pub require_issuer_in_response: bool,
    /// Authorization endpoint URL the user opens.
    pub authorization_endpoint: String,
    /// Token endpoint URL, as published in challenges.
    pub token_endpoint_url: String,
    /// Token endpoint as the gateway calls it (cluster, path, client auth).
    pub token_endpoint: TokenEndpoint,
    /// Where it sends the browser back (`redirect_uri`).
    pub redirect_uri: String,
    /// The path of `redirect_uri`: the filter serves it.
    pub redirect_path: String,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// Audience of its tokens, shown in challenges.
    pub audience: Option<String>,
    /// Further authorization request parameters (e.g. `acr_values`).
    pub extra_authorize_parameters: Vec<(String, String)>,
    /// Who may issue its tokens: indexes into the filter's provider list.
    pub provider_ids: Vec<usize>,
}

impl AuthorizationServer {
    /// The authorization request URL (RFC 6749 §4.1.1, RFC 7636 §4.3, and
    /// OIDC `nonce` when given).
    pub fn authorization_url(&self, state: &str, code_challenge: &str, nonce: Option<&str>) -> String {
        let scope = self.scopes.join(" ");
        let mut query: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", self.token_endpoint.client_auth.client_id()),
            ("redirect_uri", &self.redirect_uri),
            ("state", state),
            ("code_challenge", code_challenge),
            ("code_challenge_method", "S256"),
        ];
        if !scope.is_empty() {
            query.push(("scope", &scope));
        }
        if let Some(nonce) = nonce {
            query.push(("nonce", nonce));
        }
        for (name, value) in &self.extra_authorize_parameters {
            query.push((name, value));
        }
        let separator = if self.authorization_endpoint.contains('?') { '&' } else { '?' };
        format!("{}{separator}{}", self.authorization_endpoint, form_urlencode(&query))
    }

    /// Checks the RFC 9207 `iss` of a redirect from this server: present
    /// and equal, or absent when the server is not known to send it.
    pub fn check_response_issuer(&self, iss: Option<&str>) -> Result<(), IssuerProblem> {
        match iss {
            Some(iss) if iss == self.issuer => Ok(()),
            Some(_) => Err(IssuerProblem::Mismatch),
            None if self.require_issuer_in_response => Err(IssuerProblem::Missing),
            None => Ok(()),
        }
    }
}

/// Why a redirect's issuer is refused (RFC 9207 §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerProblem {
    /// `iss` names another server: a mix-up.
    Mismatch,
    /// No `iss` from a server that always sends it.
    Missing,
}

impl IssuerProblem {
    /// Label for audit lines.
    pub fn reason(self) -> &'static str {
        match self {
            IssuerProblem::Mismatch => "issuer_mismatch",
            IssuerProblem::Missing => "issuer_missing",
        }
    }
}

/// Authorization request parameters the gateway sets itself.
const AUTHORIZE_PARAMETERS: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
];

/// `scheme://authority` of an absolute URL.
pub fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    let end = url[after_scheme..].find(['/', '?', '#']).map_or(url.len(), |at| after_scheme + at);
    &url[..end]
}

/// The path of an absolute URL (`/` when it has none).
pub fn path(url: &str) -> &str {
    let rest = &url[origin(url).len()..];
    let path = rest.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() { "/" } else { path }
}

/// Whether the URL's host is this machine (where plain HTTP stays local).
pub fn is_loopback(url: &str) -> bool {
    let authority = origin(url).split("://").nth(1).unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    host == "127.0.0.1" || host == "localhost" || host == "::1"
}

/// Compiles the server at `field`; its token providers are appended to
/// `providers` (the filter's one list) and named by index.
pub(crate) fn compile(
    raw: RawServer,
    field: &str,
    providers: &mut Vec<Provider>,
) -> Result<AuthorizationServer, ConfigError> {
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
    // The browser comes back here with a code (and, for a sign-in, gets a
    // cookie): only over TLS, but for a gateway on this very machine.
    if !raw.redirect_uri.starts_with("https://") && !is_loopback(&raw.redirect_uri) {
        return Err(ConfigError::new(
            format!("{field}.redirectUri"),
            "must be https (plain http only for a loopback host, in development)",
        ));
    }
    if raw.redirect_uri.contains(['?', '#']) {
        return Err(ConfigError::new(
            format!("{field}.redirectUri"),
            "must have no query or fragment (RFC 6749 §3.1.2)",
        ));
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
            let name = baton_token::form::decode_component(pair.split('=').next().unwrap_or(pair));
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
    let own = compile_providers(raw.providers, &format!("{field}.providers"))?;
    let issuer = match (raw.issuer, own.as_slice()) {
        (Some(issuer), _) if issuer.is_empty() => {
            return Err(ConfigError::new(format!("{field}.issuer"), "must not be empty"));
        }
        (Some(issuer), _) => issuer,
        (None, [only]) => only.policy.issuer.clone(),
        (None, _) => {
            return Err(ConfigError::new(
                format!("{field}.issuer"),
                "required with several providers: the issuer its redirects name (RFC 9207)",
            ));
        }
    };
    let first = providers.len();
    providers.extend(own);
    Ok(AuthorizationServer {
        name: raw.name,
        issuer,
        require_issuer_in_response: raw.require_issuer_in_response,
        authorization_endpoint: raw.authorization_endpoint,
        token_endpoint_url: raw.token_endpoint,
        token_endpoint: TokenEndpoint {
            authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
            cluster: raw.cluster,
            path: raw.token_path,
            timeout_ms: raw.timeout_ms,
            client_auth,
        },
        redirect_path: path(&raw.redirect_uri).to_string(),
        redirect_uri: raw.redirect_uri,
        scopes: raw.scopes,
        audience: raw.audience,
        extra_authorize_parameters: raw.extra_authorize_parameters.into_iter().collect(),
        provider_ids: (first..providers.len()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_origin_and_path() {
        assert_eq!(origin("https://gw.example:8443/a2a/oauth/callback"), "https://gw.example:8443");
        assert_eq!(path("https://gw.example:8443/a2a/oauth/callback"), "/a2a/oauth/callback");
        assert_eq!(path("https://gw.example"), "/");
        assert_eq!(origin("https://gw.example?x"), "https://gw.example");
        assert!(is_loopback("http://127.0.0.1:10003/cb") && is_loopback("http://localhost/cb"));
        assert!(is_loopback("http://[::1]:80/cb"));
        assert!(!is_loopback("http://gw.example/cb") && !is_loopback("http://127.0.0.1.evil/cb"));
    }
}
