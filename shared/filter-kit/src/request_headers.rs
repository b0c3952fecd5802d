//! Reading request headers through the [`Host`]: the whole map in one
//! call, once per request, for everything a decision and its forwarding
//! look at (a host call costs about as much as copying a few hundred bytes
//! of headers; see `bench/README.md`); and removing every spelling of a
//! header the filter sets.

use crate::credential::Credential;
use crate::host::{HeaderMap, Host, HostError};
use crate::matching::{MatchInputs, method_override};

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

/// A request's headers as the proxy had them when they arrived: names in
/// lower case (as Envoy keeps them), repeated headers as repeated pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaders {
    pairs: Vec<(String, Vec<u8>)>,
}

impl RequestHeaders {
    /// Reads the current request's headers: one host call.
    pub fn read(host: &dyn Host) -> Result<Self, HostError> {
        Ok(Self { pairs: host.headers(HeaderMap::RequestHeaders)? })
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> &[(String, Vec<u8>)] {
        &self.pairs
    }

    /// Header `name`'s first value (what the proxy's single-value read
    /// returns).
    pub fn value(&self, name: &str) -> Option<&[u8]> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_slice())
    }

    /// Header `name`'s first value as text. Bytes that are not UTF-8
    /// (obs-text) become U+FFFD rather than failing the request.
    pub fn text(&self, name: &str) -> Option<String> {
        self.value(name).map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    }

    /// The attributes `inputs` asks for.
    pub fn match_attributes(&self, inputs: MatchInputs) -> MatchAttributes {
        let read = |wanted: bool, name: &str| {
            if wanted { self.text(name).unwrap_or_default() } else { String::new() }
        };
        let path = read(inputs.path || inputs.method, ":path");
        let method_override =
            if inputs.method { method_override(&path, |name| self.value(name).is_some()) } else { None };
        MatchAttributes {
            method: read(inputs.method, ":method"),
            path,
            authority: read(inputs.authority, ":authority"),
            method_override,
        }
    }

    /// The credential header `name` (lower case), telling one value from
    /// several.
    ///
    /// Envoy keeps `authorization` as a single header, joining repeated
    /// ones with commas (which [`crate::credential::extract_token`] refuses
    /// as invalid characters); any other header may repeat.
    pub fn credential(&self, name: &str) -> Credential {
        let mut values = self.pairs.iter().filter(|(header, _)| header == name);
        match (values.next(), values.next()) {
            (None, _) => Credential::Absent,
            (Some((_, value)), None) => Credential::one(value.clone()),
            (Some(_), Some(_)) => Credential::Several,
        }
    }
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

/// The headers of `present` to remove so that none a backend could read
/// as one of `names` is left, except those `replaced` names the filter
/// sets anyway: a header that occurs once is replaced by setting it (the
/// proxy replaces its first occurrence), which saves a host call.
pub fn spellings_to_remove(present: &[(String, Vec<u8>)], names: &[&str], replaced: &[&str]) -> Vec<String> {
    let occurrences = |name: &str| present.iter().filter(|(n, _)| n == name).count();
    spellings_of(present.iter().map(|(name, _)| name.as_str()), names)
        .into_iter()
        .filter(|name| !(replaced.contains(&name.as_str()) && occurrences(name) == 1))
        .collect()
}

/// Removes from `map` (request headers or trailers) every header a backend
/// could read as one of `names`, in any spelling: a header the filter sets
/// comes from the filter only. `known`: the map as already read, if it
/// still is what the proxy holds (no second read then); `replaced`: names
/// the caller sets next.
pub fn remove_spellings<S: AsRef<str>>(
    host: &dyn Host,
    map: HeaderMap,
    names: &[S],
    known: Option<&RequestHeaders>,
    replaced: &[&str],
) -> Result<(), HostError> {
    if names.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    let read;
    let present = match known {
        Some(headers) => headers.pairs(),
        None => {
            read = host.headers(map)?;
            read.as_slice()
        }
    };
    for name in spellings_to_remove(present, &names, replaced) {
        host.remove_header(map, &name)?;
    }
    Ok(())
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

    #[test]
    fn a_header_set_anyway_is_removed_only_when_it_occurs_more_than_once() {
        let pairs = |names: &[&str]| -> Vec<(String, Vec<u8>)> {
            names.iter().map(|name| (name.to_string(), b"v".to_vec())).collect()
        };
        let once = pairs(&["authorization", "x-other"]);
        assert!(spellings_to_remove(&once, &["authorization"], &["authorization"]).is_empty());
        assert_eq!(spellings_to_remove(&once, &["authorization"], &[]), ["authorization"]);
        let twice = pairs(&["x-user-id", "x-user-id", "X_User_Id"]);
        assert_eq!(spellings_to_remove(&twice, &["x-user-id"], &["x-user-id"]), ["x-user-id", "X_User_Id"]);
        let spelled = pairs(&["x_user_id"]);
        assert_eq!(spellings_to_remove(&spelled, &["x-user-id"], &["x-user-id"]), ["x_user_id"]);
    }
}
