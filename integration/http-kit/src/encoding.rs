//! Percent-encoding (RFC 3986) and `application/x-www-form-urlencoded`,
//! on the `percent-encoding` and `form_urlencoded` crates.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// Everything but the RFC 3986 unreserved characters.
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes everything except the RFC 3986 unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`), using uppercase hex digits.
pub fn percent_encode(input: &str) -> String {
    percent_encoding::utf8_percent_encode(input, RESERVED).to_string()
}

/// Decodes `%XX` sequences; with `plus_as_space`, `+` becomes a space (form
/// encoding). Malformed escapes are kept literally rather than rejected, and
/// invalid UTF-8 is replaced, because callers inspect what a peer sent.
pub fn percent_decode(input: &str, plus_as_space: bool) -> String {
    if plus_as_space {
        return percent_encoding::percent_decode_str(&input.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
    }
    percent_encoding::percent_decode_str(input).decode_utf8_lossy().into_owned()
}

/// Encodes pairs as an `application/x-www-form-urlencoded` body (the WHATWG
/// serializer: spaces as `+`, joined with `&`).
pub fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// Parses `a=1&b=2` (query strings and form bodies): `+` as space,
/// percent-decoded, duplicates kept in order, empty segments skipped.
pub fn parse_urlencoded(input: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(input.as_bytes()).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_and_keeps_unreserved() {
        assert_eq!(percent_encode("a b/c~d-e._é"), "a%20b%2Fc~d-e._%C3%A9");
    }

    #[test]
    fn decodes_form_and_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a+b%20c%2f%zz%4", true), "a b c/%zz%4");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("a%2Bb", true), "a+b");
    }

    #[test]
    fn form_round_trip_keeps_duplicates_in_order() {
        let body = form_urlencode(&[("scope", "a b"), ("aud", "x&y=z"), ("aud", "")]);
        assert_eq!(body, "scope=a+b&aud=x%26y%3Dz&aud=");
        assert_eq!(
            parse_urlencoded(&body),
            vec![
                ("scope".to_string(), "a b".to_string()),
                ("aud".to_string(), "x&y=z".to_string()),
                ("aud".to_string(), String::new()),
            ]
        );
        assert_eq!(parse_urlencoded("&a&&b=1"), vec![("a".into(), String::new()), ("b".into(), "1".into())]);
    }
}
