//! The two engines as one filter in the filter-kit runtime: the request's
//! headers read once, claim-enforcement decides, and what it verified goes
//! to obo-credential-injection in memory; their forwards become one.

use std::cell::RefCell;
use std::rc::Rc;

use baton_filter_kit::config::ConfigError;
use baton_filter_kit::fleet::{CallHere, FleetFlight, Found};
use baton_filter_kit::host::{CalloutResponse, Counter, Host};
use baton_filter_kit::keys::KeyStore;
use baton_filter_kit::lease::LeaseTable;
use baton_filter_kit::reply::Reply;
use baton_filter_kit::request_headers::RequestHeaders;
use baton_filter_kit::runtime::{Filter, Forward, Plugin, Round, Verdict, WaitFor};
use baton_filter_kit::store::{EtcdAnswer, EtcdEndpoint, EtcdError, StoreCall};
use baton_filter_kit::token_calls::{TokenCall, TokenEndpoint};
use baton_token::TokenHash;
use claim_enforcement::filter::ClaimEnforcement;
use obo_credential_injection::filter::{OboCredentialInjection, OboOutcome};
use obo_credential_injection::model::{SubjectToken, SubjectValidation};
use serde_json::Value;

use crate::{FILTER, metrics};

/// The two sections of the configuration.
const SECTIONS: [&str; 2] = ["claimEnforcement", "oboCredentialInjection"];

/// claim-enforcement, then obo-credential-injection, in one filter.
#[derive(Debug)]
pub struct EnforceAndExchange {
    enforce: ClaimEnforcement,
    exchange: OboCredentialInjection,
    /// Whether the `claimEnforcement` section asked for the verified token
    /// to be recorded for a later filter (`shareVerifiedToken`); the record
    /// is made for the exchange in any case, in memory.
    record_for_later_filters: bool,
}

/// A request as both engines read it.
#[derive(Debug)]
pub struct Request {
    enforce: claim_enforcement::decision::Request,
    /// Given claim-enforcement's record once it has decided.
    exchange: RefCell<obo_credential_injection::decision::Request>,
    /// claim-enforcement's forward once it has decided: a request that
    /// waits for the exchange is not checked (and counted) again.
    enforced: RefCell<Option<Forward<()>>>,
}

impl Filter for EnforceAndExchange {
    type Request = Request;
    type Outcome = OboOutcome;
    type Answer = ();

    const MAKES_CALLS: bool = true;
    const USES_STORE: bool = true;

    fn user_agent(&self) -> &'static str {
        "baton-enforce-and-exchange"
    }

    fn read_request(
        &mut self,
        host: &dyn Host,
        headers: &RequestHeaders,
        end_of_stream: bool,
    ) -> Result<Request, String> {
        Ok(Request {
            enforce: self.enforce.read_request(host, headers, end_of_stream)?,
            exchange: RefCell::new(self.exchange.read_headers(host, headers)?),
            enforced: RefCell::new(None),
        })
    }

    fn decide(&mut self, host: &dyn Host, request: &Request, round: Round<'_, OboOutcome>) -> Verdict<()> {
        if request.enforced.borrow().is_none() {
            let keys_overdue = round.overdue.filter(|what| matches!(what, WaitFor::Keys(_)));
            let enforce_round =
                Round { number: round.number, keys: round.keys, call: None, overdue: keys_overdue };
            match self.enforce.decide(host, &request.enforce, enforce_round) {
                Verdict::Forward(forward) => {
                    // What `shareVerifiedToken` records in filter state,
                    // handed over in memory: no client can write it.
                    request.exchange.borrow_mut().verified_upstream =
                        forward.property.as_ref().map(|(_, value)| value.clone().into_bytes());
                    *request.enforced.borrow_mut() = Some(forward);
                }
                // An answer, or a wait for keys: the exchange is not reached.
                Verdict::Reply(reply) => return Verdict::Reply(reply),
                Verdict::AwaitKeys(provider) => return Verdict::AwaitKeys(provider),
                // claim-enforcement reads no body and makes no call.
                Verdict::ReadBody
                | Verdict::AwaitCall(_)
                | Verdict::AwaitStore(_)
                | Verdict::ReplyWhenStored(..) => {
                    return unchecked();
                }
            }
        }
        let enforced = request.enforced.borrow();
        let Some(enforced) = enforced.as_ref() else {
            return unchecked();
        };
        let call_overdue = round.overdue.filter(|what| matches!(what, WaitFor::Call(_) | WaitFor::Store(_)));
        let exchange_round = Round { overdue: call_overdue, ..round };
        match self.exchange.decide(host, &request.exchange.borrow(), exchange_round) {
            Verdict::Forward(exchanged) => Verdict::Forward(self.merged(enforced, exchanged)),
            other => other,
        }
    }

    fn trailer_names(&self) -> Vec<String> {
        let mut names = self.enforce.trailer_names();
        names.extend(self.exchange.trailer_names());
        names
    }

    fn wait_limit_secs(&self, what: WaitFor) -> u64 {
        match what {
            WaitFor::Keys(_) => self.enforce.wait_limit_secs(what),
            WaitFor::Call(_) | WaitFor::Store(_) => self.exchange.wait_limit_secs(what),
        }
    }

    fn keys(&mut self) -> Option<&mut KeyStore> {
        self.enforce.keys()
    }

    fn endpoint(&self, call: &TokenCall) -> Option<&TokenEndpoint> {
        self.exchange.endpoint(call)
    }

    fn finish_call(
        &mut self,
        host: &dyn Host,
        call: &TokenCall,
        response: &CalloutResponse,
        started_ms: u64,
    ) -> OboOutcome {
        self.exchange.finish_call(host, call, response, started_ms)
    }

    fn dispatch_failed(&mut self, host: &dyn Host, call: &TokenCall) -> OboOutcome {
        self.exchange.dispatch_failed(host, call)
    }

    fn on_dispatch(&mut self, host: &dyn Host, call: &TokenCall) {
        self.exchange.on_dispatch(host, call);
    }

    fn cached(&mut self, host: &dyn Host, key: &TokenHash) -> bool {
        self.exchange.cached(host, key)
    }

    fn background_calls(&mut self, host: &dyn Host, pending: &dyn Fn(&TokenHash) -> bool) -> Vec<TokenCall> {
        self.exchange.background_calls(host, pending)
    }

    // The exchange's shared store (`oboCredentialInjection.store`), as
    // obo-credential-injection uses it alone.

    fn store_endpoint(&self) -> Option<&EtcdEndpoint> {
        self.exchange.store_endpoint()
    }

    fn finish_store(
        &mut self,
        host: &dyn Host,
        call: &StoreCall,
        answer: Result<EtcdAnswer, EtcdError>,
    ) -> Option<OboOutcome> {
        self.exchange.finish_store(host, call, answer)
    }

    fn store_jobs(&mut self, host: &dyn Host) -> Vec<StoreCall> {
        self.exchange.store_jobs(host)
    }

    fn fleet_flight(&self, call: &TokenCall) -> Option<FleetFlight> {
        self.exchange.fleet_flight(call)
    }

    fn fleet_found(&mut self, host: &dyn Host, call: &TokenCall, value: &[u8]) -> Found<OboOutcome> {
        self.exchange.fleet_found(host, call, value)
    }

    fn fleet_calls_here(&mut self, host: &dyn Host, call: &TokenCall, why: CallHere) {
        self.exchange.fleet_calls_here(host, call, why);
    }
}

