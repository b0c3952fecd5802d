//! Why in-task-auth-code answers a request itself, and what each reason
//! becomes, in one place: for an A2A message ([`Denial`]) the status,
//! JSON-RPC error, counter and audit reason; for a browser step of the
//! authorization ([`PageDenial`]) the status, page text, counter and audit
//! reason. Decision code names reasons, never statuses.

use baton_filter_kit::host::Counter;
use baton_filter_kit::reply::Reply;
use baton_token::{AuthChallenge, BearerError};
use serde_json::Value;

use crate::a2a::{self, INVALID_PARAMS, RpcReply, SERVER_ERROR};
use crate::metrics;

/// A refusal of an A2A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The path could mean another at the next hop.
    AmbiguousPath(&'static str),
    /// The request names a second method (header or `_method`).
    AmbiguousMethod(&'static str),
    /// The users' IdP's keys cannot be had to check the caller's token.
    PrimaryKeysUnavailable,
    /// The caller's token was refused (malformed: 400, otherwise 401).
    PrimaryRefused {
        /// The credential was malformed rather than invalid.
        malformed: bool,
        /// Audit label.
        reason: String,
        /// What the caller is told.
        description: String,
    },
    /// The body is no valid JSON-RPC request (its error code and message).
    JsonRpc {
        /// JSON-RPC error code.
        code: i64,
        /// JSON-RPC error message.
        message: String,
    },
    /// A protected message without a verified user.
    NoUser,
    /// More than one credential object in the message.
    CredentialsAmbiguous,
    /// A credential object that is neither a token nor a code and state.
    CredentialsMalformed,
    /// A token handed over in a message, with nothing to bind it to the user.
    TokenNotBindable,
    /// The secondary IdP refused the gateway itself (audit label).
    GatewayRefused(String),
    /// The code exchange could not complete (audit label).
    ExchangeUnavailable(String),
    /// A relayed code names another server (RFC 9207).
    IssuerMismatch,
    /// The secondary IdP's keys cannot be had to check its token.
    KeysUnavailable,
    /// The request went round too often without an answer.
    TooManyRounds,
    /// The `state` is unknown or used (audit label).
    StateUnusable(&'static str),
    /// The `state` belongs to another user.
    StateOtherUser,
    /// The authorization was not completed in the user's signed-in browser.
    BrowserNotSignedIn,
    /// The `state` belongs to another task.
    StateOtherTask,
    /// A credential in the message was refused (`onInvalidCredential: reject`).
    CredentialRefused {
        /// Audit label.
        reason: String,
        /// What the caller is told.
        description: String,
    },
    /// The store is full of other users' live entries.
    StoreFull,
    /// No randomness for a state or task id.
    NoRandomness,
    /// With a shared store: the sealed `state` would be too long for a URL
    /// (the task or context id is too long).
    StateTooLong,
    /// The shared store could not settle the `state`'s single use (why, the
    /// audit line's `store`): nothing went on to the code exchange.
    StoreUnavailable(&'static str),
    /// The request waited longer than the code exchange may take.
    TimedOut,
    /// The body is over `maxBodyBytes`.
    BodyTooLarge,
    /// The body never reached the filter.
    BodyNeverCame,
}

impl Denial {
    /// The counter it adds to, if any.
    pub fn counter(&self) -> Option<Counter> {
        Some(match self {
            Denial::AmbiguousPath(_) => metrics::AMBIGUOUS_PATH,
            Denial::AmbiguousMethod(_) => metrics::AMBIGUOUS_METHOD,
            Denial::PrimaryKeysUnavailable
            | Denial::ExchangeUnavailable(_)
            | Denial::KeysUnavailable
            | Denial::TimedOut => metrics::IDP_UNAVAILABLE,
            Denial::PrimaryRefused { .. } => metrics::PRIMARY_REFUSED,
            Denial::JsonRpc { .. }
            | Denial::CredentialsAmbiguous
            | Denial::CredentialsMalformed
            | Denial::BodyTooLarge => metrics::JSON_RPC_ERRORS,
            Denial::TokenNotBindable | Denial::BrowserNotSignedIn => metrics::BINDING_REFUSED,
            Denial::IssuerMismatch => metrics::ISSUER_MISMATCH,
            Denial::StateUnusable(_) | Denial::StateOtherUser | Denial::StateOtherTask => {
                metrics::STATE_MISUSE
            }
            Denial::StoreFull => metrics::STORE_FULL,
            Denial::StateTooLong => metrics::JSON_RPC_ERRORS,
            Denial::StoreUnavailable(_) => metrics::STORE_UNAVAILABLE,
            // Counted where they arise (the exchange, the validation).
            Denial::GatewayRefused(_)
            | Denial::CredentialRefused { .. }
            | Denial::NoUser
            | Denial::TooManyRounds
            | Denial::NoRandomness
            | Denial::BodyNeverCame => return None,
        })
    }

    /// The audit line's `reason`.
    pub fn reason(&self) -> &str {
        match self {
            Denial::AmbiguousPath(_) => "ambiguous_path",
            Denial::AmbiguousMethod(_) => "ambiguous_method",
            Denial::PrimaryKeysUnavailable => "primary_keys_unavailable",
            Denial::JsonRpc { .. } => "json_rpc_error",
            Denial::NoUser => "no_user",
            Denial::CredentialsAmbiguous => "credentials_ambiguous",
            Denial::CredentialsMalformed => "credentials_malformed",
            Denial::TokenNotBindable => "token_not_bindable",
            Denial::IssuerMismatch => "issuer_mismatch",
            Denial::KeysUnavailable => "keys_unavailable",
            Denial::TooManyRounds => "too_many_rounds",
            Denial::StateOtherUser => "state_other_user",
            Denial::BrowserNotSignedIn => "browser_not_signed_in",
            Denial::StateOtherTask => "state_other_task",
            Denial::StoreFull => "store_full",
            Denial::StateTooLong => "state_too_long",
            Denial::StoreUnavailable(_) => "store_unavailable",
            Denial::NoRandomness => "no_randomness",
            Denial::TimedOut => "timed_out",
            Denial::BodyTooLarge => "body_too_large",
            Denial::BodyNeverCame => "body_never_came",
            Denial::StateUnusable(reason) => reason,
            Denial::PrimaryRefused { reason, .. }
            | Denial::GatewayRefused(reason)
            | Denial::ExchangeUnavailable(reason)
            | Denial::CredentialRefused { reason, .. } => reason,
        }
    }

    /// The answer to JSON-RPC request `id`; `idp` names the secondary IdP.
    pub fn reply(&self, id: &Value, idp: &str) -> Reply {
        let rpc = |status: u16, code: i64, message: &str| Reply::rpc_error(status, id, code, message);
        let challenged = |mut reply: Reply, challenge: AuthChallenge| {
            reply.headers.push(("www-authenticate", challenge.header_value()));
            reply
        };
        match self {
            Denial::AmbiguousPath(why) => Reply::json(400, "invalid_request", why),
            Denial::AmbiguousMethod(second) => {
                Reply::json(400, "invalid_request", &baton_filter_kit::matching::ambiguous_method(second))
            }
            Denial::PrimaryKeysUnavailable => {
                rpc(503, SERVER_ERROR, "the user's token cannot be checked now; retry shortly")
                    .with_header("retry-after", "5")
            }
            Denial::PrimaryRefused { malformed, description, .. } => {
                let (status, error) = if *malformed {
                    (400, BearerError::InvalidRequest)
                } else {
                    (401, BearerError::InvalidToken)
                };
                challenged(
                    Reply::rpc_error(
                        status,
                        &Value::Null,
                        a2a::INVALID_REQUEST,
                        &format!("the caller's token was refused: {description}"),
                    ),
                    AuthChallenge::error(error, description.clone()),
                )
            }
            Denial::JsonRpc { code, message } => rpc(400, *code, message),
            Denial::NoUser => challenged(
                rpc(401, a2a::INVALID_REQUEST, "the caller's user is not identified"),
                AuthChallenge::bearer(),
            ),
            Denial::CredentialsAmbiguous => rpc(
                400,
                INVALID_PARAMS,
                "Invalid params: exactly one auth_credentials object with a string accessToken, or code and state, \
                 is accepted",
            ),
            Denial::CredentialsMalformed => rpc(
                400,
                INVALID_PARAMS,
                "Invalid params: auth_credentials needs a string accessToken, or code and state",
            ),
            Denial::TokenNotBindable => rpc(
                400,
                INVALID_PARAMS,
                "Invalid params: this gateway takes the credential only through its own authorization link",
            ),
            Denial::GatewayRefused(_) => rpc(
                502,
                SERVER_ERROR,
                &format!(
                    "the gateway is not allowed to complete the authorization at {idp}; its operator has been told"
                ),
            ),
            // The state is used up: resending this code cannot work.
            Denial::ExchangeUnavailable(_) => rpc(
                503,
                SERVER_ERROR,
                &format!(
                    "{idp} could not complete the authorization; send the message again without credentials for \
                     a new authorization link"
                ),
            ),
            Denial::IssuerMismatch => rpc(
                400,
                INVALID_PARAMS,
                "Invalid params: the authorization response came from another server",
            ),
            Denial::KeysUnavailable => rpc(
                503,
                SERVER_ERROR,
                &format!("{idp}'s keys are not available to check the credential; retry shortly"),
            ),
            Denial::TooManyRounds => rpc(503, SERVER_ERROR, "authorization could not complete"),
            Denial::StateUnusable(_) => {
                rpc(400, INVALID_PARAMS, "Invalid params: unknown or already used state")
            }
            Denial::StateOtherUser => {
                rpc(403, INVALID_PARAMS, "Invalid params: the authorization belongs to another user")
            }
            Denial::BrowserNotSignedIn => rpc(
                403,
                INVALID_PARAMS,
                "Invalid params: the authorization was not completed by the user who asked for it",
            ),
            Denial::StateOtherTask => {
                rpc(403, INVALID_PARAMS, "Invalid params: the authorization belongs to another task")
            }
            Denial::CredentialRefused { description, .. } => challenged(
                rpc(401, SERVER_ERROR, &format!("the credential was refused: {description}")),
                AuthChallenge::error(BearerError::InvalidToken, description.clone()),
            ),
            Denial::StoreFull => {
                rpc(503, SERVER_ERROR, "the gateway holds too many authorizations in progress; retry shortly")
                    .with_header("retry-after", "30")
            }
            Denial::NoRandomness => {
                rpc(500, SERVER_ERROR, "the gateway could not create an authorization request")
            }
            Denial::StateTooLong => rpc(
                400,
                INVALID_PARAMS,
                "Invalid params: the task or context id is too long for an authorization request",
            ),
            // The state may be used up (the mark written, its answer lost):
            // a new authorization link is the sure way on.
            Denial::StoreUnavailable(_) => rpc(
                503,
                SERVER_ERROR,
                "the gateway's store is not available to complete the authorization; retry shortly, or send \
                 the message again without credentials for a new authorization link",
            )
            .with_header("retry-after", "5"),
            Denial::TimedOut => rpc(503, SERVER_ERROR, "authorization timed out"),
            Denial::BodyTooLarge => rpc(413, a2a::INVALID_REQUEST, "Invalid Request: the body is too large"),
            Denial::BodyNeverCame => rpc(500, SERVER_ERROR, "the gateway could not read the request"),
        }
    }
}

/// Which browser step of the authorization a page answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The authorization link (`startPath`).
    Start,
    /// Back from the users' IdP (the sign-in).
    SignIn,
    /// Back from the secondary IdP (the bank).
    Bank,
}

/// A refusal of a browser step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageDenial {
    /// Not a `GET`.
    MethodNotAllowed,
    /// A parameter appears twice.
    DuplicateParameters,
    /// No usable `state`.
    StateMissing(Step),
    /// The `state` is unknown, expired or used (audit label).
    StateUnusable(Step, &'static str),
    /// The sign-in this redirect answers is not the one in progress.
    SignInUnknown,
    /// No randomness for the sign-in.
    NoRandomness,
    /// No usable `code`.
    CodeMissing(Step),
    /// The IdP refused the code.
    CodeRefused(Step),
    /// The IdP refused the gateway itself.
    GatewayRefused(Step),
    /// The IdP could not be reached.
    IdpUnavailable(Step),
    /// The IdP's keys cannot be had.
    KeysUnavailable(Step),
    /// The redirect does not name the server it should (audit label).
    IssuerMismatch(Step, &'static str),
    /// The IdP answered the authorization with an `error` (its code).
    DeniedByIdp(Step, String),
    /// The bank's redirect came to another browser than the one signed in.
    BrowserNotSignedIn,
    /// The sign-in's redirect came to another browser.
    SignInOtherBrowser,
    /// Someone else signed in.
    UserMismatch,
    /// The sign-in's code exchange returned no ID token.
    NoIdToken,
    /// The ID token failed verification.
    IdTokenRefused,
    /// The ID token's nonce is not the sign-in's.
    NonceMismatch,
    /// The bank's token failed validation (why).
    TokenRefused(String),
    /// The store is full.
    StoreFull,
    /// The shared store could not settle the `state`'s single use.
    StoreUnavailable(Step),
}

impl PageDenial {
    /// The counter it adds to, if any.
    pub fn counter(&self) -> Option<Counter> {
        Some(match self {
            PageDenial::DuplicateParameters
            | PageDenial::StateMissing(_)
            | PageDenial::StateUnusable(..)
            | PageDenial::SignInUnknown => metrics::STATE_MISUSE,
            PageDenial::IdpUnavailable(_) | PageDenial::KeysUnavailable(_) | PageDenial::NoIdToken => {
                metrics::IDP_UNAVAILABLE
            }
            PageDenial::IssuerMismatch(..) => metrics::ISSUER_MISMATCH,
            PageDenial::BrowserNotSignedIn | PageDenial::SignInOtherBrowser | PageDenial::UserMismatch => {
                metrics::BINDING_REFUSED
            }
            PageDenial::IdTokenRefused | PageDenial::NonceMismatch | PageDenial::TokenRefused(_) => {
                metrics::VALIDATION_FAILURES
            }
            PageDenial::StoreFull => metrics::STORE_FULL,
            PageDenial::StoreUnavailable(_) => metrics::STORE_UNAVAILABLE,
            PageDenial::MethodNotAllowed
            | PageDenial::NoRandomness
            | PageDenial::CodeMissing(_)
            | PageDenial::CodeRefused(_)
            | PageDenial::GatewayRefused(_)
            | PageDenial::DeniedByIdp(..) => return None,
        })
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            PageDenial::MethodNotAllowed => 405,
            PageDenial::NoRandomness => 500,
            PageDenial::GatewayRefused(_) | PageDenial::NoIdToken | PageDenial::IdTokenRefused => 502,
            PageDenial::IdpUnavailable(_)
            | PageDenial::KeysUnavailable(_)
            | PageDenial::StoreFull
            | PageDenial::StoreUnavailable(_) => 503,
            PageDenial::BrowserNotSignedIn | PageDenial::SignInOtherBrowser | PageDenial::UserMismatch => 403,
            _ => 400,
        }
    }

    /// The audit line's `reason` (and the JSON answer's `error`).
    pub fn reason(&self) -> &str {
        match self {
            PageDenial::MethodNotAllowed => "method_not_allowed",
            PageDenial::DuplicateParameters => "duplicate_parameters",
            PageDenial::StateMissing(_) => "state_missing",
            PageDenial::StateUnusable(_, reason) | PageDenial::IssuerMismatch(_, reason) => reason,
            PageDenial::SignInUnknown => "sign_in_unknown",
            PageDenial::NoRandomness => "no_randomness",
            PageDenial::CodeMissing(_) => "code_missing",
            PageDenial::CodeRefused(_) => "code_refused",
            PageDenial::GatewayRefused(_) => "gateway_refused",
            PageDenial::IdpUnavailable(_) => "idp_unavailable",
            PageDenial::KeysUnavailable(_) => "keys_unavailable",
            PageDenial::DeniedByIdp(Step::Bank, _) => "authorization_denied",
            PageDenial::DeniedByIdp(..) => "sign_in_denied",
            PageDenial::BrowserNotSignedIn => "browser_not_signed_in",
            PageDenial::SignInOtherBrowser => "sign_in_other_browser",
            PageDenial::UserMismatch => "user_mismatch",
            PageDenial::NoIdToken => "no_id_token",
            PageDenial::IdTokenRefused => "id_token_refused",
            PageDenial::NonceMismatch => "nonce_mismatch",
            PageDenial::TokenRefused(_) => "token_refused",
            PageDenial::StoreFull => "store_full",
            PageDenial::StoreUnavailable(_) => "store_unavailable",
        }
    }

    /// What the page says.
    pub fn message(&self) -> String {
        let unknown = |step: Step| match step {
            Step::Bank => "The authorization request is unknown, expired or already used.",
            Step::Start | Step::SignIn => {
                "This authorization link is unknown, expired, already used, or continues in another browser. Ask \
                 your agent for a new one."
            }
        };
        let text = match self {
            PageDenial::MethodNotAllowed => "This address only accepts GET.",
            PageDenial::DuplicateParameters => "The request carries a parameter twice.",
            PageDenial::StateMissing(Step::Start) => "The link is incomplete.",
            PageDenial::StateMissing(Step::SignIn) => "The sign-in has no valid state.",
            PageDenial::StateMissing(Step::Bank) => "The callback has no valid state.",
            PageDenial::StateUnusable(step, _) => unknown(*step),
            PageDenial::SignInUnknown => unknown(Step::SignIn),
            PageDenial::NoRandomness => "The gateway could not start the sign-in.",
            PageDenial::CodeMissing(Step::Bank) => "The callback has no valid code.",
            PageDenial::CodeMissing(_) => "The sign-in callback has no valid code.",
            PageDenial::CodeRefused(Step::Bank) => "The authorization code was refused; authorize again.",
            PageDenial::CodeRefused(_) => "The sign-in was refused; open the link from your agent again.",
            PageDenial::GatewayRefused(Step::Bank) => {
                "The gateway is not allowed to complete this authorization; its operator has been told."
            }
            PageDenial::GatewayRefused(_) => {
                "The gateway is not allowed to sign you in; its operator has been told."
            }
            PageDenial::IdpUnavailable(Step::Bank) => {
                "The authorization server could not be reached; start the authorization again from the agent."
            }
            PageDenial::IdpUnavailable(_) => {
                "The identity provider could not be reached; open the link from your agent again."
            }
            PageDenial::KeysUnavailable(Step::Bank) => {
                "The authorization could not be checked; try again shortly."
            }
            PageDenial::KeysUnavailable(_) => "The sign-in could not be checked; try again shortly.",
            PageDenial::IssuerMismatch(Step::Bank, _) => {
                "The authorization response did not come from the expected authorization server."
            }
            PageDenial::IssuerMismatch(..) => {
                "The sign-in response did not come from the expected identity provider."
            }
            PageDenial::DeniedByIdp(step, error) => {
                let what = if *step == Step::Bank {
                    "The authorization was not granted"
                } else {
                    "The sign-in did not complete"
                };
                return format!("{what} ({error}).");
            }
            PageDenial::BrowserNotSignedIn => {
                "This authorization was not started in this browser by the user who asked for it. Nothing was \
                 authorized. Open the authorization link from your agent, in the browser where you sign in."
            }
            PageDenial::SignInOtherBrowser => {
                "This sign-in was not started in this browser. Nothing was authorized."
            }
            PageDenial::UserMismatch => {
                "You signed in as another user than the one who asked for this authorization. Nothing was \
                 authorized. If you did not ask your agent for it, close this page."
            }
            PageDenial::NoIdToken => "The identity provider sent no ID token; nothing was authorized.",
            PageDenial::IdTokenRefused => "The sign-in could not be verified; nothing was authorized.",
            PageDenial::NonceMismatch => "The sign-in was replayed; nothing was authorized.",
            PageDenial::TokenRefused(description) => {
                return format!("The authorization was not accepted: {description}.");
            }
            PageDenial::StoreFull => {
                "The gateway could not keep the authorization now; ask your agent again in a moment."
            }
            PageDenial::StoreUnavailable(_) => {
                "The gateway could not complete the authorization now; try again shortly, or start the \
                 authorization again from the agent."
            }
        };
        text.to_string()
    }
}
