//! Configuration: what compiles, and every cross-field rule refused with the
//! field named.

use super::*;
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "clientId": "agent-broker", "clientSecret": "s3cr3t"}],
        "subjectToken": {"validation": "claimEnforcement", "issuers": ["https://idp"]},
        "targets": [{
            "name": "portfolio",
            "match": {"host": "portfolio.internal"},
            "mode": "tokenExchange",
            "idp": "corp",
            "audiences": ["portfolio-agent"],
            "scope": "portfolio:read"
        }]
    })
}

fn parse_value(config: &Value) -> Result<FilterConfig, ConfigError> {
    parse(config.to_string().as_bytes())
}

fn error(config: &Value) -> ConfigError {
    match parse_value(config) {
        Ok(_) => panic!("accepted: {config}"),
        Err(error) => error,
    }
}

#[test]
fn minimal_configuration_has_safe_defaults() {
    let config = parse_value(&base()).unwrap();
    let target = &config.targets[0];
    assert_eq!(target.mode(), Mode::TokenExchange);
    let TargetGrant::TokenExchange(exchange) = &target.grant else { panic!("{:?}", target.grant) };
    assert_eq!(exchange.subject_token_type, TOKEN_TYPE_ACCESS_TOKEN);
    assert_eq!(target.inject, Injection { header: "authorization".into(), prefix: "Bearer ".into() });
    assert_eq!(config.default_action, DefaultAction::Deny);
    assert_eq!(config.idps[0].endpoint.timeout_ms, 3000);
    assert!(matches!(config.idps[0].endpoint.client_auth, ClientAuth::Basic { .. }));
    assert_eq!(config.cache_entries, 10_000);
    assert!(config.credentials.is_empty());
}

#[test]
fn the_client_secret_never_shows_in_debug_output() {
    let config = parse_value(&base()).unwrap();
    assert!(!format!("{config:?}").contains("s3cr3t"));
}

#[test]
fn unknown_fields_are_named() {
    let mut config = base();
    config["targets"][0]["audience"] = json!("x");
    let err = error(&config);
    assert_eq!(err.field, "targets[0].audience");
    let mut config = base();
    config["idps"][0]["clientSecrets"] = json!("x");
    assert_eq!(error(&config).field, "idps[0].clientSecrets");
}

#[test]
fn actor_token_type_only_with_an_actor_token() {
    let mut config = base();
    config["targets"][0]["actor"] = json!({"tokenType": "urn:ietf:params:oauth:token-type:jwt"});
    let err = error(&config);
    assert_eq!(err.field, "targets[0].actor.tokenType");
    assert!(err.message.contains("only with an actor token"), "{err}");
    config["targets"][0]["actor"] = json!({"token": "abc"});
    assert!(error(&config).message.contains("required with an actor token"));
    config["targets"][0]["actor"] = json!({"token": "abc", "tokenType": "not a uri"});
    assert_eq!(error(&config).field, "targets[0].actor.tokenType");
    config["targets"][0]["actor"] =
        json!({"token": "abc", "tokenType": "urn:ietf:params:oauth:token-type:jwt"});
    parse_value(&config).unwrap();
}

#[test]
fn entra_on_behalf_of_needs_a_scope_and_nothing_exchange_specific() {
    let mut config = base();
    config["targets"][0] = json!({"name": "graph", "mode": "entraOnBehalfOf", "idp": "corp"});
    assert_eq!(error(&config).field, "targets[0].scope");
    config["targets"][0]["scope"] = json!("api://portfolio/.default");
    config["targets"][0]["audiences"] = json!(["x"]);
    assert_eq!(error(&config).field, "targets[0].audiences");
    config["targets"][0].as_object_mut().unwrap().remove("audiences");
    parse_value(&config).unwrap();
}

