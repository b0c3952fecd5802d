//! Configuration: issuer, token lifetimes, registered clients and users.
//!
//! The JSON form read by the `mock-idp` binary mirrors these structs; every
//! field is optional there and falls back to [`MockIdpConfig::default`].

use core::time::Duration;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::keys::{KeyAlg, SigningKey};

/// The redirect URI registered for the demo public client `finport-app`.
pub const DEMO_REDIRECT_URI: &str = "http://127.0.0.1:8080/callback";
/// The secret of the demo confidential client `agent-broker`.
pub const DEMO_BROKER_SECRET: &str = "agent-broker-secret";
/// The demo Portfolio Agent's client secret: it exchanges the token it
/// received for the Ledger API's (the second hop).
pub const DEMO_PORTFOLIO_SECRET: &str = "portfolio-agent-secret";
/// The A2A gateway's client secret: the gateway signs the user's browser in
/// (OpenID Connect) before it sends it to the bank.
pub const DEMO_GATEWAY_SECRET: &str = "transfer-gateway-secret";
/// Where the demo IdP sends the browser back to the A2A gateway after the
/// sign-in.
pub const DEMO_GATEWAY_SIGN_IN_URI: &str = "http://127.0.0.1:10003/a2a/oauth/signed-in";

/// Grant type URN of RFC 8693 token exchange.
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Grant type URN of RFC 7523 JWT bearer (used by Entra's on-behalf-of flow).
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long an interactive login session lasts unless configured otherwise.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(3600);

/// How the IdP behaves. `Default` is a useful test setup: the demo clients
/// and users below, ES256 access tokens valid for 300 s, `typ: at+jwt`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockIdpConfig {
    /// The `iss` of issued tokens; `None` means `http://127.0.0.1:{port}`.
    pub issuer: Option<String>,
    /// Port to bind on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Lifetime of issued access tokens (JSON: whole seconds).
    #[serde(rename = "access_token_ttl_secs", with = "duration_secs")]
    pub access_token_ttl: Duration,
    /// Algorithm of issued tokens (`ES256` or `RS256`; any [`KeyAlg`] works).
    pub signing_alg: KeyAlg,
    /// JWT `typ` header of issued access tokens (RFC 9068 `at+jwt`).
    pub typ: String,
    /// Registered clients.
    pub clients: Vec<ClientRegistration>,
    /// Known users. How `/authorize` picks one depends on [`MockIdpConfig::login`].
    pub users: Vec<User>,
    /// How `/authorize` authenticates the user: auto-approval (the default)
    /// or a login form and a session cookie.
    pub login: LoginMode,
    /// Ways in which real IdPs differ, to play one of them.
    pub quirks: Quirks,
    /// Keys to publish from the start instead of generating them; the first
    /// key of each algorithm becomes active. ES256 and RS256 keys missing
    /// here are generated. Sharing one RSA key across many IdPs in a test
    /// suite saves its generation time.
    #[serde(skip)]
    pub keys: Vec<Arc<SigningKey>>,
}

/// Behaviours real authorization servers differ in (each within what their
/// specifications allow), so a gateway can be tested against each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quirks {
    /// The error for a grant the client is not registered for: RFC 6749
    /// says `unauthorized_client`; some IdPs answer `invalid_request`
    /// ("grant type is not allowed for this client").
    pub unregistered_grant_error: String,
    /// Whether the client-credentials grant ignores `audience` and issues
    /// the client's default audience, honouring only RFC 8707 `resource`
    /// (as IdPs without RFC 8693 parameters on that grant do).
    pub client_credentials_ignores_audience: bool,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            unregistered_grant_error: "unauthorized_client".to_string(),
            client_credentials_ignores_audience: false,
        }
    }
}

impl Default for MockIdpConfig {
    fn default() -> Self {
        MockIdpConfig {
            issuer: None,
            port: 0,
            access_token_ttl: Duration::from_secs(300),
            signing_alg: KeyAlg::Es256,
            typ: "at+jwt".to_string(),
            clients: vec![
                ClientRegistration::public("finport-app", &[DEMO_REDIRECT_URI])
                    .with_default_audience("finport-api"),
                ClientRegistration::confidential("agent-broker", DEMO_BROKER_SECRET).with_grant_types(&[
                    "client_credentials",
                    GRANT_TOKEN_EXCHANGE,
                    GRANT_JWT_BEARER,
                ]),
                ClientRegistration::confidential("portfolio-agent", DEMO_PORTFOLIO_SECRET)
                    .with_grant_types(&["client_credentials", GRANT_TOKEN_EXCHANGE]),
                ClientRegistration::confidential("transfer-gateway", DEMO_GATEWAY_SECRET)
                    .with_grant_types(&["authorization_code"])
                    .with_redirect_uris(&[DEMO_GATEWAY_SIGN_IN_URI]),
            ],
            users: vec![
                User::new("alice")
                    .with_claim("email", Value::from("alice@example.com"))
                    .with_claim("name", Value::from("Alice Adams"))
                    .with_claim("roles", Value::from(vec!["trader", "viewer"])),
                User::new("bob")
                    .with_claim("email", Value::from("bob@example.com"))
                    .with_claim("name", Value::from("Bob Brown"))
                    .with_claim("roles", Value::from(vec!["viewer"])),
            ],
            login: LoginMode::AutoApprove,
            keys: Vec::new(),
            quirks: Quirks::default(),
        }
    }
}

