//! Interactive login ([`LoginMode::Interactive`]): the login form
//! `/authorize` shows without a session, `POST /login` (password check,
//! new session, back to `/authorize`) and `GET /logout`. In
//! [`LoginMode::AutoApprove`] these paths are 404.

use core::fmt;
use core::time::Duration;

use http_kit::{Request, Response, form_urlencode, parse_urlencoded};
use serde_json::json;

use crate::config::{DEFAULT_SESSION_TTL, LoginMode};
use crate::keys::KeyError;
use crate::params::{Params, scope_list};
use crate::session::{Session, expired_cookie, session_id, set_cookie};
use crate::state::{IdpState, lock, now_secs};

/// The hidden form field that carries the pending authorization request:
/// the query string of the `/authorize` request that showed the form.
const PENDING_REQUEST_FIELD: &str = "authorization_query";
/// The message of a refused login; it does not say which part was wrong.
const LOGIN_REFUSED: &str = "Wrong username or password.";
/// Only this page's own form may be posted; nothing is loaded and no one may frame it.
const PAGE_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Why [`MockIdp::session_cookie_for`](crate::MockIdp::session_cookie_for)
/// could not start a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// No configured user has this `sub`.
    UnknownUser {
        /// The `sub` asked for.
        sub: String,
    },
    /// The session id could not be drawn.
    Random(KeyError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::UnknownUser { sub } => write!(f, "no configured user {sub:?}"),
            SessionError::Random(error) => write!(f, "session id: {error}"),
        }
    }
}

impl core::error::Error for SessionError {}

/// Starts a session for the configured user `sub`; returns its id.
pub(crate) fn start_session(state: &IdpState, sub: &str) -> Result<String, SessionError> {
    if state.config.user(sub).is_none() {
        return Err(SessionError::UnknownUser { sub: sub.to_string() });
    }
    let ttl = match state.config.login {
        LoginMode::Interactive { session_ttl } => session_ttl,
        LoginMode::AutoApprove => DEFAULT_SESSION_TTL,
    };
    lock(&state.sessions).create(sub, now_secs(), secs(ttl)).map_err(SessionError::Random)
}

/// The live session the request's cookie names.
pub(crate) fn current_session(state: &IdpState, request: &Request, now: i64) -> Option<Session> {
    session_id(request).and_then(|id| lock(&state.sessions).find(id, now))
}

/// The login form, continuing the authorization request `pending_query`
/// once the user has logged in. `username` pre-fills its field (from
/// `login_hint`, or what was typed before an `error`).
pub(crate) fn page(status: u16, pending_query: &str, username: &str, error: Option<&str>) -> Response {
    let error =
        error.map(|e| format!("<p id=\"error\" role=\"alert\">{}</p>\n", html_escape(e))).unwrap_or_default();
    let pending = html_escape(pending_query);
    let username = html_escape(username);
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - mock IdP</title></head>
<body>
<h1>Sign in</h1>
{error}<form method="post" action="login">
<input type="hidden" name="{PENDING_REQUEST_FIELD}" value="{pending}">
<p><label for="username">Username</label> <input id="username" name="username" value="{username}" autocomplete="username"></p>
<p><label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password"></p>
<p><button id="login" type="submit">Sign in</button></p>
</form>
</body>
</html>
"#
    );
    Response::new(status, "text/html; charset=utf-8", body)
        .with_header("cache-control", "no-store")
        .with_header("content-security-policy", PAGE_POLICY)
}

/// `/login` and `/logout`; 404 unless the login is interactive.
pub(crate) fn handle(state: &IdpState, request: &Request) -> Response {
    if !matches!(state.config.login, LoginMode::Interactive { .. }) {
        return Response::json(404, &json!({"error": "not_found"}));
    }
    let method = request.method.to_ascii_uppercase();
    match (request.path(), method.as_str()) {
        ("/login", "POST") => login(state, request),
        ("/logout", "GET" | "POST") => logout(state, request),
        _ => Response::json(405, &json!({"error": "method_not_allowed"})),
    }
}

