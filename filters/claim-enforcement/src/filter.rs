//! claim-enforcement in the filter-kit runtime: how a request is read, what
//! the engine's verdicts mean to the proxy, and how long a request may wait
//! for keys. The runtime holds the request while keys are fetched and
//! decides it again when they arrive.

use baton_filter_kit::config::KeySource;
use baton_filter_kit::host::{CalloutResponse, Counter, Host};
use baton_filter_kit::keys::KeyStore;
use baton_filter_kit::reply::Reply;
use baton_filter_kit::request_headers::RequestHeaders;
use baton_filter_kit::runtime::{self, Filter, Plugin, Round, WaitFor};
use baton_filter_kit::token_calls::TokenCall;
use baton_filter_kit::verifier::KeyWait;

use crate::decision::{Engine, Request};
use crate::protected_resource::WELL_KNOWN;
use crate::{FILTER, config, metrics};

/// The filter, as the runtime runs it.
#[derive(Debug)]
pub struct ClaimEnforcement {
    /// Decisions, keys and cache.
    pub engine: Engine,
}

impl Filter for ClaimEnforcement {
    type Request = Request;
    type Outcome = ();
    type Answer = ();

    fn user_agent(&self) -> &'static str {
        "baton-claim-enforcement"
    }

    /// The token header, and only the request attributes the routes (and
    /// the metadata document) look at.
    fn read_request(
        &mut self,
        _host: &dyn Host,
        headers: &RequestHeaders,
        _end_of_stream: bool,
    ) -> Result<Request, String> {
        let config = self.engine.config();
        let mut inputs = config.match_inputs;
        if config.protected_resource.is_some() {
            inputs.path = true;
        }
        let attributes = headers.match_attributes(inputs);
        let mut method = attributes.method;
        if config.protected_resource.is_some() && method.is_empty() && attributes.path.starts_with(WELL_KNOWN)
        {
            method = headers.text(":method").unwrap_or_default();
        }
        Ok(Request {
            method,
            path: attributes.path,
            authority: attributes.authority,
            method_override: attributes.method_override,
            credential: headers.credential(&config.token_source.header),
        })
    }

    fn decide(&mut self, host: &dyn Host, request: &Request, round: Round<'_, ()>) -> runtime::Verdict<()> {
        // The RFC 9728 metadata document is answered before any route.
        if let Some(metadata) = &self.engine.config().protected_resource
            && request.path.starts_with(WELL_KNOWN)
            && let Some(answer) = metadata.answer(&request.method, &request.path)
        {
            return runtime::Verdict::Reply(Reply {
                status: answer.status,
                headers: answer.headers.into_iter().map(|(name, value)| (name, value.to_string())).collect(),
                body: answer.body,
            });
        }
        let keys = if round.overdue.is_some() { KeyWait::Exhausted } else { round.keys };
        self.engine.decide(host, request, keys)
    }

    /// A backend that merges trailers into headers must not find an
    /// identity header there either.
    fn trailer_names(&self) -> Vec<String> {
        self.engine.config().identity_headers().map(String::from).collect()
    }

    fn wait_limit_secs(&self, what: WaitFor) -> u64 {
        let WaitFor::Keys(provider) = what else {
            return 0;
        };
        match self.engine.config().providers.get(provider).map(|p| &p.keys) {
            Some(KeySource::Remote(remote)) => remote.timeout_ms.div_ceil(1000),
            _ => 0,
        }
    }

    fn keys(&mut self) -> Option<&mut KeyStore> {
        Some(self.engine.verifier.keys())
    }

    fn finish_call(
        &mut self,
        _host: &dyn Host,
        _call: &TokenCall,
        _response: &CalloutResponse,
        _started: u64,
    ) {
    }

    fn dispatch_failed(&mut self, _host: &dyn Host, _call: &TokenCall) {}
}

impl Plugin for ClaimEnforcement {
    const NAME: &'static str = FILTER;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const COUNTERS: &'static [Counter] = metrics::ALL;

    fn configure(bytes: &[u8]) -> Result<Self, String> {
        let config = config::parse(bytes).map_err(|error| error.to_string())?;
        Ok(Self { engine: Engine::new(std::rc::Rc::new(config)) })
    }

    fn summary(&self) -> String {
        let config = self.engine.config();
        format!(
            "configured version={} providers={} routes={} fingerprint={}",
            Self::VERSION,
            config.providers.len(),
            config.routes.len(),
            config.fingerprint
        )
    }
}

#[cfg(test)]
#[path = "host_call_tests.rs"]
mod host_call_tests;
