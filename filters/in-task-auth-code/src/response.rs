//! The agent's answers, read as they pass: whole (a JSON-RPC answer, the
//! agent card) or event by event (an A2A event stream, each event forwarded
//! as soon as it is read). What the gateway does with them:
//! - the agent card, and a `GetExtendedAgentCard` result, name the gateway
//!   ([`crate::card`]): a card the gateway cannot rewrite is refused (502),
//!   never passed on naming the agent;
//! - a task the agent created for a message whose task id only the gateway
//!   knew gets the token already obtained, and needs it from then on;
//! - an auth-required task or status update that says nothing of where to
//!   authorize gets a ready-to-open challenge (state and PKCE bound to the
//!   user and task), and the task needs the credential from then on;
//! - a task in a final state (completed, canceled, failed, rejected) ends:
//!   its stored token and its need for the credential go.

use baton_filter_kit::audit::AuditLine;
use baton_filter_kit::host::{Host, LogLevel};
use baton_filter_kit::reply::Reply;
use baton_filter_kit::runtime::{AnswerChange, AnswerHead, AnswerMode};
use baton_token::TokenHash;
use serde_json::Value;

use crate::a2a::{self, TaskIds};
use crate::card::{self, CardProblem};
use crate::challenge::{IssueProblem, issue, random_id};
use crate::decision::{Engine, Rebind};
use crate::metrics;
use crate::store::TaskRecord;

/// What the request phase left for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerContext {
    /// The agent card, at its well-known path.
    Card(Seen),
    /// The answer to a JSON-RPC call.
    Rpc(RpcAnswer),
}

/// What the answer's headers said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// `:status`.
    pub status: u16,
    /// Compressed (`content-encoding` other than `identity`): unreadable.
    pub encoded: bool,
    /// `application/json` (or `+json`).
    pub json: bool,
}

/// The answer to a JSON-RPC call, and what the call left for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpcAnswer {
    /// The user, when known.
    pub user: Option<String>,
    /// A token to bind to the task the answer names (once).
    pub rebind: Option<Rebind>,
    /// The result is an agent card (`GetExtendedAgentCard`).
    pub card: bool,
    /// The headers.
    pub seen: Seen,
    /// Store work the request's decision and the answer's reading started
    /// (a token moved to the agent's task, a gate, an ended task's record
    /// deleted): the answer's end is held until it is done, so the
    /// client's next message finds it on every replica.
    pub writes: Vec<TokenHash>,
}

impl RpcAnswer {
    /// The answer to a call of `user`.
    pub fn of(user: Option<String>) -> Self {
        Self { user, ..Self::default() }
    }
}

/// How an answer is read.
pub fn mode(engine: &Engine, answer: &mut AnswerContext, head: &AnswerHead<'_>) -> AnswerMode {
    let seen = Seen {
        status: head.status.unwrap_or(0),
        encoded: head.content_encoding.is_some_and(|value| !value.eq_ignore_ascii_case(b"identity")),
        json: head.content_type.is_some_and(is_json),
    };
    match answer {
        AnswerContext::Card(card_seen) => {
            *card_seen = seen;
            // A card, or a redirect to one, must be seen; errors pass.
            if (200..400).contains(&seen.status) { AnswerMode::Whole } else { AnswerMode::Pass }
        }
        AnswerContext::Rpc(rpc) => {
            rpc.seen = seen;
            let event_stream = head.content_type.is_some_and(|value| value.starts_with(b"text/event-stream"));
            let wanted = rpc.card
                || rpc.rebind.is_some()
                || rpc.user.is_some()
                || engine.config().enrich_agent_challenges;
            if !wanted {
                AnswerMode::Pass
            } else if rpc.card && (200..300).contains(&seen.status) {
                AnswerMode::Whole
            } else if seen.encoded {
                AnswerMode::Pass
            } else if event_stream {
                AnswerMode::Events
            } else if seen.json {
                AnswerMode::Whole
            } else {
                AnswerMode::Pass
            }
        }
    }
}

fn is_json(content_type: &[u8]) -> bool {
    let essence = content_type.split(|byte| *byte == b';').next().unwrap_or(b"").trim_ascii();
    essence.eq_ignore_ascii_case(b"application/json") || essence.to_ascii_lowercase().ends_with(b"+json")
}

/// What becomes of an answer read whole.
pub fn whole(
    engine: &mut Engine,
    host: &dyn Host,
    answer: &mut AnswerContext,
    body: Option<&[u8]>,
) -> AnswerChange {
    match answer {
        AnswerContext::Card(seen) => served_card(engine, host, seen, body),
        AnswerContext::Rpc(rpc) => {
            let Some(mut response) = body.and_then(|body| serde_json::from_slice::<Value>(body).ok()) else {
                return if rpc.card {
                    refuse_card(engine, host, CardProblem::NotJson)
                } else {
                    AnswerChange::Keep
                };
            };
            if rpc.card {
                let Some(result) = response.get_mut("result") else {
                    return AnswerChange::Keep; // a JSON-RPC error: no card in it
                };
                return match rewrite_card(engine, host, result) {
                    Ok(()) => AnswerChange::Replace(response.to_string().into_bytes()),
                    Err(problem) => refuse_card(engine, host, problem),
                };
            }
            if on_result(engine, host, rpc, &mut response) {
                AnswerChange::Replace(response.to_string().into_bytes())
            } else {
                AnswerChange::Keep
            }
        }
    }
}

