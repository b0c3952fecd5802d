//! Calls to token endpoints: what to send (built by the decision, so it is
//! tested natively), and the single-flight bookkeeping that makes many
//! requests needing the same token wait for one call.

use std::collections::{HashMap, VecDeque};

use baton_token::TokenHash;
use baton_token::oauth::{EncodedTokenRequest, Grant, ResponseExpectation, TokenRequest};
use baton_token::secret::Secret;

use crate::model::{CredentialsGrant, Idp, Mode, Target};

/// One token endpoint call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Cache key of the token it obtains.
    pub key: TokenHash,
    /// IdP index.
    pub idp: usize,
    /// Body and client authentication (secrets inside).
    pub request: EncodedTokenRequest,
    /// The `requested_token_type` sent, if any.
    pub requested_token_type: Option<String>,
    /// Whether this is an RFC 8693 exchange.
    pub token_exchange: bool,
    /// The subject token's `exp`: the issued token is not used beyond it.
    pub not_after: Option<u64>,
    /// What it is for, in logs: target name or `client_credentials`.
    pub label: String,
}

impl Job {
    /// What the response must match.
    pub fn expectation(&self) -> ResponseExpectation<'_> {
        ResponseExpectation {
            requested_token_type: self.requested_token_type.as_deref(),
            token_exchange: self.token_exchange,
        }
    }
}

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
        Mode::TokenExchange | Mode::ClientCredentials => Grant::TokenExchange {
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
        idp: target.idp,
        request: request.encode(&idp.client_auth),
        requested_token_type: target.requested_token_type.clone(),
        token_exchange: target.mode == Mode::TokenExchange,
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
        idp: grant.idp,
        request: request.encode(&idp.client_auth),
        requested_token_type: None,
        token_exchange: false,
        not_after: None,
        label: "client_credentials".to_string(),
    }
}

/// Calls queued and in flight in this worker, one per key.
#[derive(Debug, Default)]
pub struct Flights {
    queued: VecDeque<Job>,
    in_flight: HashMap<TokenHash, Option<(u32, u64)>>,
    by_callout: HashMap<u32, (Job, u64)>,
}

impl Flights {
    /// Queues `job` unless a call for its key is already queued or in
    /// flight. Returns whether it was queued.
    pub fn request(&mut self, job: Job) -> bool {
        if self.in_flight.contains_key(&job.key) {
            return false;
        }
        self.in_flight.insert(job.key, None);
        self.queued.push_back(job);
        true
    }

    /// Whether a call for `key` is queued or in flight.
    pub fn pending(&self, key: &TokenHash) -> bool {
        self.in_flight.contains_key(key)
    }

    /// Takes the queued calls, to dispatch.
    pub fn take_queued(&mut self) -> Vec<Job> {
        self.queued.drain(..).collect()
    }

    /// Records a dispatched call.
    pub fn dispatched(&mut self, job: Job, callout: u32, now_millis: u64) {
        self.in_flight.insert(job.key, Some((callout, now_millis)));
        self.by_callout.insert(callout, (job, now_millis));
    }

    /// A call that could not be dispatched: no longer pending.
    pub fn abandoned(&mut self, key: &TokenHash) {
        self.in_flight.remove(key);
    }

    /// The call answered by `callout`, with its start time; no longer pending.
    pub fn complete(&mut self, callout: u32) -> Option<(Job, u64)> {
        let (job, started) = self.by_callout.remove(&callout)?;
        self.in_flight.remove(&job.key);
        Some((job, started))
    }

    /// Whether anything is queued or in flight.
    pub fn busy(&self) -> bool {
        !self.in_flight.is_empty()
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
            "subjectToken": {"validation": "decodeOnly"},
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

    #[test]
    fn one_call_per_key() {
        let config = config();
        let job = |key: &[u8]| {
            exchange_job(&config.targets[0], &config.idps[0], TokenHash::of(key), "t", None, None)
        };
        let mut flights = Flights::default();
        assert!(flights.request(job(b"a")));
        assert!(!flights.request(job(b"a")), "already queued");
        assert!(flights.request(job(b"b")));
        let queued = flights.take_queued();
        assert_eq!(queued.len(), 2);
        let mut queued = queued.into_iter();
        flights.dispatched(queued.next().unwrap(), 7, 1000);
        assert!(!flights.request(job(b"a")), "in flight");
        flights.abandoned(&TokenHash::of(b"b"));
        assert!(!flights.pending(&TokenHash::of(b"b")));
        let (done, started) = flights.complete(7).unwrap();
        assert_eq!((done.key, started), (TokenHash::of(b"a"), 1000));
        assert!(!flights.busy());
        assert!(flights.complete(7).is_none());
    }
}
