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
        let body: String = mock_idp::b64url(der.as_ref()).replace('-', "+").replace('_', "/");
        let padded = format!("{body}{}", "=".repeat((4 - body.len() % 4) % 4));
        format!("-----BEGIN PRIVATE KEY-----\n{padded}\n-----END PRIVATE KEY-----\n")
    };
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("envoy-configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            // delegation-broker.yaml and portfolio-egress.yaml read their
            // client secrets from here.
            let env = [
                ("BATON_BROKER_SECRET", mock_idp::DEMO_BROKER_SECRET),
                ("BATON_PORTFOLIO_SECRET", mock_idp::DEMO_PORTFOLIO_SECRET),
                ("BATON_GW_KEY", gateway_key.as_str()),
            ];
            let output = validate_config(&path, &root, &env)
                .unwrap_or_else(|output| panic!("{}:\n{output}", path.display()));
            assert!(output.contains("OK"), "{}: {output}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 7, "configs missing: {checked}");
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
        "subjectToken": {"validation": "decodeOnly"},
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
