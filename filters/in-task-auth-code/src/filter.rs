//! in-task-auth-code in the filter-kit runtime: how a request is read (its
//! body when a rule needs it), what the engine's verdicts mean to the proxy,
//! what a code exchange gives the request that waited for it, and how the
//! agent's answer is read and completed. The runtime holds requests while
//! bodies are read and calls are made, and talks to the proxy.

use std::rc::Rc;

use baton_filter_kit::credential::Credential;
use baton_filter_kit::handoff::VERIFIED_TOKEN_PROPERTY;
use baton_filter_kit::host::{CalloutResponse, Counter, Host};
use baton_filter_kit::keys::KeyStore;
use baton_filter_kit::matching::method_override;
use baton_filter_kit::reply::Reply;
use baton_filter_kit::request_headers::RequestHeaders;
use baton_filter_kit::runtime::{
    self, AnswerChange, AnswerHead, AnswerMode, BodyProblem, Filter, Plugin, Round as RuntimeRound, WaitFor,
};
use baton_filter_kit::store::{EtcdAnswer, EtcdEndpoint, EtcdError, StoreCall};
use baton_filter_kit::token_calls::{TokenCall, TokenEndpoint};
use baton_token::TokenHash;
use serde_json::Value;

use baton_filter_kit::audit::AuditLine;

use crate::browser::Answer;
use crate::decision::{Engine, ExchangeOutcome, Request, Round};
use crate::denial::{Denial, PageDenial, Step};
use crate::model::{FilterConfig, PrimaryVerification};
use crate::response::{self, AnswerContext};
use crate::sealed_state;
use crate::{FILTER, config, metrics};

/// The filter, as the runtime runs it.
#[derive(Debug)]
pub struct InTaskAuthCode {
    /// Decisions, verification, state and task store.
    pub engine: Engine,
}

impl Filter for InTaskAuthCode {
    type Request = Request;
    type Outcome = ExchangeOutcome;
    type Answer = AnswerContext;

    const MAKES_CALLS: bool = true;
    const READS_BODIES: bool = true;
    const READS_ANSWERS: bool = true;
    const USES_STORE: bool = true;

    fn user_agent(&self) -> &'static str {
        "baton-in-task-auth-code"
    }

    fn read_request(
        &mut self,
        host: &dyn Host,
        headers: &RequestHeaders,
        end_of_stream: bool,
    ) -> Result<Request, String> {
        let config = self.engine.config();
        let verified_upstream = match config.primary.verification {
            PrimaryVerification::ClaimEnforcement => host.property(&[VERIFIED_TOKEN_PROPERTY]).ok().flatten(),
            PrimaryVerification::Providers(_) => None,
        };
        let mut request = gather(headers.pairs(), config, verified_upstream);
        // No body follows, whatever the method: a rule decides on an empty
        // one now rather than wait for bytes that never come.
        if end_of_stream {
            request.body = Some(Vec::new());
        }
        Ok(request)
    }

    fn decide(
        &mut self,
        host: &dyn Host,
        request: &Request,
        round: RuntimeRound<'_, ExchangeOutcome>,
    ) -> runtime::Verdict<AnswerContext> {
        if let Some(what) = round.overdue {
            let config = self.engine.config();
            let path = request.path.split('?').next().unwrap_or("");
            if matches!(what, WaitFor::Store(_)) && path == config.idp.redirect_path {
                // The bank's redirect is a browser's step: refused as every
                // other refusal there (a page, or JSON when asked for).
                let mut answer = Answer::new(host, config.audit_log, Step::Bank, request);
                answer.audit.set("store", "store_timed_out");
                return answer.refuse(PageDenial::StoreUnavailable(Step::Bank));
            }
            let denial = match what {
                WaitFor::Store(_) => Denial::StoreUnavailable("store_timed_out"),
                WaitFor::Keys(_) | WaitFor::Call(_) => Denial::TimedOut,
            };
            let mut audit = AuditLine::new(host, self.engine.config().audit_log);
            return self.engine.deny(host, &mut audit, &Value::Null, &denial);
        }
        let engine_round = Round { number: round.number, keys: round.keys, exchange: round.call };
        let verdict = self.engine.decide(host, request, engine_round);
        // What the decision wrote for the other replicas (over all its
        // rounds), the client gets the reply or the agent's answer after.
        let mut work = request.store_work.borrow_mut();
        work.extend(self.engine.take_fresh());
        match verdict {
            runtime::Verdict::Reply(reply) if !work.is_empty() => {
                runtime::Verdict::ReplyWhenStored(reply, std::mem::take(&mut *work))
            }
            runtime::Verdict::Forward(mut forward) => {
                if let Some(AnswerContext::Rpc(rpc)) = &mut forward.answer {
                    rpc.writes.append(&mut work);
                }
                runtime::Verdict::Forward(forward)
            }
            other => other,
        }
    }

    /// The identity header is no more accepted in trailers than among the
    /// headers.
    fn trailer_names(&self) -> Vec<String> {
        let config = self.engine.config();
        config.identity_header.iter().chain([&config.inject_header]).cloned().collect()
    }

    fn wait_limit_secs(&self, what: WaitFor) -> u64 {
        let config = self.engine.config();
        match (what, &config.shared_store) {
            (WaitFor::Store(_), Some(shared)) => shared.endpoint.timeout_ms.div_ceil(1000).max(1),
            _ => config.idp.token_endpoint.timeout_ms.div_ceil(1000).max(5),
        }
    }

    fn keys(&mut self) -> Option<&mut KeyStore> {
        Some(self.engine.verifier.keys())
    }

    fn endpoint(&self, call: &TokenCall) -> Option<&TokenEndpoint> {
        let config = self.engine.config();
        Some(match (call.endpoint, &config.binding.primary_login) {
            (crate::login::LOGIN_ENDPOINT, Some(login)) => &login.server.token_endpoint,
            _ => &config.idp.token_endpoint,
        })
    }

    fn finish_call(
        &mut self,
        host: &dyn Host,
        call: &TokenCall,
        response: &CalloutResponse,
        _started_ms: u64,
    ) -> ExchangeOutcome {
        let body = response.body_for_parsing();
        self.engine.exchange_outcome(host, call, response.status, body)
    }

    fn dispatch_failed(&mut self, _host: &dyn Host, _call: &TokenCall) -> ExchangeOutcome {
        ExchangeOutcome::Unavailable("dispatch_failed".into())
    }

    fn store_endpoint(&self) -> Option<&EtcdEndpoint> {
        self.engine.config().shared_store.as_ref().map(|shared| &shared.endpoint)
    }

    fn finish_store(
        &mut self,
        host: &dyn Host,
        call: &StoreCall,
        answer: Result<EtcdAnswer, EtcdError>,
    ) -> Option<ExchangeOutcome> {
        let cluster = self.store_endpoint().map_or("?", |endpoint| endpoint.cluster.as_str());
        let outcome = sealed_state::outcome(host, cluster, answer);
        // A step of a write no request waits for: its next step is queued.
        self.engine.finish_background(host, call, &outcome);
        Some(ExchangeOutcome::Store(outcome))
    }

    /// The records of ended tasks, deleted from the shared store; tokens
    /// an agent's answer moved to its own task, written to it (each step's
    /// answer comes back to `finish_store`).
    fn store_jobs(&mut self, _host: &dyn Host) -> Vec<StoreCall> {
        self.engine.take_background()
    }

    fn add_body(&self, request: &mut Request, body: Vec<u8>) {
        request.body = Some(body);
    }

    fn max_body_bytes(&self) -> usize {
        self.engine.config().max_body_bytes
    }

    fn body_reply(&mut self, host: &dyn Host, problem: BodyProblem) -> Reply {
        let denial = match problem {
            BodyProblem::TooLarge => Denial::BodyTooLarge,
            BodyProblem::NeverCame => Denial::BodyNeverCame,
        };
        if let Some(counter) = denial.counter() {
            host.count(counter);
        }
        denial.reply(&Value::Null, &self.engine.config().idp.name)
    }

    fn answer_mode(&self, answer: &mut AnswerContext, head: &AnswerHead<'_>) -> AnswerMode {
        response::mode(&self.engine, answer, head)
    }

    fn store_work_pending(&self, step: &TokenHash) -> bool {
        self.engine.still_writing(step)
    }

    fn answer_store_work<'a>(&self, answer: &'a AnswerContext) -> &'a [TokenHash] {
        match answer {
            AnswerContext::Rpc(rpc) => &rpc.writes,
            AnswerContext::Card(_) => &[],
        }
    }

    fn rewrite_answer(
        &mut self,
        host: &dyn Host,
        answer: &mut AnswerContext,
        body: Option<&[u8]>,
    ) -> AnswerChange {
        let change = response::whole(&mut self.engine, host, answer, body);
        self.answer_waits_for_fresh_work(answer);
        change
    }

    fn rewrite_event(&mut self, host: &dyn Host, answer: &mut AnswerContext, data: &str) -> Option<String> {
        let change = response::event(&mut self.engine, host, answer, data);
        self.answer_waits_for_fresh_work(answer);
        change
    }
}