#[test]
fn reserved_parameters_cannot_be_overridden() {
    for reserved in ["grant_type", "subject_token", "audience", "client_secret", "scope"] {
        let mut config = base();
        config["targets"][0]["extraParameters"] = json!({reserved: "x"});
        let err = error(&config);
        assert_eq!(err.field, format!("targets[0].extraParameters.{reserved}"));
    }
    let mut config = base();
    config["targets"][0]["extraParameters"] = json!({"tenant": "acme"});
    let parsed = parse_value(&config).unwrap();
    let TargetGrant::TokenExchange(exchange) = &parsed.targets[0].grant else { panic!() };
    assert_eq!(exchange.extra_parameters, [("tenant".to_string(), "acme".to_string())]);
}

#[test]
fn references_must_resolve() {
    let mut config = base();
    config["targets"][0]["idp"] = json!("nobody");
    let err = error(&config);
    assert_eq!(err.field, "targets[0].idp");
    assert!(err.message.contains("known: corp"), "{err}");
    let mut config = base();
    config.as_object_mut().unwrap().remove("subjectToken");
    assert_eq!(error(&config).field, "subjectToken");
}

#[test]
fn a_token_exchange_names_its_audience() {
    let mut config = base();
    config["targets"][0].as_object_mut().unwrap().remove("audiences");
    assert_eq!(error(&config).field, "targets[0].audiences");
    config["targets"][0]["resources"] = json!(["https://ledger.example/api"]);
    parse_value(&config).unwrap();
}

#[test]
fn client_credentials_grants_are_shared() {
    let config = json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "clientId": "gw", "clientSecret": "pw",
                  "clientAuthMethod": "clientSecretPost"}],
        "delegation": {"caller": "peerCertificate"},
        "targets": [
            {"name": "market", "mode": "clientCredentials", "idp": "corp", "audiences": ["market-data"], "scope": "quotes"},
            {"name": "market-2", "match": {"pathPrefix": "/v2"}, "mode": "clientCredentials", "idp": "corp",
             "audiences": ["market-data"], "scope": "quotes"},
            {"name": "other", "mode": "clientCredentials", "idp": "corp", "audiences": ["other"]}
        ]
    });
    let config = parse_value(&config).unwrap();
    assert_eq!(config.credentials.len(), 2, "identical grants are fetched once");
    assert!(config.subject.is_none());
    assert!(matches!(config.idps[0].endpoint.client_auth, ClientAuth::Post { .. }));
}

#[test]
fn an_actor_from_client_credentials_is_a_kept_fresh_grant() {
    let mut config = base();
    config["targets"][0]["actor"] = json!({"clientCredentials": {"scope": "actor"}});
    let config = parse_value(&config).unwrap();
    assert_eq!(config.credentials.len(), 1);
    assert!(matches!(
        &config.targets[0].grant,
        TargetGrant::TokenExchange(Exchange { actor: Some(Actor::ClientCredentials(_)), .. })
    ));
}

#[test]
fn targets_with_different_parameters_have_different_digests() {
    let mut config = base();
    let mut second = config["targets"][0].clone();
    second["name"] = json!("portfolio-write");
    second["scope"] = json!("portfolio:write");
    config["targets"].as_array_mut().unwrap().push(second);
    let config = parse_value(&config).unwrap();
    assert_ne!(config.targets[0].digest, config.targets[1].digest);
}

#[test]
fn subject_validation_modes() {
    let mut config = base();
    config["subjectToken"] = json!({"validation": "jwks", "issuers": ["x"]});
    assert_eq!(error(&config).field, "subjectToken.validation");
    config["subjectToken"] = json!({"validation": "jwks"});
    assert_eq!(error(&config).field, "subjectToken.providers");
    config["subjectToken"] = json!({"validation": "claimEnforcement", "providers": []});
    assert_eq!(error(&config).field, "subjectToken.providers");
    config["subjectToken"] = json!({"validation": "sometimes"});
    assert_eq!(error(&config).field, "subjectToken.validation");
    // A token nobody verified decides nothing: decodeOnly is refused, and
    // says what to use instead.
    config["subjectToken"] = json!({"validation": "decodeOnly", "issuers": ["https://idp"]});
    let refused = error(&config);
    assert_eq!(refused.field, "subjectToken.validation");
    assert!(
        refused.message.contains("use jwks") && refused.message.contains("claimEnforcement"),
        "{refused}"
    );
}

