//! RFC 6749 §5.2 error responses.

use http_kit::Response;
use serde_json::json;

/// An OAuth error: `{"error", "error_description"}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
    /// Set when the client used HTTP Basic, so a 401 carries a Basic challenge.
    pub basic_challenge: bool,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError { status, error, description: description.into(), basic_challenge: false }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", description)
    }

    pub(crate) fn invalid_client(description: impl Into<String>, basic_challenge: bool) -> Self {
        OAuthError { basic_challenge, ..Self::new(401, "invalid_client", description) }
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", description)
    }

    pub(crate) fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(400, "unauthorized_client", description)
    }

    pub(crate) fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(400, "unsupported_grant_type", description)
    }

    pub(crate) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_scope", description)
    }

    /// RFC 8693 §2.2.2: the requested audience or resource is not allowed.
    pub(crate) fn invalid_target(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_target", description)
    }

    pub(crate) fn server_error(description: impl Into<String>) -> Self {
        Self::new(500, "server_error", description)
    }

    /// The JSON error response, never cacheable.
    pub(crate) fn to_response(&self) -> Response {
        let mut response =
            Response::json(self.status, &json!({"error": self.error, "error_description": self.description}))
                .with_header("cache-control", "no-store")
                .with_header("pragma", "no-cache");
        if self.status == 401 && self.basic_challenge {
            response =
                response.with_header("www-authenticate", "Basic realm=\"mock-idp\", charset=\"UTF-8\"");
        }
        response
    }
}

impl From<crate::keys::KeyError> for OAuthError {
    fn from(error: crate::keys::KeyError) -> Self {
        OAuthError::server_error(error.to_string())
    }
}
