//! Interactive login: the form, sessions, `prompt`, `max_age` and logout,
//! driven over HTTP as a browser would (cookies by hand).

use http_kit::{ClientRequest, ClientResponse, send};
use mock_idp::{LoginMode, MockIdp, MockIdpConfig, SESSION_COOKIE};

use crate::common::*;

fn start_interactive() -> MockIdp {
    MockIdp::start(MockIdpConfig { login: LoginMode::interactive(), ..test_config() }).unwrap()
}

fn get_with_cookie(idp: &MockIdp, target: &str, cookie: &str) -> ClientResponse {
    send(idp.addr(), &ClientRequest::get(target).header("cookie", cookie), TIMEOUT).unwrap()
}

/// Asserts the login form and returns the pending request it carries.
fn assert_login_form(response: &ClientResponse, status: u16) -> String {
    let html = response.body_str();
    assert_eq!(response.status, status, "{html}");
    assert!(response.header("location").is_none());
    assert!(response.header("set-cookie").is_none());
    assert_eq!(response.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    for id in ["id=\"username\"", "id=\"password\"", "id=\"login\"", "action=\"login\""] {
        assert!(html.contains(id), "{id} in {html}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "no external resources: {html}");
    html_attribute(&html, "name=\"authorization_query\" value=\"")
}

/// The value of the attribute that `prefix` ends with, unescaped.
fn html_attribute(html: &str, prefix: &str) -> String {
    let start = html.find(prefix).unwrap() + prefix.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end]
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Posts the login form, as a browser with no session cookie would.
fn post_login(idp: &MockIdp, pending: &str, username: &str, password: &str) -> ClientResponse {
    post_login_with_cookie(idp, pending, username, password, None)
}

fn post_login_with_cookie(
    idp: &MockIdp,
    pending: &str,
    username: &str,
    password: &str,
    cookie: Option<&str>,
) -> ClientResponse {
    let form = [("authorization_query", pending), ("username", username), ("password", password)];
    let mut request = ClientRequest::post_form("/login", &form);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    send(idp.addr(), &request, TIMEOUT).unwrap()
}

/// Logs in through the form; returns the `Cookie` value and the target
/// the IdP sent the browser to (its Location is relative to `/login`).
fn log_in(idp: &MockIdp, pending: &str, username: &str, password: &str) -> (String, String) {
    log_in_with_cookie(idp, pending, username, password, None)
}

fn log_in_with_cookie(
    idp: &MockIdp,
    pending: &str,
    username: &str,
    password: &str,
    cookie: Option<&str>,
) -> (String, String) {
    let response = post_login_with_cookie(idp, pending, username, password, cookie);
    assert_eq!(response.status, 302, "{}", response.body_str());
    let set_cookie = response.header("set-cookie").unwrap();
    let (pair, attributes) = set_cookie.split_once("; ").unwrap();
    assert!(pair.starts_with(&format!("{SESSION_COOKIE}=")), "{set_cookie}");
    assert_eq!(attributes, "Path=/; HttpOnly; SameSite=Lax");
    let location = response.header("location").unwrap();
    assert!(location.starts_with("authorize?"), "{location}");
    (pair.to_string(), format!("/{location}"))
}

/// The `sub` of the access token `code` redeems for.
fn code_user(idp: &MockIdp, params: &[(String, String)]) -> String {
    let body = redeem(idp, param(params, "code").unwrap()).json().unwrap();
    claims(body["access_token"].as_str().unwrap())["sub"].as_str().unwrap().to_string()
}

#[test]
fn login_hint_only_prefills_the_form_in_interactive_mode() {
    let idp = start_interactive();
    let target = authorize_target(&[("login_hint", "bob")]);
    let response = get(&idp, &target);
    let pending = assert_login_form(&response, 200);
    assert_eq!(format!("/authorize?{pending}"), target);
    assert_eq!(html_attribute(&response.body_str(), "name=\"username\" value=\""), "bob");
    assert_eq!(
        response.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(idp.token_requests().len(), 0);
}

#[test]
fn the_form_starts_a_session_and_codes_are_for_the_session_user() {
    let idp = start_interactive();
    // The URL names bob; alice is who logs in.
    let pending = assert_login_form(&get(&idp, &authorize_target(&[("login_hint", "bob")])), 200);
    let (cookie, location) = log_in(&idp, &pending, "alice", "password-alice");
    assert_eq!(location, format!("/authorize?{pending}"));

    let params = redirect_params(&get_with_cookie(&idp, &location, &cookie));
    assert_eq!(param(&params, "state"), Some("xyz"));
    assert_eq!(param(&params, "iss"), Some(idp.issuer().as_str()));
    assert_eq!(code_user(&idp, &params), "alice");

    // The session goes on approving, as alice, whatever the hint says.
    let again = get_with_cookie(&idp, &authorize_target(&[("login_hint", "bob")]), &cookie);
    assert_eq!(code_user(&idp, &redirect_params(&again)), "alice");
}

#[test]
fn a_configured_password_replaces_the_default_one() {
    let mut config = MockIdpConfig { login: LoginMode::interactive(), ..test_config() };
    config.users[1] = config.users[1].clone().with_password("correct horse");
    let idp = MockIdp::start(config).unwrap();
    let pending = assert_login_form(&get(&idp, &authorize_target(&[])), 200);
    assert_login_form(&post_login(&idp, &pending, "bob", "password-bob"), 401);
    let (cookie, _) = log_in(&idp, &pending, "bob", "correct horse");
    assert_eq!(
        code_user(&idp, &redirect_params(&get_with_cookie(&idp, &authorize_target(&[]), &cookie))),
        "bob"
    );
}

#[test]
fn wrong_passwords_and_unknown_users_are_refused() {
    let idp = start_interactive();
    let pending = assert_login_form(&get(&idp, &authorize_target(&[])), 200);
    for (username, password) in
        [("alice", "password-bob"), ("alice", ""), ("mallory", "password-mallory"), ("", "")]
    {
        let response = post_login(&idp, &pending, username, password);
        assert_eq!(assert_login_form(&response, 401), pending, "the form keeps the pending request");
        assert!(response.body_str().contains("Wrong username or password."), "{}", response.body_str());
    }
    let missing_request = send(
        idp.addr(),
        &ClientRequest::post_form("/login", &[("username", "alice"), ("password", "password-alice")]),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(missing_request.status, 400);
    // No session came of it.
    assert_login_form(&get(&idp, &authorize_target(&[])), 200);
}

#[test]
fn another_origin_cannot_post_the_login_form() {
    // Behind a proxy the form is served from the issuer's origin.
    let config = MockIdpConfig {
        issuer: Some("https://idp.example/realms/bank".to_string()),
        login: LoginMode::interactive(),
        ..test_config()
    };
    let idp = MockIdp::start(config).unwrap();
    let pending = assert_login_form(&get(&idp, &authorize_target(&[])), 200);
    let form =
        [("authorization_query", pending.as_str()), ("username", "alice"), ("password", "password-alice")];
    let post = |origin: &str| {
        let request = ClientRequest::post_form("/login", &form).header("origin", origin);
        send(idp.addr(), &request, TIMEOUT).unwrap()
    };
    for foreign in ["http://evil.test", "null", "https://idp.example.evil.test"] {
        let refused = post(foreign);
        assert_eq!(refused.status, 403, "{foreign}");
        assert!(refused.header("set-cookie").is_none());
    }
    assert_eq!(post(&idp.base_url()).status, 302);
    assert_eq!(post("https://idp.example").status, 302);
}

#[test]
fn prompt_login_asks_again_despite_a_session() {
    let idp = start_interactive();
    let cookie = idp.session_cookie_for("alice").unwrap();
    let pending =
        assert_login_form(&get_with_cookie(&idp, &authorize_target(&[("prompt", "login")]), &cookie), 200);
    // Logging in (as someone else, even) satisfies prompt=login instead of asking forever.
    let (bob_cookie, location) = log_in_with_cookie(&idp, &pending, "bob", "password-bob", Some(&cookie));
    assert_ne!(bob_cookie, cookie);
    // The session the login replaced is over.
    assert_login_form(&get_with_cookie(&idp, &authorize_target(&[]), &cookie), 200);
    assert!(!location.contains("prompt"), "{location}");
    let params = redirect_params(&get_with_cookie(&idp, &location, &bob_cookie));
    assert_eq!(code_user(&idp, &params), "bob");
}

#[test]
fn prompt_none_without_a_session_is_login_required() {
    let idp = start_interactive();
    let params = redirect_params(&get(&idp, &authorize_target(&[("prompt", "none")])));
    assert_eq!((param(&params, "error"), param(&params, "state")), (Some("login_required"), Some("xyz")));
    let cookie = idp.session_cookie_for("bob").unwrap();
    let params = redirect_params(&get_with_cookie(&idp, &authorize_target(&[("prompt", "none")]), &cookie));
    assert_eq!(code_user(&idp, &params), "bob");
}

#[test]
fn a_login_older_than_max_age_asks_again() {
    let idp = start_interactive();
    let cookie = idp.session_cookie_for("alice").unwrap();
    let fresh = get_with_cookie(&idp, &authorize_target(&[("max_age", "60")]), &cookie);
    assert_eq!(code_user(&idp, &redirect_params(&fresh)), "alice");
    // auth_time has a resolution of one second.
    let logged_in_at = mock_idp::now_secs();
    while mock_idp::now_secs() == logged_in_at {
        std::thread::sleep(core::time::Duration::from_millis(20));
    }
    assert_login_form(&get_with_cookie(&idp, &authorize_target(&[("max_age", "0")]), &cookie), 200);
}

#[test]
fn logout_ends_the_session_and_expires_the_cookie() {
    let idp = start_interactive();
    let cookie = idp.session_cookie_for("alice").unwrap();
    let logout = get_with_cookie(&idp, "/logout", &cookie);
    assert_eq!(logout.status, 200);
    let expired = logout.header("set-cookie").unwrap();
    assert!(
        expired.starts_with(&format!("{SESSION_COOKIE}=;")) && expired.contains("Max-Age=0"),
        "{expired}"
    );
    // The server forgot it: replaying the old cookie does not help.
    assert_login_form(&get_with_cookie(&idp, &authorize_target(&[]), &cookie), 200);
    assert_login_form(&get_with_cookie(&idp, &authorize_target(&[]), "mock_idp_session=forged"), 200);
}

#[test]
fn session_cookies_are_for_configured_users_only() {
    let idp = start_interactive();
    assert_eq!(
        idp.session_cookie_for("mallory"),
        Err(mock_idp::SessionError::UnknownUser { sub: "mallory".to_string() })
    );
}

#[test]
fn auto_approve_is_unchanged_and_has_no_login_endpoints() {
    let idp = start();
    assert_eq!(idp.config().login, LoginMode::AutoApprove);
    let cookie = idp.session_cookie_for("alice").unwrap();
    // login_hint picks the user; a session cookie changes nothing.
    let response = get_with_cookie(&idp, &authorize_target(&[("login_hint", "bob")]), &cookie);
    assert_eq!(code_user(&idp, &redirect_params(&response)), "bob");
    assert_eq!(code_user(&idp, &authorize(&idp, &[])), "alice", "first configured user");
    assert_eq!(post_login(&idp, "a=1", "alice", "password-alice").status, 404);
    assert_eq!(get(&idp, "/logout").status, 404);
}
