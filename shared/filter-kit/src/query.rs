//! `application/x-www-form-urlencoded` query strings, read the way the
//! servers behind Envoy read them (`+` as space, `%XX` decoded, a malformed
//! escape kept as it is).

/// `application/x-www-form-urlencoded` query pairs, duplicates kept.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// One name or value, decoded.
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = core::str::from_utf8(&bytes[index + 1..index + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_decoded_and_kept_in_order() {
        assert_eq!(
            parse_query("code=a%2Bb&state=x+y&code=z&flag"),
            [
                ("code".to_string(), "a+b".to_string()),
                ("state".into(), "x y".into()),
                ("code".into(), "z".into()),
                ("flag".into(), "".into())
            ]
        );
        assert_eq!(
            parse_query("a=%zz&b=%4"),
            [("a".to_string(), "%zz".to_string()), ("b".into(), "%4".into())]
        );
        assert_eq!(decode("%5Fmethod"), "_method");
        assert!(parse_query("").is_empty());
    }
}
