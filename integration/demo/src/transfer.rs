//! The money-transfer step: the broker asks the Transfer Agent (A2A) to move
//! money; in-task-auth-code in front of the agent asks for the user's bank
//! authorization, the user authorizes, the transfer goes through with the
//! bank's token, and only that user's task can use it.

use baton_harness::{Envoy, Hop, RedirectWalk};
use echo_backend::EchoBackend;
use http_kit::{ClientRequest, ClientResponse};
use mock_idp::{MockIdp, MockIdpConfig};
use serde_json::{Value, json};

use crate::show::{show_response, step};
use crate::trace::{Trace, claims_line};

/// Where `envoy-configs/in-task-auth-code.yaml` expects the bank and agent.
pub const BANK_PORT: u16 = 9010;
/// The Transfer Agent.
pub const AGENT_PORT: u16 = 9011;
/// The config the third Envoy runs.
pub const CONFIG: &str = "envoy-configs/in-task-auth-code.yaml";

/// The gateway's client secret at the bank (`integration/bank-idp.json`),
/// which the gateway's VM reads from `BATON_BANK_SECRET`.
pub const BANK_SECRET: &str = "bank-demo-secret";

/// The bank's configuration, shared with `integration/docker-compose.yml`.
pub const BANK_CONFIG: &str = "integration/bank-idp.json";

