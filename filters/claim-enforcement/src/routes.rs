//! Which rule applies to a request: ordered routes, first match wins.

use baton_filter_kit::matching::RequestMatch;
use baton_token::AccessRequirement;

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
    pub matcher: RequestMatch,
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
    use baton_filter_kit::matching::PathMatch;

    fn any(path: PathMatch) -> RequestMatch {
        RequestMatch { path, methods: vec![], host: None }
    }

    #[test]
    fn first_match_wins() {
        let routes = vec![
            Route {
                name: "a".into(),
                matcher: any(PathMatch::Prefix("/a".into())),
                action: RouteAction::Allow,
            },
            Route { name: "all".into(), matcher: any(PathMatch::Any), action: RouteAction::Allow },
        ];
        assert_eq!(find(&routes, "GET", "/a/b", "h").map(|r| r.name.as_str()), Some("a"));
        assert_eq!(find(&routes, "GET", "/b", "h").map(|r| r.name.as_str()), Some("all"));
        assert_eq!(find(&routes[..1], "GET", "/b", "h"), None);
    }
}
