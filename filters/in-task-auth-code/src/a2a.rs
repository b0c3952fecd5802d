//! A2A JSON-RPC, both protocol versions: recognising message calls, reading
//! and removing `auth_credentials`, and writing the auth-required answers.
//!
//! v0.3: methods `message/send` and `message/stream`, parts with `kind`,
//! roles `user`/`agent`, results `{"kind": "task", ...}` and streamed
//! `{"kind": "status-update", ...}`, state `auth-required`.
//! v1.0: methods `SendMessage` and `SendStreamingMessage`, parts without
//! `kind`, roles `ROLE_USER`/`ROLE_AGENT`, results `{"task": {...}}` and
//! streamed `{"statusUpdate": {...}}`, state `TASK_STATE_AUTH_REQUIRED`.

use baton_filter_kit::reply::Reply;
use serde_json::{Map, Value, json};

/// The data-part key that carries a credential (MuleSoft-compatible location
/// `params.message.parts[].data.auth_credentials`).
pub const CREDENTIALS_KEY: &str = "auth_credentials";

/// JSON-RPC error: invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC error: not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC error: invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC error: server error (reserved range), used when the gateway
/// cannot complete the authorization (IdP unavailable).
pub const SERVER_ERROR: i64 = -32000;

/// The A2A protocol version of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// A2A 0.3.
    V03,
    /// A2A 1.0.
    V10,
}

/// What a call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Send a message, answer with a task or message.
    Send,
    /// Send a message, answer with an event stream.
    Stream,
    /// Read a task (`GetTask`, `tasks/get`).
    GetTask,
    /// Cancel a task (`CancelTask`, `tasks/cancel`).
    CancelTask,
    /// Follow a task's events (`SubscribeToTask`, `tasks/resubscribe`).
    SubscribeToTask,
    /// The agent's extended card (`GetExtendedAgentCard`,
    /// `agent/getAuthenticatedExtendedCard`).
    ExtendedCard,
    /// Anything else: not about a message or one task.
    Other,
}

impl CallKind {
    /// Whether the call sends a message.
    pub fn sends_message(self) -> bool {
        matches!(self, CallKind::Send | CallKind::Stream)
    }

    /// Whether the call names one task in `params.id`.
    pub fn names_task(self) -> bool {
        matches!(self, CallKind::GetTask | CallKind::CancelTask | CallKind::SubscribeToTask)
    }
}

/// A parsed JSON-RPC request.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The request `id` (echoed in the answer).
    pub id: Value,
    /// Protocol version.
    pub version: Version,
    /// What it does.
    pub kind: CallKind,
    /// The whole request, for rewriting.
    pub body: Map<String, Value>,
}

/// Why a body is not an acceptable call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// JSON-RPC error code.
    pub code: i64,
    /// Message for the client.
    pub message: String,
    /// The request id when it could be read.
    pub id: Value,
}

impl RpcError {
    fn new(code: i64, message: &str, id: Value) -> Self {
        Self { code, message: message.to_string(), id }
    }
}

