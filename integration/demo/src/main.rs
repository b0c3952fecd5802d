//! `make demo`: the mock IdP, an echo backend and real Envoys running
//! `envoy-configs/claim-enforcement.yaml` (ingress) and
//! `envoy-configs/obo-credential-injection.yaml` (egress), and a walk through
//! the identity flows a user of Baton cares about. Prints decisions and
//! decoded claims, never a raw token, then stops everything.

use std::process::ExitCode;
use std::time::Duration;

use baton_harness::{Envoy, workspace_root};
use echo_backend::EchoBackend;
use http_kit::{ClientRequest, ClientResponse};
use mock_idp::{DEMO_REDIRECT_URI, MockIdp, MockIdpConfig, decode_claims_unverified, s256_challenge};
use serde_json::Value;

/// The ports `envoy-configs/claim-enforcement.yaml` names.
const IDP_PORT: u16 = 9000;
const BACKEND_PORT: u16 = 9001;
const CONFIG: &str = "envoy-configs/claim-enforcement.yaml";
const OBO_CONFIG: &str = "envoy-configs/obo-credential-injection.yaml";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let idp = MockIdp::start(MockIdpConfig { port: IDP_PORT, ..MockIdpConfig::default() })
        .map_err(|e| format!("mock IdP on 127.0.0.1:{IDP_PORT}: {e} (is the port free?)"))?;
    let backend = EchoBackend::start_on(BACKEND_PORT)
        .map_err(|e| format!("echo backend on 127.0.0.1:{BACKEND_PORT}: {e} (is the port free?)"))?;
    let root = workspace_root();
    let envoy = Envoy::start_file(&root.join(CONFIG), &root, 1)?;
    let egress = Envoy::start_file(&root.join(OBO_CONFIG), &root, 1)?;

    println!("Baton demo: identity through Envoy {}", envoy_version());
    println!("  mock IdP  {}  (issuer, JWKS, authorization code + PKCE, token exchange)", idp.issuer());
    println!("  backend   http://{}  (echoes what it receives)", backend.addr());
    println!("  ingress   http://{}  running {CONFIG}", envoy.addr());
    println!("  egress    http://{}  running {OBO_CONFIG}", egress.addr());
    wait_for_keys(&envoy)?;
    // The egress Envoy fetches the IdP's keys and its own actor token
    // (client credentials) at start.
    if !egress.wait_for(Duration::from_secs(10), |e| {
        e.counter("baton_obo.jwks.fetch_success") >= 1 && e.counter("baton_obo.idp.success") >= 1
    }) {
        return Err("the egress Envoy did not get the IdP's keys and its actor token within 10 s".into());
    }

    step(1, "alice signs in to finport-app (authorization code + PKCE S256, no step-up)");
    let password_token = sign_in(&idp, "alice", None)?;
    show_claims(&password_token);

    step(2, "GET /portfolio with alice's token");
    let response = envoy.get_with_token("/portfolio/summary", &password_token);
    show_response(&response);
    show_identity_seen(&backend);

    step(3, "GET /portfolio with a forged x-user-id: admin header and alice's token");
    let response = envoy.get(
        "/portfolio/summary",
        &[("authorization", &format!("Bearer {password_token}")), ("x-user-id", "admin")],
    );
    show_response(&response);
    show_identity_seen(&backend);

    step(4, "GET /portfolio without a token");
    show_response(&envoy.get("/portfolio/summary", &[]));

    step(5, "GET /portfolio with a token whose payload was altered (sub=admin)");
    show_response(&envoy.get_with_token("/portfolio/summary", &tamper(&password_token)));

    step(6, "GET /admin/users: the route requires the role admin, alice is a trader");
    show_response(&envoy.get_with_token("/admin/users", &password_token));

    step(7, "POST /transfers: the route requires acr=mfa within 300 s; alice signed in with a password");
    let transfer = |token: &str| {
        envoy.send(
            &ClientRequest::post("/transfers", "application/json", br#"{"amount":250,"to":"bob"}"#.to_vec())
                .header("authorization", &format!("Bearer {token}")),
        )
    };
    show_response(&transfer(&password_token));

    step(8, "alice steps up: signs in again with acr_values=mfa, as the challenge asked");
    let mfa_token = sign_in(&idp, "alice", Some("mfa"))?;
    show_claims(&mfa_token);
    let response = transfer(&mfa_token);
    show_response(&response);
    show_identity_seen(&backend);

    step(9, "the broker calls the Portfolio Agent through the egress Envoy with alice's token");
    println!("  token the broker holds:");
    show_claims(&mfa_token);
    let token_calls = idp.calls(mock_idp::Endpoint::Token);
    backend.clear();
    let response = egress.get_with_token("/portfolio/holdings", &mfa_token);
    show_response(&response);
    println!("  token the Portfolio Agent received (exchanged by obo-credential-injection, RFC 8693):");
    show_upstream_claims(&backend, &mfa_token);
    let response = egress.get_with_token("/portfolio/holdings", &mfa_token);
    println!(
        "  again: {} {}; calls to the IdP's token endpoint for both requests: {} (the second was a cache hit)",
        response.status,
        http_kit::reason_phrase(response.status),
        idp.calls(mock_idp::Endpoint::Token) - token_calls
    );

    step(10, "counters in Envoy's /stats");
    for name in [
        "allowed",
        "denied.missing_token",
        "denied.invalid_token",
        "denied.insufficient_scope",
        "denied.step_up_required",
        "cache.miss",
        "cache.hit_local",
        "jwks.fetch_success",
    ] {
        println!("  wasmcustom.baton_ce.{name:<28} {}", envoy.counter(&format!("baton_ce.{name}")));
    }
    for name in ["injected", "cache.miss", "cache.hit_local", "idp.calls", "idp.success"] {
        println!("  wasmcustom.baton_obo.{name:<27} {}", egress.counter(&format!("baton_obo.{name}")));
    }
    let audit = envoy.filter_logs().into_iter().filter(|l| l.contains(" audit ")).count();
    println!("  audit lines in Envoy's log: {audit} (one per decision, token hashes only)");

    drop(egress);
    drop(envoy);
    drop(backend);
    idp.shutdown();
    println!("\nstopped Envoy, the backend and the mock IdP.");
    Ok(())
}

