//! obo-credential-injection's plugin configuration (`config::parse`) on
//! arbitrary bytes.
//!
//! Asserts (besides [`check_config`]: no panic, deterministic,
//! errors name a problem, formatting does not change the meaning): an
//! accepted configuration has identity providers and targets with unique
//! names; every target names an existing IdP, injects into a valid header,
//! and sends no reserved form parameter as an "extra" one; a target that
//! exchanges a subject token has a subject token source; the client secret
//! has no influence on debug output; cache limits are in range.

use crate::config::check_config;
use crate::reference::is_header_name;
use baton_token::oauth::{ClientAuth, RESERVED_PARAMETERS};
use baton_token::secret::Secret;
use obo_credential_injection::config::parse;
use obo_credential_injection::model::{FilterConfig, Mode, TargetGrant};

/// The target's one call: checks `data` as the module documentation says.
pub fn check(data: &[u8]) {
    check_config(data, parse, |e| &e.message, |c: &mut FilterConfig| c.fingerprint.clear(), invariants);
}

/// What an accepted configuration always holds.
fn invariants(config: &FilterConfig) {
    assert!(!config.idps.is_empty() && !config.targets.is_empty());
    for (index, idp) in config.idps.iter().enumerate() {
        assert!(!idp.name.is_empty());
        assert!(config.idps[..index].iter().all(|other| other.name != idp.name));
    }
    for (index, target) in config.targets.iter().enumerate() {
        assert!(config.targets[..index].iter().all(|other| other.name != target.name));
        assert!(target.idp().is_none_or(|idp| idp < config.idps.len()));
        assert_eq!(target.idp().is_none(), target.mode() == Mode::IdentityAssertion);
        assert!(is_header_name(&target.inject.header), "{:?}", target.inject.header);
        let extra = match &target.grant {
            TargetGrant::TokenExchange(exchange) => exchange.extra_parameters.as_slice(),
            TargetGrant::EntraOnBehalfOf(obo) => obo.extra_parameters.as_slice(),
            _ => &[],
        };
        for (name, _) in extra {
            assert!(!RESERVED_PARAMETERS.contains(&name.as_str()), "reserved parameter {name:?}");
        }
        if target.mode().needs_subject() {
            assert!(config.subject.is_some(), "target {:?} has no subject token source", target.name);
        }
    }
    assert!((1..=1_000_000).contains(&config.cache_entries));
    assert!((1..=3600).contains(&config.default_lifetime_secs));
    if let Some(realm) = &config.realm {
        assert!(!realm.chars().any(|c| c == '"' || c == '\\' || c.is_control()), "{realm:?}");
    }
    // The secret has no influence on debug output (so logs never carry it).
    for idp in &config.idps {
        let auth = &idp.endpoint.client_auth;
        let other = match auth {
            ClientAuth::Basic { client_id, .. } => {
                ClientAuth::Basic { client_id: client_id.clone(), secret: Secret::new("other") }
            }
            ClientAuth::Post { client_id, .. } => {
                ClientAuth::Post { client_id: client_id.clone(), secret: Secret::new("other") }
            }
            ClientAuth::Public { .. } => auth.clone(),
        };
        assert_eq!(format!("{auth:?}"), format!("{other:?}"), "a client secret shows in debug output");
    }
}