/// Parses a JSON-RPC request body.
pub fn parse_call(body: &[u8], a2a_version_header: Option<&str>) -> Result<Call, RpcError> {
    let value: Value = crate::strict_json::parse(body).map_err(|_| {
        RpcError::new(
            PARSE_ERROR,
            "Parse error: the body is not valid JSON, or names an object member twice",
            Value::Null,
        )
    })?;
    let Value::Object(object) = value else {
        return Err(RpcError::new(
            INVALID_REQUEST,
            "Invalid Request: not a JSON-RPC request object",
            Value::Null,
        ));
    };
    let id = match object.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => id.clone(),
        None => Value::Null,
        Some(_) => {
            return Err(RpcError::new(
                INVALID_REQUEST,
                "Invalid Request: id must be a string or number",
                Value::Null,
            ));
        }
    };
    if object.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err(RpcError::new(INVALID_REQUEST, "Invalid Request: jsonrpc must be \"2.0\"", id));
    }
    let Some(Value::String(method)) = object.get("method") else {
        return Err(RpcError::new(INVALID_REQUEST, "Invalid Request: no method", id));
    };
    let (kind, version) = match method.as_str() {
        "message/send" => (CallKind::Send, Version::V03),
        "message/stream" => (CallKind::Stream, Version::V03),
        "SendMessage" => (CallKind::Send, Version::V10),
        "SendStreamingMessage" => (CallKind::Stream, Version::V10),
        "tasks/get" => (CallKind::GetTask, Version::V03),
        "tasks/cancel" => (CallKind::CancelTask, Version::V03),
        "tasks/resubscribe" => (CallKind::SubscribeToTask, Version::V03),
        "agent/getAuthenticatedExtendedCard" => (CallKind::ExtendedCard, Version::V03),
        "GetTask" => (CallKind::GetTask, Version::V10),
        "CancelTask" => (CallKind::CancelTask, Version::V10),
        "SubscribeToTask" => (CallKind::SubscribeToTask, Version::V10),
        "GetExtendedAgentCard" => (CallKind::ExtendedCard, Version::V10),
        other => {
            let v10 = a2a_version_header.is_some_and(|v| v.trim().starts_with('1'))
                || other.chars().next().is_some_and(char::is_uppercase);
            (CallKind::Other, if v10 { Version::V10 } else { Version::V03 })
        }
    };
    if kind.sends_message() {
        let message = object.get("params").and_then(|p| p.get("message"));
        let valid =
            message.and_then(Value::as_object).is_some_and(|m| m.get("parts").is_some_and(Value::is_array));
        if !valid {
            return Err(RpcError::new(
                INVALID_PARAMS,
                "Invalid params: params.message with parts is required",
                id,
            ));
        }
    }
    Ok(Call { id, version, kind, body: object })
}

impl Call {
    /// `params.message`.
    pub fn message(&self) -> Option<&Map<String, Value>> {
        self.body.get("params")?.get("message")?.as_object()
    }

    fn message_mut(&mut self) -> Option<&mut Map<String, Value>> {
        self.body.get_mut("params")?.get_mut("message")?.as_object_mut()
    }

    /// The message's `taskId`, if it continues a task.
    pub fn task_id(&self) -> Option<&str> {
        self.message()?.get("taskId")?.as_str()
    }

    /// The task a task call names (`params.id`).
    pub fn named_task(&self) -> Option<&str> {
        if !self.kind.names_task() {
            return None;
        }
        self.body.get("params")?.get("id")?.as_str()
    }

    /// Whether the call answers with an event stream.
    pub fn streams(&self) -> bool {
        matches!(self.kind, CallKind::Stream | CallKind::SubscribeToTask)
    }

    /// The message's `contextId`.
    pub fn context_id(&self) -> Option<&str> {
        self.message()?.get("contextId")?.as_str()
    }

    /// The values at `pointer` in every data part that has it (an agent may
    /// act on any part, whatever its position or `kind`).
    pub fn data_at<'a>(&'a self, pointer: &'a str) -> impl Iterator<Item = &'a Value> {
        self.data_parts().filter_map(move |data| data.pointer(pointer))
    }

    /// The values at `pointer` in the message's metadata and the request's
    /// (`params.metadata`), where an agent may read either.
    pub fn metadata_at<'a>(&'a self, pointer: &'a str) -> impl Iterator<Item = &'a Value> {
        let message = self.message().and_then(|m| m.get("metadata"));
        let request = self.body.get("params").and_then(|p| p.get("metadata"));
        message.into_iter().chain(request).filter_map(move |metadata| metadata.pointer(pointer))
    }

