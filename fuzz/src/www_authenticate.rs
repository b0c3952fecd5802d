//! `WWW-Authenticate` challenges (`AuthChallenge`) and error bodies built
//! from fuzzed realm, description, scopes, `acr_values`, `max_age` and
//! resource metadata URL.
//!
//! Input: byte 0 picks the error code (none, or one of the four), then the
//! realm, description, scopes, acr values, max age and metadata URL,
//! separated by NUL bytes (missing ones are absent). The whole input, NULs
//! included, is also used once as a description.
//!
//! Asserts: the header value is visible ASCII and spaces only (no CR, LF,
//! NUL or other control character, nothing non-ASCII), and parses, with an
//! independent RFC 7235 §2.1 parser, as exactly one `Bearer` challenge whose
//! parameters are each given once, in order, as quoted strings without
//! escapes, holding the input values (characters RFC 6750 §3 does not allow
//! replaced by `?`, one for one); the HTTP status is RFC 6750's for the
//! code; the JSON error body reads back to exactly the values given.

use crate::fields;
use crate::reference::parse_challenge;
use baton_token::challenge::{AuthChallenge, BearerError, error_body};

const CODES: [Option<BearerError>; 5] = [
    None,
    Some(BearerError::InvalidRequest),
    Some(BearerError::InvalidToken),
    Some(BearerError::InsufficientScope),
    Some(BearerError::InsufficientUserAuthentication),
];

/// The target's one call: checks `data` as the module documentation says.
pub fn check(data: &[u8]) {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let code = CODES[usize::from(*selector) % CODES.len()];
    let parts: Vec<String> =
        fields(rest, 6).iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    let part = |index: usize| parts.get(index).map(String::as_str);

    let realm = part(0);
    let description = part(1).unwrap_or("");
    let scopes: Vec<&str> =
        part(2).map(|s| s.split(' ').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    let acr_values: Vec<&str> =
        part(3).map(|s| s.split(' ').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    let max_age = part(4).and_then(|s| s.parse::<u64>().ok());
    let metadata = part(5);

    let challenge = match code {
        None => AuthChallenge::bearer(),
        Some(code) => AuthChallenge::error(code, description),
    }
    .with_realm(realm)
    .with_scope(scopes.iter().copied())
    .with_acr_values(acr_values.iter().copied())
    .with_max_age(max_age)
    .with_resource_metadata(metadata);

    let mut expected: Vec<(&str, String)> = Vec::new();
    if let Some(realm) = realm {
        expected.push(("realm", realm.to_string()));
    }
    if let Some(code) = code {
        expected.push(("error", code.code().to_string()));
        expected.push(("error_description", description.to_string()));
    }
    if !scopes.is_empty() {
        expected.push(("scope", scopes.join(" ")));
    }
    if !acr_values.is_empty() {
        expected.push(("acr_values", acr_values.join(" ")));
    }
    if let Some(max_age) = max_age {
        expected.push(("max_age", max_age.to_string()));
    }
    if let Some(url) = metadata {
        expected.push(("resource_metadata", url.to_string()));
    }
    check_header(&challenge.header_value(), &expected);
    assert_eq!(challenge.error_code(), code);
    assert_eq!(challenge.status(), code.map_or(401, |code| code.status()));
    assert_eq!(
        challenge.status(),
        match code {
            None | Some(BearerError::InvalidToken | BearerError::InsufficientUserAuthentication) => 401,
            Some(BearerError::InvalidRequest) => 400,
            Some(BearerError::InsufficientScope) => 403,
        }
    );

    // The whole input as one description: NULs and every other byte.
    let whole = String::from_utf8_lossy(data);
    let challenge = AuthChallenge::error(BearerError::InvalidToken, whole.as_ref());
    check_header(
        &challenge.header_value(),
        &[("error", "invalid_token".to_string()), ("error_description", whole.to_string())],
    );

    // The JSON body carries the values exactly (JSON escapes them).
    let body = error_body(description, &whole);
    let read: serde_json::Value = serde_json::from_str(&body).expect("the error body is JSON");
    assert_eq!(read["error"], description);
    assert_eq!(read["error_description"], whole.as_ref());
    assert_eq!(read.as_object().map(|o| o.len()), Some(2));
}

/// RFC 6750 §3: the characters allowed in these quoted values.
fn allowed(c: char) -> bool {
    matches!(c, ' ' | '!' | '#'..='[' | ']'..='~')
}

fn check_header(header: &str, expected: &[(&str, String)]) {
    assert!(header.bytes().all(|b| b == b' ' || b.is_ascii_graphic()), "not a safe header value: {header:?}");
    let params = parse_challenge(header).unwrap_or_else(|| panic!("not an RFC 7235 challenge: {header:?}"));
    let names: Vec<&str> = params.iter().map(|(name, _)| name.as_str()).collect();
    for (index, name) in names.iter().enumerate() {
        assert!(!names[..index].contains(name), "{name} given twice: {header:?}");
    }
    assert_eq!(names, expected.iter().map(|(name, _)| *name).collect::<Vec<_>>(), "{header:?}");
    for ((name, got), (_, input)) in params.iter().zip(expected) {
        let want: String = input.chars().map(|c| if allowed(c) { c } else { '?' }).collect();
        assert_eq!(got, &want, "{name} of {header:?}");
    }
}
