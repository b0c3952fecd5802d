//! Local replies: the status, headers and small JSON body a filter answers
//! with instead of forwarding, and sending them.

use baton_token::AuthChallenge;
use baton_token::challenge::error_body;
use proxy_wasm::hostcalls;
use proxy_wasm::types::Action;

use crate::host::LogLevel;
use crate::proxy_host::log;

/// Answer the client directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status.
    pub status: u16,
    /// Response headers (`www-authenticate`, `content-type`, ...).
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: String,
}

impl Rejection {
    /// A JSON error answer: `{"error": …, "error_description": …}`, not cached.
    pub fn json(status: u16, error: &str, description: &str) -> Self {
        Self {
            status,
            headers: vec![
                ("content-type", "application/json".to_string()),
                ("cache-control", "no-store".to_string()),
            ],
            body: error_body(error, description),
        }
    }

    /// An answer carrying a `WWW-Authenticate` challenge, with the status the
    /// challenge's error code calls for.
    pub fn challenged(challenge: &AuthChallenge, error: &str, description: &str) -> Self {
        let mut rejection = Self::json(challenge.status(), error, description);
        rejection.headers.insert(0, ("www-authenticate", challenge.header_value()));
        rejection
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sends it as the current request's local reply; resets the request if
    /// even that fails.
    pub fn send(&self, filter: &str) {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
        if hostcalls::send_http_response(u32::from(self.status), headers, Some(self.body.as_bytes())).is_err()
        {
            log(filter, LogLevel::Error, "local reply could not be sent; resetting the request");
            let _ = hostcalls::reset_http_request();
        }
    }
}

/// Answers 500 without forwarding: used only when the host itself fails.
pub fn fail_closed(filter: &str, why: &str) -> Action {
    log(filter, LogLevel::Error, &format!("request refused: {why}"));
    Rejection::json(500, "server_error", "the request could not be checked").send(filter);
    Action::Pause
}
