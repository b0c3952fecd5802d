//! in-task-auth-code's plugin configuration (`config::parse`) on arbitrary
//! bytes, and the authorization URL an accepted configuration makes.
//!
//! Asserts (besides [`check_config`]: no panic, deterministic,
//! errors name a problem, formatting does not change the meaning): an
//! accepted configuration has absolute http(s) endpoints, valid scopes and
//! header names, an identity header apart from the one the user comes in,
//! a user binding, verifiers for every token it relies on, redirect URIs
//! over https or to loopback, values in their documented ranges; a
//! challenge issued with it links to the gateway's sign-in start (with the
//! state only) or to the bank; and each authorization URL (the sign-in's
//! and the bank's) carries each parameter the gateway sets
//! (`response_type`, `client_id`, `redirect_uri`, `state`, `code_challenge`,
//! `code_challenge_method`, `scope`, `nonce`) exactly once, with the
//! gateway's values, so configuration can never override them.

use crate::config::check_config;
use crate::fixtures::NOW;
use crate::reference::{form_decode, is_header_name, lenient_pairs};
use baton_filter_kit::test_host::TestHost;
use in_task_auth_code::a2a::TaskIds;
use in_task_auth_code::challenge::issue;
use in_task_auth_code::config::parse;
use in_task_auth_code::model::{FilterConfig, PrimaryVerification};
use in_task_auth_code::oauth_server::{AuthorizationServer, is_loopback, origin};
use in_task_auth_code::store::Store;

/// The target's one call: checks `data` as the module documentation says.
pub fn check(data: &[u8]) {
    check_config(data, parse, |e| &e.message, |c: &mut FilterConfig| c.fingerprint.clear(), invariants);
}

