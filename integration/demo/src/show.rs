//! Printing what happened: decisions, challenges, decoded claims; never a
//! raw token.

use echo_backend::EchoBackend;
use http_kit::ClientResponse;
use mock_idp::decode_claims_unverified;
use serde_json::Value;

pub fn step(number: u32, title: &str) {
    println!("\n{number}. {title}");
}

pub fn show_claims(token: &str) {
    let Some(claims) = decode_claims_unverified(token) else {
        println!("  (token is not a JWT)");
        return;
    };
    let field = |name: &str| match &claims[name] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let lifetime = claims["exp"].as_i64().map_or(0, |exp| exp - mock_idp::now_secs());
    println!(
        "  token claims: sub={} aud={} scope=\"{}\" roles={} acr={} amr={} act={} client_id={} expires in {lifetime}s",
        field("sub"),
        field("aud"),
        field("scope"),
        field("roles"),
        field("acr"),
        field("amr"),
        field("act"),
        field("client_id")
    );
}

/// The token the upstream last received in `Authorization`, and its claims.
pub fn upstream_claims(backend: &EchoBackend) -> Option<(String, Value)> {
    let requests = backend.requests();
    let authorization = requests.last()?.header("authorization")?.to_string();
    let token = authorization.strip_prefix("Bearer ").unwrap_or(&authorization).to_string();
    let claims = decode_claims_unverified(&token)?;
    Some((token, claims))
}

/// What the upstream received in `Authorization`, decoded; and whether the
/// caller's own token got through (it must not).
pub fn show_upstream_claims(backend: &EchoBackend, callers_token: &str) {
    let requests = backend.requests();
    let Some(authorization) = requests.last().and_then(|r| r.header("authorization").map(String::from))
    else {
        println!("  backend saw no Authorization header");
        return;
    };
    let token = authorization.strip_prefix("Bearer ").unwrap_or(&authorization);
    show_claims(token);
    let leaked = requests.iter().any(|r| r.headers.iter().any(|(_, value)| value.contains(callers_token)));
    println!("  the caller's own token reached the upstream: {}", if leaked { "YES" } else { "no" });
}

pub fn show_response(response: &ClientResponse) {
    println!("  -> {} {}", response.status, http_kit::reason_phrase(response.status));
    if let Some(challenge) = response.header("www-authenticate") {
        println!("     WWW-Authenticate: {challenge}");
    }
    if response.status != 200 {
        println!("     body: {}", response.body_str());
    }
}

pub fn show_identity_seen(backend: &EchoBackend) {
    let requests = backend.requests();
    let Some(last) = requests.last() else {
        println!("  backend saw nothing");
        return;
    };
    let value = |name: &str| last.header_all(name).join(" | ");
    println!(
        "  backend saw: x-user-id={} x-user-roles={} x-client-id={} (requests so far: {})",
        value("x-user-id"),
        value("x-user-roles"),
        value("x-client-id"),
        requests.len()
    );
}

/// The same token with `sub` changed and the signature kept.
pub fn tamper(token: &str) -> String {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(signature)) = (parts.next(), parts.next(), parts.next()) else {
        return token.to_string();
    };
    let mut claims = decode_claims_unverified(token).unwrap_or(Value::Null);
    claims["sub"] = Value::from("admin");
    format!("{header}.{}.{signature}", mock_idp::b64url(claims.to_string().as_bytes()))
}