fn envoy_version() -> String {
    let output = std::process::Command::new(baton_harness::envoy_binary()).arg("--version").output();
    output
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|text| {
            // "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
            let (_, rest) = text.split_once("version:")?;
            rest.trim().split('/').nth(1).map(String::from)
        })
        .unwrap_or_else(|| "?".into())
}

fn wait_for_keys(envoy: &Envoy) -> Result<(), String> {
    if envoy.wait_for(Duration::from_secs(10), |e| e.counter("baton_ce.jwks.fetch_success") >= 1) {
        Ok(())
    } else {
        Err("Envoy did not fetch the IdP's keys within 10 s".into())
    }
}

fn step(number: u32, title: &str) {
    println!("\n{number}. {title}");
}

/// The real browser flow, done by a program: /authorize (auto-approved by
/// the mock IdP), then the code and the PKCE verifier at /token.
fn sign_in(idp: &MockIdp, user: &str, acr: Option<&str>) -> Result<String, String> {
    let verifier = format!("demo-verifier-{}-{}", user, mock_idp::now_secs()).repeat(2);
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", "finport-app"),
        ("redirect_uri", DEMO_REDIRECT_URI),
        ("scope", "openid portfolio:read"),
        ("state", "demo-state"),
        ("login_hint", user),
        ("code_challenge_method", "S256"),
    ];
    let challenge = s256_challenge(&verifier);
    query.push(("code_challenge", &challenge));
    if let Some(acr) = acr {
        query.push(("acr_values", acr));
    }
    let target = format!("/authorize?{}", http_kit::form_urlencode(&query));
    let redirect = http_kit::send(idp.addr(), &ClientRequest::get(&target), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let location = redirect.header("location").ok_or("no redirect from /authorize")?;
    let code = http_kit::parse_urlencoded(location.split_once('?').map_or("", |(_, q)| q))
        .into_iter()
        .find(|(name, _)| name == "code")
        .map(|(_, code)| code)
        .ok_or("no code in the redirect")?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", DEMO_REDIRECT_URI),
        ("client_id", "finport-app"),
        ("code_verifier", verifier.as_str()),
    ];
    let response =
        http_kit::send(idp.addr(), &ClientRequest::post_form("/token", &form), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
    let body: Value = response.json().map_err(|e| format!("token response: {e}"))?;
    body["access_token"].as_str().map(String::from).ok_or_else(|| format!("token endpoint said {body}"))
}

fn show_claims(token: &str) {
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

/// What the upstream received in `Authorization`, decoded; and whether the
/// caller's own token got through (it must not).
fn show_upstream_claims(backend: &EchoBackend, callers_token: &str) {
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

fn show_response(response: &ClientResponse) {
    println!("  -> {} {}", response.status, http_kit::reason_phrase(response.status));
    if let Some(challenge) = response.header("www-authenticate") {
        println!("     WWW-Authenticate: {challenge}");
    }
    if response.status != 200 {
        println!("     body: {}", response.body_str());
    }
}

fn show_identity_seen(backend: &EchoBackend) {
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
fn tamper(token: &str) -> String {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(signature)) = (parts.next(), parts.next(), parts.next()) else {
        return token.to_string();
    };
    let mut claims = decode_claims_unverified(token).unwrap_or(Value::Null);
    claims["sub"] = Value::from("admin");
    format!("{header}.{}.{signature}", mock_idp::b64url(claims.to_string().as_bytes()))
}
