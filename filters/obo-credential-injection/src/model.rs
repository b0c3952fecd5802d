//! The compiled configuration: identity providers the gateway authenticates
//! to, targets (which upstream gets which token), how the subject token is
//! checked, and who may act for whom.

use std::rc::Rc;

use baton_filter_kit::config::Provider;
use baton_filter_kit::matching::{MatchInputs, RequestMatch};
use baton_filter_kit::store::StoreConfig;
use baton_filter_kit::token_calls::TokenEndpoint;
use baton_token::TokenHash;
use baton_token::secret::Secret;

use crate::assertion::AssertionIssuer;

/// A token endpoint the gateway calls, with its own client credentials.
#[derive(Debug)]
pub struct Idp {
    /// Name targets refer to.
    pub name: String,
    /// Its issuer identifier: the `iss` every token it issues must name,
    /// when configured.
    pub issuer: Option<String>,
    /// Where and how to call.
    pub endpoint: TokenEndpoint,
}

/// How a target's token is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// RFC 8693 token exchange.
    TokenExchange,
    /// Microsoft Entra on-behalf-of (JWT bearer).
    EntraOnBehalfOf,
    /// The gateway's own token (service to service).
    ClientCredentials,
    /// A JWT the gateway signs itself (trusted subsystem; no IdP call).
    IdentityAssertion,
}

impl Mode {
    /// Label for logs and cache keys.
    pub fn label(self) -> &'static str {
        match self {
            Mode::TokenExchange => "token_exchange",
            Mode::EntraOnBehalfOf => "entra_obo",
            Mode::ClientCredentials => "client_credentials",
            Mode::IdentityAssertion => "identity_assertion",
        }
    }

    /// Whether the mode acts for a user (needs a subject token).
    pub fn needs_subject(self) -> bool {
        !matches!(self, Mode::ClientCredentials)
    }

    /// The optional target fields the mode uses: a configuration that gives
    /// any other is refused, so it never says something the filter ignores.
    pub fn uses(self, field: &str) -> bool {
        let fields: &[&str] = match self {
            Mode::TokenExchange => &[
                "idp",
                "audiences",
                "resources",
                "scope",
                "subjectTokenType",
                "requestedTokenType",
                "actor",
                "extraParameters",
                "expectedAudiences",
            ],
            Mode::EntraOnBehalfOf => &["idp", "scope", "extraParameters", "expectedAudiences"],
            Mode::ClientCredentials => &[
                "idp",
                "audiences",
                "resources",
                "scope",
                "expectedAudiences",
                "dangerouslyAllowUnauthenticatedCallers",
            ],
            Mode::IdentityAssertion => &["audiences"],
        };
        fields.contains(&field)
    }
}

/// Who the gateway names as actor in a token exchange.
#[derive(Debug)]
pub enum Actor {
    /// A fixed token from configuration.
    Static {
        /// The token.
        token: Secret,
        /// Its RFC 8693 type.
        token_type: String,
    },
    /// The gateway's own client-credentials token.
    ClientCredentials(Rc<CredentialsGrant>),
}

/// A client-credentials token the gateway keeps fresh: for a
/// `clientCredentials` target, or as an actor token.
#[derive(Debug)]
pub struct CredentialsGrant {
    /// Cache key (hash of idp, audiences, resources, scope).
    pub key: TokenHash,
    /// Index of the IdP.
    pub idp: usize,
    /// `audience` values.
    pub audiences: Vec<String>,
    /// `resource` values.
    pub resources: Vec<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// The audiences its token may name (empty: an actor's token, which
    /// goes to the IdP only and is not checked).
    pub expected_audiences: Vec<String>,
    /// What it is for, in logs (the first target that needs it).
    pub label: String,
}

/// Where a token is put on the upstream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// Header name (lower case).
    pub header: String,
    /// Scheme prefix, e.g. `Bearer `.
    pub prefix: String,
}

