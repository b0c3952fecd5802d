//! [`MockIdp`]: the running server and its in-process control handle.

use core::net::SocketAddr;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use http_kit::{Reply, Request, Response, Server};
use serde_json::Value;

use crate::config::MockIdpConfig;
use crate::faults::{Endpoint, Fault, FaultTable};
use crate::keyring::KeyRing;
use crate::keys::{KeyAlg, KeyError, SigningKey};
use crate::login::{self, SessionError};
use crate::session::{SESSION_COOKIE, SessionStore};
use crate::state::{GrantStore, IdpState, lock};
use crate::token_endpoint::RecordedTokenRequest;
use crate::{admin, authorize, discovery, token_endpoint};

/// A running mock authorization server on 127.0.0.1. Dropping it stops the server.
#[derive(Debug)]
pub struct MockIdp {
    state: Arc<IdpState>,
    server: Server,
}

impl MockIdp {
    /// Generates keys (ES256 and RS256, plus the configured signing
    /// algorithm), binds `127.0.0.1:{config.port}` and starts serving.
    pub fn start(config: MockIdpConfig) -> std::io::Result<MockIdp> {
        let keys = KeyRing::new(&config.keys, &IdpState::required_algs(&config))?;
        // The issuer defaults to the bound address, known only after binding.
        let listener = TcpListener::bind(("127.0.0.1", config.port))?;
        let port = listener.local_addr()?.port();
        let base_url = format!("http://127.0.0.1:{port}");
        let issuer = config.issuer.clone().unwrap_or_else(|| base_url.clone());
        let state = Arc::new(IdpState {
            config,
            issuer,
            base_url,
            keys: Mutex::new(keys),
            faults: Mutex::new(FaultTable::default()),
            grants: Mutex::new(GrantStore::default()),
            sessions: Mutex::new(SessionStore::default()),
            token_log: Mutex::new(Vec::new()),
        });
        let handler_state = Arc::clone(&state);
        let server = Server::from_listener(
            listener,
            Arc::new(move |request: &Request| route(&handler_state, request)),
        )?;
        Ok(MockIdp { state, server })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:{port}`, where the endpoints are served.
    pub fn base_url(&self) -> String {
        self.state.base_url.clone()
    }

    /// The `iss` of issued tokens.
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// The configuration the IdP runs with.
    pub fn config(&self) -> &MockIdpConfig {
        &self.state.config
    }

    /// `{base_url}/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.state.base_url)
    }

    /// `{base_url}/jwks`.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.state.base_url)
    }

    /// `{base_url}/authorize`.
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/authorize", self.state.base_url)
    }

    /// The discovery document as served.
    pub fn metadata(&self) -> Value {
        discovery::metadata(&self.state)
    }

    /// The JWKS document as served: every published key.
    pub fn jwks(&self) -> Value {
        lock(&self.state.keys).jwks()
    }

    /// The key `alg` (e.g. `"ES256"`) currently signs with, if any.
    pub fn active_key(&self, alg: &str) -> Option<Arc<SigningKey>> {
        let alg: KeyAlg = alg.parse().ok()?;
        lock(&self.state.keys).active(alg)
    }

    /// Signs `claims` with the active ES256 key, header
    /// `{alg: "ES256", kid, typ: "at+jwt"}`. See [`MockIdp::standard_claims`].
    pub fn mint(&self, claims: Value) -> String {
        // An ES256 key is created at start and rotation only replaces it.
        self.state.mint_with("ES256", &Value::Null, &claims).unwrap_or_default()
    }

    /// Signs `claims` with the active `alg` key. The header starts as
    /// `{alg, kid, typ: "at+jwt"}`; `header_overrides` members replace
    /// those (a `null` value removes the member), so tests can forge
    /// headers while keeping a valid signature.
    pub fn mint_with(&self, alg: &str, header_overrides: Value, claims: Value) -> Result<String, KeyError> {
        self.state.mint_with(alg, &header_overrides, &claims)
    }

    /// Claims for [`MockIdp::mint`]: `iss`, `sub`, `aud`, `iat`, `nbf`,
    /// `exp` = now + `ttl_secs` (negative for an expired token) and a fresh `jti`.
    pub fn standard_claims(&self, sub: &str, aud: impl Into<Value>, ttl_secs: i64) -> Value {
        self.state.standard_claims(sub, aud.into(), ttl_secs)
    }

    /// Generates a new `alg` key, publishes it and makes it active; the
    /// previous key stays in the JWKS. Returns the new kid.
    pub fn rotate(&self, alg: &str) -> Result<String, KeyError> {
        let alg: KeyAlg = alg.parse()?;
        lock(&self.state.keys).rotate(alg)
    }

    /// Drops `kid` from the JWKS; false if it was not published. An active
    /// key keeps signing until rotated, so tokens with an unknown kid can be made.
    pub fn retire(&self, kid: &str) -> bool {
        lock(&self.state.keys).retire(kid)
    }

    /// Arms `fault` on `endpoint` for `times` requests (`None`: until cleared),
    /// replacing any fault armed there.
    pub fn set_fault(&self, endpoint: Endpoint, fault: Fault, times: Option<u32>) {
        lock(&self.state.faults).arm(endpoint, fault, times);
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Requests received by `endpoint`, faulted ones included.
    pub fn calls(&self, endpoint: Endpoint) -> u64 {
        lock(&self.state.faults).calls(endpoint)
    }

    /// Resets every call counter.
    pub fn reset_calls(&self) {
        lock(&self.state.faults).reset_calls();
    }

    /// Every token request received so far, oldest first.
    pub fn token_requests(&self) -> Vec<RecordedTokenRequest> {
        lock(&self.state.token_log).clone()
    }

    /// Logs `sub` in without the form: starts a session as `POST /login`
    /// would and returns the `Cookie` header value naming it
    /// (`mock_idp_session=...`), so an HTTP client can act as a logged-in
    /// browser. Sessions matter only in [`LoginMode::Interactive`](crate::LoginMode).
    pub fn session_cookie_for(&self, sub: &str) -> Result<String, SessionError> {
        let id = login::start_session(&self.state, sub)?;
        Ok(format!("{SESSION_COOKIE}={id}"))
    }

    /// Stops the server; the same as dropping it.
    pub fn shutdown(self) {
        self.server.shutdown();
    }
}

