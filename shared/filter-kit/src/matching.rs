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
    /// Whether the request matches. A rule for `GET` holds for `HEAD` too:
    /// servers answer `HEAD` with their `GET` handler.
    pub fn matches(&self, method: &str, path: &str, authority: &str) -> bool {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let method_matches = |wanted: &String| {
            wanted.eq_ignore_ascii_case(method) || (wanted == "GET" && method.eq_ignore_ascii_case("HEAD"))
        };
        self.path.matches(path)
            && (self.methods.is_empty() || self.methods.iter().any(method_matches))
            && self.host.as_deref().is_none_or(|host| host_matches(host, authority))
    }
}

/// The `error_description` for a request that names a second method.
pub fn ambiguous_method(second: &str) -> String {
    format!(
        "the request names a second method ({second}), which a backend may act on instead of the one the \
         rules matched; send the method itself"
    )
}

/// Headers through which servers let a request name a method other than
/// its own (Google's and Microsoft's APIs, method-override middleware).
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] =
    ["x-http-method-override", "x-http-method", "x-method-override"];

/// Where the request names a second method, if it does: the first of
/// [`METHOD_OVERRIDE_HEADERS`] that `has_header` finds, or a `_method`
/// query parameter (Rails, Laravel, Spring's hidden method filter). A rule
/// decided on the request's own method must not let the backend act on
/// another one.
pub fn method_override(path: &str, has_header: impl Fn(&str) -> bool) -> Option<&'static str> {
    if let Some(name) = METHOD_OVERRIDE_HEADERS.iter().find(|name| has_header(name)) {
        return Some(name);
    }
    let query = path.split_once('?').map(|(_, query)| query.split('#').next().unwrap_or(query))?;
    baton_token::form::decode(query)
        .iter()
        .any(|(name, _)| name.trim().eq_ignore_ascii_case("_method"))
        .then_some("_method")
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

fn host_matches<'a>(pattern: &'a str, authority: &'a str) -> bool {
    let (host, port) = split_port(authority);
    let (wanted, wanted_port) = split_port(pattern);
    // `portfolio.internal.` is the same name to DNS and to the next hop:
    // a trailing root dot must not take a request past a host rule.
    let root = |name: &'a str| -> &'a str { name.strip_suffix('.').unwrap_or(name) };
    root(host).eq_ignore_ascii_case(root(wanted))
        // A pattern without a port matches the host with any port.
        && (wanted_port.is_none() || wanted_port == port)
}

/// An authority's host and port (`[::1]:8080` has port `8080`; `[::1]`
/// none).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':') =>
        {
            (host, Some(port))
        }
        _ => (authority, None),
    }
}

