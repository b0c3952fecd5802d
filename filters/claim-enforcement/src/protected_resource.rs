//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document MCP and
//! A2A clients fetch to learn which authorization servers issue tokens for
//! this resource, served by the filter itself at
//! `/.well-known/oauth-protected-resource` (and the path-suffixed form for
//! a resource with a path), and the URL every challenge names in
//! `resource_metadata`.

use baton_filter_kit::config::ConfigError;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The RFC 9728 well-known path.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// `protectedResource`, as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtectedResourceSpec {
    resource: String,
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Option<Vec<String>>,
    #[serde(default = "default_bearer_methods")]
    bearer_methods_supported: Vec<String>,
    #[serde(default)]
    resource_name: Option<String>,
    #[serde(default)]
    resource_documentation: Option<String>,
    #[serde(default)]
    jwks_uri: Option<String>,
}

fn default_bearer_methods() -> Vec<String> {
    vec!["header".to_string()]
}

/// The compiled metadata: where it is served and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    /// The metadata URL derived from the resource identifier (RFC 9728 §3.1).
    pub metadata_url: String,
    /// Request paths answered with the document.
    paths: Vec<String>,
    /// The document, serialized once.
    document: String,
}

/// An answer to a metadata request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataAnswer {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(&'static str, &'static str)>,
    /// Body (empty for `HEAD` and refusals).
    pub body: String,
}

/// `scheme://authority` and the path (without a trailing slash) of an
/// absolute http(s) URL.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let scheme_end = url.find("://")? + 3;
    let scheme = &url[..scheme_end];
    if scheme != "https://" && scheme != "http://" {
        return None;
    }
    let rest = &url[scheme_end..];
    let path_start = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..path_start];
    if authority.is_empty() {
        return None;
    }
    let path = rest[path_start..].trim_end_matches('/');
    Some((&url[..scheme_end + path_start], path))
}

fn check_url(url: &str, field: &str) -> Result<(), ConfigError> {
    if split_url(url).is_none()
        || url.contains('#')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::new(field, "must be an absolute http(s) URL without a fragment"));
    }
    Ok(())
}

/// Compiles `protectedResource`; `route_scopes` are the scopes the routes
/// require, the default `scopes_supported`.
pub fn compile(
    spec: ProtectedResourceSpec,
    route_scopes: Vec<String>,
) -> Result<ProtectedResource, ConfigError> {
    const FIELD: &str = "protectedResource";
    check_url(&spec.resource, &format!("{FIELD}.resource"))?;
    if spec.resource.contains('?') {
        return Err(ConfigError::new(format!("{FIELD}.resource"), "must not have a query (RFC 9728 §1.2)"));
    }
    if spec.authorization_servers.is_empty() {
        return Err(ConfigError::new(
            format!("{FIELD}.authorizationServers"),
            "at least one issuer is required",
        ));
    }
    for (index, server) in spec.authorization_servers.iter().enumerate() {
        check_url(server, &format!("{FIELD}.authorizationServers[{index}]"))?;
    }
    for (name, url) in [("resourceDocumentation", &spec.resource_documentation), ("jwksUri", &spec.jwks_uri)]
    {
        if let Some(url) = url {
            check_url(url, &format!("{FIELD}.{name}"))?;
        }
    }
    if let Some(bad) =
        spec.bearer_methods_supported.iter().position(|m| !["header", "body", "query"].contains(&m.as_str()))
    {
        return Err(ConfigError::new(
            format!("{FIELD}.bearerMethodsSupported[{bad}]"),
            "must be header, body or query (RFC 6750 §2)",
        ));
    }
    let (origin, path) = split_url(&spec.resource).unwrap_or_default();
    let mut paths = vec![WELL_KNOWN.to_string()];
    if !path.is_empty() {
        paths.push(format!("{WELL_KNOWN}{path}"));
    }
    let metadata_url = format!("{origin}{WELL_KNOWN}{path}");

    let mut document = Map::new();
    document.insert("resource".into(), json!(spec.resource));
    document.insert("authorization_servers".into(), json!(spec.authorization_servers));
    let scopes = spec.scopes_supported.unwrap_or(route_scopes);
    if !scopes.is_empty() {
        document.insert("scopes_supported".into(), json!(scopes));
    }
    document.insert("bearer_methods_supported".into(), json!(spec.bearer_methods_supported));
    for (name, value) in [
        ("resource_name", spec.resource_name),
        ("resource_documentation", spec.resource_documentation),
        ("jwks_uri", spec.jwks_uri),
    ] {
        if let Some(value) = value {
            document.insert(name.into(), json!(value));
        }
    }
    Ok(ProtectedResource { metadata_url, paths, document: Value::Object(document).to_string() })
}

