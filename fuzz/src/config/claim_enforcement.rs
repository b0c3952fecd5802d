//! claim-enforcement's plugin configuration (`config::parse`) on arbitrary
//! bytes.
//!
//! Asserts (besides [`check_config`]: no panic, deterministic,
//! errors name a problem, formatting does not change the meaning): an
//! accepted configuration has at least one provider, each with an
//! audience and an algorithm and at most 600 s of leeway; header names are
//! valid, lower-case and never a reserved or the token's own header; the
//! realm cannot break a challenge header; limits are in their documented
//! ranges; routes only name configured providers.

use crate::config::check_config;
use crate::reference::is_header_name;
use claim_enforcement::config::{FilterConfig, parse};
use claim_enforcement::routes::RouteAction;

/// The target's one call: checks `data` as the module documentation says.
pub fn check(data: &[u8]) {
    check_config(data, parse, |e| &e.message, |c: &mut FilterConfig| c.fingerprint.clear(), invariants);
}

/// What an accepted configuration always holds.
fn invariants(config: &FilterConfig) {
    assert!(!config.providers.is_empty());
    for provider in config.providers.iter() {
        assert!(!provider.name.is_empty() && !provider.policy.issuer.is_empty());
        assert!(
            !provider.policy.audiences.is_empty() && provider.policy.audiences.iter().all(|a| !a.is_empty())
        );
        assert!(!provider.policy.algorithms.is_empty());
        assert!(provider.policy.clock_skew_secs <= 600);
    }
    assert!(is_header_name(&config.token_source.header), "{:?}", config.token_source.header);
    let mut seen = Vec::new();
    for header in config.identity_headers() {
        assert!(is_header_name(header), "{header:?}");
        assert_ne!(header, config.token_source.header);
        assert!(!["authorization", "host", "content-length", "cookie"].contains(&header));
        assert!(!seen.contains(&header), "{header:?} set twice");
        seen.push(header);
    }
    if let Some(realm) = &config.realm {
        assert!(!realm.chars().any(|c| c == '"' || c == '\\' || c.is_control()), "{realm:?}");
    }
    if let Some(url) = &config.resource_metadata {
        assert!(url.starts_with("https://") || url.starts_with("http://"));
    }
    assert!((64..=1024 * 1024).contains(&config.max_token_bytes));
    assert!(config.cache_entries <= 1_000_000);
    for route in &config.routes {
        if let RouteAction::RequireToken { providers, .. } = &route.action {
            assert!(providers.iter().all(|p| *p < config.providers.len()));
        }
    }
}
