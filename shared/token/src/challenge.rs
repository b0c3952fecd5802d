//! `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9470 §3, RFC 9728 §5.1)
//! and the small JSON error bodies that go with them.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// The error codes a bearer-token resource server can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BearerError {
    /// RFC 6750 §3.1: the request is malformed (e.g. two credentials).
    InvalidRequest,
    /// RFC 6750 §3.1: the token is expired, revoked, malformed or invalid.
    InvalidToken,
    /// RFC 6750 §3.1: the token lacks the privileges the resource needs.
    InsufficientScope,
    /// RFC 9470 §3: the authentication event behind the token is too weak
    /// or too old.
    InsufficientUserAuthentication,
}

impl BearerError {
    /// The registered error code.
    pub fn code(self) -> &'static str {
        match self {
            BearerError::InvalidRequest => "invalid_request",
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
            BearerError::InsufficientUserAuthentication => "insufficient_user_authentication",
        }
    }

    /// The HTTP status RFC 6750 §3.1 and RFC 9470 §3 assign to the code.
    pub fn status(self) -> u16 {
        match self {
            BearerError::InvalidRequest => 400,
            BearerError::InvalidToken | BearerError::InsufficientUserAuthentication => 401,
            BearerError::InsufficientScope => 403,
        }
    }
}

/// A `Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthChallenge {
    realm: Option<String>,
    error: Option<BearerError>,
    error_description: Option<String>,
    scope: Option<String>,
    acr_values: Option<String>,
    max_age: Option<u64>,
    resource_metadata: Option<String>,
}

impl AuthChallenge {
    /// A bare challenge: the answer to a request without a token, which per
    /// RFC 6750 §3.1 carries no error code.
    pub fn bearer() -> Self {
        Self::default()
    }

    /// A challenge with an error code and description.
    pub fn error(code: BearerError, description: impl Into<String>) -> Self {
        Self { error: Some(code), error_description: Some(description.into()), ..Self::default() }
    }

    /// Sets the protection realm.
    pub fn with_realm(mut self, realm: Option<&str>) -> Self {
        self.realm = realm.map(String::from);
        self
    }

    /// The scopes a token would need (RFC 6750 §3, `insufficient_scope`).
    pub fn with_scope<'a>(mut self, scopes: impl IntoIterator<Item = &'a str>) -> Self {
        let joined = scopes.into_iter().collect::<Vec<_>>().join(" ");
        self.scope = (!joined.is_empty()).then_some(joined);
        self
    }

    /// Acceptable authentication context classes (RFC 9470 `acr_values`).
    pub fn with_acr_values<'a>(mut self, values: impl IntoIterator<Item = &'a str>) -> Self {
        let joined = values.into_iter().collect::<Vec<_>>().join(" ");
        self.acr_values = (!joined.is_empty()).then_some(joined);
        self
    }

    /// Maximum authentication age in seconds (RFC 9470 `max_age`).
    pub fn with_max_age(mut self, max_age: Option<u64>) -> Self {
        self.max_age = max_age;
        self
    }

    /// Where the protected resource metadata lives (RFC 9728 §5.1).
    pub fn with_resource_metadata(mut self, url: Option<&str>) -> Self {
        self.resource_metadata = url.map(String::from);
        self
    }

    /// The error code, if any.
    pub fn error_code(&self) -> Option<BearerError> {
        self.error
    }

    /// The HTTP status for this challenge: the error's, or 401 without one.
    pub fn status(&self) -> u16 {
        self.error.map_or(401, BearerError::status)
    }

    /// The `WWW-Authenticate` header value.
    pub fn header_value(&self) -> String {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(realm) = &self.realm {
            params.push(("realm", realm.clone()));
        }
        if let Some(error) = self.error {
            params.push(("error", String::from(error.code())));
        }
        if let Some(description) = &self.error_description {
            params.push(("error_description", description.clone()));
        }
        if let Some(scope) = &self.scope {
            params.push(("scope", scope.clone()));
        }
        if let Some(acr_values) = &self.acr_values {
            params.push(("acr_values", acr_values.clone()));
        }
        if let Some(max_age) = self.max_age {
            let mut value = String::new();
            let _ = write!(value, "{max_age}");
            params.push(("max_age", value));
        }
        if let Some(url) = &self.resource_metadata {
            params.push(("resource_metadata", url.clone()));
        }
        let mut header = String::from("Bearer");
        for (index, (name, value)) in params.iter().enumerate() {
            header.push_str(if index == 0 { " " } else { ", " });
            header.push_str(name);
            header.push_str("=\"");
            header.push_str(&quoted_string_safe(value));
            header.push('"');
        }
        header
    }
}