/// Why a request path could mean something else at another hop or at the
/// backend, if it could: `None` for a path in its one canonical form.
///
/// A rule decides on the path this Envoy sees; a backend, or a second proxy
/// that normalises again, must not read another path from the same bytes.
/// Envoy's own normalisation is not idempotent (`/a/%2e%2e;/b` becomes
/// `/a/..;/b` at one hop and `/b` at the next) and Java-style backends read
/// `..;` as `..`. So a path is refused, rather than matched, when it has a
/// dot segment (`.`, `..`, also behind `;`), a path parameter (`;`), an
/// empty segment (`//`), a backslash, a fragment, a control or non-ASCII
/// byte, or a percent-escape that another decoder could turn into any of
/// these or into a plain character (`%2e`, `%2f`, `%5c`, `%3b`, `%25`, an
/// escaped letter or digit, a malformed escape). Escapes of other bytes
/// (`%20`, `%3f`, UTF-8) name data and stay.
pub fn ambiguous_path(path: &str) -> Option<&'static str> {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    if !path.starts_with('/') {
        return Some("the path is not absolute");
    }
    let bytes = path.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let Some(byte) = baton_token::form::escaped(bytes, index) else {
                    return Some("the path has a malformed percent-escape");
                };
                if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                    return Some("the path percent-encodes a character that needs no encoding");
                }
                if b"/\\;%".contains(&byte) || byte < 0x20 || byte == 0x7f {
                    return Some(
                        "the path percent-encodes a separator, a percent sign or a control character",
                    );
                }
                index += 3;
                continue;
            }
            b'\\' => return Some("the path has a backslash"),
            b';' => return Some("the path has a path parameter (;)"),
            b'#' => return Some("the path has a fragment"),
            byte if byte <= b' ' || byte >= 0x7f => {
                return Some("the path has a control, space or non-ASCII byte");
            }
            _ => {}
        }
        index += 1;
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (position, segment) in segments.iter().enumerate() {
        if *segment == "." || *segment == ".." {
            return Some("the path has a dot segment");
        }
        if segment.is_empty() && position + 1 < segments.len() {
            return Some("the path has an empty segment (//)");
        }
    }
    None
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
    fn a_host_matches_in_every_form_that_names_it() {
        let m = route(PathMatch::Any, &[], Some("admin.internal"));
        for authority in [
            "admin.internal",
            "ADMIN.Internal",
            "admin.internal.",
            "admin.internal:8443",
            "admin.internal.:80",
        ] {
            assert!(m.matches("GET", "/", authority), "{authority}");
        }
        for authority in ["admin.internal.evil", "xadmin.internal", "admin.internal..", "admin", ""] {
            assert!(!m.matches("GET", "/", authority), "{authority}");
        }
        let with_port = route(PathMatch::Any, &[], Some("admin.internal:8443"));
        assert!(with_port.matches("GET", "/", "admin.internal.:8443"));
        assert!(!with_port.matches("GET", "/", "admin.internal:80"));
        assert!(!with_port.matches("GET", "/", "admin.internal"));
        let v6 = route(PathMatch::Any, &[], Some("[::1]"));
        assert!(v6.matches("GET", "/", "[::1]:8080") && v6.matches("GET", "/", "[::1]"));
    }

    #[test]
    fn a_get_rule_holds_for_head() {
        let m = route(PathMatch::Any, &["GET"], None);
        assert!(m.matches("HEAD", "/", "h") && m.matches("get", "/", "h"));
        assert!(!m.matches("POST", "/", "h"));
        let post = route(PathMatch::Any, &["POST"], None);
        assert!(!post.matches("HEAD", "/", "h"));
    }

    #[test]
    fn a_second_method_is_found_in_headers_and_the_query() {
        let none = |_: &str| false;
        assert_eq!(method_override("/orders?_method=DELETE", none), Some("_method"));
        assert_eq!(method_override("/orders?a=1&%5Fmethod=delete", none), Some("_method"));
        assert_eq!(method_override("/orders?_METHOD=put#x", none), Some("_method"));
        assert_eq!(method_override("/orders?method=put&x_method=1", none), None);
        assert_eq!(method_override("/orders", none), None);
        let header = |name: &str| name == "x-http-method";
        assert_eq!(method_override("/orders", header), Some("x-http-method"));
    }

    #[test]
    fn exact_path_ignores_query() {
        let m = route(PathMatch::Exact("/healthz".into()), &[], None);
        assert!(m.matches("GET", "/healthz?probe=1", "h"));
        assert!(!m.matches("GET", "/healthz/x", "h"));
    }

    #[test]
    fn paths_another_hop_could_read_differently_are_ambiguous() {
        for path in [
            "/portfolio/..;/admin",
            "/portfolio/%2e%2e;/admin",
            "/portfolio/.%2e;/admin",
            "/portfolio/..%3b/admin",
            "/portfolio/%2E%2E/admin",
            "/portfolio/%2e/admin",
            "/portfolio/;x=1/admin",
            "/portfolio;jsessionid=1",
            "/portfolio/../admin",
            "/portfolio/./admin",
            "/portfolio/..",
            "/portfolio//admin",
            "/portfolio/%2fadmin",
            "/portfolio/%2Fadmin",
            "/portfolio/%5c..%5cadmin",
            "/portfolio\\..\\admin",
            "/portfolio/%252e%252e/admin",
            "/adm%69n",
            "/admin%",
            "/admin%4",
            "/admin%zz",
            "/admin%00",
            "/admin#x",
            "/admin x",
            "/admin\tx",
            "/admin\u{e9}",
            "admin",
            "",
            "*",
        ] {
            assert!(ambiguous_path(path).is_some(), "{path:?} passed");
        }
    }

    #[test]
    fn a_signed_escape_is_malformed_not_a_byte() {
        // `%+5` is no escape to a server's decoder: refused as malformed,
        // never read as byte 5.
        for path in ["/admin%+5", "/admin%-5", "/admin%+f"] {
            assert_eq!(ambiguous_path(path), Some("the path has a malformed percent-escape"), "{path}");
        }
    }

    #[test]
    fn canonical_paths_pass_with_their_query() {
        for path in [
            "/",
            "/portfolio",
            "/portfolio/",
            "/portfolio/summary?x=../y;z&q=%2e",
            "/files/report%20final.pdf",
            "/search/%3Fq%3D1",
            "/caf%C3%A9",
            "/a.b/c..d/...",
            "/a/b/c.json",
        ] {
            assert_eq!(ambiguous_path(path), None, "{path:?}");
        }
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
