//! Reading a bearer token from a request header: one header, the scheme
//! prefix matched case-insensitively (RFC 9110 §11.1), and a token whose
//! characters cannot break the header syntax (RFC 6750 §2.1).

use baton_token::secret::SecretBytes;

/// The credential header(s) of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No token header.
    Absent,
    /// One token header, its raw value.
    One(SecretBytes),
    /// The token header appears more than once: ambiguous, refused.
    Several,
}

impl Credential {
    /// One token header with this raw value.
    pub fn one(raw: impl Into<Vec<u8>>) -> Self {
        Credential::One(SecretBytes::new(raw))
    }
}

/// Why no token could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// No token header, or another scheme: 401 without an error code.
    Missing,
    /// A malformed credential: 400 `invalid_request`.
    Malformed(&'static str),
}

/// The bytes a bearer token may hold: visible ASCII but for the three that
/// would break the header's syntax (`"`, `\\`, `,`).
const TOKEN_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = b'!';
    while b <= b'~' {
        table[b as usize] = !matches!(b, b'"' | b'\\' | b',');
        b += 1;
    }
    table
};

/// Reads the token from the credential header: `prefix` (the scheme,
/// case-insensitive per RFC 9110 §11.1) then the token (RFC 6750 §2.1
/// `b64token`). A header with another scheme counts as no token.
pub fn extract_token<'a>(credential: &'a Credential, prefix: &str) -> Result<&'a str, TokenProblem> {
    let raw = match credential {
        Credential::Absent => return Err(TokenProblem::Missing),
        Credential::Several => return Err(TokenProblem::Malformed("more than one credential header")),
        Credential::One(raw) => raw.expose(),
    };
    let text =
        std::str::from_utf8(raw).map_err(|_| TokenProblem::Malformed("credential is not valid text"))?;
    let text = text.trim_matches([' ', '\t']);
    let token = if prefix.is_empty() {
        text
    } else {
        let scheme = prefix.trim_end();
        match text.get(..scheme.len()) {
            Some(head) if head.eq_ignore_ascii_case(scheme) => {
                let rest = &text[scheme.len()..];
                if rest.is_empty() {
                    return Err(TokenProblem::Malformed("bearer credential is empty"));
                }
                if scheme.len() < prefix.len() {
                    if rest.starts_with('\t') {
                        // RFC 6750 §2.1: `"Bearer" 1*SP b64token`; a tab is
                        // a spelling other parsers may read differently.
                        return Err(TokenProblem::Malformed(
                            "bearer credential must follow the scheme after a space",
                        ));
                    }
                    if !rest.starts_with(' ') {
                        // e.g. "Bearerabc" or "Bearers x": another scheme.
                        return Err(TokenProblem::Missing);
                    }
                }
                rest.trim_start_matches(' ')
            }
            _ => return Err(TokenProblem::Missing),
        }
    };
    if token.is_empty() {
        return Err(TokenProblem::Malformed("bearer credential is empty"));
    }
    // Only what breaks the header syntax is a malformed request; anything
    // else reaches the JWT parser and is an invalid token.
    // (A table read per byte, folded without a branch: a slice search per
    // byte cost a third of a cached decision, a `match` with an early exit
    // still an eighth.)
    if !token.bytes().fold(true, |valid, b| valid & TOKEN_BYTE[usize::from(b)]) {
        return Err(TokenProblem::Malformed("bearer credential has invalid characters"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> Credential {
        Credential::one(value.as_bytes().to_vec())
    }

    #[test]
    fn reads_the_token_after_the_scheme() {
        assert_eq!(extract_token(&one("Bearer abc.def.ghi"), "Bearer "), Ok("abc.def.ghi"));
        assert_eq!(extract_token(&one("bearer   abc"), "Bearer "), Ok("abc"));
        assert_eq!(extract_token(&one("  BEARER abc  "), "Bearer "), Ok("abc"));
        assert_eq!(extract_token(&one("abc"), ""), Ok("abc"));
    }

    #[test]
    fn another_scheme_is_no_token() {
        assert_eq!(extract_token(&one("Basic YWxpY2U6cHc="), "Bearer "), Err(TokenProblem::Missing));
        assert_eq!(extract_token(&one("Bearerabc"), "Bearer "), Err(TokenProblem::Missing));
        assert_eq!(extract_token(&Credential::Absent, "Bearer "), Err(TokenProblem::Missing));
    }

    #[test]
    fn malformed_credentials() {
        for (credential, why) in [
            (Credential::Several, "more than one credential header"),
            (one("Bearer "), "bearer credential is empty"),
            (one("Bearer"), "bearer credential is empty"),
            (one("Bearer a b"), "bearer credential has invalid characters"),
            (one("Bearer a\"b"), "bearer credential has invalid characters"),
            (one("Bearer\tabc"), "bearer credential must follow the scheme after a space"),
            (Credential::one(b"Bearer \xff".to_vec()), "credential is not valid text"),
        ] {
            assert_eq!(extract_token(&credential, "Bearer "), Err(TokenProblem::Malformed(why)));
        }
    }

    #[test]
    fn every_byte_is_judged_as_rfc_6750_and_the_header_syntax_say() {
        // Visible ASCII but `"`, `\` and `,`, byte by byte, against the table.
        for b in 0..=255u8 {
            let allowed = b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b',');
            let mut raw = b"Bearer a".to_vec();
            raw.push(b);
            raw.push(b'z');
            let credential = Credential::one(raw);
            let got = extract_token(&credential, "Bearer ");
            if allowed {
                assert!(got.is_ok(), "byte {b:#04x} refused");
            } else {
                assert!(matches!(got, Err(TokenProblem::Malformed(_))), "byte {b:#04x} accepted: {got:?}");
            }
        }
    }
}