/// What an accepted configuration always holds, and the challenge it makes.
fn invariants(config: &FilterConfig) {
    let idp = &config.idp;
    let mut servers = vec![idp];
    if let Some(login) = &config.binding.primary_login {
        servers.push(&login.server);
        assert!(login.start_path.starts_with('/'));
        assert_eq!(origin(&login.server.redirect_uri), origin(&idp.redirect_uri), "one origin, one cookie");
        assert!(![&idp.redirect_path, &login.server.redirect_path].contains(&&login.start_path));
        assert_ne!(idp.redirect_path, login.server.redirect_path);
    }
    // Someone checks that who authorizes is who asked.
    assert!(config.binding.primary_login.is_some() || config.binding.secondary_claim.is_some());
    for server in &servers {
        for url in [&server.authorization_endpoint, &server.token_endpoint_url, &server.redirect_uri] {
            assert!(url.starts_with("https://") || url.starts_with("http://"), "{url:?}");
            assert!(!url.contains(char::is_whitespace), "{url:?}");
        }
        // A redirect URI over plain http only to this machine.
        assert!(server.redirect_uri.starts_with("https://") || is_loopback(&server.redirect_uri));
        assert!(server.redirect_path.starts_with('/'));
        assert!(server.redirect_uri.ends_with(&server.redirect_path) || server.redirect_uri.contains('?'));
        assert!(server.scopes.iter().all(|s| !s.is_empty() && !s.contains(' ')));
        assert!(!server.provider_ids.is_empty());
        assert!(server.provider_ids.iter().all(|&i| i < config.providers.len()));
        assert!(!server.issuer.is_empty());
    }
    // The user comes from a token someone verifies on this request.
    if let PrimaryVerification::Providers(ids) = &config.primary.verification {
        assert!(!ids.is_empty() && ids.iter().all(|&i| i < config.providers.len()));
    }
    assert!(!config.rules.is_empty());
    for rule in &config.rules {
        assert!(!rule.name.is_empty());
        if let Some(when) = &rule.when {
            assert!(when.pointer.starts_with('/') && !when.values.is_empty());
        }
    }
    assert!(is_header_name(&config.primary.header));
    assert!(is_header_name(&config.inject_header));
    if let Some(identity) = &config.identity_header {
        assert!(is_header_name(identity));
        assert_ne!(identity, &config.inject_header);
        assert_ne!(identity, &config.primary.header);
    }
    assert!((30..=3600).contains(&config.state_ttl_secs));
    assert!((200..=599).contains(&config.challenge_status));
    assert!((1024..=16 * 1024 * 1024).contains(&config.max_body_bytes));
    assert!((1..=1_000_000).contains(&config.cache_entries));
    let limits = config.store_limits;
    assert!(limits.pending >= 1 && limits.tokens >= 1);
    assert!(limits.pending_per_user >= 1 && limits.tokens_per_user >= 1);

    // The challenge this configuration makes.
    let host = TestHost::new(NOW);
    let store = Store::new(limits, "fuzz.");
    store.init(&host);
    let ids = TaskIds { task_id: "task-1".into(), context_id: "ctx-1".into() };
    let issued = issue(config, &store, &host, "alice", &ids, true, None)
        .expect("the test host has randomness and room");
    let url = issued.object["authorizationUrl"].as_str().expect("a URL");
    match &config.binding.primary_login {
        // The link opens the gateway's own sign-in start, with the state only.
        Some(login) => {
            let start = format!("{}{}?", origin(&idp.redirect_uri), login.start_path);
            assert!(url.starts_with(&start), "{url:?}");
            let pairs = form_decode(&url[start.len()..]).expect("form-encoded");
            assert_eq!(pairs, [("state".to_string(), issued.state.clone())]);
            check_authorization_url(&login.server, &issued.state, true);
            check_authorization_url(idp, &issued.state, false);
        }
        // The link is the bank's authorization URL itself.
        None => {
            let challenge = param(url, "code_challenge");
            assert_eq!(challenge.len(), 43, "S256 of a verifier: 32 bytes in base64url");
            assert!(challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(url, idp.authorization_url(&issued.state, &challenge, None));
            check_authorization_url(idp, &issued.state, false);
        }
    }
}

const VERIFIER_IN_TEST: &str = "0123456789012345678901234567890123456789abc";

fn challenge_of(verifier: &str) -> String {
    baton_token::pkce::s256_challenge(verifier)
}

/// The one value of `name` in `url`'s query (read leniently).
fn param(url: &str, name: &str) -> String {
    let sent = url.split_once('#').map_or(url, |(sent, _)| sent);
    let query = sent.split_once('?').map_or("", |(_, query)| query);
    lenient_pairs(query).into_iter().find(|(n, _)| n == name).map(|(_, v)| v).unwrap_or_default()
}

/// The authorization URL of `server` carries each parameter the gateway
/// sets exactly once, with the gateway's values, so configuration can never
/// override them.
fn check_authorization_url(server: &AuthorizationServer, state: &str, with_nonce: bool) {
    let challenge = challenge_of(VERIFIER_IN_TEST);
    let nonce = with_nonce.then_some("nonce-in-test");
    let url = server.authorization_url(state, &challenge, nonce);
    assert!(url.starts_with(&server.authorization_endpoint));
    // RFC 3986: the fragment comes last and is never sent; the query is
    // what lies between the first `?` and it.
    let sent = url.split_once('#').map_or(url.as_str(), |(sent, _)| sent);
    let query = sent.split_once('?').map_or("", |(_, query)| query);
    // What the gateway appends is strictly form-encoded; the configured
    // endpoint's own query (if any) is read as leniently as an IdP might.
    let own = &url[server.authorization_endpoint.len() + 1..];
    assert!(form_decode(own).is_some(), "the gateway's parameters are not form-encoded: {own:?}");
    let pairs = lenient_pairs(query);
    let once = |name: &str| -> String {
        let values: Vec<&String> = pairs.iter().filter(|(n, _)| n == name).map(|(_, v)| v).collect();
        assert_eq!(values.len(), 1, "{name} appears {} times in {url:?}", values.len());
        values[0].clone()
    };
    assert_eq!(once("response_type"), "code");
    assert_eq!(once("client_id"), server.token_endpoint.client_auth.client_id());
    assert_eq!(once("redirect_uri"), server.redirect_uri);
    assert_eq!(once("state"), state);
    assert_eq!(once("code_challenge_method"), "S256");
    assert_eq!(once("code_challenge"), challenge);
    if let Some(nonce) = nonce {
        assert_eq!(once("nonce"), nonce);
    }
    if !server.scopes.is_empty() {
        assert_eq!(once("scope"), server.scopes.join(" "));
    }
}
