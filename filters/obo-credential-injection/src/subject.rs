//! The subject token's checks before any IdP call (decode-only mode), and
//! the delegation policy: who is calling, and may they act for this user
//! toward this audience.

use baton_filter_kit::handoff::verified_value;
use baton_token::TokenHash;
use baton_token::claims::Claims;
use baton_token::jwt::{DEFAULT_MAX_TOKEN_BYTES, UnverifiedJwt};
use baton_token::validation::ValidationPolicy;

use crate::model::{CallerSource, Delegation, Target};

/// Why a subject token was refused, for the 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRejected {
    /// Label for metrics and audit.
    pub reason: &'static str,
    /// What the client is told.
    pub description: String,
}

/// A token claim-enforcement verified, as remembered: its hash, the record
/// that names it, and its claims (issuer and audience already checked;
/// times are checked on every use).
#[derive(Debug)]
pub struct UpstreamSubject {
    /// The token's SHA-256.
    pub hash: TokenHash,
    /// claim-enforcement's record of it.
    pub record: String,
    /// Its claims.
    pub claims: Claims,
}

impl UpstreamSubject {
    /// `token`, when `record` (claim-enforcement's, as read for this
    /// request) names it and its claims pass [`verified_upstream_claims`].
    pub fn accept(
        token: &str,
        record: Option<&[u8]>,
        issuers: &[String],
        audiences: &[String],
        clock_skew_secs: u64,
        now: u64,
    ) -> Result<Self, SubjectRejected> {
        let hash = TokenHash::of(token.as_bytes());
        let expected = verified_value(&hash);
        if record != Some(expected.as_bytes()) {
            return Err(not_verified_upstream());
        }
        let claims = verified_upstream_claims(token, issuers, audiences, clock_skew_secs, now)?;
        Ok(Self { hash, record: expected, claims })
    }

    /// A remembered token on a later request: `record` must name it again,
    /// and its times hold at `now`.
    pub fn recheck(
        &self,
        record: Option<&[u8]>,
        clock_skew_secs: u64,
        now: u64,
    ) -> Result<(), SubjectRejected> {
        if record != Some(self.record.as_bytes()) {
            return Err(not_verified_upstream());
        }
        check_upstream_times(&self.claims, clock_skew_secs, now)
    }
}

/// The refusal of a token no claim-enforcement record names.
fn not_verified_upstream() -> SubjectRejected {
    SubjectRejected {
        reason: "not_verified_upstream",
        description: "token was not verified by claim-enforcement on this request".into(),
    }
}

/// A token's times, checked at `now` (`exp` required).
fn check_upstream_times(claims: &Claims, clock_skew_secs: u64, now: u64) -> Result<(), SubjectRejected> {
    let mut policy = ValidationPolicy::new(String::new(), Vec::new(), Vec::new());
    policy.clock_skew_secs = clock_skew_secs;
    policy
        .check_times(claims, now)
        .map_err(|error| SubjectRejected { reason: error.reason(), description: error.to_string() })
}

/// The claims of a token claim-enforcement verified on this request (its
/// record named this very token): parsed with the same strict parser as
/// verification, and checked again for time (`exp` required), and for
/// `iss`/`aud` among the accepted ones when configured.
pub fn verified_upstream_claims(
    token: &str,
    issuers: &[String],
    audiences: &[String],
    clock_skew_secs: u64,
    now: u64,
) -> Result<Claims, SubjectRejected> {
    let jwt = UnverifiedJwt::parse(token, DEFAULT_MAX_TOKEN_BYTES)
        .map_err(|error| SubjectRejected { reason: error.reason(), description: error.to_string() })?;
    let claims = jwt.into_claims();
    check_upstream_times(&claims, clock_skew_secs, now)?;
    if !issuers.is_empty() && !claims.iss.as_ref().is_some_and(|iss| issuers.contains(iss)) {
        return Err(SubjectRejected {
            reason: "issuer_mismatch",
            description: "token issuer is not accepted".into(),
        });
    }
    if !audiences.is_empty() && !audiences.iter().any(|aud| claims.aud.contains(aud)) {
        return Err(SubjectRejected {
            reason: "audience_mismatch",
            description: "token audience is not accepted".into(),
        });
    }
    Ok(claims)
}

