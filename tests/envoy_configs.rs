//! Every shipped Envoy configuration loads, and bad filter configuration is
//! refused at load with one log line naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/support.rs"]
mod support;

use baton_harness::{EnvoySpec, validate_config, validate_spec, workspace_root};
use serde_json::{Value, json};
use support::*;

#[test]
fn every_config_in_envoy_configs_validates() {
    let root = workspace_root();
    // identity-assertion.yaml signs with a key from the environment.
    let gateway_key = {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let der =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &ring::rand::SystemRandom::new())
                .unwrap();
        pkcs8_pem(der.as_ref())
    };
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("envoy-configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            // delegation-broker.yaml, enforce-and-exchange.yaml, portfolio-egress.yaml and
            // in-task-auth-code.yaml read their client secrets from here.
            let env = [
                ("BATON_BROKER_SECRET", mock_idp::DEMO_BROKER_SECRET),
                ("BATON_PORTFOLIO_SECRET", mock_idp::DEMO_PORTFOLIO_SECRET),
                ("BATON_GW_KEY", gateway_key.as_str()),
                ("BATON_BANK_SECRET", "bank-demo-secret"),
                ("BATON_FINPORT_SECRET", mock_idp::DEMO_GATEWAY_SECRET),
            ];
            let output = validate_config(&path, &root, &env)
                .unwrap_or_else(|output| panic!("{}:\n{output}", path.display()));
            assert!(output.contains("OK"), "{}: {output}", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 8, "configs validated (every .yaml in envoy-configs/)");
}

/// Runs `envoy --mode validate` with claim-enforcement configured by `config`.
fn validate(config: Value) -> Result<String, String> {
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    validate_spec(&EnvoySpec::new(loopback).cluster("idp", loopback).filter("claim_enforcement", config))
}

#[test]
fn bad_configuration_is_refused_with_the_field_named() {
    let idp = idp();
    let good = ce_config(&idp);
    validate(good.clone()).expect("the base configuration is valid");

    let mut unknown_field = good.clone();
    unknown_field["rutes"] = json!([]);
    let mut bad_jwks = good.clone();
    bad_jwks["providers"][0]["jwks"] =
        json!({"inline": {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}});
    let mut unknown_alg = good.clone();
    unknown_alg["providers"][0]["algorithms"] = json!(["ES256", "HS256"]);
    let mut empty_issuer = good.clone();
    empty_issuer["providers"][0]["issuer"] = json!("");
    let mut dangling = good.clone();
    dangling["routes"][1]["providers"] = json!(["nobody"]);
    let mut misspelled = good.clone();
    misspelled["routes"][1]["require"] = json!({"scopes": {"allof": ["x"]}});

    for (config, expected) in [
        (unknown_field, "invalid configuration at rutes: unknown field `rutes`"),
        (
            bad_jwks,
            "invalid configuration at providers[0].jwks.inline: keys[0]: member x is missing or invalid",
        ),
        (
            unknown_alg,
            "invalid configuration at providers[0].algorithms[1]: unknown or unsupported algorithm \"HS256\"",
        ),
        (empty_issuer, "invalid configuration at providers[0].issuer: must not be empty"),
        (
            dangling,
            "invalid configuration at routes[1].providers[0]: no provider named \"nobody\"; known: mock",
        ),
        (misspelled, "invalid configuration at routes[1].require.scopes.allof: unknown field `allof`"),
        (json!("not an object"), "invalid configuration"),
    ] {
        let output = validate(config).expect_err(expected);
        let ours: Vec<&str> =
            output.lines().filter(|line| line.contains("baton claim-enforcement: invalid")).collect();
        assert_eq!(ours.len(), 1, "one log line, naming the field: {output}");
        assert!(ours[0].contains(expected), "expected {expected:?} in {:?}", ours[0]);
    }
}

/// Runs `envoy --mode validate` with obo-credential-injection configured by `config`.
fn validate_obo(config: Value) -> Result<String, String> {
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    validate_spec(
        &EnvoySpec::new(loopback).cluster("idp", loopback).filter("obo_credential_injection", config),
    )
}

#[test]
fn bad_obo_configuration_is_refused_with_the_field_named() {
    let good = json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "clientId": "gw", "clientSecret": "pw"}],
        "subjectToken": {"validation": "claimEnforcement"},
        "targets": [{"name": "t", "mode": "tokenExchange", "idp": "corp", "audiences": ["a"]}]
    });
    validate_obo(good.clone()).expect("the base configuration is valid");
    let mut actor_type_alone = good.clone();
    actor_type_alone["targets"][0]["actor"] = json!({"tokenType": "urn:ietf:params:oauth:token-type:jwt"});
    let mut entra_without_scope = good.clone();
    entra_without_scope["targets"][0] = json!({"name": "t", "mode": "entraOnBehalfOf", "idp": "corp"});
    let mut reserved = good.clone();
    reserved["targets"][0]["extraParameters"] = json!({"subject_token": "x"});
    for (config, expected) in [
        (actor_type_alone, "invalid configuration at targets[0].actor.tokenType: only with an actor token"),
        (entra_without_scope, "invalid configuration at targets[0].scope: required for entraOnBehalfOf"),
        (
            reserved,
            "invalid configuration at targets[0].extraParameters.subject_token: is a parameter the grant sets itself",
        ),
    ] {
        let output = validate_obo(config).expect_err(expected);
        let ours: Vec<&str> =
            output.lines().filter(|line| line.contains("baton obo-credential-injection: invalid")).collect();
        assert_eq!(ours.len(), 1, "one log line, naming the field: {output}");
        assert!(ours[0].contains(expected), "expected {expected:?} in {:?}", ours[0]);
        assert!(!output.contains("\"pw\"") && !output.contains(": pw"), "the secret reached the log");
    }
}

