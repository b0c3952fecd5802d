//! obo-credential-injection in the filter-kit runtime: how a request is
//! read, what the engine's verdicts mean to the proxy, what a finished token
//! endpoint call gives the requests that waited for it, and which
//! client-credentials tokens are renewed in the background. The runtime
//! makes each call once for all workers (leases) and decides the waiting
//! requests again when it is answered.

use std::rc::Rc;

use baton_filter_kit::credential::Credential;
use baton_filter_kit::fleet::{CallHere, FleetFlight, Found};
use baton_filter_kit::handoff::VERIFIED_TOKEN_PROPERTY;
use baton_filter_kit::host::{CalloutResponse, Counter, Host, LogLevel};
use baton_filter_kit::keys::KeyStore;
use baton_filter_kit::lease::LeaseTable;
use baton_filter_kit::reply::Reply;
use baton_filter_kit::request_headers::RequestHeaders;
use baton_filter_kit::runtime::{self, Filter, Plugin, Round as RuntimeRound, WaitFor};
use baton_filter_kit::store::{EtcdAnswer, EtcdEndpoint, EtcdError, EtcdOperation, StoreCall};
use baton_filter_kit::token_calls::{TokenCall, TokenEndpoint};
use baton_filter_kit::verifier::KeyWait;
use baton_token::TokenHash;

use crate::decision::{Engine, Request, Round, StoreStep, fleet_store};
use crate::denial::Denial;
use crate::fleet_cache::{self, StoreRead};
use crate::issued::IssuedToken;
use crate::jobs::credentials_job;
use crate::model::{CallerSource, SubjectToken, SubjectValidation};
use crate::renewal::RenewalBackoff;
use crate::{FILTER, config, metrics};

/// Cross-worker lease slots for token endpoint calls.
const LEASE_SLOTS: u32 = 64;

/// What a finished call gives: the issued token and how long the IdP took
/// (ms), or how the call failed.
pub type CallOutcome = Result<(Rc<IssuedToken>, u64), Denial>;

/// What a request waited for brings it: a token call's outcome, or what
/// its store read found.
#[derive(Debug, Clone)]
pub enum OboOutcome {
    /// A token endpoint call finished.
    Call(CallOutcome),
    /// A store read finished.
    Store(StoreRead),
}

/// The filter, as the runtime runs it.
#[derive(Debug)]
pub struct OboCredentialInjection {
    /// Decisions, subject verification, issued-token cache.
    pub engine: Engine,
    /// Client-credentials renewals that failed, and when to try again.
    renewals: RenewalBackoff,
}

impl OboCredentialInjection {
    /// The filter for `engine`.
    pub fn new(engine: Engine) -> Self {
        Self { engine, renewals: RenewalBackoff::default() }
    }

    /// The request as its headers and the connection describe it, without
    /// claim-enforcement's record (`verified_upstream` is left empty for
    /// the caller to fill).
    pub fn read_headers(&self, host: &dyn Host, headers: &RequestHeaders) -> Result<Request, String> {
        let config = self.engine.config();
        let unreadable = |_| "request headers unreadable".to_string();
        let mut inputs = config.match_inputs;
        if config.assertion.is_some() {
            inputs.path = true;
        }
        let attributes = headers.match_attributes(inputs);
        let mut method = attributes.method;
        if let Some(issuer) = &config.assertion
            && method.is_empty()
            && attributes.path.split('?').next() == Some(issuer.jwks_path.as_str())
        {
            method = headers.text(":method").unwrap_or_default();
        }
        let credential = match &config.subject {
            None => Credential::Absent,
            Some(subject) => headers.credential(&subject.header),
        };
        // Envoy's own record of the TLS handshake, which no client can write.
        let peer_certificate = match config.delegation.caller {
            CallerSource::PeerCertificate => host
                .property(&["connection", "uri_san_peer_certificate"])
                .map_err(unreadable)?
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            CallerSource::TokenClient => None,
        };
        Ok(Request {
            method,
            path: attributes.path,
            authority: attributes.authority,
            method_override: attributes.method_override,
            credential,
            peer_certificate,
            verified_upstream: None,
        })
    }
}

impl Filter for OboCredentialInjection {
    type Request = Request;
    type Outcome = OboOutcome;
    type Answer = ();

    const MAKES_CALLS: bool = true;
    const USES_STORE: bool = true;

