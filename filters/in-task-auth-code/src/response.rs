//! The agent's answer to a forwarded message: an auth-required task that
//! says nothing of where to authorize gets a ready-to-open challenge made
//! by the gateway (state and PKCE bound to the user and task), and a task
//! the agent created for a message whose task id only the gateway knew gets
//! the token already obtained.

use baton_filter_kit::audit::AuditLine;
use baton_filter_kit::host::Host;
use baton_token::TokenHash;
use serde_json::Value;

use crate::a2a::{self, TaskIds};
use crate::challenge::{issue, random_id};
use crate::decision::{Engine, Rebind};
use crate::metrics;
use crate::store::TaskRecord;

/// What the request phase left for the answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnswerContext {
    /// The user, when known.
    pub user: Option<String>,
    /// A token to bind to the task the answer names.
    pub rebind: Option<Rebind>,
}

impl AnswerContext {
    /// Whether the answer needs to be read at all.
    pub fn wants_body(&self, enrich: bool) -> bool {
        self.rebind.is_some() || (enrich && self.user.is_some())
    }
}

/// Reads an agent's JSON-RPC answer; returns the rewritten body when it
/// changed.
pub fn on_answer(
    engine: &mut Engine,
    host: &dyn Host,
    context: &AnswerContext,
    body: &[u8],
) -> Option<Vec<u8>> {
    let mut answer: Value = serde_json::from_slice(body).ok()?;
    if let (Some(rebind), Some(task_id)) = (&context.rebind, answered_task_id(&answer)) {
        let stored = engine.store.put_task(
            host,
            &TaskRecord {
                user: rebind.user.clone(),
                task_id: task_id.to_string(),
                gateway_task: false,
                token: Some(rebind.token.clone()),
                expires_at: rebind.expires_at,
            },
        );
        if stored.is_err() {
            host.count(metrics::STORE_FULL);
        }
    }
    if !engine.config.enrich_agent_challenges {
        return None;
    }
    let user = context.user.as_deref()?;
    let found = a2a::agent_challenge(&answer)?;
    let config = engine.shared_config();
    let ids = TaskIds { task_id: found.ids.task_id.clone(), context_id: found.ids.context_id.clone() };
    let issued = match issue(&config, &engine.store, host, user, &ids, false, None) {
        Ok(issued) => issued,
        Err(problem) => {
            if problem == crate::challenge::IssueProblem::StoreFull {
                host.count(metrics::STORE_FULL);
            }
            return None;
        }
    };
    let message_id = random_id(host)?;
    a2a::enrich_agent_challenge(&mut answer, &found, &message_id, issued.object);
    host.count(metrics::AGENT_CHALLENGES_ENRICHED);
    let mut audit = AuditLine::new(config.audit_log);
    audit.set("answer", "agent_challenge").set("user", user).set("task", &ids.task_id);
    audit.token_as("state", &TokenHash::of(issued.state.as_bytes()));
    audit.allow("challenge_completed").emit(host);
    serde_json::to_vec(&answer).ok()
}

/// The task id an answer names (a task, or a message within a task).
fn answered_task_id(answer: &Value) -> Option<&str> {
    let result = answer.get("result")?;
    result
        .pointer("/task/id")
        .or_else(|| {
            (result.get("kind").and_then(Value::as_str) == Some("task")).then(|| result.get("id")).flatten()
        })
        .or_else(|| result.pointer("/message/taskId"))
        .or_else(|| result.get("taskId"))
        .and_then(Value::as_str)
}
