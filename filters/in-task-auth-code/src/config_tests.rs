//! Configuration: what compiles, and each rule refused with its field.

use super::*;
use baton_token::oauth::ClientAuth;
use serde_json::json;

pub(crate) fn base() -> Value {
    json!({
        "secondaryIdp": {
            "name": "bank",
            "authorizationEndpoint": "https://bank.example/authorize",
            "tokenEndpoint": "https://bank.example/token",
            "cluster": "bank_idp",
            "tokenPath": "/token",
            "clientId": "transfer-gateway",
            "clientSecret": "s3cr3t",
            "redirectUri": "https://gw.example/a2a/oauth/callback",
            "scopes": ["transfers:write"],
            "audience": "bank-api",
            "providers": [{
                "name": "bank", "issuer": "https://bank.example", "audiences": ["bank-api"], "algorithms": ["ES256"],
                "jwks": {"remote": {"cluster": "bank_idp", "path": "/jwks"}}
            }]
        },
        "rules": [{"name": "transfers", "match": {"pathPrefix": "/"},
                   "when": {"source": "data", "pointer": "/operation", "equals": "transfer"}}],
        "primaryIdentity": {"providers": [{
            "name": "corp", "issuer": "https://corp.example", "audiences": ["agents"], "algorithms": ["ES256"],
            "jwks": {"remote": {"cluster": "corp_idp", "path": "/jwks"}}
        }]},
        "userBinding": {"secondaryClaim": "sub"},
        "identityHeader": "x-user-id"
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
    assert_eq!(config.idp.redirect_path, "/a2a/oauth/callback");
    assert_eq!(config.idp.issuer, "https://bank.example", "the one provider's issuer");
    assert!(!config.idp.require_issuer_in_response);
    assert_eq!(config.cookie.name, "__Host-baton-itac");
    assert_eq!(config.state_ttl_secs, 300);
    assert_eq!(config.challenge_status, 200);
    assert_eq!(config.on_invalid_credential, InvalidCredential::Challenge);
    assert_eq!((config.inject_header.as_str(), config.inject_prefix.as_str()), ("authorization", "Bearer "));
    assert!(matches!(config.idp.token_endpoint.client_auth, ClientAuth::Basic { .. }));
    assert_eq!(
        config.primary,
        PrimaryIdentity {
            header: "authorization".into(),
            prefix: "Bearer ".into(),
            claim: "sub".into(),
            verification: PrimaryVerification::Providers(vec![1]),
        }
    );
    assert_eq!(config.idp.provider_ids, [0]);
    assert_eq!(config.providers.len(), 2);
    assert_eq!(config.rules[0].when.as_ref().unwrap().values, [json!("transfer")]);
    assert!(!format!("{config:?}").contains("s3cr3t"));
}

#[test]
fn a_public_client_has_no_secret() {
    let mut config = base();
    config["secondaryIdp"].as_object_mut().unwrap().remove("clientSecret");
    let parsed = parse_value(&config).unwrap();
    assert_eq!(
        parsed.idp.token_endpoint.client_auth,
        ClientAuth::Public { client_id: "transfer-gateway".into() }
    );
    config["secondaryIdp"]["clientAuthMethod"] = json!("clientSecretPost");
    assert_eq!(error(&config).field, "secondaryIdp.clientSecret");
}

#[test]
fn errors_name_their_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/secondaryIdp/authorizationEndpoint",
            json!("bank.example/authorize"),
            "secondaryIdp.authorizationEndpoint",
        ),
        ("/secondaryIdp/tokenPath", json!("token"), "secondaryIdp.tokenPath"),
        ("/secondaryIdp/scopes", json!(["a b"]), "secondaryIdp.scopes[0]"),
        (
            "/secondaryIdp/extraAuthorizeParameters",
            json!({"state": "x"}),
            "secondaryIdp.extraAuthorizeParameters.state",
        ),
        ("/secondaryIdp/providers", json!([]), "secondaryIdp.providers"),
        ("/rules", json!([]), "rules"),
        (
            "/rules/0/when",
            json!({"source": "data", "pointer": "operation", "equals": 1}),
            "rules[0].when.pointer",
        ),
        ("/rules/0/when", json!({"source": "data", "pointer": "/op"}), "rules[0].when"),
        ("/rules/0/when", json!({"source": "body", "pointer": "/op", "equals": 1}), "rules[0].when.source"),
        ("/identityHeader", json!("authorization"), "identityHeader"),
        ("/secondaryIdp/redirectUri", json!("http://gw.example/cb"), "secondaryIdp.redirectUri"),
        ("/secondaryIdp/redirectUri", json!("https://gw.example/cb?x=1"), "secondaryIdp.redirectUri"),
        ("/userBinding", json!({}), "userBinding"),
        ("/userBinding", json!({"secondaryClaim": ""}), "userBinding.secondaryClaim"),
        ("/tokenTimeoutSeconds", json!(5), "tokenTimeoutSeconds"),
        ("/challengeStatus", json!(42), "challengeStatus"),
        ("/onInvalidCredential", json!("ignore"), "onInvalidCredential"),
        ("/cache", json!({"maxEntries": 0}), "cache.maxEntries"),
        ("/require", json!({"claims": [{"claim": "acr"}]}), "require"),
    ];
    for (pointer, value, field) in cases {
        let mut config = base();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match config.pointer_mut(parent).unwrap_or_else(|| panic!("{pointer}")) {
            Value::Object(object) => {
                object.insert(key.to_string(), value);
            }
            Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
            _ => panic!("{pointer}"),
        }
        assert_eq!(error(&config).field, field, "{pointer}");
    }
    let mut misspelled = base();
    misspelled["secondaryIdp"]["redirectURI"] = json!("x");
    assert_eq!(error(&misspelled).field, "secondaryIdp.redirectURI");
}

