//! What the user's browser sees of the authorization flow: the query of a
//! redirect, the cookie that ties the browser's steps together, the small
//! pages the filter answers with, and redirects. Pages hold the filter's
//! own texts only, never request data, and forbid framing and caching.

use baton_filter_kit::audit::AuditLine;
use baton_filter_kit::host::Host;
use baton_token::TokenHash;
use baton_token::form::decode as parse_query;
use baton_token::pkce;
use serde_json::json;

use crate::decision::{Reply, Request, Verdict};
use crate::denial::{PageDenial, Step};
use crate::model::BrowserCookie;

/// The random value the cookie carries: 32 bytes, base64url.
const COOKIE_VALUE_LEN: usize = 43;

/// The query parameters of a redirect, each allowed at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectQuery {
    pairs: Vec<(String, String)>,
}

impl RedirectQuery {
    /// The query of `path` (after `?`).
    pub fn of(path: &str) -> Self {
        Self { pairs: parse_query(path.split_once('?').map_or("", |(_, query)| query)) }
    }

    /// The value of `name` when it appears exactly once (a parameter twice
    /// is ambiguous, RFC 6749 §3.1: callers refuse it with
    /// [`RedirectQuery::has_duplicates`] first).
    pub fn single<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        let mut values = self.values(name);
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value),
            _ => None,
        }
    }

    /// The first value of `name`, however many there are.
    pub fn first<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.values(name).next()
    }

    /// Whether any of `names` appears more than once.
    pub fn has_duplicates(&self, names: &[&str]) -> bool {
        names.iter().any(|name| self.values(name).nth(1).is_some())
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.pairs.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The browser's value of `cookie`, if it sent exactly one well-formed one.
pub fn cookie_value<'a>(header: Option<&'a str>, cookie: &BrowserCookie) -> Option<&'a str> {
    let mut values = header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == cookie.name)
        .map(|(_, value)| value);
    match (values.next(), values.next()) {
        (Some(value), None)
            if value.len() == COOKIE_VALUE_LEN
                && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Some(value)
        }
        _ => None,
    }
}

/// What the gateway keeps of a browser's cookie: its SHA-256, in hex.
pub fn browser_id(value: &str) -> String {
    TokenHash::of(value.as_bytes()).to_hex()
}

/// A fresh cookie value, or `None` without randomness.
pub fn new_cookie_value(host: &dyn Host) -> Option<String> {
    let mut bytes = [0u8; 32];
    host.fill_random(&mut bytes).then(|| pkce::opaque(&bytes))
}

/// The `Set-Cookie` value: this origin only (`__Host-` over https), never
/// readable by scripts, sent on top-level navigations back from the IdPs.
pub fn set_cookie(cookie: &BrowserCookie, value: &str, max_age_secs: u64) -> String {
    let secure = if cookie.secure { "; Secure" } else { "" };
    format!("{}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}", cookie.name)
}

/// Headers of every page and redirect: not cached, not framed, no referrer
/// (the URL holds a code or state).
fn browser_headers(content_type: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", content_type.into()),
        ("cache-control", "no-store".into()),
        ("content-security-policy", "default-src 'none'; frame-ancestors 'none'".into()),
        ("x-frame-options", "DENY".into()),
        ("referrer-policy", "no-referrer".into()),
    ]
}

/// A 302 to `location`, setting the cookie when given.
fn redirect(location: &str, set_cookie: Option<String>) -> Verdict {
    let mut headers = browser_headers("text/html; charset=utf-8");
    headers.push(("location", location.to_string()));
    if let Some(cookie) = set_cookie {
        headers.push(("set-cookie", cookie));
    }
    Verdict::Reply(Reply { status: 302, headers, body: String::new() })
}

/// How one request of the browser's flow is answered: a page, or JSON when
/// the browser (an SDK's redirect handler) asked for it, with the request's
/// audit line.
pub struct Answer<'h> {
    host: &'h dyn Host,
    /// The request's audit line.
    pub audit: AuditLine,
    /// Whether the browser asked for JSON.
    pub json: bool,
    step: Step,
}

impl std::fmt::Debug for Answer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer").field("audit", &self.audit).field("json", &self.json).finish_non_exhaustive()
    }
}

impl<'h> Answer<'h> {
    /// The answer to `request`, at `step` of the flow.
    pub fn new(host: &'h dyn Host, audit_log: bool, step: Step, request: &Request) -> Self {
        let mut audit = AuditLine::new(host, audit_log);
        let label = match step {
            Step::Start => "start",
            Step::SignIn => "sign_in",
            Step::Bank => "redirect",
        };
        audit.set("callback", label);
        Self { host, audit, json: wants_json(request.accept.as_deref()), step }
    }

