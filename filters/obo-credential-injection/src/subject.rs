//! The subject token's checks before any IdP call (decode-only mode), and
//! the delegation policy: who is calling, and may they act for this user
//! toward this audience.

use baton_token::claims::Claims;
use baton_token::jwt::{DEFAULT_MAX_TOKEN_BYTES, UnverifiedJwt};
use baton_token::validation::ValidationPolicy;

use crate::model::{Delegation, Target};

/// Why a subject token was refused, for the 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRejected {
    /// Label for metrics and audit.
    pub reason: &'static str,
    /// What the client is told.
    pub description: String,
}

/// Decode-only checks: well-formed (same strict parser as verification),
/// not expired (with `exp` required), not before `nbf`, and `iss`/`aud`
/// among the accepted ones when configured. The signature is not checked:
/// this mode is for listeners where claim-enforcement verified the token.
pub fn decode_only(
    token: &str,
    issuers: &[String],
    audiences: &[String],
    clock_skew_secs: u64,
    now: u64,
) -> Result<Claims, SubjectRejected> {
    let jwt = UnverifiedJwt::parse(token, DEFAULT_MAX_TOKEN_BYTES)
        .map_err(|error| SubjectRejected { reason: error.reason(), description: error.to_string() })?;
    let claims = jwt.into_claims();
    let mut policy = ValidationPolicy::new(String::new(), Vec::new(), Vec::new());
    policy.clock_skew_secs = clock_skew_secs;
    policy
        .check_times(&claims, now)
        .map_err(|error| SubjectRejected { reason: error.reason(), description: error.to_string() })?;
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

/// Who is calling: the configured header (set by Envoy, e.g. from the mTLS
/// peer certificate), else the subject token's `client_id`, else `azp`.
pub fn caller(delegation: &Delegation, header_value: Option<&str>, claims: &Claims) -> Option<String> {
    match &delegation.caller_header {
        Some(header) => {
            let value = header_value?.trim();
            if header == "x-forwarded-client-cert" { xfcc_uri(value) } else { Some(value.to_string()) }
                .filter(|caller| !caller.is_empty())
        }
        None => claims.client().map(String::from),
    }
}

/// The `URI` of the last element of an `x-forwarded-client-cert` header
/// (Envoy appends its own element; with `SANITIZE_SET` it is the only one).
fn xfcc_uri(value: &str) -> Option<String> {
    let element = value.rsplit(',').next()?;
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("uri").then(|| value.trim().trim_matches('"').to_string())
    })
}

