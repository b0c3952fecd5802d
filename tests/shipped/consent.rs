//! Finding 2 and its siblings, in a real headless Chromium: consent
//! phishing and login CSRF on the in-task OAuth flow (RFC 9700 §4.7, §2.1).
//! Both IdPs authenticate the way real ones do (a login form and a session
//! cookie, `login_hint` only a hint), so who approves is whoever is signed
//! in in that browser. A link or bank URL that reaches someone else must
//! never bind their authorization to the sender's task, even when they
//! open it willingly.

use std::time::Duration;

use baton_harness::{Browser, SameSite, body_json};
use mock_idp::{Endpoint, LoginMode, MockIdp};

use crate::world::{TransferGateway, auth_challenge, bearer_claims, transfer};

const WAIT: Duration = Duration::from_secs(15);

/// The shipped gateway, with both IdPs asking browsers to sign in.
fn gateway() -> TransferGateway {
    TransferGateway::start_with_idps(
        |finport| finport.login = LoginMode::interactive(),
        |bank| bank.login = LoginMode::interactive(),
    )
}

/// Fills the login form of `idp` as `user`, once the browser shows that
/// IdP's page (not the form of the IdP it is leaving, which a redirect is
/// about to replace).
fn sign_in(browser: &Browser, idp: &MockIdp, user: &str) {
    let origin = format!("http://127.0.0.1:{}/", idp.port());
    browser
        .wait_for_url(|url| url.starts_with(&origin), WAIT)
        .unwrap_or_else(|e| panic!("not at {origin}: {e}"));
    browser.wait_for_element("#username", WAIT).unwrap_or_else(|e| panic!("no login form: {e}"));
    browser.fill("#username", user).unwrap();
    browser.fill("#password", &format!("password-{user}")).unwrap();
    browser.click("#login").unwrap();
}

/// `user` asks for a transfer: the gateway's task id and the link.
fn ask(gateway: &TransferGateway, user: &str) -> (String, String) {
    let challenge = gateway.send_as(user, &transfer(None));
    let task = body_json(&challenge)["result"]["id"].as_str().unwrap().to_string();
    (task, auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string())
}

/// Waits for a page of the gateway's (the end of a walk) and returns its text.
fn gateway_page(browser: &Browser, gateway: &TransferGateway, path: &str) -> String {
    let prefix = format!("http://127.0.0.1:{}{path}", gateway.port);
    browser.wait_for_url(|url| url.starts_with(&prefix), WAIT).unwrap_or_else(|e| panic!("{path}: {e}"));
    browser.page_text().unwrap()
}

/// Whether `user`'s task still has no bank token (a transfer in it is
/// challenged again).
fn still_unauthorized(gateway: &TransferGateway, user: &str, task: &str) -> bool {
    let again = gateway.send_as(user, &transfer(Some(task)));
    body_json(&again)["result"]["status"]["state"] == "auth-required"
}

#[test]
fn a_forwarded_link_stops_at_the_sign_in_even_when_opened_willingly() {
    let gateway = gateway();
    let (bob_task, bob_link) = ask(&gateway, "bob");
    // bob sends his link to alice; she opens it in her browser and signs in
    // at FinPort as herself.
    let alice = Browser::start().unwrap();
    alice.goto(&bob_link).unwrap();
    sign_in(&alice, &gateway.idp, "alice");
    let text = gateway_page(&alice, &gateway, "/a2a/oauth/signed-in");
    assert!(text.contains("You signed in as another user than the one who asked"), "{text}");
    assert_eq!(gateway.bank.calls(Endpoint::Authorize), 0, "alice's browser was sent to the bank");
    // The gateway's cookie, as Chromium keeps it: only for the gateway, not
    // for scripts, sent back on top-level navigations only.
    let cookie = alice.cookie("baton-itac").unwrap().expect("the gateway's cookie");
    assert!(cookie.http_only && cookie.same_site == Some(SameSite::Lax), "{cookie:?}");
    assert!(still_unauthorized(&gateway, "bob", &bob_task));
    assert!(gateway.agent.requests().is_empty(), "the agent was called");
    // bob's link is dead now: opening it again (or anyone else) gets nowhere.
    alice.goto(&bob_link).unwrap();
    let text = gateway_page(&alice, &gateway, "/a2a/oauth/start");
    assert!(text.contains("unknown, expired, already used"), "{text}");
    assert_eq!(gateway.envoy.counter("baton_itac.binding_refused"), 1);
}

#[test]
fn a_bank_url_from_another_browser_is_refused_at_the_callback() {
    let gateway = gateway();
    let (bob_task, bob_link) = ask(&gateway, "bob");
    // bob opens his own link and signs in at FinPort: the gateway sends his
    // browser on to the bank, whose URL he now sees.
    let bob = Browser::start().unwrap();
    bob.goto(&bob_link).unwrap();
    sign_in(&bob, &gateway.idp, "bob");
    let bank = format!("http://127.0.0.1:{}/authorize?", gateway.bank.port());
    let bank_url = bob.wait_for_url(|url| url.starts_with(&bank), WAIT).unwrap();
    // He sends that URL to alice, who approves at her bank as herself.
    let alice = Browser::start().unwrap();
    alice.goto(&bank_url).unwrap();
    sign_in(&alice, &gateway.bank, "alice");
    let text = gateway_page(&alice, &gateway, "/a2a/oauth/callback");
    assert!(text.contains("not started in this browser"), "{text}");
    assert!(still_unauthorized(&gateway, "bob", &bob_task));
    assert_eq!(gateway.bank.calls(Endpoint::Token), 0, "the code was exchanged");
    assert!(gateway.agent.requests().is_empty());
    assert_eq!(gateway.envoy.counter("baton_itac.binding_refused"), 1);
}

#[test]
fn the_user_who_asked_authorizes_in_her_own_browser() {
    let gateway = gateway();
    let (task, link) = ask(&gateway, "alice");
    let alice = Browser::start().unwrap();
    alice.goto(&link).unwrap();
    sign_in(&alice, &gateway.idp, "alice"); // at FinPort
    sign_in(&alice, &gateway.bank, "alice"); // at her bank
    let text = gateway_page(&alice, &gateway, "/a2a/oauth/callback");
    assert!(text.contains("Authorization complete"), "{text}");
    let answer = gateway.send_as("alice", &transfer(Some(&task)));
    assert_eq!(body_json(&answer)["result"]["status"]["state"], "completed", "{}", answer.body_str());
    let claims = bearer_claims(&gateway.agent.requests()[0]).unwrap();
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str()),
        (Some(gateway.bank.issuer().as_str()), Some("alice"))
    );
    // Opening the link again in the same browser is harmless: the
    // authorization is used.
    alice.goto(&link).unwrap();
    assert!(gateway_page(&alice, &gateway, "/a2a/oauth/start").contains("already used"));
    assert_eq!(gateway.envoy.counter("baton_itac.sign_ins_completed"), 1);
}