/// How `/authorize` decides who the user is.
///
/// JSON: `{"mode": "auto_approve"}` or
/// `{"mode": "interactive", "session_ttl_secs": 3600}` (the TTL is optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum LoginMode {
    /// Approves at once, as the user `login_hint` names (else the first
    /// configured user). Convenient for tests that are not about login;
    /// anyone who can write an authorization URL picks the user.
    #[default]
    AutoApprove,
    /// Authenticates like a real IdP: `login_hint` only pre-fills the login
    /// form. Without a session, `/authorize` answers a login form that
    /// posts to `/login`; a correct username and password (see
    /// [`User::password`]) start a session kept server-side and named by
    /// the `mock_idp_session` cookie, and `/authorize` then approves as the
    /// session's user. `prompt=login` and an exceeded `max_age` ask again;
    /// `prompt=none` without a session is `login_required`; `/logout` ends
    /// the session.
    Interactive {
        /// How long a session lasts after the login (JSON: whole seconds).
        #[serde(rename = "session_ttl_secs", with = "duration_secs", default = "default_session_ttl")]
        session_ttl: Duration,
    },
}

impl LoginMode {
    /// Interactive login with sessions of [`DEFAULT_SESSION_TTL`].
    pub fn interactive() -> Self {
        LoginMode::Interactive { session_ttl: DEFAULT_SESSION_TTL }
    }
}

fn default_session_ttl() -> Duration {
    DEFAULT_SESSION_TTL
}

/// A client authentication method at the token endpoint (RFC 7591 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

impl AuthMethod {
    /// The RFC 7591 name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
        }
    }
}

/// A registered OAuth client. Empty lists mean "any".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientRegistration {
    /// The client identifier.
    pub client_id: String,
    /// `None` makes a public client, which authenticates with `client_id` only.
    pub client_secret: Option<String>,
    /// Methods a confidential client may use; ignored for public clients.
    pub auth_methods: Vec<AuthMethod>,
    /// Grant types the client may use (empty: any).
    pub grant_types: Vec<String>,
    /// Exact redirect URIs accepted at `/authorize`.
    pub redirect_uris: Vec<String>,
    /// Audiences (or resources) the client may request (empty: any).
    pub allowed_audiences: Vec<String>,
    /// `aud` when the request names none; `None` falls back to the client id.
    pub default_audience: Option<String>,
    /// Scopes the client may request (empty: any; see the token endpoint
    /// docs for how token exchange applies this).
    pub allowed_scopes: Vec<String>,
}

impl Default for ClientRegistration {
    fn default() -> Self {
        ClientRegistration {
            client_id: String::new(),
            client_secret: None,
            auth_methods: vec![AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost],
            grant_types: Vec::new(),
            redirect_uris: Vec::new(),
            allowed_audiences: Vec::new(),
            default_audience: None,
            allowed_scopes: Vec::new(),
        }
    }
}

impl ClientRegistration {
    /// A public client using the authorization code and refresh grants.
    pub fn public(client_id: &str, redirect_uris: &[&str]) -> Self {
        ClientRegistration {
            client_id: client_id.to_string(),
            redirect_uris: strings(redirect_uris),
            grant_types: strings(&["authorization_code", "refresh_token"]),
            ..Self::default()
        }
    }

    /// A confidential client accepting both secret methods and any grant.
    pub fn confidential(client_id: &str, client_secret: &str) -> Self {
        ClientRegistration {
            client_id: client_id.to_string(),
            client_secret: Some(client_secret.to_string()),
            ..Self::default()
        }
    }

    /// The gateway's client at a user's bank (the in-task flow's secondary
    /// IdP): confidential, authorization code only, one redirect URI, tokens
    /// for `bank-api`.
    pub fn bank_gateway(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        Self::confidential(client_id, client_secret)
            .with_grant_types(&["authorization_code"])
            .with_redirect_uris(&[redirect_uri])
            .with_default_audience("bank-api")
    }

    /// Restricts the grant types.
    #[must_use]
    pub fn with_grant_types(mut self, grant_types: &[&str]) -> Self {
        self.grant_types = strings(grant_types);
        self
    }

    /// Restricts the authentication methods.
    #[must_use]
    pub fn with_auth_methods(mut self, methods: &[AuthMethod]) -> Self {
        self.auth_methods = methods.to_vec();
        self
    }

    /// Sets the registered redirect URIs.
    #[must_use]
    pub fn with_redirect_uris(mut self, uris: &[&str]) -> Self {
        self.redirect_uris = strings(uris);
        self
    }

    /// Restricts the audiences the client may request.
    #[must_use]
    pub fn with_allowed_audiences(mut self, audiences: &[&str]) -> Self {
        self.allowed_audiences = strings(audiences);
        self
    }

