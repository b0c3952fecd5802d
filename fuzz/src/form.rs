//! Target `form`: `application/x-www-form-urlencoded` as the filters read
//! and write it (`baton_token::form`), and the percent-escape rule of
//! `baton_filter_kit::matching::ambiguous_path`.
//!
//! Input: pairs to encode, `name \0 value \0 name \0 …`; the whole input,
//! when it is UTF-8, is also read as a query.
//!
//! Asserts: encoded pairs read back to exactly themselves, strictly and as a
//! server reads them; a query is read as rust-url's `form_urlencoded` reads
//! it (WHATWG), byte for byte, and strictly exactly when an independent
//! strict reading accepts it, to the same pairs; a path that passes
//! `ambiguous_path` has a `%` only before two hex digits.

use crate::fields;
use crate::reference::{form_decode, lenient_pairs};
use baton_filter_kit::matching::ambiguous_path;
use baton_token::form::{decode, decode_strict, encode};

/// The target's one call: checks `data` as the module documentation says.
pub fn check(data: &[u8]) {
    let values: Vec<String> =
        fields(data, 16).iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    let pairs: Vec<(&str, &str)> =
        values.chunks(2).map(|p| (p[0].as_str(), p.get(1).map_or("", String::as_str))).collect();
    let encoded = encode(&pairs);
    let owned: Vec<(String, String)> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    assert_eq!(decode_strict(&encoded).as_ref(), Some(&owned), "{encoded:?}");
    assert_eq!(decode(&encoded), owned, "{encoded:?}");

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(decode(text), lenient_pairs(text), "{text:?}");
    assert_eq!(decode_strict(text), form_decode(text), "{text:?}");

    let path = format!("/{text}");
    if ambiguous_path(&path).is_none() {
        let bytes = path.split_once('?').map_or(path.as_str(), |(path, _)| path).as_bytes();
        for (index, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'%') {
            let hex = bytes.get(index + 1..index + 3).unwrap_or_default();
            assert!(hex.len() == 2 && hex.iter().all(u8::is_ascii_hexdigit), "{path:?} passed with a bare %");
        }
    }
}