/// New data for one event of an A2A event stream.
pub fn event(engine: &mut Engine, host: &dyn Host, answer: &mut AnswerContext, data: &str) -> Option<String> {
    let AnswerContext::Rpc(rpc) = answer else {
        return None;
    };
    let mut response: Value = serde_json::from_str(data).ok()?;
    on_result(engine, host, rpc, &mut response).then(|| response.to_string())
}

/// The agent card at its well-known path.
fn served_card(engine: &mut Engine, host: &dyn Host, seen: &Seen, body: Option<&[u8]>) -> AnswerChange {
    // A redirect would send the client to a card the gateway never sees;
    // a compressed or non-JSON one cannot be read.
    if seen.status >= 300 || seen.encoded || !seen.json {
        return refuse_card(engine, host, CardProblem::NotJson);
    }
    let Some(mut card) = body.and_then(|body| serde_json::from_slice::<Value>(body).ok()) else {
        return refuse_card(engine, host, CardProblem::NotJson);
    };
    match rewrite_card(engine, host, &mut card) {
        Ok(()) => AnswerChange::Replace(card.to_string().into_bytes()),
        Err(problem) => refuse_card(engine, host, problem),
    }
}

fn rewrite_card(engine: &Engine, host: &dyn Host, card: &mut Value) -> Result<(), CardProblem> {
    let notes = card::rewrite(card, &engine.config().agent_card)?;
    host.count(metrics::AGENT_CARDS_REWRITTEN);
    if notes.signatures_dropped {
        host.count(metrics::AGENT_CARD_SIGNATURES_DROPPED);
    }
    Ok(())
}

/// A card the gateway cannot name itself in: 502, so no client is sent
/// past the gateway by it.
fn refuse_card(engine: &Engine, host: &dyn Host, problem: CardProblem) -> AnswerChange {
    host.count(metrics::AGENT_CARDS_REFUSED);
    host.log(
        LogLevel::Warn,
        &format!(
            "the agent's card was not served: {} (it would name the agent, not the gateway)",
            problem.reason()
        ),
    );
    let mut audit = AuditLine::new(host, engine.config().audit_log);
    audit.set("answer", "agent_card").deny(502, problem.reason()).emit(host);
    AnswerChange::Refuse(Reply::json(
        502,
        "bad_gateway",
        "the agent's card could not be served through the gateway",
    ))
}

/// Reads one JSON-RPC answer or event; returns whether it changed.
fn on_result(engine: &mut Engine, host: &dyn Host, rpc: &mut RpcAnswer, response: &mut Value) -> bool {
    let Some(found) = a2a::task_event(response) else {
        return false;
    };
    if let Some(rebind) = rpc.rebind.take() {
        // The agent made its own task of the one only the gateway knew:
        // that one is done, its token moves on (unless the task is over).
        engine.end_task(host, Some(&rebind.user), &rebind.from_task);
        if !found.is_final() {
            rebind_token(engine, host, &rebind, &found.ids);
        }
    }
    if found.is_final() {
        engine.end_task(host, rpc.user.as_deref(), &found.ids.task_id);
        host.count(metrics::TASKS_ENDED);
        return false;
    }
    if !engine.config().enrich_agent_challenges || !found.needs_challenge() {
        return false;
    }
    let Some(user) = rpc.user.clone() else {
        return false;
    };
    enrich(engine, host, &user, &found, response)
}

/// Keeps the token obtained for a task only the gateway knew under the
/// task the agent made for it, which from then on needs the credential
/// (with a shared store, on every replica: what the reading of the answer
/// writes, the answer's end waits for).
fn rebind_token(engine: &mut Engine, host: &dyn Host, rebind: &Rebind, ids: &TaskIds) {
    let record = TaskRecord {
        user: rebind.user.clone(),
        task_id: ids.task_id.clone(),
        gateway_task: false,
        token: Some(rebind.token.clone()),
        expires_at: rebind.expires_at,
        context_id: ids.context_id.clone(),
        challenge: None,
    };
    if engine.store.put_task(host, &record).is_err() || engine.gate(host, &rebind.user, &ids.task_id).is_err()
    {
        host.count(metrics::STORE_FULL);
        return;
    }
    engine.share_in_background(host, &record);
}

/// Completes an agent's own auth-required answer with a challenge.
fn enrich(
    engine: &mut Engine,
    host: &dyn Host,
    user: &str,
    found: &a2a::TaskEvent,
    response: &mut Value,
) -> bool {
    let config = engine.shared_config();
    let issued = match issue(&config, &engine.store, host, user, &found.ids, false, None) {
        Ok(issued) => issued,
        Err(problem) => {
            if problem == IssueProblem::StoreFull {
                host.count(metrics::STORE_FULL);
            }
            return false;
        }
    };
    let Some(message_id) = random_id(host) else {
        return false;
    };
    if engine.gate(host, user, &found.ids.task_id).is_err() {
        host.count(metrics::STORE_FULL);
    }
    a2a::enrich_agent_challenge(response, found, &message_id, issued.object);
    host.count(metrics::AGENT_CHALLENGES_ENRICHED);
    let mut audit = AuditLine::new(host, config.audit_log);
    audit.set("answer", "agent_challenge").set("user", user).set("task", &found.ids.task_id);
    audit.token_as("state", issued.state.as_bytes());
    audit.allow("challenge_completed").emit(host);
    true
}
