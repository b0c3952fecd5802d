//! Calls to OAuth token endpoints from inside Envoy: what to send (built by
//! a filter's decision, so it is tested natively), where, and the
//! single-flight bookkeeping that makes many requests needing the same token
//! wait for one call.

use std::time::Duration;

use crate::host::{Callout, Host, HostError};
use baton_token::TokenHash;
use baton_token::oauth::{ClientAuth, EncodedTokenRequest, ResponseExpectation};

/// A token endpoint reached through an Envoy cluster.
#[derive(Debug)]
pub struct TokenEndpoint {
    /// Envoy cluster.
    pub cluster: String,
    /// Path of the token endpoint.
    pub path: String,
    /// `:authority` of the call.
    pub authority: String,
    /// Call timeout.
    pub timeout_ms: u64,
    /// How the gateway authenticates.
    pub client_auth: ClientAuth,
}

impl TokenEndpoint {
    /// Dispatches `call` (a form POST); the answer arrives in the calling
    /// context's `on_http_call_response` with the returned token.
    pub fn dispatch(&self, host: &dyn Host, call: &TokenCall, user_agent: &str) -> Result<u32, HostError> {
        let mut headers = vec![
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
            ("user-agent", user_agent),
        ];
        if let Some(authorization) = &call.request.authorization {
            headers.push(("authorization", authorization.expose()));
        }
        host.dispatch(&Callout {
            cluster: &self.cluster,
            method: "POST",
            path: &self.path,
            authority: &self.authority,
            headers,
            body: Some(call.request.body.expose().as_bytes()),
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

/// One token endpoint call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCall {
    /// Cache key of the token it obtains.
    pub key: TokenHash,
    /// Index of the endpoint (in the filter's own list).
    pub endpoint: usize,
    /// Body and client authentication (secrets inside).
    pub request: EncodedTokenRequest,
    /// The `requested_token_type` sent, if any.
    pub requested_token_type: Option<String>,
    /// Whether this is an RFC 8693 exchange.
    pub token_exchange: bool,
    /// Whether the request carries the caller's token (an exchange, an
    /// on-behalf-of assertion, an authorization code): only then can a
    /// refusal be the caller's fault rather than the gateway's.
    pub carries_caller_token: bool,
    /// The audiences the issued token may name (a JWT's `aud` must be a
    /// non-empty subset); empty: not checked.
    pub expected_audiences: Vec<String>,
    /// The issuer the issued token must name, when known.
    pub expected_issuer: Option<String>,
    /// The subject token's `exp`: the issued token is not used beyond it.
    pub not_after: Option<u64>,
    /// What it is for, in logs: target name or `client_credentials`.
    pub label: String,
}

impl TokenCall {
    /// What the response must match.
    pub fn expectation(&self) -> ResponseExpectation<'_> {
        ResponseExpectation {
            requested_token_type: self.requested_token_type.as_deref(),
            token_exchange: self.token_exchange,
        }
    }
}

/// Calls queued and in flight in this worker, one per key. (Lists, not
/// maps: a worker has a few calls out at a time, and each map type costs
/// the `.wasm` its own hash table code.)
#[derive(Debug, Default)]
pub struct Flights {
    queued: Vec<TokenCall>,
    flights: Vec<Flight>,
}

/// A call queued or in flight.
#[derive(Debug)]
struct Flight {
    key: TokenHash,
    /// Once dispatched: the callout, when it started (ms), the call.
    dispatched: Option<(u32, u64, TokenCall)>,
}

impl Flights {
    /// Queues `job` unless a call for its key is already queued or in
    /// flight. Returns whether it was queued.
    pub fn request(&mut self, job: TokenCall) -> bool {
        if self.pending(&job.key) {
            return false;
        }
        self.flights.push(Flight { key: job.key, dispatched: None });
        self.queued.push(job);
        true
    }

    /// Whether a call for `key` is queued or in flight.
    pub fn pending(&self, key: &TokenHash) -> bool {
        self.flights.iter().any(|flight| flight.key == *key)
    }

    /// Takes the queued calls, to dispatch.
    pub fn take_queued(&mut self) -> Vec<TokenCall> {
        std::mem::take(&mut self.queued)
    }

    /// Records a dispatched call.
    pub fn dispatched(&mut self, job: TokenCall, callout: u32, now_millis: u64) {
        match self.flights.iter_mut().find(|flight| flight.key == job.key) {
            Some(flight) => flight.dispatched = Some((callout, now_millis, job)),
            None => self.flights.push(Flight { key: job.key, dispatched: Some((callout, now_millis, job)) }),
        }
    }

    /// A call that could not be dispatched: no longer pending.
    pub fn abandoned(&mut self, key: &TokenHash) {
        self.flights.retain(|flight| flight.key != *key);
    }

    /// The call answered by `callout`, with its start time; no longer pending.
    pub fn complete(&mut self, callout: u32) -> Option<(TokenCall, u64)> {
        let at = self
            .flights
            .iter()
            .position(|flight| matches!(flight.dispatched, Some((id, ..)) if id == callout))?;
        let (_, started, job) = self.flights.swap_remove(at).dispatched?;
        Some((job, started))
    }

    /// Whether anything is queued or in flight.
    pub fn busy(&self) -> bool {
        !self.flights.is_empty()
    }
}

/// A client-credentials call obtaining `key`, for tests.
#[cfg(any(test, feature = "test-host"))]
pub fn test_call(key: &[u8], label: &str) -> TokenCall {
    use baton_token::oauth::{Grant, TokenRequest};
    let request = TokenRequest {
        grant: Grant::ClientCredentials,
        audiences: vec![],
        resources: vec![],
        scope: None,
        extra: vec![],
    };
    TokenCall {
        key: TokenHash::of(key),
        endpoint: 0,
        request: request.encode(&ClientAuth::Public { client_id: "c".into() }),
        requested_token_type: None,
        token_exchange: false,
        carries_caller_token: false,
        expected_audiences: vec![],
        expected_issuer: None,
        not_after: None,
        label: label.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(key: &[u8]) -> TokenCall {
        test_call(key, "test")
    }

    #[test]
    fn one_call_per_key() {
        let mut flights = Flights::default();
        assert!(flights.request(call(b"a")));
        assert!(!flights.request(call(b"a")), "already queued");
        assert!(flights.request(call(b"b")));
        let mut queued = flights.take_queued().into_iter();
        flights.dispatched(queued.next().unwrap(), 7, 1000);
        assert!(!flights.request(call(b"a")), "in flight");
        flights.abandoned(&TokenHash::of(b"b"));
        assert!(!flights.pending(&TokenHash::of(b"b")));
        let (done, started) = flights.complete(7).unwrap();
        assert_eq!((done.key, started), (TokenHash::of(b"a"), 1000));
        assert!(!flights.busy());
        assert!(flights.complete(7).is_none());
    }
}
