//! The Portfolio Agent of the demo: it trusts the Envoy in front of it for
//! the token's validity and answers only with the portfolio of the user the
//! token names (`sub`), whatever the request asks for. Served on
//! `/portfolio/holdings` by `make demo` and by `echo-backend --portfolio`.

use http_kit::{Reply, Request, Response};

use crate::{echo, jwt_payload};
use serde_json::{Value, json};

/// Holdings per user.
fn holdings(user: &str) -> Option<Value> {
    match user {
        "alice" => Some(json!([{"symbol": "ACME", "shares": 120}, {"symbol": "GLOBX", "shares": 40}])),
        "bob" => Some(json!([{"symbol": "INITECH", "shares": 300}])),
        _ => None,
    }
}

/// `GET /portfolio/holdings[?user=…]`.
pub fn reply(request: &Request) -> Reply {
    let claims = request.bearer_token().and_then(jwt_payload).unwrap_or(Value::Null);
    let Some(user) = claims["sub"].as_str().filter(|_| claims["aud"] == "portfolio-agent") else {
        return Reply::Respond(Response::json(401, &json!({"error": "no token for the Portfolio Agent"})));
    };
    if request.query_param("user").is_some_and(|asked| asked != user) {
        return Reply::Respond(Response::json(
            403,
            &json!({"error": "a user sees only their own portfolio"}),
        ));
    }
    let mut body = echo(request);
    body["portfolio"] = json!({"user": user, "holdings": holdings(user).unwrap_or(json!([]))});
    Reply::Respond(Response::json(200, &body))
}
