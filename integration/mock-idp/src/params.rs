//! Form parameters of a token request.

use crate::oauth_error::OAuthError;

/// Parameters that may legitimately repeat (RFC 8693 §2.1); any other
/// repeated parameter is an error (RFC 6749 §3.2).
const REPEATABLE: [&str; 2] = ["audience", "resource"];

/// Decoded form parameters, duplicates kept in order.
#[derive(Debug, Clone)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn new(pairs: Vec<(String, String)>) -> Self {
        Params(pairs)
    }

    /// The value of `name`; empty values count as omitted (RFC 6749 §3.1).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, v)| n == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    /// Like [`Params::get`], but a missing value is an `invalid_request`.
    pub(crate) fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| OAuthError::invalid_request(format!("missing {name}")))
    }

    /// Every non-empty value of `name`, in order.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(n, v)| n == name && !v.is_empty()).map(|(_, v)| v.clone()).collect()
    }

    /// Rejects any non-repeatable parameter sent more than once.
    pub(crate) fn reject_duplicates(&self) -> Result<(), OAuthError> {
        for (index, (name, _)) in self.0.iter().enumerate() {
            let repeated = self.0[..index].iter().any(|(earlier, _)| earlier == name);
            if repeated && !REPEATABLE.contains(&name.as_str()) {
                return Err(OAuthError::invalid_request(format!("parameter {name} repeated")));
            }
        }
        Ok(())
    }
}

/// Space-separated scope values, without empties.
pub(crate) fn scope_list(scope: &str) -> Vec<&str> {
    scope.split(' ').filter(|s| !s.is_empty()).collect()
}
