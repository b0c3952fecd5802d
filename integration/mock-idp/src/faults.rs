//! Injected failures per endpoint, and per-endpoint call counters.

use core::time::Duration;
use std::collections::HashMap;

use http_kit::{Reply, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An IdP endpoint that can be counted and faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// Both discovery documents.
    Discovery,
    /// `/jwks`.
    Jwks,
    /// `/authorize`.
    Authorize,
    /// `/token`.
    Token,
    /// `/userinfo`.
    Userinfo,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 5] =
        [Endpoint::Discovery, Endpoint::Jwks, Endpoint::Authorize, Endpoint::Token, Endpoint::Userinfo];

    /// The snake_case name used by the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Discovery => "discovery",
            Endpoint::Jwks => "jwks",
            Endpoint::Authorize => "authorize",
            Endpoint::Token => "token",
            Endpoint::Userinfo => "userinfo",
        }
    }

    fn parse(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// What a faulted endpoint serves instead of (or before) its normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Wait, then answer normally.
    Delay(Duration),
    /// This status with an RFC 6749 JSON error body
    /// (`temporarily_unavailable` for 503 and 429, else `server_error`).
    Status(u16),
    /// 200 with an HTML page, as a misconfigured proxy or login page would.
    Html,
    /// 200 `application/json` whose body is not valid JSON.
    MalformedJson,
    /// Close the connection without answering.
    Close,
    /// The normal answer with its full content-length but half the body.
    Truncated,
    /// 200 `application/json` with exactly this value.
    Json(Value),
    /// 200 `application/json`, syntactically valid, of exactly this many bytes.
    Oversized(usize),
}

impl Fault {
    /// The admin API name of this kind of fault.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Delay(_) => "delay",
            Fault::Status(_) => "status",
            Fault::Html => "html",
            Fault::MalformedJson => "malformed_json",
            Fault::Close => "close",
            Fault::Truncated => "truncated",
            Fault::Json(_) => "json",
            Fault::Oversized(_) => "oversized",
        }
    }

    /// Whether serving this fault still runs the endpoint's normal handler.
    pub(crate) fn runs_handler(&self) -> bool {
        matches!(self, Fault::Delay(_) | Fault::Truncated)
    }

    /// The reply for this fault; `normal` produces the regular answer.
    pub(crate) fn reply(&self, normal: impl FnOnce() -> Response) -> Reply {
        match self {
            Fault::Delay(delay) => Reply::Delayed(*delay, normal()),
            Fault::Status(status) => {
                let error =
                    if matches!(status, 503 | 429) { "temporarily_unavailable" } else { "server_error" };
                Reply::Respond(
                    Response::json(
                        *status,
                        &json!({"error": error, "error_description": format!("injected fault: status {status}")}),
                    )
                    .with_header("cache-control", "no-store"),
                )
            }
            Fault::Html => Reply::Respond(Response::new(
                200,
                "text/html; charset=utf-8",
                "<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Please sign in</h1></body></html>",
            )),
            Fault::MalformedJson => Reply::Respond(Response::new(
                200,
                "application/json",
                r#"{"access_token": "eyJ", "token_type": "Bearer", "expires_in": 3"#,
            )),
            Fault::Close => Reply::Close,
            Fault::Truncated => Reply::Truncated(normal()),
            Fault::Json(value) => Reply::Respond(Response::json(200, value)),
            Fault::Oversized(size) => {
                Reply::Respond(Response::new(200, "application/json", padded_json(*size)))
            }
        }
    }
}

