//! What the OBO filter asks token endpoints for: a user-bound exchange or
//! the gateway's own client-credentials token, as [`TokenCall`]s the root
//! context dispatches (see `baton_filter_kit::token_calls`).

use baton_filter_kit::token_calls::TokenCall;
use baton_token::TokenHash;
use baton_token::oauth::{Grant, TokenRequest};
use baton_token::secret::Secret;

use crate::model::{CredentialsGrant, Idp, Target, TargetGrant};

/// A token endpoint call of this filter.
pub type Job = TokenCall;

/// The call that gets `target`'s token for the user whose token is
/// `subject_token`: an RFC 8693 exchange or an Entra on-behalf-of request
/// (`None` for a target whose token is no user's).
pub fn user_job(
    target: &Target,
    idp: &Idp,
    key: TokenHash,
    subject_token: &str,
    subject_exp: Option<u64>,
    actor: Option<(Secret, String)>,
) -> Option<Job> {
    let (request, requested_token_type) = match &target.grant {
        TargetGrant::TokenExchange(exchange) => {
            let grant = Grant::TokenExchange {
                subject_token: Secret::new(subject_token),
                subject_token_type: exchange.subject_token_type.clone(),
                requested_token_type: exchange.requested_token_type.clone(),
                actor,
            };
            let request = TokenRequest {
                grant,
                audiences: exchange.audiences.clone(),
                resources: exchange.resources.clone(),
                scope: exchange.scope.clone(),
                extra: exchange.extra_parameters.clone(),
            };
            (request, exchange.requested_token_type.clone())
        }
        TargetGrant::EntraOnBehalfOf(obo) => {
            let request = TokenRequest {
                grant: Grant::OnBehalfOf { assertion: Secret::new(subject_token) },
                audiences: Vec::new(),
                resources: Vec::new(),
                scope: Some(obo.scope.clone()),
                extra: obo.extra_parameters.clone(),
            };
            (request, None)
        }
        TargetGrant::ClientCredentials { .. } | TargetGrant::IdentityAssertion { .. } => return None,
    };
    Some(Job {
        key,
        endpoint: target.idp()?,
        request: request.encode(&idp.endpoint.client_auth),
        requested_token_type,
        token_exchange: matches!(target.grant, TargetGrant::TokenExchange(_)),
        carries_caller_token: true,
        expected_audiences: target.expected_audiences.clone(),
        expected_issuer: idp.issuer.clone(),
        not_after: subject_exp,
        label: target.name.clone(),
    })
}

/// The gateway's own token for `grant`.
pub fn credentials_job(grant: &CredentialsGrant, idp: &Idp) -> Job {
    let request = TokenRequest {
        grant: Grant::ClientCredentials,
        audiences: grant.audiences.clone(),
        resources: grant.resources.clone(),
        scope: grant.scope.clone(),
        extra: Vec::new(),
    };
    Job {
        key: grant.key,
        endpoint: grant.idp,
        request: request.encode(&idp.endpoint.client_auth),
        requested_token_type: None,
        token_exchange: false,
        carries_caller_token: false,
        expected_audiences: grant.expected_audiences.clone(),
        expected_issuer: idp.issuer.clone(),
        not_after: None,
        label: grant.label.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use serde_json::json;

    fn config() -> crate::model::FilterConfig {
        let config = json!({
            "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "clientId": "gw", "clientSecret": "pw"}],
            "subjectToken": {"validation": "claimEnforcement"},
            "targets": [
                {"name": "portfolio", "mode": "tokenExchange", "idp": "corp", "audiences": ["portfolio-agent"],
                 "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token"},
                {"name": "graph", "mode": "entraOnBehalfOf", "idp": "corp", "scope": "api://graph/.default"},
                {"name": "market", "mode": "clientCredentials", "idp": "corp", "audiences": ["market"]}
            ]
        });
        config::parse(config.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn exchange_and_obo_jobs_carry_their_grant() {
        let config = config();
        let key = TokenHash::of(b"k");
        let job = user_job(&config.targets[0], &config.idps[0], key, "user.jwt", Some(99), None).unwrap();
        let body = job.request.body.expose();
        assert!(
            body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"),
            "{body}"
        );
        assert!(
            body.contains("subject_token=user.jwt") && body.contains("audience=portfolio-agent"),
            "{body}"
        );
        assert_eq!(job.request.authorization.as_ref().unwrap().expose(), "Basic Z3c6cHc=");
        assert!(job.token_exchange && job.not_after == Some(99));
        assert_eq!(
            job.expectation().requested_token_type,
            Some("urn:ietf:params:oauth:token-type:access_token")
        );

        let obo = user_job(&config.targets[1], &config.idps[0], key, "user.jwt", None, None).unwrap();
        let body = obo.request.body.expose();
        assert!(
            body.contains("requested_token_use=on_behalf_of") && body.contains("assertion=user.jwt"),
            "{body}"
        );
        assert!(!obo.token_exchange);

        let TargetGrant::ClientCredentials { grant, .. } = &config.targets[2].grant else { panic!() };
        assert!(user_job(&config.targets[2], &config.idps[0], key, "user.jwt", None, None).is_none());
        let cc = credentials_job(grant, &config.idps[0]);
        assert_eq!(cc.request.body.expose(), "grant_type=client_credentials&audience=market");
        assert_eq!(cc.key, grant.key);
    }
}
