//! Which rule applies to a request: ordered routes, first match wins.

use baton_token::AccessRequirement;

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

/// The request attributes a route can match on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// Path condition.
    pub path: PathMatch,
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    /// Lower-case host; a pattern without a port matches any port.
    pub host: Option<String>,
}

impl RouteMatch {
    /// Whether the request matches.
    pub fn matches(&self, method: &str, path: &str, authority: &str) -> bool {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        self.path.matches(path)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.host.as_deref().is_none_or(|host| host_matches(host, authority))
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

/// What happens to a matching request.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteAction {
    /// Public: passes unchecked (identity headers are still stripped).
    Allow,
    /// A valid token from one of `providers` (all when empty) that meets
    /// `requirement`.
    RequireToken {
        /// Indexes into the configured providers.
        providers: Vec<usize>,
        /// Scope, claim and step-up requirements.
        requirement: AccessRequirement,
    },
}

/// One configured route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Name for logs and metrics.
    pub name: String,
    /// When it applies.
    pub matcher: RouteMatch,
    /// What it does.
    pub action: RouteAction,
}

/// The first route matching the request.
pub fn find<'a>(routes: &'a [Route], method: &str, path: &str, authority: &str) -> Option<&'a Route> {
    routes.iter().find(|route| route.matcher.matches(method, path, authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: PathMatch, methods: &[&str], host: Option<&str>) -> RouteMatch {
        RouteMatch {
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

    #[test]
    fn first_match_wins() {
        let routes = vec![
            Route {
                name: "a".into(),
                matcher: route(PathMatch::Prefix("/a".into()), &[], None),
                action: RouteAction::Allow,
            },
            Route {
                name: "all".into(),
                matcher: route(PathMatch::Any, &[], None),
                action: RouteAction::Allow,
            },
        ];
        assert_eq!(find(&routes, "GET", "/a/b", "h").map(|r| r.name.as_str()), Some("a"));
        assert_eq!(find(&routes, "GET", "/b", "h").map(|r| r.name.as_str()), Some("all"));
        assert_eq!(find(&routes[..1], "GET", "/b", "h"), None);
    }
}
