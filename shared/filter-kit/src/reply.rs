//! Local replies: the status, headers and small JSON body a filter answers
//! with instead of forwarding ([`crate::runtime::send`] sends them).

use baton_token::AuthChallenge;
use baton_token::challenge::error_body;

/// Answer the client directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers (`www-authenticate`, `content-type`, ...).
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: String,
}

impl Reply {
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
}