    /// Sets the audience used when a request names none.
    #[must_use]
    pub fn with_default_audience(mut self, audience: &str) -> Self {
        self.default_audience = Some(audience.to_string());
        self
    }

    /// Restricts the scopes the client may request.
    #[must_use]
    pub fn with_allowed_scopes(mut self, scopes: &[&str]) -> Self {
        self.allowed_scopes = strings(scopes);
        self
    }

    /// Whether the client is registered for `grant_type`.
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.is_empty() || self.grant_types.iter().any(|g| g == grant_type)
    }

    /// Whether the client may request `audience`.
    pub fn allows_audience(&self, audience: &str) -> bool {
        self.allowed_audiences.is_empty() || self.allowed_audiences.iter().any(|a| a == audience)
    }

    /// The audience of tokens issued when none is requested.
    pub fn fallback_audience(&self) -> &str {
        self.default_audience.as_deref().unwrap_or(&self.client_id)
    }
}

/// A user: `sub` plus claims merged into the user's tokens (`email`,
/// `roles`, ...). In JSON the extra claims sit beside `sub` (and
/// `password`, which is never a claim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Subject identifier; also the username of the login form.
    pub sub: String,
    /// The password the login form accepts in [`LoginMode::Interactive`];
    /// `None` means `password-<sub>` (e.g. `password-alice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Extra claims copied into access tokens, ID tokens and userinfo.
    #[serde(flatten)]
    pub claims: Map<String, Value>,
}

impl User {
    /// A user without extra claims.
    pub fn new(sub: &str) -> Self {
        User { sub: sub.to_string(), password: None, claims: Map::new() }
    }

    /// Sets the password of the login form.
    #[must_use]
    pub fn with_password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// Whether `password` is this user's: [`User::password`], else `password-<sub>`.
    pub fn accepts_password(&self, password: &str) -> bool {
        match &self.password {
            Some(expected) => expected == password,
            None => password.strip_prefix("password-") == Some(self.sub.as_str()),
        }
    }

    /// Adds an extra claim.
    #[must_use]
    pub fn with_claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.to_string(), value);
        self
    }
}

impl MockIdpConfig {
    /// The client registered as `client_id`.
    pub fn client(&self, client_id: &str) -> Option<&ClientRegistration> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    /// The user whose `sub` is `sub`.
    pub fn user(&self, sub: &str) -> Option<&User> {
        self.users.iter().find(|u| u.sub == sub)
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

/// Serializes a `Duration` as whole seconds.
mod duration_secs {
    use core::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_config_mirrors_the_structs_and_defaults_missing_fields() {
        let config: MockIdpConfig = serde_json::from_value(json!({
            "issuer": "https://idp.example",
            "access_token_ttl_secs": 60,
            "signing_alg": "RS256",
            "clients": [{"client_id": "c", "client_secret": "s", "auth_methods": ["client_secret_post"]}],
            "users": [{"sub": "carol", "email": "carol@example.com"}],
        }))
        .unwrap();
        assert_eq!(config.access_token_ttl, Duration::from_secs(60));
        assert_eq!(config.signing_alg, KeyAlg::Rs256);
        assert_eq!(config.typ, "at+jwt");
        let client = config.client("c").unwrap();
        assert_eq!(client.auth_methods, vec![AuthMethod::ClientSecretPost]);
        assert!(client.allows_grant("anything"));
        assert_eq!(config.user("carol").unwrap().claims["email"], "carol@example.com");
        assert!(serde_json::from_value::<MockIdpConfig>(json!({"nonsense": 1})).is_err());
        assert_eq!(config.login, LoginMode::AutoApprove);
    }

    #[test]
    fn login_mode_and_passwords_in_json() {
        let login =
            |value: Value| serde_json::from_value::<MockIdpConfig>(json!({"login": value})).map(|c| c.login);
        assert_eq!(login(json!({"mode": "auto_approve"})).unwrap(), LoginMode::AutoApprove);
        assert_eq!(login(json!({"mode": "interactive"})).unwrap(), LoginMode::interactive());
        assert_eq!(
            login(json!({"mode": "interactive", "session_ttl_secs": 5})).unwrap(),
            LoginMode::Interactive { session_ttl: Duration::from_secs(5) }
        );
        assert!(login(json!({"mode": "interactive", "session_ttl": 5})).is_err(), "misspelled key");
        assert!(login(json!({"mode": "sso"})).is_err());

        let config: MockIdpConfig = serde_json::from_value(json!({
            "users": [{"sub": "carol", "password": "pw", "email": "c@example.com"}, {"sub": "dave"}],
        }))
        .unwrap();
        let carol = config.user("carol").unwrap();
        assert_eq!(carol.password.as_deref(), Some("pw"));
        assert!(carol.claims.get("password").is_none(), "never a claim");
        assert!(carol.accepts_password("pw") && !carol.accepts_password("password-carol"));
        let dave = config.user("dave").unwrap();
        assert!(dave.accepts_password("password-dave"));
        assert!(!dave.accepts_password("password-") && !dave.accepts_password("dave"));
        assert!(serde_json::to_value(dave).unwrap().get("password").is_none());
    }
}
