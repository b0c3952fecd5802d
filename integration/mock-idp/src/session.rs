//! Login sessions of [`LoginMode::Interactive`](crate::config::LoginMode):
//! kept server-side, named by the `mock_idp_session` cookie.

use std::collections::HashMap;

use http_kit::Request;

use crate::keys::{KeyError, random_token};

/// The cookie that names a session.
pub const SESSION_COOKIE: &str = "mock_idp_session";

/// A logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub sub: String,
    /// When the user entered the password (OIDC `auth_time`).
    pub auth_time: i64,
    pub expires_at: i64,
}

/// Live sessions by id.
#[derive(Debug, Default)]
pub(crate) struct SessionStore {
    sessions: HashMap<String, Session>,
}

impl SessionStore {
    /// Starts a session for `sub` lasting `ttl_secs` from `now`; returns its id.
    /// Expired sessions are dropped on the way.
    pub(crate) fn create(&mut self, sub: &str, now: i64, ttl_secs: i64) -> Result<String, KeyError> {
        self.sessions.retain(|_, session| session.expires_at > now);
        let id = random_token::<32>()?;
        let session =
            Session { sub: sub.to_string(), auth_time: now, expires_at: now.saturating_add(ttl_secs) };
        self.sessions.insert(id.clone(), session);
        Ok(id)
    }

    /// The session `id` names, unless it has expired at `now`.
    pub(crate) fn find(&self, id: &str, now: i64) -> Option<Session> {
        self.sessions.get(id).filter(|session| session.expires_at > now).cloned()
    }

    /// Ends the session `id`; false if there was none.
    pub(crate) fn end(&mut self, id: &str) -> bool {
        self.sessions.remove(id).is_some()
    }
}

/// The value of the session cookie `request` carries, if any.
pub(crate) fn session_id(request: &Request) -> Option<&str> {
    request
        .header_all("cookie")
        .into_iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

/// The `Set-Cookie` value that hands session `id` to the browser: sent back
/// to every path of this IdP, out of reach of scripts, and not on
/// cross-site subrequests or POSTs.
pub(crate) fn set_cookie(id: &str) -> String {
    format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax")
}

/// The `Set-Cookie` value that makes the browser forget the session.
pub(crate) fn expired_cookie() -> String {
    format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax"
    )
}

#[cfg(test)]
mod tests {
    use core::net::SocketAddr;

    use super::*;

    fn request_with_cookies(cookies: &[&str]) -> Request {
        Request {
            method: "GET".to_string(),
            target: "/authorize".to_string(),
            headers: cookies.iter().map(|c| ("cookie".to_string(), (*c).to_string())).collect(),
            body: Vec::new(),
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
        }
    }

    #[test]
    fn sessions_end_at_their_expiry_and_on_logout() {
        let mut store = SessionStore::default();
        let id = store.create("alice", 1_000, 60).unwrap();
        assert_eq!(
            store.find(&id, 1_059),
            Some(Session { sub: "alice".into(), auth_time: 1_000, expires_at: 1_060 })
        );
        assert_eq!(store.find(&id, 1_060), None, "expired");
        assert_eq!(store.find("unknown", 1_000), None);

        let other = store.create("bob", 2_000, 60).unwrap();
        assert_ne!(id, other);
        assert_eq!(store.sessions.len(), 1, "the expired session was dropped");
        assert!(store.end(&other));
        assert!(!store.end(&other));
        assert_eq!(store.find(&other, 2_001), None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(session_id(&request_with_cookies(&["a=1; mock_idp_session=xyz; b=2"])), Some("xyz"));
        assert_eq!(session_id(&request_with_cookies(&["a=1", "mock_idp_session=\"q\""])), Some("q"));
        assert_eq!(session_id(&request_with_cookies(&["mock_idp_session="])), None);
        assert_eq!(session_id(&request_with_cookies(&["xmock_idp_session=1"])), None);
        assert_eq!(session_id(&request_with_cookies(&[])), None);
    }
}