/// Checks the delegation policy for an exchange toward `target`.
pub fn check_delegation(
    delegation: &Delegation,
    caller: Option<&str>,
    claims: &Claims,
    target: &Target,
) -> Result<(), String> {
    if let Some(allow) = &delegation.allow {
        let Some(caller) = caller else {
            return Err("the caller could not be identified".to_string());
        };
        let allowed = allow
            .iter()
            .filter(|(name, _)| name == caller)
            .flat_map(|(_, audiences)| audiences.iter())
            .collect::<Vec<_>>();
        if let Some(denied) =
            target.destinations().find(|destination| !allowed.iter().any(|a| a == destination))
        {
            return Err(format!("caller {caller} may not obtain tokens for {denied}"));
        }
    }
    if delegation.require_may_act {
        let Some(caller) = caller else {
            return Err("the caller could not be identified".to_string());
        };
        let named = claims.may_act.as_ref().is_some_and(|may_act| {
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
    fn decode_only_checks_time_issuer_and_audience() {
        let good = json!({"iss": "https://idp", "aud": "broker", "exp": NOW + 60, "sub": "alice"});
        let issuers = vec!["https://idp".to_string()];
        let audiences = vec!["broker".to_string()];
        assert!(decode_only(&unsigned(&good), &issuers, &audiences, 0, NOW).is_ok());
        let mut expired = good.clone();
        expired["exp"] = json!(NOW - 1);
        assert_eq!(
            decode_only(&unsigned(&expired), &issuers, &audiences, 0, NOW).unwrap_err().reason,
            "expired"
        );
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(decode_only(&unsigned(&no_exp), &[], &[], 0, NOW).unwrap_err().reason, "exp_missing");
        let mut other_iss = good.clone();
        other_iss["iss"] = json!("https://evil");
        assert_eq!(
            decode_only(&unsigned(&other_iss), &issuers, &[], 0, NOW).unwrap_err().reason,
            "issuer_mismatch"
        );
        let mut other_aud = good.clone();
        other_aud["aud"] = json!(["x"]);
        assert_eq!(
            decode_only(&unsigned(&other_aud), &[], &audiences, 0, NOW).unwrap_err().reason,
            "audience_mismatch"
        );
        assert_eq!(decode_only("not-a-jwt", &[], &[], 0, NOW).unwrap_err().reason, "malformed");
        let none = format!("{}.{}.", encode(br#"{"alg":"none"}"#), encode(good.to_string().as_bytes()));
        assert_eq!(decode_only(&none, &[], &[], 0, NOW).unwrap_err().reason, "alg_none");
    }

    fn target_and_delegation(delegation: Value) -> (crate::model::FilterConfig, Claims) {
        let config = json!({
            "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "clientId": "gw", "clientSecret": "pw"}],
            "subjectToken": {"validation": "decodeOnly"},
            "targets": [{"name": "ledger", "mode": "tokenExchange", "idp": "corp", "audiences": ["ledger"], "resources": ["https://ledger/api"]}],
            "delegation": delegation
        });
        let claims = claims_of(&json!({"sub": "alice", "azp": "broker", "may_act": {"sub": "portfolio"}}));
        (config::parse(config.to_string().as_bytes()).unwrap(), claims)
    }

    #[test]
    fn the_caller_comes_from_the_token_or_a_trusted_header() {
        let (config, claims) = target_and_delegation(json!({}));
        assert_eq!(caller(&config.delegation, None, &claims).as_deref(), Some("broker"));
        let (config, claims) = target_and_delegation(json!({"callerHeader": "x-caller"}));
        assert_eq!(caller(&config.delegation, Some(" svc-a "), &claims).as_deref(), Some("svc-a"));
        assert_eq!(caller(&config.delegation, None, &claims), None);
        let (config, claims) = target_and_delegation(json!({"callerHeader": "x-forwarded-client-cert"}));
        let xfcc = r#"By=spiffe://mesh/gw;Hash=abc;URI=spiffe://mesh/ns/a/sa/broker,By=spiffe://mesh/gw;Hash=def;Subject="CN=x";URI=spiffe://mesh/ns/b/sa/portfolio"#;
        assert_eq!(
            caller(&config.delegation, Some(xfcc), &claims).as_deref(),
            Some("spiffe://mesh/ns/b/sa/portfolio")
        );
    }

    #[test]
    fn allowed_pairs_cover_every_destination() {
        let (config, claims) = target_and_delegation(json!({"allow": [
            {"caller": "broker", "audiences": ["ledger", "https://ledger/api"]},
            {"caller": "portfolio", "audiences": ["ledger"]}
        ]}));
        let target = &config.targets[0];
        assert_eq!(check_delegation(&config.delegation, Some("broker"), &claims, target), Ok(()));
        assert_eq!(
            check_delegation(&config.delegation, Some("portfolio"), &claims, target),
            Err("caller portfolio may not obtain tokens for https://ledger/api".to_string())
        );
        assert!(check_delegation(&config.delegation, Some("stranger"), &claims, target).is_err());
        assert!(check_delegation(&config.delegation, None, &claims, target).is_err());
    }

    #[test]
    fn may_act_must_name_the_caller_when_required() {
        let (config, claims) = target_and_delegation(json!({"requireMayAct": true}));
        let target = &config.targets[0];
        assert_eq!(check_delegation(&config.delegation, Some("portfolio"), &claims, target), Ok(()));
        assert_eq!(
            check_delegation(&config.delegation, Some("broker"), &claims, target),
            Err("the subject token's may_act does not name caller broker".to_string())
        );
        let no_may_act = claims_of(&json!({"sub": "alice"}));
        assert!(check_delegation(&config.delegation, Some("portfolio"), &no_may_act, target).is_err());
    }
}
