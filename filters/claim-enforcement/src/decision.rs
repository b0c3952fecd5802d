//! The per-request decision: which route, which token, is it valid, does it
//! satisfy the route, and what the upstream or the client gets.
//!
//! Plain Rust over the [`Host`] trait, so every branch runs in native tests.
//! The proxy glue (`http.rs`, `root.rs`) only gathers the request and applies
//! the [`Verdict`].

use std::rc::Rc;

use baton_filter_kit::audit::AuditLine;
use baton_filter_kit::handoff::{VERIFIED_TOKEN_PROPERTY, verified_value};
use baton_filter_kit::host::{Host, LogLevel};
use baton_filter_kit::matching::ambiguous_path;
use baton_filter_kit::runtime;
use baton_filter_kit::verifier::{CacheOutcome, KeyWait, TokenVerifier, VerifiedToken, VerifyError};
use baton_token::rules::AccessDecision;
use baton_token::secret::Secret;
use serde_json::Value;

use baton_filter_kit::credential::{Credential, TokenProblem, extract_token};

use crate::config::FilterConfig;
use crate::denial::Denial;
use crate::metrics;
use crate::routes::{self, RouteAction};

/// What the decision needs of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `:method`.
    pub method: String,
    /// `:path`, query included.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Where the request names a second method (`X-HTTP-Method-Override`,
    /// `_method`), read when routes match methods.
    pub method_override: Option<&'static str>,
    /// The token header.
    pub credential: Credential,
}

/// What happens to a request: forwarded (identity headers set, the token
/// header removed, the verified token recorded), answered, or held for keys.
pub type Verdict = runtime::Verdict<()>;

/// The changes a forwarded request gets.
pub type Forward = runtime::Forward<()>;

#[derive(Debug)]
pub struct Engine {
    config: Rc<FilterConfig>,
    /// Providers, keys and the verified-token cache.
    pub verifier: TokenVerifier,
}

impl Engine {
    /// Builds the state for a configuration.
    pub fn new(config: Rc<FilterConfig>) -> Self {
        let verifier = TokenVerifier::new(
            Rc::clone(&config.providers),
            &format!("baton.ce.{}.", config.fingerprint),
            config.cache_entries,
            config.max_token_bytes,
            metrics::JWKS,
        );
        Self { config, verifier }
    }

    /// The configuration.
    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// The configuration, shared.
    pub fn shared_config(&self) -> Rc<FilterConfig> {
        Rc::clone(&self.config)
    }

    /// Decides what happens to `request`.
    pub fn decide(&mut self, host: &dyn Host, request: &Request, wait: KeyWait) -> Verdict {
        let config = Rc::clone(&self.config);
        let mut audit = AuditLine::new(host, config.audit_log);
        // A route decides on this path only if no other hop can read
        // another one from it.
        if config.match_inputs.path
            && let Some(why) = ambiguous_path(&request.path)
        {
            audit.route("-");
            return self.deny(host, audit, &Denial::AmbiguousPath(why));
        }
        // Nor on this method, if the backend may act on another one.
        if config.match_inputs.method
            && let Some(second) = request.method_override
        {
            audit.route("-");
            return self.deny(host, audit, &Denial::AmbiguousMethod(second));
        }
        let route = routes::find(&config.routes, &request.method, &request.path, &request.authority);
        let (providers, requirement) = match route {
            None if config.allow_unmatched => {
                audit.route("-").allow("unmatched_allowed");
                return self.pass(host, &audit);
            }
            None => {
                audit.route("-");
                return self.deny(host, audit, &Denial::NoRoute);
            }
            Some(route) => {
                audit.route(&route.name);
                match &route.action {
                    RouteAction::Allow => {
                        audit.allow("public_route");
                        return self.pass(host, &audit);
                    }
                    RouteAction::RequireToken { providers, requirement } => (providers, requirement),
                }
            }
        };

        let token = match extract_token(&request.credential, &config.token_source.prefix) {
            Ok(token) => token,
            Err(TokenProblem::Missing) => return self.deny(host, audit, &Denial::MissingToken),
            Err(TokenProblem::Malformed(why)) => {
                return self.deny(host, audit, &Denial::MalformedCredential(why));
            }
        };
        let verdict = self.verifier.verify(host, token, providers, wait);
        // A token's hash identifies it in the audit line; a verified one
        // carries it, a refused one is hashed only when the line is written.
        match &verdict {
            Ok((verified, _)) => {
                audit.token(&verified.hash);
            }
            Err(_) => {
                audit.token_as("token", token.as_bytes());
            }
        }
        let (verified, outcome) = match verdict {
            Ok(verified) => verified,
            Err(VerifyError::AwaitKeys(provider)) => return Verdict::AwaitKeys(provider),
            Err(VerifyError::KeysUnavailable(provider)) => {
                let name = config.providers.get(provider).map_or("?", |p| p.name.as_str());
                return self.deny(host, audit, &Denial::KeysUnavailable(name.to_string()));
            }
            Err(VerifyError::Invalid { reason, description }) => {
                return self.deny(host, audit, &Denial::InvalidToken { reason, description });
            }
        };
        host.count(match outcome {
            CacheOutcome::HitLocal => metrics::CACHE_HIT_LOCAL,
            CacheOutcome::HitShared => metrics::CACHE_HIT_SHARED,
            CacheOutcome::Miss => metrics::CACHE_MISS,
        });
        audit.cache(outcome.label());
        let provider_name = config.providers.get(verified.provider).map_or("?", |p| p.name.as_str());
        audit.identity(provider_name, &verified.claims);

        match requirement.evaluate(&verified.claims, host.now_unix_secs()) {
            AccessDecision::Granted => {
                audit.allow("granted");
                audit.emit(host);
                host.count(metrics::ALLOWED);
                Verdict::Forward(self.forward(host, &verified))
            }
            AccessDecision::StepUpRequired => self.deny(host, audit, &Denial::StepUpRequired(requirement)),
            decision => self.deny(host, audit, &Denial::InsufficientScope { decision, requirement }),
        }
    }