/// The answer to a request the pass could not check: never forwarded.
fn unchecked() -> Verdict<()> {
    Verdict::Reply(Reply::json(500, "server_error", "the request could not be checked"))
}

impl EnforceAndExchange {
    /// One forward from both: every strip, removal and header set (the
    /// runtime applies strips and removals before sets, so the exchanged
    /// token replaces the caller's), and the verified-token record only
    /// when a later filter was promised it.
    fn merged(&self, enforced: &Forward<()>, exchanged: Forward<()>) -> Forward<()> {
        Forward {
            strip: enforced.strip.iter().cloned().chain(exchanged.strip).collect(),
            remove: enforced.remove.iter().cloned().chain(exchanged.remove).collect(),
            set: enforced.set.iter().cloned().chain(exchanged.set).collect(),
            property: if self.record_for_later_filters { enforced.property.clone() } else { None },
            body: None,
            answer: None,
        }
    }
}

impl Plugin for EnforceAndExchange {
    const NAME: &'static str = FILTER;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const COUNTERS: &'static [Counter] = metrics::ALL;

    fn configure(bytes: &[u8]) -> Result<Self, String> {
        let config: Value = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::new("", format!("not JSON: {e}")).to_string())?;
        let Value::Object(sections) = config else {
            return Err(ConfigError::new("", "must be an object").to_string());
        };
        if let Some(unknown) = sections.keys().find(|key| !SECTIONS.contains(&key.as_str())) {
            return Err(ConfigError::new(
                unknown.as_str(),
                "unknown field (expected claimEnforcement and oboCredentialInjection)",
            )
            .to_string());
        }
        let section = |name: &str| -> Result<Vec<u8>, String> {
            let value =
                sections.get(name).ok_or_else(|| ConfigError::new(name, "is required").to_string())?;
            Ok(value.to_string().into_bytes())
        };
        let within = |name: &str, error: ConfigError| {
            let field = if error.field.is_empty() || error.field == "." {
                name.to_string()
            } else {
                format!("{name}.{}", error.field)
            };
            ConfigError::new(field, error.message).to_string()
        };

        let mut enforce = claim_enforcement::config::parse(&section(SECTIONS[0])?)
            .map_err(|error| within(SECTIONS[0], error))?;
        let record_for_later_filters = enforce.share_verified_token;
        // The exchange needs the verified token's record, made in memory.
        enforce.share_verified_token = true;
        let exchange = obo_credential_injection::config::parse(&section(SECTIONS[1])?)
            .map_err(|error| within(SECTIONS[1], error))?;
        if let Some(SubjectToken { validation, .. }) = &exchange.subject
            && !matches!(validation, SubjectValidation::ClaimEnforcement { .. })
        {
            return Err(within(
                SECTIONS[1],
                ConfigError::new(
                    "subjectToken.validation",
                    "must be claimEnforcement: the claimEnforcement section verifies the token in the same pass",
                ),
            ));
        }
        Ok(Self {
            enforce: ClaimEnforcement { engine: claim_enforcement::decision::Engine::new(Rc::new(enforce)) },
            exchange: OboCredentialInjection::new(obo_credential_injection::decision::Engine::new(Rc::new(
                exchange,
            ))),
            record_for_later_filters,
        })
    }

    fn summary(&self) -> String {
        format!(
            "configured version={}: {}; {}",
            Self::VERSION,
            self.enforce.summary(),
            self.exchange.summary()
        )
    }

    fn leases(&self) -> Option<LeaseTable> {
        self.exchange.leases()
    }

    fn start(&mut self, host: &dyn Host) {
        self.enforce.start(host);
        self.exchange.start(host);
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
