//! Compact JWS parsing (RFC 7515 §7.1) without verification.
//!
//! Nothing here trusts the token: parsing only establishes that it is
//! well-formed and says which issuer, algorithm and key it claims, so the
//! caller can pick the key to verify it with.

use alloc::vec::Vec;
use core::fmt;

use crate::base64url;
use crate::claims::{Claims, InvalidClaim};
use crate::header::{HeaderError, JoseHeader};
use crate::json::{self, JsonError};

/// Default upper bound for a token's length. Real access tokens are well
/// under 4 KiB; the bound stops a 64 KiB header from costing a parse.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The three parts of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The JOSE header.
    Header,
    /// The claim set.
    Payload,
    /// The signature.
    Signature,
}

impl Segment {
    fn name(self) -> &'static str {
        match self {
            Segment::Header => "header",
            Segment::Payload => "payload",
            Segment::Signature => "signature",
        }
    }
}

/// Why a token could not be parsed. Every variant maps to `invalid_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtError {
    /// Longer than the configured maximum.
    TooLarge {
        /// The token's length.
        len: usize,
        /// The maximum accepted.
        max: usize,
    },
    /// Not three dot-separated segments (a JWE has five; RFC 8725 §3.11).
    SegmentCount(usize),
    /// A segment is not canonical unpadded base64url.
    Base64(Segment),
    /// A segment is not a JSON object (or nests too deeply).
    Json(Segment),
    /// A member name appears twice in the header or the claim set.
    DuplicateMember(Segment),
    /// The header was refused.
    Header(HeaderError),
    /// A registered claim has the wrong type.
    Claim(&'static str),
}

impl JwtError {
    /// A short, stable label for metrics and audit lines.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::TooLarge { .. } => "token_too_large",
            JwtError::SegmentCount(_) => "malformed",
            JwtError::Base64(_) => "malformed_base64",
            JwtError::Json(_) => "malformed_json",
            JwtError::DuplicateMember(_) => "duplicate_member",
            JwtError::Header(HeaderError::AlgorithmNone) => "alg_none",
            JwtError::Header(HeaderError::UnsupportedAlgorithm) => "alg_unsupported",
            JwtError::Header(HeaderError::UnsupportedCritical) => "crit_unsupported",
            JwtError::Header(_) => "malformed_header",
            JwtError::Claim(_) => "invalid_claim",
        }
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::TooLarge { len, max } => write!(f, "token is {len} bytes, over the {max} byte limit"),
            JwtError::SegmentCount(n) => write!(f, "token has {n} segments, a signed JWT has 3"),
            JwtError::Base64(s) => write!(f, "token {} is not base64url", s.name()),
            JwtError::Json(s) => write!(f, "token {} is not a JSON object", s.name()),
            JwtError::DuplicateMember(s) => write!(f, "token {} repeats a member", s.name()),
            JwtError::Header(HeaderError::MissingAlgorithm) => f.write_str("token has no alg"),
            JwtError::Header(HeaderError::AlgorithmNone) => f.write_str("unsigned tokens are not accepted"),
            JwtError::Header(HeaderError::UnsupportedAlgorithm) => {
                f.write_str("token algorithm is not supported")
            }
            JwtError::Header(HeaderError::UnsupportedCritical) => {
                f.write_str("token has unsupported critical header parameters")
            }
            JwtError::Header(HeaderError::InvalidMember(name)) => {
                write!(f, "token header {name} has the wrong type")
            }
            JwtError::Claim(name) => write!(f, "token claim {name} has the wrong type"),
        }
    }
}

/// A well-formed, not yet verified JWT.
#[derive(Debug, Clone)]
pub struct UnverifiedJwt<'a> {
    header: JoseHeader,
    claims: Claims,
    signing_input: &'a str,
    payload_segment: &'a str,
    signature: Vec<u8>,
}

impl<'a> UnverifiedJwt<'a> {
    /// Parses a compact JWS of at most `max_len` bytes.
    pub fn parse(token: &'a str, max_len: usize) -> Result<Self, JwtError> {
        if token.len() > max_len {
            return Err(JwtError::TooLarge { len: token.len(), max: max_len });
        }
        let segment_count = token.split('.').count();
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (segments.next(), segments.next(), segments.next(), segments.next())
        else {
            return Err(JwtError::SegmentCount(segment_count));
        };
        // The signing input is everything before the second dot, as received.
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];

        let header_object = decode_object(header_b64, Segment::Header)?;
        let header = JoseHeader::from_object(&header_object).map_err(JwtError::Header)?;
        let claims_object = decode_object(payload_b64, Segment::Payload)?;
        let claims =
            Claims::from_object(claims_object).map_err(|InvalidClaim(name)| JwtError::Claim(name))?;
        let signature = base64url::decode(signature_b64).map_err(|_| JwtError::Base64(Segment::Signature))?;
        Ok(Self { header, claims, signing_input, payload_segment: payload_b64, signature })
    }

    /// The JOSE header.
    pub fn header(&self) -> &JoseHeader {
        &self.header
    }

    /// The claims, unverified.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the signed bytes.
    pub fn signing_input(&self) -> &'a str {
        self.signing_input
    }

    /// The payload segment as received: the verified claim set in base64url,
    /// ready to forward without re-encoding.
    pub fn payload_segment(&self) -> &'a str {
        self.payload_segment
    }

    /// The decoded signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Takes the claims (after verification succeeded).
    pub fn into_claims(self) -> Claims {
        self.claims
    }
}

