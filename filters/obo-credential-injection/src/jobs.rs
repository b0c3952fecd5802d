//! What the OBO filter asks token endpoints for: a user-bound exchange or
//! the gateway's own client-credentials token, as [`TokenCall`]s the root
//! context dispatches (see `baton_filter_kit::token_calls`).

use baton_filter_kit::token_calls::TokenCall;
use baton_token::TokenHash;
use baton_token::oauth::{Grant, TokenRequest};
use baton_token::secret::Secret;

use crate::model::{CredentialsGrant, Idp, Mode, Target};

/// A token endpoint call of this filter.
pub type Job = TokenCall;

/// A user-bound exchange for `target`.
pub fn exchange_job(
    target: &Target,
    idp: &Idp,
    key: TokenHash,
    subject_token: &str,
    subject_exp: Option<u64>,
    actor: Option<(Secret, String)>,
) -> Job {
    let grant = match target.mode {
        Mode::EntraOnBehalfOf => Grant::OnBehalfOf { assertion: Secret::new(subject_token) },
        // Assertions are signed here, never asked of an IdP; they never get this far.
        Mode::TokenExchange | Mode::ClientCredentials | Mode::IdentityAssertion => Grant::TokenExchange {
            subject_token: Secret::new(subject_token),
            subject_token_type: target.subject_token_type.clone(),
            requested_token_type: target.requested_token_type.clone(),
            actor,
        },
    };
    let request = TokenRequest {
        grant,
        audiences: target.audiences.clone(),
        resources: target.resources.clone(),
        scope: target.scope.clone(),
        extra: target.extra_parameters.clone(),
    };
    Job {
        key,
        endpoint: target.idp,
        request: request.encode(&idp.endpoint.client_auth),
        requested_token_type: target.requested_token_type.clone(),
        token_exchange: target.mode == Mode::TokenExchange,
        carries_caller_token: true,
        expected_audiences: target.expected_audiences.clone(),
        expected_issuer: idp.issuer.clone(),
        not_after: subject_exp,
        label: target.name.clone(),
    }
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
        let job = exchange_job(&config.targets[0], &config.idps[0], key, "user.jwt", Some(99), None);
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

        let obo = exchange_job(&config.targets[1], &config.idps[0], key, "user.jwt", None, None);
        let body = obo.request.body.expose();
        assert!(
            body.contains("requested_token_use=on_behalf_of") && body.contains("assertion=user.jwt"),
            "{body}"
        );
        assert!(!obo.token_exchange);

        let grant = config.targets[2].credentials.as_ref().unwrap();
        let cc = credentials_job(grant, &config.idps[0]);
        assert_eq!(cc.request.body.expose(), "grant_type=client_credentials&audience=market");
        assert_eq!(cc.key, grant.key);
    }
}
