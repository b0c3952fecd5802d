//! Percent-encoding (RFC 3986) and `application/x-www-form-urlencoded`.

/// Percent-encodes everything except the RFC 3986 unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`), using uppercase hex digits.
pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0f));
        }
    }
    out
}

/// Decodes `%XX` sequences; with `plus_as_space`, `+` becomes a space (form
/// encoding). Malformed escapes are kept literally rather than rejected, and
/// invalid UTF-8 is replaced, because callers inspect what a peer sent.
pub fn percent_decode(input: &str, plus_as_space: bool) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let high = bytes.get(i + 1).copied().and_then(hex_value);
            let low = bytes.get(i + 2).copied().and_then(hex_value);
            if let (Some(high), Some(low)) = (high, low) {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(if plus_as_space && byte == b'+' { b' ' } else { byte });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes pairs as an `application/x-www-form-urlencoded` body: each name
/// and value percent-encoded, spaces as `+`, joined with `&`.
pub fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", form_component(name), form_component(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Parses `a=1&b=2` (query strings and form bodies): `+` as space,
/// percent-decoded, duplicates kept in order, empty segments skipped.
pub fn parse_urlencoded(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
            (percent_decode(name, true), percent_decode(value, true))
        })
        .collect()
}

fn form_component(input: &str) -> String {
    percent_encode(input).replace("%20", "+")
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble & 0x0f)])
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
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
    }
}