/// `integration/docker-compose.yml` runs what `make demo` runs: the same
/// Envoy configs (each with the secrets its VM reads), both mock IdPs on the
/// configs' ports (the bank from the same `integration/bank-idp.json`) and
/// the agents with the flags that make them the demo's.
#[test]
fn docker_compose_mirrors_the_demo() {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("integration/docker-compose.yml")).unwrap();
    let mut compose: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    compose.apply_merge().unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let command = |name: &str| -> Vec<String> {
        services[name]["command"]
            .as_sequence()
            .unwrap_or_else(|| panic!("service {name} has no command"))
            .iter()
            .map(|part| part.as_str().unwrap().to_string())
            .collect()
    };

    // Every Envoy the demo starts, with the environment its config needs.
    let mut configs_run = Vec::new();
    for (name, service) in services {
        let name = name.as_str().unwrap();
        if service["image"].as_str() != Some("envoyproxy/envoy:v1.40.0") {
            continue;
        }
        let args = command(name);
        let config = args.iter().skip_while(|a| *a != "-c").nth(1).unwrap().clone();
        let file = config.strip_prefix("/baton/").unwrap();
        let yaml = std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{name}: {file}: {e}"));
        for key in yaml.lines().filter_map(|l| l.trim().strip_prefix("host_env_keys: [")) {
            for variable in key.trim_end_matches(']').split(',').map(str::trim) {
                assert!(
                    service["environment"][variable].as_str().is_some_and(|v| !v.is_empty()),
                    "{name}: {file} reads {variable}, which the service does not set"
                );
            }
        }
        assert_eq!(service["network_mode"].as_str(), Some("host"), "{name}");
        configs_run.push(file.to_string());
    }
    configs_run.sort();
    assert_eq!(
        configs_run,
        [
            "envoy-configs/claim-enforcement.yaml",
            "envoy-configs/delegation-broker.yaml",
            "envoy-configs/in-task-auth-code.yaml",
            "envoy-configs/portfolio-egress.yaml",
        ]
    );

    // The demo's secrets, as the mock IdP knows them.
    assert_eq!(
        services["broker-egress"]["environment"]["BATON_BROKER_SECRET"].as_str(),
        Some(mock_idp::DEMO_BROKER_SECRET)
    );
    assert_eq!(
        services["portfolio-egress"]["environment"]["BATON_PORTFOLIO_SECRET"].as_str(),
        Some(mock_idp::DEMO_PORTFOLIO_SECRET)
    );

    // The IdPs and agents on the ports the configs name.
    assert_eq!(command("mock-idp"), ["mock-idp", "--port", "9000"]);
    assert_eq!(command("bank-idp"), ["mock-idp", "--config", "/baton/bank-idp.json"]);
    let bank: mock_idp::MockIdpConfig =
        serde_json::from_str(&std::fs::read_to_string(root.join("integration/bank-idp.json")).unwrap())
            .unwrap();
    assert_eq!(bank.port, 9010);
    assert_eq!(command("agents"), ["echo-backend", "--port", "9001", "--portfolio"]);
    assert_eq!(command("transfer-agent"), ["echo-backend", "--port", "9011", "--a2a"]);
    for (port, config) in [
        ("9010", "in-task-auth-code.yaml"),
        ("9011", "in-task-auth-code.yaml"),
        ("9000", "claim-enforcement.yaml"),
        ("9001", "delegation-broker.yaml"),
    ] {
        let yaml = std::fs::read_to_string(root.join("envoy-configs").join(config)).unwrap();
        assert!(yaml.contains(&format!("port_value: {port}")), "{config} does not use port {port}");
    }
}

#[test]
fn the_observability_guide_names_every_counter() {
    let guide = std::fs::read_to_string(workspace_root().join("docs/observability.md")).unwrap();
    let counters = claim_enforcement::metrics::ALL
        .iter()
        .chain(obo_credential_injection::metrics::ALL.iter())
        .chain(in_task_auth_code::metrics::ALL.iter());
    let missing: Vec<&str> =
        counters.map(|counter| counter.name()).filter(|name| !guide.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "docs/observability.md does not describe {missing:?}");
}

#[test]
fn routes_that_carry_agent_streams_set_their_timeouts() {
    // Envoy's default route timeout (15 s) cuts an A2A or MCP event stream
    // that lives longer; these routes lift it and keep an idle limit.
    for (config, cluster) in [
        ("in-task-auth-code.yaml", "transfer_agent"),
        ("mcp-resource.yaml", "backend"),
        ("delegation-broker.yaml", "portfolio_agent"),
    ] {
        let yaml = std::fs::read_to_string(workspace_root().join("envoy-configs").join(config)).unwrap();
        assert!(
            yaml.contains(&format!("route: {{cluster: {cluster}, timeout: 0s, idle_timeout: 300s}}")),
            "{config}: the route to {cluster} keeps Envoy's 15 s limit"
        );
    }
}