#[test]
fn a_target_handing_out_the_gateways_token_identifies_its_callers() {
    let mut config = base();
    config.as_object_mut().unwrap().remove("subjectToken");
    config["targets"] =
        json!([{"name": "market", "mode": "clientCredentials", "idp": "corp", "audiences": ["market-data"]}]);
    let refused = error(&config);
    assert_eq!(refused.field, "targets[0]");
    assert!(refused.message.contains("dangerouslyAllowUnauthenticatedCallers"), "{refused}");
    // Callers identified by a verified token or a verified certificate, or
    // anyone when the configuration says so by name.
    for allowed in [
        json!({"subjectToken": {"validation": "claimEnforcement"}}),
        json!({"delegation": {"caller": "peerCertificate"}}),
        json!({"targets": [{"name": "market", "mode": "clientCredentials", "idp": "corp", "audiences": ["market-data"],
                            "dangerouslyAllowUnauthenticatedCallers": true}]}),
    ] {
        let mut config = config.clone();
        for (key, value) in allowed.as_object().unwrap() {
            config[key] = value.clone();
        }
        let parsed = parse_value(&config).unwrap_or_else(|e| panic!("{allowed}: {e}"));
        let open = matches!(
            parsed.targets[0].grant,
            TargetGrant::ClientCredentials { unauthenticated_callers: true, .. }
        );
        assert_eq!(open, allowed.get("targets").is_some());
    }
    let mut user_target = base();
    user_target["targets"][0]["dangerouslyAllowUnauthenticatedCallers"] = json!(true);
    assert_eq!(error(&user_target).field, "targets[0].dangerouslyAllowUnauthenticatedCallers");
}

#[test]
fn with_an_allow_list_every_target_is_allowed_to_someone() {
    let mut config = base();
    config["targets"].as_array_mut().unwrap().extend([
        json!({"name": "reports", "mode": "entraOnBehalfOf", "idp": "corp", "scope": "api://reports/.default"}),
        json!({"name": "market", "mode": "clientCredentials", "idp": "corp", "audiences": ["market-data"]}),
    ]);
    config["delegation"] =
        json!({"allow": [{"caller": "app", "audiences": ["portfolio-agent", "market-data"]}]});
    let refused = error(&config);
    assert_eq!(refused.field, "delegation.allow");
    assert!(
        refused.message.contains("\"reports\""),
        "an audience list never covers a scope-only target: {refused}"
    );
    config["delegation"]["allow"][0]["targets"] = json!(["reports"]);
    let parsed = parse_value(&config).unwrap();
    assert_eq!(parsed.delegation.allow.unwrap()[0].targets, [1]);
    config["delegation"]["allow"][0]["targets"] = json!(["nobody"]);
    let refused = error(&config);
    assert_eq!(refused.field, "delegation.allow[0].targets[0]");
    assert!(refused.message.contains("known: portfolio, reports, market"), "{refused}");
}

#[test]
fn cache_and_delegation_bounds() {
    let mut config = base();
    config["cache"] = json!({"maxEntries": 0});
    assert_eq!(error(&config).field, "cache.maxEntries");
    let mut config = base();
    config["delegation"] = json!({"allow": [{"caller": "broker", "audiences": []}]});
    assert_eq!(error(&config).field, "delegation.allow[0]");
    config["delegation"] = json!({"caller": "peerCertificate", "allow": [{"caller": "spiffe://mesh/broker",
                                   "audiences": ["portfolio-agent"]}], "requireMayAct": true});
    let delegation = parse_value(&config).unwrap().delegation;
    assert_eq!(delegation.caller, CallerSource::PeerCertificate);
    assert!(delegation.require_may_act);
    // A header is what any client can send: it names no caller.
    config["delegation"] = json!({"callerHeader": "x-forwarded-client-cert"});
    let refused = error(&config);
    assert_eq!(refused.field, "delegation.callerHeader");
    assert!(refused.message.contains("peerCertificate"), "{refused}");
}