/// `POST /login`: on a correct username and password, a new session and a
/// redirect back to the pending `/authorize` request; else 401 and the form.
fn login(state: &IdpState, request: &Request) -> Response {
    // Browsers send Origin with every form POST: refusing other origins
    // keeps other sites from logging a victim in (login CSRF). The form is
    // served from the bound address, or from the issuer's origin when the
    // IdP sits behind a proxy.
    let own_origin = |origin: &str| origin == state.base_url || origin == origin_of(&state.issuer);
    if request.header("origin").is_some_and(|origin| !own_origin(origin)) {
        return Response::text(403, "cross-origin login refused");
    }
    let params = Params::new(request.form_params());
    let Some(pending) = params.get(PENDING_REQUEST_FIELD) else {
        return Response::text(400, "no pending authorization request");
    };
    let username = params.get("username").unwrap_or_default();
    let password = params.get("password").unwrap_or_default();
    if !state.config.user(username).is_some_and(|user| user.accepts_password(password)) {
        return page(401, pending, username, Some(LOGIN_REFUSED));
    }
    // A new id on every login (no session fixation); the old one ends.
    if let Some(old) = session_id(request) {
        lock(&state.sessions).end(old);
    }
    let id = match start_session(state, username) {
        Ok(id) => id,
        Err(error) => return Response::text(500, &error.to_string()),
    };
    // Relative, as the form's action is: it works behind a proxy that
    // serves the IdP under a path.
    let location = format!("authorize?{}", continuation_query(pending));
    Response::empty(302)
        .with_header("location", &location)
        .with_header("set-cookie", &set_cookie(&id))
        .with_header("cache-control", "no-store")
}

/// `GET /logout`: ends the session and expires the cookie.
fn logout(state: &IdpState, request: &Request) -> Response {
    if let Some(id) = session_id(request) {
        lock(&state.sessions).end(id);
    }
    Response::new(
        200,
        "text/html; charset=utf-8",
        "<!doctype html>\n<title>Signed out</title>\n<p>Signed out.</p>\n",
    )
    .with_header("set-cookie", &expired_cookie())
    .with_header("cache-control", "no-store")
    .with_header("content-security-policy", PAGE_POLICY)
}

/// The pending request to continue after a login, re-encoded (so nothing
/// but a query reaches the Location header) and without `prompt=login`,
/// which the login just satisfied.
fn continuation_query(pending: &str) -> String {
    let pairs: Vec<(String, String)> = parse_urlencoded(pending)
        .into_iter()
        .filter_map(|(name, value)| {
            if name != "prompt" {
                return Some((name, value));
            }
            let rest: Vec<&str> = scope_list(&value).into_iter().filter(|p| *p != "login").collect();
            (!rest.is_empty()).then(|| (name, rest.join(" ")))
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    form_urlencode(&borrowed)
}

/// `scheme://host[:port]` of an absolute URL.
fn origin_of(url: &str) -> &str {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let end = url[authority_start..].find(['/', '?', '#']).map_or(url.len(), |i| authority_start + i);
    &url[..end]
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Escapes text for an HTML element or a double-quoted attribute.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_escapes_what_the_request_carried() {
        let response = page(200, "state=\"><script>x</script>&a=1", "<b>", Some("a & b"));
        let html = String::from_utf8(response.body).unwrap();
        assert!(html.contains("value=\"state=&quot;&gt;&lt;script&gt;x&lt;/script&gt;&amp;a=1\""), "{html}");
        assert!(html.contains("value=\"&lt;b&gt;\""), "{html}");
        assert!(html.contains("a &amp; b"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        for id in ["id=\"username\"", "id=\"password\"", "id=\"login\""] {
            assert!(html.contains(id), "{id} in {html}");
        }
    }

    #[test]
    fn origins_of_issuers() {
        assert_eq!(origin_of("https://idp.example/realms/x"), "https://idp.example");
        assert_eq!(origin_of("http://127.0.0.1:9010"), "http://127.0.0.1:9010");
        assert_eq!(origin_of("http://127.0.0.1:9010?x#y"), "http://127.0.0.1:9010");
    }

    #[test]
    fn the_continuation_drops_prompt_login_and_cannot_break_the_header() {
        assert_eq!(continuation_query("a=1&prompt=login&b=x+y"), "a=1&b=x+y");
        assert_eq!(continuation_query("prompt=consent+login"), "prompt=consent");
        assert_eq!(continuation_query("state=a%0D%0ASet-Cookie:+x"), "state=a%0D%0ASet-Cookie%3A+x");
    }
}