/// Keeps only the characters RFC 6750 §3 allows inside these quoted values
/// (visible ASCII and space, without `"` and `\`), so no value can break out
/// of its quotes or split the header.
fn quoted_string_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '?',
        })
        .collect()
}

/// The JSON body of an error answer: `{"error": ..., "error_description": ...}`
/// (the shape of RFC 6749 §5.2, which clients already parse).
pub fn error_body(error: &str, description: &str) -> String {
    let mut body = serde_json::Map::new();
    body.insert("error".into(), serde_json::Value::String(error.into()));
    body.insert("error_description".into(), serde_json::Value::String(description.into()));
    alloc::string::ToString::to_string(&serde_json::Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_challenge_has_realm_and_no_error() {
        let c = AuthChallenge::bearer().with_realm(Some("baton"));
        assert_eq!(c.header_value(), r#"Bearer realm="baton""#);
        assert_eq!(c.status(), 401);
        assert_eq!(AuthChallenge::bearer().header_value(), "Bearer");
    }

    #[test]
    fn invalid_token_challenge() {
        let c = AuthChallenge::error(BearerError::InvalidToken, "token is expired")
            .with_realm(Some("api"))
            .with_resource_metadata(Some("https://api.example/.well-known/oauth-protected-resource"));
        assert_eq!(
            c.header_value(),
            r#"Bearer realm="api", error="invalid_token", error_description="token is expired", resource_metadata="https://api.example/.well-known/oauth-protected-resource""#
        );
        assert_eq!(c.status(), 401);
    }

    #[test]
    fn insufficient_scope_lists_the_scopes() {
        let c = AuthChallenge::error(BearerError::InsufficientScope, "missing scope")
            .with_scope(["read", "write"]);
        assert!(c.header_value().contains(r#"scope="read write""#));
        assert_eq!(c.status(), 403);
    }

    #[test]
    fn step_up_challenge_per_rfc_9470() {
        let c = AuthChallenge::error(
            BearerError::InsufficientUserAuthentication,
            "stronger authentication required",
        )
        .with_acr_values(["urn:mace:incommon:iap:silver", "mfa"])
        .with_max_age(Some(300));
        let value = c.header_value();
        assert!(value.contains(r#"error="insufficient_user_authentication""#));
        assert!(value.contains(r#"acr_values="urn:mace:incommon:iap:silver mfa""#));
        assert!(value.contains(r#"max_age="300""#));
        assert_eq!(c.status(), 401);
    }

    #[test]
    fn values_cannot_escape_their_quotes() {
        let c = AuthChallenge::error(BearerError::InvalidRequest, "a\"b\\c\r\nSet-Cookie: x=1 é");
        assert_eq!(
            c.header_value(),
            r#"Bearer error="invalid_request", error_description="a?b?c??Set-Cookie: x=1 ?""#
        );
        assert_eq!(c.status(), 400);
    }

    #[test]
    fn error_body_is_json() {
        let body = error_body("invalid_token", "token is \"expired\"");
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["error"], "invalid_token");
        assert_eq!(parsed["error_description"], "token is \"expired\"");
    }
}
