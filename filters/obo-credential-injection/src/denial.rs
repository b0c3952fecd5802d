//! Why obo-credential-injection answers a request itself, and what each
//! reason becomes: status, `WWW-Authenticate` challenge, JSON body, counter
//! and audit reason, in one place. A failed token endpoint call is a
//! [`Denial`] too: every request that waited for it gets it.

use baton_filter_kit::host::Counter;
use baton_filter_kit::reply::Reply;
use baton_token::{AuthChallenge, BearerError};

use crate::metrics;

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The path could mean another at the next hop.
    AmbiguousPath(&'static str),
    /// The request names a second method (header or `_method`).
    AmbiguousMethod(&'static str),
    /// No target matches and unmatched requests are denied.
    NoTarget,
    /// The delegation policy refuses the caller (why).
    Delegation(String),
    /// No subject token (or another scheme).
    MissingToken,
    /// The credential header is malformed or repeated.
    MalformedCredential(&'static str),
    /// The subject token was refused before any call.
    InvalidToken {
        /// Audit label.
        reason: String,
        /// What the client is told.
        description: String,
    },
    /// No token can be had now (audit label: keys, configuration, a wait
    /// that ran out).
    Unavailable(String),
    /// The IdP refused the caller's token (`invalid_grant`).
    SubjectRefusedByIdp {
        /// Audit label.
        reason: String,
        /// The IdP's error code.
        code: String,
    },
    /// The IdP will not issue this token for this user
    /// (`invalid_target`, `invalid_scope`).
    TargetRefusedByIdp {
        /// Audit label.
        reason: String,
        /// The IdP's error code.
        code: String,
    },
    /// The IdP refused the gateway itself (its client, its grant, its
    /// request): a configuration fault, not the caller's.
    GatewayRefused(String),
    /// The IdP issued a token for another audience or issuer.
    WrongAudience,
    /// The IdP did not serve (audit label).
    IdpUnavailable(String),
}

impl Denial {
    /// A request waited longer than any call could take.
    pub fn wait_timeout() -> Self {
        Denial::IdpUnavailable("wait_timeout".into())
    }

    /// The counter it adds to.
    pub fn counter(&self) -> Counter {
        match self {
            Denial::AmbiguousPath(_) => metrics::DENIED_AMBIGUOUS_PATH,
            Denial::AmbiguousMethod(_) => metrics::DENIED_AMBIGUOUS_METHOD,
            Denial::NoTarget => metrics::DENIED_NO_TARGET,
            Denial::Delegation(_) => metrics::DENIED_DELEGATION,
            Denial::MissingToken => metrics::DENIED_MISSING_TOKEN,
            Denial::MalformedCredential(_) => metrics::DENIED_INVALID_REQUEST,
            Denial::InvalidToken { .. } | Denial::SubjectRefusedByIdp { .. } => metrics::DENIED_INVALID_TOKEN,
            Denial::Unavailable(_) | Denial::IdpUnavailable(_) => metrics::DENIED_UNAVAILABLE,
            Denial::TargetRefusedByIdp { .. } => metrics::DENIED_IDP_REFUSED,
            Denial::GatewayRefused(_) => metrics::DENIED_GATEWAY_REFUSED,
            Denial::WrongAudience => metrics::DENIED_WRONG_AUDIENCE,
        }
    }

    /// The audit line's `reason`.
    pub fn reason(&self) -> &str {
        match self {
            Denial::AmbiguousPath(_) => "ambiguous_path",
            Denial::AmbiguousMethod(_) => "ambiguous_method",
            Denial::NoTarget => "no_target",
            Denial::Delegation(_) => "delegation_denied",
            Denial::MissingToken => "missing_token",
            Denial::MalformedCredential(_) => "invalid_request",
            Denial::WrongAudience => "idp_wrong_audience",
            Denial::InvalidToken { reason, .. }
            | Denial::SubjectRefusedByIdp { reason, .. }
            | Denial::TargetRefusedByIdp { reason, .. }
            | Denial::Unavailable(reason)
            | Denial::GatewayRefused(reason)
            | Denial::IdpUnavailable(reason) => reason,
        }
    }

    /// The answer, with challenges in `realm`.
    pub fn reply(&self, realm: Option<&str>) -> Reply {
        let challenged = |error: BearerError, body_error: &str, description: &str| {
            let challenge = AuthChallenge::error(error, description).with_realm(realm);
            Reply::challenged(&challenge, body_error, description)
        };
        match self {
            Denial::AmbiguousPath(why) => Reply::json(400, "invalid_request", why),
            Denial::AmbiguousMethod(second) => {
                Reply::json(400, "invalid_request", &baton_filter_kit::matching::ambiguous_method(second))
            }
            Denial::NoTarget => {
                Reply::json(403, "access_denied", "no delegation target matches this request")
            }
            Denial::Delegation(why) => Reply::json(403, "access_denied", why),
            Denial::MissingToken => Reply::challenged(
                &AuthChallenge::bearer().with_realm(realm),
                "unauthorized",
                "a bearer token is required",
            ),
            Denial::MalformedCredential(why) => {
                challenged(BearerError::InvalidRequest, "invalid_request", why)
            }
            Denial::InvalidToken { description, .. } => {
                challenged(BearerError::InvalidToken, "invalid_token", description)
            }
            Denial::SubjectRefusedByIdp { code, .. } => challenged(
                BearerError::InvalidToken,
                "invalid_token",
                &format!("the identity provider refused the subject token ({code})"),
            ),
            Denial::TargetRefusedByIdp { code, .. } => Reply::json(
                403,
                "access_denied",
                &format!("the identity provider refused a token for this upstream ({code})"),
            ),
            Denial::GatewayRefused(_) => Reply::json(
                502,
                "server_error",
                "the gateway is not allowed to obtain a token for this upstream; its operator has been told",
            ),
            Denial::WrongAudience => Reply::json(
                502,
                "server_error",
                "the identity provider issued a token for another audience; it was not used",
            ),
            Denial::Unavailable(_) | Denial::IdpUnavailable(_) => Reply::json(
                503,
                "temporarily_unavailable",
                "a token for the upstream could not be obtained; retry shortly",
            )
            .with_header("retry-after", "5"),
        }
    }
}