/// One upstream and how its token is obtained.
#[derive(Debug)]
pub struct Target {
    /// Name for logs.
    pub name: String,
    /// Which requests it applies to.
    pub matcher: RequestMatch,
    /// How its token is obtained, with what that way needs.
    pub grant: TargetGrant,
    /// Where the token goes.
    pub inject: Injection,
    /// The audiences the issued token may name: a JWT naming any other is
    /// not injected (nor cached). Empty for an identity assertion (signed
    /// here, for its audiences).
    pub expected_audiences: Vec<String>,
    /// Digest of everything that shapes the issued token: with the subject
    /// token's hash it makes the cache key.
    pub digest: TokenHash,
}

/// How a target's token is obtained, each way with only what it uses.
#[derive(Debug)]
pub enum TargetGrant {
    /// RFC 8693 token exchange.
    TokenExchange(Exchange),
    /// Microsoft Entra on-behalf-of (JWT bearer).
    EntraOnBehalfOf(OnBehalfOf),
    /// The gateway's own token (service to service), kept fresh.
    ClientCredentials {
        /// The grant (shared by targets asking the same).
        grant: Rc<CredentialsGrant>,
        /// `dangerouslyAllowUnauthenticatedCallers`: anyone who reaches the
        /// listener gets this token (the caller is not identified or
        /// checked at all).
        unauthenticated_callers: bool,
    },
    /// A JWT the gateway signs itself (trusted subsystem; no IdP call).
    IdentityAssertion {
        /// Its `aud`.
        audiences: Vec<String>,
    },
}

/// An RFC 8693 token exchange.
#[derive(Debug)]
pub struct Exchange {
    /// Index of the IdP.
    pub idp: usize,
    /// `audience` values.
    pub audiences: Vec<String>,
    /// `resource` values.
    pub resources: Vec<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `subject_token_type`.
    pub subject_token_type: String,
    /// `requested_token_type`, if any.
    pub requested_token_type: Option<String>,
    /// The actor, if any.
    pub actor: Option<Actor>,
    /// Non-reserved extra form parameters.
    pub extra_parameters: Vec<(String, String)>,
}

/// An Entra on-behalf-of request.
#[derive(Debug)]
pub struct OnBehalfOf {
    /// Index of the IdP.
    pub idp: usize,
    /// `scope` (required: it names the resource).
    pub scope: String,
    /// Non-reserved extra form parameters.
    pub extra_parameters: Vec<(String, String)>,
}

impl Target {
    /// The grant's mode.
    pub fn mode(&self) -> Mode {
        match self.grant {
            TargetGrant::TokenExchange(_) => Mode::TokenExchange,
            TargetGrant::EntraOnBehalfOf(_) => Mode::EntraOnBehalfOf,
            TargetGrant::ClientCredentials { .. } => Mode::ClientCredentials,
            TargetGrant::IdentityAssertion { .. } => Mode::IdentityAssertion,
        }
    }

    /// The IdP asked, if any.
    pub fn idp(&self) -> Option<usize> {
        match &self.grant {
            TargetGrant::TokenExchange(exchange) => Some(exchange.idp),
            TargetGrant::EntraOnBehalfOf(obo) => Some(obo.idp),
            TargetGrant::ClientCredentials { grant, .. } => Some(grant.idp),
            TargetGrant::IdentityAssertion { .. } => None,
        }
    }

    /// The audiences and resources the issued token is for (delegation
    /// policy and audit).
    pub fn destinations(&self) -> impl Iterator<Item = &str> {
        let (audiences, resources): (&[String], &[String]) = match &self.grant {
            TargetGrant::TokenExchange(exchange) => (&exchange.audiences, &exchange.resources),
            TargetGrant::EntraOnBehalfOf(_) => (&[], &[]),
            TargetGrant::ClientCredentials { grant, .. } => (&grant.audiences, &grant.resources),
            TargetGrant::IdentityAssertion { audiences } => (audiences, &[]),
        };
        audiences.iter().chain(resources).map(String::as_str)
    }
}

