//! Why claim-enforcement answers a request itself, and what each reason
//! becomes: status, `WWW-Authenticate` challenge (RFC 6750, RFC 9470), JSON
//! body, counter and audit reason, all in [`Denial::reply`] and its
//! neighbours, so the decision code names reasons, never statuses.

use baton_filter_kit::host::Counter;
use baton_filter_kit::reply::Reply;
use baton_token::rules::{AccessDecision, AccessRequirement};
use baton_token::{AuthChallenge, BearerError};

use crate::metrics;

/// A refusal.
#[derive(Debug, Clone, PartialEq)]
pub enum Denial<'a> {
    /// The path could mean another at the next hop.
    AmbiguousPath(&'static str),
    /// The request names a second method (header or `_method`).
    AmbiguousMethod(&'static str),
    /// No route matches and unmatched requests are denied.
    NoRoute,
    /// No bearer token (or another scheme).
    MissingToken,
    /// The credential header is malformed or repeated.
    MalformedCredential(&'static str),
    /// The issuer's keys cannot be had (provider name).
    KeysUnavailable(String),
    /// The token failed parsing, signature or claim validation.
    InvalidToken {
        /// Audit label.
        reason: &'static str,
        /// What the client is told.
        description: String,
    },
    /// A scope is missing or a claim condition failed.
    InsufficientScope {
        /// Why, as decided by the route's rules.
        decision: AccessDecision,
        /// The route's requirement (its scopes go in the challenge).
        requirement: &'a AccessRequirement,
    },
    /// The login is too weak or too old (RFC 9470).
    StepUpRequired(&'a AccessRequirement),
}

impl Denial<'_> {
    /// The counter it adds to.
    pub fn counter(&self) -> Counter {
        match self {
            Denial::AmbiguousPath(_) => metrics::DENIED_AMBIGUOUS_PATH,
            Denial::AmbiguousMethod(_) => metrics::DENIED_AMBIGUOUS_METHOD,
            Denial::NoRoute => metrics::DENIED_NO_ROUTE,
            Denial::MissingToken => metrics::DENIED_MISSING_TOKEN,
            Denial::MalformedCredential(_) => metrics::DENIED_INVALID_REQUEST,
            Denial::KeysUnavailable(_) => metrics::DENIED_KEYS_UNAVAILABLE,
            Denial::InvalidToken { .. } => metrics::DENIED_INVALID_TOKEN,
            Denial::InsufficientScope { .. } => metrics::DENIED_INSUFFICIENT_SCOPE,
            Denial::StepUpRequired(_) => metrics::DENIED_STEP_UP,
        }
    }

    /// The audit line's `reason`.
    pub fn reason(&self) -> String {
        match self {
            Denial::AmbiguousPath(_) => "ambiguous_path".into(),
            Denial::AmbiguousMethod(_) => "ambiguous_method".into(),
            Denial::NoRoute => "no_route".into(),
            Denial::MissingToken => "missing_token".into(),
            Denial::MalformedCredential(_) => "invalid_request".into(),
            Denial::KeysUnavailable(provider) => format!("keys_unavailable:{provider}"),
            Denial::InvalidToken { reason, .. } => (*reason).into(),
            Denial::InsufficientScope { decision, .. } => decision.reason().into(),
            Denial::StepUpRequired(_) => AccessDecision::StepUpRequired.reason().into(),
        }
    }

    /// The answer; `challenge` adds the realm and resource metadata.
    pub fn reply(&self, challenge: impl Fn(AuthChallenge) -> AuthChallenge) -> Reply {
        match self {
            Denial::AmbiguousPath(why) => Reply::json(400, "invalid_request", why),
            Denial::AmbiguousMethod(second) => {
                Reply::json(400, "invalid_request", &baton_filter_kit::matching::ambiguous_method(second))
            }
            Denial::NoRoute => Reply::json(403, "access_denied", "no route policy allows this request"),
            Denial::MissingToken => Reply::challenged(
                &challenge(AuthChallenge::bearer()),
                "unauthorized",
                "a bearer token is required",
            ),
            Denial::MalformedCredential(why) => Reply::challenged(
                &challenge(AuthChallenge::error(BearerError::InvalidRequest, *why)),
                "invalid_request",
                why,
            ),
            Denial::KeysUnavailable(_) => Reply::json(
                503,
                "temporarily_unavailable",
                "the token issuer's keys are not available; retry shortly",
            )
            .with_header("retry-after", "5"),
            Denial::InvalidToken { description, .. } => Reply::challenged(
                &challenge(AuthChallenge::error(BearerError::InvalidToken, description.clone())),
                "invalid_token",
                description,
            ),
            Denial::InsufficientScope { decision, requirement } => {
                let description = decision.description();
                let header = AuthChallenge::error(BearerError::InsufficientScope, description.clone())
                    .with_scope(requirement.scopes.named());
                Reply::challenged(&challenge(header), "insufficient_scope", &description)
            }
            Denial::StepUpRequired(requirement) => {
                let step_up = requirement.step_up.as_ref();
                let description = AccessDecision::StepUpRequired.description();
                let header =
                    AuthChallenge::error(BearerError::InsufficientUserAuthentication, description.clone())
                        .with_acr_values(
                            step_up.into_iter().flat_map(|s| s.acr_values.iter().map(String::as_str)),
                        )
                        .with_max_age(step_up.and_then(|s| s.max_age_seconds));
                Reply::challenged(&challenge(header), "insufficient_user_authentication", &description)
            }
        }
    }
}