/// A JSON document of exactly `size` bytes (whitespace when too small for an object).
fn padded_json(size: usize) -> Vec<u8> {
    const FRAME: &str = r#"{"padding":""}"#;
    if size < FRAME.len() {
        return vec![b' '; size];
    }
    format!(r#"{{"padding":"{}"}}"#, "x".repeat(size - FRAME.len())).into_bytes()
}

#[derive(Debug)]
struct ArmedFault {
    fault: Fault,
    remaining: Option<u32>,
}

/// Armed faults and call counters of one IdP.
#[derive(Debug, Default)]
pub(crate) struct FaultTable {
    armed: HashMap<Endpoint, ArmedFault>,
    calls: HashMap<Endpoint, u64>,
}

impl FaultTable {
    pub(crate) fn arm(&mut self, endpoint: Endpoint, fault: Fault, times: Option<u32>) {
        if times == Some(0) {
            self.armed.remove(&endpoint);
            return;
        }
        self.armed.insert(endpoint, ArmedFault { fault, remaining: times });
    }

    pub(crate) fn clear(&mut self) {
        self.armed.clear();
    }

    /// Counts a call, then takes one use of the endpoint's fault, if any.
    pub(crate) fn on_call(&mut self, endpoint: Endpoint) -> Option<Fault> {
        *self.calls.entry(endpoint).or_default() += 1;
        let armed = self.armed.get_mut(&endpoint)?;
        let fault = armed.fault.clone();
        if let Some(remaining) = &mut armed.remaining {
            *remaining -= 1;
            if *remaining == 0 {
                self.armed.remove(&endpoint);
            }
        }
        Some(fault)
    }

    pub(crate) fn calls(&self, endpoint: Endpoint) -> u64 {
        self.calls.get(&endpoint).copied().unwrap_or(0)
    }

    pub(crate) fn reset_calls(&mut self) {
        self.calls.clear();
    }
}

/// A fault as set through `POST /admin/faults`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FaultRequest {
    pub endpoint: Endpoint,
    pub fault: Fault,
    pub times: Option<u32>,
}

/// Parses `{"endpoint":"token","fault":"status","status":503,"times":2}`.
/// Kinds: `delay` (`delay_ms`), `status` (`status`), `html`,
/// `malformed_json`, `close`, `truncated`, `json` (`json`), `oversized` (`bytes`).
pub(crate) fn parse_fault_request(body: &Value) -> Result<FaultRequest, String> {
    let field = |name: &str| body.get(name).ok_or_else(|| format!("missing \"{name}\""));
    let number = |name: &str| {
        field(name)?.as_u64().ok_or_else(|| format!("\"{name}\" must be a non-negative integer"))
    };
    let endpoint_name = field("endpoint")?.as_str().unwrap_or_default();
    let endpoint =
        Endpoint::parse(endpoint_name).ok_or_else(|| format!("unknown endpoint {endpoint_name:?}"))?;
    let fault = match field("fault")?.as_str().unwrap_or_default() {
        "delay" => Fault::Delay(Duration::from_millis(number("delay_ms")?)),
        "status" => Fault::Status(u16::try_from(number("status")?).map_err(|e| e.to_string())?),
        "html" => Fault::Html,
        "malformed_json" => Fault::MalformedJson,
        "close" => Fault::Close,
        "truncated" => Fault::Truncated,
        "json" => Fault::Json(field("json")?.clone()),
        "oversized" => Fault::Oversized(usize::try_from(number("bytes")?).map_err(|e| e.to_string())?),
        other => return Err(format!("unknown fault {other:?}")),
    };
    let times = match body.get("times") {
        None | Some(Value::Null) => None,
        Some(_) => Some(u32::try_from(number("times")?).map_err(|e| e.to_string())?),
    };
    Ok(FaultRequest { endpoint, fault, times })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_faults_expire_and_calls_are_counted() {
        let mut table = FaultTable::default();
        table.arm(Endpoint::Token, Fault::Close, Some(2));
        assert_eq!(table.on_call(Endpoint::Token), Some(Fault::Close));
        assert_eq!(table.on_call(Endpoint::Jwks), None);
        assert_eq!(table.on_call(Endpoint::Token), Some(Fault::Close));
        assert_eq!(table.on_call(Endpoint::Token), None);
        assert_eq!(table.calls(Endpoint::Token), 3);
        table.reset_calls();
        assert_eq!(table.calls(Endpoint::Token), 0);
    }

    #[test]
    fn oversized_json_has_exact_length_and_parses() {
        let body = padded_json(100);
        assert_eq!(body.len(), 100);
        assert!(serde_json::from_slice::<Value>(&body).is_ok());
        assert_eq!(padded_json(3), b"   ");
    }

    #[test]
    fn admin_fault_json() {
        let parsed =
            parse_fault_request(&json!({"endpoint":"token","fault":"status","status":503,"times":2}))
                .unwrap();
        assert_eq!(
            parsed,
            FaultRequest { endpoint: Endpoint::Token, fault: Fault::Status(503), times: Some(2) }
        );
        let delay = parse_fault_request(&json!({"endpoint":"jwks","fault":"delay","delay_ms":1500})).unwrap();
        assert_eq!(delay.fault, Fault::Delay(Duration::from_millis(1500)));
        assert_eq!(delay.times, None);
        assert!(parse_fault_request(&json!({"endpoint":"nope","fault":"close"})).is_err());
        assert!(parse_fault_request(&json!({"endpoint":"token","fault":"status"})).is_err());
    }
}