impl InTaskAuthCode {
    /// The store work reading `answer` started, its end waits for.
    fn answer_waits_for_fresh_work(&mut self, answer: &mut AnswerContext) {
        let fresh = self.engine.take_fresh();
        if let AnswerContext::Rpc(rpc) = answer {
            rpc.writes.extend(fresh);
        }
    }
}

/// The attributes the decision needs, from the request headers.
fn gather(
    headers: &[(String, Vec<u8>)],
    config: &FilterConfig,
    verified_upstream: Option<Vec<u8>>,
) -> Request {
    let text = |name: &str| {
        headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    };
    let mut primary = headers.iter().filter(|(name, _)| *name == config.primary.header);
    let primary = match (primary.next(), primary.next()) {
        (None, _) => Credential::Absent,
        (Some((_, value)), None) => Credential::one(value.clone()),
        (Some(_), Some(_)) => Credential::Several,
    };
    let path = text(":path").unwrap_or_default();
    Request {
        store_work: Default::default(),
        method: text(":method").unwrap_or_default(),
        method_override: method_override(&path, |name| headers.iter().any(|(header, _)| header == name)),
        path,
        authority: text(":authority").unwrap_or_default(),
        primary,
        verified_upstream,
        a2a_version: text("a2a-version"),
        accept: text("accept"),
        cookie: text("cookie"),
        body: None,
    }
}

impl Plugin for InTaskAuthCode {
    const NAME: &'static str = FILTER;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const COUNTERS: &'static [Counter] = metrics::ALL;

    fn configure(bytes: &[u8]) -> Result<Self, String> {
        let config = config::parse(bytes).map_err(|error| error.to_string())?;
        Ok(Self { engine: Engine::new(Rc::new(config)) })
    }

    fn summary(&self) -> String {
        let config = self.engine.config();
        format!(
            "configured version={} secondary_idp={} rules={} fingerprint={}",
            Self::VERSION,
            config.idp.name,
            config.rules.len(),
            config.fingerprint
        )
    }

    /// The store's slots exist before this VM serves a request.
    fn start(&mut self, host: &dyn Host) {
        self.engine.init_shared_data(host);
    }
}
