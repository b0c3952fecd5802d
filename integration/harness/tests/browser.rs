//! A real headless Chromium through the mock IdP's interactive login:
//! authorize, the login form, the redirect with a code, and the session
//! cookie as Chromium stored it. Chromium must be installed (`make setup`):
//! without it these tests fail, they are not skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use baton_harness::{Browser, BrowserOptions, SameSite};
use http_kit::{ClientRequest, Request, Response, Server, form_urlencode, parse_urlencoded};
use mock_idp::{ClientRegistration, LoginMode, MockIdp, MockIdpConfig, SESSION_COOKIE, s256_challenge};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const WAIT: Duration = Duration::from_secs(15);

/// An OAuth client's redirect URI: a page that says it got the callback.
fn client_callback_server() -> (Server, String) {
    let page = |_: &Request| {
        Response::new(
            200,
            "text/html; charset=utf-8",
            "<!doctype html><p id=\"received\">callback received</p>",
        )
        .into()
    };
    let server = Server::start("127.0.0.1:0", Arc::new(page)).unwrap();
    let redirect_uri = format!("http://127.0.0.1:{}/callback", server.port());
    (server, redirect_uri)
}

fn interactive_idp(redirect_uri: &str) -> MockIdp {
    MockIdp::start(MockIdpConfig {
        login: LoginMode::interactive(),
        clients: vec![ClientRegistration::public("browser-app", &[redirect_uri])],
        ..MockIdpConfig::default()
    })
    .unwrap()
}

fn start_browser(options: &BrowserOptions) -> Browser {
    Browser::start_with(options).unwrap_or_else(|error| panic!("{error}"))
}

fn authorize_url(idp: &MockIdp, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let challenge = s256_challenge(VERIFIER);
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", "browser-app"),
        ("redirect_uri", redirect_uri),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "st-1"),
    ];
    pairs.extend_from_slice(extra);
    format!("{}?{}", idp.authorization_endpoint(), form_urlencode(&pairs))
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    parse_urlencoded(query).into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// Redeems `code` at the token endpoint; the access token's `sub`.
fn code_user(idp: &MockIdp, redirect_uri: &str, code: &str) -> String {
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", "browser-app"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", VERIFIER),
    ];
    let response = http_kit::send(idp.addr(), &ClientRequest::post_form("/token", &form), WAIT).unwrap();
    assert_eq!(response.status, 200, "{}", response.body_str());
    let token = response.json().unwrap()["access_token"].as_str().unwrap().to_string();
    mock_idp::decode_claims_unverified(&token).unwrap()["sub"].as_str().unwrap().to_string()
}

#[test]
fn chromium_logs_in_at_the_mock_idp_and_the_code_is_for_who_logged_in() {
    let (_client, redirect_uri) = client_callback_server();
    let idp = interactive_idp(&redirect_uri);
    let browser = start_browser(&BrowserOptions::from_env());

    // The URL names bob; the hint only pre-fills the form.
    browser.goto(&authorize_url(&idp, &redirect_uri, &[("login_hint", "bob")])).unwrap();
    assert!(browser.current_url().unwrap().starts_with(&idp.authorization_endpoint()));
    assert!(browser.page_text().unwrap().contains("Sign in"), "{}", browser.page_source().unwrap());
    assert!(browser.cookie(SESSION_COOKIE).unwrap().is_none());

    browser.fill("#username", "alice").unwrap();
    browser.fill("#password", "not-her-password").unwrap();
    browser.click("#login").unwrap();
    browser.wait_for_element("#error", WAIT).unwrap();
    assert_eq!(browser.text("#error").unwrap(), "Wrong username or password.");
    assert!(browser.cookie(SESSION_COOKIE).unwrap().is_none());

    browser.fill("#username", "alice").unwrap();
    browser.fill("#password", "password-alice").unwrap();
    browser.click("#login").unwrap();
    let url = browser.wait_for_url(|url| url.starts_with(&redirect_uri), WAIT).unwrap();
    assert_eq!(browser.text("#received").unwrap(), "callback received");
    assert_eq!(query_param(&url, "state").as_deref(), Some("st-1"));
    assert_eq!(query_param(&url, "iss"), Some(idp.issuer()));
    let code = query_param(&url, "code").unwrap_or_else(|| panic!("no code in {url}"));
    assert_eq!(code_user(&idp, &redirect_uri, &code), "alice");

    // Cookies do not separate ports: the IdP's cookie is 127.0.0.1's.
    let cookie = browser.cookie(SESSION_COOKIE).unwrap().unwrap();
    assert_eq!((cookie.domain.as_str(), cookie.path.as_str()), ("127.0.0.1", "/"));
    assert!(cookie.http_only, "{cookie:?}");
    assert_eq!(cookie.same_site, Some(SameSite::Lax), "{cookie:?}");
    assert!(!cookie.secure && cookie.expiry.is_none(), "a session cookie over http: {cookie:?}");

    // The session carries the next authorization straight through.
    browser.goto(&authorize_url(&idp, &redirect_uri, &[("login_hint", "bob")])).unwrap();
    let url = browser.wait_for_url(|url| url.starts_with(&redirect_uri), WAIT).unwrap();
    assert_eq!(code_user(&idp, &redirect_uri, &query_param(&url, "code").unwrap()), "alice");

    // After logout the form is back.
    browser.goto(&format!("{}/logout", idp.base_url())).unwrap();
    assert!(browser.cookie(SESSION_COOKIE).unwrap().is_none());
    browser.goto(&authorize_url(&idp, &redirect_uri, &[])).unwrap();
    assert!(browser.exists("#password").unwrap());
}