impl ProtectedResource {
    /// The answer for a request to `path` (query ignored), if it asks for
    /// the metadata.
    pub fn answer(&self, method: &str, path: &str) -> Option<MetadataAnswer> {
        let path = path.split('?').next().unwrap_or_default();
        if !self.paths.iter().any(|served| served == path) {
            return None;
        }
        let headers = vec![
            ("content-type", "application/json"),
            ("cache-control", "public, max-age=3600"),
            // Browser-based clients (MCP inspectors, SPAs) read it cross-origin.
            ("access-control-allow-origin", "*"),
        ];
        Some(match method {
            "GET" => MetadataAnswer { status: 200, headers, body: self.document.clone() },
            "HEAD" => MetadataAnswer { status: 200, headers, body: String::new() },
            _ => MetadataAnswer { status: 405, headers: vec![("allow", "GET, HEAD")], body: String::new() },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn compiled(json: Value) -> Result<ProtectedResource, ConfigError> {
        compile(serde_json::from_value(json).unwrap(), vec!["orders:read".into()])
    }

    #[test]
    fn metadata_url_and_paths_follow_rfc_9728_section_3_1() {
        let with_path = compiled(json!({"resource": "https://api.example.com/mcp/", "authorizationServers": ["https://login.example.com"]})).unwrap();
        assert_eq!(
            with_path.metadata_url,
            "https://api.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert!(with_path.answer("GET", "/.well-known/oauth-protected-resource/mcp").is_some());
        assert!(with_path.answer("GET", "/.well-known/oauth-protected-resource?x=1").is_some());
        assert!(with_path.answer("GET", "/.well-known/oauth-protected-resource/other").is_none());
        assert!(with_path.answer("GET", "/mcp").is_none());
        let bare = compiled(json!({"resource": "https://api.example.com", "authorizationServers": ["https://login.example.com"]})).unwrap();
        assert_eq!(bare.metadata_url, "https://api.example.com/.well-known/oauth-protected-resource");
    }

    #[test]
    fn the_document_has_the_configured_members_and_route_scopes_by_default() {
        let metadata = compiled(json!({"resource": "https://api.example.com/mcp", "authorizationServers": ["https://login.example.com"],
                                       "resourceDocumentation": "https://docs.example.com/mcp", "resourceName": "Orders MCP"})).unwrap();
        let answer = metadata.answer("GET", "/.well-known/oauth-protected-resource/mcp").unwrap();
        assert_eq!(answer.status, 200);
        assert!(answer.headers.contains(&("content-type", "application/json")));
        let document: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(
            document,
            json!({"resource": "https://api.example.com/mcp",
            "authorization_servers": ["https://login.example.com"], "scopes_supported": ["orders:read"],
            "bearer_methods_supported": ["header"], "resource_name": "Orders MCP",
            "resource_documentation": "https://docs.example.com/mcp"})
        );
        assert_eq!(metadata.answer("HEAD", WELL_KNOWN).unwrap().body, "");
        let post = metadata.answer("POST", WELL_KNOWN).unwrap();
        assert_eq!((post.status, post.headers), (405, vec![("allow", "GET, HEAD")]));
    }

    #[test]
    fn bad_values_name_their_field() {
        for (json, field) in [
            (
                json!({"resource": "api.example.com", "authorizationServers": ["https://a"]}),
                "protectedResource.resource",
            ),
            (
                json!({"resource": "https://a/x#f", "authorizationServers": ["https://a"]}),
                "protectedResource.resource",
            ),
            (
                json!({"resource": "https://a/x?q", "authorizationServers": ["https://a"]}),
                "protectedResource.resource",
            ),
            (
                json!({"resource": "https://a/x", "authorizationServers": []}),
                "protectedResource.authorizationServers",
            ),
            (
                json!({"resource": "https://a/x", "authorizationServers": ["ftp://a"]}),
                "protectedResource.authorizationServers[0]",
            ),
            (
                json!({"resource": "https://a/x", "authorizationServers": ["https://a"], "bearerMethodsSupported": ["cookie"]}),
                "protectedResource.bearerMethodsSupported[0]",
            ),
            (
                json!({"resource": "https://a/x", "authorizationServers": ["https://a"], "jwksUri": "/jwks"}),
                "protectedResource.jwksUri",
            ),
        ] {
            assert_eq!(compiled(json).unwrap_err().field, field);
        }
    }
}
