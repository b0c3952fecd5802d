//! A mock OAuth 2.0 / OpenID Connect authorization server for Baton's
//! tests and demos, faithful enough that a real IdP (Keycloak, Entra, Okta)
//! could replace it with a configuration change.
//!
//! It serves discovery (OIDC and RFC 8414), `/jwks`, `/authorize` (PKCE
//! S256 required; auto-approving by default, or with a login form and a
//! session cookie in [`LoginMode::Interactive`]), `/token` (authorization
//! code, refresh, client credentials, RFC 8693 token exchange, Entra
//! on-behalf-of) and `/userinfo` on 127.0.0.1, plus test-only `/admin`
//! endpoints. Its crypto is RustCrypto-native and independent of Baton's
//! own token code: it is the reference the filters are tested against.
//!
//! ```no_run
//! use mock_idp::{MockIdp, MockIdpConfig};
//! # fn main() -> std::io::Result<()> {
//! let idp = MockIdp::start(MockIdpConfig::default())?;
//! let token = idp.mint(idp.standard_claims("alice", "finport-api", 300));
//! # let _ = token;
//! # Ok(())
//! # }
//! ```

mod admin;
mod authorize;
mod client_auth;
mod code_grant;
pub mod config;
mod discovery;
mod exchange;
pub mod faults;
mod jwt;
mod keyring;
pub mod keys;
mod login;
mod oauth_error;
mod params;
mod server;
mod session;
mod state;
mod token_endpoint;

pub use code_grant::s256_challenge;
pub use config::{
    AuthMethod, ClientRegistration, DEFAULT_SESSION_TTL, DEMO_BROKER_SECRET, DEMO_GATEWAY_SECRET,
    DEMO_GATEWAY_SIGN_IN_URI, DEMO_PORTFOLIO_SECRET, DEMO_REDIRECT_URI, GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE, LoginMode, MockIdpConfig, Quirks, User,
};
pub use exchange::{TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT};
pub use faults::{Endpoint, Fault};
pub use jwt::decode_claims_unverified;
pub use keys::{KeyAlg, KeyError, SigningKey, TestKey, b64url, b64url_decode, sign_hs256};
pub use login::SessionError;
pub use server::MockIdp;
pub use session::SESSION_COOKIE;
pub use state::now_secs;
pub use token_endpoint::RecordedTokenRequest;