    fn data_parts(&self) -> impl Iterator<Item = &Value> {
        self.message()
            .and_then(|m| m.get("parts"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|part| part.get("data"))
    }

    /// Every credential object in the message: in data parts, and in the
    /// message metadata.
    pub fn credentials(&self) -> Vec<&Map<String, Value>> {
        let mut found: Vec<&Map<String, Value>> =
            self.data_parts().filter_map(|data| data.get(CREDENTIALS_KEY)?.as_object()).collect();
        if let Some(in_metadata) = self
            .message()
            .and_then(|m| m.get("metadata"))
            .and_then(|m| m.get(CREDENTIALS_KEY))
            .and_then(Value::as_object)
        {
            found.push(in_metadata);
        }
        found
    }

    /// Whether any `auth_credentials` member is present (of any type).
    pub fn mentions_credentials(&self) -> bool {
        self.data_parts().any(|data| data.get(CREDENTIALS_KEY).is_some())
            || self
                .message()
                .and_then(|m| m.get("metadata"))
                .is_some_and(|m| m.get(CREDENTIALS_KEY).is_some())
    }

    /// Removes every credential from the message so none reaches the agent.
    /// A data part holding only the credential is dropped; if that leaves
    /// no part, a text part says the gateway took the credential (agents
    /// reject messages without parts).
    pub fn strip_credentials(&mut self) {
        let version = self.version;
        let Some(message) = self.message_mut() else {
            return;
        };
        if let Some(Value::Object(metadata)) = message.get_mut("metadata") {
            metadata.remove(CREDENTIALS_KEY);
        }
        if let Some(Value::Array(parts)) = message.get_mut("parts") {
            parts.retain_mut(|part| {
                let Some(Value::Object(data)) = part.get_mut("data") else {
                    return true;
                };
                if data.remove(CREDENTIALS_KEY).is_none() {
                    return true;
                }
                !data.is_empty()
            });
            if parts.is_empty() {
                parts.push(text_part(version, "Authorization was provided to the gateway."));
            }
        }
    }

    /// The request as bytes (after rewriting).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).unwrap_or_default()
    }
}

fn text_part(version: Version, text: &str) -> Value {
    match version {
        Version::V03 => json!({"kind": "text", "text": text}),
        Version::V10 => json!({"text": text}),
    }
}

fn data_part(version: Version, data: Value) -> Value {
    match version {
        Version::V03 => json!({"kind": "data", "data": data}),
        Version::V10 => json!({"data": data}),
    }
}

/// The ids of the task a challenge is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIds {
    /// Task id.
    pub task_id: String,
    /// Context id.
    pub context_id: String,
}

/// The task status of an auth-required answer, with its message.
fn auth_required_status(
    version: Version,
    ids: &TaskIds,
    message_id: &str,
    text: &str,
    challenge: Value,
    timestamp: &str,
) -> Value {
    let parts = vec![text_part(version, text), data_part(version, json!({"authChallenge": challenge}))];
    let state = match version {
        Version::V03 => "auth-required",
        Version::V10 => "TASK_STATE_AUTH_REQUIRED",
    };
    json!({"state": state, "message": agent_message(version, ids, message_id, parts), "timestamp": timestamp})
}

/// A message of the agent's (written by the gateway) within task `ids`.
fn agent_message(version: Version, ids: &TaskIds, message_id: &str, parts: Vec<Value>) -> Value {
    match version {
        Version::V03 => json!({"kind": "message", "role": "agent", "messageId": message_id,
                               "taskId": ids.task_id, "contextId": ids.context_id, "parts": parts}),
        Version::V10 => json!({"role": "ROLE_AGENT", "messageId": message_id,
                               "taskId": ids.task_id, "contextId": ids.context_id, "parts": parts}),
    }
}

/// An auth-required answer: the JSON-RPC response for a send call, or the
/// single final event of an event stream for a streaming call.
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    /// The JSON-RPC `result`.
    pub result: Value,
    /// Whether to answer as `text/event-stream`.
    pub stream: bool,
}

/// Builds the auth-required answer to `call`.
pub fn challenge_answer(
    call: &Call,
    ids: &TaskIds,
    message_id: &str,
    text: &str,
    challenge: Value,
    timestamp: &str,
) -> Challenge {
    let status = auth_required_status(call.version, ids, message_id, text, challenge, timestamp);
    let stream = call.kind == CallKind::Stream;
    let result = match (call.version, stream) {
        (Version::V03, false) => {
            json!({"kind": "task", "id": ids.task_id, "contextId": ids.context_id, "status": status})
        }
        (Version::V10, false) => {
            json!({"task": {"id": ids.task_id, "contextId": ids.context_id, "status": status}})
        }
        (Version::V03, true) => {
            json!({"kind": "status-update", "taskId": ids.task_id, "contextId": ids.context_id,
                                      "status": status, "final": true})
        }
        (Version::V10, true) => {
            json!({"statusUpdate": {"taskId": ids.task_id, "contextId": ids.context_id, "status": status}})
        }
    };
    Challenge { result, stream }
}

