//! Claim validation after the signature is verified (RFC 7519 §4.1,
//! RFC 8725 §3.8-3.11, RFC 9068 §4).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::claims::Claims;
use crate::header::{Algorithm, JoseHeader};

/// Default allowance for clock differences between the IdP and the gateway.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 60;

/// What one issuer's tokens must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationPolicy {
    /// The exact `iss` value.
    pub issuer: String,
    /// Accepted audiences; the token's `aud` must contain at least one.
    pub audiences: Vec<String>,
    /// Accepted algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Seconds of leeway on `exp`, `nbf` and `iat`.
    pub clock_skew_secs: u64,
    /// Required `typ` header, compared as a media type (case-insensitive,
    /// `application/` optional), e.g. `at+jwt`.
    pub required_typ: Option<String>,
    /// Refuse tokens without `exp` (on by default: a token without expiry is
    /// valid forever once leaked).
    pub require_exp: bool,
}

/// Why a verified token is still not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationError {
    /// The algorithm is not in the issuer's allowlist.
    AlgorithmNotAllowed(Algorithm),
    /// `typ` is missing or differs from the required one.
    TypeMismatch,
    /// `iss` is missing or differs.
    IssuerMismatch,
    /// `aud` contains none of the accepted audiences.
    AudienceMismatch,
    /// No `exp` while one is required.
    MissingExpiry,
    /// `exp` (plus leeway) has passed.
    Expired,
    /// `nbf` (minus leeway) is still ahead.
    NotYetValid,
    /// `iat` lies in the future beyond the leeway: a forged or broken clock.
    IssuedInFuture,
}

impl ValidationError {
    /// A short, stable label for metrics and audit lines.
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::AlgorithmNotAllowed(_) => "alg_not_allowed",
            ValidationError::TypeMismatch => "typ_mismatch",
            ValidationError::IssuerMismatch => "issuer_mismatch",
            ValidationError::AudienceMismatch => "audience_mismatch",
            ValidationError::MissingExpiry => "exp_missing",
            ValidationError::Expired => "expired",
            ValidationError::NotYetValid => "not_yet_valid",
            ValidationError::IssuedInFuture => "iat_in_future",
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidationError::AlgorithmNotAllowed(alg) => {
                write!(f, "token algorithm {} is not allowed", alg.name())
            }
            ValidationError::TypeMismatch => f.write_str("token type is not accepted"),
            ValidationError::IssuerMismatch => f.write_str("token issuer is not accepted"),
            ValidationError::AudienceMismatch => f.write_str("token audience is not accepted"),
            ValidationError::MissingExpiry => f.write_str("token has no expiry"),
            ValidationError::Expired => f.write_str("token is expired"),
            ValidationError::NotYetValid => f.write_str("token is not yet valid"),
            ValidationError::IssuedInFuture => f.write_str("token is issued in the future"),
        }
    }
}

impl ValidationPolicy {
    /// A policy with the secure defaults: `exp` required, 60 s leeway.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>, algorithms: Vec<Algorithm>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            algorithms,
            clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
            required_typ: None,
            require_exp: true,
        }
    }

    /// Checks what can be checked before the signature: the algorithm and
    /// `typ` come from the header, and refusing early saves a verification.
    pub fn check_header(&self, header: &JoseHeader) -> Result<(), ValidationError> {
        if !self.algorithms.contains(&header.alg) {
            return Err(ValidationError::AlgorithmNotAllowed(header.alg));
        }
        if let Some(required) = &self.required_typ {
            match &header.typ {
                Some(typ) if media_type_eq(typ, required) => {}
                _ => return Err(ValidationError::TypeMismatch),
            }
        }
        Ok(())
    }

    /// Checks the claims at `now` (seconds since the epoch).
    pub fn check_claims(&self, claims: &Claims, now: u64) -> Result<(), ValidationError> {
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err(ValidationError::IssuerMismatch);
        }
        if !self.audiences.iter().any(|aud| claims.aud.contains(aud)) {
            return Err(ValidationError::AudienceMismatch);
        }
        self.check_times(claims, now)
    }

    /// The time checks alone; also what a cached verification re-runs, so a
    /// token that expires while cached is refused from that second on.
    pub fn check_times(&self, claims: &Claims, now: u64) -> Result<(), ValidationError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let skew = i64::try_from(self.clock_skew_secs).unwrap_or(i64::MAX);
        match claims.exp {
            Some(exp) if now >= exp.saturating_add(skew) => return Err(ValidationError::Expired),
            Some(_) => {}
            None if self.require_exp => return Err(ValidationError::MissingExpiry),
            None => {}
        }
        if let Some(nbf) = claims.nbf
            && now.saturating_add(skew) < nbf
        {
            return Err(ValidationError::NotYetValid);
        }
        if let Some(iat) = claims.iat
            && iat > now.saturating_add(skew)
        {
            return Err(ValidationError::IssuedInFuture);
        }
        Ok(())
    }
}