    /// Forwards unchecked (a public route): no identity but none spoofed.
    fn pass(&self, host: &dyn Host, audit: &AuditLine) -> Verdict {
        audit.emit(host);
        host.count(metrics::ALLOWED_PUBLIC);
        Verdict::Forward(self.identity_forward(Vec::new()))
    }

    /// A forward that sets `set` as the identity headers: every client copy
    /// of them, in any spelling a backend reads as the same name, goes
    /// first, so each is the filter's value or absent.
    fn identity_forward(&self, set: Vec<(String, Secret)>) -> Forward {
        Forward {
            strip: self.config.identity_headers().map(String::from).collect(),
            set,
            ..Forward::default()
        }
    }

    fn forward(&self, host: &dyn Host, verified: &VerifiedToken) -> Forward {
        let mut set_headers = Vec::with_capacity(self.config.forward_claims.len() + 1);
        for claim in &self.config.forward_claims {
            let Some(value) = verified.claims.select(&claim.claim) else {
                continue;
            };
            match header_value(value) {
                Some(text) => set_headers.push((claim.header.clone(), text)),
                None => {
                    host.count(metrics::CLAIM_HEADER_SKIPPED);
                    host.log(
                        LogLevel::Warn,
                        &format!("claim {} not forwarded: its value cannot be a header value", claim.claim),
                    );
                }
            }
        }
        if let Some(header) = &self.config.forward_payload_header {
            set_headers.push((header.clone(), verified.payload_segment.clone()));
        }
        let set = set_headers.into_iter().map(|(name, value)| (name, Secret::new(value))).collect();
        Forward {
            remove: if self.config.forward_token {
                Vec::new()
            } else {
                vec![self.config.token_source.header.clone()]
            },
            property: self
                .config
                .share_verified_token
                .then(|| (VERIFIED_TOKEN_PROPERTY, verified_value(&verified.hash))),
            ..self.identity_forward(set)
        }
    }

    /// Answers with `denial`: its audit line, counter and reply.
    fn deny(&self, host: &dyn Host, mut audit: AuditLine, denial: &Denial<'_>) -> Verdict {
        let reply = denial.reply(|challenge| {
            challenge
                .with_realm(self.config.realm.as_deref())
                .with_resource_metadata(self.config.resource_metadata.as_deref())
        });
        audit.deny(reply.status, &denial.reason());
        audit.emit(host);
        host.count(denial.counter());
        Verdict::Reply(reply)
    }
}

/// A claim as a header value: strings as they are, arrays joined with
/// commas, objects as compact JSON. `None` when the value contains characters
/// no header value may hold.
fn header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(text) => text.clone(),
        Value::Bool(_) | Value::Number(_) | Value::Object(_) => value.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
    };
    let valid = text.chars().all(|c| c == '\t' || !c.is_control());
    valid.then_some(text)
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