fn decode_object(
    segment_b64: &str,
    segment: Segment,
) -> Result<serde_json::Map<alloc::string::String, serde_json::Value>, JwtError> {
    let bytes = base64url::decode(segment_b64).map_err(|_| JwtError::Base64(segment))?;
    json::parse_object(&bytes).map_err(|err| match err {
        JsonError::DuplicateMember => JwtError::DuplicateMember(segment),
        JsonError::Syntax | JsonError::NotAnObject => JwtError::Json(segment),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base64url::encode;
    use crate::header::Algorithm;
    use alloc::format;
    use alloc::string::String;

    fn compact(header: &str, payload: &str, signature: &[u8]) -> String {
        format!("{}.{}.{}", encode(header.as_bytes()), encode(payload.as_bytes()), encode(signature))
    }

    #[test]
    fn parses_a_well_formed_token() {
        let token = compact(r#"{"alg":"ES256","kid":"k1"}"#, r#"{"sub":"alice"}"#, &[1, 2, 3]);
        let jwt = UnverifiedJwt::parse(&token, DEFAULT_MAX_TOKEN_BYTES).unwrap();
        assert_eq!(jwt.header().alg, Algorithm::ES256);
        assert_eq!(jwt.claims().sub.as_deref(), Some("alice"));
        assert_eq!(jwt.signature(), &[1, 2, 3]);
        let dot = token.rfind('.').unwrap();
        assert_eq!(jwt.signing_input(), &token[..dot]);
        assert_eq!(jwt.payload_segment(), encode(br#"{"sub":"alice"}"#));
    }

    #[test]
    fn refuses_wrong_segment_counts() {
        let good = compact(r#"{"alg":"ES256"}"#, "{}", &[1]);
        let (head, _) = good.rsplit_once('.').unwrap();
        assert_eq!(UnverifiedJwt::parse(head, 9999).unwrap_err(), JwtError::SegmentCount(2));
        let jwe = format!("{good}.a.b");
        assert_eq!(UnverifiedJwt::parse(&jwe, 9999).unwrap_err(), JwtError::SegmentCount(5));
        assert_eq!(UnverifiedJwt::parse("", 9999).unwrap_err(), JwtError::SegmentCount(1));
    }

    #[test]
    fn refuses_oversized_tokens_before_parsing() {
        let big = "a".repeat(DEFAULT_MAX_TOKEN_BYTES + 1);
        assert!(matches!(
            UnverifiedJwt::parse(&big, DEFAULT_MAX_TOKEN_BYTES),
            Err(JwtError::TooLarge { .. })
        ));
    }

    #[test]
    fn refuses_padded_or_standard_alphabet_segments() {
        let good = compact(r#"{"alg":"ES256"}"#, r#"{"s":"??>"}"#, &[0xfb, 0xff]);
        let padded = good.replacen('.', "=.", 1);
        assert_eq!(UnverifiedJwt::parse(&padded, 9999).unwrap_err(), JwtError::Base64(Segment::Header));
        let std_alphabet = good.replace('-', "+").replace('_', "/");
        assert!(matches!(UnverifiedJwt::parse(&std_alphabet, 9999), Err(JwtError::Base64(_))));
    }

    #[test]
    fn refuses_duplicates_non_objects_and_bad_claims() {
        let dup = compact(r#"{"alg":"ES256","alg":"none"}"#, "{}", &[1]);
        assert_eq!(UnverifiedJwt::parse(&dup, 9999).unwrap_err(), JwtError::DuplicateMember(Segment::Header));
        let dup = compact(r#"{"alg":"ES256"}"#, r#"{"sub":"a","sub":"b"}"#, &[1]);
        assert_eq!(
            UnverifiedJwt::parse(&dup, 9999).unwrap_err(),
            JwtError::DuplicateMember(Segment::Payload)
        );
        let array = compact(r#"{"alg":"ES256"}"#, "[1]", &[1]);
        assert_eq!(UnverifiedJwt::parse(&array, 9999).unwrap_err(), JwtError::Json(Segment::Payload));
        let bad = compact(r#"{"alg":"ES256"}"#, r#"{"exp":"soon"}"#, &[1]);
        assert_eq!(UnverifiedJwt::parse(&bad, 9999).unwrap_err(), JwtError::Claim("exp"));
        let none = compact(r#"{"alg":"none"}"#, "{}", &[]);
        assert_eq!(UnverifiedJwt::parse(&none, 9999).unwrap_err().reason(), "alg_none");
    }

    #[test]
    fn refuses_non_utf8_json() {
        let token =
            format!("{}.{}.{}", encode(br#"{"alg":"ES256"}"#), encode(b"{\"sub\":\"\xff\"}"), encode(&[1]));
        assert_eq!(UnverifiedJwt::parse(&token, 9999).unwrap_err(), JwtError::Json(Segment::Payload));
    }
}
