//! `make demo`: the mock IdP, an echo backend and real Envoys running
//! `envoy-configs/claim-enforcement.yaml` (ingress) and
//! `envoy-configs/obo-credential-injection.yaml` (egress), and a walk through
//! the identity flows a user of Baton cares about. Prints decisions and
//! decoded claims, never a raw token, then stops everything.

mod oauth;
mod show;
mod transfer;

use std::process::ExitCode;
use std::time::Duration;

use baton_harness::{Envoy, workspace_root};
use echo_backend::EchoBackend;
use http_kit::ClientRequest;
use mock_idp::{MockIdp, MockIdpConfig};
use oauth::sign_in;
use show::{show_claims, show_identity_seen, show_response, show_upstream_claims, step, tamper};

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
    let bank = transfer::start_bank()?;
    let agent = transfer::start_agent()?;
    let gateway = Envoy::start_file(&root.join(transfer::CONFIG), &root, 1)?;

    println!("Baton demo: identity through Envoy {}", envoy_version());
    println!("  mock IdP  {}  (issuer, JWKS, authorization code + PKCE, token exchange)", idp.issuer());
    println!("  backend   http://{}  (echoes what it receives)", backend.addr());
    println!("  ingress   http://{}  running {CONFIG}", envoy.addr());
    println!("  egress    http://{}  running {OBO_CONFIG}", egress.addr());
    println!("  bank IdP  {}  (a second IdP: the user's bank)", bank.issuer());
    println!("  agent     http://{}  (an A2A Transfer Agent)", agent.addr());
    println!("  A2A gw    http://{}  running {}", gateway.addr(), transfer::CONFIG);
    wait_for_keys(&envoy)?;
    // The egress Envoy fetches the IdP's keys and its own actor token
    // (client credentials) at start.
    if !egress.wait_for(Duration::from_secs(10), |e| {
        e.counter("baton_obo.jwks.fetch_success") >= 1 && e.counter("baton_obo.idp.success") >= 1
    }) {
        return Err("the egress Envoy did not get the IdP's keys and its actor token within 10 s".into());
    }
    if !gateway.wait_for(Duration::from_secs(10), |e| e.counter("baton_itac.jwks.fetch_success") >= 1) {
        return Err("the A2A gateway did not get the bank's keys within 10 s".into());
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

    let bob_token = sign_in(&idp, "bob", Some("mfa"))?;
    let next = transfer::run(10, &bank, &agent, &gateway, &mfa_token, &bob_token)?;

    step(next, "counters in the Envoys' /stats");
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
    for name in ["challenges", "codes_exchanged", "tokens_injected", "state_misuse"] {
        println!("  wasmcustom.baton_itac.{name:<26} {}", gateway.counter(&format!("baton_itac.{name}")));
    }
    let audit = envoy.filter_logs().into_iter().filter(|l| l.contains(" audit ")).count();
    println!("  audit lines in Envoy's log: {audit} (one per decision, token hashes only)");

    drop(gateway);
    drop(egress);
    drop(envoy);
    drop(agent);
    drop(backend);
    bank.shutdown();
    idp.shutdown();
    println!("\nstopped the Envoys, the backend, the agent and both mock IdPs.");
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
