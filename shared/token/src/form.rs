//! `application/x-www-form-urlencoded` (RFC 6749 Appendix B, WHATWG URL),
//! both ways: token endpoint bodies and authorization URLs are encoded
//! here; redirect queries are read here the way servers read them.

use alloc::string::String;
use alloc::vec::Vec;

/// Encodes `pairs`: unreserved characters kept, space as `+`, everything
/// else percent-encoded as UTF-8.
pub fn encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        encode_component(name, &mut out);
        out.push('=');
        encode_component(value, &mut out);
    }
    out
}

pub(crate) fn encode_component(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
    }
}

/// The pairs of a query or form body, in order, duplicates kept, read the
/// way servers read them: `+` as space, `%XX` as a byte, a malformed escape
/// kept as it is, bytes that are not UTF-8 replaced.
pub fn decode(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(name), decode_component(value))
        })
        .collect()
}

/// The pairs of strictly encoded text: `None` when an escape is malformed,
/// a pair has no `=`, or a value is not UTF-8.
pub fn decode_strict(text: &str) -> Option<Vec<(String, String)>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((strict_component(name)?, strict_component(value)?))
        })
        .collect()
}

/// One name or value, read as [`decode`] does.
pub fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match (bytes[index], escaped(bytes, index)) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                index += 1;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn strict_component(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                out.push(escaped(bytes, index)?);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The byte the `%XX` at `index` stands for, if it is a well-formed escape:
/// exactly two hex digits (not `u8::from_str_radix`, which also takes a
/// sign, so `%+5` would read as byte 5 where servers keep it as it is).
pub fn escaped(bytes: &[u8], index: usize) -> Option<u8> {
    let high = hex_digit(*bytes.get(index + 1)?)?;
    let low = hex_digit(*bytes.get(index + 2)?)?;
    Some(high << 4 | low)
}

fn hex_digit(byte: u8) -> Option<u8> {
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
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn encoding_and_reading_agree() {
        let pairs = [("grant_type", "client_credentials"), ("scope", "a b/c"), ("x", "é&=+%")];
        let text = encode(&pairs);
        assert_eq!(text, "grant_type=client_credentials&scope=a+b%2Fc&x=%C3%A9%26%3D%2B%25");
        let read: Vec<(String, String)> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(decode(&text), read);
        assert_eq!(decode_strict(&text), Some(read));
    }

    #[test]
    fn servers_reading_and_strict_reading_differ_on_malformed_text() {
        assert_eq!(
            decode("code=a%2Bb&state=x+y&code=z&flag&&a=%zz&b=%4"),
            vec![
                ("code".to_string(), "a+b".to_string()),
                ("state".into(), "x y".into()),
                ("code".into(), "z".into()),
                ("flag".into(), "".into()),
                ("a".into(), "%zz".into()),
                ("b".into(), "%4".into()),
            ]
        );
        assert_eq!(decode_component("%5Fmethod"), "_method");
        assert!(decode("").is_empty());
        assert_eq!(decode_strict("a=%zz"), None);
        assert_eq!(decode_strict("flag"), None);
        assert_eq!(decode_strict("a=%ff"), None);
        assert_eq!(decode_strict(""), Some(vec![]));
    }

    #[test]
    fn an_escape_is_two_hex_digits_and_nothing_else() {
        // A sign is not a digit: `%+5` and `%-5` stay as they are (WHATWG
        // percent-decode), as does a space or a non-ASCII byte after `%`.
        for text in ["%+5", "%-5", "%+F", "% 5", "%5 ", "%\u{e9}5", "%%41"] {
            let expected = if text == "%%41" { "%A".to_string() } else { text.replace('+', " ") };
            assert_eq!(decode_component(text), expected, "{text}");
        }
        assert_eq!(decode_strict("a=%+5"), None);
        assert_eq!(decode_component("%4a%4A"), "JJ");
    }
}