#[test]
fn cookies_can_be_added_and_deleted() {
    let (_client, redirect_uri) = client_callback_server();
    let idp = interactive_idp(&redirect_uri);
    let browser = start_browser(&BrowserOptions::from_env());
    browser.goto(&format!("{}/.well-known/openid-configuration", idp.base_url())).unwrap();

    // A session made without the form, handed to the browser.
    let header = idp.session_cookie_for("bob").unwrap();
    let (name, value) = header.split_once('=').unwrap();
    browser.add_cookie(&baton_harness::Cookie::new(name, value)).unwrap();
    browser.goto(&authorize_url(&idp, &redirect_uri, &[])).unwrap();
    let url = browser.wait_for_url(|url| url.starts_with(&redirect_uri), WAIT).unwrap();
    assert_eq!(code_user(&idp, &redirect_uri, &query_param(&url, "code").unwrap()), "bob");

    browser.delete_all_cookies().unwrap();
    assert_eq!(browser.cookies().unwrap(), vec![]);
    browser.goto(&authorize_url(&idp, &redirect_uri, &[])).unwrap();
    assert!(browser.exists("#login").unwrap());
}

/// Chromium's network log after a login flow: no DNS query, and no
/// connection but to 127.0.0.1.
#[test]
fn chromium_connects_to_nothing_but_loopback() {
    let (_client, redirect_uri) = client_callback_server();
    let idp = interactive_idp(&redirect_uri);
    let net_log = std::env::temp_dir().join(format!("baton-browser-netlog-{}.json", std::process::id()));
    let browser =
        start_browser(&BrowserOptions::from_env().with_arg(&format!("--log-net-log={}", net_log.display())));
    browser.goto(&authorize_url(&idp, &redirect_uri, &[])).unwrap();
    browser.fill("#username", "bob").unwrap();
    browser.fill("#password", "password-bob").unwrap();
    browser.click("#login").unwrap();
    browser.wait_for_url(|url| url.starts_with(&redirect_uri), WAIT).unwrap();
    // Background services start within seconds of launch; give them time.
    std::thread::sleep(Duration::from_secs(3));
    drop(browser);

    let log = fs::read_to_string(&net_log).unwrap();
    let _ = fs::remove_file(&net_log);
    let (dns, remotes) = net_log_connections(&log);
    assert_eq!(dns, Vec::<String>::new(), "DNS queries");
    assert!(!remotes.is_empty(), "the log saw the login's connections");
    let elsewhere: Vec<&String> = remotes.iter().filter(|addr| !addr.starts_with("127.0.0.1:")).collect();
    assert!(elsewhere.is_empty(), "connections beyond loopback: {elsewhere:?}");
}

/// From a Chromium net log (JSON, possibly cut short): the names of DNS
/// queries, and the remote addresses of TCP connections.
fn net_log_connections(log: &str) -> (Vec<String>, Vec<String>) {
    let parsed: serde_json::Value = serde_json::from_str(log)
        .or_else(|_| serde_json::from_str(&format!("{}]}}", log.trim_end().trim_end_matches(','))))
        .unwrap();
    let type_name = |id: &serde_json::Value| {
        parsed["constants"]["logEventTypes"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .unwrap_or_default()
    };
    let (mut dns, mut remotes) = (Vec::new(), Vec::new());
    for event in parsed["events"].as_array().unwrap() {
        let params = &event["params"];
        match type_name(&event["type"]).as_str() {
            "DNS_TRANSACTION_QUERY" => dns.push(params["qname"].to_string()),
            "TCP_CONNECT" => remotes.extend(params["remote_address"].as_str().map(str::to_string)),
            "TCP_CONNECT_ATTEMPT" => remotes.extend(params["address"].as_str().map(str::to_string)),
            _ => {}
        }
    }
    (dns, remotes)
}
