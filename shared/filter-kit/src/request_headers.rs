//! Reading request headers through the [`Host`]: one call per value a
//! decision needs, instead of copying the whole header map on every
//! request; and removing every spelling of a header the filter sets.

use crate::credential::Credential;
use crate::host::{HeaderMap, Host, HostError};
use crate::matching::{METHOD_OVERRIDE_HEADERS, MatchInputs, method_override};

/// The request attributes matches look at; those not asked for stay empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchAttributes {
    /// `:method`.
    pub method: String,
    /// `:path`, query included.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Where the request names a second method (read when methods are
    /// matched): see [`crate::matching::method_override`].
    pub method_override: Option<&'static str>,
}

/// One request header's first value, as text. Bytes that are not UTF-8
/// (obs-text) become U+FFFD rather than failing the request.
pub fn header(host: &dyn Host, name: &str) -> Result<Option<String>, HostError> {
    Ok(host.header(HeaderMap::RequestHeaders, name)?.map(|bytes| {
        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }))
}

/// The attributes `inputs` asks for.
pub fn match_attributes(host: &dyn Host, inputs: MatchInputs) -> Result<MatchAttributes, HostError> {
    let read = |wanted: bool, name: &str| -> Result<String, HostError> {
        if wanted { Ok(header(host, name)?.unwrap_or_default()) } else { Ok(String::new()) }
    };
    let path = read(inputs.path || inputs.method, ":path")?;
    let method_override = if inputs.method {
        let mut present = Vec::new();
        for name in METHOD_OVERRIDE_HEADERS {
            if host.header(HeaderMap::RequestHeaders, name)?.is_some() {
                present.push(name);
            }
        }
        method_override(&path, |name| present.contains(&name))
    } else {
        None
    };
    Ok(MatchAttributes {
        method: read(inputs.method, ":method")?,
        path,
        authority: read(inputs.authority, ":authority")?,
        method_override,
    })
}

/// Whether a backend could read header names `a` and `b` as one: CGI, WSGI,
/// Rack and PHP fold case and turn `-` into `_` (`X_User_Id` and
/// `x-user-id` both become `HTTP_X_USER_ID`).
pub fn same_to_backends(a: &str, b: &str) -> bool {
    let fold = |byte: u8| if byte == b'_' { b'-' } else { byte.to_ascii_lowercase() };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// The names in `present` that a backend could read as one of `names`,
/// `names` themselves included.
pub fn spellings_of<'a>(present: impl IntoIterator<Item = &'a str>, names: &[&str]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for name in present {
        if names.iter().any(|wanted| same_to_backends(name, wanted)) && !found.iter().any(|f| f == name) {
            found.push(name.to_string());
        }
    }
    found
}

/// Removes from `map` (request headers or trailers) every header a backend
/// could read as one of `names`, in any spelling: a header the filter sets
/// comes from the filter only.
pub fn remove_spellings<S: AsRef<str>>(
    host: &dyn Host,
    map: HeaderMap,
    names: &[S],
) -> Result<(), HostError> {
    if names.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    let present = host.headers(map)?;
    for name in spellings_of(present.iter().map(|(name, _)| name.as_str()), &names) {
        host.remove_header(map, &name)?;
    }
    Ok(())
}

/// The credential header `name` (lower case), telling one value from
/// several.
///
/// Envoy keeps `authorization` as a single header, joining repeated ones
/// with commas (which [`crate::credential::extract_token`] refuses as
/// invalid characters), so its first value is all there is. Any other header
/// may repeat, and only the whole map shows that.
pub fn credential(host: &dyn Host, name: &str) -> Result<Credential, HostError> {
    if name == "authorization" {
        return Ok(match host.header(HeaderMap::RequestHeaders, name)? {
            Some(value) => Credential::one(value),
            None => Credential::Absent,
        });
    }
    let headers = host.headers(HeaderMap::RequestHeaders)?;
    let mut values = headers.into_iter().filter(|(header, _)| header == name);
    Ok(match (values.next(), values.next()) {
        (None, _) => Credential::Absent,
        (Some((_, value)), None) => Credential::one(value),
        (Some(_), Some(_)) => Credential::Several,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_a_backend_folds_together_is_found() {
        assert!(same_to_backends("x-user-id", "X_User_Id"));
        assert!(same_to_backends("x_user-id", "x-user_id"));
        assert!(!same_to_backends("x-user-id", "x-user-ids"));
        assert!(!same_to_backends("x-userid", "x-user-id"));
        let present = ["x-user-id", "x_user_id", "X_User_Roles", "x-other", "x-user-id"];
        assert_eq!(
            spellings_of(present, &["x-user-id", "x-user-roles"]),
            ["x-user-id", "x_user_id", "X_User_Roles"]
        );
        assert!(spellings_of(present, &[]).is_empty());
    }
}