    /// A refusal: counted, audited, answered.
    pub fn refuse(mut self, denial: PageDenial) -> Verdict {
        if let Some(counter) = denial.counter() {
            self.host.count(counter);
        }
        let (status, reason, message) = (denial.status(), denial.reason(), denial.message());
        self.audit.deny(status, reason).emit(self.host);
        let body = if self.json {
            json!({"error": reason, "error_description": message}).to_string()
        } else {
            page("Authorization failed", &message)
        };
        self.reply(status, body)
    }

    /// The redirect's `error` (RFC 6749 §4.1.2.1): only its code, in
    /// letters, digits and underscores, reaches the page and the audit line.
    pub fn denied_by_idp(mut self, error: &str) -> Verdict {
        let error: String =
            error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        self.audit.set("idp_error", &error);
        let step = self.step;
        self.refuse(PageDenial::DeniedByIdp(step, error))
    }

    /// Success: audited; a page, or `json_body` as JSON.
    pub fn done(mut self, reason: &str, message: &str, json_body: serde_json::Value) -> Verdict {
        self.audit.allow(reason).emit(self.host);
        let body = if self.json { json_body.to_string() } else { page("Authorization complete", message) };
        self.reply(200, body)
    }

    /// A redirect, audited as allowed.
    pub fn redirect(mut self, reason: &str, location: &str, set_cookie: Option<String>) -> Verdict {
        self.audit.allow(reason).emit(self.host);
        redirect(location, set_cookie)
    }

    fn reply(&self, status: u16, body: String) -> Verdict {
        let content_type = if self.json { "application/json" } else { "text/html; charset=utf-8" };
        Verdict::Reply(Reply { status, headers: browser_headers(content_type), body })
    }
}

/// A redirect back from an IdP: `GET`, each of `names` at most once.
pub fn read_redirect<'h>(
    answer: Answer<'h>,
    request: &Request,
    names: &[&str],
) -> Result<(Answer<'h>, RedirectQuery), Box<Verdict>> {
    if request.method != "GET" {
        return Err(Box::new(answer.refuse(PageDenial::MethodNotAllowed)));
    }
    let query = RedirectQuery::of(&request.path);
    if query.has_duplicates(names) {
        return Err(Box::new(answer.refuse(PageDenial::DuplicateParameters)));
    }
    Ok((answer, query))
}

/// A page with a title and one paragraph, both the filter's own text.
pub fn page(title: &str, message: &str) -> String {
    let escape = |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body><h1>{}</h1><p>{}</p></body></html>",
        escape(title),
        escape(title),
        escape(message)
    )
}

/// Whether the browser asked for JSON rather than a page.
fn wants_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| accept.contains("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let query = RedirectQuery::of("/cb?code=1&state=2&state=3");
        assert_eq!(query.single("code"), Some("1"));
        assert_eq!(query.single("iss"), None);
        assert_eq!((query.first("state"), query.first("iss")), (Some("2"), None));
        assert!(query.single("state").is_none() && query.has_duplicates(&["code", "state"]));
        assert!(!query.has_duplicates(&["code", "iss"]));
    }

    #[test]
    fn pages_escape_their_text() {
        assert!(page("<t>", "a & b").contains("&lt;t&gt;") && page("<t>", "a & b").contains("a &amp; b"));
    }

    #[test]
    fn the_cookie_is_one_well_formed_value() {
        let cookie = BrowserCookie::for_redirect("https://gw.example/cb");
        assert_eq!(cookie.name, "__Host-baton-itac");
        let value = "a".repeat(43);
        let header = format!("x=1; __Host-baton-itac={value}; y=2");
        assert_eq!(cookie_value(Some(&header), &cookie), Some(value.as_str()));
        assert_eq!(
            cookie_value(Some(&format!("{header}; __Host-baton-itac={value}")), &cookie),
            None,
            "twice"
        );
        assert_eq!(cookie_value(Some("__Host-baton-itac=short"), &cookie), None);
        assert_eq!(cookie_value(Some(&format!("baton-itac={value}")), &cookie), None, "another name");
        assert_eq!(cookie_value(None, &cookie), None);
        let set = set_cookie(&cookie, &value, 300);
        assert_eq!(
            set,
            format!("__Host-baton-itac={value}; Path=/; Max-Age=300; HttpOnly; SameSite=Lax; Secure")
        );
        let local = BrowserCookie::for_redirect("http://127.0.0.1:10003/cb");
        assert!(!set_cookie(&local, &value, 1).contains("Secure") && local.name == "baton-itac");
    }
}