/// The user's bank: a second mock IdP, with its own issuer and keys.
pub fn start_bank() -> Result<MockIdp, String> {
    let path = baton_harness::workspace_root().join(BANK_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config: MockIdpConfig =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    MockIdp::start(config).map_err(|e| format!("bank IdP on 127.0.0.1:{BANK_PORT}: {e} (is the port free?)"))
}

/// The Transfer Agent: an A2A echo agent.
pub fn start_agent() -> Result<EchoBackend, String> {
    let agent = EchoBackend::start_on(AGENT_PORT)
        .map_err(|e| format!("transfer agent on 127.0.0.1:{AGENT_PORT}: {e} (is the port free?)"))?;
    agent.with_handler("/", echo_backend::a2a_agent::reply);
    Ok(agent)
}

/// A transfer in `task` (or a new one); `keep_open` asks the agent to keep
/// the task open for another (it answers `input-required`).
fn send_transfer(
    gateway: &Envoy,
    user_token: &str,
    task: Option<&str>,
    amount: u32,
    keep_open: bool,
) -> ClientResponse {
    let mut message = json!({"kind": "message", "role": "user", "messageId": format!("transfer-{amount}"),
        "parts": [{"kind": "text", "text": format!("send {amount} EUR to bob")},
                  {"kind": "data", "data": {"operation": "transfer", "amount": amount, "to": "bob", "keepOpen": keep_open}}]});
    if let Some(task) = task {
        message["taskId"] = json!(task);
    }
    let body = json!({"jsonrpc": "2.0", "id": format!("req-{amount}"), "method": "message/send", "params": {"message": message}});
    gateway.send(
        &ClientRequest::post("/", "application/json", body.to_string().into_bytes())
            .header("authorization", &format!("Bearer {user_token}")),
    )
}

fn task_state(response: &ClientResponse) -> (String, String) {
    let body: Value = response.json().unwrap_or(Value::Null);
    (
        body["result"]["id"].as_str().unwrap_or("?").to_string(),
        body["result"]["status"]["state"].as_str().unwrap_or("?").to_string(),
    )
}

fn auth_challenge(response: &ClientResponse) -> Value {
    let body: Value = response.json().unwrap_or(Value::Null);
    body["result"]["status"]["message"]["parts"][1]["data"]["authChallenge"].clone()
}

/// What the agent reported about the request it received.
fn show_agent_report(response: &ClientResponse) {
    let body: Value = response.json().unwrap_or(Value::Null);
    let report = &body["result"]["status"]["message"]["parts"][1]["data"];
    println!(
        "  the agent received: x-baton-user={} auth_credentials in the body: {}",
        report["user_header"].as_str().unwrap_or("-"),
        report["auth_credentials_seen"]
    );
    let claims = &report["bearer_claims"];
    println!(
        "  token the agent received: iss={} sub={} aud={} scope=\"{}\"",
        claims["iss"].as_str().unwrap_or("-"),
        claims["sub"].as_str().unwrap_or("-"),
        claims["aud"].as_str().unwrap_or("-"),
        claims["scope"].as_str().unwrap_or("-")
    );
}

/// The claims of the bank token the agent reported receiving, as a trace line.
fn agent_token_line(response: &ClientResponse) -> String {
    let body: Value = response.json().unwrap_or(Value::Null);
    let claims = &body["result"]["status"]["message"]["parts"][1]["data"]["bearer_claims"];
    format!("iss=bank {}", claims_line(claims))
}

/// A browser where `user` signs in (the mock IdPs approve whoever
/// `login_hint` names) opens `link` and follows every redirect.
fn open_link(link: &str, idp: &MockIdp, bank: &MockIdp, user: &str) -> Result<Vec<Hop>, String> {
    let idps = [idp.base_url(), bank.base_url()];
    RedirectWalk::new().follow(link, 10, |url| {
        if idps.iter().any(|base| url.starts_with(&format!("{base}/authorize?"))) {
            format!("{url}&login_hint={user}")
        } else {
            url.to_string()
        }
    })
}

/// A hop of the walk without its code, state or other secrets.
fn describe(url: &str) -> String {
    let (place, path) = match url.split_once("://").and_then(|(_, rest)| rest.split_once('/')) {
        Some((host, path)) => (host, path.split('?').next().unwrap_or("")),
        None => ("?", url),
    };
    let who = match place.rsplit(':').next() {
        Some("10003") => "gateway",
        Some("9000") => "FinPort IdP",
        Some("9010") => "bank",
        _ => place,
    };
    format!("{who:<12} GET /{path}")
}

/// Runs the transfer steps, numbered from `first`; returns the next number.
#[allow(clippy::too_many_arguments)]
pub fn run(
    first: u32,
    idp: &MockIdp,
    bank: &MockIdp,
    agent: &EchoBackend,
    gateway: &Envoy,
    alice: &str,
    bob: &str,
    trace: &mut Trace,
) -> Result<u32, String> {
    step(
        first,
        "the broker asks the Transfer Agent (A2A, message/send) to send 250 EUR to bob, with alice's token",
    );
    let challenge = send_transfer(gateway, alice, None, 250, false);
    show_response(&challenge);
    let (gateway_task, state) = task_state(&challenge);
    println!(
        "  task {gateway_task} is {state}; the agent was not called (requests it saw: {})",
        agent.requests().len()
    );
    trace.hop(
        "Agent Broker -> Transfer Agent",
        "in-task-auth-code (A2A)",
        &format!("{state}, agent not called"),
        "no token: a challenge for the bank".to_string(),
    );
    let object = auth_challenge(&challenge);
    println!(
        "  authChallenge: {}",
        serde_json::to_string_pretty(&object).unwrap_or_default().replace('\n', "\n  ")
    );

    step(
        first + 1,
        "alice opens the link: the gateway signs her browser in at FinPort, then sends it to her bank",
    );
    let link = object["authorizationUrl"].as_str().ok_or("no authorizationUrl")?;
    let hops = open_link(link, idp, bank, "alice")?;
    for hop in &hops {
        println!("  {} -> {}", describe(&hop.url), hop.response.status);
    }
    let page = &hops.last().ok_or("no answer to the link")?.response;
    println!("  the gateway's page: {}", page_text(&page.body_str()));
    if page.status != 200 {
        return Err(format!("the authorization did not complete: {} {}", page.status, page.body_str()));
    }

    step(
        first + 2,
        "the broker resends the transfer in the task: nothing in the body, the gateway injects the bank's token",
    );
    let done = send_transfer(gateway, alice, Some(&gateway_task), 250, true);
    let (agent_task, state) = task_state(&done);
    println!(
        "  -> {} {}: agent task {agent_task} is {state}",
        done.status,
        http_kit::reason_phrase(done.status)
    );
    show_agent_report(&done);
    trace.hop(
        "Agent Broker -> Transfer Agent",
        "in-task-auth-code (A2A)",
        &format!("{state}, bank token injected"),
        agent_token_line(&done),
    );

    step(first + 3, "a second transfer (100 EUR) in the same task needs no new authorization");
    let again = send_transfer(gateway, alice, Some(&agent_task), 100, false);
    let (_, state) = task_state(&again);
    println!("  -> {} {}: task {agent_task} is {state}", again.status, http_kit::reason_phrase(again.status));
    trace.hop(
        "Agent Broker -> Transfer Agent",
        "in-task-auth-code (A2A), same task",
        &format!("{state}, no new challenge"),
        agent_token_line(&again),
    );

    step(first + 4, "bob's agent tries to use alice's task");
    let stolen = send_transfer(gateway, bob, Some(&agent_task), 1000, false);
    let (_, state) = task_state(&stolen);
    println!(
        "  -> task {agent_task} is {state} for bob: he must authorize at his own bank; the agent was not called"
    );
    trace.hop(
        "bob's broker -> alice's task",
        "in-task-auth-code (A2A)",
        &format!("{state}, agent not called"),
        "no token: alice's bank token stays hers".to_string(),
    );

    step(first + 5, "bob sends his own authorization link to alice, who opens it (consent phishing)");
    let bobs_link =
        auth_challenge(&stolen)["authorizationUrl"].as_str().ok_or("no authorizationUrl")?.to_string();
    let hops = open_link(&bobs_link, idp, bank, "alice")?;
    for hop in &hops {
        println!("  {} -> {}", describe(&hop.url), hop.response.status);
    }
    let refused = &hops.last().ok_or("no answer to the link")?.response;
    println!("  the gateway's page: {}", page_text(&refused.body_str()));
    if refused.status != 403 || hops.iter().any(|hop| describe(&hop.url).starts_with("bank")) {
        return Err(format!("bob's link went further than the sign-in: {}", refused.status));
    }
    trace.hop(
        "alice's browser -> bob's link",
        "in-task-auth-code (sign-in)",
        "403, the bank never asked",
        "no token: alice signed in, bob asked".to_string(),
    );
    println!("  requests the agent received in all: {}", agent.requests().len());
    Ok(first + 6)
}

/// The paragraph of one of the gateway's pages.
fn page_text(html: &str) -> String {
    html.split("<p>").nth(1).and_then(|rest| rest.split("</p>").next()).unwrap_or(html).to_string()
}
