//! Which requests a rule applies to: path (exact or by segment prefix),
//! methods and host. Shared by claim-enforcement routes and OBO targets.

use serde::Deserialize;

use crate::config::ConfigError;

/// A match as configured.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchSpec {
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    host: Option<String>,
}

/// How a route matches the request path (query string excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Every path.
    Any,
    /// Exactly this path.
    Exact(String),
    /// This path or anything below it, by whole segments: `/api` matches
    /// `/api` and `/api/orders` but not `/apiary`. A prefix ending in `/`
    /// matches as a plain string prefix.
    Prefix(String),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Prefix(prefix) => match path.strip_prefix(prefix.as_str()) {
                None => false,
                Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
            },
        }
    }
}

/// The request attributes a rule can match on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMatch {
    /// Path condition.
    pub path: PathMatch,
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    /// Lower-case host; a pattern without a port matches any port.
    pub host: Option<String>,
}

impl RequestMatch {
    /// Whether the request matches.
    pub fn matches(&self, method: &str, path: &str, authority: &str) -> bool {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        self.path.matches(path)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.host.as_deref().is_none_or(|host| host_matches(host, authority))
    }
}

/// Which request attributes a set of matches looks at, so the glue reads
/// only those from the proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchInputs {
    /// `:method`.
    pub method: bool,
    /// `:path`.
    pub path: bool,
    /// `:authority`.
    pub authority: bool,
}

impl MatchInputs {
    /// What `matches` need between them.
    pub fn of<'a>(matches: impl IntoIterator<Item = &'a RequestMatch>) -> Self {
        matches.into_iter().fold(MatchInputs::default(), |needs, m| MatchInputs {
            method: needs.method || !m.methods.is_empty(),
            path: needs.path || m.path != PathMatch::Any,
            authority: needs.authority || m.host.is_some(),
        })
    }

    /// What either needs.
    pub fn union(self, other: MatchInputs) -> Self {
        MatchInputs {
            method: self.method || other.method,
            path: self.path || other.path,
            authority: self.authority || other.authority,
        }
    }
}

fn host_matches(pattern: &str, authority: &str) -> bool {
    if authority.eq_ignore_ascii_case(pattern) {
        return true;
    }
    // A pattern without a port matches the host with any port.
    !pattern.contains(':')
        && authority.rsplit_once(':').is_some_and(|(host, port)| {
            port.bytes().all(|b| b.is_ascii_digit()) && host.eq_ignore_ascii_case(pattern)
        })
}

/// Compiles a match; `field` names it in errors (e.g. `routes[2].match`).
pub fn compile_match(spec: MatchSpec, field: &str) -> Result<RequestMatch, ConfigError> {
    let path = match (spec.path_prefix, spec.path) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(field, "give pathPrefix or path, not both"));
        }
        (Some(prefix), None) => {
            if !prefix.starts_with('/') {
                return Err(ConfigError::new(format!("{field}.pathPrefix"), "must start with /"));
            }
            PathMatch::Prefix(prefix)
        }
        (None, Some(path)) => {
            if !path.starts_with('/') {
                return Err(ConfigError::new(format!("{field}.path"), "must start with /"));
            }
            PathMatch::Exact(path)
        }
        (None, None) => PathMatch::Any,
    };
    let mut methods = Vec::with_capacity(spec.methods.len());
    for (m, method) in spec.methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(ConfigError::new(format!("{field}.methods[{m}]"), "must be an HTTP method name"));
        }
        methods.push(method.to_ascii_uppercase());
    }
    let host = spec.host.map(|host| host.to_ascii_lowercase());
    Ok(RequestMatch { path, methods, host })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: PathMatch, methods: &[&str], host: Option<&str>) -> RequestMatch {
        RequestMatch {
            path,
            methods: methods.iter().map(|m| m.to_string()).collect(),
            host: host.map(String::from),
        }
    }

    #[test]
    fn prefix_matches_whole_segments() {
        let m = route(PathMatch::Prefix("/api".into()), &[], None);
        assert!(m.matches("GET", "/api", "h"));
        assert!(m.matches("GET", "/api/orders", "h"));
        assert!(m.matches("GET", "/api?x=1", "h"));
        assert!(!m.matches("GET", "/apiary", "h"));
        assert!(!m.matches("GET", "/", "h"));
        let slash = route(PathMatch::Prefix("/static/".into()), &[], None);
        assert!(slash.matches("GET", "/static/a.css", "h"));
        assert!(!slash.matches("GET", "/static", "h"));
    }

    #[test]
    fn inputs_are_what_some_match_looks_at() {
        assert_eq!(MatchInputs::of(&[]), MatchInputs::default());
        let any = route(PathMatch::Any, &[], None);
        assert_eq!(MatchInputs::of([&any]), MatchInputs::default());
        let by_path = route(PathMatch::Prefix("/a".into()), &[], None);
        let by_method_and_host = route(PathMatch::Any, &["GET"], Some("h"));
        assert_eq!(
            MatchInputs::of([&by_path, &by_method_and_host]),
            MatchInputs { method: true, path: true, authority: true }
        );
        assert_eq!(
            MatchInputs::of([&by_path]).union(MatchInputs::of([&by_method_and_host])),
            MatchInputs { method: true, path: true, authority: true }
        );
    }

    #[test]
    fn exact_path_ignores_query() {
        let m = route(PathMatch::Exact("/healthz".into()), &[], None);
        assert!(m.matches("GET", "/healthz?probe=1", "h"));
        assert!(!m.matches("GET", "/healthz/x", "h"));
    }

    #[test]
    fn methods_and_hosts() {
        let m = route(PathMatch::Any, &["POST"], Some("api.example"));
        assert!(m.matches("POST", "/", "api.example"));
        assert!(m.matches("post", "/", "API.example:8443"));
        assert!(!m.matches("GET", "/", "api.example"));
        assert!(!m.matches("POST", "/", "evil.example"));
        assert!(!m.matches("POST", "/", "api.example.evil:80"));
        let with_port = route(PathMatch::Any, &[], Some("api.example:8443"));
        assert!(!with_port.matches("GET", "/", "api.example:9999"));
    }
}
