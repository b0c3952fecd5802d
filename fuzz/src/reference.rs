//! Independent readings the targets compare the filters' output with:
//! written from the RFCs, sharing no code with the crates under test.

/// Whether `name` is a header name as Envoy stores it (lower-case token).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Decodes `application/x-www-form-urlencoded` pairs (the reference reading:
/// `+` is a space, `%XX` a byte); `None` when an escape is malformed or a
/// value is not UTF-8.
pub fn form_decode(text: &str) -> Option<Vec<(String, String)>> {
    fn component(text: &str) -> Option<String> {
        let mut bytes = Vec::with_capacity(text.len());
        let mut input = text.bytes();
        while let Some(byte) = input.next() {
            bytes.push(match byte {
                b'+' => b' ',
                b'%' => {
                    // Two hex digits, each on its own: a sign is no digit.
                    let high = char::from(input.next()?).to_digit(16)?;
                    let low = char::from(input.next()?).to_digit(16)?;
                    u8::try_from(high * 16 + low).ok()?
                }
                other => other,
            });
        }
        String::from_utf8(bytes).ok()
    }
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((component(name)?, component(value)?))
        })
        .collect()
}

/// Query pairs as a server reads them (malformed escapes kept), by the
/// `form_urlencoded` crate (rust-url's).
pub fn lenient_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// Decodes standard, padded base64 (RFC 4648 §4).
pub fn standard_base64_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        let mut bits = 0u32;
        for c in &chunk[..4 - pad] {
            bits = bits << 6 | value(*c)?;
        }
        bits <<= 6 * pad as u32;
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// Parses `Bearer [1*SP auth-param *(OWS "," OWS auth-param)]` (RFC 7235
/// §2.1, with RFC 9110's `token` and `quoted-string`); values must be
/// quoted strings, as RFC 6750 §3 writes them. Returns the parameters, or
/// `None` when the value is not such a challenge.
pub fn parse_challenge(header: &str) -> Option<Vec<(String, String)>> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let rest = header.strip_prefix("Bearer")?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let mut chars = rest.strip_prefix(' ')?.chars().peekable();
    let mut params = Vec::new();
    loop {
        let mut name = String::new();
        while let Some(&c) = chars.peek().filter(|c| tchar(**c)) {
            name.push(c);
            chars.next();
        }
        if name.is_empty() || chars.next() != Some('=') || chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => value.push(chars.next()?),
                c if c == '\t' || c == ' ' || c == '!' || ('#'..='~').contains(&c) || c >= '\u{80}' => {
                    value.push(c)
                }
                _ => return None,
            }
        }
        params.push((name, value));
        match chars.next() {
            None => return Some(params),
            Some(',') => {
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            Some(_) => return None,
        }
    }
}
