//! A token an IdP issued, checked against what the gateway asked for before
//! it goes to an upstream. Some IdPs ignore `audience` (honouring only
//! RFC 8707 `resource`, or neither) and issue their default audience: the
//! upstream would then hold a token valid at another service, which it
//! could replay there. When the issued token is a JWT, its `aud` must name
//! only audiences the gateway asked for (at least one of them), and its
//! `iss` the IdP, when the gateway knows it. An opaque token says nothing
//! of itself and cannot be checked here.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::base64url;
use crate::jwt::UnverifiedJwt;

/// What the issued token must say of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuedTokenExpectation<'a> {
    /// The audiences and resources asked for; the token's `aud` must be a
    /// non-empty subset. Empty: not checked.
    pub audiences: &'a [String],
    /// The IdP's issuer identifier, when configured.
    pub issuer: Option<&'a str>,
}

/// An issued JWT that does not match what was asked: what it says instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedTokenMismatch {
    /// Its `aud` values (audiences are not secrets).
    pub audiences: Vec<String>,
    /// Its `iss`.
    pub issuer: Option<String>,
    /// It looks like a JWT but does not parse as one.
    pub unreadable: bool,
}

impl fmt::Display for IssuedTokenMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unreadable {
            return f.write_str("the issued token looks like a JWT but does not parse");
        }
        write!(f, "the issued token has aud={:?} iss={:?}", self.audiences, self.issuer)
    }
}

/// Checks `token` (as issued) against `expect`.
pub fn check_issued_token(
    token: &str,
    expect: IssuedTokenExpectation<'_>,
) -> Result<(), IssuedTokenMismatch> {
    if !looks_like_jwt(token) {
        return Ok(());
    }
    let claims = match UnverifiedJwt::parse(token, token.len()) {
        Ok(jwt) => jwt.into_claims(),
        Err(_) => return Err(IssuedTokenMismatch { audiences: Vec::new(), issuer: None, unreadable: true }),
    };
    let audiences: Vec<String> = claims.aud.iter().map(String::from).collect();
    let audience_ok = expect.audiences.is_empty()
        || (!audiences.is_empty() && audiences.iter().all(|aud| expect.audiences.contains(aud)));
    let issuer_ok = expect.issuer.is_none_or(|issuer| claims.iss.as_deref() == Some(issuer));
    if audience_ok && issuer_ok {
        Ok(())
    } else {
        Err(IssuedTokenMismatch { audiences, issuer: claims.iss, unreadable: false })
    }
}

/// Three dot-separated segments whose first decodes to a JSON object: a
/// JWS, which then has to parse.
fn looks_like_jwt(token: &str) -> bool {
    let mut segments = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return false;
    };
    base64url::decode(header).is_ok_and(|bytes| bytes.first() == Some(&b'{'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn jwt(claims: &str) -> String {
        alloc::format!(
            "{}.{}.c2ln",
            base64url::encode(br#"{"alg":"ES256","typ":"at+jwt"}"#),
            base64url::encode(claims.as_bytes())
        )
    }

    #[test]
    fn the_audience_is_a_nonempty_subset_of_what_was_asked() {
        let asked = vec!["market-data".to_string(), "https://market/api".to_string()];
        let expect = IssuedTokenExpectation { audiences: &asked, issuer: Some("https://idp") };
        assert_eq!(check_issued_token(&jwt(r#"{"iss":"https://idp","aud":"market-data"}"#), expect), Ok(()));
        assert_eq!(
            check_issued_token(
                &jwt(r#"{"iss":"https://idp","aud":["market-data","https://market/api"]}"#),
                expect
            ),
            Ok(())
        );
        let default =
            check_issued_token(&jwt(r#"{"iss":"https://idp","aud":"default-api"}"#), expect).unwrap_err();
        assert_eq!(default.audiences, ["default-api"]);
        assert!(default.to_string().contains("default-api"));
        // One more audience than asked is one more service it is valid at.
        assert!(
            check_issued_token(&jwt(r#"{"iss":"https://idp","aud":["market-data","ledger"]}"#), expect)
                .is_err()
        );
        assert!(check_issued_token(&jwt(r#"{"iss":"https://idp"}"#), expect).is_err(), "no aud");
        let other_issuer = check_issued_token(&jwt(r#"{"iss":"https://evil","aud":"market-data"}"#), expect);
        assert_eq!(other_issuer.unwrap_err().issuer.as_deref(), Some("https://evil"));
        // Nothing asked, nothing checked; an opaque token says nothing.
        let nothing = IssuedTokenExpectation { audiences: &[], issuer: None };
        assert_eq!(check_issued_token(&jwt(r#"{"aud":"anything"}"#), nothing), Ok(()));
        assert_eq!(check_issued_token("2YotnFZFEjr1zCsicMWpAA", expect), Ok(()));
        assert_eq!(check_issued_token("a.b.c", expect), Ok(()), "not a JOSE header");
        // A JWT that does not parse is not let through.
        let broken = alloc::format!("{}.!!.c2ln", base64url::encode(br#"{"alg":"ES256"}"#));
        assert!(check_issued_token(&broken, expect).unwrap_err().unreadable);
    }
}
