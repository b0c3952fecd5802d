//! Values that must never reach a log line: bearer tokens, client secrets,
//! authorization codes, PKCE verifiers.

use alloc::string::String;
use core::fmt;

/// A secret string whose `Debug` and `Display` print nothing of it.
///
/// Read it with [`Secret::expose`], at the one place that must send it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call sites of this are the places to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn formatting_never_shows_the_value() {
        let secret = Secret::new("s3cr3t-value");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        assert!(!format!("{secret}").contains("s3cr3t"));
        assert_eq!(secret.expose(), "s3cr3t-value");
    }
}