#[test]
fn the_client_secret_can_come_from_the_environment() {
    let mut config = base();
    config["idps"][0].as_object_mut().unwrap().remove("clientSecret");
    config["idps"][0]["clientSecretEnv"] = json!("BATON_TEST_SECRET_UNSET");
    let err = error(&config);
    assert_eq!(err.field, "idps[0].clientSecretEnv");
    assert!(err.message.contains("BATON_TEST_SECRET_UNSET"), "{err}");
    // PATH is set in every test environment.
    config["idps"][0]["clientSecretEnv"] = json!("PATH");
    let parsed = parse_value(&config).unwrap();
    assert_eq!(parsed.idps[0].endpoint.client_auth.client_id(), "agent-broker");
    config["idps"][0]["clientSecret"] = json!("x");
    assert_eq!(error(&config).field, "idps[0].clientSecret");
    config["idps"][0].as_object_mut().unwrap().remove("clientSecret");
    config["idps"][0].as_object_mut().unwrap().remove("clientSecretEnv");
    assert!(error(&config).message.contains("required"));
}

#[test]
fn every_target_says_which_audience_its_token_must_carry() {
    let mut config = base();
    config["targets"] =
        json!([{"name": "market", "mode": "clientCredentials", "idp": "corp", "scope": "quotes"}]);
    let refused = error(&config);
    assert_eq!(refused.field, "targets[0].expectedAudiences");
    config["targets"][0]["expectedAudiences"] = json!(["market-data"]);
    assert_eq!(parse_value(&config).unwrap().targets[0].expected_audiences, ["market-data"]);
    // Entra's `<resource>/.default` scope names it.
    config["targets"] =
        json!([{"name": "graph", "mode": "entraOnBehalfOf", "idp": "corp", "scope": "api://graph/.default"}]);
    assert_eq!(parse_value(&config).unwrap().targets[0].expected_audiences, ["api://graph"]);
    config["targets"][0]["scope"] = json!("User.Read");
    assert_eq!(error(&config).field, "targets[0].expectedAudiences");
    config["idps"][0]["issuer"] = json!("");
    assert_eq!(error(&config).field, "idps[0].issuer");
}

fn with_store(store: Value) -> Value {
    let mut config = base();
    config["store"] = store;
    config
}

fn store_section() -> Value {
    json!({"etcd": {"cluster": "etcd"}, "currentKey": "k1",
           "sealingKeys": [{"id": "k1", "secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]})
}

#[test]
fn a_store_is_optional_and_compiled_once() {
    assert!(parse_value(&base()).unwrap().store.is_none());
    let config = parse_value(&with_store(store_section())).unwrap();
    let store = config.store.as_ref().unwrap();
    assert_eq!((store.endpoint.cluster.as_str(), store.prefix.as_str()), ("etcd", "baton/"));
    assert_eq!(store.keys.current_id(), "k1");
    assert!(!format!("{config:?}").contains("MDEyMzQ1"), "no secret in debug output");
}

#[test]
fn an_invalid_store_is_refused_with_the_field_named() {
    let mut empty_cluster = store_section();
    empty_cluster["etcd"]["cluster"] = json!("");
    assert_eq!(error(&with_store(empty_cluster)).field, "store.etcd.cluster");
    let mut short_secret = store_section();
    short_secret["sealingKeys"][0]["secret"] = json!("c2hvcnQ=");
    assert!(error(&with_store(short_secret)).field.starts_with("store.sealingKeys[0]"));
    let mut no_current = store_section();
    no_current["currentKey"] = json!("k9");
    assert_eq!(error(&with_store(no_current)).field, "store.currentKey");
    let mut misspelt = store_section();
    misspelt["etcd"]["timeoutMS"] = json!(100);
    assert!(error(&with_store(misspelt)).to_string().contains("timeoutMS"));
}