#[test]
fn the_identity_header_cannot_be_the_one_it_comes_from() {
    let mut config = base();
    config["primaryIdentity"] = json!({"header": "x-user-id", "verifiedBy": "claimEnforcement"});
    assert_eq!(error(&config).field, "identityHeader");
    config["identityHeader"] = json!("x-baton-user");
    let parsed = parse_value(&config).unwrap();
    assert_eq!(parsed.primary.verification, PrimaryVerification::ClaimEnforcement);
    assert_eq!(parsed.providers.len(), 1, "only the bank's");
}

#[test]
fn the_user_comes_only_from_a_verified_token() {
    // A header, or a claim of a token nobody verifies, is what any client
    // can send: such configurations are refused at load.
    for primary in
        [json!({"header": "x-user-id"}), json!({"header": "authorization", "claim": "sub"}), json!({})]
    {
        let mut config = base();
        config["primaryIdentity"] = primary.clone();
        let refused = error(&config);
        assert_eq!(refused.field, "primaryIdentity", "{primary}");
        assert!(refused.message.contains("verifies the user's token"), "{refused}");
    }
    let mut both = base();
    both["primaryIdentity"]["verifiedBy"] = json!("claimEnforcement");
    assert_eq!(error(&both).field, "primaryIdentity");
    let mut unknown = base();
    unknown["primaryIdentity"] = json!({"verifiedBy": "gateway"});
    assert_eq!(error(&unknown).field, "primaryIdentity.verifiedBy");
    let mut no_claim = base();
    no_claim["primaryIdentity"]["claim"] = json!("");
    assert_eq!(error(&no_claim).field, "primaryIdentity.claim");
}

#[test]
fn agent_cards_are_the_well_known_paths_read() {
    for path in
        ["/.well-known/agent-card.json", "/.well-known/agent.json", "/.well-known/agent-card.json?v=1"]
    {
        assert!(crate::model::is_agent_card("GET", path), "{path}");
        assert!(crate::model::is_agent_card("HEAD", path), "{path}");
        // A message posted there is decided like any other.
        assert!(!crate::model::is_agent_card("POST", path), "{path}");
    }
    for path in
        ["/", "/a2a", "/.well-known/agent-card.json.bak", "/agents/transfer/agent-card.json", "/x/agent.json"]
    {
        assert!(!crate::model::is_agent_card("GET", path), "{path}");
    }
}

#[test]
fn the_authorization_endpoint_cannot_set_what_the_gateway_sets() {
    // Found by fuzz/fuzz_targets/config_in_task_auth_code.rs: the rule on
    // extraAuthorizeParameters could be side-stepped through the endpoint's
    // own query (the authorization URL then named `state` twice), and a
    // fragment pushed the gateway's parameters out of the query.
    for endpoint in [
        "https://bank.example/authorize?state=x",
        "https://bank.example/authorize?prompt=login&client_id=other",
        "https://bank.example/authorize?st%61te=x",
        "https://bank.example/authorize?redirect_uri",
        "https://bank.example/authorize#top",
    ] {
        let mut config = base();
        config["secondaryIdp"]["authorizationEndpoint"] = json!(endpoint);
        assert_eq!(error(&config).field, "secondaryIdp.authorizationEndpoint", "{endpoint}");
    }
    let mut config = base();
    config["secondaryIdp"]["authorizationEndpoint"] =
        json!("https://bank.example/authorize?prompt=login&x=1");
    let parsed = parse_value(&config).unwrap();
    assert_eq!(parsed.idp.authorization_endpoint, "https://bank.example/authorize?prompt=login&x=1");
}
