//! The OAuth redirect the filter serves (`callbackPath`): the user's
//! browser arrives with `code` and `state` after authorizing at the
//! secondary IdP; the filter exchanges the code itself (with the PKCE
//! verifier only it knows), validates the token and keeps it for the user's
//! task, so the next message of that task carries it with nothing in the body.

use baton_filter_kit::audit::AuditLine;
use baton_filter_kit::host::Host;
use baton_token::TokenHash;
use serde_json::json;

use crate::decision::{
    Engine, ExchangeOutcome, MAX_ROUNDS, Refusal, Reply, Request, Round, Verdict, code_exchange,
};
use crate::metrics;
use crate::store::TaskRecord;

/// Decides a request to the callback path.
pub fn decide(engine: &mut Engine, host: &dyn Host, request: &Request, round: Round<'_>) -> Verdict {
    let mut audit = AuditLine::new(engine.config.audit_log);
    audit.set("callback", "redirect");
    let json = request.accept.as_deref().is_some_and(|accept| accept.contains("application/json"));
    if request.method != "GET" {
        return reply(
            host,
            &mut audit,
            json,
            405,
            "method_not_allowed",
            "The authorization callback only accepts GET.",
        );
    }
    let query = request.path.split_once('?').map_or("", |(_, query)| query);
    let params = parse_query(query);
    let single = |name: &str| {
        let mut values = params.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (Some(value), None) => Ok(Some(value)),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(()),
        }
    };
    let (Ok(code), Ok(state), Ok(error)) = (single("code"), single("state"), single("error")) else {
        host.count(metrics::STATE_MISUSE);
        return reply(
            host,
            &mut audit,
            json,
            400,
            "duplicate_parameters",
            "The callback carries a parameter twice.",
        );
    };
    let Some(state) = state.filter(|s| !s.is_empty() && s.len() <= 256) else {
        host.count(metrics::STATE_MISUSE);
        return reply(host, &mut audit, json, 400, "state_missing", "The callback has no valid state.");
    };
    audit.token_as("state", &TokenHash::of(state.as_bytes()));
    let key = TokenHash::of(state.as_bytes());

    match round.outcome_for(&key) {
        Some(ExchangeOutcome::Token(token)) => {
            let Some(pending) = engine.store.peek_state(host, state) else {
                return reply(
                    host,
                    &mut audit,
                    json,
                    400,
                    "state_unknown",
                    "The authorization request is unknown.",
                );
            };
            audit.set("user", &pending.user).set("task", &pending.task_id);
            match engine.accept_token(host, token, round) {
                Ok(expires_at) => {
                    let gateway_task = engine
                        .store
                        .task(host, &pending.user, &pending.task_id)
                        .is_some_and(|record| record.gateway_task);
                    engine.store.put_task(
                        host,
                        &TaskRecord {
                            user: pending.user.clone(),
                            task_id: pending.task_id.clone(),
                            gateway_task,
                            token: Some(token.expose().to_string()),
                            expires_at,
                        },
                    );
                    audit.token_as("secondary", &TokenHash::of(token.expose().as_bytes()));
                    audit.allow("authorized").emit(host);
                    let body = if json {
                        json!({"status": "authorized", "taskId": pending.task_id, "contextId": pending.context_id}).to_string()
                    } else {
                        page("Authorization complete", "You may return to your agent: the task can continue.")
                    };
                    Verdict::Reply(Reply { status: 200, headers: content_headers(json), body })
                }
                Err(Refusal::AwaitKeys(provider)) if round.number < MAX_ROUNDS => {
                    Verdict::AwaitKeys(provider)
                }
                Err(Refusal::AwaitKeys(_) | Refusal::KeysUnavailable) => {
                    host.count(metrics::IDP_UNAVAILABLE);
                    reply(
                        host,
                        &mut audit,
                        json,
                        503,
                        "keys_unavailable",
                        "The authorization could not be checked; try again shortly.",
                    )
                }
                Err(Refusal::Invalid { reason, description }) => {
                    host.count(metrics::VALIDATION_FAILURES);
                    audit.set("refused", &reason);
                    reply(
                        host,
                        &mut audit,
                        json,
                        400,
                        "token_refused",
                        &format!("The authorization was not accepted: {description}."),
                    )
                }
            }
        }
        Some(ExchangeOutcome::Refused(why)) => {
            audit.set("exchange", why);
            reply(
                host,
                &mut audit,
                json,
                400,
                "code_refused",
                "The authorization code was refused; authorize again.",
            )
        }
        Some(ExchangeOutcome::Unavailable(why)) => {
            host.count(metrics::IDP_UNAVAILABLE);
            audit.set("exchange", why);
            reply(
                host,
                &mut audit,
                json,
                503,
                "idp_unavailable",
                // The state is used up: only a new authorization can work.
                "The authorization server could not be reached; start the authorization again from the agent.",
            )
        }
        None => {
            // First pass: the state is used now, whatever happens next.
            let pending = match engine.store.consume_state(host, state) {
                Ok(pending) => pending,
                Err(problem) => {
                    host.count(metrics::STATE_MISUSE);
                    return reply(
                        host,
                        &mut audit,
                        json,
                        400,
                        problem.reason(),
                        "The authorization request is unknown, expired or already used.",
                    );
                }
            };
            audit.set("user", &pending.user).set("task", &pending.task_id);
            if let Some(error) = error {
                let error: String =
                    error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
                audit.set("idp_error", &error);
                return reply(
                    host,
                    &mut audit,
                    json,
                    400,
                    "authorization_denied",
                    &format!("The authorization was not granted ({error})."),
                );
            }
            let Some(code) = code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
                return reply(host, &mut audit, json, 400, "code_missing", "The callback has no valid code.");
            };
            Verdict::AwaitToken(Box::new(code_exchange(&engine.config, state, code, &pending.verifier)))
        }
    }
}

fn reply(
    host: &dyn Host,
    audit: &mut AuditLine,
    json: bool,
    status: u16,
    reason: &str,
    message: &str,
) -> Verdict {
    audit.deny(status, reason).emit(host);
    let body = if json {
        json!({"error": reason, "error_description": message}).to_string()
    } else {
        page("Authorization failed", message)
    };
    Verdict::Reply(Reply { status, headers: content_headers(json), body })
}

fn content_headers(json: bool) -> Vec<(&'static str, String)> {
    let content_type = if json { "application/json" } else { "text/html; charset=utf-8" };
    vec![
        ("content-type", content_type.into()),
        ("cache-control", "no-store".into()),
        ("content-security-policy", "default-src 'none'".into()),
        ("referrer-policy", "no-referrer".into()),
    ]
}

/// A minimal page; its texts are the filter's own, never request data.
fn page(title: &str, message: &str) -> String {
    let escape = |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body><h1>{}</h1><p>{}</p></body></html>",
        escape(title),
        escape(title),
        escape(message)
    )
}

/// `application/x-www-form-urlencoded` query pairs, duplicates kept.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query("code=a%2Bb&state=x+y&code=z&flag"),
            [
                ("code".to_string(), "a+b".to_string()),
                ("state".into(), "x y".into()),
                ("code".into(), "z".into()),
                ("flag".into(), "".into())
            ]
        );
        assert_eq!(
            parse_query("a=%zz&b=%4"),
            [("a".to_string(), "%zz".to_string()), ("b".into(), "%4".into())]
        );
        assert!(parse_query("").is_empty());
    }

    #[test]
    fn pages_escape_their_text() {
        assert!(page("<t>", "a & b").contains("&lt;t&gt;") && page("<t>", "a & b").contains("a &amp; b"));
    }
}
