//! Finding 12 and its siblings: secrets in Envoy's own output. No shipped
//! config holds a secret inline: each reaches its filter from Envoy's
//! environment (`vm_config.environment_variables`), which Envoy's config
//! dump does not show. Envoy's own lines at `debug` do print request
//! headers (bearer tokens, the `Authorization: Basic` of token-endpoint
//! calls, redirect query strings): the documented setting, `info` with the
//! filters' own component at `debug`, prints none of them.

use std::fs;

use baton_harness::{RedirectWalk, ShippedConfig, body_json, workspace_root};
use echo_backend::EchoBackend;
use http_kit::ClientRequest;
use mock_idp::{MockIdp, MockIdpConfig};

use crate::world::{
    BANK_SECRET, Broker, TransferGateway, auth_challenge, bearer_claims, transfer, user_token,
};

/// Every secret a shipped config reads, as its test runs it.
const SECRETS: [&str; 4] = [
    BANK_SECRET,
    mock_idp::DEMO_GATEWAY_SECRET,
    mock_idp::DEMO_BROKER_SECRET,
    mock_idp::DEMO_PORTFOLIO_SECRET,
];

#[test]
fn no_shipped_config_holds_a_secret() {
    let mut checked = 0;
    for dir in [
        "envoy-configs",
        "deploy/istio",
        "deploy/istio/patches",
        "deploy/envoy-gateway",
        "deploy/envoy-gateway/alternatives",
    ] {
        for entry in fs::read_dir(workspace_root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|ext| ext != "yaml") {
                continue;
            }
            // Comments may show how to run the demo (`BATON_BANK_SECRET=...`):
            // the config itself is what a user copies and what Envoy dumps.
            let text: String = fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|line| !line.trim_start().starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n");
            for inline in ["\"clientSecret\"", "clientSecret:", "\"pem\"", "pem:", "\"privateJwk\""] {
                assert!(!text.contains(inline), "{}: a secret inline ({inline})", path.display());
            }
            for secret in SECRETS {
                assert!(!text.contains(secret), "{}: holds {secret:?}", path.display());
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 22, "files read (every .yaml in those folders)");
}

/// The gateway runs alice's whole flow (challenge, sign-in, bank, code
/// exchanges, the stored token injected into her next request); returns
/// what it logged, its config dump, and every secret the flow carried:
/// alice's token, both codes, the bank's token the agent received.
fn run_flow(gateway: &TransferGateway) -> (String, String, Vec<String>) {
    let token = gateway.token("alice");
    let bearer = format!("Bearer {token}");
    let challenge = gateway.post(Some(&bearer), &transfer(None), &[]);
    let task = body_json(&challenge)["result"]["id"].as_str().unwrap().to_string();
    let link = auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
    let hops = gateway.open_link_as(&mut RedirectWalk::new(), &link, "alice");
    assert_eq!(hops.last().unwrap().response.status, 200);
    let codes: Vec<String> = hops
        .iter()
        .filter_map(|hop| {
            hop.url.split("code=").nth(1).map(|rest| rest.split('&').next().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(codes.len(), 2, "a sign-in code and a bank code");
    let answer = gateway.post(Some(&bearer), &transfer(Some(&task)), &[]);
    assert_eq!(answer.status, 200, "{}", answer.body_str());
    let injected = gateway.agent.requests()[0]
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    let claims = bearer_claims(&gateway.agent.requests()[0]).expect("a token reached the agent");
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str()),
        (Some(gateway.bank.issuer().as_str()), Some("alice")),
        "the bank's token for alice reached the agent"
    );
    let mut secrets = vec![token, injected];
    secrets.extend(codes);
    let dump = gateway.envoy.admin_get("/config_dump").unwrap().body_str();
    (gateway.envoy.logs(), dump, secrets)
}

#[test]
fn the_config_dump_and_the_recommended_log_level_show_no_secret() {
    let gateway = TransferGateway::start();
    let (logs, dump, seen) = run_flow(&gateway);
    assert!(dump.contains("clientSecretEnv") && dump.contains("BATON_BANK_SECRET"), "the dump is the config");
    for secret in SECRETS.iter().map(|s| s.to_string()).chain(seen) {
        assert!(!dump.contains(&secret), "the config dump shows a secret");
        assert!(!logs.contains(&secret), "the log shows a secret ({} chars)", secret.len());
    }
    // The Basic credentials of the token-endpoint calls, however encoded.
    use base64::Engine as _;
    for (client, secret) in
        [("transfer-gateway", BANK_SECRET), ("transfer-gateway", mock_idp::DEMO_GATEWAY_SECRET)]
    {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
        assert!(!logs.contains(&basic), "the log shows a client's Basic credentials");
    }
}

#[test]
fn envoy_itself_prints_them_at_debug_as_documented() {
    let gateway = TransferGateway::start_at_log_level("debug");
    let (logs, _, seen) = run_flow(&gateway);
    // What docs/security.md says Envoy's own debug lines print: the user's
    // bearer token and the redirect's code. (Baton's own lines never do.)
    let token = &seen[0];
    assert!(
        logs.contains(token.as_str()),
        "Envoy's debug log no longer prints request headers: update the docs"
    );
    assert!(seen[2..].iter().any(|code| logs.contains(code.as_str())), "nor the redirect's query");
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("transfer-gateway:{BANK_SECRET}"));
    assert!(logs.contains(&basic), "nor the Basic credentials of the gateway's token-endpoint calls");
    for line in gateway.envoy.filter_logs() {
        for secret in SECRETS.iter().map(|s| s.to_string()).chain(seen.iter().cloned()) {
            assert!(!line.contains(&secret), "a Baton line shows a secret: {line}");
        }
    }
}

#[test]
fn the_broker_logs_no_token_it_carries_or_fetches() {
    let broker = Broker::start();
    let user_token = broker.token_of("finport-app");
    let bearer = format!("Bearer {user_token}");
    let mut carried = vec![user_token.clone()];
    for host in ["portfolio.internal", "ledger.internal", "market.internal", "reports.internal"] {
        let answer = broker.call("GET", host, Some(&bearer));
        assert_eq!(answer.status, 200, "{host}: {}", answer.body_str());
    }
    for request in broker.backend.requests() {
        let token = request.header("authorization").unwrap().strip_prefix("Bearer ").unwrap().to_string();
        assert_ne!(token, user_token, "the user's own token went upstream");
        carried.push(token);
    }
    assert_eq!(carried.len(), 5, "the user's token and one issued token per target");
    let logs = broker.envoy.logs();
    let dump = broker.envoy.admin_get("/config_dump").unwrap().body_str();
    assert!(dump.contains("BATON_BROKER_SECRET"), "the dump is the config");
    for secret in carried.iter().map(String::as_str).chain([mock_idp::DEMO_BROKER_SECRET]) {
        assert!(!logs.contains(secret), "the log shows a secret ({} chars)", secret.len());
        assert!(!dump.contains(secret), "the config dump shows a secret");
    }
    assert!(!broker.envoy.filter_logs().is_empty(), "the filter logged (at debug) and showed nothing");
}

#[test]
fn the_single_target_egress_config_takes_its_secret_from_the_environment() {
    let idp = MockIdp::start(MockIdpConfig::default()).unwrap();
    let upstream = EchoBackend::start().unwrap();
    let envoy = ShippedConfig::new("obo-credential-injection.yaml")
        .port(9000, idp.port())
        .port(9001, upstream.port())
        .env("BATON_BROKER_SECRET", mock_idp::DEMO_BROKER_SECRET)
        .start()
        .unwrap_or_else(|e| panic!("obo-credential-injection.yaml did not start: {e}"));
    let user_token = user_token(&idp, "alice");
    let answer = envoy.send(
        &ClientRequest::new("GET", "/api/data").header("authorization", &format!("Bearer {user_token}")),
    );
    assert_eq!(answer.status, 200, "{}", answer.body_str());
    let claims = bearer_claims(&upstream.requests()[0]).unwrap();
    assert_eq!(
        (claims["aud"].as_str(), claims["act"]["sub"].as_str()),
        (Some("portfolio-agent"), Some("agent-broker"))
    );
    let issued = upstream.requests()[0].header("authorization").unwrap().to_string();
    let logs = envoy.logs();
    let dump = envoy.admin_get("/config_dump").unwrap().body_str();
    assert!(dump.contains("BATON_BROKER_SECRET"), "the dump is the config");
    for secret in [user_token.as_str(), &issued["Bearer ".len()..], mock_idp::DEMO_BROKER_SECRET] {
        assert!(!logs.contains(secret), "the log shows a secret ({} chars)", secret.len());
        assert!(!dump.contains(secret), "the config dump shows a secret");
    }
}
