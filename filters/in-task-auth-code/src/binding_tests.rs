//! Who the person at the secondary IdP is: the browser's sign-in at the
//! users' IdP (`primaryLogin`), the secondary token's claim
//! (`secondaryClaim`), and RFC 9207 `iss` on both redirects, through the
//! in-memory host.

use std::rc::Rc;

use baton_filter_kit::credential::Credential;
use baton_filter_kit::test_host::TestHost;
use baton_filter_kit::test_keys::TestKey;
use baton_filter_kit::verifier::KeyWait;
use baton_token::TokenHash;
use baton_token::secret::Secret;
use serde_json::{Value, json};

use crate::config;
use crate::decision::{Engine, ExchangeOutcome, Reply, Request, Round, Verdict};
use crate::metrics;
use baton_token::form::decode as parse_query;

/// The sign-in across replicas sharing a store.
#[path = "sealed_login_tests.rs"]
mod fleet;

const NOW: u64 = 1_800_000_000;
const CORP: &str = "https://corp.example";
const BANK: &str = "https://bank.example";

struct Keys {
    corp: TestKey,
    bank: TestKey,
}

struct World {
    engine: Engine,
    host: TestHost,
    keys: Keys,
}

fn inline(key: &TestKey) -> Value {
    json!({"inline": serde_json::from_str::<Value>(&key.jwks()).unwrap()})
}

/// The base configuration with `binding` as the user binding, every key
/// inline.
fn world(binding: Value, change: impl FnOnce(&mut Value)) -> World {
    let keys = Keys { corp: TestKey::es256("corp-1"), bank: TestKey::es256("bank-1") };
    let mut config = config::tests::base();
    config["secondaryIdp"]["providers"][0]["jwks"] = inline(&keys.bank);
    config["primaryIdentity"]["providers"][0]["jwks"] = inline(&keys.corp);
    config["userBinding"] = binding;
    if let Some(login) = config["userBinding"].get_mut("primaryLogin") {
        login["providers"][0]["jwks"] = inline(&keys.corp);
    }
    change(&mut config);
    let config = Rc::new(config::parse(config.to_string().as_bytes()).unwrap());
    let (engine, host) = (Engine::new(config), TestHost::new(NOW));
    engine.init_shared_data(&host);
    World { engine, host, keys }
}

/// The gateway as an OpenID Connect client of the users' IdP.
fn primary_login() -> Value {
    json!({
        "name": "Corp", "requireIssuerInResponse": true,
        "authorizationEndpoint": "https://corp.example/authorize", "tokenEndpoint": "https://corp.example/token",
        "cluster": "corp_idp", "tokenPath": "/token", "clientId": "gateway-login", "clientSecret": "pw",
        "redirectUri": "https://gw.example/a2a/oauth/signed-in", "scopes": ["openid"],
        "providers": [{"name": "corp-login", "issuer": CORP, "audiences": ["gateway-login"], "algorithms": ["ES256"],
                       "jwks": {"remote": {"cluster": "corp_idp", "path": "/jwks"}}}]
    })
}

fn get(path: &str, cookie: Option<&str>) -> Request {
    Request {
        store_work: Default::default(),
        method: "GET".into(),
        path: path.into(),
        authority: "gw.example".into(),
        method_override: None,
        primary: Credential::Absent,
        verified_upstream: None,
        a2a_version: None,
        accept: Some("text/html".into()),
        cookie: cookie.map(String::from),
        body: None,
    }
}

impl World {
    fn user_token(&self, user: &str) -> String {
        self.keys.corp.token(&json!({"iss": CORP, "sub": user, "aud": "agents", "exp": NOW + 600}))
    }

    fn bank_token(&self, sub: &str) -> String {
        self.keys.bank.token(&json!({"iss": BANK, "sub": sub, "aud": "bank-api", "exp": NOW + 600,
                                     "scope": "transfers:write"}))
    }