    fn user_agent(&self) -> &'static str {
        "baton-obo-credential-injection"
    }

    /// The attributes the decision needs, each read from the proxy only
    /// when the configuration uses it; claim-enforcement's record from
    /// the filter state Envoy keeps for this request.
    fn read_request(
        &mut self,
        host: &dyn Host,
        headers: &RequestHeaders,
        _end_of_stream: bool,
    ) -> Result<Request, String> {
        let mut request = self.read_headers(host, headers)?;
        if let Some(SubjectToken { validation: SubjectValidation::ClaimEnforcement { .. }, .. }) =
            &self.engine.config().subject
        {
            request.verified_upstream = host
                .property(&[VERIFIED_TOKEN_PROPERTY])
                .map_err(|_| "claim-enforcement's record unreadable".to_string())?;
        }
        Ok(request)
    }

    fn decide(
        &mut self,
        host: &dyn Host,
        request: &Request,
        round: RuntimeRound<'_, OboOutcome>,
    ) -> runtime::Verdict<()> {
        if let Some(reply) = self.serve_jwks(host, request) {
            return runtime::Verdict::Reply(reply);
        }
        let timeout = Denial::wait_timeout();
        let mut engine_round = Round { number: round.number, keys: round.keys, ..Round::FIRST };
        match round.call {
            Some((key, OboOutcome::Call(Ok((token, idp_ms))))) => {
                engine_round.fresh = Some((key, token, *idp_ms));
            }
            Some((key, OboOutcome::Call(Err(failure)))) => engine_round.failed = Some((key, failure)),
            Some((key, OboOutcome::Store(read))) => engine_round.store = Some(StoreStep::Read(key, read)),
            None => {}
        }
        let overdue = round.overdue;
        match &overdue {
            // Decided as if the call had failed, so the answer carries the
            // same audit line as any other.
            Some(WaitFor::Call(key)) => engine_round.failed = Some((key, &timeout)),
            Some(WaitFor::Keys(_)) => engine_round.keys = KeyWait::Exhausted,
            // A read that does not come in time is a miss.
            Some(WaitFor::Store(_)) => engine_round.store = Some(StoreStep::TimedOut),
            None => {}
        }
        self.engine.decide(host, request, engine_round)
    }

    /// Nor in trailers, for a backend that merges them into headers.
    fn trailer_names(&self) -> Vec<String> {
        let config = self.engine.config();
        config
            .targets
            .iter()
            .map(|target| target.inject.header.clone())
            .chain(config.subject.iter().map(|subject| subject.header.clone()))
            .collect()
    }

    /// As long as the slowest IdP's call may take; a store read, as long as
    /// the store's timeout.
    fn wait_limit_secs(&self, what: WaitFor) -> u64 {
        let config = self.engine.config();
        match (what, &config.store) {
            (WaitFor::Store(_), Some(store)) => store.endpoint.timeout_ms.div_ceil(1000).max(1),
            _ => config.idps.iter().map(|idp| idp.endpoint.timeout_ms.div_ceil(1000)).max().unwrap_or(0),
        }
    }

    fn keys(&mut self) -> Option<&mut KeyStore> {
        self.engine.verifier.as_mut().map(|verifier| verifier.keys())
    }

    fn endpoint(&self, call: &TokenCall) -> Option<&TokenEndpoint> {
        self.engine.config().idps.get(call.endpoint).map(|idp| &idp.endpoint)
    }

    fn finish_call(
        &mut self,
        host: &dyn Host,
        call: &TokenCall,
        response: &CalloutResponse,
        started_ms: u64,
    ) -> OboOutcome {
        let idp_ms = host.now_unix_millis().saturating_sub(started_ms);
        let body = response.body_for_parsing();
        let result = self.engine.finish_job(host, call, response.status, body);
        if self.engine.config().credentials.iter().any(|grant| grant.key == call.key) {
            match &result {
                Ok(_) => self.renewals.succeeded(&call.key),
                Err(_) => self.renewals.failed(&call.key, host.now_unix_secs()),
            }
        }
        OboOutcome::Call(result.map(|token| (token, idp_ms)))
    }

    fn dispatch_failed(&mut self, host: &dyn Host, call: &TokenCall) -> OboOutcome {
        OboOutcome::Call(self.engine.finish_job(host, call, None, b"").map(|token| (token, 0)))
    }

    fn store_endpoint(&self) -> Option<&EtcdEndpoint> {
        self.engine.config().store.as_ref().map(|store| &store.endpoint)
    }

    /// A read's answer goes to the request that waited for it; a write's
    /// (no request waits) is counted, and a lease queues the put.
    fn finish_store(
        &mut self,
        host: &dyn Host,
        call: &StoreCall,
        answer: Result<EtcdAnswer, EtcdError>,
    ) -> Option<OboOutcome> {
        let cluster = self.store_endpoint().map_or("?", |endpoint| endpoint.cluster.as_str()).to_string();
        match call.operation {
            EtcdOperation::Get { .. } => {
                Some(OboOutcome::Store(fleet_cache::read_outcome(host, &cluster, answer)))
            }
            _ => {
                self.engine.writes.finish(host, &cluster, call, answer);
                None
            }
        }
    }

    fn store_jobs(&mut self, _host: &dyn Host) -> Vec<StoreCall> {
        self.engine.writes.take()
    }

    /// A user's exchange, with a `store`, is made once for the fleet.
    fn fleet_flight(&self, call: &TokenCall) -> Option<FleetFlight> {
        let (store, idp) = fleet_store(self.engine.config(), call)?;
        Some(fleet_cache::fleet_flight(store, &call.key, idp))
    }

    /// Another replica's token: opened and checked as a read before the
    /// exchange is, cached for this Envoy's workers, and given to the
    /// requests that waited as what their store read found.
    fn fleet_found(&mut self, host: &dyn Host, call: &TokenCall, value: &[u8]) -> Found<OboOutcome> {
        let config = self.engine.shared_config();
        let Some((store, idp)) = fleet_store(&config, call) else {
            return Found::Unusable;
        };
        let not_after = call.not_after.map(|exp| exp.saturating_sub(config.expiry_margin_secs));
        match fleet_cache::open(store, &call.key, idp, value, host.now_unix_secs(), not_after) {
            Ok(token) => {
                host.count(metrics::STORE_FLIGHT_FOLLOWED);
                self.engine.cache.put(call.key, Rc::new(token), host);
                Found::Token(OboOutcome::Store(StoreRead::Found(value.to_vec())))
            }
            Err(why) => {
                if !matches!(why, fleet_cache::Unused::Expired) {
                    host.count(metrics::STORE_REJECTED);
                    host.log(
                        LogLevel::Warn,
                        &format!("a stored token was not used ({why:?}): another sealing key or tampering"),
                    );
                }
                Found::Unusable
            }
        }
    }

    fn fleet_calls_here(&mut self, host: &dyn Host, _call: &TokenCall, why: CallHere) {
        match why {
            CallHere::Claimed => host.count(metrics::STORE_FLIGHT_LED),
            CallHere::StoreFault(label) => {
                host.count(metrics::STORE_UNAVAILABLE);
                host.log(
                    LogLevel::Warn,
                    &format!("store unavailable for an exchange's claim ({label}): exchanging here"),
                );
            }
            CallHere::NoUsableClaim => {}
        }
    }

    fn on_dispatch(&mut self, host: &dyn Host, _call: &TokenCall) {
        host.count(metrics::IDP_CALLS);
    }

    fn cached(&mut self, host: &dyn Host, key: &TokenHash) -> bool {
        self.engine.cache.get(key, host).is_some()
    }

    /// A renewal for each client-credentials token that is missing or past
    /// its refresh time. When several workers queue the same renewal, the
    /// lease lets one of them call.
    fn background_calls(&mut self, host: &dyn Host, pending: &dyn Fn(&TokenHash) -> bool) -> Vec<TokenCall> {
        let config = self.engine.shared_config();
        let now = host.now_unix_secs();
        let mut calls = Vec::new();
        for grant in &config.credentials {
            if pending(&grant.key) || !self.renewals.may_try(&grant.key, now) {
                continue;
            }
            let Some(idp) = config.idps.get(grant.idp) else {
                continue;
            };
            match self.engine.cache.get(&grant.key, host) {
                None => calls.push(credentials_job(grant, idp)),
                Some((token, _)) if now >= token.refresh_at => {
                    host.count(metrics::CREDENTIALS_REFRESHED);
                    calls.push(credentials_job(grant, idp));
                }
                Some(_) => {}
            }
        }
        calls
    }
}

