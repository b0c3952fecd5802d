//! Test-only admin endpoints under `/admin`, for the standalone binary and
//! demos. They mirror `MockIdp`'s methods; a real IdP has nothing like them.
//!
//! - `POST /admin/rotate?alg=ES256` → `{"kid": ...}`
//! - `POST /admin/retire?kid=...` → `{"retired": true|false}`
//! - `POST /admin/faults` with `{"endpoint":"token","fault":"status","status":503,"times":2}`
//!   (kinds: `delay` + `delay_ms`, `status` + `status`, `html`, `malformed_json`,
//!   `close`, `truncated`, `json` + `json`, `oversized` + `bytes`)
//! - `DELETE /admin/faults`
//! - `GET /admin/calls` → `{"discovery": n, "jwks": n, ...}`; `DELETE /admin/calls` resets
//! - `GET /admin/token-requests` → the recorded token requests
//! - `POST /admin/mint` with `{"sub", "aud", "ttl_secs"?, "alg"?, "claims"?, "header"?}` → `{"token": ...}`

use http_kit::{Request, Response};
use serde_json::{Value, json};

use crate::faults::{Endpoint, parse_fault_request};
use crate::keys::KeyAlg;
use crate::state::{IdpState, lock};

pub(crate) fn handle(state: &IdpState, request: &Request) -> Response {
    let bad_request = |why: &str| Response::json(400, &json!({"error": why}));
    let method = request.method.to_ascii_uppercase();
    match (method.as_str(), request.path()) {
        ("POST", "/admin/rotate") => {
            let alg_name = request.query_param("alg").unwrap_or_else(|| "ES256".to_string());
            let rotated = alg_name.parse::<KeyAlg>().and_then(|alg| lock(&state.keys).rotate(alg));
            match rotated {
                Ok(kid) => Response::json(200, &json!({"kid": kid})),
                Err(error) => bad_request(&error.to_string()),
            }
        }
        ("POST", "/admin/retire") => {
            let Some(kid) = request.query_param("kid") else {
                return bad_request("missing kid");
            };
            Response::json(200, &json!({"retired": lock(&state.keys).retire(&kid)}))
        }
        ("POST", "/admin/faults") => {
            let parsed = serde_json::from_slice::<Value>(&request.body)
                .map_err(|e| e.to_string())
                .and_then(|body| parse_fault_request(&body));
            match parsed {
                Ok(armed) => {
                    lock(&state.faults).arm(armed.endpoint, armed.fault, armed.times);
                    Response::empty(204)
                }
                Err(why) => bad_request(&why),
            }
        }
        ("DELETE", "/admin/faults") => {
            lock(&state.faults).clear();
            Response::empty(204)
        }
        ("GET", "/admin/calls") => {
            let faults = lock(&state.faults);
            let counts: serde_json::Map<String, Value> =
                Endpoint::ALL.into_iter().map(|e| (e.as_str().to_string(), json!(faults.calls(e)))).collect();
            Response::json(200, &Value::Object(counts))
        }
        ("DELETE", "/admin/calls") => {
            lock(&state.faults).reset_calls();
            Response::empty(204)
        }
        ("GET", "/admin/token-requests") => {
            let log = lock(&state.token_log).clone();
            Response::json(200, &serde_json::to_value(log).unwrap_or_default())
        }
        ("POST", "/admin/mint") => match mint(state, &request.body) {
            Ok(token) => Response::json(200, &json!({"token": token})),
            Err(why) => bad_request(&why),
        },
        _ => Response::json(404, &json!({"error": "unknown admin endpoint"})),
    }
}

fn mint(state: &IdpState, body: &[u8]) -> Result<String, String> {
    let body: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let sub = body.get("sub").and_then(Value::as_str).ok_or("missing sub")?;
    let aud = body.get("aud").cloned().ok_or("missing aud")?;
    let ttl = body.get("ttl_secs").and_then(Value::as_i64).unwrap_or(300);
    let alg = body.get("alg").and_then(Value::as_str).unwrap_or("ES256");
    let mut claims = state.standard_claims(sub, aud, ttl);
    if let (Some(Value::Object(extra)), Value::Object(target)) = (body.get("claims"), &mut claims) {
        target.extend(extra.clone());
    }
    let header = body.get("header").cloned().unwrap_or_else(|| json!({}));
    state.mint_with(alg, &header, &claims).map_err(|e| e.to_string())
}