/// The body of a JSON-RPC response.
pub fn response_body(id: &Value, result: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

/// The body of an event stream holding one event.
pub fn event_stream_body(id: &Value, result: &Value) -> String {
    format!("data: {}\n\n", response_body(id, result))
}

/// HTTP status of a JSON-RPC result the gateway answers.
pub const RESULT_STATUS: u16 = 200;

/// A JSON-RPC result as an answer with HTTP `status`: one response, or an
/// event stream of one event; never cached.
pub fn result_reply(status: u16, id: &Value, result: &Value, stream: bool) -> Reply {
    let (content_type, body) = if stream {
        ("text/event-stream", event_stream_body(id, result))
    } else {
        ("application/json", response_body(id, result))
    };
    Reply {
        status,
        headers: vec![("content-type", content_type.into()), ("cache-control", "no-store".into())],
        body,
    }
}

/// The body of a JSON-RPC error response.
pub fn error_body(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// JSON-RPC error answers.
pub trait RpcReply {
    /// A JSON-RPC error with HTTP `status`, not cached.
    fn rpc_error(status: u16, id: &Value, code: i64, message: &str) -> Self;
}

impl RpcReply for Reply {
    fn rpc_error(status: u16, id: &Value, code: i64, message: &str) -> Self {
        Reply {
            status,
            headers: vec![("content-type", "application/json".into()), ("cache-control", "no-store".into())],
            body: error_body(id, code, message),
        }
    }
}

/// Where an answer or event speaks of a task: which task, in which state,
/// and where its status stands in the JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEvent {
    /// The task and context.
    pub ids: TaskIds,
    /// Protocol version of the answer.
    pub version: Version,
    /// The task's state, when the answer carries a status.
    pub state: Option<String>,
    /// Whether the status message carries `authChallenge.authorizationUrl`.
    pub has_url: bool,
    /// JSON Pointer of the object holding `status`.
    holder: &'static str,
}

/// States after which a task takes no more messages (both versions; the
/// SDK has written `CANCELLED` too).
const FINAL_STATES: [&str; 9] = [
    "completed",
    "canceled",
    "failed",
    "rejected",
    "TASK_STATE_COMPLETED",
    "TASK_STATE_CANCELED",
    "TASK_STATE_CANCELLED",
    "TASK_STATE_FAILED",
    "TASK_STATE_REJECTED",
];

impl TaskEvent {
    /// The task is over.
    pub fn is_final(&self) -> bool {
        self.state.as_deref().is_some_and(|state| FINAL_STATES.contains(&state))
    }

    /// The agent asks for authorization without saying where to get it.
    pub fn needs_challenge(&self) -> bool {
        matches!(self.state.as_deref(), Some("auth-required" | "TASK_STATE_AUTH_REQUIRED")) && !self.has_url
    }
}

/// The task a JSON-RPC answer or stream event speaks of: a task (v1.0
/// `{"task"}` or a bare task from `GetTask`; v0.3 `kind: task`), a status
/// or artifact update, or a message within a task.
pub fn task_event(response: &Value) -> Option<TaskEvent> {
    let result = response.get("result")?;
    let (holder, object, version, id_field) = if let Some(task) = result.get("task") {
        ("/result/task", task, Version::V10, "id")
    } else if let Some(update) = result.get("statusUpdate") {
        ("/result/statusUpdate", update, Version::V10, "taskId")
    } else if let Some(update) = result.get("artifactUpdate") {
        ("/result/artifactUpdate", update, Version::V10, "taskId")
    } else if let Some(message) = result.get("message") {
        ("/result/message", message, Version::V10, "taskId")
    } else {
        match result.get("kind").and_then(Value::as_str) {
            Some("task") => ("/result", result, Version::V03, "id"),
            Some("status-update" | "artifact-update" | "message") => {
                ("/result", result, Version::V03, "taskId")
            }
            None if result.get("status").is_some() => ("/result", result, Version::V10, "id"),
            _ => return None,
        }
    };
    let status = object.get("status");
    let has_url = status
        .and_then(|status| status.get("message"))
        .and_then(|message| message.get("parts"))
        .and_then(Value::as_array)
        .is_some_and(|parts| {
            parts.iter().any(|part| {
                part.pointer("/data/authChallenge/authorizationUrl").is_some_and(Value::is_string)
            })
        });
    Some(TaskEvent {
        ids: TaskIds {
            task_id: object.get(id_field)?.as_str()?.to_string(),
            context_id: object.get("contextId").and_then(Value::as_str).unwrap_or("").to_string(),
        },
        version,
        state: status.and_then(|status| status.get("state")).and_then(Value::as_str).map(str::to_string),
        has_url,
        holder,
    })
}

/// An agent's auth-required answer or event that says nothing of where to
/// authorize.
pub fn agent_challenge(response: &Value) -> Option<TaskEvent> {
    task_event(response).filter(TaskEvent::needs_challenge)
}

/// Adds the challenge to an agent's auth-required task or status update
/// (found by [`task_event`]): a data part in the status message, which is
/// created (or given a list of parts) when the agent sent none.
pub fn enrich_agent_challenge(response: &mut Value, found: &TaskEvent, message_id: &str, challenge: Value) {
    let Some(Value::Object(holder)) = response.pointer_mut(found.holder) else {
        return;
    };
    let Some(Value::Object(status)) = holder.get_mut("status") else {
        return;
    };
    if !status.get("message").is_some_and(Value::is_object) {
        status.insert("message".into(), agent_message(found.version, &found.ids, message_id, Vec::new()));
    }
    // Likewise a message without a list of parts (malformed, but agents
    // send them) gets one: otherwise the challenge would be dropped while
    // the gateway had issued a state for it.
    if let Some(Value::Object(message)) = status.get_mut("message")
        && !message.get("parts").is_some_and(Value::is_array)
    {
        message.insert("parts".into(), Value::Array(Vec::new()));
    }
    if let Some(Value::Array(parts)) = status.get_mut("message").and_then(|m| m.get_mut("parts")) {
        // Drop an incomplete challenge the agent may have sent.
        parts.retain(|part| part.pointer("/data/authChallenge").is_none());
        parts.push(data_part(found.version, json!({"authChallenge": challenge})));
    }
}

/// The state of a task the gateway named, as `GetTask` and `CancelTask`
/// answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayTaskState {
    /// Waiting for the user's authorization (or for the message that
    /// continues the task once authorized).
    AuthRequired,
    /// Canceled by the user.
    Canceled,
}