/// Who is calling, as this Envoy verified it: the client certificate's URI
/// SAN (mTLS), or the verified subject token's `client_id`, else `azp`.
pub fn caller(
    delegation: &Delegation,
    peer_certificate: Option<&str>,
    claims: Option<&Claims>,
) -> Option<String> {
    match delegation.caller {
        CallerSource::PeerCertificate => {
            peer_certificate.map(str::trim).filter(|uri| !uri.is_empty()).map(String::from)
        }
        CallerSource::TokenClient => claims.and_then(Claims::client).map(String::from),
    }
}

/// Checks the delegation policy for target `index`: the caller must be
/// allowed it, and, for a target acting for the user with `requireMayAct`,
/// named by the subject token's `may_act`.
pub fn check_delegation(
    delegation: &Delegation,
    caller: Option<&str>,
    claims: Option<&Claims>,
    index: usize,
    target: &Target,
) -> Result<(), String> {
    if let Some(allow) = &delegation.allow {
        let Some(caller) = caller else {
            return Err("the caller could not be identified".to_string());
        };
        if !allow.iter().any(|entry| entry.caller == caller && entry.covers(index, target)) {
            return Err(format!("caller {caller} may not obtain tokens for target {}", target.name));
        }
    }
    if delegation.require_may_act && target.mode().needs_subject() {
        let Some(caller) = caller else {
            return Err("the caller could not be identified".to_string());
        };
        let named = claims.and_then(|claims| claims.may_act.as_ref()).is_some_and(|may_act| {
            may_act.sub.as_deref() == Some(caller) || may_act.client_id.as_deref() == Some(caller)
        });
        if !named {
            return Err(format!("the subject token's may_act does not name caller {caller}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use baton_token::base64url::encode;
    use serde_json::{Value, json};

    const NOW: u64 = 1_800_000_000;

    fn unsigned(claims: &Value) -> String {
        format!("{}.{}.c2ln", encode(br#"{"alg":"ES256"}"#), encode(claims.to_string().as_bytes()))
    }

    fn claims_of(claims: &Value) -> Claims {
        UnverifiedJwt::parse(&unsigned(claims), 9999).unwrap().into_claims()
    }

    #[test]
    fn verified_upstream_claims_are_checked_again_for_time_issuer_and_audience() {
        let check = verified_upstream_claims;
        let good = json!({"iss": "https://idp", "aud": "broker", "exp": NOW + 60, "sub": "alice"});
        let issuers = vec!["https://idp".to_string()];
        let audiences = vec!["broker".to_string()];
        assert!(check(&unsigned(&good), &issuers, &audiences, 0, NOW).is_ok());
        let mut expired = good.clone();
        expired["exp"] = json!(NOW - 1);
        assert_eq!(check(&unsigned(&expired), &issuers, &audiences, 0, NOW).unwrap_err().reason, "expired");
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(&unsigned(&no_exp), &[], &[], 0, NOW).unwrap_err().reason, "exp_missing");
        let mut other_iss = good.clone();
        other_iss["iss"] = json!("https://evil");
        assert_eq!(
            check(&unsigned(&other_iss), &issuers, &[], 0, NOW).unwrap_err().reason,
            "issuer_mismatch"
        );
        let mut other_aud = good.clone();
        other_aud["aud"] = json!(["x"]);
        assert_eq!(
            check(&unsigned(&other_aud), &[], &audiences, 0, NOW).unwrap_err().reason,
            "audience_mismatch"
        );
        assert_eq!(check("not-a-jwt", &[], &[], 0, NOW).unwrap_err().reason, "malformed");
        let none = format!("{}.{}.", encode(br#"{"alg":"none"}"#), encode(good.to_string().as_bytes()));
        assert_eq!(check(&none, &[], &[], 0, NOW).unwrap_err().reason, "alg_none");
    }

    fn with_delegation(delegation: Value) -> (crate::model::FilterConfig, Claims) {
        let config = json!({
            "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "clientId": "gw", "clientSecret": "pw"}],
            "subjectToken": {"validation": "claimEnforcement"},
            "targets": [
                {"name": "ledger", "mode": "tokenExchange", "idp": "corp", "audiences": ["ledger"], "resources": ["https://ledger/api"]},
                {"name": "reports", "mode": "entraOnBehalfOf", "idp": "corp", "scope": "api://reports/.default"},
                {"name": "quotes", "mode": "clientCredentials", "idp": "corp", "audiences": ["market"]}
            ],
            "delegation": delegation
        });
        let claims = claims_of(&json!({"sub": "alice", "azp": "broker", "may_act": {"sub": "portfolio"}}));
        (config::parse(config.to_string().as_bytes()).unwrap(), claims)
    }

    #[test]
    fn the_caller_is_the_verified_tokens_client_or_the_verified_peer() {
        let (config, claims) = with_delegation(json!({}));
        assert_eq!(caller(&config.delegation, Some("spiffe://x"), Some(&claims)).as_deref(), Some("broker"));
        assert_eq!(caller(&config.delegation, None, None), None);
        let (config, claims) = with_delegation(json!({"caller": "peerCertificate"}));
        assert_eq!(
            caller(&config.delegation, Some(" spiffe://mesh/ns/b/sa/portfolio "), Some(&claims)).as_deref(),
            Some("spiffe://mesh/ns/b/sa/portfolio")
        );
        assert_eq!(caller(&config.delegation, None, Some(&claims)), None, "no certificate: nobody");
        assert_eq!(caller(&config.delegation, Some(""), Some(&claims)), None);
    }

    #[test]
    fn every_target_is_allowed_by_name_or_by_all_its_destinations() {
        let (config, claims) = with_delegation(json!({"allow": [
            {"caller": "broker", "audiences": ["ledger", "https://ledger/api", "market"], "targets": ["reports"]},
            {"caller": "portfolio", "audiences": ["ledger"]},
            {"caller": "viewer", "targets": ["quotes"]}
        ]}));
        let targets = &config.targets;
        let check = |caller: Option<&str>, index: usize| {
            check_delegation(&config.delegation, caller, Some(&claims), index, &targets[index])
        };
        assert_eq!(check(Some("broker"), 0), Ok(()));
        assert_eq!(check(Some("broker"), 1), Ok(()), "by name");
        assert_eq!(check(Some("broker"), 2), Ok(()));
        assert_eq!(
            check(Some("portfolio"), 0),
            Err("caller portfolio may not obtain tokens for target ledger".to_string()),
            "one destination of two"
        );
        // reports has no audience: only its name allows it, never a vacuous
        // "every destination is allowed".
        assert!(check(Some("portfolio"), 1).is_err());
        assert!(check(Some("viewer"), 1).is_err());
        assert_eq!(check(Some("viewer"), 2), Ok(()));
        assert!(check(Some("stranger"), 2).is_err());
        assert!(check(None, 0).is_err());
    }

    #[test]
    fn may_act_must_name_the_caller_when_required() {
        let (config, claims) = with_delegation(json!({"requireMayAct": true}));
        let t = &config.targets;
        assert_eq!(check_delegation(&config.delegation, Some("portfolio"), Some(&claims), 0, &t[0]), Ok(()));
        assert_eq!(
            check_delegation(&config.delegation, Some("broker"), Some(&claims), 0, &t[0]),
            Err("the subject token's may_act does not name caller broker".to_string())
        );
        let no_may_act = claims_of(&json!({"sub": "alice"}));
        assert!(
            check_delegation(&config.delegation, Some("portfolio"), Some(&no_may_act), 0, &t[0]).is_err()
        );
        // The gateway's own token acts for nobody: may_act does not apply.
        assert_eq!(check_delegation(&config.delegation, Some("broker"), Some(&claims), 2, &t[2]), Ok(()));
    }
}