    fn id_token(&self, sub: &str, nonce: &str) -> String {
        self.keys.corp.sign(
            &json!({"alg": "ES256", "kid": "corp-1", "typ": "JWT"}),
            &json!({"iss": CORP, "sub": sub, "aud": "gateway-login", "exp": NOW + 300, "nonce": nonce}),
        )
    }

    fn message(&self, user: &str, task: &str, credentials: Option<Value>) -> Request {
        let mut data = json!({"operation": "transfer", "amount": 100});
        if let Some(credentials) = credentials {
            data["auth_credentials"] = credentials;
        }
        let message = json!({"kind": "message", "role": "user", "messageId": "m1", "taskId": task, "contextId": "c1",
                             "parts": [{"kind": "data", "data": data}]});
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": message}});
        Request {
            store_work: Default::default(),
            method: "POST".into(),
            path: "/".into(),
            authority: "gw.example".into(),
            method_override: None,
            primary: Credential::one(format!("Bearer {}", self.user_token(user)).into_bytes()),
            verified_upstream: None,
            a2a_version: None,
            accept: None,
            cookie: None,
            body: Some(body.to_string().into_bytes()),
        }
    }

    fn decide(&mut self, request: &Request) -> Verdict {
        self.engine.decide(&self.host, request, Round::FIRST)
    }

    /// Decides `request` again after its code exchange answered `outcome`.
    fn after_exchange(&mut self, request: &Request, key: &TokenHash, outcome: &ExchangeOutcome) -> Verdict {
        let round = Round { number: 1, keys: KeyWait::Allowed, exchange: Some((key, outcome)) };
        self.engine.decide(&self.host, request, round)
    }

    /// `user` is challenged in `task`: the authorization URL and state.
    fn challenge(&mut self, user: &str, task: &str) -> (String, String) {
        let reply = reply(self.decide(&self.message(user, task, None)));
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        let challenge = body["result"]["status"]["message"]["parts"][1]["data"]["authChallenge"].clone();
        (
            challenge["authorizationUrl"].as_str().unwrap().to_string(),
            challenge["state"].as_str().unwrap().to_string(),
        )
    }
}

