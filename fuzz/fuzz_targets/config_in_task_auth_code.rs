//! in-task-auth-code's plugin configuration (`config::parse`) on arbitrary
//! bytes, and the authorization URL an accepted configuration makes.
//!
//! Asserts (besides [`baton_fuzz::check_config`]: no panic, deterministic,
//! errors name a problem, formatting does not change the meaning): an
//! accepted configuration has absolute http(s) endpoints, valid scopes and
//! header names, an identity header apart from the one the user comes in,
//! values in their documented ranges; and a challenge issued with it has an
//! authorization URL on the configured endpoint that carries each parameter
//! the gateway sets (`response_type`, `client_id`, `redirect_uri`, `state`,
//! `code_challenge`, `code_challenge_method`, `scope`) exactly once, with
//! the gateway's values, so configuration can never override them.
#![no_main]

use baton_filter_kit::test_host::TestHost;
use baton_fuzz::{NOW, check_config, form_decode, is_header_name};
use in_task_auth_code::a2a::TaskIds;
use in_task_auth_code::challenge::issue;
use in_task_auth_code::config::parse;
use in_task_auth_code::model::{FilterConfig, PrimaryIdentity};
use in_task_auth_code::store::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_config(data, parse, |e| &e.message, |c: &mut FilterConfig| c.fingerprint.clear(), check);
});

fn check(config: &FilterConfig) {
    let idp = &config.idp;
    for url in [&idp.authorization_endpoint, &idp.token_endpoint_url, &idp.redirect_uri] {
        assert!(url.starts_with("https://") || url.starts_with("http://"), "{url:?}");
        assert!(!url.contains(char::is_whitespace), "{url:?}");
    }
    assert!(idp.scopes.iter().all(|s| !s.is_empty() && !s.contains(' ')));
    assert!(!idp.providers.is_empty());
    assert!(!config.rules.is_empty());
    for rule in &config.rules {
        assert!(!rule.name.is_empty());
        if let Some(when) = &rule.when {
            assert!(when.pointer.starts_with('/') && !when.values.is_empty());
        }
    }
    assert!(is_header_name(config.primary.header()));
    assert!(is_header_name(&config.inject_header));
    if let Some(identity) = &config.identity_header {
        assert!(is_header_name(identity));
        assert_ne!(identity, &config.inject_header);
        if let PrimaryIdentity::Header(source) = &config.primary {
            assert_ne!(identity, source);
        }
    }
    assert!(config.callback_path.starts_with('/'));
    assert!((30..=3600).contains(&config.state_ttl_secs));
    assert!((200..=599).contains(&config.challenge_status));
    assert!((1024..=16 * 1024 * 1024).contains(&config.max_body_bytes));
    assert!((1..=1_000_000).contains(&config.cache_entries));

    // The challenge this configuration makes.
    let host = TestHost::new(NOW);
    let store = Store::new(config.cache_entries, "fuzz.");
    let ids = TaskIds { task_id: "task-1".into(), context_id: "ctx-1".into() };
    let issued =
        issue(config, &store, &host, "alice", &ids, true, None).expect("the test host has randomness");
    let url = issued.object["authorizationUrl"].as_str().expect("a URL");
    assert!(url.starts_with(&idp.authorization_endpoint));
    // RFC 3986: the fragment comes last and is never sent; the query is
    // what lies between the first `?` and it.
    let sent = url.split_once('#').map_or(url, |(sent, _)| sent);
    let query = sent.split_once('?').map_or("", |(_, query)| query);
    // What the gateway appends is strictly form-encoded; the configured
    // endpoint's own query (if any) is read as leniently as an IdP might.
    let own = &url[idp.authorization_endpoint.len() + 1..];
    assert!(form_decode(own).is_some(), "the gateway's parameters are not form-encoded: {own:?}");
    let pairs = lenient_pairs(query);
    let once = |name: &str| -> String {
        let values: Vec<&String> = pairs.iter().filter(|(n, _)| n == name).map(|(_, v)| v).collect();
        assert_eq!(values.len(), 1, "{name} appears {} times in {url:?}", values.len());
        values[0].clone()
    };
    assert_eq!(once("response_type"), "code");
    assert_eq!(once("client_id"), idp.token_endpoint.client_auth.client_id());
    assert_eq!(once("redirect_uri"), idp.redirect_uri);
    assert_eq!(once("state"), issued.state);
    assert_eq!(once("code_challenge_method"), "S256");
    let challenge = once("code_challenge");
    assert_eq!(challenge.len(), 43, "S256 of a verifier: 32 bytes in base64url");
    assert!(challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    if !idp.scopes.is_empty() {
        assert_eq!(once("scope"), idp.scopes.join(" "));
    }
}

/// Query pairs, with malformed escapes kept as they are.
fn lenient_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |text: &str| -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'%', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (b'+', _) => {
                    out.push(b' ');
                    i += 1;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}
