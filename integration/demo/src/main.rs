//! `make demo`: the FinPort agentic scenario. The mock IdP, a second one
//! (the user's bank), an echo backend standing in for the agents and APIs,
//! and real Envoys running the configs in `envoy-configs/`: the broker's
//! ingress (claim-enforcement), the broker's egress (the delegation broker:
//! obo-credential-injection), the Portfolio Agent's egress (a second
//! exchange) and the A2A gateway in front of the Transfer Agent
//! (in-task-auth-code). Prints each hop (filter, decision, decoded claims of
//! the token the upstream received), never a raw token, then stops
//! everything.

mod oauth;
mod show;
mod trace;
mod transfer;

use std::process::ExitCode;
use std::time::Duration;

use baton_harness::{Envoy, workspace_root};
use echo_backend::EchoBackend;
use http_kit::ClientRequest;
use mock_idp::{MockIdp, MockIdpConfig};
use oauth::sign_in;
use show::{
    show_claims, show_identity_seen, show_response, show_upstream_claims, step, tamper, upstream_claims,
};
use trace::{Trace, claims_line};

/// The ports `envoy-configs/claim-enforcement.yaml` names.
const IDP_PORT: u16 = 9000;
const BACKEND_PORT: u16 = 9001;
const CONFIG: &str = "envoy-configs/claim-enforcement.yaml";
const BROKER_CONFIG: &str = "envoy-configs/delegation-broker.yaml";
const PORTFOLIO_CONFIG: &str = "envoy-configs/portfolio-egress.yaml";

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
    backend.with_handler("/portfolio/holdings", echo_backend::portfolio::reply);
    let root = workspace_root();
    let envoy = Envoy::start_file(&root.join(CONFIG), &root, 1)?;
    let secret = |name: &str, value: &str| vec![(name.to_string(), value.to_string())];
    let egress = Envoy::start_file_with_env(
        &root.join(BROKER_CONFIG),
        &root,
        1,
        &secret("BATON_BROKER_SECRET", mock_idp::DEMO_BROKER_SECRET),
    )?;
    let portfolio_egress = Envoy::start_file_with_env(
        &root.join(PORTFOLIO_CONFIG),
        &root,
        1,
        &secret("BATON_PORTFOLIO_SECRET", mock_idp::DEMO_PORTFOLIO_SECRET),
    )?;
    let bank = transfer::start_bank()?;
    let agent = transfer::start_agent()?;
    let gateway_secrets = [
        ("BATON_BANK_SECRET".to_string(), transfer::BANK_SECRET.to_string()),
        ("BATON_FINPORT_SECRET".to_string(), mock_idp::DEMO_GATEWAY_SECRET.to_string()),
    ];
    let gateway = Envoy::start_file_with_env(&root.join(transfer::CONFIG), &root, 1, &gateway_secrets)?;

    println!("Baton demo: identity through Envoy {}", envoy_version());
    println!("  mock IdP  {}  (issuer, JWKS, authorization code + PKCE, token exchange)", idp.issuer());
    println!("  backend   http://{}  (echoes what it receives)", backend.addr());
    println!("  ingress   http://{}  running {CONFIG}", envoy.addr());
    println!("  egress    http://{}  running {BROKER_CONFIG} (the broker's)", egress.addr());
    println!(
        "  egress    http://{}  running {PORTFOLIO_CONFIG} (the Portfolio Agent's)",
        portfolio_egress.addr()
    );
    println!("  bank IdP  {}  (a second IdP: the user's bank)", bank.issuer());
    println!("  agent     http://{}  (an A2A Transfer Agent)", agent.addr());
    println!("  A2A gw    http://{}  running {}", gateway.addr(), transfer::CONFIG);
    wait_for_keys(&envoy)?;
    // The egress Envoys fetch the IdP's keys and their own actor tokens
    // (client credentials) at start.
    for (name, envoy) in [("broker's", &egress), ("Portfolio Agent's", &portfolio_egress)] {
        if !envoy.wait_for(Duration::from_secs(10), |e| {
            e.counter("baton_obo.jwks.fetch_success") >= 1 && e.counter("baton_obo.idp.success") >= 1
        }) {
            return Err(format!(
                "the {name} egress Envoy did not get the IdP's keys and its tokens within 10 s"
            ));
        }
    }
    let mut trace = Trace::default();
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
    trace.hop(
        "User -> Agent Broker",
        "claim-enforcement (ingress)",
        &format!("{} verified, identity set", response.status),
        format!(
            "{} (the user's token) x-user-id={}",
            claims_line(&mock_idp::decode_claims_unverified(&password_token).unwrap_or_default()),
            backend
                .requests()
                .last()
                .and_then(|r| r.header("x-user-id").map(String::from))
                .unwrap_or_default()
        ),
    );

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

    step(9, "the broker calls the Portfolio Agent through its egress Envoy with alice's token");
    println!("  token the broker holds:");
    show_claims(&mfa_token);
    let token_calls = idp.calls(mock_idp::Endpoint::Token);
    backend.clear();
    let as_broker = |host: &str, path: &str, token: &str| {
        egress.get(path, &[("host", host), ("authorization", &format!("Bearer {token}"))])
    };
    let response = as_broker("portfolio.internal", "/portfolio/holdings", &mfa_token);
    show_response(&response);
    println!("  token the Portfolio Agent received (exchanged by obo-credential-injection, RFC 8693):");
    show_upstream_claims(&backend, &mfa_token);
    let body = response.json().unwrap_or(serde_json::Value::Null);
    println!(
        "  the Portfolio Agent answered with {}'s portfolio: {}",
        body["portfolio"]["user"].as_str().unwrap_or("-"),
        body["portfolio"]["holdings"]
    );
    let other = as_broker("portfolio.internal", "/portfolio/holdings?user=bob", &mfa_token);
    println!("  asking it for bob's portfolio with alice's token: {} {}", other.status, other.body_str());
    let portfolio_token = upstream_claims(&backend).map(|(token, _)| token).unwrap_or_default();
    trace.hop(
        "Agent Broker -> Portfolio Agent",
        "obo-credential-injection (token exchange)",
        &format!("{} exchanged", response.status),
        claims_line(&upstream_claims(&backend).map(|(_, claims)| claims).unwrap_or_default()),
    );
    let response = as_broker("portfolio.internal", "/portfolio/holdings", &mfa_token);
    println!(
        "  again: {} {}; calls to the IdP's token endpoint for both requests: {} (the second was a cache hit)",
        response.status,
        http_kit::reason_phrase(response.status),
        idp.calls(mock_idp::Endpoint::Token) - token_calls
    );

    step(10, "the broker asks the Market Data Agent for quotes: service to service, no user identity");
    backend.clear();
    let response = as_broker("market.internal", "/quotes/EURUSD", &mfa_token);
    show_response(&response);
    println!("  token the Market Data Agent received (the broker's own, client credentials):");
    show_upstream_claims(&backend, &mfa_token);
    trace.hop(
        "Agent Broker -> Market Data Agent",
        "obo-credential-injection (client credentials)",
        &format!("{} broker's own token", response.status),
        claims_line(&upstream_claims(&backend).map(|(_, claims)| claims).unwrap_or_default()),
    );

    step(
        11,
        "the Portfolio Agent calls the Ledger API through its own egress Envoy, with the token it received",
    );
    backend.clear();
    let response = portfolio_egress.get_with_token("/ledger/entries?account=alice", &portfolio_token);
    show_response(&response);
    println!("  token the Ledger API received (exchanged again; act names both agents):");
    show_upstream_claims(&backend, &portfolio_token);
    trace.hop(
        "Portfolio Agent -> Ledger API",
        "obo-credential-injection (token exchange)",
        &format!("{} exchanged again", response.status),
        claims_line(&upstream_claims(&backend).map(|(_, claims)| claims).unwrap_or_default()),
    );

    let bob_token = sign_in(&idp, "bob", Some("mfa"))?;
    let next = transfer::run(12, &idp, &bank, &agent, &gateway, &mfa_token, &bob_token, &mut trace)?;

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
        println!(
            "  wasmcustom.baton_obo.{name:<27} {} (broker), {} (Portfolio Agent)",
            egress.counter(&format!("baton_obo.{name}")),
            portfolio_egress.counter(&format!("baton_obo.{name}"))
        );
    }
    for name in ["challenges", "codes_exchanged", "tokens_injected", "state_misuse"] {
        println!("  wasmcustom.baton_itac.{name:<26} {}", gateway.counter(&format!("baton_itac.{name}")));
    }
    let audit = envoy.filter_logs().into_iter().filter(|l| l.contains(" audit ")).count();
    println!("  audit lines in Envoy's log: {audit} (one per decision, token hashes only)");

    trace.print();

    drop(gateway);
    drop(portfolio_egress);
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