/// Compares `typ` values as media types (RFC 7515 §4.1.9): case-insensitive,
/// with the `application/` prefix optional.
pub fn media_type_eq(a: &str, b: &str) -> bool {
    fn short(t: &str) -> &str {
        match t.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &t[12..],
            _ => t,
        }
    }
    short(a).eq_ignore_ascii_case(short(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_object;
    use alloc::string::ToString;
    use alloc::vec;

    const NOW: u64 = 1_800_000_000;

    fn policy() -> ValidationPolicy {
        ValidationPolicy::new("https://idp", vec!["api".to_string()], vec![Algorithm::ES256])
    }

    fn claims(json: &str) -> Claims {
        Claims::from_object(parse_object(json.as_bytes()).unwrap()).unwrap()
    }

    fn at(exp_offset: i64) -> Claims {
        let exp = NOW as i64 + exp_offset;
        claims(&alloc::format!(r#"{{"iss":"https://idp","aud":"api","exp":{exp}}}"#))
    }

    #[test]
    fn accepts_a_valid_token() {
        assert_eq!(policy().check_claims(&at(300), NOW), Ok(()));
    }

    #[test]
    fn expiry_honours_the_leeway_to_the_second() {
        assert_eq!(policy().check_claims(&at(-59), NOW), Ok(()));
        assert_eq!(policy().check_claims(&at(-60), NOW), Err(ValidationError::Expired));
        let mut strict = policy();
        strict.clock_skew_secs = 0;
        assert_eq!(strict.check_claims(&at(1), NOW), Ok(()));
        assert_eq!(strict.check_claims(&at(0), NOW), Err(ValidationError::Expired));
    }

    #[test]
    fn refuses_wrong_issuer_and_audience() {
        let p = policy();
        let exp = NOW + 100;
        let c = claims(&alloc::format!(r#"{{"iss":"https://evil","aud":"api","exp":{exp}}}"#));
        assert_eq!(p.check_claims(&c, NOW), Err(ValidationError::IssuerMismatch));
        let c = claims(&alloc::format!(r#"{{"iss":"https://idp","aud":["x","y"],"exp":{exp}}}"#));
        assert_eq!(p.check_claims(&c, NOW), Err(ValidationError::AudienceMismatch));
        let c = claims(&alloc::format!(r#"{{"iss":"https://idp","exp":{exp}}}"#));
        assert_eq!(p.check_claims(&c, NOW), Err(ValidationError::AudienceMismatch));
        let c = claims(&alloc::format!(r#"{{"iss":"https://idp","aud":["x","api"],"exp":{exp}}}"#));
        assert_eq!(p.check_claims(&c, NOW), Ok(()));
    }

    #[test]
    fn requires_exp_unless_relaxed() {
        let c = claims(r#"{"iss":"https://idp","aud":"api"}"#);
        assert_eq!(policy().check_claims(&c, NOW), Err(ValidationError::MissingExpiry));
        let mut relaxed = policy();
        relaxed.require_exp = false;
        assert_eq!(relaxed.check_claims(&c, NOW), Ok(()));
    }

    #[test]
    fn refuses_future_nbf_and_iat() {
        let exp = NOW + 600;
        let c =
            claims(&alloc::format!(r#"{{"iss":"https://idp","aud":"api","exp":{exp},"nbf":{}}}"#, NOW + 61));
        assert_eq!(policy().check_claims(&c, NOW), Err(ValidationError::NotYetValid));
        let c =
            claims(&alloc::format!(r#"{{"iss":"https://idp","aud":"api","exp":{exp},"nbf":{}}}"#, NOW + 60));
        assert_eq!(policy().check_claims(&c, NOW), Ok(()));
        let c = claims(&alloc::format!(
            r#"{{"iss":"https://idp","aud":"api","exp":{exp},"iat":{}}}"#,
            NOW + 3600
        ));
        assert_eq!(policy().check_claims(&c, NOW), Err(ValidationError::IssuedInFuture));
    }

    #[test]
    fn header_checks_algorithm_and_typ() {
        let mut p = policy();
        p.required_typ = Some("at+jwt".to_string());
        let header =
            |alg, typ: Option<&str>| JoseHeader { alg, kid: None, typ: typ.map(ToString::to_string) };
        assert_eq!(p.check_header(&header(Algorithm::ES256, Some("at+JWT"))), Ok(()));
        assert_eq!(p.check_header(&header(Algorithm::ES256, Some("application/at+jwt"))), Ok(()));
        assert_eq!(
            p.check_header(&header(Algorithm::ES256, Some("JWT"))),
            Err(ValidationError::TypeMismatch)
        );
        assert_eq!(p.check_header(&header(Algorithm::ES256, None)), Err(ValidationError::TypeMismatch));
        assert_eq!(
            p.check_header(&header(Algorithm::RS256, Some("at+jwt"))),
            Err(ValidationError::AlgorithmNotAllowed(Algorithm::RS256))
        );
    }
}