fn endpoint_of(path: &str) -> Option<Endpoint> {
    match path {
        "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server" => {
            Some(Endpoint::Discovery)
        }
        "/jwks" => Some(Endpoint::Jwks),
        "/authorize" => Some(Endpoint::Authorize),
        "/token" => Some(Endpoint::Token),
        "/userinfo" => Some(Endpoint::Userinfo),
        _ => None,
    }
}

fn route(state: &IdpState, request: &Request) -> Reply {
    let path = request.path();
    let Some(endpoint) = endpoint_of(path) else {
        let response = match path {
            _ if path.starts_with("/admin/") => admin::handle(state, request),
            "/login" | "/logout" => login::handle(state, request),
            _ => Response::json(404, &serde_json::json!({"error": "not_found"})),
        };
        return Reply::Respond(response);
    };
    let fault = lock(&state.faults).on_call(endpoint);
    let normal = || serve(state, endpoint, request);
    match fault {
        None => Reply::Respond(normal()),
        Some(fault) => {
            if endpoint == Endpoint::Token && !fault.runs_handler() {
                token_endpoint::record_fault(state, request, &fault);
            }
            fault.reply(normal)
        }
    }
}

fn serve(state: &IdpState, endpoint: Endpoint, request: &Request) -> Response {
    let method = request.method.to_ascii_uppercase();
    let read_only = matches!(method.as_str(), "GET" | "HEAD");
    match endpoint {
        Endpoint::Discovery if read_only => discovery::discovery(state),
        Endpoint::Jwks if read_only => discovery::jwks(state),
        Endpoint::Authorize if read_only => authorize::handle(state, request),
        Endpoint::Token => token_endpoint::handle(state, request),
        Endpoint::Userinfo if read_only || method == "POST" => discovery::userinfo(state, request),
        _ => Response::json(405, &serde_json::json!({"error": "method_not_allowed"})),
    }
}