/// A task the gateway named, as the protocol's task object: for `GetTask`
/// and `CancelTask` (the `result`), and `SubscribeToTask` (its one event).
pub fn gateway_task(
    call: &Call,
    ids: &TaskIds,
    state: GatewayTaskState,
    message: Option<(&str, &str, Option<Value>)>,
    timestamp: &str,
) -> Value {
    let state_name = match (state, call.version) {
        (GatewayTaskState::AuthRequired, Version::V03) => "auth-required",
        (GatewayTaskState::AuthRequired, Version::V10) => "TASK_STATE_AUTH_REQUIRED",
        (GatewayTaskState::Canceled, Version::V03) => "canceled",
        (GatewayTaskState::Canceled, Version::V10) => "TASK_STATE_CANCELED",
    };
    let mut status = json!({"state": state_name, "timestamp": timestamp});
    if let (GatewayTaskState::AuthRequired, Some((message_id, text, challenge))) = (state, message) {
        let mut parts = vec![text_part(call.version, text)];
        if let Some(challenge) = challenge {
            parts.push(data_part(call.version, json!({"authChallenge": challenge})));
        }
        status["message"] = agent_message(call.version, ids, message_id, parts);
    }
    let task = json!({"id": ids.task_id, "contextId": ids.context_id, "status": status});
    match (call.version, call.kind) {
        (Version::V03, _) => {
            let mut task = task;
            task["kind"] = json!("task");
            task
        }
        // A v1.0 stream event wraps the task; GetTask's result is the task.
        (Version::V10, CallKind::SubscribeToTask) => json!({"task": task}),
        (Version::V10, _) => task,
    }
}

#[cfg(test)]
#[path = "a2a_tests.rs"]
mod tests;