/// How the subject token is verified before any IdP call. There is no mode
/// that trusts a token nobody verified: the delegation policy and identity
/// assertions act on its claims.
#[derive(Debug)]
pub enum SubjectValidation {
    /// This filter verifies it (signature, `iss`, `aud`, `exp`) against
    /// providers.
    Jwks(Rc<Vec<Provider>>),
    /// claim-enforcement verified it earlier on the same request: its
    /// `shareVerifiedToken` record must name this very token, else it is
    /// refused. Its claims are then read and time-checked.
    ClaimEnforcement {
        /// Accepted issuers (any when empty).
        issuers: Vec<String>,
        /// Accepted audiences (any when empty).
        audiences: Vec<String>,
        /// Leeway on `exp`, `nbf`, `iat`.
        clock_skew_secs: u64,
    },
}

/// Where the subject token is read from, and how it is checked.
#[derive(Debug)]
pub struct SubjectToken {
    /// Header name (lower case).
    pub header: String,
    /// Scheme prefix, e.g. `Bearer `.
    pub prefix: String,
    /// Checks.
    pub validation: SubjectValidation,
}

/// Who the calling service is, as this Envoy verified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallerSource {
    /// The verified subject token's `client_id` (else `azp`): the client
    /// the user's token was issued to.
    #[default]
    TokenClient,
    /// The first URI SAN of the client certificate Envoy verified on this
    /// connection (mTLS; a SPIFFE ID under a mesh).
    PeerCertificate,
}

/// One caller and what it may obtain tokens for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    /// The caller, as [`CallerSource`] names it.
    pub caller: String,
    /// Targets it may use, by index.
    pub targets: Vec<usize>,
    /// Audiences and resources it may obtain tokens for: a target whose
    /// every destination is listed is allowed (a target with none is never
    /// allowed this way).
    pub audiences: Vec<String>,
}

impl AllowEntry {
    /// Whether this entry allows `target` (at `index`).
    pub fn covers(&self, index: usize, target: &Target) -> bool {
        self.targets.contains(&index)
            || (target.destinations().next().is_some()
                && target.destinations().all(|destination| self.audiences.iter().any(|a| a == destination)))
    }
}

/// Which caller may obtain tokens for which targets.
#[derive(Debug, Default)]
pub struct Delegation {
    /// Where the caller's name comes from.
    pub caller: CallerSource,
    /// Who may use which target; `None`: any caller with a verified token.
    pub allow: Option<Vec<AllowEntry>>,
    /// The subject token's `may_act` must name the caller.
    pub require_may_act: bool,
}

/// What happens to a request no target matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    /// 403.
    Deny,
    /// Forwarded without any token (the subject token is removed).
    PassThrough,
}

/// The validated, compiled configuration.
#[derive(Debug)]
pub struct FilterConfig {
    /// Token endpoints.
    pub idps: Vec<Idp>,
    /// Targets, first match wins.
    pub targets: Vec<Target>,
    /// The request attributes the targets look at.
    pub match_inputs: MatchInputs,
    /// Subject token source and checks (absent when no target needs one).
    pub subject: Option<SubjectToken>,
    /// Delegation policy.
    pub delegation: Delegation,
    /// Unmatched requests.
    pub default_action: DefaultAction,
    /// Shared cache slots for issued tokens.
    pub cache_entries: u32,
    /// Seconds before expiry a cached token stops being used.
    pub expiry_margin_secs: u64,
    /// Lifetime assumed when the IdP sends no `expires_in` and the token
    /// carries no `exp`.
    pub default_lifetime_secs: u64,
    /// `realm` of challenges.
    pub realm: Option<String>,
    /// Whether each decision is logged.
    pub audit_log: bool,
    /// Digest of the configuration text (shared-data key prefix).
    pub fingerprint: String,
    /// Every client-credentials grant kept fresh (targets and actors).
    pub credentials: Vec<Rc<CredentialsGrant>>,
    /// The gateway's own assertions (`identityAssertion` targets).
    pub assertion: Option<Rc<AssertionIssuer>>,
    /// The store every replica shares exchanged tokens through (`store`).
    pub store: Option<StoreConfig>,
}