fn reply(verdict: Verdict) -> Reply {
    match verdict {
        Verdict::Reply(reply) => reply,
        other => panic!("expected a local reply, got {other:?}"),
    }
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

fn param(url: &str, name: &str) -> String {
    parse_query(url.split_once('?').unwrap().1).into_iter().find(|(n, _)| n == name).map(|(_, v)| v).unwrap()
}

/// The cookie a `Set-Cookie` value sets, as the browser sends it back.
fn cookie_of(reply: &Reply) -> String {
    header(reply, "set-cookie").unwrap().split(';').next().unwrap().to_string()
}

#[test]
fn a_browser_sign_in_binds_the_authorization_to_the_user_who_asked() {
    let mut w = world(json!({"primaryLogin": primary_login()}), |_| {});
    let (url, state) = w.challenge("alice", "t-1");
    // The link opens the gateway, not the bank.
    assert!(url.starts_with("https://gw.example/a2a/oauth/start?state="), "{url}");

    // alice's browser: the gateway sets its cookie and sends it to sign in.
    let start = reply(w.decide(&get(&format!("/a2a/oauth/start?state={state}"), None)));
    assert_eq!(start.status, 302);
    let set_cookie = header(&start, "set-cookie").unwrap();
    assert!(
        set_cookie.starts_with("__Host-baton-itac=")
            && set_cookie.contains("HttpOnly")
            && set_cookie.contains("Secure")
    );
    let cookie = cookie_of(&start);
    let sign_in = header(&start, "location").unwrap().to_string();
    assert!(sign_in.starts_with("https://corp.example/authorize?"), "{sign_in}");
    assert_eq!(param(&sign_in, "client_id"), "gateway-login");
    assert_eq!(param(&sign_in, "redirect_uri"), "https://gw.example/a2a/oauth/signed-in");
    assert_eq!(param(&sign_in, "scope"), "openid");
    let (login_state, nonce) = (param(&sign_in, "state"), param(&sign_in, "nonce"));
    assert!(login_state.starts_with(&format!("{state}.")));

    let back = format!("/a2a/oauth/signed-in?code=c1&state={login_state}&iss={}", urlencoding(CORP));
    // Another browser cannot complete it (login CSRF).
    assert_eq!(
        reply(w.decide(&get(&back, Some("__Host-baton-itac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))))
            .status,
        403
    );
    let Verdict::AwaitCall(call) = w.decide(&get(&back, Some(&cookie))) else {
        panic!("expected the code exchange")
    };
    assert_eq!(call.endpoint, crate::login::LOGIN_ENDPOINT);
    assert!(
        call.request
            .body
            .expose()
            .contains("redirect_uri=https%3A%2F%2Fgw.example%2Fa2a%2Foauth%2Fsigned-in")
    );
    let signed_in = ExchangeOutcome::Token {
        access: Secret::new("corp-access"),
        id_token: Some(Secret::new(w.id_token("alice", &nonce))),
    };
    let to_bank = reply(w.after_exchange(&get(&back, Some(&cookie)), &call.key, &signed_in));
    assert_eq!(to_bank.status, 302, "{}", to_bank.body);
    let bank_url = header(&to_bank, "location").unwrap();
    assert!(bank_url.starts_with("https://bank.example/authorize?") && param(bank_url, "state") == state);
    assert_eq!(w.host.counter(metrics::SIGN_INS_COMPLETED), 1);

    // The bank's redirect: only in alice's browser.
    let callback = format!("/a2a/oauth/callback?code=b1&state={state}");
    let elsewhere = reply(w.decide(&get(&callback, None)));
    assert_eq!(elsewhere.status, 403);
    assert!(elsewhere.body.contains("Nothing was authorized"));
    let Verdict::AwaitCall(exchange) = w.decide(&get(&callback, Some(&cookie))) else {
        panic!("expected the code exchange")
    };
    assert_eq!(exchange.endpoint, 0);
    let done = ExchangeOutcome::Token { access: Secret::new(w.bank_token("alice@bank")), id_token: None };
    assert_eq!(reply(w.after_exchange(&get(&callback, Some(&cookie)), &exchange.key, &done)).status, 200);
}

#[test]
fn a_link_sent_to_someone_else_stops_at_the_sign_in() {
    let mut w = world(json!({"primaryLogin": primary_login()}), |_| {});
    // bob asks, and sends his link to alice, who opens it willingly.
    let (_, state) = w.challenge("bob", "t-bob");
    let start = reply(w.decide(&get(&format!("/a2a/oauth/start?state={state}"), None)));
    let cookie = cookie_of(&start);
    let sign_in = header(&start, "location").unwrap().to_string();
    let back =
        format!("/a2a/oauth/signed-in?code=c1&state={}&iss={}", param(&sign_in, "state"), urlencoding(CORP));
    let Verdict::AwaitCall(call) = w.decide(&get(&back, Some(&cookie))) else {
        panic!("expected the code exchange")
    };
    let alice_signed_in = ExchangeOutcome::Token {
        access: Secret::new("corp-access"),
        id_token: Some(Secret::new(w.id_token("alice", &param(&sign_in, "nonce")))),
    };
    let refused = reply(w.after_exchange(&get(&back, Some(&cookie)), &call.key, &alice_signed_in));
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("another user"), "{}", refused.body);
    // The bank was never named to her browser, and bob's authorization is
    // gone: neither the redirect nor a code in bob's message can use it.
    assert!(header(&refused, "location").is_none());
    assert_eq!(
        reply(w.decide(&get(&format!("/a2a/oauth/callback?code=b1&state={state}"), Some(&cookie)))).status,
        403
    );
    let message = w.message("bob", "t-bob", Some(json!({"code": "b1", "state": state})));
    assert_eq!(reply(w.decide(&message)).status, 400);
    assert_eq!(w.host.counter(metrics::BINDING_REFUSED), 2);

    // A code for a state whose browser never signed in: refused too, and
    // the state used up by it (a misuse ends the authorization).
    let (_, fresh) = w.challenge("bob", "t-bob-2");
    let message = w.message("bob", "t-bob-2", Some(json!({"code": "b2", "state": fresh})));
    assert_eq!(reply(w.decide(&message)).status, 403);
    assert!(w.engine.store.peek_state(&w.host, &fresh).unwrap().used);
    // And a bank token in a message: nothing shows whose it is.
    let token = w.bank_token("alice");
    let message = w.message("bob", "t-bob-2", Some(json!({"accessToken": token})));
    let refused = reply(w.decide(&message));
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("own authorization link"), "{}", refused.body);
}

#[test]
fn the_secondary_token_must_name_the_user() {
    let mut w = world(json!({"secondaryClaim": "sub"}), |_| {});
    let bob_token = w.bank_token("bob");
    // In a message: a challenge saying why (the configured answer).
    let refused = reply(w.decide(&w.message("alice", "t-1", Some(json!({"accessToken": bob_token})))));
    let body: Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(
        body["result"]["status"]["message"]["parts"][1]["data"]["authChallenge"]["errorDescription"],
        "the credential belongs to another user"
    );
    // Through the redirect: bob approved at the bank with alice's link.
    let (_, state) = w.challenge("alice", "t-2");
    let callback = get(&format!("/a2a/oauth/callback?code=b1&state={state}"), None);
    let Verdict::AwaitCall(call) = w.decide(&callback) else { panic!("expected the code exchange") };
    let outcome = ExchangeOutcome::Token { access: Secret::new(bob_token.clone()), id_token: None };
    let page = reply(w.after_exchange(&callback, &call.key, &outcome));
    assert_eq!(page.status, 400);
    assert!(page.body.contains("belongs to another user"), "{}", page.body);
    // Nothing was stored for alice's task.
    let next = reply(w.decide(&w.message("alice", "t-2", None)));
    assert!(next.body.contains("auth-required"));
    assert_eq!(w.host.counter(metrics::BINDING_REFUSED), 2);
    // alice's own token passes.
    let alice_token = w.bank_token("alice");
    let Verdict::Forward(_) = w.decide(&w.message("alice", "t-3", Some(json!({"accessToken": alice_token}))))
    else {
        panic!("alice's own bank token was refused")
    };
}

#[test]
fn redirects_name_their_issuer() {
    let mut w = world(json!({"secondaryClaim": "sub"}), |c| {
        c["secondaryIdp"]["requireIssuerInResponse"] = json!(true)
    });
    for (iss, reason) in [(Some("https://evil.example"), "issuer_mismatch"), (None, "issuer_missing")] {
        let (_, state) = w.challenge("alice", "t-1");
        let iss = iss.map(|iss| format!("&iss={}", urlencoding(iss))).unwrap_or_default();
        let mut request = get(&format!("/a2a/oauth/callback?code=b1&state={state}{iss}"), None);
        request.accept = Some("application/json".into());
        let refused = reply(w.decide(&request));
        assert_eq!(refused.status, 400);
        assert!(refused.body.contains(reason), "{}", refused.body);
        // The state is used up: a mix-up attempt ends the authorization,
        // and the bank's own redirect after it is refused as reused.
        let mut again =
            get(&format!("/a2a/oauth/callback?code=b1&state={state}&iss={}", urlencoding(BANK)), None);
        again.accept = Some("application/json".into());
        let again = reply(w.decide(&again));
        assert_eq!(again.status, 400, "{reason}");
        assert!(again.body.contains("state_reused"), "{reason}: {}", again.body);
    }
    assert_eq!(w.host.counter(metrics::ISSUER_MISMATCH), 2);
    let (_, state) = w.challenge("alice", "t-1");
    let good = get(&format!("/a2a/oauth/callback?code=b1&state={state}&iss={}", urlencoding(BANK)), None);
    assert!(matches!(w.decide(&good), Verdict::AwaitCall(_)));
    // Without requireIssuerInResponse an absent iss is accepted, a wrong
    // one never.
    let mut lax = world(json!({"secondaryClaim": "sub"}), |_| {});
    let (_, state) = lax.challenge("alice", "t-1");
    assert!(matches!(
        lax.decide(&get(&format!("/a2a/oauth/callback?code=b1&state={state}"), None)),
        Verdict::AwaitCall(_)
    ));
    let (_, state) = lax.challenge("alice", "t-2");
    let wrong = get(&format!("/a2a/oauth/callback?code=b1&state={state}&iss=https%3A%2F%2Fevil"), None);
    assert_eq!(reply(lax.decide(&wrong)).status, 400);
}

#[test]
fn a_primary_login_is_checked_at_load() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("scopes", json!(["profile"]), "userBinding.primaryLogin.scopes"),
        ("redirectUri", json!("https://elsewhere.example/signed-in"), "userBinding.primaryLogin.redirectUri"),
        (
            "redirectUri",
            json!("https://gw.example/a2a/oauth/callback"),
            "userBinding.primaryLogin.redirectUri",
        ),
        (
            "providers",
            json!([{"name": "c", "issuer": CORP, "audiences": ["agents"], "algorithms": ["ES256"],
                              "jwks": {"remote": {"cluster": "corp_idp", "path": "/jwks"}}}]),
            "userBinding.primaryLogin.providers[0].audiences",
        ),
    ];
    for (key, value, field) in cases {
        let mut config = config::tests::base();
        config["userBinding"] = json!({"primaryLogin": primary_login()});
        config["userBinding"]["primaryLogin"][key] = value;
        let error = config::parse(config.to_string().as_bytes()).expect_err(field);
        assert_eq!(error.field, field, "{key}");
    }
    let mut config = config::tests::base();
    config["userBinding"] = json!({"primaryLogin": primary_login(), "startPath": "/a2a/oauth/callback"});
    assert_eq!(
        config::parse(config.to_string().as_bytes()).unwrap_err().field,
        "userBinding.primaryLogin.redirectUri"
    );
}

fn urlencoding(text: &str) -> String {
    baton_token::oauth::form_urlencode(&[("x", text)]).trim_start_matches("x=").to_string()
}

#[test]
fn a_code_in_a_message_with_another_servers_iss_is_refused() {
    let mut w = world(json!({"secondaryClaim": "sub"}), |_| {});
    let (_, state) = w.challenge("alice", "t-1");
    let message =
        w.message("alice", "t-1", Some(json!({"code": "c", "state": state, "iss": "https://evil.example"})));
    let refused = reply(w.decide(&message));
    assert_eq!(refused.status, 400, "{}", refused.body);
    // The state is used up: the same state with the right issuer is then
    // refused as reused; a fresh one with the right issuer goes on to the
    // exchange.
    assert!(w.engine.store.peek_state(&w.host, &state).unwrap().used);
    let message = w.message("alice", "t-1", Some(json!({"code": "c", "state": state, "iss": BANK})));
    assert_eq!(reply(w.decide(&message)).status, 400);
    let (_, fresh) = w.challenge("alice", "t-2");
    let message = w.message("alice", "t-2", Some(json!({"code": "c", "state": fresh, "iss": BANK})));
    assert!(matches!(w.decide(&message), Verdict::AwaitCall(_)));
    assert_eq!(w.host.counter(metrics::ISSUER_MISMATCH), 1);
}