impl OboCredentialInjection {
    /// The identity assertion keys, for `GET`/`HEAD` on their JWKS path.
    fn serve_jwks(&self, host: &dyn Host, request: &Request) -> Option<Reply> {
        let issuer = self.engine.config().assertion.as_ref()?;
        if request.path.split('?').next() != Some(issuer.jwks_path.as_str()) {
            return None;
        }
        host.count(metrics::JWKS_SERVED);
        let reply = match request.method.as_str() {
            "GET" | "HEAD" => Reply {
                status: 200,
                headers: vec![
                    ("content-type", "application/jwk-set+json".into()),
                    ("cache-control", "public, max-age=300".into()),
                ],
                body: if request.method == "GET" { issuer.jwks().to_string() } else { String::new() },
            },
            _ => Reply { status: 405, headers: vec![("allow", "GET, HEAD".into())], body: String::new() },
        };
        Some(reply)
    }
}

impl Plugin for OboCredentialInjection {
    const NAME: &'static str = FILTER;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const COUNTERS: &'static [Counter] = metrics::ALL;

    fn configure(bytes: &[u8]) -> Result<Self, String> {
        let config = config::parse(bytes).map_err(|error| error.to_string())?;
        Ok(Self::new(Engine::new(Rc::new(config))))
    }

    fn summary(&self) -> String {
        let config = self.engine.config();
        format!(
            "configured version={} idps={} targets={} fingerprint={}",
            Self::VERSION,
            config.idps.len(),
            config.targets.len(),
            config.fingerprint
        )
    }

    fn leases(&self) -> Option<LeaseTable> {
        Some(LeaseTable::new(format!("baton.obo.{}.flight.", self.engine.config().fingerprint), LEASE_SLOTS))
    }
}

#[cfg(test)]
#[path = "host_call_tests.rs"]
mod host_call_tests;

#[cfg(test)]
#[path = "fleet_cache_tests.rs"]
mod fleet_cache_tests;
